"""The sheet writer through real gspread over HTTP against the local Sheets server."""

from __future__ import annotations

import logging
from typing import Any

import gspread
import pytest
from gspread.utils import ValueInputOption

from connector.localsheets.testing import LocalSheets
from connector.sheets import (
    CellValue,
    PermanentSheetsError,
    RateLimiter,
    RateLimitSettings,
    RetrySettings,
    SheetsSettings,
    SheetWriter,
    TransientSheetsError,
    Upsert,
    WorksheetBatch,
    connect,
)

from .conftest import Sleeps, WriterFactory

HEADERS = ["id", "name", "city"]


def people(*upserts: Upsert, title: str = "People") -> WorksheetBatch:
    return WorksheetBatch(title, "id", HEADERS, list(upserts))


def worksheet(server: LocalSheets, spreadsheet_id: str, title: str = "People") -> gspread.Worksheet:
    """The worksheet as a person sees it, through plain gspread."""
    return (
        connect(SheetsSettings(api_root=server.url), environ={})
        .client.open_by_key(spreadsheet_id)
        .worksheet(title)
    )


def insert_blank(ws: gspread.Worksheet, dimension: str, start: int, count: int) -> None:
    """Insert empty rows or columns (0-based ``start``), as a person does from the sheet's menu."""
    body = {
        "range": {"sheetId": ws.id, "dimension": dimension, "startIndex": start, "endIndex": start + count}
    }
    ws.spreadsheet.batch_update({"requests": [{"insertDimension": body}]})


def rows_by_key(values: list[list[Any]], key_column: int = 0) -> dict[Any, list[Any]]:
    """Data rows by key, asserting each key appears once."""
    found: dict[Any, list[Any]] = {}
    for row in values[1:]:
        assert row[key_column] not in found, f"duplicate row for {row[key_column]!r}"
        found[row[key_column]] = row
    return found


def test_gspread_reaches_the_configured_root_through_the_adapter(
    server: LocalSheets, spreadsheet_id: str
) -> None:
    client = connect(SheetsSettings(api_root=server.url + "/"), environ={}).client
    assert client.open_by_key(spreadsheet_id).sheet1.title == "Sheet1"
    assert set(server.counts()) == {"spreadsheets.get"}


def test_a_missing_worksheet_is_created_with_its_header_row(
    server: LocalSheets, spreadsheet_id: str, make_writer: WriterFactory
) -> None:
    report = make_writer().flush(
        spreadsheet_id, [people((1, {"name": "Ann", "city": "Hue"}), ("k2", {"name": "Bo"}))]
    )
    assert server.sheet_values(spreadsheet_id, "People") == [
        ["id", "name", "city"],
        [1, "Ann", "Hue"],
        ["k2", "Bo"],
    ]
    (sheet,) = report.worksheets
    assert sheet.created
    assert (report.rows_appended, report.rows_updated) == (2, 0)
    # Creating costs one look at the worksheet list after the read that named the missing worksheet.
    assert server.counts() == {"spreadsheets.get": 2, "spreadsheets.batchUpdate": 1}
    assert server.sheet(spreadsheet_id, "Sheet1")["values"] == []


def test_new_keys_are_appended_and_existing_ones_updated_in_one_read_and_one_write(
    server: LocalSheets, spreadsheet_id: str, make_writer: WriterFactory
) -> None:
    writer = make_writer()
    writer.flush(
        spreadsheet_id, [people((1, {"name": "Ann", "city": "Hue"}), (2, {"name": "Bo", "city": "Hanoi"}))]
    )
    server.reset_counts()
    report = writer.flush(
        spreadsheet_id, [people((2, {"city": "Da Nang"}), (3, {"name": "Chi", "city": None}))]
    )
    assert server.counts() == {"spreadsheets.get": 1, "values.batchUpdate": 1}
    assert (report.rows_updated, report.rows_appended, report.requests) == (1, 1, 2)
    assert server.sheet_values(spreadsheet_id, "People") == [
        ["id", "name", "city"],
        [1, "Ann", "Hue"],
        [2, "Bo", "Da Nang"],
        [3, "Chi"],
    ]


def test_none_clears_a_cell_and_a_header_left_out_is_left_alone(
    server: LocalSheets, spreadsheet_id: str, make_writer: WriterFactory
) -> None:
    writer = make_writer()
    writer.flush(spreadsheet_id, [people(("a", {"name": "Ann", "city": "Hue"}))])
    writer.flush(spreadsheet_id, [people(("a", {"name": None}))])
    assert server.sheet_values(spreadsheet_id, "People")[1] == ["a", "", "Hue"]


def test_several_worksheets_share_one_read_and_one_write(
    server: LocalSheets, spreadsheet_id: str, make_writer: WriterFactory
) -> None:
    writer = make_writer()
    batches = [people(("a", {"name": "A"})), people(("o1", {"city": "X"}), title="Orders")]
    writer.flush(spreadsheet_id, batches)
    server.reset_counts()
    writer.flush(
        spreadsheet_id, [people(("b", {"name": "B"})), people(("o1", {"city": "Y"}), title="Orders")]
    )
    assert server.counts() == {"spreadsheets.get": 1, "values.batchUpdate": 1}
    assert server.sheet_values(spreadsheet_id, "Orders") == [["id", "name", "city"], ["o1", "", "Y"]]


def test_columns_reordered_by_a_person_are_matched_by_header(
    server: LocalSheets, spreadsheet_id: str, make_writer: WriterFactory
) -> None:
    writer = make_writer()
    writer.flush(
        spreadsheet_id,
        [people(("a", {"name": "Ann", "city": "Hue"}), ("b", {"name": "Bo", "city": "Hanoi"}))],
    )
    # A person moves the key column to the end and swaps the others.
    worksheet(server, spreadsheet_id).update(
        [["city", "name", "id"], ["Hue", "Ann", "a"], ["Hanoi", "Bo", "b"]], "A1"
    )
    server.reset_counts()
    report = writer.flush(
        spreadsheet_id, [people(("b", {"city": "Vinh"}), ("c", {"name": "Chi", "city": "Hue"}))]
    )
    assert server.sheet_values(spreadsheet_id, "People") == [
        ["city", "name", "id"],
        ["Hue", "Ann", "a"],
        ["Vinh", "Bo", "b"],
        ["Hue", "Chi", "c"],
    ]
    assert (report.rows_updated, report.rows_appended) == (1, 1)
    # The moved key column costs one more read, once; the next flush reads it where it now is.
    assert report.read_requests == 2
    server.reset_counts()
    writer.flush(spreadsheet_id, [people(("a", {"city": "Hoi An"}))])
    assert server.total_requests() == 2


def test_a_persons_own_column_is_left_untouched(
    server: LocalSheets, spreadsheet_id: str, make_writer: WriterFactory
) -> None:
    writer = make_writer()
    writer.flush(
        spreadsheet_id,
        [people(("a", {"name": "Ann", "city": "Hue"}), ("b", {"name": "Bo", "city": "Hanoi"}))],
    )
    # A person inserts a "Notes" column between name and city, and writes notes.
    ws = worksheet(server, spreadsheet_id)
    insert_blank(ws, "COLUMNS", 2, 1)
    ws.update([["Notes"], ["call back"], ["=SUM(1,2)"]], "C1", raw=False)
    writer.flush(
        spreadsheet_id,
        [
            people(
                ("a", {"name": "Anna", "city": "Hoi An"}),
                ("b", {"city": "Vinh"}),
                ("c", {"name": "Chi", "city": "X"}),
            )
        ],
    )
    assert server.sheet_values(spreadsheet_id, "People") == [
        ["id", "name", "Notes", "city"],
        ["a", "Anna", "call back", "Hoi An"],
        ["b", "Bo", "=SUM(1,2)", "Vinh"],
        ["c", "Chi", "", "X"],
    ]


def test_rows_sorted_and_inserted_by_a_person_still_get_their_own_updates(
    server: LocalSheets, spreadsheet_id: str, make_writer: WriterFactory
) -> None:
    writer = make_writer()
    keys = [f"k{i:02d}" for i in range(12)]
    writer.flush(spreadsheet_id, [people(*[(k, {"name": f"name {k}", "city": "old"}) for k in keys])])
    ws = worksheet(server, spreadsheet_id)
    # Sort by name, descending, then insert two rows of the person's own at the top.
    data = sorted(server.sheet_values(spreadsheet_id, "People")[1:], key=lambda row: row[1], reverse=True)
    ws.update(data, "A2")
    insert_blank(ws, "ROWS", 1, 2)
    ws.update([["", "a person's row"], ["", "another"]], "A2")
    writer.flush(spreadsheet_id, [people(*[(k, {"city": f"new {k}"}) for k in keys])])
    values = server.sheet_values(spreadsheet_id, "People")
    assert values[1][1:2] == ["a person's row"]
    assert values[2][1:2] == ["another"]
    found = rows_by_key([row for row in values if row[0]])
    assert {k: row[2] for k, row in found.items()} == {k: f"new {k}" for k in keys}
    assert [row[1] for row in values[3:]] == sorted((f"name {k}" for k in keys), reverse=True)


def test_a_key_twice_in_the_sheet_is_reported_and_only_its_first_row_updated(
    server: LocalSheets, spreadsheet_id: str, make_writer: WriterFactory, caplog: pytest.LogCaptureFixture
) -> None:
    writer = make_writer()
    writer.flush(spreadsheet_id, [people(("a", {"name": "Ann"}), ("b", {"name": "Bo"}))])
    worksheet(server, spreadsheet_id).append_row(
        ["a", "copy of Ann", ""], value_input_option=ValueInputOption.raw
    )
    with caplog.at_level(logging.WARNING, logger="connector.sheets"):
        report = writer.flush(spreadsheet_id, [people(("a", {"city": "Hue"}))])
    assert report.duplicate_keys == (("People", "a"),)
    assert server.sheet_values(spreadsheet_id, "People") == [
        ["id", "name", "city"],
        ["a", "Ann", "Hue"],
        ["b", "Bo"],
        ["a", "copy of Ann"],
    ]
    assert "more than one row" in caplog.text


def test_a_header_renamed_away_is_added_again_and_logged(
    server: LocalSheets, spreadsheet_id: str, make_writer: WriterFactory, caplog: pytest.LogCaptureFixture
) -> None:
    writer = make_writer()
    writer.flush(spreadsheet_id, [people(("a", {"name": "Ann", "city": "Hue"}))])
    worksheet(server, spreadsheet_id).update([["Full name"]], "B1")
    with caplog.at_level(logging.WARNING, logger="connector.sheets"):
        report = writer.flush(spreadsheet_id, [people(("a", {"name": "Anna"}))])
    assert report.worksheets[0].headers_readded == ("name",)
    assert server.sheet_values(spreadsheet_id, "People") == [
        ["id", "Full name", "city", "name"],
        ["a", "Ann", "Hue", "Anna"],
    ]
    assert "renamed or deleted" in caplog.text


def test_new_headers_are_appended_and_the_grid_grows(server: LocalSheets, make_writer: WriterFactory) -> None:
    small_grid = server.new_spreadsheet(
        [{"title": "People", "rows": 2, "columns": 2, "values": [["id", "name"], ["a", "Ann"]]}]
    )
    report = make_writer().flush(
        small_grid,
        [people(("a", {"city": "Hue"}), *[(f"n{i}", {"name": str(i), "city": "x"}) for i in range(5)])],
    )
    assert report.worksheets[0].headers_added == ("city",)
    sheet = server.sheet(small_grid, "People")
    assert sheet["values"][:3] == [["id", "name", "city"], ["a", "Ann", "Hue"], ["n0", "0", "x"]]
    assert len(sheet["values"]) == 7


def test_upserting_100_rows_into_a_10000_row_sheet_takes_exactly_2_requests(
    server: LocalSheets, make_writer: WriterFactory
) -> None:
    values: list[list[str | int | float | bool | None]] = [["id", "name", "city"]]
    values += [[i, f"name {i}", "city"] for i in range(10_000)]
    big = server.new_spreadsheet([{"title": "People", "values": values}])
    server.reset_counts()
    # A writer that has never seen this spreadsheet: half the keys exist (spread over the sheet), half are new.
    upserts = [(i * 200, {"city": "updated"}) for i in range(50)] + [
        (20_000 + i, {"name": "new"}) for i in range(50)
    ]
    report = make_writer().flush(big, [people(*upserts)])
    assert server.counts() == {"spreadsheets.get": 1, "spreadsheets.batchUpdate": 1}
    assert (report.rows_updated, report.rows_appended, report.requests) == (50, 50, 2)
    found = rows_by_key(server.sheet_values(big, "People"))
    assert len(found) == 10_050
    assert found[200] == [200, "name 200", "updated"]
    assert found[20_049] == [20_049, "new"]


def test_formula_looking_values_are_stored_as_text(
    server: LocalSheets, spreadsheet_id: str, make_writer: WriterFactory
) -> None:
    texts = [
        "=1+1",
        '=IMPORTXML("http://x")',
        "+1",
        "-1",
        "@x",
        "=cmd|' /C calc'!A0",
        "'quoted",
        "\t=1",
        "\r=1",
        "0012",
    ]
    writer = make_writer()
    writer.flush(
        spreadsheet_id, [people(*[(f"k{i}", {"name": text, "city": text}) for i, text in enumerate(texts)])]
    )
    writer.flush(spreadsheet_id, [people(("k0", {"city": "=2+2"}), ("=HYPERLINK(1)", {"name": "+7"}))])
    assert server.formula_cells(spreadsheet_id) == 0
    values = server.sheet_values(spreadsheet_id, "People")
    assert [row[1] for row in values[1:11]] == texts
    assert values[1][2] == "=2+2"
    assert values[11] == ["=HYPERLINK(1)", "+7"]


def test_a_write_split_over_the_size_limit_lands_whole(
    server: LocalSheets, spreadsheet_id: str, make_writer: WriterFactory
) -> None:
    writer = make_writer(max_request_bytes=20_000)
    report = writer.flush(
        spreadsheet_id, [people(*[(i, {"name": "n" * 100, "city": str(i)}) for i in range(600)])]
    )
    assert report.write_requests > 3
    counts = server.counts()
    assert counts["spreadsheets.batchUpdate"] + counts["values.batchUpdate"] == report.write_requests
    assert len(rows_by_key(server.sheet_values(spreadsheet_id, "People"))) == 600


def test_a_worksheet_deleted_by_a_person_is_created_again(
    server: LocalSheets, spreadsheet_id: str, make_writer: WriterFactory
) -> None:
    writer = make_writer()
    writer.flush(spreadsheet_id, [people(("a", {"name": "Ann"}))])
    spreadsheet = connect(SheetsSettings(api_root=server.url), environ={}).client.open_by_key(spreadsheet_id)
    spreadsheet.del_worksheet(spreadsheet.worksheet("People"))
    report = writer.flush(spreadsheet_id, [people(("b", {"name": "Bo"}))])
    assert report.worksheets[0].created
    assert server.sheet_values(spreadsheet_id, "People") == [["id", "name", "city"], ["b", "Bo"]]


def test_a_missing_spreadsheet_raises_the_typed_error_without_retrying(
    server: LocalSheets, make_writer: WriterFactory, sleeps: Sleeps
) -> None:
    with pytest.raises(PermanentSheetsError) as caught:
        make_writer().flush("no-such-spreadsheet", [people(("a", {"name": "Ann"}))])
    assert caught.value.status == 404
    assert caught.value.spreadsheet_id == "no-such-spreadsheet"
    assert "no-such-spreadsheet" in str(caught.value)
    assert server.total_requests() == 1
    assert sleeps == []


def test_retry_after_is_honoured(
    server: LocalSheets, spreadsheet_id: str, make_writer: WriterFactory, sleeps: Sleeps
) -> None:
    writer = make_writer()
    writer.flush(spreadsheet_id, [people(("a", {"name": "Ann"}))])
    server.set_faults(script=["429"], retry_after=7)
    report = writer.flush(spreadsheet_id, [people(("a", {"name": "Anna"}))])
    assert sleeps == [7.0]
    assert report.attempts == 2
    assert server.sheet_values(spreadsheet_id, "People")[1] == ["a", "Anna"]


def test_a_write_applied_but_unanswered_is_not_applied_twice(
    server: LocalSheets, spreadsheet_id: str, make_writer: WriterFactory
) -> None:
    writer = make_writer()
    writer.flush(spreadsheet_id, [people(("a", {"name": "Ann"}))])
    server.reset_counts()
    # The read is answered; the write is applied, then the connection drops before the answer.
    server.set_faults(script=["ok", "drop:after"])
    report = writer.flush(spreadsheet_id, [people(("b", {"name": "Bo"}), ("c", {"name": "Chi"}))])
    assert server.injected_faults() == {"drop:after": 1}
    assert report.attempts == 2
    # The second attempt read the keys again, found b and c, and updated them instead of appending.
    assert (report.rows_appended, report.rows_updated) == (0, 2)
    assert server.sheet_values(spreadsheet_id, "People") == [
        ["id", "name", "city"],
        ["a", "Ann"],
        ["b", "Bo"],
        ["c", "Chi"],
    ]


def test_a_timed_out_write_is_not_applied_twice(
    server: LocalSheets, spreadsheet_id: str, make_writer: WriterFactory
) -> None:
    writer = make_writer(read_timeout=0.3)
    writer.flush(spreadsheet_id, [people(("a", {"name": "Ann"}))])
    server.set_faults(latency_ms=600, kinds=["spreadsheets.batchUpdate"], script=["ok"])
    with pytest.raises(TransientSheetsError) as caught:
        make_writer(read_timeout=0.3, retry=RetrySettings(max_attempts=1)).flush(
            spreadsheet_id, [people(("b", {"name": "Bo"}))]
        )
    assert caught.value.outcome_unknown
    server.clear_faults()
    writer.flush(spreadsheet_id, [people(("b", {"name": "Bo"}))])
    assert rows_by_key(server.sheet_values(spreadsheet_id, "People")).keys() == {"a", "b"}


def test_injected_429_503_and_dropped_connections_end_with_exactly_the_expected_sheet(
    server: LocalSheets, spreadsheet_id: str, make_writer: WriterFactory
) -> None:
    writer = make_writer(retry=RetrySettings(max_attempts=60, max_seconds=3600))
    expected: dict[int, list[Any]] = {}
    server.set_faults(rate_429=0.1, rate_503=0.1, drop_rate=0.1, timing="random", seed=3, retry_after=1)
    for flush in range(30):
        keys = [(flush * 7 + i * 3) % 40 for i in range(15)]
        upserts: list[tuple[str | int, dict[str, CellValue]]] = [
            (k, {"name": f"f{flush}", "city": f"c{k}"}) for k in keys
        ]
        writer.flush(spreadsheet_id, [people(*upserts)])
        for k in keys:
            expected[k] = [k, f"f{flush}", f"c{k}"]
    injected = server.injected_faults()
    server.clear_faults()
    assert injected.get("drop:after", 0) >= 1
    assert sum(v for k, v in injected.items() if k.startswith(("429", "503"))) >= 5
    found = rows_by_key(server.sheet_values(spreadsheet_id, "People"))
    assert found == expected


def test_a_loopback_root_is_never_reached_through_a_proxy(
    server: LocalSheets, spreadsheet_id: str, make_writer: WriterFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A proxy that does not exist: any request routed through it would fail to connect.
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    report = make_writer(retry=RetrySettings(max_attempts=1)).flush(
        spreadsheet_id, [people(("a", {"name": "A"}))]
    )
    assert report.rows_appended == 1


class FakeClock:
    """Time that passes only when the rate limiter sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_flushes_wait_for_the_per_minute_budget(server: LocalSheets, spreadsheet_id: str) -> None:
    clock = FakeClock()
    budget = RateLimitSettings(reads_per_minute=2, writes_per_minute=1, smooth=False)
    limiter = RateLimiter(budget, clock=clock, sleep=clock.sleep)
    settings = SheetsSettings(api_root=server.url, rate_limit=budget)
    writer = SheetWriter(connect(settings, environ={}), settings, limiter=limiter)
    first = writer.flush(spreadsheet_id, [people(("a", {"name": "A"}))])  # 2 reads (creating), 1 write
    clock.now += 30
    second = writer.flush(spreadsheet_id, [people(("b", {"name": "B"}))])
    assert first.rate_limit_wait == 0
    # Both read slots and the write slot were taken 30 s ago: each kind waits the other 30 s, in turn.
    assert second.rate_limit_wait == 30
    assert clock.slept == [30]
    assert len(rows_by_key(server.sheet_values(spreadsheet_id, "People"))) == 2


def test_a_sheet_of_only_a_header_row_gets_its_rows(server: LocalSheets, make_writer: WriterFactory) -> None:
    sid = server.new_spreadsheet(
        [{"title": "People", "rows": 1, "columns": 3, "values": [["name", "id", "city"]]}]
    )
    report = make_writer().flush(sid, [people(("a", {"name": "Ann"}), ("b", {"city": "Hue"}))])
    assert report.rows_appended == 2
    assert server.sheet_values(sid, "People") == [["name", "id", "city"], ["Ann", "a"], ["", "b", "Hue"]]


def test_new_rows_go_under_a_row_a_person_typed_below_ours(
    server: LocalSheets, spreadsheet_id: str, make_writer: WriterFactory
) -> None:
    writer = make_writer()
    writer.flush(spreadsheet_id, [people(("a", {"name": "Ann"}))])
    writer.flush(spreadsheet_id, [people(("b", {"name": "Bo"}))])
    # A note two rows under ours, with no key: appendCells would put the next rows under it, and so do we.
    worksheet(server, spreadsheet_id).update([["", "", "a note"]], "A6")
    server.reset_counts()
    writer.flush(spreadsheet_id, [people(("c", {"name": "Chi"}), ("d", {"city": "Hue"}))])
    # The read covered every column under our rows, so the rows went in as values: one read, one write.
    assert server.counts() == {"spreadsheets.get": 1, "values.batchUpdate": 1}
    assert server.sheet_values(spreadsheet_id, "People")[1:] == [
        ["a", "Ann"],
        ["b", "Bo"],
        [],
        [],
        ["", "", "a note"],
        ["c", "Chi"],
        ["d", "", "Hue"],
    ]


def test_a_growing_grid_gets_spare_rows_and_the_next_flush_writes_only_values(
    server: LocalSheets, make_writer: WriterFactory
) -> None:
    sid = server.new_spreadsheet([{"title": "People", "rows": 1, "columns": 3, "values": [list(HEADERS)]}])
    writer = make_writer()
    writer.flush(sid, [people(*[(f"a{i:03d}", {"name": "x"}) for i in range(100)])])
    assert server.sheet(sid, "People")["rowCount"] == 1 + 100 + 200
    server.reset_counts()
    for batch in ("b", "c"):
        writer.flush(sid, [people(*[(f"{batch}{i:03d}", {"name": "y"}) for i in range(100)])])
    assert server.counts() == {"spreadsheets.get": 2, "values.batchUpdate": 2}
    server.reset_counts()
    # The grid is full now: the next rows grow it again (in the same request when that is small).
    writer.flush(sid, [people(("d", {"name": "z"}))])
    assert server.counts() == {"spreadsheets.get": 1, "spreadsheets.batchUpdate": 1}
    values = server.sheet_values(sid, "People")
    assert [row[0] for row in values[1:]] == [f"{b}{i:03d}" for b in "abc" for i in range(100)] + ["d"]
    assert server.sheet(sid, "People")["rowCount"] == 301 + 1 + 2


def test_rows_deleted_above_where_the_last_read_looked_are_refilled_by_append_cells(
    server: LocalSheets, spreadsheet_id: str, make_writer: WriterFactory
) -> None:
    writer = make_writer()
    writer.flush(spreadsheet_id, [people(*[(k, {"name": k.upper()}) for k in "abcd"])])
    ws = worksheet(server, spreadsheet_id)
    body = {"range": {"sheetId": ws.id, "dimension": "ROWS", "startIndex": 3, "endIndex": 5}}
    ws.spreadsheet.batch_update({"requests": [{"deleteDimension": body}]})
    ws.update([["", "kept"]], "A5")
    writer.flush(spreadsheet_id, [people(("e", {"name": "E"}))])
    assert server.sheet_values(spreadsheet_id, "People")[1:] == [
        ["a", "A"],
        ["b", "B"],
        [],
        ["", "kept"],
        ["e", "E"],
    ]
