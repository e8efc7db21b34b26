"""The SQLite store's schema and connections: one database file in the data directory for events, locks,
entity state and flush records, WAL, ``synchronous=FULL`` (the worker's connection lowers it to NORMAL:
see :class:`connector.store.sqlite_store.SqliteStore`).

Keeping entity state in the same file as the events and locks lets one transaction check a flush's
fencing token, save the state and mark its events done (:meth:`SqliteStore.commit_flush`).
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from connector.errors import StoreError
from connector.store.records import StatusCount

__all__ = [
    "SCHEMA",
    "SCHEMA_VERSION",
    "connect",
    "count_events",
    "inbox_path",
    "migrate",
    "transaction",
]

log = logging.getLogger(__name__)

# 1: events, locks (name, owner, until_ms), flushes; entity state in a file of its own (state.sqlite3).
# 2: locks carry a fencing token; entity state in this file; a probe row for writability checks.
# 3: an index on events.received_ms (the console's events-per-minute chart).
SCHEMA_VERSION: Final = 3

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS events (
    id          INTEGER PRIMARY KEY,
    received_ms INTEGER NOT NULL,
    endpoint    TEXT    NOT NULL,
    company_id  INTEGER NOT NULL,
    event_type  TEXT    NOT NULL,
    event_ms    INTEGER,
    body        BLOB    NOT NULL,
    dedup_key   TEXT    NOT NULL UNIQUE,
    content_key TEXT    NOT NULL,
    subject     TEXT,
    status      TEXT    NOT NULL DEFAULT 'pending',
    attempts    INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until INTEGER,
    last_error  TEXT,
    updated_ms  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_status ON events (status, id);
CREATE INDEX IF NOT EXISTS events_by_company ON events (company_id, id);
CREATE INDEX IF NOT EXISTS events_by_received ON events (received_ms);
CREATE INDEX IF NOT EXISTS untimed_by_subject ON events (company_id, subject, id) WHERE event_ms IS NULL;
CREATE TABLE IF NOT EXISTS locks (
    name     TEXT PRIMARY KEY,
    owner    TEXT    NOT NULL,
    until_ms INTEGER NOT NULL,
    token    INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS flushes (
    spreadsheet_id TEXT PRIMARY KEY,
    company_ids    TEXT    NOT NULL,
    last_ok_ms     INTEGER,
    last_error     TEXT,
    last_error_ms  INTEGER
);
CREATE TABLE IF NOT EXISTS entity_state (
    kind        TEXT    NOT NULL,
    company_id  INTEGER NOT NULL,
    entity_id   INTEGER NOT NULL,
    state       BLOB    NOT NULL,
    PRIMARY KEY (kind, company_id, entity_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS probe (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    at_ms INTEGER NOT NULL
);
"""

COUNT_BY_STATUS: Final = """
SELECT status, event_type, COUNT(*) FROM events GROUP BY status, event_type ORDER BY status, event_type
"""


def connect(path: Path) -> sqlite3.Connection:
    """Open the database with the settings every connection to it must use."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
    _use_wal(conn)
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


def _use_wal(conn: sqlite3.Connection, attempts: int = 200) -> None:
    """Switch to WAL. Two connections switching a new file at once: one gets "database is locked" at
    once, without SQLite's busy handler; it tries again for up to ~10 s."""
    for attempt in range(attempts):
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.05)


def inbox_path(data_dir: Path) -> Path:
    """Where the database lives in a data directory."""
    return data_dir / "inbox.sqlite3"


def migrate(path: Path) -> None:
    """Create the schema, or bring a version-1 file up to date; refuse a file of a newer version.

    Version 1 kept entity state in ``state.sqlite3`` beside it: its rows are copied in, and the old file
    is renamed ``state.sqlite3.migrated`` (kept, not deleted). Safe when several processes start at once:
    the version is read again inside the write transaction.
    """
    old_state = path.parent / "state.sqlite3"
    conn = connect(path)
    try:
        if _version(conn, path) == SCHEMA_VERSION:
            return
        attached = old_state.exists()
        if attached:
            conn.execute("ATTACH DATABASE ? AS old_state", (str(old_state),))
        with transaction(conn):
            if _version(conn, path) == SCHEMA_VERSION:
                return
            columns = {row[1] for row in conn.execute("PRAGMA table_info(locks)")}
            if columns and "token" not in columns:
                conn.execute("ALTER TABLE locks ADD COLUMN token INTEGER NOT NULL DEFAULT 0")
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            copied = 0
            if attached:
                copied = conn.execute(
                    "INSERT OR IGNORE INTO main.entity_state SELECT kind, company_id, entity_id, state"
                    " FROM old_state.entity_state"
                ).rowcount
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        if attached:
            conn.execute("DETACH DATABASE old_state")
            old_state.rename(old_state.with_name("state.sqlite3.migrated"))
            log.info("moved %d entity states from %s into %s", copied, old_state, path)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open the store {path}: {exc}") from exc
    finally:
        conn.close()


def _version(conn: sqlite3.Connection, path: Path) -> int:
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path} has schema version {version}, newer than this program's ({SCHEMA_VERSION}):"
            " upgrade doopage-sheets"
        )
    return int(version)


def count_events(conn: sqlite3.Connection) -> list[StatusCount]:
    """Number of stored events by status and event type."""
    rows = conn.execute(COUNT_BY_STATUS).fetchall()
    return [StatusCount(status, event_type, count) for status, event_type, count in rows]


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction: BEGIN IMMEDIATE, COMMIT on success, ROLLBACK on any error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
