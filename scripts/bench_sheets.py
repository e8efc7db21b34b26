"""Benchmark: Sheets API requests and flush time of the sheet writer, on sheets of 1k, 10k and 100k rows.

Starts the local Sheets server as a child process (``doopage-sheets local-sheets``), fills one spreadsheet
per size with that many rows, then, with a writer that has never seen it (a fresh start), flushes
``--upserts`` upserts of which half update existing keys spread over the whole sheet and half add new
keys. It prints the requests the server counted, requests per 1,000 upserts, and the time of that flush
and of a second one on the warm writer, beside n8n's Google Sheets "append or update" node, which makes
about 3 requests per incoming item (a sheet look-up, a whole-sheet read, then a write).

The rate limiter is given a budget no run reaches, so the times are the flush's own; under the default
budget (50 reads and 50 writes per minute) a flush costs 1/50 of a minute of each.

    python scripts/bench_sheets.py
    python scripts/bench_sheets.py --sizes 1000,10000 --upserts 100
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import click
from rich.console import Console
from rich.table import Table

from connector.localsheets.testing import LocalSheets, local_sheets_process
from connector.sheets import (
    CellValue,
    RateLimitSettings,
    SheetsSettings,
    SheetWriter,
    WorksheetBatch,
    connect,
)

HEADERS = ["id", "name", "email", "status", "tags", "updated"]
N8N_REQUESTS_PER_ITEM = 3


@dataclass(frozen=True)
class Measurement:
    """One sheet size's figures."""

    rows: int
    upserts: int
    requests: int
    reads: int
    writes: int
    cold_seconds: float
    warm_seconds: float
    warm_requests: int


def row(key: int, tag: str) -> list[CellValue]:
    """A customer row as the connector writes it."""
    return [key, f"Customer {key}", f"c{key}@example.com", "open", "vip, new", tag]


def upserts_for(rows: int, count: int, tag: str) -> list[tuple[str | int, dict[str, CellValue]]]:
    """Half updates of existing keys spread over the sheet, half new keys."""
    updates = count // 2
    step = max(rows // max(updates, 1), 1)
    existing = [(i * step) % rows for i in range(updates)]
    fresh = [rows + i for i in range(count - updates)]
    result: list[tuple[str | int, dict[str, CellValue]]] = []
    for key in existing + fresh:
        result.append((key, dict(zip(HEADERS[1:], row(key, tag)[1:], strict=True))))
    return result


def measure(server: LocalSheets, rows: int, upserts: int) -> Measurement:
    """Fill a spreadsheet with ``rows`` rows, then time a cold and a warm flush of ``upserts`` upserts."""
    spreadsheet_id = f"bench-{rows}"
    values: list[list[CellValue]] = [list(HEADERS), *(row(i, "seed") for i in range(rows))]
    server.create_spreadsheet(spreadsheet_id, [{"title": "Customers", "values": values}])
    budget = RateLimitSettings(reads_per_minute=1_000_000, writes_per_minute=1_000_000)
    settings = SheetsSettings(api_root=server.url, rate_limit=budget)
    writer = SheetWriter(connect(settings, environ={}), settings)

    server.reset_counts()
    batch = WorksheetBatch("Customers", "id", HEADERS, upserts_for(rows, upserts, "first"))
    started = time.perf_counter()
    report = writer.flush(spreadsheet_id, [batch])
    cold = time.perf_counter() - started
    requests = server.total_requests()

    server.reset_counts()
    batch = WorksheetBatch("Customers", "id", HEADERS, upserts_for(rows + upserts, upserts, "second"))
    started = time.perf_counter()
    writer.flush(spreadsheet_id, [batch])
    warm = time.perf_counter() - started
    warm_requests = server.total_requests()
    server.delete_spreadsheet(spreadsheet_id)
    return Measurement(
        rows, upserts, requests, report.read_requests, report.write_requests, cold, warm, warm_requests
    )


@click.command()
@click.option("--sizes", default="1000,10000,100000", show_default=True, help="Sheet sizes in rows.")
@click.option("--upserts", default=1000, show_default=True, help="Upserts per flush.")
def main(sizes: str, upserts: int) -> None:
    """Print Sheets API requests per 1,000 upserts and flush times by sheet size."""
    console = Console(width=130)
    row_counts = [int(size) for size in sizes.split(",") if size.strip()]
    with local_sheets_process() as server:
        results = []
        for rows in row_counts:
            console.print(f"filling a sheet of {rows:,} rows and flushing {upserts:,} upserts ...")
            results.append(measure(server, rows, upserts))
    table = Table(title=f"Sheet writer: one flush of {upserts:,} upserts (half updates, half new rows)")
    for name in (
        "sheet rows",
        "requests",
        "reads/writes",
        "per 1,000 upserts",
        "n8n (3/item)",
        "flush (fresh writer)",
        "flush (warm writer)",
        "warm requests",
    ):
        table.add_column(name, justify="right")
    for m in results:
        table.add_row(
            f"{m.rows:,}",
            str(m.requests),
            f"{m.reads} / {m.writes}",
            f"{m.requests * 1000 / m.upserts:.1f}",
            f"{N8N_REQUESTS_PER_ITEM * m.upserts:,}",
            f"{m.cold_seconds * 1000:.0f} ms",
            f"{m.warm_seconds * 1000:.0f} ms",
            str(m.warm_requests),
        )
    console.print(table)


if __name__ == "__main__":
    main()
