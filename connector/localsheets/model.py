"""The in-memory grid: spreadsheets, sheets and cells, with the value semantics of Google Sheets.

A sheet keeps a list of rows, each a list of cells trimmed of nothing in particular: a missing or ``None``
cell is empty. The grid size (``row_count`` x ``column_count``) is separate from the stored rows, as in
Google, where a 1000-row sheet with three filled rows stores three rows. Writes replace a row's list
instead of mutating it, so :meth:`Spreadsheet.fork` (a shallow copy of the row lists) is a cheap snapshot:
a batch of requests runs against a fork and is committed only if every request succeeds.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal

import msgspec

DEFAULT_ROWS: Final = 1000
DEFAULT_COLUMNS: Final = 26
# Google's documented ceiling is 10 million cells per spreadsheet.
MAX_CELLS: Final = 10_000_000

ValueInputOption = Literal["RAW", "USER_ENTERED"]
ValueRenderOption = Literal["FORMATTED_VALUE", "UNFORMATTED_VALUE", "FORMULA"]

_STATUS_BY_CODE: Final = {
    400: "INVALID_ARGUMENT",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


class SheetsError(Exception):
    """An error the API answers with: HTTP code, Google's status name and a message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = _STATUS_BY_CODE.get(code, "UNKNOWN")

    def body(self) -> dict[str, Any]:
        """The JSON error body Google sends."""
        return {"error": {"code": self.code, "message": self.message, "status": self.status}}


def invalid(message: str) -> SheetsError:
    """A 400 INVALID_ARGUMENT error."""
    return SheetsError(400, message)


class Formula(msgspec.Struct, frozen=True):
    """A formula cell; never evaluated, so every render option shows its text."""

    text: str


Cell = str | int | float | bool | Formula
Row = list[Cell | None]


class Skip:
    """Marks a cell a write leaves as it is (a JSON ``null`` in a values update)."""

    _instance: Skip | None = None

    def __new__(cls) -> Skip:
        """Return the one instance."""
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance


SKIP: Final = Skip()
WriteCell = Cell | None | Skip

# USER_ENTERED number syntax: sign, digits with optional thousands commas, decimals, exponent, percent.
_NUMBER_RE: Final = re.compile(r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?(?:[eE][+-]?\d+)?%?")


def number(value: float) -> int | float:
    """A double as Google returns it unformatted: whole values as integers."""
    if math.isfinite(value) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def parse_user_entered(value: Any) -> Cell | None:
    """Interpret one value the way Sheets does under USER_ENTERED (formulas, numbers, booleans, ``'`` text)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return number(float(value))
    text = str(value)
    if text == "":
        return None
    if text.startswith("="):
        return Formula(text)
    if text.startswith("'"):
        return text[1:] or None
    stripped = text.strip()
    if stripped.upper() in ("TRUE", "FALSE"):
        return stripped.upper() == "TRUE"
    if any(ch.isdigit() for ch in stripped) and _NUMBER_RE.fullmatch(stripped):
        percent = stripped.endswith("%")
        parsed = float(stripped.rstrip("%").replace(",", ""))
        return number(parsed / 100 if percent else parsed)
    return text


def parse_raw(value: Any) -> Cell | None:
    """Store one value as given (RAW): strings stay strings even when they start with ``=``."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return number(float(value))
    text = str(value)
    return text if text else None


def parse_input(value: Any, option: ValueInputOption) -> WriteCell:
    """Turn one JSON value of a values write into a stored cell; ``null`` leaves the cell alone."""
    if value is None:
        return SKIP
    if isinstance(value, dict | list):
        raise invalid(f"Invalid values: expected a string, number or boolean, got {type(value).__name__}")
    return parse_user_entered(value) if option == "USER_ENTERED" else parse_raw(value)


def format_number(value: int | float) -> str:
    """Render a number the way the automatic number format shows it (no locale grouping)."""
    if isinstance(value, int):
        return str(value)
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    text = f"{value:.15g}"
    return text.replace("e+", "E+").replace("e-", "E-")


def render(cell: Cell | None, option: ValueRenderOption) -> str | int | float | bool:
    """One stored cell as a values read returns it; empty cells are ``""``."""
    if cell is None:
        return ""
    if isinstance(cell, Formula):
        return cell.text
    if option == "FORMATTED_VALUE":
        if isinstance(cell, bool):
            return "TRUE" if cell else "FALSE"
        if isinstance(cell, int | float):
            return format_number(cell)
    return cell


def extended_value(cell: Cell | None) -> dict[str, Any]:
    """A cell as Google's ExtendedValue object (``{}`` for an empty cell)."""
    if cell is None:
        return {}
    if isinstance(cell, Formula):
        return {"formulaValue": cell.text}
    if isinstance(cell, bool):
        return {"boolValue": cell}
    if isinstance(cell, int | float):
        return {"numberValue": cell}
    return {"stringValue": cell}


def parse_extended_value(value: Any) -> Cell | None:
    """Read an ExtendedValue (``stringValue``, ``numberValue``, ``boolValue``, ``formulaValue``)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise invalid("Invalid value at 'userEnteredValue': expected an ExtendedValue object")
    known = {"stringValue", "numberValue", "boolValue", "formulaValue", "errorValue"}
    unknown = set(value) - known
    if unknown:
        raise invalid(
            f"Invalid JSON payload received. Unknown name {sorted(unknown)[0]!r} at 'userEnteredValue'"
        )
    if len(value) > 1:
        raise invalid("Invalid value at 'userEnteredValue': only one kind of value may be set")
    if "stringValue" in value:
        text = value["stringValue"]
        if not isinstance(text, str):
            raise invalid("Invalid value at 'userEnteredValue.stringValue': expected a string")
        return text or None
    if "numberValue" in value:
        num = value["numberValue"]
        if isinstance(num, bool) or not isinstance(num, int | float):
            raise invalid("Invalid value at 'userEnteredValue.numberValue': expected a number")
        return number(float(num))
    if "boolValue" in value:
        flag = value["boolValue"]
        if not isinstance(flag, bool):
            raise invalid("Invalid value at 'userEnteredValue.boolValue': expected a boolean")
        return flag
    if "formulaValue" in value:
        formula = value["formulaValue"]
        if not isinstance(formula, str) or not formula.startswith("="):
            raise invalid("Invalid value at 'userEnteredValue.formulaValue': a formula starts with '='")
        return Formula(formula)
    if "errorValue" in value:
        raise invalid("Invalid value at 'userEnteredValue.errorValue': error values cannot be written")
    return None


class ProtectedArea(msgspec.Struct, frozen=True, kw_only=True):
    """What a protected range covers and who may edit it (Google's ProtectedRange, without its id).

    Rows and columns are 0-based and half-open; ``None`` on an end runs to the edge of the grid, so a range
    with no bounds at all protects the whole sheet. ``editors`` are the identities allowed to edit it.
    """

    start_row: int = 0
    end_row: int | None = None
    start_col: int = 0
    end_col: int | None = None
    editors: tuple[str, ...] = ()
    warning_only: bool = False
    description: str = ""

    @property
    def whole_sheet(self) -> bool:
        """Whether the range is the whole sheet (its structure is protected too)."""
        return (self.start_row, self.end_row, self.start_col, self.end_col) == (0, None, 0, None)


class Protection(ProtectedArea, frozen=True, kw_only=True):
    """A protected range of a sheet, with its id; stored as it is in the data file."""

    protected_range_id: int


@dataclass(slots=True)
class Sheet:
    """One worksheet: its properties and its stored rows."""

    sheet_id: int
    title: str
    row_count: int = DEFAULT_ROWS
    column_count: int = DEFAULT_COLUMNS
    frozen_rows: int = 0
    frozen_columns: int = 0
    hidden: bool = False
    rows: list[Row] = field(default_factory=list)
    protections: list[Protection] = field(default_factory=list)

    def fork(self) -> Sheet:
        """A snapshot sharing row lists; safe because writes replace rows instead of mutating them."""
        return replace(self, rows=list(self.rows), protections=list(self.protections))

    def last_data_row(self, start_col: int = 0, end_col: int | None = None) -> int:
        """One past the index of the last row holding a value in the given columns (0: no data)."""
        for index in range(len(self.rows) - 1, -1, -1):
            row = self.rows[index]
            window = row[start_col:end_col]
            if any(cell is not None for cell in window):
                return index + 1
        return 0

    def last_data_column(self) -> int:
        """One past the index of the last column holding a value anywhere (0: no data)."""
        width = 0
        for row in self.rows:
            for index in range(len(row) - 1, width - 1, -1):
                if row[index] is not None:
                    width = index + 1
                    break
        return width

    def read(self, start_row: int, end_row: int, start_col: int, end_col: int) -> list[Row]:
        """The cells of a rectangle (already clamped to the grid), row by row, untrimmed."""
        stop = min(end_row, len(self.rows))
        width = end_col - start_col
        out: list[Row] = []
        for index in range(start_row, stop):
            piece = self.rows[index][start_col:end_col]
            if len(piece) < width:
                piece = piece + [None] * (width - len(piece))
            out.append(piece)
        return out

    def write(self, start_row: int, start_col: int, values: Sequence[Sequence[WriteCell]]) -> None:
        """Write rows of cells at a position inside the grid (bounds are the caller's check)."""
        needed = start_row + len(values)
        if needed > len(self.rows):
            self.rows.extend([] for _ in range(needed - len(self.rows)))
        for offset, cells in enumerate(values):
            if not cells:
                continue
            index = start_row + offset
            row = list(self.rows[index])
            end = start_col + len(cells)
            if end > len(row):
                row.extend([None] * (end - len(row)))
            for col, cell in enumerate(cells, start_col):
                if not isinstance(cell, Skip):
                    row[col] = cell
            self.rows[index] = _trim(row)

    def clear(self, start_row: int, end_row: int, start_col: int, end_col: int) -> None:
        """Empty every cell of a rectangle (clamped to the grid)."""
        for index in range(start_row, min(end_row, len(self.rows))):
            row = self.rows[index]
            if len(row) <= start_col:
                continue
            cleared = list(row)
            for col in range(start_col, min(end_col, len(cleared))):
                cleared[col] = None
            self.rows[index] = _trim(cleared)

    def insert_rows(self, at: int, count: int) -> None:
        """Insert empty rows before row ``at``, growing the grid."""
        if at < len(self.rows):
            self.rows[at:at] = [[] for _ in range(count)]
        self.row_count += count

    def delete_rows(self, start: int, end: int) -> None:
        """Delete rows ``[start, end)``, shrinking the grid."""
        del self.rows[start:end]
        self.row_count -= end - start

    def insert_columns(self, at: int, count: int) -> None:
        """Insert empty columns before column ``at``, growing the grid."""
        self.rows = [row[:at] + [None] * count + row[at:] if len(row) > at else row for row in self.rows]
        self.column_count += count

    def delete_columns(self, start: int, end: int) -> None:
        """Delete columns ``[start, end)``, shrinking the grid."""
        self.rows = [_trim(row[:start] + row[end:]) if len(row) > start else row for row in self.rows]
        self.column_count -= end - start

    def resize(self, row_count: int, column_count: int) -> None:
        """Set the grid size; cells outside the new grid are dropped, as Google drops them."""
        if row_count < len(self.rows):
            del self.rows[row_count:]
        if column_count < self.column_count:
            self.rows = [_trim(row[:column_count]) if len(row) > column_count else row for row in self.rows]
        self.row_count = row_count
        self.column_count = column_count

    def formula_count(self) -> int:
        """How many cells hold a formula."""
        return sum(1 for row in self.rows for cell in row if isinstance(cell, Formula))

    def cell_count(self) -> int:
        """The number of cells in the grid."""
        return self.row_count * self.column_count


def _trim(row: Row) -> Row:
    """Drop trailing empty cells so stored rows stay short."""
    end = len(row)
    while end and row[end - 1] is None:
        end -= 1
    return row if end == len(row) else row[:end]


@dataclass(slots=True)
class Spreadsheet:
    """A spreadsheet: id, properties and its sheets in tab order."""

    spreadsheet_id: str
    title: str
    sheets: list[Sheet]
    locale: str = "en_US"
    time_zone: str = "Etc/GMT"

    def fork(self) -> Spreadsheet:
        """A snapshot to run a batch against; commit it by replacing the original."""
        return replace(self, sheets=[sheet.fork() for sheet in self.sheets])

    def sheet_by_title(self, title: str) -> Sheet | None:
        """The sheet with this title; Google compares titles case-insensitively."""
        folded = title.casefold()
        return next((s for s in self.sheets if s.title.casefold() == folded), None)

    def sheet_by_id(self, sheet_id: int) -> Sheet | None:
        """The sheet with this id."""
        return next((s for s in self.sheets if s.sheet_id == sheet_id), None)

    def first_visible(self) -> Sheet:
        """The sheet a range without a sheet name refers to."""
        return next((s for s in self.sheets if not s.hidden), self.sheets[0])

    def formula_count(self) -> int:
        """How many cells of all sheets hold a formula."""
        return sum(sheet.formula_count() for sheet in self.sheets)

    def cell_count(self) -> int:
        """Cells in all grids, the figure Google's 10-million-cell limit applies to."""
        return sum(sheet.cell_count() for sheet in self.sheets)

    def new_sheet_id(self, seed: int) -> int:
        """A free sheet id derived from ``seed`` (Google's are random non-negative 31-bit integers)."""
        taken = {s.sheet_id for s in self.sheets}
        candidate = seed & 0x7FFFFFFF
        while candidate in taken:
            candidate = (candidate * 1103515245 + 12345) & 0x7FFFFFFF
        return candidate

    def default_sheet_title(self) -> str:
        """The next free ``SheetN`` title."""
        n = len(self.sheets) + 1
        while self.sheet_by_title(f"Sheet{n}") is not None:
            n += 1
        return f"Sheet{n}"


def transpose(rows: Iterable[Sequence[Any]], fill: Any = None) -> list[list[Any]]:
    """Swap rows and columns, padding short rows with ``fill`` (for majorDimension=COLUMNS)."""
    materialised = [list(r) for r in rows]
    width = max((len(r) for r in materialised), default=0)
    return [[r[c] if c < len(r) else fill for r in materialised] for c in range(width)]
