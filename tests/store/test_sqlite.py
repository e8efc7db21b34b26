"""What only the SQLite backend has: its file, WAL, schema versions and the move from version 1."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from connector.errors import StoreError
from connector.store.sqlite_schema import SCHEMA_VERSION, inbox_path
from connector.store.sqlite_store import SqliteStore
from connector.sync.state import EntityKey, encode_state, fold_batch
from tests.state.conftest import sample

CUSTOMER = EntityKey("customer", 1, 1)

VERSION_1 = """
CREATE TABLE events (id INTEGER PRIMARY KEY, received_ms INTEGER NOT NULL, endpoint TEXT NOT NULL,
    company_id INTEGER NOT NULL, event_type TEXT NOT NULL, event_ms INTEGER, body BLOB NOT NULL,
    dedup_key TEXT NOT NULL UNIQUE, content_key TEXT NOT NULL, subject TEXT,
    status TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0, lease_owner TEXT,
    lease_until INTEGER, last_error TEXT, updated_ms INTEGER NOT NULL);
CREATE TABLE locks (name TEXT PRIMARY KEY, owner TEXT NOT NULL, until_ms INTEGER NOT NULL);
CREATE TABLE flushes (spreadsheet_id TEXT PRIMARY KEY, company_ids TEXT NOT NULL, last_ok_ms INTEGER,
    last_error TEXT, last_error_ms INTEGER);
INSERT INTO locks VALUES ('sheet-1', 'old-worker', 0);
"""


def test_the_store_is_one_wal_file_in_the_data_directory(tmp_path: Path) -> None:
    SqliteStore.open(tmp_path).close()
    conn = sqlite3.connect(inbox_path(tmp_path))
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    finally:
        conn.close()


def test_a_newer_schema_is_refused_with_what_to_do(tmp_path: Path) -> None:
    conn = sqlite3.connect(inbox_path(tmp_path))
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(StoreError, match=r"newer than this program.s .* upgrade doopage-sheets"):
        SqliteStore.open(tmp_path)


def test_a_version_1_data_directory_moves_its_state_in_and_keeps_its_locks(tmp_path: Path) -> None:
    conn = sqlite3.connect(inbox_path(tmp_path))
    conn.executescript(VERSION_1)
    conn.execute("PRAGMA user_version = 1")
    conn.close()
    (state,) = fold_batch({}, [sample("customer_created", 0)]).values()
    old = sqlite3.connect(tmp_path / "state.sqlite3")
    old.executescript(
        "CREATE TABLE entity_state (kind TEXT, company_id INTEGER, entity_id INTEGER, state BLOB,"
        " PRIMARY KEY (kind, company_id, entity_id)) WITHOUT ROWID"
    )
    old.execute("INSERT INTO entity_state VALUES ('customer', 1, 1, ?)", (encode_state(state),))
    old.commit()
    old.close()
    store = SqliteStore.open(tmp_path)
    try:
        assert store.load([CUSTOMER]) == {CUSTOMER: state}
        fence = store.take_lock("sheet-1", "new-worker", ttl_ms=1_000)
        assert fence is not None
        assert fence.token == 1
    finally:
        store.close()
    assert not (tmp_path / "state.sqlite3").exists()
    assert (tmp_path / "state.sqlite3.migrated").exists()


def test_a_write_the_database_cannot_take_raises_store_error_and_keeps_the_old_state(tmp_path: Path) -> None:
    store = SqliteStore.open(tmp_path)
    try:
        before = fold_batch({}, [sample("customer_created", 0)])
        store.save_states(before.values())
        conn = sqlite3.connect(inbox_path(tmp_path), isolation_level=None, timeout=0.05)
        conn.execute("PRAGMA busy_timeout = 50")
        conn.execute("BEGIN EXCLUSIVE")  # another writer holds the database
        store._conn.execute("PRAGMA busy_timeout = 50")
        try:
            with pytest.raises(StoreError, match="store"):
                store.save_states(fold_batch(before, [sample("customer_closed", 0)]).values())
        finally:
            conn.execute("ROLLBACK")
            conn.close()
        assert store.load([CUSTOMER]) == before
    finally:
        store.close()
