"""A1 notation: parsing what gspread and people send, writing ranges the way Google returns them."""

from __future__ import annotations

import pytest
from gspread.utils import absolute_range_name
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.localsheets.a1 import (
    Area,
    Bounds,
    ParsedRange,
    RangeSyntaxError,
    column_letter,
    format_range,
    parse_cells,
    quote_title,
    split_range,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Sheet1!A1:C3", ParsedRange("Sheet1", "A1:C3")),
        ("'My Sheet'!A:A", ParsedRange("My Sheet", "A:A")),
        ("'It''s'!B2", ParsedRange("It's", "B2")),
        ("'Sheet1'", ParsedRange("Sheet1", None)),
        ("Sheet1", ParsedRange(None, "Sheet1")),
        ("A1:B2", ParsedRange(None, "A1:B2")),
        ("'a!b'!C1", ParsedRange("a!b", "C1")),
    ],
)
def test_split_range_separates_sheet_and_cells(text: str, expected: ParsedRange) -> None:
    assert split_range(text) == expected


@pytest.mark.parametrize("text", ["", "'unterminated", "'Sheet1'A1", "'Sheet1'!", "!A1", "Sheet1!"])
def test_split_range_rejects_malformed_ranges(text: str) -> None:
    with pytest.raises(RangeSyntaxError):
        split_range(text)


@pytest.mark.parametrize(
    ("cells", "bounds"),
    [
        ("A1", Bounds(0, 1, 0, 1)),
        ("b2:c3", Bounds(1, 3, 1, 3)),
        ("A:B", Bounds(0, None, 0, 2)),
        ("2:5", Bounds(1, 5, 0, None)),
        ("A5:B", Bounds(4, None, 0, 2)),
        ("C3:A1", Bounds(0, 3, 0, 3)),
        ("AA10", Bounds(9, 10, 26, 27)),
    ],
)
def test_parse_cells_gives_zero_based_half_open_bounds(cells: str, bounds: Bounds) -> None:
    assert parse_cells(cells) == bounds


@pytest.mark.parametrize("cells", ["A0", "1A", "A1:B2:C3", "$A$1", "Sheet 1", "A1:", ""])
def test_parse_cells_rejects_non_a1(cells: str) -> None:
    with pytest.raises(RangeSyntaxError):
        parse_cells(cells)


@pytest.mark.parametrize(
    ("title", "shown"),
    [
        ("Sheet1", "Sheet1"),
        ("Customers", "Customers"),
        ("My Sheet", "'My Sheet'"),
        ("It's", "'It''s'"),
        ("A1", "'A1'"),
        ("Đơn hàng", "'Đơn hàng'"),
    ],
)
def test_titles_are_quoted_only_when_needed(title: str, shown: str) -> None:
    assert quote_title(title) == shown


def test_format_range_writes_single_cells_and_rectangles() -> None:
    assert format_range("Sheet1", Area(0, 1000, 0, 26)) == "Sheet1!A1:Z1000"
    assert format_range("Sheet1", Area(3, 4, 1, 2)) == "Sheet1!B4"
    assert format_range("Sheet1", Area(3, 4, 1, 2), always_quote=True) == "'Sheet1'!B4"
    assert column_letter(0) == "A"
    assert column_letter(26) == "AA"
    assert column_letter(701) == "ZZ"


@settings(max_examples=200)
@given(st.text(min_size=1, max_size=30).filter(lambda t: t.strip() == t and "\x00" not in t))
def test_any_title_quoted_by_gspread_splits_back_to_itself(title: str) -> None:
    assert split_range(absolute_range_name(title, "A1:B2")) == ParsedRange(title, "A1:B2")
    assert split_range(absolute_range_name(title)) == ParsedRange(title, None)


@settings(max_examples=200)
@given(
    st.integers(0, 5000),
    st.integers(1, 50),
    st.integers(0, 700),
    st.integers(1, 30),
)
def test_formatted_areas_parse_back_to_the_same_bounds(top: int, height: int, left: int, width: int) -> None:
    area = Area(top, top + height, left, left + width)
    parsed = split_range(format_range("Data", area))
    assert parsed.sheet == "Data"
    assert parsed.cells is not None
    assert parse_cells(parsed.cells) == Bounds(area.start_row, area.end_row, area.start_col, area.end_col)
