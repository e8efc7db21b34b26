"""Looking at things: the inbox status and the configuration."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console, RenderableType
from rich.table import Table

from connector.commands.common import (
    config_option,
    exit_on_config_error,
    exit_on_store_error,
    format_ms,
    load_or_exit,
)
from connector.errors import ConfigError
from connector.settings import Settings
from connector.sheets.backend import sheets_backend
from connector.store import open_work_store
from connector.store.copy import store_label
from connector.store.records import STATUSES, now_ms
from connector.store.sqlite_schema import inbox_path
from connector.untrusted import as_text, for_rich, printable

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
    mapped = _mapped_spreadsheets(settings)
    if mapped is not None:  # a spreadsheet no longer mapped is history, errors included
        flushes = [flush for flush in flushes if flush.spreadsheet_id in mapped]
    console = Console()
    totals = dict.fromkeys(STATUSES, 0)
    for row in counts:
        totals[row.status] = totals.get(row.status, 0) + row.count
    summary = Table(title=as_text(f"Inbox {where}"))
    for name in totals:
        summary.add_column(as_text(name), justify="right")
    summary.add_row(*(str(n) for n in totals.values()))
    console.print(summary)

    detail = Table(title="By event type")
    for column in ("status", "event type", "events"):
        detail.add_column(column, justify="right" if column == "events" else "left")
    for row in counts:
        detail.add_row(as_text(row.status), as_text(row.event_type), str(row.count))
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
    written_as = _pool_assignment(settings)  # with a pool of credentials, which one writes each
    columns = ["spreadsheet", "companies", "last flush", "last error", "error at"]
    if written_as is not None:
        columns.insert(1, "credential")
    for column in columns:
        sheets.add_column(column)
    for flush in flushes:
        cells: list[RenderableType] = [
            as_text(flush.spreadsheet_id),
            as_text(flush.company_ids),
            format_ms(flush.last_ok_ms),
            as_text(flush.last_error or "-"),
            format_ms(flush.last_error_ms),
        ]
        if written_as is not None:
            cells.insert(1, as_text(written_as.get(flush.spreadsheet_id, "-")))
        sheets.add_row(*cells)
    console.print(sheets if flushes else "No flush yet.")
    _print_runners(console, settings)
    _print_budget(console, settings)


def _print_runners(console: Console, settings: Settings) -> None:
    """The processes running a worker on this data directory, and whether their mapping is the file's."""
    from connector.reload import mapping_fingerprint
    from connector.runners import live_runners
    from connector.sync.mapping import load_mapping

    runners = live_runners(settings.data_dir)
    if not runners:
        console.print("No worker is running.")
        return
    try:
        current: str | None = mapping_fingerprint(load_mapping(settings))
    except ConfigError as exc:
        current = None
        console.print(f"The mapping does not load: {for_rich(exc)}")
    for runner in runners:
        if runner.mapping == current:
            state = "the mapping on disk"
        else:
            state = f"[bold]another mapping than the file's[/bold]: reload it with `kill -HUP {runner.pid}`"
        loaded = format_ms(runner.loaded_ms)
        console.print(f"Running: {runner.command} (pid {runner.pid}), mapping loaded {loaded}: {state}")


def _mapped_spreadsheets(settings: Settings) -> set[str] | None:
    """The spreadsheets the mapping names now; None when it cannot be read (then nothing is hidden)."""
    from connector.sync.mapping import load_mapping

    try:
        mapping = load_mapping(settings)
    except ConfigError:
        return None
    return {company.spreadsheet_id for company in mapping.companies}


def _pool_assignment(settings: Settings) -> dict[str, str] | None:
    """With a pool of credentials (sheets.credentials), which one writes each mapped spreadsheet; None
    without a pool, or when the settings or the mapping cannot be used (check-config says why)."""
    if not settings.sheets.credentials:
        return None
    from connector.config_checks import assignment, credential_pool
    from connector.sync.mapping import load_mapping

    try:
        mapping = load_mapping(settings)
        return assignment(credential_pool(settings, mapping), mapping)
    except ConfigError:
        return None


def _print_budget(console: Console, settings: Settings) -> None:
    """The Sheets request budgets as the worker last saved them: now, ceiling, and 429s met."""
    from connector.budget_file import load_budget

    saved = load_budget(settings.data_dir)
    if saved is None:
        console.print("No Sheets request budget saved yet.")
        return
    saved_unix, budgets = saved
    table = Table(title=f"Sheets request budget (saved {format_ms(int(saved_unix * 1000))})")
    pooled = len({budget.credential for budget in budgets}) > 1  # one budget per credential of a pool
    for column in (
        "credential, kind" if pooled else "kind",
        "budget now",
        "ceiling",
        "window",
        "429s",
        "last 429",
    ):
        table.add_column(column)
    for budget in budgets:
        last = budget.last_throttled_unix
        table.add_row(
            f"{as_text(budget.credential)} {budget.kind}" if pooled else budget.kind,
            f"{budget.budget:g}",
            str(budget.ceiling),
            f"{budget.window_seconds:g} s",
            str(budget.throttled),
            format_ms(int(last * 1000)) if last is not None else "-",
        )
    console.print(table)


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
    from connector.config_checks import check_credentials, config_warnings
    from connector.sync.mapping import describe_mapping, load_mapping

    settings = load_or_exit(config_path)
    with exit_on_config_error():
        mapping = load_mapping(settings)
        sheets = check_credentials(settings, mapping)
    click.echo(f"{printable(settings.source)}: settings are valid")
    for warning in config_warnings(settings):
        click.echo(printable(f"warning: {warning}"), err=True)
    click.echo(printable(sheets))
    click.echo(printable(describe_mapping(mapping)))
    if online:
        # Without credentials, the local Sheets server `serve` would write to (or the one it runs).
        with exit_on_config_error(), sheets_backend(settings) as backend:
            reachable = _spreadsheets_reachable(backend, mapping)
        if not reachable:
            sys.exit(1)


def _spreadsheets_reachable(settings: Settings, mapping: SheetMapping) -> bool:
    """Read each mapped spreadsheet's metadata once; print what it holds, or why it cannot be opened."""
    import gspread
    import requests
    from google.auth.exceptions import RefreshError, TransportError

    from connector.config_checks import credential_pool
    from connector.sheets.retry import classify_failure
    from connector.sync.routing import Router

    try:
        pool = credential_pool(settings, mapping)
    except ConfigError as exc:
        click.echo(f"configuration error: {exc}", err=True)
        sys.exit(2)
    emails = ", ".join(member.email for member in pool.members)
    click.echo(f"Sheets API at {pool.members[0].connection.api_root} as {emails}")
    reachable = True
    router = Router.from_mapping(mapping)
    for spreadsheet_id, companies in router.spreadsheets().items():
        wanted = [sheet.title for company in companies for sheet in company.worksheets]
        member = pool.member_for(spreadsheet_id, router.pin(spreadsheet_id))
        try:
            metadata = member.connection.client.http_client.fetch_sheet_metadata(spreadsheet_id)
        except (gspread.exceptions.APIError, requests.RequestException, RefreshError, TransportError) as exc:
            failure = classify_failure(spreadsheet_id, exc)
            click.echo(printable(f"spreadsheet {spreadsheet_id}: NOT reachable: {failure}"))
            reachable = False
            continue
        # Google matches worksheet titles without regard to case.
        present = {sheet["properties"]["title"].casefold() for sheet in metadata.get("sheets", [])}
        missing = [title for title in wanted if title.casefold() not in present]
        title = metadata.get("properties", {}).get("title", "")
        line = f"spreadsheet {spreadsheet_id} ({title!r}): reachable"
        if len(pool.members) > 1:
            line += f" as {member.email}"
        if missing:
            line += f"; worksheets to be created on the first write: {', '.join(missing)}"
        click.echo(printable(line))
    return reachable
