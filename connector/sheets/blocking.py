"""Which worksheets of a flush must not be written now, and why, as pure functions.

A worksheet is held back (its rows wait; the other worksheets of the spreadsheet are still written) when:

- its **key header is missing** from the header row while the sheet has data rows: a person renamed or
  deleted the key header, or inserted a title row above the headers. Keys could not be matched, so every
  row would be appended a second time; the rows wait until the header is back.
- a **protected range** that this account may not edit covers a cell the plan would write: Google would
  refuse the whole batchUpdate ("You are trying to edit a protected cell or object"), holding up every
  other worksheet with it.

And :func:`cell_growth` is how many cells a plan adds to the spreadsheet's grid, for Google's limit of
10,000,000 cells per spreadsheet.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any

import msgspec

from connector.sheets.plan import WorksheetBatch, WorksheetPlan, last_key_row
from connector.sheets.snapshot import GridArea, SheetSnapshot

__all__ = [
    "MAX_SPREADSHEET_CELLS",
    "BlockedWorksheet",
    "cell_growth",
    "is_cell_limit_error",
    "is_protection_error",
    "missing_key_header",
    "protected_reason",
    "written_areas",
]

# Google's documented ceiling for the cells of all the tabs of one spreadsheet together.
MAX_SPREADSHEET_CELLS = 10_000_000


class BlockedWorksheet(msgspec.Struct, frozen=True):
    """A worksheet whose rows were not written by a flush, and what a person must do about it."""

    title: str
    reason: str


def missing_key_header(
    batch: WorksheetBatch, snapshot: SheetSnapshot | None, previous_header: Collection[str]
) -> str | None:
    """Why the worksheet must wait because its key header is gone, or None when it can be written.

    The sheet has data rows when the column the keys were read from (the key column at the last flush,
    or the key header's place in our headers) holds a value, or when the last flush found the key header
    in it. A sheet without them (new, or with a person's own header row and nothing under it) gets our
    headers added after its last one.
    """
    if snapshot is None or batch.key_header in snapshot.header:
        return None
    if not any(snapshot.key_cells) and batch.key_header not in previous_header:
        return None
    row = batch.header_row
    return (
        f"key header {batch.key_header!r} not found in row {row} of {snapshot.properties.title!r}: its "
        f"rows wait until the header is back in row {row} (renamed or deleted? if a row was inserted above "
        "the headers, set header_row in the mapping to the row they are in now)"
    )


def _range_area(grid: Mapping[str, Any]) -> GridArea:
    return GridArea(
        grid.get("startRowIndex", 0),
        grid.get("endRowIndex"),
        grid.get("startColumnIndex", 0),
        grid.get("endColumnIndex"),
    )


def _first_free_row(snapshot: SheetSnapshot, header_row: int) -> int:
    """The first row an append can land in: below the header and the last key read (0-based)."""
    return last_key_row(snapshot.key_cells, header_row) + 1


def written_areas(plan: WorksheetPlan, snapshot: SheetSnapshot) -> Iterable[GridArea]:
    """Every area of an existing sheet that the plan writes or reshapes (appendCells: conservatively
    everything below the last key, since the last row with data is not known)."""
    for request in plan.requests:
        ((kind, body),) = request.items()
        if kind == "updateCells":
            yield _range_area(body["range"])
        elif kind == "appendCells":
            width = max((len(row["values"]) for row in body["rows"]), default=1)
            yield GridArea(_first_free_row(snapshot, plan.header_row), None, 0, width)
        elif kind == "appendDimension" and body["dimension"] == "COLUMNS":
            yield GridArea(0, None, snapshot.properties.column_count, None)
        elif kind == "appendDimension":
            yield GridArea(snapshot.properties.row_count, None, 0, None)
    for block in plan.values:
        yield block.area


def protected_reason(plan: WorksheetPlan, snapshot: SheetSnapshot | None) -> str | None:
    """Why the worksheet must wait because the plan would edit a range protected against this account."""
    if snapshot is None or not snapshot.locks:
        return None
    for area in written_areas(plan, snapshot):
        for lock in snapshot.locks:
            if lock.forbids(area):
                shown = "the whole tab" if lock.area.whole_sheet else _rows_text(lock.area)
                return (
                    f"worksheet {snapshot.properties.title!r} is protected ({shown}) and the service "
                    "account is not an editor of the protected range: its rows wait until the owner adds "
                    "the account as an editor or removes the protection"
                )
    return None


def _rows_text(area: GridArea) -> str:
    end = "the last row" if area.end_row is None else f"row {area.end_row}"
    return f"rows {area.start_row + 1} to {end}"


def cell_growth(plan: WorksheetPlan, snapshot: SheetSnapshot | None) -> int:
    """At most how many cells the plan adds to the grid (new tab, new columns, rows past the grid)."""
    rows = snapshot.properties.row_count if snapshot is not None else 0
    columns = snapshot.properties.column_count if snapshot is not None else 0
    growth = plan.row_count * plan.column_count - rows * columns
    appended = sum(
        len(request["appendCells"]["rows"]) for request in plan.requests if "appendCells" in request
    )
    if appended and snapshot is not None:
        # appendCells lands after the last row with data, at the latest under the last key read.
        growth += (
            max(0, _first_free_row(snapshot, plan.header_row) + appended - plan.row_count) * plan.column_count
        )
    return growth


def is_protection_error(cause: str) -> bool:
    """Whether an error message is Google's refusal to edit a protected range."""
    return "protected cell or object" in cause


def is_cell_limit_error(cause: str) -> bool:
    """Whether an error message is Google's refusal to grow a spreadsheet past its cell limit."""
    return "above the limit of" in cause and "cells" in cause
