"""Benchmark: what one console refresh (``GET /api/overview``'s queries) costs as the inbox grows.

Fills a scratch inbox with N events (5 companies; 90% done, the rest pending, failed and unrouted,
received over the last three hours) and a journal with a flush per second of those hours, then times
:func:`connector.console.queries.overview`: the first refresh, then the median of the next ones (which
count only the last minutes of the chart and the events stored since again, as the console does). The page asks for it every 2 s
while it is open, so the figure is also the share of one core an open console takes.

    python scripts/bench_console.py
    python scripts/bench_console.py --sizes 10000,100000 --runs 5
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from connector.console.queries import Tally, overview
from connector.journal import connect_journal
from connector.store.records import now_ms
from connector.store.sqlite_schema import connect, inbox_path, migrate
from connector.store.sqlite_store import SqliteStore
from connector.sync.mapping import parse_mapping

COMPANIES = 5
HOURS_MS = 3 * 3600 * 1000
MAPPING = "\n".join(
    f"""
[[companies]]
company_id = {c}
spreadsheet_id = "sheet-{c}"
[[companies.worksheets]]
title = "Customers"
entity = "customers"
key = "ID"
columns = [{{ header = "ID", source = "customer.id" }}]
"""
    for c in range(1, COMPANIES + 1)
)


def fill(data_dir: Path, events: int, now: int) -> None:
    """N events spread over the last three hours, and a journal flush per second."""
    migrate(inbox_path(data_dir))
    inbox = connect(inbox_path(data_dir))
    statuses = ["done"] * 90 + ["pending"] * 4 + ["failed"] * 3 + ["unrouted"] * 3
    rows = (
        (
            now - HOURS_MS + n * HOURS_MS // events,
            "main",
            n % COMPANIES + 1 if statuses[n % 100] != "unrouted" else 99,
            "customer_created",
            f"k{n}",
            f"k{n}",
            statuses[n % 100],
            now,
        )
        for n in range(events)
    )
    inbox.execute("BEGIN")
    inbox.executemany(
        "INSERT INTO events (received_ms, endpoint, company_id, event_type, body, dedup_key, content_key,"
        " status, updated_ms) VALUES (?, ?, ?, ?, x'7b7d', ?, ?, ?, ?)",
        rows,
    )
    inbox.execute("COMMIT")
    inbox.close()
    journal = connect_journal(data_dir)
    journal.execute("BEGIN")
    journal.executemany(
        "INSERT INTO flush_log (at_ms, spreadsheet_id, company_ids, events, rows_updated, rows_added,"
        " requests, seconds, latency_avg_ms, latency_max_ms) VALUES (?, ?, '1', 10, 5, 5, 2, 0.3, 800, 1500)",
        ((now - HOURS_MS + s * 1000, f"sheet-{s % COMPANIES + 1}") for s in range(HOURS_MS // 1000)),
    )
    journal.execute("COMMIT")
    journal.close()


@click.command()
@click.option("--sizes", default="10000,100000,1000000", show_default=True, help="Inbox sizes (events).")
@click.option("--runs", default=7, show_default=True, help="Timed runs per size.")
def main(sizes: str, runs: int) -> None:
    """Time one console refresh against inboxes of these sizes."""
    mapping = parse_mapping(MAPPING, "bench-mapping.toml")
    links = {f"sheet-{c}": "" for c in range(1, COMPANIES + 1)}
    table = Table(title="Console refresh (overview queries)")
    for column in ("inbox events", "first ms", "then median ms", "min ms", "share of a core (one per 2 s)"):
        table.add_column(column, justify="right")
    for size in (int(s) for s in sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix="bench-console-") as folder:
            data_dir = Path(folder)
            now = now_ms()
            fill(data_dir, size, now)
            store = SqliteStore.open(data_dir)
            journal = connect_journal(data_dir)
            times, first = [], 0.0
            seen: dict[int, int] = {}  # as the console keeps them between refreshes
            tally = Tally()
            for run in range(runs + 1):
                started = time.perf_counter()
                overview(
                    store, journal, mapping, now_ms=now, links=links, reads_limit=50, writes_limit=50,
                    seen_minutes=seen, tally=tally,
                )  # fmt: skip
                elapsed = (time.perf_counter() - started) * 1000
                if run == 0:
                    first = elapsed
                else:
                    times.append(elapsed)
            store.close()
            journal.close()
            median = statistics.median(times)
            table.add_row(
                f"{size:,}", f"{first:.1f}", f"{median:.1f}", f"{min(times):.1f}", f"{median / 2000:.1%}"
            )
    Console().print(table)


if __name__ == "__main__":
    main()
