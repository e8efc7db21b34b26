"""Operating the connector: parked events, replays, and sending DooPage's samples to a running service.

These are command-line only on purpose: nothing here is reachable over HTTP.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from pathlib import Path

import click
import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from connector.commands.common import (
    config_option,
    exit_on_config_error,
    format_ms,
    load_or_exit,
    setup_logging,
)
from connector.reload import mapping_fingerprint
from connector.runners import live_runners
from connector.samples import sample_bodies
from connector.settings import Settings
from connector.sheets.backend import sheets_backend
from connector.store import open_work_store
from connector.store.records import FailedEvent
from connector.untrusted import as_text, for_rich, printable


@click.group()
def failed() -> None:
    """Events parked by a permanent error (for example a spreadsheet not shared with the account)."""


@failed.command("list")
@config_option
@click.option("--company", "company_id", type=int, default=None, help="Only this company's events.")
@click.option("--limit", type=click.IntRange(1), default=100, show_default=True)
def failed_list(config_path: Path, company_id: int | None, limit: int) -> None:
    """List parked events with the error that parked them, oldest first; then the events that wait to be
    retried by themselves (a worksheet held back, Google unreachable) with the reason."""
    settings = load_or_exit(config_path)
    queue = open_work_store(settings)
    try:
        events = queue.failed(company_id, limit)
        waiting = queue.failed(company_id, limit, waiting=True)
    finally:
        queue.close()
    console = Console()
    if events:
        console.print(_events_table("Failed events (doopage-sheets failed retry)", events))
    else:
        click.echo("no failed events")
    if waiting:
        console.print(_events_table("Waiting events (retried by themselves)", waiting))


def _events_table(title: str, events: list[FailedEvent]) -> Table:
    table = Table(title=title)
    for column in ("id", "company", "event type", "received", "attempts", "error"):
        table.add_column(column)
    for event in events:
        table.add_row(
            str(event.id),
            str(event.company_id),
            as_text(event.event_type),
            format_ms(event.received_ms),
            str(event.attempts),
            as_text(event.error),
        )
    return table


@failed.command("retry")
@config_option
@click.option("--company", "company_id", type=int, default=None, help="Only this company's events.")
@click.option(
    "--reload-wait",
    type=click.FloatRange(0),
    default=15.0,
    show_default=True,
    help="Seconds to wait for a running worker with an older mapping to reload.",
)
def failed_retry(config_path: Path, company_id: int | None, reload_wait: float) -> None:
    """Queue parked events again (after fixing the cause); the worker picks them up.

    A running `serve` or `worker` whose mapping is older than the one on disk (say the spreadsheet id was
    just fixed) is asked to reload first (SIGHUP), so that it does not park the events again; if it does
    not take the current mapping, nothing is queued.
    """
    from connector.sync.mapping import load_mapping

    settings = load_or_exit(config_path)
    with exit_on_config_error():
        mapping = load_mapping(settings)
    _reload_stale_runners(settings, mapping_fingerprint(mapping), reload_wait)
    queue = open_work_store(settings)
    try:
        count = queue.requeue("failed", company_id)
    finally:
        queue.close()
    click.echo(f"{count} failed event{'s' if count != 1 else ''} queued again")


def _reload_stale_runners(settings: Settings, fingerprint: str, wait_seconds: float) -> None:
    """Ask each running worker with another mapping to reload; exit 1 if one still has another after."""
    stale = [runner for runner in live_runners(settings.data_dir) if runner.mapping != fingerprint]
    if not stale:
        return
    for runner in stale:
        click.echo(
            f"the running {runner.command} (pid {runner.pid}) has an older mapping: asking it to reload"
        )
        with contextlib.suppress(ProcessLookupError):
            os.kill(runner.pid, signal.SIGHUP)
    deadline = time.monotonic() + wait_seconds
    while stale and time.monotonic() < deadline:
        time.sleep(0.1)
        stale = [runner for runner in live_runners(settings.data_dir) if runner.mapping != fingerprint]
    for runner in stale:
        click.echo(
            printable(
                f"the running {runner.command} (pid {runner.pid}) did not take the mapping of {settings.source}: "
                f"its log says why (it reads {runner.config}); fix that, or restart it. Nothing was queued again."
            ),
            err=True,
        )
    if stale:
        sys.exit(1)
    click.echo("reloaded")


@click.command()
@config_option
@click.option("--company", "company_id", type=int, required=True, help="The company to replay.")
@click.option(
    "--spreadsheet",
    "spreadsheet_id",
    default=None,
    help="Write to this spreadsheet instead of the mapped one (for moving to a new spreadsheet).",
)
def replay(config_path: Path, company_id: int, spreadsheet_id: str | None) -> None:
    """Rebuild a company's rows from its stored events and write them all again (idempotent)."""
    from connector.errors import StoreError
    from connector.sheets.errors import SheetsError
    from connector.sheets.writer import SheetWriter
    from connector.sync.hold import LockLost
    from connector.sync.mapping import load_mapping
    from connector.sync.replay import ReplayBusyError, company_or_error, replay_company

    settings = load_or_exit(config_path)
    setup_logging(settings, "warning")
    resources = contextlib.ExitStack()
    with exit_on_config_error():
        settings = resources.enter_context(sheets_backend(settings))
        mapping = load_mapping(settings)
        company = company_or_error(mapping, company_id)
        writer = SheetWriter.from_settings(settings.sheets, source=settings.source)
        writer.pool.check_pins(mapping)
    store = open_work_store(settings)
    target = spreadsheet_id or company.spreadsheet_id
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with resources, Progress(*columns) as progress:
            task = progress.add_task(f"rows to {for_rich(target)}", total=None)
            report = replay_company(
                company,
                store,
                writer,
                spreadsheet_id=spreadsheet_id,
                lease_ms=settings.worker.lease_ms,
                progress=lambda rows: progress.advance(task, rows),
            )
    except (SheetsError, ReplayBusyError, LockLost, StoreError) as exc:
        click.echo(printable(f"replay stopped: {exc}"), err=True)
        sys.exit(1)
    finally:
        store.close()
    click.echo(
        printable(
            f"company {company_id}: {report.events} events folded into {report.entities} customers and orders; "
            f"{report.rows_written} rows written to {target} in {report.requests} Sheets requests"
        )
    )


@click.command("send-samples")
@config_option
@click.option("--url", default=None, help="Webhook URL; default: this machine's service and first endpoint.")
def send_samples(config_path: Path, url: str | None) -> None:
    """POST DooPage's 11 sample events to a running service and print each answer."""
    if url is None:
        settings = load_or_exit(config_path)
        host = "127.0.0.1" if settings.server.host in ("0.0.0.0", "::") else settings.server.host  # noqa: S104
        token = settings.endpoints[0].token.reveal()
        url = f"http://{host}:{settings.server.port}/webhooks/doopage/{token}"
    failures = 0
    with httpx.Client(timeout=10) as http:
        for event_type, body in sample_bodies().items():
            try:
                response = http.post(url, content=body, headers={"content-type": "application/json"})
            except httpx.TransportError as exc:
                click.echo(printable(f"{event_type:<28} cannot reach the service: {exc}"), err=True)
                sys.exit(1)
            ok = response.status_code == 200
            failures += not ok
            answer = response.json().get("status") if ok else f"{response.status_code} {response.text}"
            click.echo(printable(f"{event_type:<28} {answer}"))
    if failures:
        sys.exit(1)
