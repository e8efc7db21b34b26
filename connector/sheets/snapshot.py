"""The read side of a flush, as pure functions: which ranges to ask for, and what the answer says.

One ``spreadsheets.get`` request per flush reads, for every worksheet of the flush, the header row
(``'Title'!1:1``), the key column from row 2 down (``'Title'!C2:C``) and, once a flush has written there,
every column of the rows under its last row (``'Title'!A5001:H``: the "tail"), with a field mask that keeps
only sheet ids, grid sizes and the cells' effective values. That one answer carries everything planning
needs: which worksheets exist, their ids and sizes (for addSheet and appendDimension), where each of our
headers is, the key -> row index, and the row after the last one with data (where new rows go; usually
the tail is the empty rows a flush added ahead, and costs nothing). No whole sheet is ever read.

Where the key column is becomes known only from the header row, so the range asked for is a guess: the
column it was in at the end of the last flush (remembered by the writer), or on a cold start its place in
our own header list. The answer's header row verifies the guess; only when a person moved the key column
since then is one more read needed, and the next flush guesses right again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import msgspec
from gspread.utils import absolute_range_name, rowcol_to_a1

__all__ = [
    "GRID_FIELDS",
    "METADATA_FIELDS",
    "GridArea",
    "Lock",
    "SheetProperties",
    "SheetSnapshot",
    "Tail",
    "column_letter",
    "parse_sheet_list",
    "parse_snapshots",
    "read_ranges",
    "title_key",
]

_PROPERTIES = "properties(sheetId,title,gridProperties(rowCount,columnCount))"
_GRID_RANGE = "sheetId,startRowIndex,endRowIndex,startColumnIndex,endColumnIndex"
# Only what decides whether this caller may write a range: Google says so in requestingUserCanEdit.
_PROTECTION = (
    f"protectedRanges(range({_GRID_RANGE}),unprotectedRanges({_GRID_RANGE}),"
    "warningOnly,requestingUserCanEdit)"
)
GRID_FIELDS = (
    f"sheets({_PROPERTIES},{_PROTECTION},data(startRow,startColumn,rowData(values(effectiveValue))))"
)
METADATA_FIELDS = f"sheets.{_PROPERTIES}"


class SheetProperties(msgspec.Struct, frozen=True):
    """A worksheet's identity and grid size."""

    title: str
    sheet_id: int
    row_count: int
    column_count: int

    @property
    def cells(self) -> int:
        """Cells in the grid (what Google's per-spreadsheet cell limit counts)."""
        return self.row_count * self.column_count


class GridArea(msgspec.Struct, frozen=True):
    """A rectangle of a sheet, 0-based and half-open; None on an end runs to the edge of the grid."""

    start_row: int = 0
    end_row: int | None = None
    start_col: int = 0
    end_col: int | None = None

    @property
    def whole_sheet(self) -> bool:
        """Whether the area is the whole sheet."""
        return (self.start_row, self.end_row, self.start_col, self.end_col) == (0, None, 0, None)

    def overlaps(self, other: GridArea) -> bool:
        """Whether the two areas share a cell."""
        return _spans_overlap(self.start_row, self.end_row, other.start_row, other.end_row) and (
            _spans_overlap(self.start_col, self.end_col, other.start_col, other.end_col)
        )

    def contains(self, other: GridArea) -> bool:
        """Whether every cell of ``other`` is in this area."""
        return _span_contains(self.start_row, self.end_row, other.start_row, other.end_row) and (
            _span_contains(self.start_col, self.end_col, other.start_col, other.end_col)
        )


def _spans_overlap(a0: int, a1: int | None, b0: int, b1: int | None) -> bool:
    return (a1 is None or b0 < a1) and (b1 is None or a0 < b1)


def _span_contains(a0: int, a1: int | None, b0: int, b1: int | None) -> bool:
    return a0 <= b0 and (a1 is None or (b1 is not None and b1 <= a1))


class Lock(msgspec.Struct, frozen=True):
    """A protected range this caller may not edit, with the areas inside it left unprotected."""

    area: GridArea
    unprotected: tuple[GridArea, ...] = ()

    def forbids(self, written: GridArea) -> bool:
        """Whether writing ``written`` would edit a protected cell."""
        return self.area.overlaps(written) and not any(u.contains(written) for u in self.unprotected)


# The parts of Google's Spreadsheet resource that a read asks for, decoded straight from the answer's
# bytes (a 100,000-row key column is 100,000 cells; typed decoding keeps that cheap).
class _ExtendedValue(msgspec.Struct):
    stringValue: str | None = None
    numberValue: int | float | None = None
    boolValue: bool | None = None


class _CellData(msgspec.Struct):
    effectiveValue: _ExtendedValue | None = None


class _RowData(msgspec.Struct):
    values: list[_CellData] = msgspec.field(default_factory=list)


class _GridData(msgspec.Struct):
    startRow: int = 0
    startColumn: int = 0
    rowData: list[_RowData] = msgspec.field(default_factory=list)


class _GridProperties(msgspec.Struct):
    rowCount: int = 0
    columnCount: int = 0


class _Properties(msgspec.Struct):
    sheetId: int = 0
    title: str = ""
    gridProperties: _GridProperties = msgspec.field(default_factory=_GridProperties)


class _GridRange(msgspec.Struct):
    startRowIndex: int = 0
    endRowIndex: int | None = None
    startColumnIndex: int = 0
    endColumnIndex: int | None = None


class _ProtectedRange(msgspec.Struct):
    range: _GridRange = msgspec.field(default_factory=_GridRange)
    unprotectedRanges: list[_GridRange] = msgspec.field(default_factory=list)
    warningOnly: bool = False
    # Absent means Google did not say; only an explicit false is taken as "may not edit".
    requestingUserCanEdit: bool = True


class _Sheet(msgspec.Struct):
    properties: _Properties = msgspec.field(default_factory=_Properties)
    protectedRanges: list[_ProtectedRange] = msgspec.field(default_factory=list)
    data: list[_GridData] = msgspec.field(default_factory=list)


class _Spreadsheet(msgspec.Struct):
    sheets: list[_Sheet] = msgspec.field(default_factory=list)


_decoder = msgspec.json.Decoder(_Spreadsheet)


class SheetSnapshot(msgspec.Struct, frozen=True):
    """What one read showed of a worksheet: properties, header row, and key column.

    ``header`` holds the texts of the header row (row 1 unless told otherwise) with trailing blanks
    dropped. ``key_cells[i]`` is the text of the key column in the ``i + 1``-th row under it (None when
    empty); ``key_column`` is the 0-based column they were
    read from, or None when no key column was read. ``locks`` are the protected ranges of the sheet that
    this caller may not edit. ``tail_start`` is the first row of the tail read (every column from there
    to the end of the grid; None when no tail was read) and ``tail_last`` the last row in it with a value
    (None when it is empty); rows are 0-based.
    """

    properties: SheetProperties
    header: tuple[str, ...]
    key_column: int | None
    key_cells: tuple[str | None, ...]
    locks: tuple[Lock, ...] = ()
    tail_start: int | None = None
    tail_last: int | None = None


def column_letter(index: int) -> str:
    """A 0-based column index in A1 letters (0 -> A, 26 -> AA)."""
    return rowcol_to_a1(1, index + 1)[:-1]


class Tail(msgspec.Struct, frozen=True):
    """Which rows a read looks at in every column: from ``start`` (0-based, under the header row) to the
    end of the grid, in its first ``columns`` columns."""

    start: int
    columns: int


def read_ranges(
    title: str, key_column: int | None, header_row: int = 1, tail: Tail | None = None
) -> list[str]:
    """The A1 ranges one worksheet contributes to the read: its header row, if known its key column
    below it, and if asked the tail."""
    ranges = [absolute_range_name(title, f"{header_row}:{header_row}")]
    if key_column is not None:
        letter = column_letter(key_column)
        ranges.append(absolute_range_name(title, f"{letter}{header_row + 1}:{letter}"))
    if tail is not None:
        ranges.append(absolute_range_name(title, f"A{tail.start + 1}:{column_letter(tail.columns - 1)}"))
    return ranges


def _number_text(number: int | float) -> str:
    """A number as a key or header text: integral values without a decimal point (12.0 -> "12")."""
    if isinstance(number, int):
        return str(number)
    if number.is_integer() and abs(number) < 2**63:
        return str(int(number))
    return repr(number)


def _cell_text(cell: _CellData | None) -> str | None:
    """The text of a cell's ``effectiveValue`` as this connector compares it; None for an empty cell."""
    value = cell.effectiveValue if cell is not None else None
    if value is None:
        return None
    if value.stringValue is not None:
        return value.stringValue
    if value.numberValue is not None:
        return _number_text(value.numberValue)
    if value.boolValue is not None:
        return "TRUE" if value.boolValue else "FALSE"
    return None  # errorValue: a formula that failed is no key and no header


def _trim(texts: Iterable[str]) -> tuple[str, ...]:
    """Drop trailing blank cells."""
    items = list(texts)
    while items and not items[-1]:
        items.pop()
    return tuple(items)


def _properties(sheet: _Sheet) -> SheetProperties:
    props = sheet.properties
    grid = props.gridProperties
    return SheetProperties(props.title, props.sheetId, grid.rowCount, grid.columnCount)


def title_key(title: str) -> str:
    """A worksheet title as Google compares titles: without regard to case ("Customers" is "customers")."""
    return title.casefold()


def parse_sheet_list(body: bytes) -> dict[str, SheetProperties]:
    """:func:`title_key` -> properties of every worksheet in a ``spreadsheets.get`` answer.

    Raises msgspec.DecodeError for an answer that is not a Spreadsheet.
    """
    return {title_key(p.title): p for p in map(_properties, _decoder.decode(body).sheets)}


def _area(grid: _GridRange) -> GridArea:
    return GridArea(grid.startRowIndex, grid.endRowIndex, grid.startColumnIndex, grid.endColumnIndex)


def _locks(sheet: _Sheet) -> tuple[Lock, ...]:
    """The protected ranges Google says this caller cannot edit (warning-only ones can be edited)."""
    return tuple(
        Lock(_area(p.range), tuple(_area(u) for u in p.unprotectedRanges))
        for p in sheet.protectedRanges
        if not p.requestingUserCanEdit and not p.warningOnly
    )


def parse_snapshots(
    body: bytes,
    asked: Mapping[str, int | None],
    header_rows: Mapping[str, int] | None = None,
    tails: Mapping[str, Tail] | None = None,
) -> dict[str, SheetSnapshot]:
    """Snapshots from a ``spreadsheets.get`` answer to the ranges of ``asked`` (title -> key column read).

    Snapshots are keyed by the titles asked for, matched as Google matches titles (:func:`title_key`);
    the snapshot's properties carry the sheet's own title. Worksheets absent from the answer are left
    out. Each worksheet's ``data`` holds one GridData per range asked for; the header range starts at
    the header row (``header_rows``: title -> 1-based row, 1 when not given) and the key column range at
    the row under it, and the tail (``tails``: title -> what was asked, starting below that row) at its
    own start, which tells them apart. Raises msgspec.DecodeError for an answer that is not a
    Spreadsheet (e.g. cut short).
    """
    by_key = {title_key(title): title for title in asked}
    snapshots: dict[str, SheetSnapshot] = {}
    for sheet in _decoder.decode(body).sheets:
        properties = _properties(sheet)
        title = by_key.get(title_key(properties.title))
        if title is None:
            continue
        header: tuple[str, ...] = ()
        key_cells: tuple[str | None, ...] = ()
        tail = (tails or {}).get(title)
        tail_last: int | None = None
        for grid in sheet.data:
            if grid.startRow == (header_rows or {}).get(title, 1) - 1:
                first = grid.rowData[0].values if grid.rowData else []
                header = _trim([""] * grid.startColumn + [_cell_text(cell) or "" for cell in first])
            elif tail is not None and grid.startRow == tail.start:
                tail_last = _last_row_with_data(grid)
            else:
                key_cells = tuple(_cell_text(row.values[0]) if row.values else None for row in grid.rowData)
        snapshots[title] = SheetSnapshot(
            properties,
            header,
            asked[title],
            key_cells,
            _locks(sheet),
            tail_start=tail.start if tail is not None else None,
            tail_last=tail_last,
        )
    return snapshots


def _last_row_with_data(grid: _GridData) -> int | None:
    """The 0-based sheet row of the last row of ``grid`` with a value in any cell (None: no such row)."""
    for index in range(len(grid.rowData) - 1, -1, -1):
        if any(cell.effectiveValue is not None for cell in grid.rowData[index].values):
            return grid.startRow + index
    return None
