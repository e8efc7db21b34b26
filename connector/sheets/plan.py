"""The write side of a flush, as pure functions: from what was read and what is wanted, the requests.

Given a worksheet's snapshot (header row, key column, sheet id, grid size and, when read, the rows below
our last one) and a batch of upserts, :func:`plan_worksheet` returns what brings the sheet up to date:

- **structural sub-requests** of ``spreadsheets.batchUpdate``, in the order they must run: ``addSheet``
  when the worksheet is missing (with a sheet id chosen here), ``appendDimension`` of columns when the
  header grows past the grid and of rows when new rows do, and ``appendCells`` for new keys when the read
  could not show where the sheet's data ends (then Google finds the row after the last one with data);
- **value blocks** (:class:`ValueBlock`), rectangles written RAW by ``spreadsheets.values.batchUpdate``:
  headers that are missing (appended after the last header, never moved), the columns we manage of rows
  whose key is already in the sheet (found by header name, one rectangle per run of adjacent columns and
  adjacent rows, so a person's own columns in between are never touched), and new rows, written from the
  row after the last one with data in any column (:func:`append_start`).

A values write carries bare values, about a third of the bytes of the same cells as ``CellData``; Google
allows some 60 write requests a minute and recommends at most 2 MB a request, so bytes per row decide how
fast a backlog drains. Values writes do not grow the grid, so rows are added (``appendDimension``) with
room for twice as many again (up to :data:`MAX_SPARE_ROWS`): the next flushes of a growing sheet then
need no structural request at all. :func:`encode_writes` turns a flush's plans into the fewest request bodies.

Every value is written RAW as its own type (:func:`raw_value`): strings stay text even when they look like
a formula (``=IMPORTXML(...)``, ``+1``, ``@x``), numbers stay numbers, booleans booleans. ``None`` clears
the cell (``""``); a header left out of an upsert's values leaves that cell as it is (``null``). Google
keeps every number as an IEEE double, exact for integers only up to 2**53, so an integer beyond +-2**53 is
written as text (9007199254741003 would come back as ...004 otherwise). Google refuses a cell of more than
50,000 characters; longer text is cut to fit, ending in :data:`CUT_MARKER` so a reader sees it was cut.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import msgspec
from gspread.utils import absolute_range_name, rowcol_to_a1

from connector.sheets.snapshot import GridArea, SheetSnapshot

__all__ = [
    "CUT_MARKER",
    "MAX_CELL_CHARS",
    "MAX_SPARE_ROWS",
    "CellValue",
    "ColumnLayout",
    "Key",
    "RawValue",
    "Upsert",
    "ValueBlock",
    "WorksheetBatch",
    "WorksheetPlan",
    "WriteBody",
    "append_start",
    "cell_data",
    "column_runs",
    "cut_text",
    "encode_writes",
    "index_keys",
    "key_text",
    "last_key_row",
    "merge_upserts",
    "new_sheet_id",
    "pack_requests",
    "plan_worksheet",
    "raw_value",
    "request_size",
    "resolve_columns",
    "spare_rows",
    "utf16_units",
]

CellValue = str | int | float | bool | None
# A value as ``values.batchUpdate`` takes it RAW: ``""`` clears the cell, ``None`` (null) leaves it alone.
RawValue = str | int | float | bool | None
Key = str | int
Upsert = tuple[Key, Mapping[str, CellValue]]

# Google refuses a cell of more than 50,000 characters; longer text is cut rather than failing the flush.
# Counted in UTF-16 code units, never fewer than characters, so the cut fits however Google counts.
MAX_CELL_CHARS = 50_000
CUT_MARKER = " …[cut: over 50,000 characters]"
_MAX_EXACT_INT = 2**53
NEW_SHEET_ROWS = 1000
# The most empty rows a growing grid is given beyond what a flush needs (see spare_rows).
MAX_SPARE_ROWS = 30_000
_FIELDS = "userEnteredValue"
# What a sub-request costs in the batch body beyond its own JSON (comma, envelope share).
_ENVELOPE_BYTES = 64
# What a ValueRange costs beyond its rows and its range's title: the range's cells, keys, brackets.
_VALUE_RANGE_BYTES = 64
_encode = msgspec.json.Encoder().encode


class WorksheetBatch(msgspec.Struct, frozen=True):
    """The upserts for one worksheet in one flush.

    ``headers`` are the columns we manage, in the order they are created; ``key_header`` must be one of
    them. Each upsert is ``(key, {header: value})`` with headers from ``headers``; later upserts of the
    same key override earlier ones header by header. ``header_row`` is the 1-based row the headers are
    in; the rows above it are left alone.
    """

    title: str
    key_header: str
    headers: Sequence[str]
    upserts: Sequence[Upsert]
    header_row: int = 1

    def __post_init__(self) -> None:
        if not self.title:
            raise ValueError("a worksheet title must not be empty")
        if self.header_row < 1:
            raise ValueError(f"worksheet {self.title!r}: header_row is 1 or more, not {self.header_row}")
        if not self.headers or any(not h for h in self.headers):
            raise ValueError(f"worksheet {self.title!r}: headers must be non-empty strings")
        if len(set(self.headers)) != len(self.headers):
            raise ValueError(f"worksheet {self.title!r}: headers must be unique")
        if self.key_header not in self.headers:
            raise ValueError(f"worksheet {self.title!r}: key header {self.key_header!r} is not in headers")
        known = set(self.headers)
        for key, values in self.upserts:
            if isinstance(key, bool) or not isinstance(key, str | int) or key == "":
                raise ValueError(
                    f"worksheet {self.title!r}: a key must be a non-empty str or an int, not {key!r}"
                )
            for header, value in values.items():
                if header not in known:
                    raise ValueError(f"worksheet {self.title!r}: {header!r} is not one of its headers")
                if isinstance(value, float) and not math.isfinite(value):
                    raise ValueError(f"worksheet {self.title!r}: {header!r} is {value}, not a finite number")
                if value is not None and not isinstance(value, str | int | float):
                    raise ValueError(f"worksheet {self.title!r}: {header!r} has unsupported {type(value)}")


class ColumnLayout(msgspec.Struct, frozen=True):
    """Where our headers are after this flush.

    ``positions`` maps each managed header to its 0-based column; ``header`` is row 1 as it will be;
    ``added`` are headers new to the sheet and ``readded`` those it had before (per the last flush) but
    that were renamed away or deleted since; both were put after the last header.
    """

    positions: Mapping[str, int]
    header: tuple[str, ...]
    added: tuple[str, ...]
    readded: tuple[str, ...]
    first_new_column: int


class ValueBlock(msgspec.Struct, frozen=True):
    """Values for a rectangle of one worksheet from (``row``, ``column``), 0-based: rows of cells."""

    row: int
    column: int
    values: list[list[RawValue]]

    @property
    def width(self) -> int:
        """Columns the block spans."""
        return max((len(row) for row in self.values), default=0)

    @property
    def area(self) -> GridArea:
        """The rectangle the block writes."""
        return GridArea(self.row, self.row + len(self.values), self.column, self.column + self.width)


class WorksheetPlan(msgspec.Struct, frozen=True):
    """What one worksheet's part of a flush writes, and what it will do.

    ``requests`` are structural batchUpdate sub-requests (run first), ``values`` the blocks written
    after them. ``row_count`` and ``column_count`` are the grid's size afterwards (rows: at least; an
    ``appendCells`` may add more); ``tail_start`` is the first row under our rows afterwards, from
    where the next flush reads every column to see where the data ends.
    """

    title: str
    sheet_id: int
    sheet_title: str
    created: bool
    requests: tuple[dict[str, Any], ...]
    values: tuple[ValueBlock, ...]
    layout: ColumnLayout
    key_column: int
    column_count: int
    row_count: int
    tail_start: int
    updated: int
    appended: int
    duplicate_keys: tuple[str, ...]
    header_row: int = 1


class WriteBody(msgspec.Struct, frozen=True):
    """One write request of a flush: a ``spreadsheets.batchUpdate`` or a ``values.batchUpdate`` body."""

    values: bool
    payload: bytes


def key_text(key: Key) -> str:
    """A key as it is compared with the key column's cell texts (12 and "12" are the same key)."""
    return str(key)


def utf16_units(text: str) -> int:
    """The length of ``text`` in UTF-16 code units (a character beyond U+FFFF, such as an emoji, is two)."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def cut_text(text: str, limit: int = MAX_CELL_CHARS) -> str:
    """``text`` unchanged when it fits in ``limit`` UTF-16 code units, else cut to fit with CUT_MARKER."""
    if len(text) <= limit // 2 or utf16_units(text) <= limit:
        return text
    budget = limit - utf16_units(CUT_MARKER)
    units = 0
    for end, char in enumerate(text):
        units += 2 if ord(char) > 0xFFFF else 1
        if units > budget:
            return text[:end] + CUT_MARKER
    return text  # not reached: the text is longer than the limit


def raw_value(value: CellValue) -> str | int | float | bool:
    """``value`` as a RAW values write takes it: None as ``""`` (clears the cell), an integer beyond
    +-2**53 as text, text cut to fit a cell."""
    if value is None:
        return ""
    if isinstance(value, bool | float):
        return value
    if isinstance(value, int):
        return str(value) if abs(value) > _MAX_EXACT_INT else value
    return cut_text(value)


def cell_data(value: RawValue) -> dict[str, Any]:
    """The ``CellData`` writing a RAW value; ``{}`` (with the userEnteredValue field mask) clears the cell."""
    if value is None or value == "":
        return {}
    if isinstance(value, bool):
        return {"userEnteredValue": {"boolValue": value}}
    if isinstance(value, int | float):
        return {"userEnteredValue": {"numberValue": value}}
    return {"userEnteredValue": {"stringValue": value}}


def merge_upserts(upserts: Iterable[Upsert]) -> dict[str, tuple[Key, dict[str, CellValue]]]:
    """Upserts by key text in first-seen order, later values of a key overriding earlier ones per header."""
    merged: dict[str, tuple[Key, dict[str, CellValue]]] = {}
    for key, values in upserts:
        text = key_text(key)
        if text in merged:
            merged[text] = (merged[text][0], {**merged[text][1], **values})
        else:
            merged[text] = (key, dict(values))
    return merged


def resolve_columns(
    sheet_header: Sequence[str], wanted: Sequence[str], previous_header: Collection[str] = ()
) -> ColumnLayout:
    """Match our headers to the sheet's by name (first match wins) and place missing ones at the end."""
    header = list(sheet_header)
    while header and not header[-1]:
        header.pop()
    first_new = len(header)
    found: dict[str, int] = {}
    for index, text in enumerate(header):
        found.setdefault(text, index)
    positions: dict[str, int] = {}
    added: list[str] = []
    readded: list[str] = []
    for name in wanted:
        if name in found:
            positions[name] = found[name]
            continue
        positions[name] = len(header)
        header.append(name)
        (readded if name in previous_header else added).append(name)
    return ColumnLayout(positions, tuple(header), tuple(added), tuple(readded), first_new)


def index_keys(key_cells: Sequence[str | None], first_row: int = 1) -> tuple[dict[str, int], tuple[str, ...]]:
    """Key text -> 0-based sheet row of its first occurrence, and the keys found more than once.

    ``key_cells[i]`` is sheet row ``i + first_row`` (0-based): ``first_row`` is the row under the header.
    """
    rows: dict[str, int] = {}
    duplicates: dict[str, None] = {}
    for offset, text in enumerate(key_cells):
        if not text:
            continue
        if text in rows:
            duplicates[text] = None
        else:
            rows[text] = offset + first_row
    return rows, tuple(duplicates)


def column_runs(columns: Iterable[int]) -> tuple[tuple[int, int], ...]:
    """Runs of adjacent columns as ``(start, end)`` half-open pairs: {0, 1, 3} -> ((0, 2), (3, 4))."""
    runs: list[tuple[int, int]] = []
    for column in sorted(set(columns)):
        if runs and runs[-1][1] == column:
            runs[-1] = (runs[-1][0], column + 1)
        else:
            runs.append((column, column + 1))
    return tuple(runs)


def new_sheet_id(title: str, taken: Collection[int]) -> int:
    """A sheet id for a new worksheet: derived from its title, unused in the spreadsheet, never 0."""
    candidate = zlib.crc32(title.encode("utf-8")) & 0x7FFFFFFF
    while candidate == 0 or candidate in taken:
        candidate = (candidate + 1) & 0x7FFFFFFF
    return candidate


def request_size(request: Mapping[str, Any]) -> int:
    """Bytes a sub-request adds to a batchUpdate body."""
    return len(msgspec.json.encode(request)) + _ENVELOPE_BYTES


def pack_requests(requests: Sequence[dict[str, Any]], max_bytes: int) -> list[list[dict[str, Any]]]:
    """Split sub-requests, in order, into batchUpdate bodies of at most ``max_bytes`` each."""
    batches: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    size = 0
    for request in requests:
        cost = request_size(request)
        if current and size + cost > max_bytes:
            batches.append(current)
            current, size = [], 0
        current.append(request)
        size += cost
    if current:
        batches.append(current)
    return batches


def _chunks(rows: Sequence[list[dict[str, Any]]], budget: int) -> Iterable[Sequence[list[dict[str, Any]]]]:
    """Consecutive slices of ``rows`` whose encoded size stays within ``budget`` (at least one row each)."""
    start, size = 0, 0
    for index, row in enumerate(rows):
        cost = len(msgspec.json.encode(row)) + 16
        if index > start and size + cost > budget:
            yield rows[start:index]
            start, size = index, 0
        size += cost
    if start < len(rows):
        yield rows[start:]


def _update_blocks(cells_by_row: Mapping[int, Mapping[int, RawValue]]) -> list[ValueBlock]:
    """Value blocks of updated rows: adjacent rows sharing the same written columns, one per column run."""
    blocks: list[ValueBlock] = []
    group: list[int] = []
    group_runs: tuple[tuple[int, int], ...] = ()

    def emit() -> None:
        for start_col, end_col in group_runs:
            rows = [[cells_by_row[row][col] for col in range(start_col, end_col)] for row in group]
            blocks.append(ValueBlock(group[0], start_col, rows))

    for row in sorted(cells_by_row):
        runs = column_runs(cells_by_row[row])
        if group and row == group[-1] + 1 and runs == group_runs:
            group.append(row)
            continue
        if group:
            emit()
        group, group_runs = [row], runs
    if group:
        emit()
    return blocks


def last_key_row(key_cells: Sequence[str | None], header_row: int) -> int:
    """The 0-based sheet row of the last key read, or the header's row when there is none."""
    # From the end: the last key is near it (this runs for every worksheet of every flush).
    last = next((index for index in range(len(key_cells) - 1, -1, -1) if key_cells[index]), -1)
    return last + header_row


def append_start(snapshot: SheetSnapshot, header_row: int) -> int | None:
    """The 0-based row new rows may be written from: the row after the last one with data in any column.

    Known when the grid ends at the last key, or when the read covered every column of the rows from
    just below the last key to the end of the grid (``snapshot.tail_start``); None otherwise (a cold start,
    or rows deleted above where the read began), and then ``appendCells`` lets Google find the row.
    """
    last = last_key_row(snapshot.key_cells, header_row)
    if last + 1 >= snapshot.properties.row_count:
        return last + 1
    if snapshot.tail_start is None or snapshot.tail_start > last + 1:
        return None
    tail_last = -1 if snapshot.tail_last is None else snapshot.tail_last
    return max(last, tail_last) + 1


def spare_rows(appended: int) -> int:
    """Empty rows added beyond those needed when the grid must grow: room for the next two flushes of as
    many rows (a backlog drains in flushes of about the same size), up to MAX_SPARE_ROWS."""
    return min(2 * appended, MAX_SPARE_ROWS)


def plan_worksheet(
    batch: WorksheetBatch,
    snapshot: SheetSnapshot | None,
    *,
    new_sheet_id: int,
    previous_header: Collection[str] = (),
    max_request_bytes: int = 2_000_000,
    spare: bool = True,
) -> WorksheetPlan:
    """What applies ``batch`` to the worksheet ``snapshot`` shows (None: missing).

    ``snapshot.key_cells`` must come from the key header's column as the snapshot's header places it (or
    be empty when the key header is not in the sheet). ``new_sheet_id`` is used only to create the sheet;
    ``max_request_bytes`` bounds each ``appendCells`` sub-request; ``spare``: whether a growing grid gets
    :func:`spare_rows` (not when they would take the spreadsheet past its cell limit).
    """
    requests: list[dict[str, Any]] = []
    if snapshot is None:
        sheet_id = new_sheet_id
        sheet_title = batch.title
        sheet_header: tuple[str, ...] = ()
        column_count = row_count = 0
        key_cells: Sequence[str | None] = ()
        start: int | None = batch.header_row
    else:
        sheet_id = snapshot.properties.sheet_id
        sheet_title = snapshot.properties.title
        sheet_header = snapshot.header
        column_count = snapshot.properties.column_count
        row_count = snapshot.properties.row_count
        key_cells = snapshot.key_cells
        if batch.key_header in sheet_header and snapshot.key_column != sheet_header.index(batch.key_header):
            raise ValueError(
                f"worksheet {batch.title!r}: key cells were read from column {snapshot.key_column}, "
                f"but {batch.key_header!r} is in column {sheet_header.index(batch.key_header)}"
            )
        if batch.key_header not in sheet_header:
            key_cells = ()
        start = append_start(snapshot, batch.header_row)

    layout = resolve_columns(sheet_header, batch.headers, previous_header)
    key_rows, duplicates = index_keys(key_cells, batch.header_row)
    key_column = layout.positions[batch.key_header]
    updates: dict[int, dict[int, RawValue]] = {}
    appends: list[dict[int, RawValue]] = []
    for text, (key, values) in merge_upserts(batch.upserts).items():
        cells: dict[int, RawValue] = {
            layout.positions[header]: raw_value(value)
            for header, value in values.items()
            if header != batch.key_header
        }
        row = key_rows.get(text)
        if row is not None:
            if cells:
                updates[row] = cells
            continue
        # The key cell as the upsert gives it (a number stays a number), else the key itself.
        cells[key_column] = raw_value(values.get(batch.key_header, key))
        appends.append(cells)
    blocks = _update_blocks(updates)
    width = max(layout.positions.values()) + 1
    rows_needed = max(row_count, batch.header_row)
    if start is not None and appends:
        blocks.append(ValueBlock(start, 0, [[cells.get(c) for c in range(width)] for cells in appends]))
        rows_needed = max(rows_needed, start + len(appends))
    grid_rows = row_count
    if rows_needed > row_count:
        grid_rows = rows_needed + (spare_rows(len(appends)) if spare else 0)

    if snapshot is None:
        # As many columns as the headers need, not Sheets' usual 26: every cell of the grid counts toward
        # the 10,000,000 a spreadsheet may hold, and a person can still add columns of their own.
        column_count = len(layout.header)
        grid_rows = max(grid_rows, NEW_SHEET_ROWS)
        properties = {"rowCount": grid_rows, "columnCount": column_count, "frozenRowCount": batch.header_row}
        requests.append(
            {
                "addSheet": {
                    "properties": {"sheetId": sheet_id, "title": batch.title, "gridProperties": properties}
                }
            }
        )
    elif len(layout.header) > column_count:
        requests.append(_append_dimension(sheet_id, "COLUMNS", len(layout.header) - column_count))
        column_count = len(layout.header)
    new_headers = layout.header[layout.first_new_column :]
    if new_headers:
        # Written before any appendCells below, which would otherwise take row 1 of an empty sheet.
        header_range = {
            "sheetId": sheet_id,
            "startRowIndex": batch.header_row - 1,
            "endRowIndex": batch.header_row,
            "startColumnIndex": layout.first_new_column,
            "endColumnIndex": len(layout.header),
        }
        header_cells = [cell_data(raw_value(text)) for text in new_headers]
        requests.append(
            {"updateCells": {"range": header_range, "rows": [{"values": header_cells}], "fields": _FIELDS}}
        )
    if snapshot is not None and grid_rows > row_count:
        requests.append(_append_dimension(sheet_id, "ROWS", grid_rows - row_count))
    if start is None:
        rows = [[cell_data(cells.get(c)) for c in range(width)] for cells in appends]
        for chunk in _chunks(rows, max(max_request_bytes - 1024, 1024)):
            requests.append(
                {
                    "appendCells": {
                        "sheetId": sheet_id,
                        "rows": [{"values": values} for values in chunk],
                        "fields": _FIELDS,
                    }
                }
            )
    last_key = last_key_row(key_cells, batch.header_row)
    return WorksheetPlan(
        title=batch.title,
        sheet_id=sheet_id,
        sheet_title=sheet_title,
        created=snapshot is None,
        requests=tuple(requests),
        values=tuple(blocks),
        layout=layout,
        key_column=key_column,
        column_count=column_count,
        row_count=grid_rows,
        tail_start=last_key + 1 if start is None else start + len(appends),
        updated=len(updates),
        appended=len(appends),
        duplicate_keys=duplicates,
        header_row=batch.header_row,
    )


def _append_dimension(sheet_id: int, dimension: str, length: int) -> dict[str, Any]:
    """An appendDimension sub-request: ``length`` more rows or columns at the end of the grid."""
    return {"appendDimension": {"sheetId": sheet_id, "dimension": dimension, "length": length}}


def _update_cells(sheet_id: int, block: ValueBlock) -> dict[str, Any]:
    """A value block as an updateCells sub-request (null and "" both clear: a block's null cells are in
    rows known to be empty)."""
    grid_range = {
        "sheetId": sheet_id,
        "startRowIndex": block.row,
        "endRowIndex": block.row + len(block.values),
        "startColumnIndex": block.column,
        "endColumnIndex": block.column + block.width,
    }
    rows = [{"values": [cell_data(value) for value in row]} for row in block.values]
    return {"updateCells": {"range": grid_range, "rows": rows, "fields": _FIELDS}}


def _a1(title: str, row: int, column: int, height: int, width: int) -> str:
    """A rectangle in A1 notation on the worksheet ``title`` (0-based row and column)."""
    return absolute_range_name(
        title, f"{rowcol_to_a1(row + 1, column + 1)}:{rowcol_to_a1(row + height, column + width)}"
    )


def _pack_values(plans: Sequence[WorksheetPlan], max_bytes: int) -> list[WriteBody]:
    """The plans' value blocks in ``values.batchUpdate`` bodies of at most ``max_bytes`` each (a single
    larger row excepted), in order; a block too large for what is left of a body is split by rows."""
    bodies: list[WriteBody] = []
    data: list[dict[str, Any]] = []
    size = _VALUE_RANGE_BYTES

    def close() -> None:
        nonlocal data, size
        if data:
            payload = _encode({"valueInputOption": "RAW", "data": data})
            bodies.append(WriteBody(values=True, payload=payload))
        data, size = [], _VALUE_RANGE_BYTES

    for plan in plans:
        overhead = len(plan.sheet_title) + _VALUE_RANGE_BYTES
        for block in plan.values:
            width = block.width
            rows: list[msgspec.Raw] = []
            first = block.row
            size += overhead
            for row in block.values:
                encoded = msgspec.Raw(_encode(_trimmed(row)))
                if rows and size + len(encoded) + 1 > max_bytes:
                    data.append(_value_range(plan.sheet_title, first, block.column, width, rows))
                    close()
                    first += len(rows)
                    rows = []
                    size += overhead
                rows.append(encoded)
                size += len(encoded) + 1
            data.append(_value_range(plan.sheet_title, first, block.column, width, rows))
    close()
    return bodies


def _value_range(title: str, row: int, column: int, width: int, rows: list[msgspec.Raw]) -> dict[str, Any]:
    """A ValueRange of encoded rows written from (``row``, ``column``), 0-based, ``width`` columns wide."""
    return {"range": _a1(title, row, column, len(rows), width), "values": rows}


def _trimmed(row: list[RawValue]) -> list[RawValue]:
    """A row without its trailing nulls (cells left alone need not be sent)."""
    end = len(row)
    while end and row[end - 1] is None:
        end -= 1
    return row if end == len(row) else row[:end]


def encode_writes(plans: Sequence[WorksheetPlan], max_bytes: int) -> list[WriteBody]:
    """The write requests that carry out the plans, in order, each body at most ``max_bytes``.

    The structural sub-requests go first in batchUpdates, then the values in values.batchUpdates. When
    there are structural sub-requests and everything fits one batchUpdate (values as updateCells), that
    one request is all: fewer requests, and one that Google applies whole.
    """
    structural = [request for plan in plans for request in plan.requests]
    values = _pack_values(plans, max_bytes)
    if not structural:
        return values
    # CellData takes about three times the bytes of the bare values: only small flushes can fit.
    if sum(len(body.payload) for body in values) * 4 <= max_bytes:
        cells = [_update_cells(plan.sheet_id, block) for plan in plans for block in plan.values]
        packed = pack_requests(structural + cells, max_bytes)
        if len(packed) == 1:
            return [WriteBody(values=False, payload=_encode({"requests": packed[0]}))]
    return [
        WriteBody(values=False, payload=_encode({"requests": chunk}))
        for chunk in pack_requests(structural, max_bytes)
    ] + values
