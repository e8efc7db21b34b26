"""Saving and loading the local server's spreadsheets: a snapshot file and a journal of changes.

The snapshot (the data file, ``sheets.json``) is one JSON document, replaced whole: written to a temporary
file in the same directory, fsynced, renamed over the old one, the directory fsynced; so a crash leaves
either the old or the new one, never a torn one. Writing it takes time in proportion to every cell stored,
so an API write does not rewrite it: it appends what it changed (each sheet's properties and stored-row
count, and the rows it replaced) to the journal beside it (``sheets.json.journal``) as one JSON line,
fsynced before the answer goes out. Loading reads the snapshot, then replays the journal.

When the journal has grown past the snapshot's size, and when the server stops, the state is compacted
into a new snapshot and the journal starts again. The snapshot and the journal carry a generation number:
compaction writes snapshot g+1, then a journal whose first line says g+1. A journal of another generation
than the snapshot's was already folded into it (a crash came between the two steps) and is ignored. A last
line without its newline is a write that never finished, so was never answered: it is dropped.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO

import msgspec

from .model import Formula, Protection, Sheet, Spreadsheet

StoredCell = str | int | float | bool | Formula | None


class SheetRecord(msgspec.Struct, kw_only=True):
    """One sheet as stored on disk."""

    sheet_id: int
    title: str
    row_count: int
    column_count: int
    frozen_rows: int = 0
    frozen_columns: int = 0
    hidden: bool = False
    rows: list[list[StoredCell]] = msgspec.field(default_factory=list)
    protections: list[Protection] = msgspec.field(default_factory=list)


class SpreadsheetRecord(msgspec.Struct, kw_only=True):
    """One spreadsheet as stored on disk."""

    spreadsheet_id: str
    title: str
    locale: str = "en_US"
    time_zone: str = "Etc/GMT"
    sheets: list[SheetRecord] = msgspec.field(default_factory=list)


class StateRecord(msgspec.Struct, kw_only=True):
    """The whole snapshot file; ``generation`` is the journal generation that goes on from it."""

    version: int = 1
    generation: int = 0
    spreadsheets: list[SpreadsheetRecord] = msgspec.field(default_factory=list)


class SheetChange(msgspec.Struct, kw_only=True):
    """One sheet after a change: its properties (``sheet``, rows left out), how many rows it stores, and
    the rows that are new or replaced, by index."""

    sheet: SheetRecord
    length: int
    rows: list[tuple[int, list[StoredCell]]]


class Change(msgspec.Struct, kw_only=True):
    """One journal line: a spreadsheet after a committed API write (its properties, ``sheets`` left out,
    and every sheet in tab order; a sheet not named is gone)."""

    spreadsheet: SpreadsheetRecord
    sheets: list[SheetChange]


class JournalHeader(msgspec.Struct, kw_only=True):
    """The first line of a journal: the snapshot generation it goes on from."""

    generation: int


_DECODER = msgspec.json.Decoder(StateRecord)
_CHANGE_DECODER = msgspec.json.Decoder(Change)
_HEADER_DECODER = msgspec.json.Decoder(JournalHeader)
_ENCODER = msgspec.json.Encoder()
# The journal is compacted once it is larger than the snapshot, and not before it holds this much.
MIN_COMPACT_BYTES = 8 * 1024 * 1024


class StoreError(Exception):
    """A data file that cannot be read."""


# The properties a sheet and a spreadsheet have alike in memory and on disk.
_SHEET_PROPERTIES = (
    "sheet_id",
    "title",
    "row_count",
    "column_count",
    "frozen_rows",
    "frozen_columns",
    "hidden",
)
_SPREADSHEET_PROPERTIES = ("spreadsheet_id", "title", "locale", "time_zone")


def _copied(source: object, names: tuple[str, ...]) -> dict[str, Any]:
    return {name: getattr(source, name) for name in names}


def _sheet_record(sheet: Sheet, rows: list[list[StoredCell]]) -> SheetRecord:
    return SheetRecord(rows=rows, protections=list(sheet.protections), **_copied(sheet, _SHEET_PROPERTIES))


def _spreadsheet_record(spreadsheet: Spreadsheet, sheets: list[SheetRecord]) -> SpreadsheetRecord:
    return SpreadsheetRecord(sheets=sheets, **_copied(spreadsheet, _SPREADSHEET_PROPERTIES))


def _sheet(record: SheetRecord, rows: list[list[StoredCell]]) -> Sheet:
    return Sheet(rows=rows, protections=record.protections, **_copied(record, _SHEET_PROPERTIES))


def _spreadsheet(record: SpreadsheetRecord, sheets: list[Sheet]) -> Spreadsheet:
    return Spreadsheet(sheets=sheets, **_copied(record, _SPREADSHEET_PROPERTIES))


def to_record(spreadsheets: list[Spreadsheet], generation: int = 0) -> StateRecord:
    """Convert live spreadsheets to their stored form."""
    return StateRecord(
        generation=generation,
        spreadsheets=[
            _spreadsheet_record(s, [_sheet_record(sh, list(sh.rows)) for sh in s.sheets])
            for s in spreadsheets
        ],
    )


def from_record(record: StateRecord) -> list[Spreadsheet]:
    """Rebuild live spreadsheets from their stored form."""
    return [_spreadsheet(s, [_sheet(sh, sh.rows) for sh in s.sheets]) for s in record.spreadsheets]


def change_of(before: Spreadsheet | None, after: Spreadsheet) -> Change:
    """What a write changed, as a journal line: rows of ``after`` that are not the very row object stored
    at that index ``before`` (writes replace rows, so an untouched row is the same object)."""
    previous = {sheet.sheet_id: sheet.rows for sheet in before.sheets} if before is not None else {}
    sheets = []
    for sheet in after.sheets:
        old = previous.get(sheet.sheet_id, [])
        # The sheet may store fewer or more rows than before: rows past the old end are all new.
        pairs = enumerate(zip(sheet.rows, old, strict=False))
        rows = [(index, row) for index, (row, was) in pairs if row is not was]
        rows += [(index, sheet.rows[index]) for index in range(len(old), len(sheet.rows))]
        sheets.append(SheetChange(sheet=_sheet_record(sheet, []), length=len(sheet.rows), rows=rows))
    return Change(spreadsheet=_spreadsheet_record(after, []), sheets=sheets)


def apply_change(spreadsheets: dict[str, Spreadsheet], change: Change) -> None:
    """Replay one journal line onto the spreadsheets it was written after."""
    record = change.spreadsheet
    existing = spreadsheets.get(record.spreadsheet_id)
    previous = {sheet.sheet_id: sheet.rows for sheet in existing.sheets} if existing is not None else {}
    sheets = []
    for sheet_change in change.sheets:
        rows = previous.get(sheet_change.sheet.sheet_id, [])[: sheet_change.length]
        rows.extend([] for _ in range(sheet_change.length - len(rows)))
        for index, row in sheet_change.rows:
            rows[index] = row
        sheets.append(_sheet(sheet_change.sheet, rows))
    spreadsheets[record.spreadsheet_id] = _spreadsheet(record, sheets)


def load(path: Path) -> list[Spreadsheet]:
    """Read the data file and replay its journal; a missing file is an empty state."""
    return DataFile(path).load()


def save(path: Path, spreadsheets: list[Spreadsheet], generation: int = 0) -> int:
    """Write the snapshot file atomically and durably; its size in bytes."""
    data = msgspec.json.encode(to_record(spreadsheets, generation))
    _replace(path, data)
    return len(data)


def _replace(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``: temporary file, fsync, rename, fsync of the directory."""
    directory = path.parent if str(path.parent) else Path(".")
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class DataFile:
    """The snapshot and journal of one data path (see the module doc); used from one thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.journal_path = path.with_name(path.name + ".journal")
        self.generation = 0
        self._snapshot_bytes = 0
        # Bytes of the journal that hold its header and whole lines of this generation (None: no such
        # journal, one is started at the first append).
        self._journal_bytes: int | None = None
        self._journal: BinaryIO | None = None

    def load(self) -> list[Spreadsheet]:
        """The spreadsheets the snapshot and the journal hold together."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            data = b""
        try:
            record = _DECODER.decode(data) if data else StateRecord()
        except msgspec.DecodeError as exc:
            raise StoreError(f"{self.path}: not a local-sheets data file ({exc})") from exc
        self.generation, self._snapshot_bytes = record.generation, len(data)
        spreadsheets = {s.spreadsheet_id: s for s in from_record(record)}
        for change in self._read_journal():
            apply_change(spreadsheets, change)
        return list(spreadsheets.values())

    def _read_journal(self) -> list[Change]:
        """The journal's lines of the snapshot's generation (none if it has another one)."""
        try:
            data = self.journal_path.read_bytes()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n") + 1  # what follows the last newline never finished
        lines = data[:end].split(b"\n")[:-1]
        try:
            header = _HEADER_DECODER.decode(lines[0]) if lines else None
        except msgspec.DecodeError as exc:
            raise StoreError(f"{self.journal_path}: not a local-sheets journal ({exc})") from exc
        if header is None or header.generation != self.generation:
            return []
        changes = []
        for number, line in enumerate(lines[1:], start=2):
            try:
                changes.append(_CHANGE_DECODER.decode(line))
            except msgspec.DecodeError as exc:
                raise StoreError(f"{self.journal_path}: line {number} is damaged ({exc})") from exc
        self._journal_bytes = end
        return changes

    def append(self, change: Change) -> bool:
        """Add a change to the journal, durably; whether the journal is now due to be compacted."""
        journal = self._open_journal()
        line = _ENCODER.encode(change) + b"\n"
        try:
            journal.write(line)
            journal.flush()
            os.fdatasync(journal.fileno())
        except BaseException:
            self.close()  # reopened at the next write, cut back to the whole lines (a full disk, say)
            raise
        self._journal_bytes = (self._journal_bytes or 0) + len(line)
        return self._journal_bytes > max(self._snapshot_bytes, MIN_COMPACT_BYTES)

    def save(self, spreadsheets: list[Spreadsheet]) -> None:
        """Compact: write every spreadsheet to a snapshot of the next generation, and start its journal."""
        self.close()
        self._snapshot_bytes = save(self.path, spreadsheets, self.generation + 1)
        self.generation += 1
        self._start_journal()

    def close(self) -> None:
        """Close the journal (nothing is lost: every line was fsynced when written)."""
        journal, self._journal = self._journal, None
        if journal is not None:
            journal.close()

    def _start_journal(self) -> int:
        """Replace the journal with an empty one of this generation; its size."""
        header = _ENCODER.encode(JournalHeader(generation=self.generation)) + b"\n"
        _replace(self.journal_path, header)
        self._journal_bytes = len(header)
        return self._journal_bytes

    def _open_journal(self) -> BinaryIO:
        if self._journal is not None:
            return self._journal
        size = self._start_journal() if self._journal_bytes is None else self._journal_bytes
        journal = self.journal_path.open("r+b")
        journal.truncate(size)  # a torn last line goes
        journal.seek(size)
        self._journal = journal
        return journal
