"""Benchmark: what one write and one key-column read cost the built-in local Sheets server, by sheet size.

Starts ``doopage-sheets local-sheets --data FILE`` as a child process (so every write is made durable, as
the built-in server of ``serve`` does), fills a worksheet with ``--sizes`` rows shaped like the connector's
Customers rows, then times over HTTP: a ``spreadsheets:batchUpdate`` appending ``--rows-per-write`` rows
(about 350 bytes of request each, so the default 2,500 make a request of ~0.9 MB), and the read a flush
makes (``spreadsheets.get`` of the header row and the key column, with the writer's field mask). Prints
the median of ``--repeat`` of each. Run it under two versions of the code to compare them side by side.

    python scripts/bench_localsheets.py
    python scripts/bench_localsheets.py --sizes 10000,100000 --repeat 3
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import msgspec
import requests

from connector.localsheets.testing import local_sheets_process
from connector.sheets.plan import cell_data, raw_value
from connector.sheets.snapshot import GRID_FIELDS

SPREADSHEET = "bench-local"
SHEET_ID = 1
COLUMNS = 11


def customer_row(n: int) -> list[Any]:
    """A row like the connector's Customers rows for a new customer."""
    when = "2023-11-15 05:13:20"
    return [n, f"Khách hàng {n}", "open", None, None, None, None, None, when, when, "customer_created"]


def append_body(first: int, count: int) -> bytes:
    """A batchUpdate appending ``count`` customer rows from key ``first`` on, encoded."""
    rows = [
        {"values": [cell_data(raw_value(v)) for v in customer_row(n)]} for n in range(first, first + count)
    ]
    return msgspec.json.encode(
        {"requests": [{"appendCells": {"sheetId": SHEET_ID, "rows": rows, "fields": "*"}}]}
    )


def median_seconds(action: Callable[[], None], repeat: int) -> float:
    """The median wall time of ``repeat`` runs of ``action``."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(size: int, rows_per_write: int, repeat: int) -> tuple[float, float]:
    """Seconds of one append and of one key-column read on a sheet of ``size`` rows."""
    with (
        tempfile.TemporaryDirectory(prefix="bench-local-") as folder,
        local_sheets_process(data=Path(folder) / "sheets.json") as sheets,
    ):
        values = [["Customer ID", "Name", "Status", *[f"c{i}" for i in range(4, COLUMNS + 1)]]]
        values += [customer_row(n) for n in range(1, size + 1)]
        sheets.create_spreadsheet(
            SPREADSHEET,
            sheets=[{"title": "Customers", "sheet_id": SHEET_ID, "columns": COLUMNS, "values": values}],
        )
        url = f"{sheets.url}/v4/spreadsheets/{SPREADSHEET}"
        http = requests.Session()
        # The request bodies are made before the clock starts: only the server's part is timed.
        bodies = iter(
            [
                append_body(first, rows_per_write)
                for first in range(size + 1, size + 1 + repeat * rows_per_write, rows_per_write)
            ]
        )

        def append() -> None:
            headers = {"Content-Type": "application/json"}
            http.post(
                f"{url}:batchUpdate", data=next(bodies), headers=headers, timeout=600
            ).raise_for_status()

        def read() -> None:
            params = {
                "ranges": ["'Customers'!1:1", "'Customers'!A2:A"],
                "includeGridData": "true",
                "fields": GRID_FIELDS,
            }
            http.get(url, params=params, timeout=600).raise_for_status()

        write_seconds = median_seconds(append, repeat)
        read_seconds = median_seconds(read, repeat)
        http.close()
    return write_seconds, read_seconds


@click.command()
@click.option(
    "--sizes", default="50000,200000", show_default=True, help="Sheet sizes (rows), comma-separated."
)
@click.option("--rows-per-write", default=2_500, show_default=True, help="Rows appended by each write.")
@click.option("--repeat", default=5, show_default=True, help="Writes and reads timed per size.")
def main(sizes: str, rows_per_write: int, repeat: int) -> None:
    """Time one write and one key-column read of the local Sheets server at each sheet size."""
    click.echo(f"local Sheets server with a data file; {rows_per_write} rows per write; median of {repeat}")
    click.echo(f"{'sheet rows':>12} {'write (s)':>10} {'read (s)':>10}")
    for size in (int(text) for text in sizes.split(",")):
        write_seconds, read_seconds = measure(size, rows_per_write, repeat)
        click.echo(f"{size:>12,} {write_seconds:>10.3f} {read_seconds:>10.3f}")


if __name__ == "__main__":
    main()
