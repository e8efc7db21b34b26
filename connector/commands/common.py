"""What every command shares: the ``--config`` option, loading settings, logging, clean exits."""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TypeVar

import click

from connector.errors import ConfigError, StoreError
from connector.settings import Settings, load_settings

F = TypeVar("F", bound=Callable[..., object])


def config_option(func: F) -> F:
    """The ``--config PATH`` option every command takes."""
    option = click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=Path("config/example.toml"),
        show_default=True,
        envvar="DOOPAGE_SHEETS_CONFIG",
        help="Settings file (TOML).",
    )
    return option(func)


@contextlib.contextmanager
def exit_on_config_error() -> Iterator[None]:
    """Turn a ConfigError into its message (file, path, reason) on standard error and exit status 2."""
    try:
        yield
    except ConfigError as exc:
        click.echo(f"configuration error: {exc}", err=True)
        sys.exit(2)


@contextlib.contextmanager
def exit_on_store_error() -> Iterator[None]:
    """Turn a StoreError at start-up (an unreachable database, a schema to migrate) into its message on
    standard error and exit status 2."""
    try:
        yield
    except StoreError as exc:
        click.echo(f"store error: {exc}", err=True)
        sys.exit(2)


def load_or_exit(config_path: Path) -> Settings:
    """Load settings, or print the file, the path and the reason and exit with status 2."""
    with exit_on_config_error():
        return load_settings(config_path)


def setup_logging(settings: Settings, level: str | None = None) -> None:
    """Logs as the settings say (text or JSON, on standard error), with every secret redacted."""
    from connector.logs import setup_logging as configure

    configure(level or settings.server.log_level, settings.server.log_format, settings.secret_values())


def exit_cleanly_after_shutdown() -> None:
    """Make SIGTERM and SIGINT end the process with status 0 once uvicorn has shut down gracefully.

    uvicorn handles both signals itself, then restores the handlers it found and raises the signal again;
    the handler found is this one, so a requested stop is a clean exit rather than death by signal.
    """

    def leave(signum: int, frame: FrameType | None) -> None:
        sys.exit(0)

    signal.signal(signal.SIGTERM, leave)
    signal.signal(signal.SIGINT, leave)


def format_ms(ms: int | None) -> str:
    """A time from the inbox (milliseconds since the epoch) for people, in UTC; "-" for none."""
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
