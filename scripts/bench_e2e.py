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

With ``--burst``: ``serve`` with its default settings (worker embedded, the built-in local Sheets server,
the default quota) takes ``--burst-seconds`` of wrk load at full speed (32 connections, 2 threads; the
Python generator if wrk is not on PATH) of customer_created events, each a new customer; then the inbox
is polled until nothing is pending and the Customers worksheet read until it holds exactly one row per
stored event. Prints the acknowledged events, their rate, and how long after the end of the load the
sheet was exact (target: at most 60 s).

    python scripts/bench_e2e.py --burst                 # one minute of load
    python scripts/bench_e2e.py --burst --burst-seconds 10

With ``--companies N``: N companies, each with its own spreadsheet, written with a pool of 1 and of 4
service accounts (``sheets.credentials``), webhook-to-sheet p50/p95 of each next to the floor the
per-credential quota sets (see ``bench_companies.py``; the quota window is shortened, and said so).

    python scripts/bench_e2e.py --companies 200         # 1 and 4 credentials, about 4 minutes
    python scripts/bench_e2e.py --companies 200 --pools 1,2,4 --window-seconds 20
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
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
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from bench_companies import run_companies
from loadgen import SendResult, created_event, run_load, send_each, wait_answering
from servicekit import (
    PATH,
    TomlValue,
    any_pending,
    column,
    inbox_counts,
    local_sheets,
    log_tail,
    start_service,
    stop,
    stored_bodies,
    write_settings,
)
from wrkload import Numbering, Tally, have_wrk, run_wrk, tally_of

from connector.events import CUSTOMER_EVENT_TYPES
from connector.localsheets.testing import LocalSheets, LocalSheetsAdminError, local_sheets_process
from connector.settings import WorkerSettings
from connector.store.sqlite_schema import inbox_path
from connector.threaded_server import free_port

SPREADSHEET = "bench-e2e"
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


def settings_tables(
    api_root: str | None, local_port: int | None, worker: dict[str, int], quota: int | None, embedded: bool
) -> dict[str, dict[str, TomlValue]]:
    """The settings beyond servicekit's: the Sheets API (the built-in local server on ``local_port`` when
    ``api_root`` is None), the quota and the worker settings given; defaults for the rest."""
    sheets: dict[str, TomlValue] = {} if api_root is None else {"api_root": api_root}
    if quota is not None:
        sheets["rate_limit"] = {"reads_per_minute": quota, "writes_per_minute": quota}
    worker_table: dict[str, TomlValue] = {**worker, **({} if embedded else {"embedded": False})}
    tables: dict[str, dict[str, TomlValue]] = {"sheets": sheets, "worker": worker_table}
    if local_port is not None:
        tables["local_sheets"] = {"port": local_port}
    return tables


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


def flush_sizes(data_dir: Path) -> list[tuple[int, int]]:
    """The flushes that settled events, from the times the inbox marked them done: when each settled
    (milliseconds since the epoch) and how many events it settled.

    A flush marks its events done in one transaction, within a millisecond or two, and the next flush
    needs at least a read and a write first; so settle times more than ``FLUSH_GAP_MS`` apart are
    different flushes."""
    conn = sqlite3.connect(f"{inbox_path(data_dir).as_uri()}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT updated_ms, COUNT(*) FROM events WHERE status = 'done' GROUP BY 1 ORDER BY 1"
        ).fetchall()
    finally:
        conn.close()
    sizes: list[tuple[int, int]] = []
    last = None
    for at, count in rows:
        if last is not None and at - last <= FLUSH_GAP_MS:
            sizes[-1] = (sizes[-1][0], sizes[-1][1] + count)
        else:
            sizes.append((int(at), int(count)))
        last = at
    return sizes


def flushes(data_dir: Path) -> int:
    """How many flushes settled events (see :func:`flush_sizes`)."""
    return len(flush_sizes(data_dir))


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
BURST_TARGET_SECONDS = 60.0


def burst_load(port: int, seconds: int, connections: int) -> tuple[Tally, str]:
    """Full-speed customer_created events (distinct customers) for ``seconds``: wrk (2 threads) if it is
    on PATH, else the Python generator; what it saw, and which generator it was."""
    if have_wrk():
        tally = run_wrk(port, PATH, seconds, Numbering(), kind="customer_created", connections=connections)
        return tally, "wrk (2 threads)"
    result = asyncio.run(
        run_load("127.0.0.1", port, PATH, created_event, itertools.count(), connections, seconds)
    )
    return tally_of(result), "the Python load generator (wrk is not on PATH)"


def customer_ids(values: Iterable[Any]) -> list[int]:
    """The customer ids among a column's values or stored bodies' customers (blank cells left out)."""
    return [int(value) for value in values if isinstance(value, int | float) and not isinstance(value, bool)]


def wait_exact(
    sheets: LocalSheets, data_dir: Path, since: float, timeout: float, poll_seconds: float
) -> tuple[float | None, int, int]:
    """Wait until the Customers worksheet holds exactly one row per stored event (each a customer of
    its own), every stored event settled; the seconds from ``since`` (perf_counter) to the look at the
    inbox that showed nothing pending, when the read that followed found the sheet exact (None: not
    within ``timeout``), the stored events and the rows last seen.

    The inbox is polled (one index lookup) until nothing is pending, and only then the (large) sheet
    read, so the polls do not slow the worker down. An event is marked done only after its rows were
    written, so when nothing is pending the sheet already holds every row; the read confirms it.
    Acknowledged events are among the stored ones (some more may have been stored with their answer
    still on the way when the load stopped)."""
    expected: set[int] | None = None
    rows: list[int] = []
    while time.perf_counter() < since + timeout:
        if not any_pending(data_dir):
            settled = time.perf_counter()
            if expected is None:
                stored = [json.loads(body)["data"]["customer"]["id"] for body in stored_bodies(data_dir)]
                expected = set(customer_ids(stored))
            rows = customer_ids(column(sheets, SPREADSHEET, "Customers", "Customer ID"))
            if len(rows) == len(expected) and set(rows) == expected:
                return settled - since, len(expected), len(rows)
        time.sleep(poll_seconds)
    return None, len(expected or ()), len(rows)


def run_burst(
    seconds: int,
    connections: int,
    worker: dict[str, int],
    quota: int | None,
    settle_timeout: float,
    poll_ms: int,
    sheets_process: bool,
) -> None:
    """The --burst benchmark: load at full speed, then how long until the sheet is exact."""
    with tempfile.TemporaryDirectory(prefix="bench-burst-") as folder, contextlib.ExitStack() as stack:
        port = free_port()
        if sheets_process:
            sheets = stack.enter_context(local_sheets_process())
            sheets.create_spreadsheet(SPREADSHEET)
            tables = settings_tables(sheets.url, None, worker, quota, True)
        else:
            local_port = free_port()
            tables = settings_tables(None, local_port, worker, quota, True)
            sheets = local_sheets(local_port)
            stack.callback(sheets.close)
        config = write_settings(Path(folder), port, SPREADSHEET, **tables)
        data_dir = Path(folder) / "data"
        service = start_service(config, port=port)
        try:
            sheets.reset_counts()
            tally, generator = burst_load(port, seconds, connections)
            load_end, load_end_ms = time.perf_counter(), time.time() * 1000
            during = sheets.total_requests()
            caught_up, stored, rows = wait_exact(sheets, data_dir, load_end, settle_timeout, poll_ms / 1000)
            counts = sheets.counts()
            inbox = inbox_counts(data_dir)
            sizes = flush_sizes(data_dir)
        finally:
            stop(service)
        if service.returncode:
            click.echo(f"serve exited with {service.returncode}:\n{log_tail(config)}", err=True)
    where = (
        "a local Sheets server process (memory only) at sheets.api_root"
        if sheets_process
        else "the built-in local Sheets server"
    )
    click.echo(
        f"\nburst: {seconds} s of customer_created events (a new customer each) at full speed from "
        f"{generator}, {connections} connections, against `serve` with default settings "
        f"(worker embedded, {where}; worker overrides {worker or 'none'}, "
        f"quota {quota or 'default (50 reads + 50 writes)'} per minute)"
    )
    click.echo(
        f"acknowledged: {tally.acknowledged} in {tally.seconds:.1f} s = {tally.per_second:.0f}/s; "
        f"errors {tally.errors}; latency p50 {tally.percentile_ms(50):.1f} ms, "
        f"p99 {tally.percentile_ms(99):.1f} ms"
    )
    click.echo(
        f"stored: {sum(inbox.values())} events; inbox at the end {dict(sorted(inbox.items()))}; "
        f"Customers rows {rows if stored else 'not read (events were still pending)'}"
    )
    timeline = ", ".join(f"{(at - load_end_ms) / 1000:+.1f} s: {n}" for at, n in sizes)
    click.echo(
        f"flushes ({len(sizes)}; when each settled, from the end of the load, and its events): {timeline}"
    )
    click.echo(
        f"Sheets requests: {during} during the load, {sum(counts.values())} in all, "
        f"by kind {dict(sorted(counts.items()))}"
    )
    if caught_up is None:
        click.echo(f"catch-up: the sheet was NOT exact within {settle_timeout:g} s after the load")
    else:
        verdict = "met" if caught_up <= BURST_TARGET_SECONDS else "NOT met"
        click.echo(
            f"catch-up: the sheet was exact {caught_up:.1f} s after the end of the load "
            f"(target <= {BURST_TARGET_SECONDS:g} s: {verdict})"
        )


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
@click.option(
    "--burst",
    is_flag=True,
    help="Instead: full-speed wrk load of new customers, then how long until the sheet is exact.",
)
@click.option(
    "--companies",
    type=int,
    default=0,
    help="Instead: this many companies, each with its own spreadsheet, with pools of --pools credentials.",
)
@click.option("--pools", default="1,4", show_default=True, help="With --companies: credentials per run.")
@click.option(
    "--companies-rate", default=100.0, show_default=True, help="With --companies: webhooks per second."
)
@click.option(
    "--companies-seconds", default=60.0, show_default=True, help="With --companies: seconds of load."
)
@click.option(
    "--window-seconds",
    default=10.0,
    show_default=True,
    help="With --companies: the simulated quota window (Google's is 60 s).",
)
@click.option("--burst-seconds", default=60, show_default=True, help="Seconds of load with --burst.")
@click.option("--burst-connections", default=32, show_default=True, help="Connections of the --burst load.")
@click.option(
    "--burst-sheets",
    type=click.Choice(["builtin", "process"]),
    default="builtin",
    show_default=True,
    help="With --burst: the built-in local Sheets server (the default settings), or a local Sheets "
    "server process without a data file at sheets.api_root (to see the worker without the built-in "
    "server's cost of saving its file on every write).",
)
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
    burst: bool,
    burst_seconds: int,
    burst_connections: int,
    burst_sheets: str,
    companies: int,
    pools: str,
    companies_rate: float,
    companies_seconds: float,
    window_seconds: float,
) -> None:
    """Measure acknowledgement and webhook-to-sheet latency, and the Sheets requests used."""
    if companies:
        sizes = [int(size) for size in pools.split(",")]
        run_companies(companies, sizes, companies_rate, companies_seconds, window_seconds, settle_timeout)
        return
    worker = {"batch_size": batch_size, "max_delay_ms": max_delay_ms}
    overrides = {name: value for name, value in worker.items() if value is not None}
    if burst:
        run_burst(
            burst_seconds,
            burst_connections,
            overrides,
            quota,
            settle_timeout,
            poll_ms,
            burst_sheets == "process",
        )
        return
    defaults = WorkerSettings()
    bodies = [event_body(n, customers) for n in range(events)]
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as folder, local_sheets_process() as sheets:
        sheets.create_spreadsheet(SPREADSHEET)
        port = free_port()
        tables = settings_tables(sheets.url, None, overrides, quota, not worker_process)
        config = write_settings(Path(folder), port, SPREADSHEET, **tables)
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
            while inbox_counts(data_dir).get("pending") or not all(n in observer.seen for n in last.values()):
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
