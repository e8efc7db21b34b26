"""Google's operations on the model, directly: atomic batches, cell ranges, dimensions, masks."""

from __future__ import annotations

import random
from typing import Any

import msgspec
import pytest

from connector.localsheets import api
from connector.localsheets.fieldmask import ROW_PATH, FieldMaskError, apply_mask, parse_mask, split_at
from connector.localsheets.model import SheetsError
from connector.localsheets.service import LocalSheetsService, SheetSpec, SpreadsheetSpec
from connector.sheets.snapshot import GRID_FIELDS


@pytest.fixture
def service() -> LocalSheetsService:
    """A service holding spreadsheet "s" with a 5x3 "Data" sheet (id 7) holding a header and two rows."""
    svc = LocalSheetsService(seed=3)
    svc.put_spreadsheet(
        "s",
        SpreadsheetSpec(
            sheets=[
                SheetSpec(
                    title="Data", sheet_id=7, rows=5, columns=3, values=[["h1", "h2"], ["a", 1], ["b", 2]]
                )
            ]
        ),
    )
    return svc


def _batch(service: LocalSheetsService, *requests: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = service.mutate(
        "s", lambda s: api.batch_update(s, {"requests": list(requests)}, random.Random(0))
    )
    return result


def _values(service: LocalSheetsService) -> list[list[Any]]:
    return api.sheet_values(service.get("s").sheets[0])


def test_a_failing_request_rolls_back_the_whole_batch(service: LocalSheetsService) -> None:
    with pytest.raises(SheetsError, match=r"requests\[2\]\.deleteSheet: No sheet with id: 99"):
        _batch(
            service,
            {"addSheet": {"properties": {"title": "New"}}},
            {"updateCells": {"start": {"sheetId": 7}, "rows": [{"values": [{}]}], "fields": "*"}},
            {"deleteSheet": {"sheetId": 99}},
        )
    assert [s.title for s in service.get("s").sheets] == ["Data"]
    assert _values(service)[0] == ["h1", "h2"]


def test_add_sheet_reply_carries_its_properties(service: LocalSheetsService) -> None:
    reply = _batch(
        service,
        {
            "addSheet": {
                "properties": {
                    "title": "Orders",
                    "index": 0,
                    "gridProperties": {"rowCount": 2, "columnCount": 4},
                }
            }
        },
    )
    props = reply["replies"][0]["addSheet"]["properties"]
    assert props["title"] == "Orders"
    assert props["index"] == 0
    assert props["gridProperties"] == {"rowCount": 2, "columnCount": 4}
    assert isinstance(props["sheetId"], int)
    with pytest.raises(SheetsError, match="already exists"):
        _batch(service, {"addSheet": {"properties": {"title": "orders"}}})


def test_update_cells_with_a_range_clears_what_the_rows_do_not_cover(service: LocalSheetsService) -> None:
    _batch(
        service,
        {
            "updateCells": {
                "range": {
                    "sheetId": 7,
                    "startRowIndex": 1,
                    "endRowIndex": 3,
                    "startColumnIndex": 0,
                    "endColumnIndex": 2,
                },
                "rows": [{"values": [{"userEnteredValue": {"stringValue": "z"}}]}],
                "fields": "userEnteredValue",
            }
        },
    )
    assert _values(service) == [["h1", "h2"], ["z"]]


def test_update_cells_outside_the_value_mask_changes_no_value(service: LocalSheetsService) -> None:
    _batch(
        service,
        {
            "updateCells": {
                "start": {"sheetId": 7, "rowIndex": 0, "columnIndex": 0},
                "rows": [{"values": [{"userEnteredFormat": {"textFormat": {"bold": True}}}]}],
                "fields": "userEnteredFormat.textFormat.bold",
            }
        },
    )
    assert _values(service)[0] == ["h1", "h2"]


def test_update_cells_needs_a_field_mask(service: LocalSheetsService) -> None:
    with pytest.raises(SheetsError, match="At least one field"):
        _batch(service, {"updateCells": {"start": {"sheetId": 7}, "rows": []}})


def test_append_cells_goes_after_the_last_row_with_data_and_grows_rows_not_columns(
    service: LocalSheetsService,
) -> None:
    row = {"values": [{"userEnteredValue": {"stringValue": "c"}}, {"userEnteredValue": {"numberValue": 3}}]}
    _batch(service, {"appendCells": {"sheetId": 7, "rows": [row] * 4, "fields": "userEnteredValue"}})
    sheet = service.get("s").sheets[0]
    assert _values(service)[3:] == [["c", 3]] * 4
    assert sheet.row_count == 7
    wide = {"values": [{"userEnteredValue": {"stringValue": "x"}}] * 4}
    with pytest.raises(
        SheetsError, match="Attempting to write column: 3, beyond the last requested column of: 2"
    ):
        _batch(service, {"appendCells": {"sheetId": 7, "rows": [wide], "fields": "*"}})


def test_dimension_requests(service: LocalSheetsService) -> None:
    _batch(
        service,
        {
            "insertDimension": {
                "range": {"sheetId": 7, "dimension": "COLUMNS", "startIndex": 0, "endIndex": 1}
            }
        },
        {"appendDimension": {"sheetId": 7, "dimension": "ROWS", "length": 10}},
        {"deleteDimension": {"range": {"sheetId": 7, "dimension": "ROWS", "startIndex": 1, "endIndex": 2}}},
    )
    sheet = service.get("s").sheets[0]
    assert (sheet.row_count, sheet.column_count) == (14, 4)
    assert _values(service) == [["", "h1", "h2"], ["", "b", 2]]
    with pytest.raises(SheetsError, match="can't delete all"):
        _batch(service, {"deleteDimension": {"range": {"sheetId": 7, "dimension": "COLUMNS"}}})


def test_unknown_request_kinds_are_rejected_and_formatting_is_accepted(service: LocalSheetsService) -> None:
    reply = _batch(service, {"updateBorders": {"range": {"sheetId": 7}}}, {"autoResizeDimensions": {}})
    assert reply["replies"] == [{}, {}]
    with pytest.raises(SheetsError, match='Unknown name "fooBar"'):
        _batch(service, {"fooBar": {}})
    with pytest.raises(SheetsError, match="at least one request"):
        service.mutate("s", lambda s: api.batch_update(s, {"requests": []}, random.Random(0)))


def test_bounded_range_write_must_fit_the_range(service: LocalSheetsService) -> None:
    with pytest.raises(SheetsError, match=r"tried writing to column \[C\]"):
        service.mutate(
            "s",
            lambda s: api.update_values(
                s, "Data!A1:B1", {"values": [[1, 2, 3]]}, {"valueInputOption": "RAW"}
            ),
        )
    with pytest.raises(SheetsError, match=r"tried writing to row \[2\]"):
        service.mutate(
            "s",
            lambda s: api.update_values(s, "Data!A1:B1", {"values": [[1], [2]]}, {"valueInputOption": "RAW"}),
        )
    with pytest.raises(SheetsError, match="'valueInputOption' is required"):
        service.mutate("s", lambda s: api.update_values(s, "Data!A1", {"values": [[1]]}, {}))


def test_columns_major_writes_leave_short_columns_alone(service: LocalSheetsService) -> None:
    service.mutate(
        "s",
        lambda s: api.update_values(
            s,
            "Data!A2",
            {"majorDimension": "COLUMNS", "values": [["x", "y"], ["z"]]},
            {"valueInputOption": "RAW"},
        ),
    )
    assert _values(service) == [["h1", "h2"], ["x", "z"], ["y", 2]]


def test_a_range_without_a_sheet_name_means_the_first_sheet(service: LocalSheetsService) -> None:
    result = api.value_range(service.get("s"), "A1:B1")
    assert result == {"range": "Data!A1:B1", "majorDimension": "ROWS", "values": [["h1", "h2"]]}
    assert api.value_range(service.get("s"), "Data")["range"] == "Data!A1:C5"


@pytest.mark.parametrize(
    ("mask", "expected"),
    [
        ("a", {"a": {"b": 1, "c": 2}}),
        ("a.b", {"a": {"b": 1}}),
        ("a/c,d", {"a": {"c": 2}, "d": [{"e": 1}, {"e": 3, "f": 4}]}),
        ("d(e)", {"d": [{"e": 1}, {"e": 3}]}),
        ("d.f", {"d": [{}, {"f": 4}]}),
        ("*", {"a": {"b": 1, "c": 2}, "d": [{"e": 1}, {"e": 3, "f": 4}]}),
    ],
)
def test_field_masks_select_nested_fields(mask: str, expected: dict[str, Any]) -> None:
    value = {"a": {"b": 1, "c": 2}, "d": [{"e": 1}, {"e": 3, "f": 4}]}
    assert apply_mask(value, parse_mask(mask)) == expected


@pytest.mark.parametrize("mask", ["a(", "a..b", ",", "a)b"])
def test_malformed_field_masks_are_refused(mask: str) -> None:
    with pytest.raises(FieldMaskError):
        parse_mask(mask)


@pytest.mark.parametrize(
    "mask",
    [
        GRID_FIELDS,
        "sheets(data(rowData(values(effectiveValue(numberValue)))))",
        "sheets(data(startRow,rowData(values(formattedValue,userEnteredValue))))",
        "sheets.data.rowData",
        "sheets(data(rowData(values(*))))",
        "sheets.properties.title",
        "spreadsheetId,sheets",
        "*",
    ],
)
def test_cells_built_already_masked_answer_as_the_whole_mask_would(
    service: LocalSheetsService, mask: str
) -> None:
    _batch(
        service,
        {
            "updateCells": {
                "rows": [{"values": [{"userEnteredValue": {"formulaValue": "=1"}}, {}, _number(2.5)]}],
                "fields": "userEnteredValue",
                "start": {"sheetId": 7, "rowIndex": 2, "columnIndex": 0},
            }
        },
    )
    spreadsheet = service.get("s")
    outer, rows = split_at(parse_mask(mask), ROW_PATH)
    built = api.spreadsheet_json(spreadsheet, True, ["Data!A1:C5"], row_mask=rows)
    whole = _plain(api.spreadsheet_json(spreadsheet, True, ["Data!A1:C5"]))
    assert _plain(built if outer is None else apply_mask(built, outer)) == apply_mask(whole, parse_mask(mask))


def _plain(answer: dict[str, Any]) -> Any:
    """An answer as its JSON reads (rows come encoded already)."""
    return msgspec.json.decode(msgspec.json.encode(answer))


def _number(value: float) -> dict[str, Any]:
    return {"userEnteredValue": {"numberValue": value}}
