"""Cell semantics (RAW, USER_ENTERED, rendering) and the grid's structural operations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.localsheets import store
from connector.localsheets.model import (
    SKIP,
    Formula,
    Sheet,
    Spreadsheet,
    format_number,
    parse_extended_value,
    parse_input,
    render,
)


@pytest.mark.parametrize(
    ("given_value", "stored"),
    [
        ("=SUM(A1:A3)", Formula("=SUM(A1:A3)")),
        ("42", 42),
        ("-3.5", -3.5),
        ("1,234.5", 1234.5),
        ("50%", 0.5),
        ("1e3", 1000),
        ("true", True),
        ("FALSE", False),
        ("'=quoted", "=quoted"),
        ("'0042", "0042"),
        ("+", "+"),
        ("@mention", "@mention"),
        ("12 apples", "12 apples"),
        ("", None),
        (7, 7),
        (2.0, 2),
        (True, True),
    ],
)
def test_user_entered_parses_like_the_sheets_ui(given_value: Any, stored: Any) -> None:
    assert parse_input(given_value, "USER_ENTERED") == stored


@pytest.mark.parametrize(
    ("given_value", "stored"),
    [
        ('=IMPORTXML("http://x")', '=IMPORTXML("http://x")'),
        ("42", "42"),
        ("TRUE", "TRUE"),
        ("'x", "'x"),
        (3, 3),
        (False, False),
        ("", None),
    ],
)
def test_raw_stores_values_as_given(given_value: Any, stored: Any) -> None:
    assert parse_input(given_value, "RAW") == stored


def test_null_in_a_values_write_leaves_the_cell_alone() -> None:
    assert parse_input(None, "RAW") is SKIP
    sheet = Sheet(sheet_id=1, title="S")
    sheet.write(0, 0, [["a", "b"]])
    sheet.write(0, 0, [[SKIP, "c"]])
    assert sheet.rows == [["a", "c"]]


@pytest.mark.parametrize(
    ("cell", "formatted", "unformatted"),
    [
        (None, "", ""),
        (3, "3", 3),
        (2.5, "2.5", 2.5),
        (True, "TRUE", True),
        ("text", "text", "text"),
        (Formula("=A1"), "=A1", "=A1"),
    ],
)
def test_render_options(cell: Any, formatted: Any, unformatted: Any) -> None:
    assert render(cell, "FORMATTED_VALUE") == formatted
    assert render(cell, "UNFORMATTED_VALUE") == unformatted


def test_large_and_fractional_numbers_format_compactly() -> None:
    assert format_number(1e20) == "1E+20"
    assert format_number(0.1 + 0.2) == "0.3"
    assert format_number(123456789012) == "123456789012"


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ({"stringValue": "x"}, "x"),
        ({"numberValue": 4.0}, 4),
        ({"boolValue": False}, False),
        ({"formulaValue": "=1"}, Formula("=1")),
        ({}, None),
        (None, None),
    ],
)
def test_extended_values_are_read(value: Any, cell: Any) -> None:
    assert parse_extended_value(value) == cell


@pytest.mark.parametrize(
    "value",
    [
        {"stringValue": 1},
        {"numberValue": "1"},
        {"formulaValue": "1+1"},
        {"bogus": 1},
        {"stringValue": "a", "numberValue": 1},
    ],
)
def test_bad_extended_values_are_400(value: Any) -> None:
    with pytest.raises(Exception, match="userEnteredValue") as caught:
        parse_extended_value(value)
    assert getattr(caught.value, "code", None) == 400


def test_rows_and_columns_insert_and_delete_shift_cells() -> None:
    sheet = Sheet(sheet_id=1, title="S", row_count=4, column_count=3)
    sheet.write(0, 0, [["a", "b", "c"], ["d", "e", "f"]])
    sheet.insert_rows(1, 2)
    assert (sheet.row_count, sheet.rows) == (6, [["a", "b", "c"], [], [], ["d", "e", "f"]])
    sheet.insert_columns(1, 1)
    assert sheet.rows[0] == ["a", None, "b", "c"]
    assert sheet.column_count == 4
    sheet.delete_columns(0, 2)
    assert sheet.rows[3] == ["e", "f"]
    sheet.delete_rows(1, 3)
    assert (sheet.row_count, sheet.rows) == (4, [["b", "c"], ["e", "f"]])
    sheet.resize(1, 1)
    assert sheet.rows == [["b"]]


def test_last_data_row_ignores_trailing_empty_rows_and_other_columns() -> None:
    sheet = Sheet(sheet_id=1, title="S")
    sheet.write(0, 0, [["k1"], ["k2"], [SKIP, "only b"]])
    sheet.clear(1, 2, 0, 26)
    assert sheet.last_data_row() == 3
    assert sheet.last_data_row(0, 1) == 1


_cells = st.one_of(
    st.none(),
    st.text(max_size=5),
    st.integers(-1000, 1000),
    st.booleans(),
    st.builds(Formula, st.text(max_size=5).map(lambda t: "=" + t)),
)


@settings(max_examples=60)
@given(
    st.lists(st.lists(_cells, max_size=5), max_size=8),
    st.integers(0, 10),
    st.integers(0, 4),
    st.lists(st.lists(_cells, min_size=1, max_size=3), min_size=1, max_size=3),
)
def test_a_fork_is_isolated_from_writes_to_the_original_and_back(
    initial: list[list[Any]], top: int, left: int, update: list[list[Any]]
) -> None:
    sheet = Sheet(sheet_id=1, title="S", row_count=20, column_count=10)
    sheet.write(0, 0, initial)
    before = [list(row) for row in sheet.rows]
    spreadsheet = Spreadsheet(spreadsheet_id="x", title="t", sheets=[sheet])
    fork = spreadsheet.fork()
    fork.sheets[0].write(top, left, update)
    fork.sheets[0].insert_rows(0, 1)
    fork.sheets[0].clear(0, 20, 0, 10)
    assert sheet.rows == before
    assert sheet.row_count == 20


@settings(max_examples=40)
@given(st.lists(st.lists(_cells, max_size=6), max_size=10), st.text(min_size=1, max_size=10))
def test_the_data_file_round_trips_every_cell_kind(
    tmp_path_factory: Any, rows: list[list[Any]], title: str
) -> None:
    path: Path = tmp_path_factory.mktemp("store") / "state.json"
    sheet = Sheet(sheet_id=5, title=title, row_count=30, column_count=8, frozen_rows=1, hidden=True)
    sheet.write(0, 0, rows)
    original = Spreadsheet(spreadsheet_id="id", title="T", sheets=[sheet], time_zone="Asia/Ho_Chi_Minh")
    store.save(path, [original])
    (loaded,) = store.load(path)
    assert loaded == original
