"""Where Google behaves differently from a permissive stand-in: the writer against the strict local server.

Each test here failed before the writer learnt the behaviour (issue 12): case-insensitive tab titles,
numbers kept as doubles, a missing key header, protected ranges, the 50,000-character cell and the
10,000,000-cell spreadsheet, and a sign-in Google refuses or cannot be reached for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

from connector.localsheets.testing import LocalSheets
from connector.sheets import (
    PermanentSheetsError,
    RateLimitSettings,
    RetrySettings,
    SheetsSettings,
    SheetWriter,
    TransientSheetsError,
    Upsert,
    WorksheetBatch,
    connect,
)
from connector.sheets.plan import CUT_MARKER, MAX_CELL_CHARS
from connector.sheets.snapshot import SheetSnapshot

from .conftest import FAST_BUDGET, WriterFactory, write_service_account
from .test_writer import HEADERS, people, rows_by_key, worksheet


def rename_tab(server: LocalSheets, spreadsheet_id: str, old: str, new: str) -> None:
    ws = worksheet(server, spreadsheet_id, old)
    body = {"properties": {"sheetId": ws.id, "title": new}, "fields": "title"}
    ws.spreadsheet.batch_update({"requests": [{"updateSheetProperties": body}]})


def test_the_server_is_strict(server: LocalSheets) -> None:
    assert server.strict()


# ---------------------------------------------------------------- 2. titles are case-insensitive


def test_a_tab_renamed_only_in_case_keeps_being_written(
    server: LocalSheets, spreadsheet_id: str, make_writer: WriterFactory
) -> None:
    make_writer().flush(spreadsheet_id, [people(("1", {"name": "Ann"}))])
    rename_tab(server, spreadsheet_id, "People", "people")
    for writer in (make_writer(), make_writer()):  # one remembers nothing, the second remembers the rename
        report = writer.flush(spreadsheet_id, [people(("1", {"city": "Hue"}), ("2", {"name": "Bo"}))])
        assert report.blocked == ()
        report = writer.flush(spreadsheet_id, [people(("2", {"city": "Vinh"}))])
    titles = [ws.title for ws in worksheet(server, spreadsheet_id, "people").spreadsheet.worksheets()]
    assert titles == ["Sheet1", "people"]
    rows = rows_by_key(server.sheet_values(spreadsheet_id, "people"))
    assert rows == {"1": ["1", "Ann", "Hue"], "2": ["2", "Bo", "Vinh"]}


def test_a_flush_naming_one_tab_in_two_cases_is_refused(make_writer: WriterFactory) -> None:
    with pytest.raises(ValueError, match="twice"):
        make_writer().flush("x", [people(title="People"), people(title="PEOPLE")])


# ---------------------------------------------------------------- 4. numbers are doubles


def test_the_server_keeps_numbers_as_doubles(server: LocalSheets, spreadsheet_id: str) -> None:
    ws = worksheet(server, spreadsheet_id, "Sheet1")
    cell = {"userEnteredValue": {"numberValue": 9007199254741003}}
    body = {"rows": [{"values": [cell]}], "fields": "userEnteredValue", "start": {"sheetId": ws.id}}
    ws.spreadsheet.batch_update({"requests": [{"updateCells": body}]})
    assert server.sheet_values(spreadsheet_id, "Sheet1") == [[9007199254741004]]


def test_keys_beyond_2_53_stay_distinct_and_12_matches_text_12(
    server: LocalSheets, spreadsheet_id: str, make_writer: WriterFactory
) -> None:
    big = 2**53 + 11  # 9007199254741003: a double would make it ...004
    writer = make_writer()
    for _ in range(3):
        writer.flush(
            spreadsheet_id,
            [
                people(
                    (big, {"id": big, "name": "a"}), (big - 1, {"id": big - 1, "name": "b"}), (12, {"id": 12})
                )
            ],
        )
        make_writer().flush(spreadsheet_id, [people(("12", {"name": "twelve"}), (str(big), {"city": "x"}))])
    rows = server.sheet_values(spreadsheet_id, "People")
    assert rows[1:] == [[str(big), "a", "x"], [str(big - 1), "b"], [12, "twelve"]]


# ---------------------------------------------------------------- 5. a missing key header


def set_cell(server: LocalSheets, spreadsheet_id: str, a1: str, value: str, title: str = "People") -> None:
    worksheet(server, spreadsheet_id, title).update([[value]], a1)


def test_a_renamed_key_header_holds_the_tab_back_until_it_is_back(
    server: LocalSheets, spreadsheet_id: str, make_writer: WriterFactory
) -> None:
    make_writer().flush(spreadsheet_id, [people(("1", {"name": "Ann"}), ("2", {"name": "Bo"}))])
    set_cell(server, spreadsheet_id, "A1", "Mã KH")
    before = server.sheet_values(spreadsheet_id, "People")
    for writer in (make_writer(), make_writer()):
        report = writer.flush(spreadsheet_id, [people(("1", {"city": "Hue"}), ("3", {"name": "Cu"}))])
        [blocked] = report.blocked
        assert blocked.title == "People"
        assert blocked.reason.startswith("key header 'id' not found in row 1 of 'People'")
        assert report.worksheets == ()
    assert server.sheet_values(spreadsheet_id, "People") == before
    set_cell(server, spreadsheet_id, "A1", "id")
    report = make_writer().flush(spreadsheet_id, [people(("1", {"city": "Hue"}), ("3", {"name": "Cu"}))])
    assert report.blocked == ()
    assert rows_by_key(server.sheet_values(spreadsheet_id, "People")) == {
        "1": ["1", "Ann", "Hue"],
        "2": ["2", "Bo"],
        "3": ["3", "Cu"],
    }


def test_a_title_row_inserted_above_the_headers_holds_the_tab_back(
    server: LocalSheets, spreadsheet_id: str, make_writer: WriterFactory
) -> None:
    make_writer().flush(spreadsheet_id, [people(("1", {"name": "Ann"}))])
    ws = worksheet(server, spreadsheet_id)
    ws.insert_row(["Customer list"], 1)
    before = server.sheet_values(spreadsheet_id, "People")
    report = make_writer().flush(spreadsheet_id, [people(("1", {"city": "Hue"}), ("2", {"name": "Bo"}))])
    assert [b.title for b in report.blocked] == ["People"]
    assert server.sheet_values(spreadsheet_id, "People") == before


def test_another_tab_is_written_while_one_waits(
    server: LocalSheets, spreadsheet_id: str, make_writer: WriterFactory
) -> None:
    writer = make_writer()
    writer.flush(spreadsheet_id, [people(("1", {"name": "Ann"})), people(("1", {}), title="Other")])
    set_cell(server, spreadsheet_id, "A1", "ID number")
    report = writer.flush(spreadsheet_id, [people(("2", {})), people(("2", {"name": "Bo"}), title="Other")])
    assert [b.title for b in report.blocked] == ["People"]
    assert [w.title for w in report.worksheets] == ["Other"]
    assert server.sheet_values(spreadsheet_id, "Other")[1:] == [["1"], ["2", "Bo"]]


def test_an_empty_tab_with_a_persons_own_header_gets_ours_added(
    server: LocalSheets, make_writer: WriterFactory
) -> None:
    sid = server.new_spreadsheet([{"title": "People", "values": [["Notes"]]}])
    report = make_writer().flush(sid, [people(("1", {"name": "Ann"}))])
    assert report.blocked == ()
    assert server.sheet_values(sid, "People") == [["Notes", *HEADERS], ["", "1", "Ann"]]


# ---------------------------------------------------------------- 3. protected ranges


def test_a_protected_tab_waits_alone_and_is_written_once_unprotected(
    server: LocalSheets, spreadsheet_id: str, make_writer: WriterFactory
) -> None:
    writer = make_writer()
    writer.flush(spreadsheet_id, [people(("1", {"name": "Ann"})), people(("1", {}), title="Other")])
    protection = server.protect(spreadsheet_id, "People")
    server.reset_counts()
    report = writer.flush(spreadsheet_id, [people(("2", {"name": "Bo"})), people(("2", {}), title="Other")])
    [blocked] = report.blocked
    assert blocked.title == "People"
    assert "protected" in blocked.reason
    assert "'People'" in blocked.reason
    assert server.counts() == {"spreadsheets.get": 1, "values.batchUpdate": 1}
    assert server.sheet_values(spreadsheet_id, "Other")[1:] == [["1"], ["2"]]
    assert server.sheet_values(spreadsheet_id, "People")[1:] == [["1", "Ann"]]
    server.unprotect(spreadsheet_id, protection)
    assert writer.flush(spreadsheet_id, [people(("2", {"name": "Bo"}))]).blocked == ()
    assert server.sheet_values(spreadsheet_id, "People")[1:] == [["1", "Ann"], ["2", "Bo"]]


def test_a_protected_header_row_leaves_updates_and_appends_below_it_alone(
    server: LocalSheets, spreadsheet_id: str, make_writer: WriterFactory
) -> None:
    writer = make_writer()
    writer.flush(spreadsheet_id, [people(("1", {"name": "Ann"}))])
    server.protect(spreadsheet_id, "People", end_row=1)
    report = writer.flush(spreadsheet_id, [people(("1", {"city": "Hue"}), ("2", {"name": "Bo"}))])
    assert report.blocked == ()
    assert server.sheet_values(spreadsheet_id, "People")[1:] == [["1", "Ann", "Hue"], ["2", "Bo"]]


def test_a_protection_the_account_may_edit_is_no_obstacle(
    server: LocalSheets, spreadsheet_id: str, make_writer: WriterFactory
) -> None:
    writer = make_writer()
    writer.flush(spreadsheet_id, [people(("1", {"name": "Ann"}))])
    server.protect(spreadsheet_id, "People", editors=["api-caller"])
    server.protect(spreadsheet_id, "People", warning_only=True)
    assert writer.flush(spreadsheet_id, [people(("2", {"name": "Bo"}))]).blocked == ()


# ---------------------------------------------------------------- 7. limits


def test_text_over_the_cell_limit_is_cut_to_fit_with_a_marker(
    server: LocalSheets, spreadsheet_id: str, make_writer: WriterFactory
) -> None:
    emoji = "\U0001f600" * 40_000  # 40,000 characters, 80,000 UTF-16 code units
    make_writer().flush(spreadsheet_id, [people(("1", {"name": emoji, "city": "x" * 60_000}))])
    _, row = server.sheet_values(spreadsheet_id, "People")
    for text in row[1:]:
        assert text.endswith(CUT_MARKER)
        assert len(text.encode("utf-16-le")) // 2 <= MAX_CELL_CHARS
    assert row[1].removesuffix(CUT_MARKER) == "\U0001f600" * ((MAX_CELL_CHARS - len(CUT_MARKER)) // 2)


def test_a_write_that_would_pass_ten_million_cells_is_refused_before_it_is_sent(
    server: LocalSheets, make_writer: WriterFactory
) -> None:
    sid = server.new_spreadsheet([{"title": "Big", "rows": 384_600, "columns": 26}])  # 9,999,600 cells
    server.reset_counts()
    with pytest.raises(PermanentSheetsError) as caught:
        make_writer().flush(sid, [people(("1", {"name": "Ann"}))])  # a new tab of 1000 rows x its headers
    assert "past Google's limit of 10,000,000 cells" in caught.value.cause
    assert not {"spreadsheets.batchUpdate", "values.batchUpdate"} & set(server.counts())


def test_near_the_cell_limit_a_growing_grid_gets_no_spare_rows_rather_than_no_rows(
    server: LocalSheets, make_writer: WriterFactory
) -> None:
    sid = server.new_spreadsheet([{"title": "Big", "rows": 499_700, "columns": 20}])  # 6,000 cells left
    # 1,500 rows need 1,501 x 3 cells; with as many spare rows again they would need 9,003.
    report = make_writer().flush(sid, [people(*[(f"k{i}", {"name": "x"}) for i in range(1500)])])
    assert report.rows_appended == 1500
    assert server.sheet(sid, "People")["rowCount"] == 1501


# ---------------------------------------------------------------- 1. sign-in


def signed_in_writer(server: LocalSheets, tmp_path: Path, token_uri: str) -> SheetWriter:
    key = write_service_account(tmp_path / "key.json", token_uri=token_uri, key_id="key-1")
    settings = SheetsSettings(api_root=server.url, credentials_file=str(key), rate_limit=FAST_BUDGET)
    return SheetWriter(connect(settings, environ={}), settings, sleep=lambda _: None)


def test_a_refused_sign_in_is_permanent_and_says_what_to_check(
    server: LocalSheets, spreadsheet_id: str, tmp_path: Path
) -> None:
    writer = signed_in_writer(server, tmp_path, server.token_uri)
    writer.flush(spreadsheet_id, [people(("1", {}))])  # the key works
    for knob in ({"revoked_key_ids": ["key-1"]}, {"clock_offset_seconds": 7200}):
        server.set_auth(**knob)
        writer = signed_in_writer(server, tmp_path, server.token_uri)
        with pytest.raises(PermanentSheetsError) as caught:
            writer.flush(spreadsheet_id, [people(("2", {}))])
        assert "invalid_grant" in caught.value.cause
        assert "key" in caught.value.cause
        assert "clock" in caught.value.cause
    server.set_auth()


def test_an_unreachable_token_endpoint_is_transient(
    spreadsheet_id: str, server: LocalSheets, tmp_path: Path
) -> None:
    writer = signed_in_writer(server, tmp_path, "http://127.0.0.1:9/token")
    with pytest.raises(TransientSheetsError) as caught:
        writer.flush(spreadsheet_id, [people(("1", {}))])
    assert "sign-in" in caught.value.cause


# ---------------------------------------------------------------- 6. 429 without Retry-After


def test_a_shared_quota_is_learnt_instead_of_retried_into(
    server: LocalSheets, spreadsheet_id: str, make_writer: WriterFactory
) -> None:
    window = 0.4
    writer = make_writer(
        rate_limit=RateLimitSettings(reads_per_minute=1000, writes_per_minute=50, window_seconds=window),
        retry=RetrySettings(max_attempts=50, max_seconds=60),
    )
    server.set_quota(writes_per_window=3, window_seconds=window)  # what other tools leave us
    try:
        for n in range(15):
            writer.flush(spreadsheet_id, [people((str(n), {"name": "x"}))])
        refused = server.quota()["refused"].get("write", 0)
    finally:
        server.set_quota()
    [_, write] = writer.budget()
    assert write.budget <= 2 * 3  # from 50: cut on each 429, grown back by one per window or so
    assert write.throttled == refused
    assert refused <= 5  # of 15 + refused writes: the budget is learnt, not hammered
    assert len(server.sheet_values(spreadsheet_id, "People")) == 16


def test_a_protection_added_after_the_read_holds_back_only_its_tab(
    server: LocalSheets, spreadsheet_id: str, make_writer: WriterFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = make_writer()
    writer.flush(spreadsheet_id, [people(("1", {"name": "Ann"})), people(("1", {}), title="Other")])
    server.protect(spreadsheet_id, "People")
    read = SheetWriter._read

    def read_before_the_protection(self: SheetWriter, *args: Any) -> dict[str, SheetSnapshot]:
        return {t: msgspec.structs.replace(s, locks=()) for t, s in read(self, *args).items()}

    monkeypatch.setattr(SheetWriter, "_read", read_before_the_protection)
    server.reset_counts()
    report = writer.flush(spreadsheet_id, [people(("2", {"name": "Bo"})), people(("2", {}), title="Other")])
    [blocked] = report.blocked
    assert blocked.title == "People"
    assert "Google refused the write" in blocked.reason
    # The refused batch, then each worksheet on its own: Other written, People refused.
    assert server.counts() == {"spreadsheets.get": 1, "values.batchUpdate": 3}
    assert server.sheet_values(spreadsheet_id, "Other")[1:] == [["1"], ["2"]]
    assert server.sheet_values(spreadsheet_id, "People")[1:] == [["1", "Ann"]]


def test_a_header_row_below_a_title_row_is_written_when_the_mapping_says_where_it_is(
    server: LocalSheets, make_writer: WriterFactory
) -> None:
    sid = server.new_spreadsheet(
        [{"title": "People", "values": [["Customer list, do not edit"], ["id", "name"]]}]
    )

    def batch(*upserts: Upsert) -> WorksheetBatch:
        return WorksheetBatch("People", "id", HEADERS, list(upserts), header_row=2)

    writer = make_writer()
    assert writer.flush(sid, [batch(("1", {"name": "Ann"}), ("2", {"name": "Bo"}))]).blocked == ()
    make_writer().flush(sid, [batch(("1", {"city": "Hue"}), ("3", {"name": "Cu"}))])
    assert server.sheet_values(sid, "People") == [
        ["Customer list, do not edit"],
        ["id", "name", "city"],
        ["1", "Ann", "Hue"],
        ["2", "Bo"],
        ["3", "Cu"],
    ]
    # Told the headers are in row 1, the writer finds no key header there and waits.
    report = make_writer().flush(sid, [people(("4", {"name": "Di"}))])
    assert report.blocked[0].reason.startswith("key header 'id' not found in row 1 of 'People'")
