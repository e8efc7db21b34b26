"""The read side: which ranges a flush asks for and how the answer is understood."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from connector.sheets.snapshot import column_letter, parse_sheet_list, parse_snapshots, read_ranges


@pytest.mark.parametrize(
    ("index", "letters"), [(0, "A"), (2, "C"), (25, "Z"), (26, "AA"), (701, "ZZ"), (702, "AAA")]
)
def test_column_letters(index: int, letters: str) -> None:
    assert column_letter(index) == letters


@pytest.mark.parametrize(
    ("title", "key_column", "ranges"),
    [
        ("People", 0, ["'People'!1:1", "'People'!A2:A"]),
        ("It's", 27, ["'It''s'!1:1", "'It''s'!AB2:AB"]),
        ("People", None, ["'People'!1:1"]),
    ],
)
def test_read_ranges_are_the_header_row_and_the_key_column(
    title: str, key_column: int | None, ranges: list[str]
) -> None:
    assert read_ranges(title, key_column) == ranges


@pytest.mark.parametrize(
    ("cell", "text"),
    [
        (None, None),
        ({}, None),
        ({"effectiveValue": {"stringValue": "a"}}, "a"),
        ({"effectiveValue": {"numberValue": 12.0}}, "12"),
        ({"effectiveValue": {"numberValue": 1.5}}, "1.5"),
        ({"effectiveValue": {"boolValue": True}}, "TRUE"),
        ({"effectiveValue": {"errorValue": {"type": "REF"}}}, None),
    ],
)
def test_cell_text(cell: dict[str, Any] | None, text: str | None) -> None:
    answer = {"sheets": [{"properties": {"title": "T"}, "data": [{"rowData": [{"values": [cell or {}]}]}]}]}
    assert parse_snapshots(msgspec.json.encode(answer), {"T": None})["T"].header == ((text,) if text else ())


def test_a_spreadsheets_get_answer_becomes_snapshots() -> None:
    def s(text: str) -> dict[str, Any]:
        return {"effectiveValue": {"stringValue": text}}

    answer = {
        "sheets": [
            {
                "properties": {
                    "sheetId": 5,
                    "title": "People",
                    "gridProperties": {"rowCount": 9, "columnCount": 4},
                },
                "data": [
                    {"rowData": [{"values": [s("name"), s("id"), {}, {}]}]},
                    {
                        "startRow": 1,
                        "startColumn": 1,
                        "rowData": [{"values": [s("a")]}, {}, {"values": [s("b")]}],
                    },
                ],
            },
            {
                "properties": {
                    "sheetId": 6,
                    "title": "Empty",
                    "gridProperties": {"rowCount": 1, "columnCount": 1},
                },
                "data": [{}, {"startRow": 1}],
            },
            {"properties": {"sheetId": 8, "title": "Other"}},
        ]
    }
    snaps = parse_snapshots(msgspec.json.encode(answer), {"People": 1, "Empty": 0})
    assert set(snaps) == {"People", "Empty"}
    people = snaps["People"]
    assert (people.properties.sheet_id, people.properties.row_count, people.properties.column_count) == (
        5,
        9,
        4,
    )
    assert people.header == ("name", "id")
    assert (people.key_column, people.key_cells) == (1, ("a", None, "b"))
    assert snaps["Empty"].header == ()
    assert snaps["Empty"].key_cells == ()


def test_the_worksheet_list_gives_titles_ids_and_sizes() -> None:
    answer = {
        "sheets": [
            {"properties": {"sheetId": 3, "title": "A", "gridProperties": {"rowCount": 5, "columnCount": 2}}},
            {"properties": {"title": "Sheet1"}},
        ]
    }
    sheets = parse_sheet_list(msgspec.json.encode(answer))
    # Keyed as Google compares titles: without regard to case.
    assert (sheets["a"].title, sheets["a"].sheet_id, sheets["a"].row_count, sheets["a"].column_count) == (
        "A",
        3,
        5,
        2,
    )
    assert sheets["sheet1"].sheet_id == 0


@pytest.mark.parametrize(
    "body", [b"", b'{"sheets": [', b"[]", b'{"sheets": [{"properties": {"sheetId": "x"}}]}']
)
def test_an_unreadable_answer_is_a_decode_error(body: bytes) -> None:
    with pytest.raises(msgspec.DecodeError):
        parse_snapshots(body, {"T": 0})
