"""Saving and loading the local server's spreadsheets as one JSON file, written atomically.

The file is replaced whole (write to a temporary file in the same directory, fsync, rename, fsync the
directory), so a crash leaves either the old or the new state, never a torn one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

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
    """The whole data file."""

    version: int = 1
    spreadsheets: list[SpreadsheetRecord] = msgspec.field(default_factory=list)


_DECODER = msgspec.json.Decoder(StateRecord)


class StoreError(Exception):
    """A data file that cannot be read."""


def to_record(spreadsheets: list[Spreadsheet]) -> StateRecord:
    """Convert live spreadsheets to their stored form."""
    return StateRecord(
        spreadsheets=[
            SpreadsheetRecord(
                spreadsheet_id=s.spreadsheet_id,
                title=s.title,
                locale=s.locale,
                time_zone=s.time_zone,
                sheets=[
                    SheetRecord(
                        sheet_id=sh.sheet_id,
                        title=sh.title,
                        row_count=sh.row_count,
                        column_count=sh.column_count,
                        frozen_rows=sh.frozen_rows,
                        frozen_columns=sh.frozen_columns,
                        hidden=sh.hidden,
                        rows=list(sh.rows),
                        protections=list(sh.protections),
                    )
                    for sh in s.sheets
                ],
            )
            for s in spreadsheets
        ]
    )


def from_record(record: StateRecord) -> list[Spreadsheet]:
    """Rebuild live spreadsheets from their stored form."""
    return [
        Spreadsheet(
            spreadsheet_id=s.spreadsheet_id,
            title=s.title,
            locale=s.locale,
            time_zone=s.time_zone,
            sheets=[
                Sheet(
                    sheet_id=sh.sheet_id,
                    title=sh.title,
                    row_count=sh.row_count,
                    column_count=sh.column_count,
                    frozen_rows=sh.frozen_rows,
                    frozen_columns=sh.frozen_columns,
                    hidden=sh.hidden,
                    rows=sh.rows,
                    protections=sh.protections,
                )
                for sh in s.sheets
            ],
        )
        for s in record.spreadsheets
    ]


def load(path: Path) -> list[Spreadsheet]:
    """Read the data file; a missing file is an empty state."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    try:
        return from_record(_DECODER.decode(data))
    except msgspec.DecodeError as exc:
        raise StoreError(f"{path}: not a local-sheets data file ({exc})") from exc


def save(path: Path, spreadsheets: list[Spreadsheet]) -> None:
    """Write the data file atomically and durably."""
    data = msgspec.json.encode(to_record(spreadsheets))
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
