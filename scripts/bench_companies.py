"""The ``--companies`` benchmark of ``bench_e2e.py``: many companies, each with a spreadsheet of its own,
written with one credential and with a pool of several, next to the floor the quota sets.

Google counts Sheets requests per minute per user (60 reads + 60 writes; each service account is a user)
and per project (300 + 300). The connector keeps each credential under its budget ``B`` (50 reads and 50
writes a minute by default) and a flush of one spreadsheet is a read and a write, so one credential
flushes at most ``B`` spreadsheets a window. While every spreadsheet of a credential has events waiting
(``n`` of them), each is flushed once every ``n / B`` windows, and an event waits for its spreadsheet's
next flush: uniform over ``[0, n * W / B]``. That is the floor: p50 ``n W / 2B``, p95 ``0.95 n W / B``
(mixed over the credentials by their share of the spreadsheets). A pool of ``k`` credentials divides
``n`` by about ``k``.

Each run: a local Sheets server process with ``--companies`` spreadsheets (their Customers worksheet's
header row in place, so every flush is the steady read + write) and Google's quotas per caller and per
project, counted over a window of ``--window-seconds`` (a faster minute, so that many minutes fit in a
short run; the connector's ``sheets.rate_limit.window_seconds`` is set to the same); service-account
files that sign in at its token endpoint; ``doopage-sheets serve`` (worker embedded, default worker
settings) with ``sheets.credentials`` listing ``k`` of them. Webhooks go at ``--rate`` a second for
``--seconds``, each to a company drawn at random and a customer of its own among 20; then the inbox is
polled until nothing is pending. Webhook-to-sheet latency is the inbox's own record of each event: from
its receipt (stored, then acknowledged) to the commit that follows the accepted write of its rows.
"""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import click
from loadgen import send_each
from servicekit import PATH, TOKEN, inbox_counts, log_tail, start_service, stop, table_toml

from connector.localsheets.quota import quota_class
from connector.localsheets.testing import LocalSheets, local_sheets_process, write_service_account
from connector.sheets.pool import choose
from connector.store.sqlite_schema import inbox_path
from connector.threaded_server import free_port

GOOGLE_MINUTE = 60.0
PER_USER = 60  # Google's requests a minute per user, each of reads and writes
PER_PROJECT = 300  # and per project
BUDGET = 50  # the connector's default sheets.rate_limit, per credential
CUSTOMERS_PER_COMPANY = 20
TITLE = "Customers"
HEADERS = ["Customer ID", "Name", "Last event"]


def spreadsheet_of(company: int) -> str:
    """The spreadsheet of company ``company``."""
    return f"bench-company-{company}"


def mapping_toml(companies: int) -> str:
    """A mapping of ``companies`` companies (1..n), each to its own spreadsheet, one Customers worksheet."""
    columns = (
        '{ header = "Customer ID", source = "customer.id" }, { header = "Name", source = "customer.name" }, '
        '{ header = "Last event", source = "customer.last_event_type" }'
    )
    return "".join(
        f'[[companies]]\ncompany_id = {c}\nspreadsheet_id = "{spreadsheet_of(c)}"\n'
        f'[[companies.worksheets]]\ntitle = "{TITLE}"\nentity = "customers"\nkey = "Customer ID"\n'
        f"columns = [{columns}]\n\n"
        for c in range(1, companies + 1)
    )


def settings_toml(port: int, api_root: str, credentials: Sequence[str], window: float) -> str:
    """The service's settings: its port, one endpoint, the mapping file, the pool, the default budget
    counted over ``window`` seconds; defaults for the rest (worker embedded)."""
    listed = ", ".join(json.dumps(name) for name in credentials)
    rate_limit = f"{{ reads_per_minute = {BUDGET}, writes_per_minute = {BUDGET}, window_seconds = {window} }}"
    return (
        table_toml("server", {"port": port, "data_dir": "data", "log_level": "warning"})
        + f'[[endpoints]]\nname = "bench"\ntoken = "{TOKEN}"\nvalidation_key = "bench-key"\n'
        + '[mapping]\nfile = "mapping.toml"\n'
        + table_toml("console", {"enabled": False})
        + f'[sheets]\napi_root = "{api_root}"\ncredentials = [{listed}]\nrate_limit = {rate_limit}\n'
    )


def event_bodies(companies: int, count: int, seed: int) -> list[bytes]:
    """``count`` customer_updated webhooks, each for a random company and one of its customers, each
    later than the one before."""
    rng = random.Random(seed)
    bodies = []
    for n in range(count):
        company = rng.randint(1, companies)
        customer = rng.randint(1, CUSTOMERS_PER_COMPANY)
        body = {
            "company_id": company,
            "event_type": "customer_updated",
            "timestamp": 1_700_000_000_000 + n,
            "data": {"customer": {"id": customer, "name": f"m{n}"}},
        }
        bodies.append(json.dumps(body).encode())
    return bodies


def floor_percentile(per_credential: Sequence[int], window: float, q: float) -> float:
    """The q-th percentile (0-1) of the quota floor: an event on a credential of ``n`` spreadsheets waits
    uniform over [0, n * window / BUDGET]; credentials weighted by their share of the spreadsheets."""
    total = sum(per_credential)
    cycles = [(n / total, n * window / BUDGET) for n in per_credential if n]

    def below(t: float) -> float:
        return sum(share * min(1.0, t / cycle) for share, cycle in cycles)

    low, high = 0.0, max(cycle for _, cycle in cycles)
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if below(middle) < q else (low, middle)
    return high


def settled_latencies(data_dir: Path) -> list[float]:
    """Seconds from receipt to the commit after the write, of every event settled as done."""
    conn = sqlite3.connect(f"{inbox_path(data_dir).as_uri()}?mode=ro", uri=True, timeout=10)
    try:
        rows = conn.execute("SELECT updated_ms - received_ms FROM events WHERE status = 'done'").fetchall()
    finally:
        conn.close()
    return [ms / 1000 for (ms,) in rows]


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100)."""
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=1000)[round(q * 10) - 1]


@dataclass
class PoolRun:
    """What one run with ``k`` credentials saw."""

    credentials: int
    per_credential: list[int]  # spreadsheets each credential writes
    sent: int
    acknowledged: int
    latencies: list[float]
    settled_after: float | None  # seconds from the end of the load until nothing was pending
    reads: int
    writes: int
    refused: int  # requests the server refused over a quota (429)
    load_seconds: float


def make_sheets(sheets: LocalSheets, companies: int) -> None:
    """Every company's spreadsheet, with the Customers worksheet's header row in place."""
    for company in range(1, companies + 1):
        sheets.create_spreadsheet(
            spreadsheet_of(company), [{"title": TITLE, "values": [HEADERS], "rows": 200, "columns": 5}]
        )


def run_pool(
    credentials: int, companies: int, bodies: list[bytes], rate: float, window: float, settle_timeout: float
) -> PoolRun:
    """One run of the module's docstring with ``credentials`` service accounts."""
    with tempfile.TemporaryDirectory(prefix="bench-companies-") as folder, local_sheets_process() as sheets:
        base = Path(folder)
        make_sheets(sheets, companies)
        emails = [f"bench-writer-{i}@bench.iam.gserviceaccount.com" for i in range(credentials)]
        files = []
        for i, email in enumerate(emails):
            write_service_account(base / f"sa-{i}.json", sheets.token_uri, client_email=email, key_id=f"k{i}")
            files.append(f"sa-{i}.json")
        chosen = Counter(choose(spreadsheet_of(c), emails) for c in range(1, companies + 1))
        (base / "mapping.toml").write_text(mapping_toml(companies), encoding="utf-8")
        port = free_port()
        config = base / "bench.toml"
        config.write_text(settings_toml(port, sheets.url, files, window), encoding="utf-8")
        sheets.set_quota(
            reads_per_window=PER_USER,
            writes_per_window=PER_USER,
            project_reads_per_window=PER_PROJECT,
            project_writes_per_window=PER_PROJECT,
            window_seconds=window,
        )
        service = start_service(config, port=port)
        try:
            sheets.reset_counts()
            result = asyncio.run(send_each("127.0.0.1", port, PATH, bodies, 32, rate=rate))
            load_end = time.perf_counter()
            data_dir = base / "data"
            settled_after: float | None = None
            while time.perf_counter() < load_end + settle_timeout:
                if not inbox_counts(data_dir).get("pending"):
                    settled_after = time.perf_counter() - load_end
                    break
                time.sleep(0.2)
            counts = sheets.counts()
            refused = sum(sheets.quota()["refused"].values())
            latencies = settled_latencies(data_dir)
        finally:
            stop(service)
        if service.returncode:
            click.echo(f"serve exited with {service.returncode}:\n{log_tail(config)}", err=True)
    reads = sum(n for kind, n in counts.items() if quota_class(kind) == "read")
    return PoolRun(
        credentials=credentials,
        per_credential=[chosen[i] for i in range(credentials)],
        sent=len(bodies),
        acknowledged=result.load_result().acknowledged,
        latencies=latencies,
        settled_after=settled_after,
        reads=reads,
        writes=sum(counts.values()) - reads,
        refused=refused,
        load_seconds=result.seconds,
    )


def report(runs: Sequence[PoolRun], companies: int, rate: float, seconds: float, window: float) -> None:
    """Print each run's latencies beside its quota floor, and the ratios between the runs."""
    scale = GOOGLE_MINUTE / window
    click.echo(
        f"\n{companies} companies, each with its own spreadsheet; {rate:g} webhooks/s for {seconds:g} s "
        f"(customer_updated, random company); `serve` with the default worker settings and budget "
        f"({BUDGET} reads + {BUDGET} writes per window per credential); the local Sheets server counts "
        f"Google's quotas ({PER_USER} + {PER_USER} per caller, {PER_PROJECT} + {PER_PROJECT} per project)"
    )
    click.echo(
        f"simulated quota window: {window:g} s instead of Google's 60 s (sheets.rate_limit.window_seconds "
        f"and the local server's quota window), so {scale:g} simulated minutes pass per real one; "
        f"a flush = 1 read + 1 write"
    )
    click.echo(
        f"floor: a credential with n spreadsheets flushes each once every n x {window:g} s / {BUDGET} (its "
        "turn) while all have events waiting, as here; an event waits for its spreadsheet's next turn "
        "(p50 = half a turn, p95 = 95 %); 'per turn': the webhooks a spreadsheet gets in one turn of the "
        "least loaded credential (>= 1 keeps every spreadsheet waiting, the floor's premise)"
    )
    header = (
        f"{'credentials':>11}  {'spreadsheets each':>18}  {'floor p50':>9}  {'floor p95':>9}  "
        f"{'p50':>7}  {'p95':>7}  {'p99':>7}  {'per turn':>8}  {'events':>11}  {'flushes/s':>9}  {'429s':>4}  "
        "settled"
    )
    click.echo(header)
    for run in runs:
        per = run.per_credential
        spread = str(per[0]) if len(per) == 1 else f"{min(per)}-{max(per)}"
        flush_rate = run.writes / (run.load_seconds + (run.settled_after or 0.0))
        settled = "no" if run.settled_after is None else f"+{run.settled_after:.1f} s"
        per_turn = rate / companies * min(per) * window / BUDGET
        click.echo(
            f"{run.credentials:>11}  {spread:>18}  {floor_percentile(per, window, 0.5):>8.2f}s  "
            f"{floor_percentile(per, window, 0.95):>8.2f}s  {percentile(run.latencies, 50):>6.2f}s  "
            f"{percentile(run.latencies, 95):>6.2f}s  {percentile(run.latencies, 99):>6.2f}s  "
            f"{per_turn:>8.1f}  {len(run.latencies):>5}/{run.acknowledged:<5}  {flush_rate:>9.1f}  {run.refused:>4}  {settled}"
        )
    if len(runs) >= 2:
        first, last = runs[0], runs[-1]
        for q in (50, 95):
            ratio = percentile(first.latencies, q) / percentile(last.latencies, q)
            floor = floor_percentile(first.per_credential, window, q / 100) / floor_percentile(
                last.per_credential, window, q / 100
            )
            click.echo(
                f"p{q} with {first.credentials} credential(s) / with {last.credentials}: {ratio:.2f}x "
                f"(floors: {floor:.2f}x)"
            )
    click.echo(
        f"in Google's time (x{scale:g}, the quota-bound part): "
        + "; ".join(
            f"{run.credentials} credential(s): floor p50 {floor_percentile(run.per_credential, window, 0.5) * scale:.0f} s, "
            f"p95 {floor_percentile(run.per_credential, window, 0.95) * scale:.0f} s"
            for run in runs
        )
    )


def run_companies(
    companies: int,
    pools: Sequence[int],
    rate: float,
    seconds: float,
    window: float,
    settle_timeout: float,
    seed: int = 1,
) -> None:
    """The --companies benchmark: one run per pool size in ``pools``, side by side, then the figures."""
    bodies = event_bodies(companies, int(rate * seconds), seed)
    runs = []
    for credentials in pools:
        click.echo(f"running with {credentials} credential(s)...", err=True)
        runs.append(run_pool(credentials, companies, bodies, rate, window, settle_timeout))
    report(runs, companies, rate, seconds, window)
