"""Looking at things: the inbox status and the configuration."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.table import Table

from connector.commands.common import config_option, exit_on_store_error, format_ms, load_or_exit
from connector.errors import ConfigError
from connector.settings import Settings
from connector.store import open_work_store
from connector.store.copy import store_label
from connector.store.records import STATUSES, now_ms
from connector.store.sqlite_schema import inbox_path

if TYPE_CHECKING:
    from connector.sync.mapping import SheetMapping


@click.command()
@config_option
def status(config_path: Path) -> None:
    """Print the inbox by status and event type, the lag per company, and each spreadsheet's last flush."""
    settings = load_or_exit(config_path)
    if settings.store is None:
        path = inbox_path(settings.data_dir)
        if not path.exists():
            click.echo(f"no inbox yet at {path}: no event has been received")
            return
        where = str(path)
    else:
        where = store_label(settings.store.url.reveal())
    with exit_on_store_error():
        queue = open_work_store(settings)
    try:
        counts, lag, flushes = queue.counts(), queue.lag(), queue.flushes()
    finally:
        queue.close()
    console = Console()
    totals = dict.fromkeys(STATUSES, 0)
    for row in counts:
        totals[row.status] = totals.get(row.status, 0) + row.count
    summary = Table(title=f"Inbox {where}")
    for name in totals:
        summary.add_column(name, justify="right")
    summary.add_row(*(str(n) for n in totals.values()))
    console.print(summary)

    detail = Table(title="By event type")
    for column in ("status", "event type", "events"):
        detail.add_column(column, justify="right" if column == "events" else "left")
    for row in counts:
        detail.add_row(row.status, row.event_type, str(row.count))
    console.print(detail)

    now = now_ms()
    waiting = Table(title="Lag per company (pending events)")
    for column in ("company", "pending", "oldest waiting"):
        waiting.add_column(column, justify="right")
    for company in lag:
        seconds = max(0, now - company.oldest_received_ms) / 1000
        waiting.add_row(str(company.company_id), str(company.pending), f"{seconds:.1f} s")
    console.print(waiting if lag else "No pending events.")

    sheets = Table(title="Spreadsheets")
    for column in ("spreadsheet", "companies", "last flush", "last error", "error at"):
        sheets.add_column(column)
    for flush in flushes:
        sheets.add_row(
            flush.spreadsheet_id,
            flush.company_ids,
            format_ms(flush.last_ok_ms),
            flush.last_error or "-",
            format_ms(flush.last_error_ms),
        )
    console.print(sheets if flushes else "No flush yet.")


@click.command("check-config")
@config_option
@click.option(
    "--online", is_flag=True, help="Also open each mapped spreadsheet with the configured credentials."
)
def check_config(config_path: Path, online: bool) -> None:
    """Validate the settings and the column mapping, and print what each company's spreadsheet will get.

    Exits 2 on a configuration mistake (naming the file, the path in it and the reason), and with
    --online exits 1 when a spreadsheet cannot be opened.
    """
    from connector.sync.mapping import describe_mapping, load_mapping

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

    from connector.sheets import connect as connect_sheets
    from connector.sheets.retry import classify_failure
    from connector.sync.routing import Router

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
