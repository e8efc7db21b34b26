"""Running the console beside the webhook service: its own uvicorn server, in a thread of `serve`."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import uvicorn

from connector.addresses import local_url
from connector.errors import ConfigError
from connector.settings import Settings
from connector.threaded_server import serving

__all__ = ["console_url", "running_console"]

log = logging.getLogger(__name__)


def console_url(host: str, port: int) -> str:
    """The address to open the console at."""
    return f"{local_url(host, port)}/"


@contextlib.contextmanager
def running_console(settings: Settings) -> Iterator[str | None]:
    """Serve the console for the block (its URL), or nothing when ``console.enabled`` is false.

    ConfigError when its port cannot be bound, naming ``console.port``.
    """
    if not settings.console.enabled:
        yield None
        return
    from connector.console.app import create_console_app
    from connector.localsheets import bind_socket

    console = settings.console
    app = create_console_app(settings)
    try:
        sock = bind_socket(console.host, console.port)
    except OSError as exc:
        raise ConfigError(
            settings.source,
            "console.port",
            f"cannot listen on {console.host}:{console.port} ({exc.strerror})",
        ) from None
    config = uvicorn.Config(app, log_config=None, access_log=False, log_level="warning", lifespan="on")
    port = sock.getsockname()[1]
    try:
        with serving(uvicorn.Server(config), sock, name="console"):
            yield console_url(console.host, port)
    finally:
        sock.close()
