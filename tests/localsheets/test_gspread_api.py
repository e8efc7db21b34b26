"""The local server through real gspread over HTTP: the calls the sheet writer and people make."""

from __future__ import annotations

import gspread
import pytest
from gspread.exceptions import APIError, SpreadsheetNotFound
from gspread.utils import ValueInputOption
from gspread.worksheet import ValueRange

from connector.localsheets.testing import LocalSheets
from tests.localsheets.conftest import api_create


def test_spreadsheets_create_returns_google_shaped_metadata(client: gspread.Client) -> None:
    created = api_create(
        client,
        {
            "properties": {"title": "Leads", "timeZone": "Asia/Ho_Chi_Minh"},
            "sheets": [
                {"properties": {"title": "Customers", "gridProperties": {"rowCount": 5, "columnCount": 3}}}
            ],
        },
    )
    assert len(created["spreadsheetId"]) == 44
    assert created["properties"]["title"] == "Leads"
    assert created["properties"]["timeZone"] == "Asia/Ho_Chi_Minh"
    assert created["properties"]["locale"] == "en_US"
    assert created["spreadsheetUrl"].endswith(f"/d/{created['spreadsheetId']}/edit")
    (sheet,) = created["sheets"]
    assert sheet["properties"] == {
        "sheetId": 0,
        "title": "Customers",
        "index": 0,
        "sheetType": "GRID",
        "gridProperties": {"rowCount": 5, "columnCount": 3},
    }
    opened = client.open_by_key(created["spreadsheetId"])
    assert opened.title == "Leads"
    assert [ws.title for ws in opened.worksheets()] == ["Customers"]


def test_add_worksheet_then_update_and_read_back(spreadsheet: gspread.Spreadsheet) -> None:
    ws = spreadsheet.add_worksheet("My Sheet", rows=10, cols=4)
    assert (ws.row_count, ws.col_count) == (10, 4)
    reply = ws.update([["id", "name", "total"], [1, "An", 2.5], ["2", "Bình", None]], "A1")
    assert reply["updatedRange"] == "'My Sheet'!A1:C3"
    assert (reply["updatedRows"], reply["updatedColumns"], reply["updatedCells"]) == (3, 3, 8)
    assert ws.get_all_values() == [["id", "name", "total"], ["1", "An", "2.5"], ["2", "Bình", ""]]
    unformatted = ws.get("A1:D9", value_render_option=gspread.utils.ValueRenderOption.unformatted)
    assert unformatted == [["id", "name", "total"], [1, "An", 2.5], ["2", "Bình"]]
    assert isinstance(unformatted, ValueRange)
    assert unformatted.range == "'My Sheet'!A1:D9"
    by_column = ws.get("A1:C3", major_dimension=gspread.utils.Dimension.cols)
    assert by_column == [["id", "1", "2"], ["name", "An", "Bình"], ["total", "2.5"]]


def test_reads_trim_trailing_empty_cells_and_rows_but_keep_inner_gaps(
    spreadsheet: gspread.Spreadsheet,
) -> None:
    ws = spreadsheet.sheet1
    ws.update([["a", "", "c", ""], ["", "", "", ""], ["", "b"], ["", ""]], "A1")
    response = spreadsheet.values_get("Sheet1")
    assert response["range"] == "Sheet1!A1:Z1000"
    assert response["majorDimension"] == "ROWS"
    assert response["values"] == [["a", "", "c"], [], ["", "b"]]
    empty = spreadsheet.values_get("Sheet1!D5:E6")
    assert "values" not in empty
    assert empty["range"] == "Sheet1!D5:E6"


def test_batch_get_reads_header_and_key_columns_in_one_request(
    sheets: LocalSheets, client: gspread.Client
) -> None:
    rows = [["key", "name", "note"]] + [[f"k{i}", f"n{i}", ""] for i in range(50)]
    spreadsheet = client.open_by_key(sheets.new_spreadsheet([{"title": "Customers", "values": rows}]))
    ws = spreadsheet.worksheet("Customers")
    sheets.reset_counts()
    header, keys = ws.batch_get(["1:1", "A2:A"])
    assert sheets.counts() == {"values.batchGet": 1}
    assert header == [["key", "name", "note"]]
    assert header.range == "Customers!A1:Z1"
    assert keys == [[f"k{i}"] for i in range(50)]
    assert keys.range == "Customers!A2:A1000"


def test_values_append_writes_after_the_table_and_grows_the_grid(spreadsheet: gspread.Spreadsheet) -> None:
    ws = spreadsheet.add_worksheet("Events", rows=3, cols=2)
    ws.update([["when", "what"], ["1", "created"]], "A1")
    reply = ws.append_rows([["2", "took"], ["3", "closed"]], value_input_option=ValueInputOption.raw)
    assert reply["tableRange"] == "Events!A1:B2"
    assert reply["updates"]["updatedRange"] == "Events!A3:B4"
    metadata = spreadsheet.fetch_sheet_metadata()
    grid = next(s for s in metadata["sheets"] if s["properties"]["title"] == "Events")["properties"][
        "gridProperties"
    ]
    assert grid == {"rowCount": 4, "columnCount": 2}
    assert ws.get_all_values() == [["when", "what"], ["1", "created"], ["2", "took"], ["3", "closed"]]
    # Google's InsertDataOption docs: an append at the edge inserts the columns it needs too.
    ws.append_rows([["4", "transferred", "extra"]], value_input_option=ValueInputOption.raw)
    metadata = spreadsheet.fetch_sheet_metadata()
    grid = next(s for s in metadata["sheets"] if s["properties"]["title"] == "Events")["properties"][
        "gridProperties"
    ]
    assert grid == {"rowCount": 5, "columnCount": 3}
    assert ws.get_all_values()[-1] == ["4", "transferred", "extra"]


def test_reading_from_outside_the_grid_is_a_400(spreadsheet: gspread.Spreadsheet) -> None:
    with pytest.raises(APIError) as caught:
        spreadsheet.values_batch_get(["Sheet1!A1001:B1002"])
    assert (
        caught.value.error["message"]
        == "Range (Sheet1!A1001:B1002) exceeds grid limits. Max rows: 1000, max columns: 26"
    )
    assert spreadsheet.values_get("Sheet1!Y999:AB2000")["range"] == "Sheet1!Y999:Z1000"


def test_insert_rows_append_pushes_existing_rows_down(spreadsheet: gspread.Spreadsheet) -> None:
    ws = spreadsheet.sheet1
    ws.update([["a"], ["b"], [], ["footer"]], "A1")
    spreadsheet.values_append(
        "Sheet1!A1:A2", {"valueInputOption": "RAW", "insertDataOption": "INSERT_ROWS"}, {"values": [["c"]]}
    )
    assert ws.col_values(1) == ["a", "b", "c", "", "footer"]
    assert spreadsheet.fetch_sheet_metadata()["sheets"][0]["properties"]["gridProperties"]["rowCount"] == 1001


def test_writing_past_the_grid_is_a_400_exceeds_grid_limits(spreadsheet: gspread.Spreadsheet) -> None:
    ws = spreadsheet.add_worksheet("Small", rows=2, cols=2)
    with pytest.raises(APIError) as caught:
        ws.update([["a", "b", "c"]], "A1")
    assert caught.value.code == 400
    assert caught.value.error["status"] == "INVALID_ARGUMENT"
    assert "exceeds grid limits" in caught.value.error["message"]
    with pytest.raises(APIError) as below:
        ws.update([["x"]], "A3")
    assert "Max rows: 2, max columns: 2" in below.value.error["message"]
    assert "values" not in ws.spreadsheet.values_get("Small")


def test_batch_update_cells_past_the_grid_fails_the_whole_batch(spreadsheet: gspread.Spreadsheet) -> None:
    sheet_id = spreadsheet.sheet1.id
    body = {
        "requests": [
            {"appendDimension": {"sheetId": sheet_id, "dimension": "ROWS", "length": 5}},
            {
                "updateCells": {
                    "start": {"sheetId": sheet_id, "rowIndex": 0, "columnIndex": 25},
                    "rows": [{"values": [{"userEnteredValue": {"stringValue": "z"}}] * 2}],
                    "fields": "userEnteredValue",
                }
            },
        ]
    }
    with pytest.raises(APIError) as caught:
        spreadsheet.batch_update(body)
    assert caught.value.code == 400
    assert caught.value.error["message"].startswith("Invalid requests[1].updateCells: ")
    assert "exceeds grid limits" in caught.value.error["message"]
    # Atomic, as with Google: the appendDimension before the failing request did not happen either.
    assert spreadsheet.fetch_sheet_metadata()["sheets"][0]["properties"]["gridProperties"]["rowCount"] == 1000


def test_update_cells_and_append_cells_in_one_batch_update(
    sheets: LocalSheets, client: gspread.Client
) -> None:
    spreadsheet_id = sheets.new_spreadsheet(
        [
            {
                "title": "Orders",
                "rows": 3,
                "columns": 3,
                "values": [["id", "status"], ["o1", "new"], ["o2", "new"]],
            }
        ]
    )
    spreadsheet = client.open_by_key(spreadsheet_id)
    sheet_id = spreadsheet.worksheet("Orders").id
    sheets.reset_counts()
    reply = spreadsheet.batch_update(
        {
            "requests": [
                {
                    "updateCells": {
                        "start": {"sheetId": sheet_id, "rowIndex": 2, "columnIndex": 1},
                        "rows": [{"values": [{"userEnteredValue": {"stringValue": "paid"}}]}],
                        "fields": "userEnteredValue",
                    }
                },
                {
                    "appendCells": {
                        "sheetId": sheet_id,
                        "rows": [
                            {
                                "values": [
                                    {"userEnteredValue": {"stringValue": "o3"}},
                                    {"userEnteredValue": {"numberValue": 7}},
                                    {"userEnteredValue": {"boolValue": True}},
                                ]
                            }
                        ],
                        "fields": "userEnteredValue",
                    }
                },
                {"repeatCell": {"range": {"sheetId": sheet_id}, "cell": {}, "fields": "userEnteredFormat"}},
            ]
        }
    )
    assert reply == {"spreadsheetId": spreadsheet_id, "replies": [{}, {}, {}]}
    assert sheets.counts() == {"spreadsheets.batchUpdate": 1}
    assert sheets.sheet_values(spreadsheet_id, "Orders") == [
        ["id", "status"],
        ["o1", "new"],
        ["o2", "paid"],
        ["o3", 7, True],
    ]
    assert sheets.sheet(spreadsheet_id, "Orders")["rowCount"] == 4


def test_raw_keeps_formula_text_and_user_entered_makes_formulas(
    sheets: LocalSheets, client: gspread.Client
) -> None:
    spreadsheet_id = sheets.new_spreadsheet()
    ws = client.open_by_key(spreadsheet_id).sheet1
    hostile = [['=IMPORTXML("http://x")', "+1", "-2", "@me", "0042"]]
    ws.update(hostile, "A1", value_input_option=gspread.utils.ValueInputOption.raw)
    assert sheets.formula_cells(spreadsheet_id) == 0
    assert ws.get("A1:E1", value_render_option=gspread.utils.ValueRenderOption.unformatted) == hostile
    ws.update(
        [["=SUM(1,2)", "0042", "TRUE", "'=not a formula"]],
        "A2",
        value_input_option=ValueInputOption.user_entered,
    )
    assert sheets.formula_cells(spreadsheet_id) == 1
    row = ws.get("A2:D2", value_render_option=gspread.utils.ValueRenderOption.unformatted)
    assert row == [["=SUM(1,2)", 42, True, "=not a formula"]]
    assert ws.get("A2:D2", value_render_option=gspread.utils.ValueRenderOption.formula) == [
        ["=SUM(1,2)", 42, True, "=not a formula"]
    ]


def test_values_batch_update_and_clears(spreadsheet: gspread.Spreadsheet) -> None:
    ws = spreadsheet.sheet1
    reply = ws.batch_update(
        [{"range": "A1:B1", "values": [["a", "b"]]}, {"range": "D4", "values": [["d"]]}],
        value_input_option=ValueInputOption.raw,
    )
    assert reply["totalUpdatedCells"] == 3
    assert reply["totalUpdatedSheets"] == 1
    assert [r["updatedRange"] for r in reply["responses"]] == ["Sheet1!A1:B1", "Sheet1!D4"]
    cleared = spreadsheet.values_clear("Sheet1!A1")
    assert cleared == {"spreadsheetId": spreadsheet.id, "clearedRange": "Sheet1!A1"}
    assert ws.get_all_values() == [["", "b", "", ""], ["", "", "", ""], ["", "", "", ""], ["", "", "", "d"]]
    ws.batch_clear(["B1", "D:D"])
    assert "values" not in spreadsheet.values_get("Sheet1")


def test_unknown_spreadsheet_is_404_and_unknown_sheet_is_unable_to_parse_range(
    spreadsheet: gspread.Spreadsheet, client: gspread.Client
) -> None:
    with pytest.raises(SpreadsheetNotFound):
        client.open_by_key("no-such-spreadsheet")
    with pytest.raises(APIError) as caught:
        spreadsheet.values_get("'Nope'!A1")
    assert caught.value.code == 400
    assert caught.value.error["message"] == "Unable to parse range: 'Nope'!A1"


def test_sheet_structure_requests(spreadsheet: gspread.Spreadsheet) -> None:
    ws = spreadsheet.sheet1
    ws.update([["r1"], ["r2"], ["r3"]], "A1")
    ws.insert_rows([["new"]], row=2)  # insertDimension + values.append
    ws.delete_rows(4)
    assert ws.col_values(1) == ["r1", "new", "r2"]
    ws.resize(rows=2, cols=3)
    ws.update_title("Renamed")
    ws.freeze(rows=1)
    props = spreadsheet.fetch_sheet_metadata()["sheets"][0]["properties"]
    assert props["title"] == "Renamed"
    assert props["gridProperties"] == {"rowCount": 2, "columnCount": 3, "frozenRowCount": 1}
    assert ws.col_values(1) == ["r1", "new"]
    second = spreadsheet.add_worksheet("Second", rows=1, cols=1)
    spreadsheet.del_worksheet(ws)
    assert [w.title for w in spreadsheet.worksheets()] == ["Second"]
    with pytest.raises(APIError) as caught:
        spreadsheet.del_worksheet(second)
    assert caught.value.code == 400


def test_fields_mask_limits_the_metadata_returned(spreadsheet: gspread.Spreadsheet) -> None:
    narrow = spreadsheet.fetch_sheet_metadata(params={"fields": "sheets(properties(title,sheetId))"})
    assert narrow == {"sheets": [{"properties": {"sheetId": 0, "title": "Sheet1"}}]}
    both = spreadsheet.fetch_sheet_metadata(
        params={"fields": "spreadsheetId,sheets.properties.gridProperties"}
    )
    assert both == {
        "spreadsheetId": spreadsheet.id,
        "sheets": [{"properties": {"gridProperties": {"rowCount": 1000, "columnCount": 26}}}],
    }


def test_include_grid_data_returns_cell_data(spreadsheet: gspread.Spreadsheet) -> None:
    spreadsheet.sheet1.update(
        [["a", 1], [None, "=A1"]], "B2", value_input_option=ValueInputOption.user_entered
    )
    data = spreadsheet.fetch_sheet_metadata(params={"includeGridData": "true", "ranges": "Sheet1!B2:C3"})
    (grid,) = data["sheets"][0]["data"]
    assert grid["startRow"] == 1
    assert grid["startColumn"] == 1
    first, second = grid["rowData"]
    assert first["values"][0]["userEnteredValue"] == {"stringValue": "a"}
    assert first["values"][1]["userEnteredValue"] == {"numberValue": 1}
    assert second["values"] == [
        {},
        {
            "userEnteredValue": {"formulaValue": "=A1"},
            "effectiveValue": {"formulaValue": "=A1"},
            "formattedValue": "=A1",
        },
    ]


def test_requests_are_counted_by_kind(sheets: LocalSheets, spreadsheet: gspread.Spreadsheet) -> None:
    ws = spreadsheet.sheet1
    sheets.reset_counts()
    ws.update([["a"]], "A1")
    ws.get("A1")
    ws.batch_get(["A1"])
    ws.append_row(["b"])
    spreadsheet.values_clear("A1")
    spreadsheet.fetch_sheet_metadata()
    spreadsheet.batch_update(
        {"requests": [{"mergeCells": {"range": {"sheetId": 0}, "mergeType": "MERGE_ALL"}}]}
    )
    assert sheets.counts() == {
        "values.update": 1,
        "values.get": 1,
        "values.batchGet": 1,
        "values.append": 1,
        "values.clear": 1,
        "spreadsheets.get": 1,
        "spreadsheets.batchUpdate": 1,
    }
    assert sheets.total_requests() == 7


def test_sort_range_orders_rows_like_sheets_with_empties_last(spreadsheet: gspread.Spreadsheet) -> None:
    ws = spreadsheet.sheet1
    ws.update([["key", "n"], ["b", 2], ["", 9], ["A", 3], [10, 1], ["c", 2]], "A1")
    ws.sort((2, "asc"), (1, "des"), range="A2:B6")
    assert ws.get_all_values() == [["key", "n"], ["10", "1"], ["c", "2"], ["b", "2"], ["A", "3"], ["", "9"]]
    ws.sort((1, "asc"), range="A2:B6")
    assert ws.col_values(1) == ["key", "10", "A", "b", "c"]


def test_duplicate_sheet_copies_values_under_a_new_id(spreadsheet: gspread.Spreadsheet) -> None:
    ws = spreadsheet.sheet1
    ws.update([["x", 1]], "A1")
    copy = spreadsheet.duplicate_sheet(ws.id, new_sheet_name="Copy")
    assert copy.title == "Copy"
    assert copy.id != ws.id
    assert copy.get_all_values() == [["x", "1"]]
    ws.update([["changed"]], "A1")
    assert copy.acell("A1").value == "x"
