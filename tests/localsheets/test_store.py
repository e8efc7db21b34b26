"""The data file: a snapshot plus a journal of API writes, replayed at start-up, compacted now and then.

A service made afresh from the data path stands for a server killed with SIGKILL and started again: every
journal line was fsynced before the write returned, and nothing else is kept in memory only.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.localsheets import StoreError, store
from connector.localsheets.guard import ADMIN_SECRET_ENV
from connector.localsheets.model import Formula, Sheet, Spreadsheet
from connector.localsheets.service import LocalSheetsService, SheetSpec, SpreadsheetSpec
from connector.localsheets.testing import LocalSheets

_cells = st.one_of(
    st.none(),
    st.text(max_size=8),
    st.integers(-1000, 1000),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.booleans(),
    st.builds(Formula, st.text(max_size=5).map(lambda t: f"={t}")),
)

# One change of a spreadsheet: what it does to the sheet at an index (taken modulo the sheets there).
_operations = st.one_of(
    st.tuples(
        st.just("write"),
        st.integers(0, 3),
        st.integers(0, 12),
        st.integers(0, 4),
        st.lists(st.lists(_cells, max_size=4), min_size=1, max_size=4),
    ),
    st.tuples(st.just("insert_rows"), st.integers(0, 3), st.integers(0, 12), st.integers(1, 3)),
    st.tuples(st.just("delete_rows"), st.integers(0, 3), st.integers(0, 12), st.integers(1, 3)),
    st.tuples(st.just("insert_columns"), st.integers(0, 3), st.integers(0, 5), st.integers(1, 2)),
    st.tuples(st.just("add_sheet"), st.integers(1, 1000)),
    st.tuples(st.just("delete_sheet"), st.integers(0, 3)),
    st.tuples(st.just("rename"), st.integers(0, 3), st.text(min_size=1, max_size=6)),
    st.tuples(st.just("compact")),
)


def _change(operation: tuple[Any, ...]) -> Any:
    """The mutation an operation makes of a spreadsheet."""
    kind, *args = operation

    def change(spreadsheet: Spreadsheet) -> None:
        if kind == "add_sheet":
            spreadsheet.sheets.append(Sheet(sheet_id=spreadsheet.new_sheet_id(args[0]), title=f"S{args[0]}"))
            return
        sheet = spreadsheet.sheets[args[0] % len(spreadsheet.sheets)]
        if kind == "write":
            row, col, values = args[1:]
            sheet.row_count = max(sheet.row_count, row + len(values))
            sheet.write(row, col, values)
        elif kind == "insert_rows":
            sheet.insert_rows(args[1], args[2])
        elif kind == "delete_rows":
            start = min(args[1], sheet.row_count - 1)
            sheet.delete_rows(start, min(start + args[2], sheet.row_count - 1))
        elif kind == "insert_columns":
            sheet.insert_columns(args[1], args[2])
        elif kind == "delete_sheet" and len(spreadsheet.sheets) > 1:
            spreadsheet.sheets.remove(sheet)
        elif kind == "rename":
            sheet.title = args[1]

    return change


def _service(path: Path) -> LocalSheetsService:
    service = LocalSheetsService(data_path=path)
    if "s" not in service.spreadsheets:
        service.put_spreadsheet("s", SpreadsheetSpec(sheets=[SheetSpec(title="Sheet1", sheet_id=0, rows=3)]))
    return service


@settings(max_examples=60, deadline=None)
@given(st.lists(_operations, max_size=25))
def test_a_restart_after_any_writes_and_compactions_finds_every_answered_write(
    tmp_path_factory: Any, operations: list[tuple[Any, ...]]
) -> None:
    path: Path = tmp_path_factory.mktemp("data") / "sheets.json"
    service = _service(path)
    for operation in operations:
        if operation[0] == "compact":
            service.persist()
        else:
            service.mutate("s", _change(operation))
    # No close(): as after kill -9, only what is on disk counts.
    assert LocalSheetsService(data_path=path).spreadsheets == service.spreadsheets


def _write(service: LocalSheetsService, row: int, value: str) -> None:
    service.mutate("s", _change(("write", 0, row, 0, [[value]])))


def _first_column(path: Path) -> list[Any]:
    return [row[0] if row else None for row in LocalSheetsService(data_path=path).get("s").sheets[0].rows]


def test_writes_go_to_the_journal_and_a_clean_stop_compacts_it_into_the_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "sheets.json"
    service = _service(path)
    snapshot = path.read_bytes()
    _write(service, 0, "a")
    _write(service, 1, "b")
    assert path.read_bytes() == snapshot  # a write does not rewrite the snapshot
    assert len(path.with_name("sheets.json.journal").read_bytes().splitlines()) == 3  # header + 2 writes
    assert _first_column(path) == ["a", "b"]
    service.close()
    journal = path.with_name("sheets.json.journal")
    assert journal.read_bytes().count(b"\n") == 1  # a new journal: its header only
    journal.unlink()  # the snapshot alone now holds both writes
    assert _first_column(path) == ["a", "b"]


def test_a_torn_last_journal_line_is_dropped_and_the_next_write_follows_the_whole_ones(
    tmp_path: Path,
) -> None:
    path = tmp_path / "sheets.json"
    _write(_service(path), 0, "kept")
    journal = path.with_name("sheets.json.journal")
    whole = journal.read_bytes()
    journal.write_bytes(whole + whole.splitlines()[-1][:40])  # a crash in the middle of a write
    service = _service(path)
    assert _first_column(path) == ["kept"]
    _write(service, 1, "after")
    assert journal.read_bytes().startswith(whole)
    assert _first_column(path) == ["kept", "after"]


def test_a_write_that_could_not_be_journaled_is_refused_and_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "sheets.json"
    service = _service(path)
    _write(service, 0, "a")

    def full_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(os, "fdatasync", full_disk)
        with pytest.raises(OSError, match="No space left"):
            _write(service, 1, "lost")
    assert service.get("s").sheets[0].rows == [["a"]]
    _write(service, 1, "b")
    assert _first_column(path) == ["a", "b"]


def test_a_journal_older_than_the_snapshot_is_not_replayed(tmp_path: Path) -> None:
    # A crash after compaction wrote the new snapshot, before the new journal replaced the old one.
    path = tmp_path / "sheets.json"
    service = _service(path)
    _write(service, 0, "old")
    journal = path.with_name("sheets.json.journal")
    stale = journal.read_bytes()
    service.persist()
    _write(service, 0, "new")
    service.persist()
    journal.write_bytes(stale)
    assert _first_column(path) == ["new"]


def test_a_damaged_journal_line_before_the_last_stops_start_up_with_its_place(tmp_path: Path) -> None:
    path = tmp_path / "sheets.json"
    service = _service(path)
    _write(service, 0, "a")
    _write(service, 1, "b")
    journal = path.with_name("sheets.json.journal")
    lines = journal.read_bytes().splitlines(keepends=True)
    journal.write_bytes(lines[0] + b"{garbage}\n" + lines[2])
    with pytest.raises(StoreError, match=r"sheets\.json\.journal: line 2 is damaged"):
        LocalSheetsService(data_path=path)


def test_the_journal_is_compacted_once_it_outgrows_the_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store, "MIN_COMPACT_BYTES", 0)
    path = tmp_path / "sheets.json"
    service = _service(path)
    for row in range(20):
        _write(service, row, "x" * 50)
    journal = path.with_name("sheets.json.journal")
    assert journal.stat().st_size <= path.stat().st_size + 2_000
    assert _first_column(path) == ["x" * 50] * 20


def test_a_server_killed_with_sigkill_keeps_every_answered_write(tmp_path: Path) -> None:
    data = tmp_path / "sheets.json"
    secret = "test-admin-secret"
    command = [sys.executable, "-m", "connector", "local-sheets", "--port", "0", "--data", str(data)]
    env = {**os.environ, ADMIN_SECRET_ENV: secret}

    def start() -> tuple[subprocess.Popen[str], LocalSheets]:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
        assert process.stdout is not None
        url = process.stdout.readline().split("listening on ", 1)[1].strip()
        return process, LocalSheets(url, secret)

    process, sheets = start()
    try:
        sheets.create_spreadsheet("kept")
        worksheet = sheets.gspread_client().open_by_key("kept").sheet1
        for row in range(1, 6):
            worksheet.update([[f"k{row}", row]], f"A{row}", value_input_option="RAW")
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    finally:
        sheets.close()
        if process.stdout is not None:
            process.stdout.close()
    assert data.with_name("sheets.json.journal").exists()
    process, sheets = start()
    try:
        assert sheets.sheet_values("kept", "Sheet1") == [[f"k{row}", row] for row in range(1, 6)]
        assert requests.get(f"{sheets.url}/v4/spreadsheets/kept", timeout=10).status_code == 200
    finally:
        sheets.close()
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
