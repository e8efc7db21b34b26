"""The ``doopage-sheets`` command line."""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, TypeVar

import click
from rich.console import Console
from rich.table import Table

from connector.errors import ConfigError
from connector.inbox import STATUSES, connect, count_events, inbox_path
from connector.settings import Settings, load_settings

if TYPE_CHECKING:
    from connector.mapping import SheetMapping

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


def load_or_exit(config_path: Path) -> Settings:
    """Load settings, or print the file, the path and the reason and exit with status 2."""
    with exit_on_config_error():
        return load_settings(config_path)


def setup_logging(level: str) -> None:
    """Plain text logs on standard error."""
    logging.basicConfig(
        level=level.upper(), stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def exit_cleanly_after_shutdown() -> None:
    """Make SIGTERM and SIGINT end the process with status 0 once uvicorn has shut down gracefully.

    uvicorn handles both signals itself, then restores the handlers it found and raises the signal again;
    the handler found is this one, so a requested stop is a clean exit rather than death by signal.
    """

    def leave(signum: int, frame: FrameType | None) -> None:
        sys.exit(0)

    signal.signal(signal.SIGTERM, leave)
    signal.signal(signal.SIGINT, leave)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="doopage-sheets")
def main() -> None:
    """Keep a Google Sheet of customers and orders current from DooPage CRM webhooks."""


@main.command()
@config_option
def serve(config_path: Path) -> None:
    """Run the webhook service (under uvicorn) until SIGINT or SIGTERM."""
    import uvicorn

    from connector.app import create_app

    settings = load_or_exit(config_path)
    setup_logging(settings.server.log_level)
    with exit_on_config_error():
        app = create_app(settings)
    exit_cleanly_after_shutdown()
    # The inbox's writer thread and the event loop hand the GIL back and forth on every commit; the
    # default 5 ms switch interval would add up to 5 ms to each acknowledgement.
    sys.setswitchinterval(0.001)
    uvicorn.run(
        app,
        host=settings.server.host,
        port=settings.server.port,
        log_level=settings.server.log_level,
        # Request logs would put the path token, a secret, into the log.
        access_log=False,
    )


@main.command()
@config_option
def status(config_path: Path) -> None:
    """Print the inbox: how many events are in each status, by event type."""
    settings = load_or_exit(config_path)
    path = inbox_path(settings.data_dir)
    if not path.exists():
        click.echo(f"no inbox yet at {path}: no event has been received")
        return
    conn = connect(path)
    try:
        counts = count_events(conn)
    finally:
        conn.close()
    totals = dict.fromkeys(STATUSES, 0)
    for row in counts:
        totals[row.status] = totals.get(row.status, 0) + row.count
    console = Console()
    summary = Table(title=f"Inbox {path}")
    for name in totals:
        summary.add_column(name, justify="right")
    summary.add_row(*(str(n) for n in totals.values()))
    console.print(summary)
    detail = Table(title="By event type")
    detail.add_column("status")
    detail.add_column("event type")
    detail.add_column("events", justify="right")
    for row in counts:
        detail.add_row(row.status, row.event_type, str(row.count))
    console.print(detail)


@main.command("local-sheets")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", default=8765, show_default=True, type=click.IntRange(0, 65535), help="0: any free port."
)
@click.option(
    "--data",
    "data_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="JSON file the spreadsheets are loaded from and saved to (atomically); memory only without it.",
)
@click.option(
    "--seed", type=int, default=None, help="Seed for spreadsheet ids, sheet ids and injected faults."
)
@click.option("--log-level", default="info", show_default=True, help="uvicorn log level.")
def local_sheets(host: str, port: int, data_path: Path | None, seed: int | None, log_level: str) -> None:
    """Run the local Google Sheets API v4 server (for tests, the demo, and trying without Google)."""
    from connector.localsheets import LocalSheetsService, StoreError, bind_socket, make_server, server_url

    try:
        service = LocalSheetsService(data_path=data_path, seed=seed)
    except StoreError as exc:
        click.echo(f"local-sheets: {exc}", err=True)
        sys.exit(2)
    sock = bind_socket(host, port)
    # The first line is read by connector.localsheets.testing to learn the port when --port is 0.
    click.echo(f"local-sheets listening on {server_url(sock)}")
    sys.stdout.flush()
    make_server(service, log_level=log_level, access_log=log_level == "debug").run(sockets=[sock])


@main.command("check-config")
@config_option
@click.option(
    "--online", is_flag=True, help="Also open each mapped spreadsheet with the configured credentials."
)
def check_config(config_path: Path, online: bool) -> None:
    """Validate the settings and the column mapping, and print what each company's spreadsheet will get.

    Exits 2 on a configuration mistake (naming the file, the path in it and the reason), and with
    --online exits 1 when a spreadsheet cannot be opened.
    """
    from connector.mapping import describe_mapping, load_mapping

    settings = load_or_exit(config_path)
    try:
        mapping = load_mapping(settings)
    except ConfigError as exc:
        click.echo(f"configuration error: {exc}", err=True)
        sys.exit(2)
    click.echo(f"{settings.source}: settings are valid")
    click.echo(describe_mapping(mapping))
    if online and not _spreadsheets_reachable(settings, mapping):
        sys.exit(1)


def _spreadsheets_reachable(settings: Settings, mapping: SheetMapping) -> bool:
    """Read each mapped spreadsheet's metadata once; print what it holds, or why it cannot be opened."""
    import gspread
    import requests

    from connector.routing import Router
    from connector.sheets import connect as connect_sheets
    from connector.sheets.retry import classify_failure

    try:
        connection = connect_sheets(settings.sheets, source=settings.source)
    except ConfigError as exc:
        click.echo(f"configuration error: {exc}", err=True)
        sys.exit(2)
    click.echo(f"Sheets API at {connection.api_root} as {connection.credential_id}")
    reachable = True
    for spreadsheet_id, companies in Router.from_mapping(mapping).spreadsheets().items():
        wanted = [sheet.title for company in companies for sheet in company.worksheets]
        try:
            metadata = connection.client.http_client.fetch_sheet_metadata(spreadsheet_id)
        except (gspread.exceptions.APIError, requests.RequestException) as exc:
            click.echo(
                f"spreadsheet {spreadsheet_id}: NOT reachable: {classify_failure(spreadsheet_id, exc)}"
            )
            reachable = False
            continue
        present = {sheet["properties"]["title"] for sheet in metadata.get("sheets", [])}
        missing = [title for title in wanted if title not in present]
        title = metadata.get("properties", {}).get("title", "")
        line = f"spreadsheet {spreadsheet_id} ({title!r}): reachable"
        if missing:
            line += f"; worksheets to be created on the first write: {', '.join(missing)}"
        click.echo(line)
    return reachable
