"""Datetime cells, table-driven: the text of each time in each timezone and pattern, and in any order.

A datetime column keeps the text of each whole second it rendered; these cases hold times of one
second with different milliseconds, a repeated hour at the end of daylight saving time, and an offset
with seconds, each rendered both in order and in reverse, so a kept text never stands in for another.
"""

from __future__ import annotations

import pytest

from connector.sync.mapping import (
    ColumnSettings,
    CompanySettings,
    WorksheetMapping,
    WorksheetSettings,
    resolve_mapping,
    rows_for,
)

from .conftest import envelope

MS = 1618118040123  # 2021-04-11 05:14:00.123 UTC
EDT_0130 = 1636263000000  # 2021-11-07 05:30 UTC: 01:30 in New York, daylight saving time
EST_0130 = 1636266600000  # 2021-11-07 06:30 UTC: 01:30 again, standard time

CASES: list[tuple[str, str, list[tuple[int, str]]]] = [
    # timezone, pattern, (received ms, the cell's text)
    (
        "UTC",
        "iso",
        [
            (MS, "2021-04-11T05:14:00.123+00:00"),
            (MS - 123, "2021-04-11T05:14:00+00:00"),
            (MS - 116, "2021-04-11T05:14:00.007+00:00"),
            (MS + 877, "2021-04-11T05:14:01+00:00"),
        ],
    ),
    (
        "Asia/Ho_Chi_Minh",
        "iso",
        [(MS, "2021-04-11T12:14:00.123+07:00"), (MS + 1, "2021-04-11T12:14:00.124+07:00")],
    ),
    (
        "Asia/Ho_Chi_Minh",
        "%Y-%m-%d %H:%M:%S",
        [(MS, "2021-04-11 12:14:00"), (MS + 500, "2021-04-11 12:14:00"), (MS + 900, "2021-04-11 12:14:01")],
    ),
    (
        "UTC",
        "%H:%M:%S.%f",
        [(MS, "05:14:00.123000"), (MS + 333, "05:14:00.456000"), (MS - 123, "05:14:00.000000")],
    ),
    (
        "America/New_York",
        "%Y-%m-%d %H:%M:%S %Z",
        [(EDT_0130, "2021-11-07 01:30:00 EDT"), (EST_0130, "2021-11-07 01:30:00 EST")],
    ),
    (
        "America/New_York",
        "iso",
        [(EDT_0130 + 1, "2021-11-07T01:30:00.001-04:00"), (EST_0130, "2021-11-07T01:30:00-05:00")],
    ),
    (
        "Africa/Monrovia",  # 1970: Liberia's offset had seconds
        "iso",
        [(5, "1969-12-31T23:15:30.005-00:44:30"), (0, "1969-12-31T23:15:30-00:44:30")],
    ),
]


def events_worksheet(timezone: str, pattern: str) -> WorksheetMapping:
    """An events worksheet whose "When" column shows when each event was received."""
    when = ColumnSettings(
        header="When", source="event.received_at", format="datetime", timezone=timezone, pattern=pattern
    )
    columns = [ColumnSettings(header="Key", source="event.dedup_key"), when]
    sheet = WorksheetSettings(title="Events", entity="events", key="Key", columns=columns)
    company = CompanySettings(company_id=1, spreadsheet_id="s", worksheets=[sheet])
    return resolve_mapping([company], None, "mapping.toml", "").companies[0].worksheets[0]


@pytest.mark.parametrize(("timezone", "pattern", "cells"), CASES, ids=[f"{c[0]} {c[1]}" for c in CASES])
@pytest.mark.parametrize("order", ["in order", "reversed"])
def test_a_time_reads_the_same_whatever_was_rendered_before(
    timezone: str, pattern: str, cells: list[tuple[int, str]], order: str
) -> None:
    worksheet = events_worksheet(timezone, pattern)
    # note_changed carries no timestamp: its time is when it was received.
    envelopes = [
        envelope(received, event_type="note_changed", data={"customer": {"id": 1}, "note": str(received)})
        for received, _ in cells
    ]
    expected = {envelope.dedup_key: text for envelope, (_, text) in zip(envelopes, cells, strict=True)}
    for batch in (envelopes, envelopes[::-1]) if order == "in order" else (envelopes[::-1], envelopes):
        rows = rows_for(worksheet, batch)
        assert {key: row["When"] for key, row in rows} == expected
