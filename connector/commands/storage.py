"""The store's schema and contents: ``migrate`` and ``store copy``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from connector.commands.common import config_option, load_or_exit, setup_logging
from connector.errors import StoreError
from connector.settings import resolve_secret


@click.command()
@config_option
def migrate(config_path: Path) -> None:
    """Bring the PostgreSQL database of [store] url to this version's schema (safe to run again, and
    from several hosts at once). The SQLite store needs nothing: it is migrated when opened."""
    from connector.store.pg_schema import known_version
    from connector.store.pg_schema import migrate as apply

    settings = load_or_exit(config_path)
    setup_logging(settings)
    if settings.store is None:
        click.echo(f"nothing to do: no [store] url in {config_path}, the SQLite store migrates itself")
        return
    try:
        applied = apply(settings.store.url.reveal())
    except StoreError as exc:
        click.echo(f"migrate: {exc}", err=True)
        sys.exit(1)
    if applied:
        click.echo(f"applied {', '.join(applied)}; the schema is at version {known_version()}")
    else:
        click.echo(f"the schema is up to date (version {known_version()})")


@click.group()
def store() -> None:
    """The store's contents."""


LOCATION_HELP = (
    "A SQLite data directory (server.data_dir), or a PostgreSQL URL; env:NAME or file:PATH read the URL"
    " from an environment variable or a file."
)


@store.command("copy")
@click.option("--from", "source", required=True, help=f"Where to copy from. {LOCATION_HELP}")
@click.option(
    "--to", "target", required=True, help=f"Where to copy to (it must hold no events). {LOCATION_HELP}"
)
def copy(source: str, target: str) -> None:
    """Copy every event, state, flush record and lock token into an empty store, for example an
    existing SQLite data directory into PostgreSQL. Stop serve and the workers first."""
    from connector.store.copy import copy_store

    try:
        report = copy_store(_location(source), _location(target))
    except (StoreError, ValueError) as exc:
        click.echo(f"store copy: {exc}", err=True)
        sys.exit(1)
    click.echo(", ".join(f"{table}: {rows} rows" for table, rows in report.rows.items()))


def _location(value: str) -> str:
    """A location as given, with env: and file: references resolved (relative to the current folder)."""
    if value.startswith(("env:", "file:")):
        import os

        return resolve_secret(value, os.environ, Path.cwd())
    return value
