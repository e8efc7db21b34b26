"""Table-driven tests of the pure planning functions: what a flush writes, given what it read."""

from __future__ import annotations

import re
from typing import Any

import msgspec
import pytest

from connector.sheets.plan import (
    CUT_MARKER,
    MAX_CELL_CHARS,
    MAX_SPARE_ROWS,
    CellValue,
    RawValue,
    Upsert,
    ValueBlock,
    WorksheetBatch,
    cell_data,
    column_runs,
    encode_writes,
    index_keys,
    merge_upserts,
    new_sheet_id,
    pack_requests,
    plan_worksheet,
    raw_value,
    request_size,
    resolve_columns,
    spare_rows,
)
from connector.sheets.snapshot import SheetProperties, SheetSnapshot

HEADERS = ("id", "name", "city")


def snapshot(
    header: tuple[str, ...],
    key_cells: tuple[str | None, ...],
    *,
    key_column: int | None = 0,
    columns: int = 26,
    rows: int = 1000,
    tail: tuple[int, int | None] | None = None,
) -> SheetSnapshot:
    """A worksheet as a read shows it; ``tail``: (first row read in every column, last one with data)."""
    start, last = tail if tail is not None else (None, None)
    return SheetSnapshot(
        SheetProperties("People", 7, rows, columns),
        header,
        key_column,
        key_cells,
        tail_start=start,
        tail_last=last,
    )


def batch(*upserts: Upsert, headers: tuple[str, ...] = HEADERS) -> WorksheetBatch:
    return WorksheetBatch("People", "id", headers, list(upserts))


def kinds(requests: tuple[dict[str, Any], ...]) -> list[str]:
    return [next(iter(r)) for r in requests]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Ann", "Ann"),
        ('=IMPORTXML("http://x")', '=IMPORTXML("http://x")'),
        ("+1", "+1"),
        ("-1", "-1"),
        ("@x", "@x"),
        ("0012", "0012"),
        ("", ""),
        (12, 12),
        (1.5, 1.5),
        (True, True),
        (False, False),
        (None, ""),
        (2**53, 2**53),
        (2**53 + 1, str(2**53 + 1)),
        (-(2**60), str(-(2**60))),
        ("x" * (MAX_CELL_CHARS + 5), "x" * (MAX_CELL_CHARS - len(CUT_MARKER)) + CUT_MARKER),
    ],
)
def test_every_value_is_written_raw_as_its_own_type(value: CellValue, expected: RawValue) -> None:
    written = raw_value(value)
    assert written == expected
    assert type(written) is type(expected)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Ann", {"userEnteredValue": {"stringValue": "Ann"}}),
        ("=1+1", {"userEnteredValue": {"stringValue": "=1+1"}}),
        (12, {"userEnteredValue": {"numberValue": 12}}),
        (1.5, {"userEnteredValue": {"numberValue": 1.5}}),
        (False, {"userEnteredValue": {"boolValue": False}}),
        ("", {}),
        (None, {}),
    ],
)
def test_a_raw_value_as_cell_data_keeps_its_type_and_empty_clears(
    value: RawValue, expected: dict[str, Any]
) -> None:
    assert cell_data(value) == expected


@pytest.mark.parametrize(
    ("sheet_header", "previous", "positions", "header_after", "added", "readded"),
    [
        ((), (), {"id": 0, "name": 1, "city": 2}, HEADERS, HEADERS, ()),
        (HEADERS, HEADERS, {"id": 0, "name": 1, "city": 2}, HEADERS, (), ()),
        # A person reordered the columns: matched by name where they are now.
        (("city", "id", "name"), HEADERS, {"id": 1, "name": 2, "city": 0}, ("city", "id", "name"), (), ()),
        # A person's own column in the middle is skipped over.
        (
            ("id", "notes", "name", "city"),
            HEADERS,
            {"id": 0, "name": 2, "city": 3},
            ("id", "notes", "name", "city"),
            (),
            (),
        ),
        # A new header of ours goes after the last header; trailing blanks do not count.
        (("id", "name", "", ""), ("id", "name"), {"id": 0, "name": 1, "city": 2}, HEADERS, ("city",), ()),
        # "name" was renamed away by a person: it comes back at the end, and is reported as re-added.
        (
            ("id", "Full name", "city"),
            HEADERS,
            {"id": 0, "name": 3, "city": 2},
            ("id", "Full name", "city", "name"),
            (),
            ("name",),
        ),
        # A blank header cell in the middle stays blank; the first of two equal headers wins.
        (
            ("id", "", "name", "name", "city"),
            HEADERS,
            {"id": 0, "name": 2, "city": 4},
            ("id", "", "name", "name", "city"),
            (),
            (),
        ),
    ],
)
def test_columns_are_matched_by_header_name(
    sheet_header: tuple[str, ...],
    previous: tuple[str, ...],
    positions: dict[str, int],
    header_after: tuple[str, ...],
    added: tuple[str, ...],
    readded: tuple[str, ...],
) -> None:
    layout = resolve_columns(sheet_header, HEADERS, previous)
    assert dict(layout.positions) == positions
    assert layout.header == header_after
    assert layout.added == added
    assert layout.readded == readded


@pytest.mark.parametrize(
    ("cells", "rows", "duplicates"),
    [
        ((), {}, ()),
        (("a", "b"), {"a": 1, "b": 2}, ()),
        (("a", None, "", "b"), {"a": 1, "b": 4}, ()),
        (("a", "b", "a", "a", "b"), {"a": 1, "b": 2}, ("a", "b")),
    ],
)
def test_key_index_keeps_the_first_row_and_reports_duplicates(
    cells: tuple[str | None, ...], rows: dict[str, int], duplicates: tuple[str, ...]
) -> None:
    assert index_keys(cells) == (rows, duplicates)


@pytest.mark.parametrize(
    ("columns", "runs"),
    [([], ()), ([3], ((3, 4),)), ([2, 0, 1], ((0, 3),)), ([0, 1, 3, 5, 6], ((0, 2), (3, 4), (5, 7)))],
)
def test_column_runs(columns: list[int], runs: tuple[tuple[int, int], ...]) -> None:
    assert column_runs(columns) == runs


def test_later_upserts_of_a_key_override_earlier_ones_header_by_header() -> None:
    merged = merge_upserts([(1, {"name": "a", "city": "x"}), ("2", {"name": "b"}), ("1", {"name": "c"})])
    assert merged == {"1": (1, {"name": "c", "city": "x"}), "2": ("2", {"name": "b"})}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"title": ""}, "title"),
        ({"headers": ()}, "non-empty"),
        ({"headers": ("id", "id")}, "unique"),
        ({"key_header": "nope"}, "key header"),
        ({"upserts": [("", {})]}, "key"),
        ({"upserts": [(True, {})]}, "key"),
        ({"upserts": [(1, {"other": 1})]}, "not one of its headers"),
        ({"upserts": [(1, {"name": float("nan")})]}, "finite"),
        ({"upserts": [(1, {"name": [1]})]}, "unsupported"),
    ],
)
def test_invalid_batches_are_refused(kwargs: dict[str, Any], message: str) -> None:
    fields = {"title": "People", "key_header": "id", "headers": HEADERS, "upserts": [], **kwargs}
    with pytest.raises(ValueError, match=message):
        WorksheetBatch(**fields)


def test_a_missing_worksheet_is_created_with_its_header_and_rows_written_under_it() -> None:
    plan = plan_worksheet(batch((1, {"name": "Ann"}), ("k2", {"city": "Hue"})), None, new_sheet_id=42)
    assert kinds(plan.requests) == ["addSheet", "updateCells"]
    add = plan.requests[0]["addSheet"]["properties"]
    assert add["sheetId"] == 42
    assert add["title"] == "People"
    assert add["gridProperties"] == {"rowCount": 1000, "columnCount": 3, "frozenRowCount": 1}
    header = plan.requests[1]["updateCells"]
    assert header["range"] == {
        "sheetId": 42,
        "startRowIndex": 0,
        "endRowIndex": 1,
        "startColumnIndex": 0,
        "endColumnIndex": 3,
    }
    assert [c["userEnteredValue"]["stringValue"] for c in header["rows"][0]["values"]] == list(HEADERS)
    assert plan.values == (ValueBlock(1, 0, [[1, "Ann", None], ["k2", None, "Hue"]]),)
    assert (plan.created, plan.appended, plan.updated, plan.tail_start) == (True, 2, 0, 3)


def test_existing_keys_are_updated_in_place_and_new_ones_appended() -> None:
    # A cold start: the read did not cover the rows under the last key, so Google finds where to append.
    snap = snapshot(HEADERS, ("1", "2", "3"))
    plan = plan_worksheet(
        batch(
            ("2", {"name": "B", "city": "Hue"}), (3, {"name": "C", "city": "Hoi An"}), ("9", {"name": "N"})
        ),
        snap,
        new_sheet_id=0,
    )
    assert kinds(plan.requests) == ["appendCells"]
    assert plan.requests[0]["appendCells"]["rows"] == [{"values": [cell_data("9"), cell_data("N"), {}]}]
    # Rows 2 and 3 (0-based sheet rows 2 and 3) are adjacent and share columns: one rectangle.
    assert plan.values == (ValueBlock(2, 1, [["B", "Hue"], ["C", "Hoi An"]]),)
    assert (plan.updated, plan.appended, plan.created) == (2, 1, False)
    # The next read looks at every column from under the last key read.
    assert plan.tail_start == 4


@pytest.mark.parametrize(
    ("tail", "rows", "start"),
    [
        # The tail read from under the last key is empty: new rows go right under it.
        ((4, None), 1000, 4),
        # A person's row with no key under ours: new rows go under it, as appendCells would put them.
        ((4, 6), 1000, 7),
        # The tail began higher than the last key now (rows were added since): still all seen.
        ((2, None), 1000, 4),
        # The grid ends at the last key: nothing below to look at.
        (None, 4, 4),
    ],
)
def test_new_rows_are_written_from_the_row_after_the_last_with_data(
    tail: tuple[int, int | None] | None, rows: int, start: int
) -> None:
    snap = snapshot(HEADERS, ("1", "2", "3"), rows=rows, tail=tail)
    plan = plan_worksheet(batch(("8", {"name": "N"}), ("9", {"city": "C"})), snap, new_sheet_id=0)
    assert plan.values == (ValueBlock(start, 0, [["8", "N", None], ["9", None, "C"]]),)
    assert plan.tail_start == start + 2
    grown = [r["appendDimension"] for r in plan.requests]
    if start + 2 > rows:
        # Grown by what the rows need and twice as many again, so the next flushes need no batchUpdate.
        assert grown == [{"sheetId": 7, "dimension": "ROWS", "length": start + 2 - rows + 4}]
        assert plan.row_count == start + 6
    else:
        assert grown == []
        assert plan.row_count == rows


def test_rows_removed_above_where_the_tail_began_fall_back_to_append_cells() -> None:
    # The last read began at row 9, but the keys end at row 3 now: rows 4 to 8 were not seen.
    snap = snapshot(HEADERS, ("1", "2", "3"), tail=(9, None))
    plan = plan_worksheet(batch(("9", {"name": "N"})), snap, new_sheet_id=0)
    assert kinds(plan.requests) == ["appendCells"]
    assert plan.values == ()


@pytest.mark.parametrize(("appended", "spare"), [(0, 0), (1, 2), (5000, 10_000), (50_000, MAX_SPARE_ROWS)])
def test_a_growing_grid_gets_room_for_two_flushes_as_large_up_to_a_bound(appended: int, spare: int) -> None:
    assert spare_rows(appended) == spare


def test_a_persons_column_between_ours_is_never_written() -> None:
    snap = snapshot(("id", "name", "notes", "city"), ("1",), tail=(2, None))
    plan = plan_worksheet(
        batch(("1", {"name": "A", "city": "X"}), ("2", {"name": "B", "city": "Y"})), snap, new_sheet_id=0
    )
    updates = [block for block in plan.values if block.row == 1]
    assert {(b.area.start_col, b.area.end_col) for b in updates} == {(1, 2), (3, 4)}
    # The new row's cell under "notes" is null: left as it is (the row is new, so it is empty).
    assert plan.values[-1] == ValueBlock(2, 0, [["2", "B", None, "Y"]])


def test_scattered_rows_give_one_rectangle_per_adjacent_group() -> None:
    snap = snapshot(HEADERS, tuple(str(i) for i in range(10)))
    plan = plan_worksheet(
        batch(*[(str(i), {"name": f"n{i}"}) for i in (0, 1, 2, 5, 7, 8)]), snap, new_sheet_id=0
    )
    assert [(b.area.start_row, b.area.end_row) for b in plan.values] == [(1, 4), (6, 7), (8, 10)]
    assert plan.requests == ()


def test_headers_past_the_grid_grow_it_first_in_the_same_batch() -> None:
    snap = snapshot(("id", "name"), ("1",), columns=2)
    plan = plan_worksheet(batch(("1", {"city": "Hue"})), snap, new_sheet_id=0)
    assert kinds(plan.requests) == ["appendDimension", "updateCells"]
    assert plan.requests[0]["appendDimension"] == {"sheetId": 7, "dimension": "COLUMNS", "length": 1}
    assert plan.values == (ValueBlock(1, 2, [["Hue"]]),)
    assert plan.layout.added == ("city",)
    assert plan.column_count == 3


def test_a_key_header_renamed_away_is_readded_and_its_rows_appended() -> None:
    snap = snapshot(("ID", "name", "city"), ("1",), key_column=0)
    plan = plan_worksheet(batch(("1", {"name": "A"})), snap, new_sheet_id=0, previous_header=HEADERS)
    assert plan.layout.readded == ("id",)
    assert plan.key_column == 3
    assert (plan.updated, plan.appended) == (0, 1)


def test_a_duplicated_key_updates_only_its_first_row_and_is_reported() -> None:
    plan = plan_worksheet(batch(("a", {"name": "new"})), snapshot(HEADERS, ("b", "a", "a")), new_sheet_id=0)
    assert plan.values == (ValueBlock(2, 1, [["new"]]),)
    assert plan.duplicate_keys == ("a",)


def test_number_keys_match_their_text_in_the_sheet() -> None:
    plan = plan_worksheet(batch((12, {"name": "x"})), snapshot(HEADERS, ("12",)), new_sheet_id=0)
    assert (plan.updated, plan.appended) == (1, 0)


def test_key_cells_from_the_wrong_column_are_refused() -> None:
    with pytest.raises(ValueError, match="column"):
        plan_worksheet(batch(("1", {})), snapshot(("name", "id"), ("x",), key_column=0), new_sheet_id=0)


def test_nothing_to_do_plans_no_request() -> None:
    plan = plan_worksheet(batch(("1", {})), snapshot(HEADERS, ("1",)), new_sheet_id=0)
    assert (plan.requests, plan.values) == ((), ())
    assert encode_writes([plan], 2_000_000) == []


def test_a_large_write_is_split_into_bodies_under_the_limit() -> None:
    limit = 50_000
    upserts = [(f"k{i}", {"name": "x" * 200, "city": "y" * 200}) for i in range(1000)]
    updates = [(str(i), {"name": "z" * 300}) for i in range(300)]
    snap = snapshot(HEADERS, tuple(str(i) for i in range(300)), rows=301)
    plan = plan_worksheet(batch(*upserts, *updates), snap, new_sheet_id=0, max_request_bytes=limit)
    bodies = encode_writes([plan], limit)
    assert len(bodies) > 8
    assert [body.values for body in bodies] == [False] + [True] * (len(bodies) - 1)
    assert msgspec.json.decode(bodies[0].payload)["requests"] == list(plan.requests)
    written: list[int] = []
    for body in bodies[1:]:
        assert len(body.payload) <= limit
        for value_range in msgspec.json.decode(body.payload)["data"]:
            first, last = map(int, re.findall(r"[A-Z]+(\d+)", value_range["range"].split("!")[1]))
            assert len(value_range["values"]) == last - first + 1
            written.extend(range(first, last + 1))
    # Every updated row (2 to 301) and every new one (302 to 1301) exactly once.
    assert sorted(written) == list(range(2, 1302))
    assert (plan.updated, plan.appended) == (300, 1000)


def test_values_ranges_name_the_sheet_and_the_rectangle() -> None:
    snap = snapshot(HEADERS, ("1", "2"), rows=10, tail=(3, None))
    plan = plan_worksheet(batch(("2", {"city": "Hue"}), ("3", {"name": "C"})), snap, new_sheet_id=0)
    (values,) = encode_writes([plan], 2_000_000)
    assert values.values is True
    assert msgspec.json.decode(values.payload) == {
        "valueInputOption": "RAW",
        "data": [
            {"range": "'People'!C3:C3", "values": [["Hue"]]},
            {"range": "'People'!A4:C4", "values": [["3", "C"]]},
        ],
    }


def test_a_small_flush_with_structural_requests_is_one_batch_update() -> None:
    plan = plan_worksheet(batch(("1", {"name": "A"})), None, new_sheet_id=5)
    (body,) = encode_writes([plan], 2_000_000)
    assert body.values is False
    requests = msgspec.json.decode(body.payload)["requests"]
    assert [next(iter(r)) for r in requests] == ["addSheet", "updateCells", "updateCells"]
    assert requests[2]["updateCells"]["rows"] == [{"values": [cell_data("1"), cell_data("A"), {}]}]


def test_packing_keeps_order_and_puts_each_request_once() -> None:
    requests = [{"updateCells": {"rows": [{"values": [cell_data("x" * n)]}]}} for n in (10, 500, 20, 900, 5)]
    limit = max(request_size(r) for r in requests) + 10
    bodies = pack_requests(requests, limit)
    assert [r for body in bodies for r in body] == requests
    assert all(sum(request_size(r) for r in body) <= limit for body in bodies)


@pytest.mark.parametrize(("title", "taken"), [("People", set()), ("Orders", {0, 1})])
def test_new_sheet_ids_are_stable_unused_and_not_zero(title: str, taken: set[int]) -> None:
    first = new_sheet_id(title, taken)
    assert first == new_sheet_id(title, taken)
    assert first not in taken
    assert first != 0
    assert new_sheet_id(title, taken | {first}) != first
