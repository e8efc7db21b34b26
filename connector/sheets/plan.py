"""The write side of a flush, as pure functions: from what was read and what is wanted, the requests.

Given a worksheet's snapshot (header row, key column, sheet id and grid size) and a batch of upserts,
:func:`plan_worksheet` returns the ``spreadsheets:batchUpdate`` sub-requests that bring the sheet up to
date, in the order they must run:

1. ``addSheet`` when the worksheet is missing (with a sheet id chosen here, so later sub-requests of the
   same batchUpdate can already address it);
2. ``appendDimension`` of columns when the header grows past the grid (updateCells cannot write there);
3. ``updateCells`` of row 1 for headers that are missing: appended after the last header, never moved;
4. ``updateCells`` for rows whose key is already in the sheet: only the columns we manage, found by
   header name, one rectangle per run of adjacent columns and adjacent rows, so a person's own columns
   in between are never touched;
5. ``appendCells`` for new keys, which lands after the last row with data and grows the grid itself.

Every value is written as ``userEnteredValue`` of its own type: strings as ``stringValue`` (so text that
looks like a formula, ``=IMPORTXML(...)``, ``+1``, ``@x``, stays text), numbers as ``numberValue``,
booleans as ``boolValue``. ``None`` clears the cell; a header left out of an upsert's values leaves that
cell as it is. Google keeps every number as an IEEE double, exact for integers only up to 2**53, so an
integer beyond +-2**53 is written as text (9007199254741003 would come back as ...004 otherwise).
Google refuses a cell of more than 50,000 characters; longer text is cut to fit, ending in
:data:`CUT_MARKER` so a reader sees it was cut.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import msgspec

from connector.sheets.snapshot import SheetSnapshot

__all__ = [
    "CUT_MARKER",
    "MAX_CELL_CHARS",
    "CellValue",
    "ColumnLayout",
    "Key",
    "Upsert",
    "WorksheetBatch",
    "WorksheetPlan",
    "cell_data",
    "column_runs",
    "cut_text",
    "index_keys",
    "key_text",
    "merge_upserts",
    "new_sheet_id",
    "pack_requests",
    "plan_worksheet",
    "request_size",
    "resolve_columns",
    "utf16_units",
]

CellValue = str | int | float | bool | None
Key = str | int
Upsert = tuple[Key, Mapping[str, CellValue]]

# Google refuses a cell of more than 50,000 characters; longer text is cut rather than failing the flush.
# Counted in UTF-16 code units, never fewer than characters, so the cut fits however Google counts.
MAX_CELL_CHARS = 50_000
CUT_MARKER = " …[cut: over 50,000 characters]"
_MAX_EXACT_INT = 2**53
NEW_SHEET_ROWS = 1000
_FIELDS = "userEnteredValue"
# What a sub-request costs in the batch body beyond its own JSON (comma, envelope share).
_ENVELOPE_BYTES = 64


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


class WorksheetPlan(msgspec.Struct, frozen=True):
    """The sub-requests for one worksheet, and what they will do."""

    title: str
    sheet_id: int
    created: bool
    requests: tuple[dict[str, Any], ...]
    layout: ColumnLayout
    key_column: int
    column_count: int
    updated: int
    appended: int
    duplicate_keys: tuple[str, ...]
    header_row: int = 1


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


def cell_data(value: CellValue) -> dict[str, Any]:
    """A ``CellData`` writing ``value`` RAW; ``{}`` (with the userEnteredValue field mask) clears the cell."""
    if value is None:
        return {}
    if isinstance(value, bool):
        return {"userEnteredValue": {"boolValue": value}}
    if isinstance(value, int):
        if abs(value) > _MAX_EXACT_INT:
            return {"userEnteredValue": {"stringValue": str(value)}}
        return {"userEnteredValue": {"numberValue": value}}
    if isinstance(value, float):
        return {"userEnteredValue": {"numberValue": value}}
    return {"userEnteredValue": {"stringValue": cut_text(value)}}


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


def _update_requests(
    sheet_id: int, cells_by_row: Mapping[int, Mapping[int, dict[str, Any]]], budget: int
) -> list[dict[str, Any]]:
    """updateCells rectangles: adjacent rows sharing the same written columns, one per column run."""
    requests: list[dict[str, Any]] = []
    group: list[int] = []
    group_runs: tuple[tuple[int, int], ...] = ()

    def emit() -> None:
        for start_col, end_col in group_runs:
            rows = [[cells_by_row[row][col] for col in range(start_col, end_col)] for row in group]
            first = group[0]
            for chunk in _chunks(rows, budget):
                requests.append(
                    {
                        "updateCells": {
                            "range": {
                                "sheetId": sheet_id,
                                "startRowIndex": first,
                                "endRowIndex": first + len(chunk),
                                "startColumnIndex": start_col,
                                "endColumnIndex": end_col,
                            },
                            "rows": [{"values": values} for values in chunk],
                            "fields": _FIELDS,
                        }
                    }
                )
                first += len(chunk)

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
    return requests


def plan_worksheet(
    batch: WorksheetBatch,
    snapshot: SheetSnapshot | None,
    *,
    new_sheet_id: int,
    previous_header: Collection[str] = (),
    max_request_bytes: int = 2_000_000,
) -> WorksheetPlan:
    """The batchUpdate sub-requests that apply ``batch`` to the worksheet ``snapshot`` shows (None: missing).

    ``snapshot.key_cells`` must come from the key header's column as the snapshot's header places it (or
    be empty when the key header is not in the sheet). ``new_sheet_id`` is used only to create the sheet.
    """
    budget = max(max_request_bytes - 1024, 1024)
    requests: list[dict[str, Any]] = []
    created = snapshot is None
    if snapshot is None:
        sheet_id = new_sheet_id
        sheet_header: tuple[str, ...] = ()
        # As many columns as the headers need, not Sheets' usual 26: every cell of the grid counts toward
        # the 10,000,000 a spreadsheet may hold, and a person can still add columns of their own.
        column_count = max(1, len(batch.headers))
        requests.append(
            {
                "addSheet": {
                    "properties": {
                        "sheetId": sheet_id,
                        "title": batch.title,
                        "gridProperties": {
                            "rowCount": NEW_SHEET_ROWS,
                            "columnCount": column_count,
                            "frozenRowCount": batch.header_row,
                        },
                    }
                }
            }
        )
        key_cells: Sequence[str | None] = ()
    else:
        sheet_id = snapshot.properties.sheet_id
        sheet_header = snapshot.header
        column_count = snapshot.properties.column_count
        key_cells = snapshot.key_cells
        if batch.key_header in sheet_header and snapshot.key_column != sheet_header.index(batch.key_header):
            raise ValueError(
                f"worksheet {batch.title!r}: key cells were read from column {snapshot.key_column}, "
                f"but {batch.key_header!r} is in column {sheet_header.index(batch.key_header)}"
            )
        if batch.key_header not in sheet_header:
            key_cells = ()

    layout = resolve_columns(sheet_header, batch.headers, previous_header)
    if len(layout.header) > column_count:
        requests.append(
            {
                "appendDimension": {
                    "sheetId": sheet_id,
                    "dimension": "COLUMNS",
                    "length": len(layout.header) - column_count,
                }
            }
        )
        column_count = len(layout.header)
    new_headers = layout.header[layout.first_new_column :]
    if new_headers:
        requests.append(
            {
                "updateCells": {
                    "range": {
                        "sheetId": sheet_id,
                        "startRowIndex": batch.header_row - 1,
                        "endRowIndex": batch.header_row,
                        "startColumnIndex": layout.first_new_column,
                        "endColumnIndex": len(layout.header),
                    },
                    "rows": [{"values": [cell_data(text) for text in new_headers]}],
                    "fields": _FIELDS,
                }
            }
        )

    key_rows, duplicates = index_keys(key_cells, batch.header_row)
    key_column = layout.positions[batch.key_header]
    updates: dict[int, dict[int, dict[str, Any]]] = {}
    appends: list[list[dict[str, Any]]] = []
    width = max(layout.positions.values()) + 1
    for text, (key, values) in merge_upserts(batch.upserts).items():
        cells = {
            layout.positions[header]: cell_data(value)
            for header, value in values.items()
            if header != batch.key_header
        }
        row = key_rows.get(text)
        if row is not None:
            if cells:
                updates[row] = cells
            continue
        # The key cell as the upsert gives it (a number stays a number), else the key itself.
        cells[key_column] = cell_data(values.get(batch.key_header, key))
        appends.append([cells.get(column, {}) for column in range(width)])

    requests.extend(_update_requests(sheet_id, updates, budget))
    for chunk in _chunks(appends, budget):
        requests.append(
            {
                "appendCells": {
                    "sheetId": sheet_id,
                    "rows": [{"values": values} for values in chunk],
                    "fields": _FIELDS,
                }
            }
        )
    return WorksheetPlan(
        title=batch.title,
        sheet_id=sheet_id,
        created=created,
        requests=tuple(requests),
        layout=layout,
        key_column=key_column,
        column_count=column_count,
        updated=len(updates),
        appended=len(appends),
        duplicate_keys=duplicates,
        header_row=batch.header_row,
    )
