"""Issue 5's Must-show: a backfill of 50,000 customers from CSV, run twice, gives the same sheet with at
most 15 write requests in all, through the real CLI against the local Sheets server as its own process."""

from __future__ import annotations

import csv
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from connector.cli import main
from connector.localsheets.testing import LocalSheets, local_sheets_process
from tests.backfill.conftest import write_settings

CUSTOMERS = 50_000
WRITE_KINDS = frozenset(
    {"spreadsheets.batchUpdate", "values.update", "values.batchUpdate", "values.append", "values.clear"}
)
TAGS = ("VIP", "wholesale", "Hà Nội", "returning", "newsletter", "=cmd|' /C calc'!A0")


@pytest.fixture(scope="module")
def sheets_process() -> Iterator[LocalSheets]:
    """A Sheets server of the test's own, in another process: its counts are this test's alone."""
    with local_sheets_process(strict=True) as server:
        yield server


def write_customers(path: Path) -> dict[str, tuple[str, str]]:
    """A CSV export of CUSTOMERS customers; returns id -> (name, tags as the sheet shows them)."""
    rng = random.Random(5)
    expected: dict[str, tuple[str, str]] = {}
    with path.open("w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["ID", "Full name", "Phone", "Tags"])
        for customer_id in range(1, CUSTOMERS + 1):
            name = f"Khách hàng {customer_id} {rng.choice(['Nguyễn', 'Trần', 'Lê', 'Phạm'])}"
            tags = rng.sample(TAGS, rng.randint(0, 2))
            writer.writerow([customer_id, name, f"09{customer_id:08d}", ", ".join(tags)])
            shown = ", ".join(sorted(tags, key=lambda tag: (tag.casefold(), tag)))
            expected[str(customer_id)] = (name, shown)
    return expected


def test_fifty_thousand_customers_twice_take_at_most_15_writes(
    tmp_path: Path, sheets_process: LocalSheets
) -> None:
    spreadsheet_id = sheets_process.new_spreadsheet()
    config = write_settings(tmp_path, sheets_process.url, spreadsheet_id)
    source = tmp_path / "customers.csv"
    expected = write_customers(source)
    command = ["backfill", "customers", "--config", str(config), str(source)]
    command += ["--column", "customer.id=ID", "--column", "customer.name=Full name", "--column", "tags=Tags"]
    sheets_process.reset_counts()

    first = CliRunner().invoke(main, command)
    assert first.exit_code == 0, first.output
    assert f"written: {CUSTOMERS} rows" in first.stdout
    first_counts = sheets_process.counts()
    sheet = sheets_process.sheet_values(spreadsheet_id, "Customers")

    second = CliRunner().invoke(main, command)
    assert second.exit_code == 0, second.output
    assert "events: 0 stored" in second.stdout
    counts = sheets_process.counts()

    writes = sum(n for kind, n in counts.items() if kind in WRITE_KINDS)
    print(f"requests after run 1: {first_counts}; after run 2: {counts}")
    assert writes <= 15
    assert counts == first_counts  # the second run sent nothing at all
    assert sheets_process.sheet_values(spreadsheet_id, "Customers") == sheet
    header, *rows = sheet
    assert len(rows) == CUSTOMERS
    assert [str(row[0]) for row in rows] == [str(i) for i in range(1, CUSTOMERS + 1)]  # once each, in order
    names = dict(zip(header, zip(*rows, strict=True), strict=True))
    assert list(zip(names["Name"], names["Tags"], strict=True)) == list(expected.values())
    assert sheets_process.formula_cells(spreadsheet_id) == 0
