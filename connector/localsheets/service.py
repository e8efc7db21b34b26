"""The local server's state: spreadsheets, request counts and fault settings, with commit and persistence.

Every change runs against a fork of the spreadsheet and replaces the original only when it succeeds, then
the data file (if any) is saved before the answer goes out, so an answered write survives a restart.
All methods run on the server's event loop thread; nothing here is shared across threads.
"""

from __future__ import annotations

import random
import secrets
import string
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

import msgspec

from . import api, store
from .faults import FaultSettings, FaultState
from .model import Sheet, SheetsError, Spreadsheet, parse_input

T = TypeVar("T")

_ID_ALPHABET = string.ascii_letters + string.digits + "-_"


class SheetSpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A sheet to create through the admin route; the grid grows to fit ``values``."""

    title: str
    rows: int = 1000
    columns: int = 26
    sheet_id: int | None = None
    values: list[list[str | int | float | bool | None]] = msgspec.field(default_factory=list)
    value_input: Literal["RAW", "USER_ENTERED"] = "RAW"
    frozen_rows: int = 0


def _default_sheets() -> list[SheetSpec]:
    return [SheetSpec(title="Sheet1", sheet_id=0)]


class SpreadsheetSpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A spreadsheet to create (or replace) with a chosen id through the admin route."""

    title: str = "Untitled spreadsheet"
    sheets: list[SheetSpec] = msgspec.field(default_factory=_default_sheets)
    locale: str = "en_US"
    time_zone: str = "Etc/GMT"


class LocalSheetsService:
    """Holds the spreadsheets and the test controls of one local Sheets server."""

    def __init__(
        self, data_path: Path | None = None, seed: int | None = None, admin_secret: str | None = None
    ) -> None:
        self.data_path = data_path
        # Needed by the admin routes (see guard); made here unless the starting process chose one.
        self.admin_secret = admin_secret or secrets.token_urlsafe(32)
        self.rng = random.Random(seed)  # noqa: S311 - reproducible ids, not secrets
        self.counts: Counter[str] = Counter()
        self.faults = FaultState()
        loaded = store.load(data_path) if data_path is not None else []
        self.spreadsheets: dict[str, Spreadsheet] = {s.spreadsheet_id: s for s in loaded}

    # ------------------------------------------------------------ API side

    def get(self, spreadsheet_id: str) -> Spreadsheet:
        """The spreadsheet with this id, or Google's 404."""
        found = self.spreadsheets.get(spreadsheet_id)
        if found is None:
            raise api.not_found()
        return found

    def mutate(self, spreadsheet_id: str, change: Callable[[Spreadsheet], T]) -> T:
        """Apply a change to a fork of the spreadsheet; commit and save only if it succeeds."""
        work = self.get(spreadsheet_id).fork()
        result = change(work)
        self.spreadsheets[spreadsheet_id] = work
        self.persist()
        return result

    def create(self, body: dict[str, Any]) -> Spreadsheet:
        """``spreadsheets.create``: a new spreadsheet under a fresh random id (a given id is ignored)."""
        spreadsheet_id = self.new_id()
        spreadsheet = api.new_spreadsheet(spreadsheet_id, body, self.rng)
        self.spreadsheets[spreadsheet_id] = spreadsheet
        self.persist()
        return spreadsheet

    def new_id(self) -> str:
        """A spreadsheet id shaped like Google's (44 URL-safe characters)."""
        while True:
            candidate = "".join(self.rng.choice(_ID_ALPHABET) for _ in range(44))
            if candidate not in self.spreadsheets:
                return candidate

    def persist(self) -> None:
        """Save every spreadsheet to the data file, when there is one."""
        if self.data_path is not None:
            store.save(self.data_path, list(self.spreadsheets.values()))

    # ------------------------------------------------------------ admin side

    def put_spreadsheet(self, spreadsheet_id: str, spec: SpreadsheetSpec) -> Spreadsheet:
        """Create or replace a spreadsheet with a chosen id, its sheets and their values."""
        if not spec.sheets:
            raise SheetsError(400, "A spreadsheet needs at least one sheet.")
        spreadsheet = Spreadsheet(
            spreadsheet_id=spreadsheet_id,
            title=spec.title,
            sheets=[],
            locale=spec.locale,
            time_zone=spec.time_zone,
        )
        for sheet_spec in spec.sheets:
            if spreadsheet.sheet_by_title(sheet_spec.title) is not None:
                raise SheetsError(400, f'A sheet with the name "{sheet_spec.title}" already exists.')
            if sheet_spec.sheet_id is not None and spreadsheet.sheet_by_id(sheet_spec.sheet_id) is not None:
                raise SheetsError(400, f"Sheet id {sheet_spec.sheet_id} is used twice.")
            spreadsheet.sheets.append(_build_sheet(spreadsheet, sheet_spec, self.rng))
        self.spreadsheets[spreadsheet_id] = spreadsheet
        self.persist()
        return spreadsheet

    def delete_spreadsheet(self, spreadsheet_id: str) -> None:
        """Forget a spreadsheet (404 when unknown)."""
        self.get(spreadsheet_id)
        del self.spreadsheets[spreadsheet_id]
        self.persist()

    def reset(self) -> None:
        """Forget every spreadsheet, count and fault setting."""
        self.spreadsheets.clear()
        self.counts.clear()
        self.faults = FaultState()
        self.persist()

    def set_faults(self, settings: FaultSettings) -> None:
        """Replace the fault settings (and restart their generator)."""
        self.faults.configure(settings)

    def stats(self, spreadsheet_id: str) -> dict[str, Any]:
        """Formula-cell and size figures of a spreadsheet and of each of its sheets."""
        spreadsheet = self.get(spreadsheet_id)
        return {
            "spreadsheetId": spreadsheet_id,
            "title": spreadsheet.title,
            "formulaCells": spreadsheet.formula_count(),
            "sheets": [
                {
                    "sheetId": sheet.sheet_id,
                    "title": sheet.title,
                    "rowCount": sheet.row_count,
                    "columnCount": sheet.column_count,
                    "dataRows": sheet.last_data_row(),
                    "formulaCells": sheet.formula_count(),
                }
                for sheet in spreadsheet.sheets
            ],
        }

    def sheet_dump(self, spreadsheet_id: str, title: str) -> dict[str, Any]:
        """Every value of one sheet (unformatted; formulas as text) with its grid size."""
        spreadsheet = self.get(spreadsheet_id)
        sheet = spreadsheet.sheet_by_title(title)
        if sheet is None:
            raise SheetsError(404, f"No sheet titled {title!r} in spreadsheet {spreadsheet_id!r}.")
        return {
            "sheetId": sheet.sheet_id,
            "title": sheet.title,
            "rowCount": sheet.row_count,
            "columnCount": sheet.column_count,
            "formulaCells": sheet.formula_count(),
            "values": api.sheet_values(sheet),
        }


def _build_sheet(spreadsheet: Spreadsheet, spec: SheetSpec, rng: random.Random) -> Sheet:
    cells = [[parse_input(value, spec.value_input) for value in row] for row in spec.values]
    width = max((len(row) for row in cells), default=0)
    sheet = Sheet(
        sheet_id=spec.sheet_id
        if spec.sheet_id is not None
        else spreadsheet.new_sheet_id(rng.getrandbits(31)),
        title=spec.title,
        row_count=max(spec.rows, len(cells), 1),
        column_count=max(spec.columns, width, 1),
        frozen_rows=spec.frozen_rows,
    )
    sheet.write(0, 0, cells)
    return sheet
