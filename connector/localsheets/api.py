"""Sheets API v4 operations over the grid model: Google's request bodies in, Google's response bodies out.

Every function here is pure apart from mutating the :class:`Spreadsheet` it is given; the server gives it a
fork and commits the fork only when the call returns, so a failing request (or any failing request of a
``batchUpdate``) changes nothing, as with Google.

Known simplifications, kept deliberately small:

- formulas are stored, counted and returned as their text under every render option (no evaluation);
- USER_ENTERED recognises formulas, numbers (with thousands commas, exponent, percent), TRUE/FALSE and
  the leading apostrophe; it does not parse dates or currencies;
- reads are cut to the grid, but a range that starts outside it is a 400 "exceeds grid limits" (as
  Google answers); ``values:append`` adds the rows and columns it needs, ``appendCells`` only rows
  (a row wider than the grid is Google's "Attempting to write column" error);
- ``values:append`` takes "the table" to be the contiguous block of non-empty rows that starts at the
  range's first row, looking at the range's columns (every column from the range's first one for a
  single-cell range); Google's detection also looks sideways for a table near the range.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any, Final, cast

import msgspec

from .a1 import (
    Area,
    Bounds,
    RangeSyntaxError,
    column_letter,
    format_range,
    is_cell_part,
    parse_cells,
    split_range,
)
from .fieldmask import Mask, apply_mask
from .model import (
    DEFAULT_COLUMNS,
    DEFAULT_ROWS,
    MAX_CELLS,
    SKIP,
    Cell,
    Formula,
    Protection,
    Row,
    Sheet,
    SheetsError,
    Skip,
    Spreadsheet,
    ValueInputOption,
    ValueRenderOption,
    WriteCell,
    extended_value,
    invalid,
    parse_extended_value,
    parse_input,
    render,
    transpose,
)
from .strict import can_edit

Json = dict[str, Any]

_RENDER_OPTIONS: Final = ("FORMATTED_VALUE", "UNFORMATTED_VALUE", "FORMULA")
_INPUT_OPTIONS: Final = ("RAW", "USER_ENTERED")
_DIMENSIONS: Final = ("ROWS", "COLUMNS")

# Requests that change only formatting, validation, protection or presentation: accepted and ignored.
FORMATTING_REQUESTS: Final = frozenset(
    {
        "repeatCell",
        "updateBorders",
        "mergeCells",
        "unmergeCells",
        "autoResizeDimensions",
        "updateDimensionProperties",
        "setBasicFilter",
        "clearBasicFilter",
        "addFilterView",
        "updateFilterView",
        "deleteFilterView",
        "addConditionalFormatRule",
        "updateConditionalFormatRule",
        "deleteConditionalFormatRule",
        "setDataValidation",
        "addProtectedRange",
        "updateProtectedRange",
        "deleteProtectedRange",
        "addBanding",
        "updateBanding",
        "deleteBanding",
        "addNamedRange",
        "updateNamedRange",
        "deleteNamedRange",
        "updateDeveloperMetadata",
        "createDeveloperMetadata",
        "deleteDeveloperMetadata",
        "addDimensionGroup",
        "deleteDimensionGroup",
        "updateDimensionGroup",
        "updateEmbeddedObjectPosition",
        "updateEmbeddedObjectBorder",
    }
)


def not_found() -> SheetsError:
    """Google's 404 for an unknown spreadsheet."""
    return SheetsError(404, "Requested entity was not found.")


# ---------------------------------------------------------------- ranges and options


def resolve(spreadsheet: Spreadsheet, text: str) -> tuple[Sheet, Bounds]:
    """Find the sheet and the cell bounds an A1 range names (400 "Unable to parse range" otherwise)."""
    try:
        parsed = split_range(text)
        if parsed.sheet is None:
            assert parsed.cells is not None
            named = spreadsheet.sheet_by_title(parsed.cells)
            if named is not None:
                return named, Bounds()
            if is_cell_part(parsed.cells):
                return spreadsheet.first_visible(), parse_cells(parsed.cells)
            raise RangeSyntaxError(text)
        sheet = spreadsheet.sheet_by_title(parsed.sheet)
        if sheet is None:
            raise RangeSyntaxError(text)
        return sheet, Bounds() if parsed.cells is None else parse_cells(parsed.cells)
    except RangeSyntaxError:
        raise invalid(f"Unable to parse range: {text}") from None


def choose(value: Any, allowed: Sequence[str], name: str, default: str) -> str:
    """Validate an enum parameter, Google-style, falling back to its default when absent."""
    if value is None or value == "":
        return default
    if value not in allowed:
        raise invalid(f"Invalid value at '{name}' ({value!r}): expected one of {', '.join(allowed)}")
    return cast(str, value)


def input_option(value: Any) -> ValueInputOption:
    """The required valueInputOption of a values write."""
    if value is None or value == "":
        raise invalid("'valueInputOption' is required but not specified")
    return cast(ValueInputOption, choose(value, _INPUT_OPTIONS, "value_input_option", "RAW"))


def render_option(value: Any) -> ValueRenderOption:
    """The valueRenderOption of a values read (FORMATTED_VALUE by default)."""
    return cast(ValueRenderOption, choose(value, _RENDER_OPTIONS, "value_render_option", "FORMATTED_VALUE"))


def dimension(value: Any) -> str:
    """A majorDimension (ROWS by default)."""
    return choose(value, _DIMENSIONS, "major_dimension", "ROWS")


def _closed(sheet: Sheet, bounds: Bounds) -> Area:
    """The bounds cut to the grid; a range starting outside the grid is Google's "exceeds grid limits"."""
    if bounds.start_row >= sheet.row_count or bounds.start_col >= sheet.column_count:
        end_row = bounds.start_row + 1 if bounds.end_row is None else bounds.end_row
        end_col = bounds.start_col + 1 if bounds.end_col is None else bounds.end_col
        raise _grid_limit_error(sheet, Area(bounds.start_row, end_row, bounds.start_col, end_col))
    return bounds.clamp(sheet.row_count, sheet.column_count)


# ---------------------------------------------------------------- values: reads


def value_range(
    spreadsheet: Spreadsheet, text: str, major: str = "ROWS", option: ValueRenderOption = "FORMATTED_VALUE"
) -> Json:
    """``spreadsheets.values.get``: a ValueRange with trailing empty cells and rows trimmed."""
    sheet, bounds = resolve(spreadsheet, text)
    return _read_value_range(sheet, _closed(sheet, bounds), major, option)


def _read_value_range(sheet: Sheet, area: Area, major: str, option: ValueRenderOption) -> Json:
    if major == "COLUMNS":
        cells: list[Row] = transpose(sheet.read(area.start_row, area.end_row, area.start_col, area.end_col))
        values = _trimmed([[render(cell, option) for cell in row] for row in cells])
    else:
        values = _rendered_rows(sheet, area, option)
    result: Json = {"range": format_range(sheet.title, area), "majorDimension": major}
    if values:
        result["values"] = values
    return result


def _rendered_rows(sheet: Sheet, area: Area, option: ValueRenderOption) -> list[list[Any]]:
    """Rows of an area rendered and trimmed: the hot path of every read, kept to one pass per row.

    Stored rows never end in an empty cell, so only a slice cut inside a row can; strings, the most
    common cells, are emitted without a call.
    """
    start, stop = area.start_row, min(area.end_row, len(sheet.rows))
    left, right = area.start_col, area.end_col
    out: list[list[Any]] = []
    kept = 0
    if right - left == 1:
        # A single column (a key column) is the writer's read on every flush: skip the slicing.
        for row in sheet.rows[start:stop]:
            cell = row[left] if len(row) > left else None
            if cell is None:
                out.append([])
            else:
                out.append([cell if cell.__class__ is str else render(cell, option)])
                kept = len(out)
        del out[kept:]
        return out
    for row in sheet.rows[start:stop]:
        piece = row[left:right]
        while piece and piece[-1] is None:
            piece.pop()
        if piece:
            out.append([cell if cell.__class__ is str else render(cell, option) for cell in piece])
            kept = len(out)
        else:
            out.append([])
    del out[kept:]
    return out


def _trimmed(rows: list[list[Any]]) -> list[list[Any]]:
    """Drop trailing ``""`` cells of each row, then trailing empty rows, as Google does."""
    out: list[list[Any]] = []
    for row in rows:
        end = len(row)
        while end and row[end - 1] == "":
            end -= 1
        out.append(row[:end])
    while out and not out[-1]:
        out.pop()
    return out


def batch_get(spreadsheet: Spreadsheet, ranges: Sequence[str], major: str, option: ValueRenderOption) -> Json:
    """``spreadsheets.values.batchGet``: one ValueRange per requested range, in order."""
    result: Json = {"spreadsheetId": spreadsheet.spreadsheet_id}
    if ranges:
        result["valueRanges"] = [value_range(spreadsheet, r, major, option) for r in ranges]
    return result


# ---------------------------------------------------------------- values: writes


def _input_rows(body: Json, option: ValueInputOption) -> list[list[WriteCell]]:
    """Parse a ValueRange body's ``values`` into cells in row-major order."""
    values = body.get("values")
    if values is None:
        return []
    if not isinstance(values, list) or not all(isinstance(r, list) for r in values):
        raise invalid("Invalid value at 'data.values': expected a list of lists")
    cells = [[parse_input(v, option) for v in row] for row in values]
    if dimension(body.get("majorDimension")) == "COLUMNS":
        cells = transpose(cells, fill=SKIP)
    return cells


def _write(sheet: Sheet, anchor: Bounds, cells: Sequence[Sequence[WriteCell]], label: str) -> Json:
    """Write a block at the anchor's top-left, checking the requested range and the grid limits."""
    height = len(cells)
    width = max((len(r) for r in cells), default=0)
    top, left = anchor.start_row, anchor.start_col
    if height == 0 or width == 0:
        return {"updatedRange": format_range(sheet.title, Area(top, top + 1, left, left + 1))}
    if not anchor.is_single_cell:
        if anchor.end_row is not None and top + height > anchor.end_row:
            raise invalid(
                f"Requested writing within range [{label}], but tried writing to row [{top + height}]"
            )
        if anchor.end_col is not None and left + width > anchor.end_col:
            column = column_letter(left + width - 1)
            raise invalid(f"Requested writing within range [{label}], but tried writing to column [{column}]")
    area = Area(top, top + height, left, left + width)
    if top + height > sheet.row_count or left + width > sheet.column_count:
        raise _grid_limit_error(sheet, area)
    sheet.write(top, left, cells)
    written_rows = sum(1 for row in cells if any(not isinstance(c, Skip) for c in row))
    written_cols = sum(
        1 for c in range(width) if any(c < len(row) and not isinstance(row[c], Skip) for row in cells)
    )
    written = sum(1 for row in cells for c in row if not isinstance(c, Skip))
    result: Json = {"updatedRange": format_range(sheet.title, area)}
    if written:
        result.update(updatedRows=written_rows, updatedColumns=written_cols, updatedCells=written)
    return result


def _with_data(result: Json, include: Any, option: Any, spreadsheet: Spreadsheet) -> Json:
    """Add ``updatedData`` when the caller asked for the written values back."""
    if str(include).lower() == "true":
        result["updatedData"] = value_range(
            spreadsheet, result["updatedRange"], "ROWS", render_option(option)
        )
    return result


def update_values(spreadsheet: Spreadsheet, text: str, body: Json, params: Json) -> Json:
    """``spreadsheets.values.update`` (PUT): write a block at the range, within the grid."""
    option = input_option(params.get("valueInputOption"))
    sheet, bounds = resolve(spreadsheet, text)
    result = _write(sheet, bounds, _input_rows(body, option), text)
    result = {"spreadsheetId": spreadsheet.spreadsheet_id, **result}
    return _with_data(
        result,
        params.get("includeValuesInResponse"),
        params.get("responseValueRenderOption"),
        spreadsheet,
    )


def batch_update_values(spreadsheet: Spreadsheet, body: Json) -> Json:
    """``spreadsheets.values.batchUpdate``: several ValueRanges written in one atomic call."""
    option = input_option(body.get("valueInputOption"))
    data = body.get("data") or []
    if not isinstance(data, list):
        raise invalid("Invalid value at 'data': expected a list of ValueRange")
    responses: list[Json] = []
    sheets: set[int] = set()
    for item in data:
        if not isinstance(item, dict) or not isinstance(item.get("range"), str):
            raise invalid("Invalid value at 'data': every ValueRange needs a 'range'")
        sheet, bounds = resolve(spreadsheet, item["range"])
        written = _write(sheet, bounds, _input_rows(item, option), item["range"])
        sheets.add(sheet.sheet_id)
        responses.append(
            _with_data(
                {"spreadsheetId": spreadsheet.spreadsheet_id, **written},
                body.get("includeValuesInResponse"),
                body.get("responseValueRenderOption"),
                spreadsheet,
            )
        )
    result: Json = {"spreadsheetId": spreadsheet.spreadsheet_id}
    totals = {
        "totalUpdatedRows": sum(r.get("updatedRows", 0) for r in responses),
        "totalUpdatedColumns": sum(r.get("updatedColumns", 0) for r in responses),
        "totalUpdatedCells": sum(r.get("updatedCells", 0) for r in responses),
        "totalUpdatedSheets": len(sheets) if responses else 0,
    }
    result.update({k: v for k, v in totals.items() if v})
    if responses:
        result["responses"] = responses
    return result


def append_values(spreadsheet: Spreadsheet, text: str, body: Json, params: Json) -> Json:
    """``spreadsheets.values.append``: write after the table found in the range, growing the grid."""
    option = input_option(params.get("valueInputOption"))
    insert = choose(
        params.get("insertDataOption"), ("OVERWRITE", "INSERT_ROWS"), "insert_data_option", "OVERWRITE"
    )
    sheet, bounds = resolve(spreadsheet, text)
    cells = _input_rows(body, option)
    height = len(cells)
    width = max((len(r) for r in cells), default=0)
    search_end = None if bounds.is_single_cell else bounds.end_col
    top = _table_end(sheet, bounds.start_row, bounds.start_col, search_end)
    result: Json = {"spreadsheetId": spreadsheet.spreadsheet_id}
    if top > bounds.start_row:
        table_width = max(
            (len(sheet.rows[i][bounds.start_col : search_end]) for i in range(bounds.start_row, top)),
            default=1,
        )
        table = Area(bounds.start_row, top, bounds.start_col, bounds.start_col + max(table_width, 1))
        result["tableRange"] = format_range(sheet.title, table)
    if height and width:
        if insert == "INSERT_ROWS":
            sheet.insert_rows(top, height)
        elif top + height > sheet.row_count:
            sheet.row_count = top + height
        # Google's InsertDataOption docs: appending at the edge inserts the rows or columns it needs.
        if bounds.start_col + width > sheet.column_count:
            sheet.column_count = bounds.start_col + width
        _check_cell_limit(spreadsheet)
    written = _write(sheet, Bounds(top, top + 1, bounds.start_col, bounds.start_col + 1), cells, text)
    updates = _with_data(
        {"spreadsheetId": spreadsheet.spreadsheet_id, **written},
        params.get("includeValuesInResponse"),
        params.get("responseValueRenderOption"),
        spreadsheet,
    )
    result["updates"] = updates
    return result


def _table_end(sheet: Sheet, start_row: int, start_col: int, end_col: int | None) -> int:
    """Where the table starting at ``start_row`` ends: the first row with no data in the columns.

    Like Google, the table is a contiguous block that may run past the range: an empty row ends it, so
    an append after a gap fills the gap, and a range whose first row is empty gets the values there.
    """
    stop = len(sheet.rows)
    row = start_row
    while row < stop and any(cell is not None for cell in sheet.rows[row][start_col:end_col]):
        row += 1
    return row


def clear_values(spreadsheet: Spreadsheet, text: str) -> Json:
    """``spreadsheets.values.clear``: empty a range (the grid keeps its size)."""
    sheet, bounds = resolve(spreadsheet, text)
    area = _closed(sheet, bounds)
    sheet.clear(area.start_row, area.end_row, area.start_col, area.end_col)
    return {"spreadsheetId": spreadsheet.spreadsheet_id, "clearedRange": format_range(sheet.title, area)}


def batch_clear(spreadsheet: Spreadsheet, body: Json) -> Json:
    """``spreadsheets.values.batchClear``: clear several ranges atomically."""
    ranges = body.get("ranges") or []
    if not isinstance(ranges, list) or not all(isinstance(r, str) for r in ranges):
        raise invalid("Invalid value at 'ranges': expected a list of strings")
    cleared = [clear_values(spreadsheet, r)["clearedRange"] for r in ranges]
    result: Json = {"spreadsheetId": spreadsheet.spreadsheet_id}
    if cleared:
        result["clearedRanges"] = cleared
    return result


# ---------------------------------------------------------------- spreadsheets: metadata


def sheet_properties(sheet: Sheet, index: int) -> Json:
    """A sheet's SheetProperties as Google returns them (zero and false fields omitted)."""
    grid: Json = {"rowCount": sheet.row_count, "columnCount": sheet.column_count}
    if sheet.frozen_rows:
        grid["frozenRowCount"] = sheet.frozen_rows
    if sheet.frozen_columns:
        grid["frozenColumnCount"] = sheet.frozen_columns
    props: Json = {
        "sheetId": sheet.sheet_id,
        "title": sheet.title,
        "index": index,
        "sheetType": "GRID",
        "gridProperties": grid,
    }
    if sheet.hidden:
        props["hidden"] = True
    return props


def spreadsheet_url(spreadsheet_id: str) -> str:
    """The browser address Google reports for a spreadsheet."""
    return f"https://docs.google.com/spreadsheets/d/{spreadsheet_id}/edit"


def protected_range_json(sheet: Sheet, protection: Protection, caller: str) -> Json:
    """A ProtectedRange as Google returns it to ``caller`` (editors only to someone who may edit it)."""
    grid: Json = {"sheetId": sheet.sheet_id}
    for name, value in (
        ("startRowIndex", protection.start_row),
        ("endRowIndex", protection.end_row),
        ("startColumnIndex", protection.start_col),
        ("endColumnIndex", protection.end_col),
    ):
        if value:
            grid[name] = value
    editable = caller in protection.editors
    result: Json = {"protectedRangeId": protection.protected_range_id, "range": grid}
    if protection.description:
        result["description"] = protection.description
    if protection.warning_only:
        result["warningOnly"] = True
    result["requestingUserCanEdit"] = can_edit(protection, caller)
    if editable:
        result["editors"] = {"users": list(protection.editors)}
    return result


def spreadsheet_json(
    spreadsheet: Spreadsheet,
    include_grid_data: bool = False,
    ranges: Sequence[str] = (),
    caller: str = "",
    row_mask: Mask | None = None,
) -> Json:
    """``spreadsheets.get``: the Spreadsheet resource, with grid data when asked for.

    ``caller`` is who asks: it decides each protected range's ``requestingUserCanEdit``; ``row_mask``
    the fields each RowData has (all without one; see ``fieldmask.split_at``). Rows come encoded
    (``msgspec.Raw``).
    """
    wanted: dict[int, list[Bounds]] = {}
    for text in ranges:
        sheet, bounds = resolve(spreadsheet, text)
        wanted.setdefault(sheet.sheet_id, []).append(bounds)
    sheets: list[Json] = []
    for index, sheet in enumerate(spreadsheet.sheets):
        if ranges and sheet.sheet_id not in wanted:
            continue
        entry: Json = {"properties": sheet_properties(sheet, index)}
        if sheet.protections:
            entry["protectedRanges"] = [protected_range_json(sheet, p, caller) for p in sheet.protections]
        if include_grid_data:
            areas = wanted.get(sheet.sheet_id, [Bounds()])
            entry["data"] = [_grid_data(sheet, b, row_mask) for b in areas]
        sheets.append(entry)
    return {
        "spreadsheetId": spreadsheet.spreadsheet_id,
        "properties": {
            "title": spreadsheet.title,
            "locale": spreadsheet.locale,
            "autoRecalc": "ON_CHANGE",
            "timeZone": spreadsheet.time_zone,
        },
        "sheets": sheets,
        "spreadsheetUrl": spreadsheet_url(spreadsheet.spreadsheet_id),
    }


def _grid_data(sheet: Sheet, bounds: Bounds, row_mask: Mask | None) -> Json:
    area = _closed(sheet, bounds)
    values, cell_mask = _row_fields(row_mask)
    fields = _cell_fields(cell_mask)
    # Each RowData is encoded as soon as it is built: a sheet's worth of row and cell objects kept alive
    # until the whole answer is encoded would cost the garbage collector more than building them does.
    row_data: list[msgspec.Raw] = []
    for row in sheet.rows[area.start_row : area.end_row]:
        cells = row[area.start_col : area.end_col]
        end = len(cells)
        while end and cells[end - 1] is None:
            end -= 1
        if end and values:
            row_data.append(
                msgspec.Raw(_ENCODER.encode({"values": [_cell_data(c, fields) for c in cells[:end]]}))
            )
        else:
            row_data.append(_EMPTY_ROW if end else _NO_DATA)
    while row_data and row_data[-1] is _NO_DATA:
        row_data.pop()
    data: Json = {}
    if area.start_row:
        data["startRow"] = area.start_row
    if area.start_col:
        data["startColumn"] = area.start_col
    if row_data:
        data["rowData"] = row_data
    return data


def _row_fields(mask: Mask | None) -> tuple[bool, Mask | None]:
    """Whether a RowData mask keeps the cells, and the mask for each cell (None: every field)."""
    if mask is None or "*" in mask:
        return True, None
    return "values" in mask, mask.get("values")


_ENCODER: Final = msgspec.json.Encoder()
CellFields = list[tuple[str, Callable[[Cell], Any], Mask | None]]
# A row of an answer without cells, and one without data (dropped from the end, as Google does).
_EMPTY_ROW: Final = msgspec.Raw(b"{}")
_NO_DATA: Final = msgspec.Raw(b"{}")


def _cell_data(cell: Cell | None, fields: CellFields) -> Json:
    """A CellData object with these fields."""
    if cell is None:
        return {}
    return {name: make(cell) if sub is None else apply_mask(make(cell), sub) for name, make, sub in fields}


def _cell_fields(mask: Mask | None) -> CellFields:
    """The fields of CellData a mask selects: each name, what makes it from a cell, and its own mask."""
    if mask is None or "*" in mask:
        return [(name, make, None) for name, make in _CELL_FIELDS.items()]
    return [(name, _CELL_FIELDS[name], sub) for name, sub in mask.items() if name in _CELL_FIELDS]


def _formatted(cell: Cell) -> str | int | float | bool:
    return render(cell, "FORMATTED_VALUE")


# The fields of a CellData, in Google's order. Formulas are not evaluated, so the effective value is the
# entered one.
_CELL_FIELDS: Final[dict[str, Callable[[Cell], Any]]] = {
    "userEnteredValue": extended_value,
    "effectiveValue": extended_value,
    "formattedValue": _formatted,
}


# ---------------------------------------------------------------- spreadsheets: create


def new_spreadsheet(spreadsheet_id: str, body: Json, rng: random.Random) -> Spreadsheet:
    """Build a spreadsheet from a ``spreadsheets.create`` body (one "Sheet1" when it names no sheets)."""
    props = _obj(body.get("properties"), "spreadsheet.properties")
    spreadsheet = Spreadsheet(
        spreadsheet_id=spreadsheet_id,
        title=_str(props.get("title"), "spreadsheet.properties.title", "Untitled spreadsheet"),
        sheets=[],
        locale=_str(props.get("locale"), "spreadsheet.properties.locale", "en_US"),
        time_zone=_str(props.get("timeZone"), "spreadsheet.properties.timeZone", "Etc/GMT"),
    )
    sheets = body.get("sheets") or [{}]
    if not isinstance(sheets, list):
        raise invalid("Invalid value at 'spreadsheet.sheets'")
    for position, sheet in enumerate(sheets):
        if not isinstance(sheet, dict):
            raise invalid(f"Invalid value at 'spreadsheet.sheets[{position}]'")
        props = dict(_obj(sheet.get("properties"), f"spreadsheet.sheets[{position}].properties"))
        if position == 0:
            # Google gives the first sheet of a new spreadsheet the id 0 (gid=0) unless told otherwise.
            props.setdefault("sheetId", 0)
        _add_sheet(spreadsheet, {"properties": props}, rng)
    return spreadsheet


# ---------------------------------------------------------------- spreadsheets.batchUpdate


def batch_update(spreadsheet: Spreadsheet, body: Json, rng: random.Random) -> Json:
    """``spreadsheets.batchUpdate``: apply every request in order; any error fails the whole batch."""
    requests = body.get("requests")
    if not isinstance(requests, list) or not requests:
        raise invalid("Must specify at least one request.")
    replies: list[Json] = []
    for index, request in enumerate(requests):
        if not isinstance(request, dict) or len(request) != 1:
            raise invalid(f"Invalid requests[{index}]: exactly one kind of request must be set")
        ((kind, payload),) = request.items()
        handler = _HANDLERS.get(kind)
        if handler is None and kind not in FORMATTING_REQUESTS:
            raise invalid(
                f"Invalid JSON payload received. Unknown name \"{kind}\" at 'requests[{index}]': "
                "Cannot find field."
            )
        if not isinstance(payload, dict):
            raise invalid(f"Invalid requests[{index}].{kind}: expected an object")
        try:
            replies.append(handler(spreadsheet, payload, rng) if handler else {})
        except SheetsError as exc:
            raise SheetsError(exc.code, f"Invalid requests[{index}].{kind}: {exc.message}") from None
    result: Json = {"spreadsheetId": spreadsheet.spreadsheet_id, "replies": replies}
    if str(body.get("includeSpreadsheetInResponse")).lower() == "true":
        result["updatedSpreadsheet"] = spreadsheet_json(spreadsheet)
    return result


def _check_cell_limit(spreadsheet: Spreadsheet) -> None:
    if spreadsheet.cell_count() > MAX_CELLS:
        raise invalid(
            f"This action would increase the number of cells in the workbook above the limit of {MAX_CELLS} cells."
        )


def _sheet(spreadsheet: Spreadsheet, sheet_id: Any) -> Sheet:
    wanted = _int(sheet_id, "sheetId", 0)
    sheet = spreadsheet.sheet_by_id(wanted)
    if sheet is None:
        raise invalid(f"No grid with id: {wanted}")
    return sheet


def _int(value: Any, name: str, default: int | None = None) -> int:
    if value is None:
        if default is None:
            raise invalid(f"'{name}' is required")
        return default
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise invalid(f"Invalid value at '{name}': expected an integer")
    try:
        return int(value)
    except ValueError:
        raise invalid(f"Invalid value at '{name}': expected an integer") from None


def _obj(value: Any, name: str) -> Json:
    """A JSON object field (absent is ``{}``), or a 400 naming the field."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid(f"Invalid value at '{name}': expected an object")
    return value


def _str(value: Any, name: str, default: str) -> str:
    """A string field (absent or empty is the default), or a 400 naming the field."""
    if value is None or value == "":
        return default
    if not isinstance(value, str):
        raise invalid(f"Invalid value at '{name}': expected a string")
    return value


def _mask(fields: Any) -> set[str]:
    """The top-level paths of a field mask (``"a.b,c"`` -> ``{"a.b", "c"}``); empty is an error."""
    if not isinstance(fields, str) or not fields.strip():
        raise invalid("At least one field must be specified.")
    # Google's partial-response syntax also writes nesting as "a/b" (gspread's resize does).
    return {part.strip().replace("/", ".") for part in fields.split(",") if part.strip()}


def _add_sheet(spreadsheet: Spreadsheet, payload: Json, rng: random.Random) -> Json:
    props = _obj(payload.get("properties"), "properties")
    title = _str(props.get("title"), "properties.title", spreadsheet.default_sheet_title())
    if spreadsheet.sheet_by_title(title) is not None:
        raise invalid(f'A sheet with the name "{title}" already exists. Please enter another name.')
    if "sheetId" in props:
        sheet_id = _int(props["sheetId"], "properties.sheetId")
        if sheet_id < 0 or spreadsheet.sheet_by_id(sheet_id) is not None:
            raise invalid(f"Sheet with id {sheet_id} already exists or is not valid.")
    else:
        sheet_id = spreadsheet.new_sheet_id(rng.getrandbits(31))
    grid = _obj(props.get("gridProperties"), "properties.gridProperties")
    sheet = Sheet(
        sheet_id=sheet_id,
        title=title,
        row_count=_int(grid.get("rowCount"), "gridProperties.rowCount", DEFAULT_ROWS),
        column_count=_int(grid.get("columnCount"), "gridProperties.columnCount", DEFAULT_COLUMNS),
        frozen_rows=_int(grid.get("frozenRowCount"), "gridProperties.frozenRowCount", 0),
        frozen_columns=_int(grid.get("frozenColumnCount"), "gridProperties.frozenColumnCount", 0),
        hidden=bool(props.get("hidden", False)),
    )
    if sheet.row_count < 1 or sheet.column_count < 1:
        raise invalid("A sheet needs at least one row and one column.")
    index = _int(props.get("index"), "properties.index", len(spreadsheet.sheets))
    spreadsheet.sheets.insert(max(0, min(index, len(spreadsheet.sheets))), sheet)
    _check_cell_limit(spreadsheet)
    return {"addSheet": {"properties": sheet_properties(sheet, spreadsheet.sheets.index(sheet))}}


def _delete_sheet(spreadsheet: Spreadsheet, payload: Json, rng: random.Random) -> Json:
    sheet = spreadsheet.sheet_by_id(_int(payload.get("sheetId"), "sheetId", 0))
    if sheet is None:
        raise invalid(f"No sheet with id: {payload.get('sheetId', 0)}")
    if len(spreadsheet.sheets) == 1:
        raise invalid("You can't remove all the sheets in a document.")
    spreadsheet.sheets.remove(sheet)
    return {}


def _update_sheet_properties(spreadsheet: Spreadsheet, payload: Json, rng: random.Random) -> Json:
    props = _obj(payload.get("properties"), "properties")
    sheet = _sheet(spreadsheet, props.get("sheetId"))
    grid = _obj(props.get("gridProperties"), "properties.gridProperties")
    paths = _mask(payload.get("fields"))
    if "*" in paths:
        paths = {"title", "index", "hidden", "gridProperties"}
    if "gridProperties" in paths:
        paths = (paths - {"gridProperties"}) | {f"gridProperties.{k}" for k in grid}
    for path in sorted(paths):
        if path == "title":
            title = _str(props.get("title"), "properties.title", "")
            other = spreadsheet.sheet_by_title(title)
            if not title or (other is not None and other is not sheet):
                raise invalid(f'A sheet with the name "{title}" already exists. Please enter another name.')
            sheet.title = title
        elif path == "index":
            spreadsheet.sheets.remove(sheet)
            index = _int(props.get("index"), "properties.index", 0)
            spreadsheet.sheets.insert(max(0, min(index, len(spreadsheet.sheets))), sheet)
        elif path == "hidden":
            sheet.hidden = bool(props.get("hidden", False))
        elif path == "gridProperties.rowCount":
            rows = _int(grid.get("rowCount"), "gridProperties.rowCount")
            if rows < 1:
                raise invalid("A sheet needs at least one row.")
            sheet.resize(rows, sheet.column_count)
        elif path == "gridProperties.columnCount":
            cols = _int(grid.get("columnCount"), "gridProperties.columnCount")
            if cols < 1:
                raise invalid("A sheet needs at least one column.")
            sheet.resize(sheet.row_count, cols)
        elif path == "gridProperties.frozenRowCount":
            sheet.frozen_rows = _int(grid.get("frozenRowCount"), "gridProperties.frozenRowCount", 0)
        elif path == "gridProperties.frozenColumnCount":
            sheet.frozen_columns = _int(grid.get("frozenColumnCount"), "gridProperties.frozenColumnCount", 0)
        elif path.split(".")[0] in ("tabColor", "tabColorStyle", "rightToLeft", "gridProperties"):
            continue  # presentation only
        else:
            raise invalid(f"Invalid field mask path: {path}")
    _check_cell_limit(spreadsheet)
    return {}


def _update_spreadsheet_properties(spreadsheet: Spreadsheet, payload: Json, rng: random.Random) -> Json:
    props = _obj(payload.get("properties"), "properties")
    paths = _mask(payload.get("fields"))
    if "*" in paths:
        paths = {"title", "locale", "timeZone"}
    if "title" in paths:
        spreadsheet.title = _str(props.get("title"), "properties.title", "")
    if "locale" in paths:
        spreadsheet.locale = _str(props.get("locale"), "properties.locale", "en_US")
    if "timeZone" in paths:
        spreadsheet.time_zone = _str(props.get("timeZone"), "properties.timeZone", "Etc/GMT")
    return {}


def _dimension_range(spreadsheet: Spreadsheet, payload: Any) -> tuple[Sheet, str, int | None, int | None]:
    if not isinstance(payload, dict):
        raise invalid("'range' is required")
    sheet = _sheet(spreadsheet, payload.get("sheetId"))
    dim = payload.get("dimension")
    if dim not in _DIMENSIONS:
        raise invalid("Invalid value at 'range.dimension': expected ROWS or COLUMNS")
    start = payload.get("startIndex")
    end = payload.get("endIndex")
    return (
        sheet,
        dim,
        None if start is None else _int(start, "range.startIndex"),
        None if end is None else _int(end, "range.endIndex"),
    )


def _insert_dimension(spreadsheet: Spreadsheet, payload: Json, rng: random.Random) -> Json:
    sheet, dim, start, end = _dimension_range(spreadsheet, payload.get("range"))
    if start is None or end is None or start < 0 or end <= start:
        raise invalid("Invalid range: startIndex and endIndex must be set and startIndex < endIndex.")
    size = sheet.row_count if dim == "ROWS" else sheet.column_count
    if start > size:
        raise invalid(f"Cannot insert at index {start}: the sheet has only {size} {dim.lower()}.")
    if payload.get("inheritFromBefore") and start == 0:
        raise invalid("Cannot inherit properties from before when inserting at index 0.")
    if dim == "ROWS":
        sheet.insert_rows(start, end - start)
    else:
        sheet.insert_columns(start, end - start)
    _check_cell_limit(spreadsheet)
    return {}


def _delete_dimension(spreadsheet: Spreadsheet, payload: Json, rng: random.Random) -> Json:
    sheet, dim, start, end = _dimension_range(spreadsheet, payload.get("range"))
    size = sheet.row_count if dim == "ROWS" else sheet.column_count
    first = 0 if start is None else start
    last = size if end is None else end
    if first < 0 or last <= first or last > size:
        raise invalid(f"Cannot delete {dim.lower()} [{first}, {last}): the sheet has {size} {dim.lower()}.")
    if last - first == size:
        raise invalid(f"You can't delete all the {dim.lower()} on the sheet.")
    if dim == "ROWS":
        sheet.delete_rows(first, last)
    else:
        sheet.delete_columns(first, last)
    return {}


def _append_dimension(spreadsheet: Spreadsheet, payload: Json, rng: random.Random) -> Json:
    sheet = _sheet(spreadsheet, payload.get("sheetId"))
    dim = payload.get("dimension")
    if dim not in _DIMENSIONS:
        raise invalid("Invalid value at 'dimension': expected ROWS or COLUMNS")
    length = _int(payload.get("length"), "length")
    if length < 1:
        raise invalid("'length' must be at least 1.")
    if dim == "ROWS":
        sheet.row_count += length
    else:
        sheet.column_count += length
    _check_cell_limit(spreadsheet)
    return {}


def _row_cells(rows: Any, write_values: bool) -> list[list[WriteCell]]:
    """RowData -> cells; with ``userEnteredValue`` outside the field mask every cell is left alone."""
    if rows is None:
        return []
    if not isinstance(rows, list):
        raise invalid("Invalid value at 'rows': expected a list of RowData")
    out: list[list[WriteCell]] = []
    for row in rows:
        if not isinstance(row, dict):
            raise invalid("Invalid value at 'rows': expected RowData objects")
        values = row.get("values") or []
        if not isinstance(values, list):
            raise invalid("Invalid value at 'rows.values': expected a list of CellData")
        cells: list[WriteCell] = []
        for cell in values:
            if not isinstance(cell, dict):
                raise invalid("Invalid value at 'rows.values': expected CellData objects")
            cells.append(parse_extended_value(cell.get("userEnteredValue")) if write_values else SKIP)
        out.append(cells)
    return out


def _writes_values(fields: Any) -> bool:
    paths = _mask(fields)
    return "*" in paths or any(p == "userEnteredValue" or p.startswith("userEnteredValue.") for p in paths)


def _grid_limit_error(sheet: Sheet, area: Area) -> SheetsError:
    """Google's 400 for a write past the last row or column of the grid."""
    text = format_range(sheet.title, area)
    return invalid(
        f"Range ({text}) exceeds grid limits. Max rows: {sheet.row_count}, max columns: {sheet.column_count}"
    )


def _grid_bounds(grid_range: Json) -> Bounds:
    """A GridRange's indexes as bounds (missing indexes are unbounded, as Google documents)."""

    def optional(name: str) -> int | None:
        value = grid_range.get(name)
        return None if value is None else _int(value, f"range.{name}")

    bounds = Bounds(
        _int(grid_range.get("startRowIndex"), "range.startRowIndex", 0),
        optional("endRowIndex"),
        _int(grid_range.get("startColumnIndex"), "range.startColumnIndex", 0),
        optional("endColumnIndex"),
    )
    if bounds.start_row < 0 or bounds.start_col < 0:
        raise invalid("Invalid value at 'range': indexes must not be negative")
    return bounds


def _update_cells(spreadsheet: Spreadsheet, payload: Json, rng: random.Random) -> Json:
    start, grid_range = payload.get("start"), payload.get("range")
    if (start is None) == (grid_range is None):
        raise invalid("Exactly one of 'start' or 'range' must be specified.")
    cells = _row_cells(payload.get("rows"), _writes_values(payload.get("fields")))
    height = len(cells)
    width = max((len(r) for r in cells), default=0)
    if start is not None:
        if not isinstance(start, dict):
            raise invalid("Invalid value at 'start'")
        sheet = _sheet(spreadsheet, start.get("sheetId"))
        top = _int(start.get("rowIndex"), "start.rowIndex", 0)
        left = _int(start.get("columnIndex"), "start.columnIndex", 0)
        if top < 0 or left < 0:
            raise invalid("Invalid value at 'start': indexes must not be negative")
        area = Area(top, top + max(height, 1), left, left + max(width, 1))
        if top + height > sheet.row_count or left + width > sheet.column_count:
            raise _grid_limit_error(sheet, area)
        sheet.write(top, left, cells)
        return {}
    if not isinstance(grid_range, dict):
        raise invalid("Invalid value at 'range'")
    sheet = _sheet(spreadsheet, grid_range.get("sheetId"))
    bounds = _grid_bounds(grid_range)
    asked_rows = bounds.end_row if bounds.end_row is not None else bounds.start_row + height
    asked_cols = bounds.end_col if bounds.end_col is not None else bounds.start_col + width
    if asked_rows > sheet.row_count or asked_cols > sheet.column_count:
        raise _grid_limit_error(sheet, Area(bounds.start_row, asked_rows, bounds.start_col, asked_cols))
    area = _closed(sheet, bounds)
    if bounds.start_row + height > area.end_row or bounds.start_col + width > area.end_col:
        raise invalid("The rows given do not fit in the requested range.")
    if _writes_values(payload.get("fields")):
        # Cells of the range that the rows do not cover are cleared (Google's documented behaviour).
        sheet.clear(area.start_row, area.end_row, area.start_col, area.end_col)
    sheet.write(area.start_row, area.start_col, cells)
    return {}


def _append_cells(spreadsheet: Spreadsheet, payload: Json, rng: random.Random) -> Json:
    sheet = _sheet(spreadsheet, payload.get("sheetId"))
    cells = _row_cells(payload.get("rows"), _writes_values(payload.get("fields")))
    width = max((len(r) for r in cells), default=0)
    top = sheet.last_data_row()
    if width > sheet.column_count:
        raise invalid(
            f"Attempting to write column: {width - 1}, beyond the last requested column of: {sheet.column_count - 1}"
        )
    if top + len(cells) > sheet.row_count:
        # appendCells inserts the rows it needs, so a full sheet grows instead of failing.
        sheet.row_count = top + len(cells)
        _check_cell_limit(spreadsheet)
    sheet.write(top, 0, cells)
    return {}


def _duplicate_sheet(spreadsheet: Spreadsheet, payload: Json, rng: random.Random) -> Json:
    source = _sheet(spreadsheet, payload.get("sourceSheetId"))
    title = _str(payload.get("newSheetName"), "newSheetName", f"Copy of {source.title}")
    if spreadsheet.sheet_by_title(title) is not None:
        raise invalid(f'A sheet with the name "{title}" already exists. Please enter another name.')
    if payload.get("newSheetId") is not None:
        sheet_id = _int(payload.get("newSheetId"), "newSheetId")
        if sheet_id < 0 or spreadsheet.sheet_by_id(sheet_id) is not None:
            raise invalid(f"Sheet with id {sheet_id} already exists or is not valid.")
    else:
        sheet_id = spreadsheet.new_sheet_id(rng.getrandbits(31))
    copy = source.fork()
    copy.sheet_id = sheet_id
    copy.title = title
    index = _int(payload.get("insertSheetIndex"), "insertSheetIndex", spreadsheet.sheets.index(source) + 1)
    spreadsheet.sheets.insert(max(0, min(index, len(spreadsheet.sheets))), copy)
    _check_cell_limit(spreadsheet)
    return {"duplicateSheet": {"properties": sheet_properties(copy, spreadsheet.sheets.index(copy))}}


def _sort_key(cell: Cell | None) -> tuple[int, Any]:
    """Sheets' ascending order: numbers, then text (case-insensitive), then booleans."""
    if isinstance(cell, bool):
        return (2, cell)
    if isinstance(cell, int | float):
        return (0, cell)
    if isinstance(cell, Formula):
        return (1, cell.text.casefold())
    return (1, str(cell).casefold())


def _column_key(column: int) -> Callable[[Row], tuple[int, Any]]:
    """A sort key reading one column of a row."""

    def key(row: Row) -> tuple[int, Any]:
        return _sort_key(row[column])

    return key


def _sort_range(spreadsheet: Spreadsheet, payload: Json, rng: random.Random) -> Json:
    grid_range = _obj(payload.get("range"), "range")
    sheet = _sheet(spreadsheet, grid_range.get("sheetId"))
    area = _closed(sheet, _grid_bounds(grid_range))
    specs = payload.get("sortSpecs") or []
    if not isinstance(specs, list) or not all(isinstance(spec, dict) for spec in specs):
        raise invalid("Invalid value at 'sortSpecs': expected a list of SortSpec")
    rows = sheet.read(area.start_row, area.end_row, area.start_col, area.end_col)
    rows += [
        [None] * (area.end_col - area.start_col) for _ in range(area.end_row - area.start_row - len(rows))
    ]
    # A stable sort per key, last key first, gives the multi-key order; empty cells always sort last.
    for spec in reversed(specs):
        column = _int(spec.get("dimensionIndex"), "sortSpecs.dimensionIndex", 0) - area.start_col
        if not 0 <= column < area.end_col - area.start_col:
            raise invalid("Invalid value at 'sortSpecs.dimensionIndex': outside the range")
        order = _str(spec.get("sortOrder"), "sortSpecs.sortOrder", "ASCENDING")
        if order not in ("ASCENDING", "DESCENDING"):
            raise invalid("Invalid value at 'sortSpecs.sortOrder': expected ASCENDING or DESCENDING")
        filled = [row for row in rows if row[column] is not None]
        empty = [row for row in rows if row[column] is None]
        filled.sort(key=_column_key(column), reverse=order == "DESCENDING")
        rows = filled + empty
    sheet.clear(area.start_row, area.end_row, area.start_col, area.end_col)
    sheet.write(area.start_row, area.start_col, rows)
    return {}


_Handler = Callable[[Spreadsheet, Json, random.Random], Json]

_HANDLERS: Final[dict[str, _Handler]] = {
    "addSheet": _add_sheet,
    "deleteSheet": _delete_sheet,
    "updateSheetProperties": _update_sheet_properties,
    "updateSpreadsheetProperties": _update_spreadsheet_properties,
    "insertDimension": _insert_dimension,
    "deleteDimension": _delete_dimension,
    "appendDimension": _append_dimension,
    "updateCells": _update_cells,
    "appendCells": _append_cells,
    "duplicateSheet": _duplicate_sheet,
    "sortRange": _sort_range,
}


# ---------------------------------------------------------------- full-sheet views for tests and tools


def sheet_values(sheet: Sheet) -> list[list[Any]]:
    """Every stored value of a sheet, unformatted, formulas as text, trimmed like a values read."""
    return _trimmed([[render(cell, "FORMULA") for cell in row] for row in sheet.rows])
