"""A1 notation: splitting a range into sheet name and cell part, and writing ranges back out.

Google accepts ``Sheet1!A1:C3``, ``'My Sheet'!A:A`` (quotes doubled inside), whole columns ``A:B``, whole
rows ``1:2``, open ends ``A5:B`` and a bare sheet name. The cell part is parsed by gspread's own
``a1_range_to_grid_range`` so the server and the client agree on what a label means.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gspread.exceptions import IncorrectCellLabel
from gspread.utils import a1_range_to_grid_range, rowcol_to_a1

# Titles Google writes without quotes in the ranges it returns; anything else is quoted.
_PLAIN_TITLE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# A title that reads like a cell or column label (``A1``, ``AB``) must be quoted to stay unambiguous.
_LOOKS_LIKE_CELL_RE = re.compile(r"[A-Za-z]{1,3}[0-9]*|[Rr][0-9]+[Cc][0-9]+")


class RangeSyntaxError(ValueError):
    """A range string that is not valid A1 notation."""


@dataclass(frozen=True, slots=True)
class Bounds:
    """A rectangle of cells, 0-based and half-open; ``None`` on an end means "to the edge of the grid"."""

    start_row: int = 0
    end_row: int | None = None
    start_col: int = 0
    end_col: int | None = None

    def clamp(self, row_count: int, column_count: int) -> Area:
        """The same rectangle cut to a grid of the given size."""
        end_row = row_count if self.end_row is None else min(self.end_row, row_count)
        end_col = column_count if self.end_col is None else min(self.end_col, column_count)
        return Area(
            self.start_row, max(end_row, self.start_row), self.start_col, max(end_col, self.start_col)
        )

    @property
    def is_single_cell(self) -> bool:
        """Whether the rectangle is exactly one cell."""
        return self.end_row == self.start_row + 1 and self.end_col == self.start_col + 1


@dataclass(frozen=True, slots=True)
class Area:
    """A closed rectangle of cells, 0-based and half-open on both axes."""

    start_row: int
    end_row: int
    start_col: int
    end_col: int


@dataclass(frozen=True, slots=True)
class ParsedRange:
    """A range split into its sheet title (``None``: none given) and its cell part (``None``: whole sheet)."""

    sheet: str | None
    cells: str | None


def split_range(text: str) -> ParsedRange:
    """Split ``'My Sheet'!A1:B2`` into the unquoted sheet title and the cell part."""
    text = text.strip()
    if not text:
        raise RangeSyntaxError(text)
    if text.startswith("'"):
        title, rest = _read_quoted(text)
        if not rest:
            return ParsedRange(title, None)
        if not rest.startswith("!") or len(rest) == 1:
            raise RangeSyntaxError(text)
        return ParsedRange(title, rest[1:])
    if "!" in text:
        title, _, cells = text.rpartition("!")
        if not title or not cells:
            raise RangeSyntaxError(text)
        return ParsedRange(title, cells)
    return ParsedRange(None, text)


def _read_quoted(text: str) -> tuple[str, str]:
    """Read a single-quoted title (``''`` is a quote inside) and return it with the text after it."""
    chars: list[str] = []
    i = 1
    while i < len(text):
        if text[i] == "'":
            if i + 1 < len(text) and text[i + 1] == "'":
                chars.append("'")
                i += 2
                continue
            return "".join(chars), text[i + 1 :]
        chars.append(text[i])
        i += 1
    raise RangeSyntaxError(text)


def parse_cells(cells: str) -> Bounds:
    """Parse the cell part of a range (``A1:C3``, ``A:B``, ``2:5``, ``B7``) into bounds."""
    if cells.count(":") > 1 or "$" in cells or cells.startswith(":") or cells.endswith(":"):
        raise RangeSyntaxError(cells)
    try:
        grid = a1_range_to_grid_range(cells)
    except IncorrectCellLabel as exc:
        raise RangeSyntaxError(cells) from exc
    if not grid:
        raise RangeSyntaxError(cells)
    return Bounds(
        start_row=grid.get("startRowIndex", 0),
        end_row=grid.get("endRowIndex"),
        start_col=grid.get("startColumnIndex", 0),
        end_col=grid.get("endColumnIndex"),
    )


def is_cell_part(text: str) -> bool:
    """Whether a string without a sheet name parses as a cell part."""
    try:
        parse_cells(text)
    except RangeSyntaxError:
        return False
    return True


def quote_title(title: str) -> str:
    """A sheet title as Google writes it in returned ranges: plain when safe, else single-quoted."""
    if _PLAIN_TITLE_RE.fullmatch(title) and not _LOOKS_LIKE_CELL_RE.fullmatch(title):
        return title
    return "'" + title.replace("'", "''") + "'"


def column_letter(index: int) -> str:
    """The letters of a 0-based column index (``0`` -> ``A``, ``26`` -> ``AA``)."""
    return rowcol_to_a1(1, index + 1)[:-1]


def format_range(title: str, bounds: Area, always_quote: bool = False) -> str:
    """Write an area as ``Title!A1:C3`` (a single cell as ``Title!B2``)."""
    first = rowcol_to_a1(bounds.start_row + 1, bounds.start_col + 1)
    last_row = max(bounds.end_row, bounds.start_row + 1)
    last_col = max(bounds.end_col, bounds.start_col + 1)
    last = rowcol_to_a1(last_row, last_col)
    cells = first if first == last else f"{first}:{last}"
    sheet = "'" + title.replace("'", "''") + "'" if always_quote else quote_title(title)
    return f"{sheet}!{cells}"
