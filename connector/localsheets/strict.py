"""Strict mode: the checks Google makes that the permissive local server leaves out.

With ``strict`` on, every change (a ``batchUpdate``, a values write) is checked once it has run against
the fork of the spreadsheet and before the fork is committed, so a refused change leaves nothing behind,
as Google's atomic requests do:

- **protected ranges**: a caller who is not an editor of a protected range (and the range is not
  "warning only") may not change a cell in it; a protected *whole sheet* also may not be renamed,
  resized, deleted or have rows or columns inserted or removed. Google answers 400 for the whole request.
- **cell size**: Google refuses text of more than 50,000 characters in one cell. Sheets is built on
  UTF-16 strings; counting UTF-16 code units is the stricter reading (a character outside the Basic
  Multilingual Plane, such as an emoji, counts twice), so that is what strict mode enforces.

The diff is cheap because a fork shares every row list it did not write (writes replace a row's list):
only rows that are not the very same object as before are looked at.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

from .model import Protection, Row, Sheet, SheetsError, Spreadsheet

__all__ = [
    "MAX_CELL_CHARS",
    "PROTECTED_MESSAGE",
    "can_edit",
    "check_change",
    "utf16_length",
]

MAX_CELL_CHARS: Final = 50_000
PROTECTED_MESSAGE: Final = (
    "You are trying to edit a protected cell or object. Please contact the spreadsheet owner to remove "
    "protection if you need to edit."
)
TOO_LONG_MESSAGE: Final = (
    f"Your input contains more than the maximum of {MAX_CELL_CHARS} characters in a single cell."
)


def utf16_length(text: str) -> int:
    """The length of ``text`` in UTF-16 code units (characters beyond U+FFFF count twice)."""
    return len(text.encode("utf-16-le")) // 2


def can_edit(protection: Protection, caller: str) -> bool:
    """Whether ``caller`` may change the protected range (an editor of it, or a warning-only range)."""
    return protection.warning_only or caller in protection.editors


def check_change(before: Spreadsheet, after: Spreadsheet, caller: str) -> None:
    """Refuse (SheetsError 400) a change of ``before`` into ``after`` that Google would refuse."""
    previous = {sheet.sheet_id: sheet for sheet in before.sheets}
    remaining = {sheet.sheet_id for sheet in after.sheets}
    for sheet in before.sheets:
        if sheet.sheet_id not in remaining and _locked(sheet.protections, caller):
            raise SheetsError(400, PROTECTED_MESSAGE)
    for sheet in after.sheets:
        old = previous.get(sheet.sheet_id)
        if old is None:
            _check_text(sheet.rows)
            continue
        changed = _changed_rows(old.rows, sheet.rows)
        _check_text(sheet.rows[index] for index in changed)
        for protection in old.protections:
            if can_edit(protection, caller):
                continue
            if protection.whole_sheet and _structure_changed(old, sheet):
                raise SheetsError(400, PROTECTED_MESSAGE)
            if _area_changed(protection, old.rows, sheet.rows, changed):
                raise SheetsError(400, PROTECTED_MESSAGE)


def _locked(protections: Iterable[Protection], caller: str) -> bool:
    """Whether a whole-sheet protection keeps ``caller`` from deleting the sheet."""
    return any(p.whole_sheet and not can_edit(p, caller) for p in protections)


def _changed_rows(before: Sequence[Row], after: Sequence[Row]) -> list[int]:
    """Indexes of rows of ``after`` that are not the same stored row as at that index before."""
    return [
        index
        for index, row in enumerate(after)
        if index >= len(before) or (row is not before[index] and row != before[index])
    ]


def _structure_changed(before: Sheet, after: Sheet) -> bool:
    return (before.title, before.row_count, before.column_count, len(before.rows)) != (
        after.title,
        after.row_count,
        after.column_count,
        len(after.rows),
    )


def _area_changed(
    protection: Protection, before: Sequence[Row], after: Sequence[Row], changed: Iterable[int]
) -> bool:
    """Whether a cell inside the protected rectangle differs between ``before`` and ``after``."""
    end_row = protection.end_row
    rows = [i for i in changed if i >= protection.start_row and (end_row is None or i < end_row)]
    # Rows that were removed from the end count as changed too.
    last = len(before) if end_row is None else min(len(before), end_row)
    rows += [i for i in range(max(len(after), protection.start_row), last)]
    left, right = protection.start_col, protection.end_col
    for index in rows:
        old = before[index][left:right] if index < len(before) else []
        new = after[index][left:right] if index < len(after) else []
        if _trimmed(old) != _trimmed(new):
            return True
    return False


def _trimmed(cells: Row) -> Row:
    end = len(cells)
    while end and cells[end - 1] is None:
        end -= 1
    return cells[:end]


def _check_text(rows: Iterable[Row]) -> None:
    for row in rows:
        for cell in row:
            if (
                isinstance(cell, str)
                and len(cell) > MAX_CELL_CHARS // 2
                and utf16_length(cell) > MAX_CELL_CHARS
            ):
                raise SheetsError(400, TOO_LONG_MESSAGE)
