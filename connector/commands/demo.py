"""``doopage-sheets demo``: the whole path on this machine, in one command, with nothing to set up.

It starts the built-in local Sheets server and the service (with its worker) on free ports and a fresh
data directory, posts DooPage's 11 sample events to the webhook URL, waits until the worker has written
them, and prints every worksheet as a table. Google is never involved, whatever the settings say.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, closing, contextmanager
from pathlib import Path

import click
import httpx
import msgspec
import uvicorn
from rich.console import Console
from rich.table import Table

from connector.commands.common import config_option, exit_on_config_error, load_or_exit, setup_logging
from connector.localsheets.testing import LocalSheets
from connector.samples import sample_bodies
from connector.settings import Settings
from connector.sheets.backend import sheets_backend
from connector.sheets.config import SheetsSettings
from connector.store import open_work_store
from connector.sync.mapping import load_mapping
from connector.threaded_server import free_port, serving

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
                        f"  {event_type:<28} {answer.status_code} {answer.json().get('status', '')}"
                    )
            _wait_until_written(settings)
        sheets = resources.enter_context(closing(LocalSheets(settings.sheets.root)))
        for company in mapping.companies:
            for worksheet in company.worksheets:
                rows = sheets.sheet_values(company.spreadsheet_id, worksheet.title)
                console.print(_table(f"{company.spreadsheet_id} / {worksheet.title}", rows))


def _table(title: str, rows: list[list[object]]) -> Table:
    table = Table(title=title, title_justify="left")
    header, *body = rows or [[]]
    for name in header:
        table.add_column(str(name), overflow="ellipsis", no_wrap=True, max_width=30)
    for row in body:
        table.add_row(*("" if cell is None else str(cell) for cell in row))
    return table
