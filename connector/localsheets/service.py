"""The local server's state: spreadsheets, request counts and fault settings, with commit and persistence.

Every change runs against a fork of the spreadsheet (cheap: it shares the row lists, see ``model``) and
replaces the original only when it succeeds. With a data file, an API write is journaled (fsynced) before
the answer goes out, so an answered write survives a crash; admin changes and compaction write the whole
snapshot (see ``store``).
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
from .model import ProtectedArea, Protection, Sheet, SheetsError, Spreadsheet, parse_input
from .quota import QuotaState
from .strict import check_change
from .token import AuthSettings

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


class ProtectSpec(ProtectedArea, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A range the owner protects through the admin route, on the sheet titled ``sheet``."""

    sheet: str


# Who API requests come from: the one caller of the local server (the connector's service account).
API_CALLER = "api-caller"


class LocalSheetsService:
    """Holds the spreadsheets and the test controls of one local Sheets server.

    ``strict`` adds the checks of :mod:`connector.localsheets.strict` (protected ranges, cell size) to
    every change; the permissive default accepts them.
    """

    def __init__(
        self,
        data_path: Path | None = None,
        seed: int | None = None,
        *,
        strict: bool = False,
        admin_secret: str | None = None,
    ) -> None:
        # Needed by the admin routes (see guard); made here unless the starting process chose one.
        self.admin_secret = admin_secret or secrets.token_urlsafe(32)
        self.strict = strict
        self.caller = API_CALLER
        self.rng = random.Random(seed)  # noqa: S311 - reproducible ids, not secrets
        self.counts: Counter[str] = Counter()
        self.faults = FaultState()
        self.quota = QuotaState()
        self.auth = AuthSettings()
        self.data = store.DataFile(data_path) if data_path is not None else None
        loaded = self.data.load() if self.data is not None else []
        self.spreadsheets: dict[str, Spreadsheet] = {s.spreadsheet_id: s for s in loaded}

    # ------------------------------------------------------------ API side

    def get(self, spreadsheet_id: str) -> Spreadsheet:
        """The spreadsheet with this id, or Google's 404."""
        found = self.spreadsheets.get(spreadsheet_id)
        if found is None:
            raise api.not_found()
        return found

    def mutate(self, spreadsheet_id: str, change: Callable[[Spreadsheet], T]) -> T:
        """Apply a change to a fork of the spreadsheet; journal and commit it only if it succeeds."""
        original = self.get(spreadsheet_id)
        work = original.fork()
        result = change(work)
        if self.strict:
            check_change(original, work, self.caller)
        compact = self.data is not None and self.data.append(store.change_of(original, work))
        self.spreadsheets[spreadsheet_id] = work
        if compact:
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
        """Save every spreadsheet to a new snapshot of the data file (and start its journal afresh)."""
        if self.data is not None:
            self.data.save(list(self.spreadsheets.values()))

    def close(self) -> None:
        """Compact the journal into the data file; call it once the server has stopped."""
        if self.data is not None:
            self.persist()
            self.data.close()

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
        """Forget every spreadsheet, count, fault, quota and sign-in setting."""
        self.spreadsheets.clear()
        self.counts.clear()
        self.faults = FaultState()
        self.quota = QuotaState()
        self.auth = AuthSettings()
        self.persist()

    def protect(self, spreadsheet_id: str, spec: ProtectSpec) -> Protection:
        """Protect a range as the spreadsheet's owner; only ``spec.editors`` may then change it."""
        spreadsheet = self.get(spreadsheet_id)
        sheet = spreadsheet.sheet_by_title(spec.sheet)
        if sheet is None:
            raise SheetsError(404, f"No sheet titled {spec.sheet!r} in spreadsheet {spreadsheet_id!r}.")
        ends = [end for end in (spec.end_row, spec.end_col) if end is not None]
        if spec.start_row < 0 or spec.start_col < 0 or any(end < 1 for end in ends):
            raise SheetsError(400, "A protected range needs non-negative indexes and a non-empty size.")
        taken = {p.protected_range_id for s in spreadsheet.sheets for p in s.protections}
        protected_range_id = self.rng.getrandbits(31)
        while protected_range_id in taken:
            protected_range_id = self.rng.getrandbits(31)
        area = {name: value for name, value in msgspec.structs.asdict(spec).items() if name != "sheet"}
        protection = Protection(protected_range_id=protected_range_id, **area)
        sheet.protections.append(protection)
        self.persist()
        return protection

    def unprotect(self, spreadsheet_id: str, protected_range_id: int) -> None:
        """Remove a protected range (404 when the spreadsheet has none with this id)."""
        for sheet in self.get(spreadsheet_id).sheets:
            kept = [p for p in sheet.protections if p.protected_range_id != protected_range_id]
            if len(kept) != len(sheet.protections):
                sheet.protections = kept
                self.persist()
                return
        raise SheetsError(404, f"No protected range {protected_range_id} in spreadsheet {spreadsheet_id!r}.")

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
