"""A real HTTP server (uvicorn in a thread) for tests that depend on the client's address."""

from __future__ import annotations

import itertools
import socket
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
import uvicorn

from connector.http_limits import uvicorn_limits
from connector.intake.app import create_app
from connector.settings import load_settings
from connector.threaded_server import free_port, serving

TOKEN = "security-token-0123456789abcdef"
KEY = "validation-key-s3cret"
PASSWORD = "basic-auth-passw0rd"


def settings_text(endpoint_extra: str = "", server_extra: str = "") -> str:
    return f"""
[server]
data_dir = "data"
{server_extra}

[worker]
embedded = false

[console]
port = {free_port()}  # a `serve` process's console: another service here may hold the default port

[[endpoints]]
name = "main"
token = "{TOKEN}"
validation_key = "{KEY}"
{endpoint_extra}
"""


@contextmanager
def running_app(folder: Path, text: str) -> Iterator[str]:
    """The app for a settings text, served on a free loopback port for the block; yields its base URL."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "settings.toml").write_text(text)
    settings = load_settings(folder / "settings.toml")
    app = create_app(settings)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app, log_level="warning", lifespan="on", proxy_headers=False, **uvicorn_limits(settings.server)
    )
    server = uvicorn.Server(config)
    with serving(server, sock, name="the app"):
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
def serve_app(tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """Start the app for a settings text on a free loopback port; returns its base URL."""
    with ExitStack() as stack:
        count = itertools.count()

        def start(text: str) -> str:
            return stack.enter_context(running_app(tmp_path / f"app{next(count)}", text))

        yield start


@pytest.fixture(scope="module")
def module_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One app with default settings for a whole test module."""
    with running_app(tmp_path_factory.mktemp("app"), settings_text()) as base:
        yield base
