"""The projected rows go through the real sheet writer into the local Sheets server as the sheet people read.

The server answers with each cell's formatted text, so numbers read back as text here.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from connector.localsheets.testing import LocalSheets, local_sheets_thread
from connector.sheets import RateLimitSettings, SheetsSettings, SheetWriter, WorksheetBatch, connect
from connector.sync.mapping import SheetMapping, rows_for
from connector.sync.state import Envelope, fold_batch

from .conftest import sample

RECEIVED_MS = 1618118400000  # 2021-04-11 12:20:00 in Ho Chi Minh City


@pytest.fixture(scope="module")
def sheets() -> Iterator[LocalSheets]:
    with local_sheets_thread(seed=5, strict=True) as server:
        yield server


def flush(writer: SheetWriter, mapping: SheetMapping, envelopes: list[Envelope]) -> None:
    """What the worker does for one batch of company 1, from nothing folded before."""
    company = mapping.company(1)
    assert company is not None
    items = [*fold_batch({}, envelopes).values(), *envelopes]
    batches = [
        WorksheetBatch(ws.title, ws.key_header, ws.headers, rows_for(ws, items)) for ws in company.worksheets
    ]
    writer.flush(company.spreadsheet_id, batches)


def test_the_samples_land_as_the_default_worksheets(
    sheets: LocalSheets, default_mapping: SheetMapping, samples: dict[str, bytes]
) -> None:
    sheets.create_spreadsheet("doopage-demo")
    settings = SheetsSettings(
        api_root=sheets.url, rate_limit=RateLimitSettings(reads_per_minute=10_000, writes_per_minute=10_000)
    )
    writer = SheetWriter(connect(settings, environ={}), settings)
    envelopes = [sample(event_type, RECEIVED_MS + i) for i, event_type in enumerate(samples)]
    flush(writer, default_mapping, envelopes)
    flush(writer, default_mapping, envelopes)  # a replay changes nothing

    assert sheets.sheet_values("doopage-demo", "Customers") == [
        [
            "Customer ID",
            "Name",
            "Status",
            "Assigned to",
            "Closed by",
            "Tags",
            "Note",
            "Pipeline stage",
            "First seen",
            "Last activity",
            "Last event",
        ],
        [
            1,
            "DooPage customer",
            "closed",
            "Doopage staff 2",
            "Doopage staff",
            "",
            "Customer note",
            "Re-target",
            "2021-04-11 12:14:00",
            "2021-04-11 12:20:00",
            "tag_unset",
        ],
    ]
    assert sheets.sheet_values("doopage-demo", "Orders") == [
        ["Order ID", "Created", "Modified", "Picking status", "Payment status", "Last activity"],
        [1, "2021-04-11 12:14:00", "2021-04-11 12:14:01", "pending", "paid", "2021-04-11 12:14:00"],
    ]
    events = sheets.sheet_values("doopage-demo", "Events")
    assert len(events) == 1 + len(samples)
    assert sorted(row[1] for row in events[1:]) == sorted(samples)
