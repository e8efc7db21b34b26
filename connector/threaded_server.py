"""Running a uvicorn server in a background thread of this process, for the length of a block.

The connector does this for the built-in local Sheets server (when no Google credentials are configured)
and for ``demo``; tests do it for the apps they drive over real HTTP. :func:`free_port` finds a loopback
port for such a server (or a process of its own) to listen on.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

__all__ = ["free_port", "serving"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serving(
    server: uvicorn.Server,
    sock: socket.socket | None = None,
    *,
    name: str = "server",
    startup_seconds: float = 20.0,
) -> Iterator[None]:
    """Start ``server`` (on ``sock`` if given) in a daemon thread, wait until it serves, stop it after.

    Raises RuntimeError if it does not start within ``startup_seconds``.
    """
    kwargs = {"sockets": [sock]} if sock is not None else {}
    thread = threading.Thread(target=server.run, kwargs=kwargs, name=name, daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_seconds
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"{name} did not start")
        time.sleep(0.01)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=30)
