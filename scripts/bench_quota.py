"""Benchmark: a credential whose quota other tools have mostly used up, and Google's 429s without Retry-After.

Starts the strict local Sheets server as a process with a quota of ``--reads`` reads and ``--writes``
writes per window (what other tools leave of Google's 60 per minute), answering 429 without a
``Retry-After`` header above it, as Google does. Runs the connector's worker in this process with its
default budget ceilings (50 reads and 50 writes per window) and feeds it ``--events`` distinct customer
events into its inbox at a steady rate over ``--stream-windows`` windows. The worker knows nothing of the
quota: it has to learn it from the 429s (its budgets cut on each 429, grown back on success).

The window is simulated: ``--window`` seconds stand for Google's minute, on both sides (the server's
quota window, the connector's ``rate_limit.window_seconds``, and the worker's delays and back-offs,
scaled by the same factor), so a run of 30 "minutes" takes 90 s.

Prints the requests the worker made, how many the quota refused (target: at most 25%), when the stream
converged (every event written), the rows in the sheet, and the budgets the worker ended with.

    python scripts/bench_quota.py                       # 1,500 events, 8 + 8 per 3-second "minute"
    python scripts/bench_quota.py --window 60           # in real time (about half an hour)
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import click
import msgspec
from loadgen import customer_event
from servicekit import MAPPING

from connector.events import decode_body
from connector.localsheets.testing import local_sheets_process
from connector.settings import Settings, load_settings
from connector.store import open_work_store
from connector.store.records import InboxRecord
from connector.store.sqlite_intake import SqliteInbox
from connector.sync.backfill import record_for
from connector.sync.worker import WorkerThread

TOKEN = "bench-quota-token-0123456789abcdef"
SPREADSHEET = "bench-quota"


def write_settings(folder: Path, api_root: str, window: float) -> Path:
    """Settings: the shipped mapping on the bench spreadsheet, default budgets over a simulated window."""
    mapping = MAPPING.read_text(encoding="utf-8").replace('"doopage-demo"', f'"{SPREADSHEET}"')
    (folder / "mapping.toml").write_text(mapping, encoding="utf-8")
    # The worker's own timings (defaults: flush after 500 ms, poll every 100 ms, back off from 2 s to
    # 5 min) run on the same simulated clock as the quota.
    scale = window / 60
    timings = {"max_delay_ms": 500, "poll_ms": 100, "backoff_ms": 2_000, "max_backoff_ms": 300_000}
    worker_lines = "".join(f"{name} = {max(1, round(ms * scale))}\n" for name, ms in timings.items())
    path = folder / "bench.toml"
    path.write_text(
        f'[server]\ndata_dir = "data"\nlog_level = "error"\n'
        f'[[endpoints]]\nname = "bench"\ntoken = "{TOKEN}"\nvalidation_key = "bench-key"\n'
        f'[mapping]\nfile = "mapping.toml"\n'
        f'[sheets]\napi_root = "{api_root}"\n'
        f"rate_limit = {{ window_seconds = {window} }}\n"
        f"retry = {{ max_seconds = {window * 4} }}\n"
        f"[worker]\nembedded = false\n{worker_lines}",
        encoding="utf-8",
    )
    return path


def record(body: bytes) -> InboxRecord:
    """A webhook body as the intake stores it once it has checked it (a pending event)."""
    decoded = decode_body(body)
    imported = record_for(decoded.event, body, decoded.content_key, int(time.time() * 1000), "bench")
    return msgspec.structs.replace(imported, status="pending")


async def stream(data_dir: Path, bodies: list[bytes], window: float, windows: int) -> float:
    """Store the bodies in the inbox over ``windows`` windows, one delivery per simulated second."""
    inbox = SqliteInbox.open(data_dir)
    started = time.perf_counter()
    ticks = windows * 60
    try:
        for i in range(ticks):
            chunk = bodies[i * len(bodies) // ticks : (i + 1) * len(bodies) // ticks]
            if chunk:
                await inbox.put_many([record(body) for body in chunk])
            await asyncio.sleep(max(0.0, started + (i + 1) * window / 60 - time.perf_counter()))
    finally:
        inbox.close()
    return time.perf_counter() - started


def left(settings: Settings) -> int:
    """Events not yet done (pending or failed)."""
    store = open_work_store(settings)
    try:
        return sum(row.count for row in store.counts() if row.status in ("pending", "failed"))
    finally:
        store.close()


@click.command()
@click.option("--events", default=1500, show_default=True)
@click.option("--reads", default=8, show_default=True, help="Reads per window the quota leaves us.")
@click.option("--writes", default=8, show_default=True, help="Writes per window the quota leaves us.")
@click.option("--window", default=3.0, show_default=True, help="Seconds standing for Google's minute.")
@click.option("--stream-windows", default=20, show_default=True, help="Windows the events arrive over.")
def main(events: int, reads: int, writes: int, window: float, stream_windows: int) -> None:
    """Run the stream and print the figures."""
    with (
        tempfile.TemporaryDirectory(prefix="bench-quota-") as folder,
        local_sheets_process(strict=True) as sheets,
    ):
        sheets.create_spreadsheet(SPREADSHEET)
        sheets.set_quota(reads_per_window=reads, writes_per_window=writes, window_seconds=window)
        settings = load_settings(write_settings(Path(folder), sheets.url, window))
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        bodies = [customer_event(n) for n in range(events)]
        thread = WorkerThread(settings)
        worker = thread.start()
        started = time.perf_counter()
        streamed = asyncio.run(stream(settings.data_dir, bodies, window, stream_windows))
        deadline = started + window * (stream_windows + 200)
        while left(settings) and time.perf_counter() < deadline:
            time.sleep(window / 10)
        converged = time.perf_counter() - started
        remaining = left(settings)
        thread.stop()
        counts = sheets.counts()
        refused = sheets.quota()["refused"]
        rows = len(sheets.sheet_values(SPREADSHEET, "Customers")) - 1
        budgets = worker.writer.budget()
    made = sum(counts.values())
    refused_total = sum(refused.values())
    click.echo(
        f"quota: {reads} reads + {writes} writes per {window:g}-second window, 429 without Retry-After"
    )
    click.echo(
        f"stream: {events} events over {stream_windows} windows (sent in {streamed / window:.1f}); "
        "connector ceilings 50 + 50 per window"
    )
    click.echo(f"requests made: {made} ({counts})")
    click.echo(f"refused (429): {refused_total} ({refused}) = {refused_total / made:.1%} of requests made")
    click.echo(
        f"converged: {'yes' if not remaining else f'NO, {remaining} events left'} after "
        f"{converged:.1f} s = {converged / window:.1f} windows; rows in Customers: {rows}"
    )
    for budget in budgets:
        click.echo(
            f"final {budget.kind} budget: {budget.budget:g} per window (429s seen: {budget.throttled})"
        )


if __name__ == "__main__":
    main()
