"""``doopage-sheets demo``: the whole path on this machine, in one command, with nothing to set up.

It starts the built-in local Sheets server and the service (with its worker) on free ports and a fresh
data directory, posts DooPage's 11 sample events to the webhook URL, waits until the worker has written
them, and prints every worksheet as a table. Google is never involved, whatever the settings say.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import click
import httpx
import msgspec
import uvicorn
from gspread.utils import ValueRenderOption
from rich.console import Console
from rich.table import Table

from connector.commands.common import config_option, exit_on_config_error, load_or_exit, setup_logging
from connector.http_limits import uvicorn_limits
from connector.samples import sample_bodies
from connector.settings import Settings
from connector.sheets import connect as connect_sheets
from connector.sheets.backend import sheets_backend
from connector.sheets.config import SheetsSettings
from connector.store import open_work_store
from connector.sync.mapping import load_mapping
from connector.threaded_server import free_port, serving
from connector.untrusted import as_text, for_rich

WAIT_SECONDS = 30.0


def demo_settings(settings: Settings, data_dir: Path) -> Settings:
    """The settings for a demo run: loopback, free ports, a fresh data directory, the local Sheets server."""
    server = msgspec.structs.replace(
        settings.server, host="127.0.0.1", port=free_port(), data_dir=str(data_dir)
    )
    local = msgspec.structs.replace(
        settings.local_sheets, host="127.0.0.1", port=free_port(), data_file="demo.json"
    )
    worker = msgspec.structs.replace(settings.worker, embedded=True, max_delay_ms=100)
    return msgspec.structs.replace(
        settings, server=server, local_sheets=local, worker=worker, sheets=SheetsSettings()
    )


@contextmanager
def _service(settings: Settings) -> Iterator[str]:
    """The web service (and its worker) in a thread for the block; yields its base URL."""
    from connector.intake.app import create_app

    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=settings.server.port,
        log_config=None,
        access_log=False,
        proxy_headers=False,
        **uvicorn_limits(settings.server),
    )
    with ExitStack() as running:
        try:
            running.enter_context(
                serving(uvicorn.Server(config), name="the service", startup_seconds=WAIT_SECONDS)
            )
        except RuntimeError as exc:
            raise click.ClickException(str(exc)) from None
        yield f"http://127.0.0.1:{settings.server.port}"


def _wait_until_written(settings: Settings) -> None:
    queue = open_work_store(settings)
    try:
        deadline = time.monotonic() + WAIT_SECONDS
        while queue.lag():
            if time.monotonic() > deadline:
                raise click.ClickException("the worker did not write the events in time; see the log above")
            time.sleep(0.1)
    finally:
        queue.close()


@click.command()
@config_option
def demo(config_path: Path) -> None:
    """Run everything locally, send DooPage's sample events, and print the resulting worksheets."""
    settings = load_or_exit(config_path)
    console = Console()
    with tempfile.TemporaryDirectory(prefix="doopage-demo-") as folder, ExitStack() as resources:
        settings = demo_settings(settings, Path(folder))
        setup_logging(settings, "warning")
        with exit_on_config_error():
            mapping = load_mapping(settings)
            settings = resources.enter_context(sheets_backend(settings, environ={}))
        with _service(settings) as base:
            token = settings.endpoints[0].token.reveal()
            console.print(f"[bold]Posting DooPage's {len(sample_bodies())} sample events[/bold]")
            with httpx.Client(base_url=base, timeout=10) as http:
                for event_type, body in sample_bodies().items():
                    answer = http.post(f"/webhooks/doopage/{token}", content=body)
                    console.print(
                        f"  {event_type:<28} {answer.status_code} {for_rich(answer.json().get('status', ''))}"
                    )
            _wait_until_written(settings)
        client = connect_sheets(settings.sheets, environ={}).client
        for company in mapping.companies:
            spreadsheet = client.open_by_key(company.spreadsheet_id)
            for worksheet in company.worksheets:
                rows = spreadsheet.worksheet(worksheet.title).get_all_values(
                    value_render_option=ValueRenderOption.unformatted
                )
                _print_worksheet(console, f"{company.spreadsheet_id} / {worksheet.title}", rows)


def _print_worksheet(console: Console, title: str, rows: list[list[object]]) -> None:
    """A worksheet as a table when it fits the terminal, else row by row as "header: value" lines (a
    table squeezed into 80 columns shows only ellipses)."""
    table = _table(title, rows)
    if console.measure(table, options=console.options.update(max_width=100_000)).maximum <= console.width:
        console.print(table)
        return
    header, *body = rows or [[]]
    console.print(as_text(f"{title} ({len(body)} rows)"), style="bold", highlight=False)
    for number, row in enumerate(body, start=2):
        record = Table.grid(padding=(0, 1))
        record.add_column(style="dim", no_wrap=True)
        record.add_column(overflow="fold")
        for name, cell in zip(header, row, strict=False):
            if cell not in (None, ""):
                record.add_row(as_text(f"{name}:"), as_text(cell))
        console.print(f"row {number}", style="bold", highlight=False)
        console.print(record)


def _table(title: str, rows: list[list[object]]) -> Table:
    table = Table(title=as_text(title), title_justify="left")
    header, *body = rows or [[]]
    for name in header:
        table.add_column(as_text(name), no_wrap=True)
    for row in body:
        table.add_row(*("" if cell is None else as_text(cell) for cell in row))
    return table
