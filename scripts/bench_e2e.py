"""Benchmark: webhooks in, rows out, end to end, under the Sheets quota.

Starts the local Sheets server and ``doopage-sheets serve`` (worker embedded) as processes, with the
shipped mapping and, unless told otherwise, the default worker and quota settings (50 reads and 50 writes
per minute). Sends ``--events`` customer events (all nine customer event types in turn, over
``--customers`` customers) at a fixed offered rate with the shared load generator, and meanwhile polls
the Customers worksheet through the server's admin route. Every event sets its customer's name to a
marker of its own (``m<n>``) and carries a timestamp later than every earlier event, so an event is
reflected in the sheet from the first poll that shows its marker or a later one of the same customer.

Prints acknowledgement throughput and latency, webhook-to-sheet latency (from the send to the poll that
saw the event), and the Sheets requests the connector made: by kind, per flush, and the most in any
60 seconds. Admin calls (the polls) are not API requests and are not counted by the server.

    python scripts/bench_e2e.py                         # 10,000 events at 200/s, default settings
    python scripts/bench_e2e.py --max-delay-ms 1200     # try another worker setting
"""

from __future__ import annotations

import asyncio
import json
import math
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from bisect import bisect_left
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from loadgen import SendResult, send_each, wait_answering

from connector.events import CUSTOMER_EVENT_TYPES
from connector.localsheets.testing import LocalSheets, LocalSheetsAdminError, local_sheets_process
from connector.settings import WorkerSettings
from connector.store.sqlite_schema import inbox_path
from connector.threaded_server import free_port

TOKEN = "bench-e2e-token-0123456789abcdef"
PATH = f"/webhooks/doopage/{TOKEN}"
SPREADSHEET = "bench-e2e"
MAPPING = Path(__file__).resolve().parents[1] / "config" / "mapping.example.toml"
BASE_MS = 1_700_000_000_000
WINDOW_SECONDS = 60.0
FLUSH_GAP_MS = 5


def marker(n: int) -> str:
    """The customer name event ``n`` writes."""
    return f"m{n}"


def event_body(n: int, customers: int) -> bytes:
    """The n-th event: a customer event of the n-th type in turn, naming its customer ``m<n>``."""
    event_type = CUSTOMER_EVENT_TYPES[n % len(CUSTOMER_EVENT_TYPES)]
    staff = {"id": n % 7 + 1, "name": f"Staff {n % 7 + 1}"}
    data: dict[str, Any] = {"customer": {"id": n % customers + 1, "name": marker(n)}}
    if event_type in ("customer_took", "customer_closed", "tag_set", "tag_unset"):
        data["staff"] = staff
    if event_type == "customer_transferred":
        data["staff"], data["new_staff"] = staff, {"id": 99, "name": "Staff 99"}
    if event_type in ("tag_set", "tag_unset"):
        data["tags"] = [{"id": n % 5 + 1, "name": f"tag {n % 5 + 1}"}]
    if event_type == "note_changed":
        data["note"] = f"note {n}"
    if event_type == "customer_pipeline_updated":
        data["pipeline"] = {"id": n % 4 + 1, "name": f"Stage {n % 4 + 1}"}
    # DooPage leaves the timestamp off four types; giving it to all keeps the markers in send order.
    body = {"company_id": 1, "event_type": event_type, "timestamp": BASE_MS + n, "data": data}
    return json.dumps(body).encode()


def write_settings(
    folder: Path, api_root: str, port: int, worker: dict[str, int], quota: int | None, embedded: bool
) -> Path:
    """Settings: the shipped mapping on the bench spreadsheet; defaults except what is given."""
    mapping = MAPPING.read_text(encoding="utf-8").replace('"doopage-demo"', f'"{SPREADSHEET}"')
    (folder / "mapping.toml").write_text(mapping, encoding="utf-8")
    worker_lines = "".join(f"{name} = {value}\n" for name, value in worker.items())
    worker_lines += "" if embedded else "embedded = false\n"
    quota_line = (
        ""
        if quota is None
        else f"rate_limit = {{ reads_per_minute = {quota}, writes_per_minute = {quota} }}\n"
    )
    path = folder / "bench.toml"
    path.write_text(
        f'[server]\nport = {port}\ndata_dir = "data"\nlog_level = "warning"\n'
        f'[[endpoints]]\nname = "bench"\ntoken = "{TOKEN}"\nvalidation_key = "bench-key"\n'
        f'[mapping]\nfile = "mapping.toml"\n'
        f'[sheets]\napi_root = "{api_root}"\n{quota_line}'
        f"[worker]\n{worker_lines}",
        encoding="utf-8",
    )
    return path


@dataclass
class Observer:
    """Polls the sheet and the request counts from a thread; remembers when each marker first showed."""

    sheets: LocalSheets
    poll_seconds: float
    seen: dict[int, float] = field(default_factory=dict)  # marker -> perf_counter of the poll that saw it
    counts: list[tuple[float, dict[str, int]]] = field(default_factory=list)  # the request counts over time
    polls: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        """Poll until stopped."""
        while not self.stop.is_set():
            started = time.perf_counter()
            self.poll_once()
            self.stop.wait(max(0.0, self.poll_seconds - (time.perf_counter() - started)))

    def poll_once(self) -> None:
        """One look at the Customers worksheet and at the request counts."""
        try:
            values = self.sheets.sheet_values(SPREADSHEET, "Customers")
        except LocalSheetsAdminError:  # the worksheet does not exist before the first flush
            values = []
        counts = self.sheets.counts()
        # The answer came back now: the state it shows was in the sheet by then (an upper bound).
        at = time.perf_counter()
        self.polls += 1
        self.counts.append((at, counts))
        if not values:
            return
        column = values[0].index("Name")
        for row in values[1:]:
            name = row[column] if column < len(row) else ""
            if isinstance(name, str) and name.startswith("m") and name[1:].isdigit():
                self.seen.setdefault(int(name[1:]), at)


def sheet_latencies(sent: SendResult, seen: dict[int, float], customers: int) -> list[float]:
    """Per event, seconds from its send to the first poll that showed it or a later event of its customer.

    A customer's later events carry later timestamps, so once one of them shows, this event's write has
    been reflected (and possibly overwritten in the same flush, before a poll could see it alone)."""
    latest: dict[int, list[tuple[int, float]]] = {}
    for n, at in sorted(seen.items()):
        latest.setdefault(n % customers, []).append((n, at))
    latencies = []
    for delivery in sent.deliveries:
        n = delivery.index
        shown = latest.get(n % customers, [])
        i = bisect_left(shown, (n, -math.inf))
        later = [at for _, at in shown[i:]]
        if later:
            latencies.append(min(later) - delivery.sent_at)
    return latencies


def flushes(data_dir: Path) -> int:
    """How many flushes settled events, from the times the inbox marked them done.

    A flush marks its events done in one transaction, within a millisecond or two, and the next flush
    needs at least a read and a write first; so settle times more than ``FLUSH_GAP_MS`` apart are
    different flushes."""
    conn = sqlite3.connect(f"{inbox_path(data_dir).as_uri()}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT DISTINCT updated_ms FROM events WHERE status = 'done' ORDER BY 1")
        times = [int(at) for (at,) in rows]
    finally:
        conn.close()
    return sum(1 for i, at in enumerate(times) if i == 0 or at - times[i - 1] > FLUSH_GAP_MS)


def pending(data_dir: Path) -> int:
    """Events the worker has not settled yet."""
    conn = sqlite3.connect(f"{inbox_path(data_dir).as_uri()}?mode=ro", uri=True)
    try:
        (count,) = conn.execute("SELECT COUNT(*) FROM events WHERE status = 'pending'").fetchone()
        return int(count)
    finally:
        conn.close()


def most_in_window(series: list[tuple[float, dict[str, int]]], kinds: set[str]) -> int:
    """The most requests of these kinds counted within any 60 seconds (from the polled count series)."""
    times = [at for at, _ in series]
    totals = [sum(n for kind, n in counts.items() if kind in kinds) for _, counts in series]
    most = 0
    for i, at in enumerate(times):
        j = bisect_left(times, at - WINDOW_SECONDS)
        # The count just before the window starts (zero before the first poll).
        before = totals[j - 1] if j > 0 else 0
        most = max(most, totals[i] - before)
    return most


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100)."""
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=1000)[round(q * 10) - 1]


READ_KINDS = {"values.batchGet", "spreadsheets.get", "values.get", "drive.files.get"}


@click.command()
@click.option("--events", default=10_000, show_default=True, help="Events to send.")
@click.option("--rate", default=200.0, show_default=True, help="Offered rate, events per second.")
@click.option("--customers", default=500, show_default=True, help="Customers the events are spread over.")
@click.option("--connections", default=16, show_default=True, help="Sending connections.")
@click.option("--poll-ms", default=50, show_default=True, help="How often the sheet is polled.")
@click.option("--batch-size", type=int, default=None, help="worker.batch_size (default: the service's).")
@click.option("--max-delay-ms", type=int, default=None, help="worker.max_delay_ms (default: the service's).")
@click.option("--quota", type=int, default=None, help="Reads and writes per minute (default: the service's).")
@click.option(
    "--worker-process",
    is_flag=True,
    help="Run the worker as its own process (`doopage-sheets worker`) instead of inside `serve`.",
)
@click.option("--settle-timeout", default=300.0, show_default=True, help="Seconds to wait for the sheet.")
def main(
    events: int,
    rate: float,
    customers: int,
    connections: int,
    poll_ms: int,
    batch_size: int | None,
    max_delay_ms: int | None,
    quota: int | None,
    worker_process: bool,
    settle_timeout: float,
) -> None:
    """Measure acknowledgement and webhook-to-sheet latency, and the Sheets requests used."""
    worker = {"batch_size": batch_size, "max_delay_ms": max_delay_ms}
    overrides = {name: value for name, value in worker.items() if value is not None}
    defaults = WorkerSettings()
    bodies = [event_body(n, customers) for n in range(events)]
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as folder, local_sheets_process() as sheets:
        sheets.create_spreadsheet(SPREADSHEET)
        port = free_port()
        config = write_settings(Path(folder), sheets.url, port, overrides, quota, not worker_process)
        commands = ["serve", "worker"] if worker_process else ["serve"]
        processes = [
            subprocess.Popen([sys.executable, "-m", "connector", command, "--config", str(config)])
            for command in commands
        ]
        service = processes[0]
        try:
            wait_answering(port, service, "/readyz")
            sheets.reset_counts()
            observer = Observer(sheets, poll_ms / 1000)
            poller = threading.Thread(target=observer.run, name="sheet-poller")
            poller.start()
            sent = asyncio.run(send_each("127.0.0.1", port, PATH, bodies, connections, rate=rate))
            data_dir = Path(folder) / "data"
            deadline = time.monotonic() + settle_timeout
            # Settled: nothing pending in the inbox, and every customer's last marker seen in the sheet.
            last = {n % customers: n for n in range(events)}
            while pending(data_dir) or not all(n in observer.seen for n in last.values()):
                if time.monotonic() > deadline:
                    click.echo("the sheet did not settle in time; figures below are partial", err=True)
                    break
                time.sleep(0.1)
            observer.stop.set()
            poller.join()
            observer.poll_once()
            flush_count = flushes(data_dir)
        finally:
            for process in processes:
                process.terminate()
                process.wait(timeout=60)

    acks = sent.load_result()
    latencies = sheet_latencies(sent, observer.seen, customers)
    counts = observer.counts[-1][1]
    total = sum(counts.values())
    reads = sum(n for kind, n in counts.items() if kind in READ_KINDS)
    writes = total - reads
    write_kinds = set(counts) - READ_KINDS
    settings_used = {
        **{"batch_size": defaults.batch_size, "max_delay_ms": defaults.max_delay_ms},
        **overrides,
    }
    click.echo(
        f"\n{events} events at {rate:.0f}/s offered over {connections} connections, {customers} customers"
    )
    click.echo(
        f"worker: batch_size={settings_used['batch_size']} max_delay_ms={settings_used['max_delay_ms']}; "
        f"quota: {quota or 'default (50 reads + 50 writes)'} per minute; "
        f"worker {'in its own process' if worker_process else 'embedded in serve'}"
    )
    click.echo(
        f"acknowledged: {acks.acknowledged}/{events} in {acks.seconds:.1f} s = {acks.per_second:.0f}/s; "
        f"latency p50 {acks.percentile_ms(50):.1f} ms, p99 {acks.percentile_ms(99):.1f} ms"
    )
    click.echo(
        f"webhook-to-sheet ({len(latencies)} events seen, {observer.polls} polls every ~{poll_ms} ms): "
        f"p50 {percentile(latencies, 50):.2f} s, p95 {percentile(latencies, 95):.2f} s, "
        f"p99 {percentile(latencies, 99):.2f} s, max {max(latencies, default=math.nan):.2f} s"
    )
    click.echo(
        f"Sheets requests: {total} ({reads} reads, {writes} writes) by kind {dict(sorted(counts.items()))}"
    )
    per_flush = total / flush_count if flush_count else math.nan
    click.echo(
        f"flushes: {flush_count}; requests per flush {per_flush:.2f} (one spreadsheet); "
        f"events per flush {events / flush_count if flush_count else math.nan:.0f}"
    )
    click.echo(
        f"requests beyond 2 per flush: {total - 2 * flush_count} (the first flush into a new spreadsheet "
        "also fetches its worksheet list, to create the worksheets)"
    )
    click.echo(
        f"most in any 60 s: {most_in_window(observer.counts, READ_KINDS)} reads, "
        f"{most_in_window(observer.counts, write_kinds)} writes"
    )


if __name__ == "__main__":
    main()
