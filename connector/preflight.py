"""Checks made before a long-running command starts anything: the data directory, the service's port.

Either mistake would otherwise surface half-way through start-up, after the local Sheets server and the
worker had started, as a raw traceback or a uvicorn error. Here each becomes a
:class:`~connector.errors.ConfigError` naming the setting and what to do about it.
"""

from __future__ import annotations

import errno
import os
import resource
import socket
import tempfile

from connector.errors import ConfigError
from connector.settings import Settings

__all__ = ["check_data_dir", "check_open_files", "listening_socket"]

BACKLOG = 2048  # uvicorn's default
# File descriptors the service needs besides one per connection: its databases, the inbox writer's socket,
# the local Sheets server and the worker's connections to Sheets, the log, with room to spare.
SPARE_FILES = 64


def check_data_dir(settings: Settings) -> None:
    """The data directory exists (it is made if missing), takes new files, and its files can be written."""
    path = settings.data_dir

    def refuse(problem: str) -> ConfigError:
        return ConfigError(
            settings.source,
            "server.data_dir",
            f"{problem}: make it a folder this user ({_user()}) can write to, or set server.data_dir to one",
        )

    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-check-"):
            pass
    except OSError as exc:
        raise refuse(f"{path} is not a writable folder ({exc.strerror or exc})") from None
    for child in sorted(path.iterdir()):
        if child.is_file() and not os.access(child, os.R_OK | os.W_OK):
            raise refuse(f"{child} cannot be read and written")


def listening_socket(settings: Settings) -> socket.socket:
    """A socket listening on ``server.host``:``server.port``, for uvicorn to serve on once all is ready."""
    host, port = settings.server.host, settings.server.port
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(
            settings.source, "server.host", f"{host!r} is not an address of this machine ({exc.strerror})"
        ) from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            advice = "another program listens there: stop it, or set server.port to a free port"
        elif exc.errno == errno.EACCES:
            advice = "ports below 1024 need privileges: set server.port to 1024 or above"
        else:
            advice = "set server.host to an address of this machine and server.port to a free port"
        raise ConfigError(
            settings.source, "server.port", f"cannot listen on {host}:{port} ({exc.strerror}); {advice}"
        ) from None
    return sock


def check_open_files(settings: Settings) -> None:
    """Raise the open-file limit (soft up to hard) to what ``server.max_connections`` needs, or refuse."""
    needed = settings.server.max_connections + SPARE_FILES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise ConfigError(
            settings.source,
            "server.max_connections",
            f"{settings.server.max_connections} connections need about {needed} open files, but this process "
            f"may open only {hard} (ulimit -n): lower server.max_connections to {max(hard - SPARE_FILES, 8)} "
            "or less, or raise the limit (LimitNOFILE= in a systemd unit, --ulimit nofile= for docker)",
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def _user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return str(os.getuid())
