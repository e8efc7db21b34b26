"""Running a uvicorn server in a background thread of this process, for the length of a block.

The connector does this for the built-in local Sheets server (when no Google credentials are configured)
and for ``demo``; tests do it for the apps they drive over real HTTP.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

__all__ = ["serving"]


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
