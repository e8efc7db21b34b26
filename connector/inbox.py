"""The inbox: every accepted webhook body, stored durably before it is acknowledged.

This module holds what every part of the service shares about it: the SQLite schema (one file in the
data directory, WAL, ``synchronous=FULL``), the stored record, how to connect, and :class:`Inbox`, the
narrow interface the webhook routes use. :class:`connector.sqlite_inbox.SqliteInbox` is the embedded
implementation; :mod:`connector.inbox_writer` is the process that writes for it.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final, Protocol

import msgspec

__all__ = [
    "CSV_IMPORT_ENDPOINT",
    "STATUSES",
    "Inbox",
    "InboxRecord",
    "StatusCount",
    "connect",
    "count_events",
    "inbox_path",
    "now_ms",
    "transaction",
]

# pending: waiting for the worker; done: written to its sheets; failed: a permanent error, parked;
# unrouted: its company has no spreadsheet mapping yet; unknown: an event type this version cannot read;
# backfill: imported by `doopage-sheets backfill`, which writes it itself (the worker leaves it alone).
STATUSES: Final = ("pending", "done", "failed", "unrouted", "unknown", "backfill")

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
    until_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS flushes (
    spreadsheet_id TEXT PRIMARY KEY,
    company_ids    TEXT    NOT NULL,
    last_ok_ms     INTEGER,
    last_error     TEXT,
    last_error_ms  INTEGER
);
"""

COUNT_BY_STATUS: Final = """
SELECT status, event_type, COUNT(*) FROM events GROUP BY status, event_type ORDER BY status, event_type
"""

# The endpoint name of events made from CSV rows by `backfill`: folded into state like any event, but
# never shown in an events worksheet, since DooPage never sent them.
CSV_IMPORT_ENDPOINT: Final = "backfill-csv"


def now_ms() -> int:
    """Wall-clock time in milliseconds since the epoch."""
    return time.time_ns() // 1_000_000


class InboxRecord(msgspec.Struct, frozen=True, kw_only=True, array_like=True):
    """One webhook body as it is stored.

    ``content_key`` is the hash of the body's canonical JSON; ``subject`` what the event is about
    (``customer:1``), None for an unknown type. Deduplication:

    * an event with a ``timestamp`` is the same event whenever its content is the same; its dedup key is
      its content key;
    * an event without one (tag_set, tag_unset, note_changed, customer_pipeline_updated in DooPage's
      samples) can truly happen twice with the same body: tag A set, unset, set again. It counts as a
      repeated delivery only when it equals the latest timestamp-less event of the same subject, which is
      also when storing it again could change nothing. Otherwise it is a new event and gets a dedup key of
      its own (``<content key>@<received ms>``).
    """

    received_ms: int
    endpoint: str
    company_id: int
    event_type: str
    event_ms: int | None
    body: bytes
    content_key: str
    subject: str | None = None
    status: str = "pending"

    @property
    def repeatable(self) -> bool:
        """Whether the same body may be a new event (it carries no timestamp)."""
        return self.event_ms is None and self.subject is not None


class StatusCount(msgspec.Struct, frozen=True):
    """How many events of one type are in one status."""

    status: str
    event_type: str
    count: int


class Inbox(Protocol):
    """What the webhook routes and operators need from a durable event store."""

    async def put(self, record: InboxRecord) -> bool:
        """Store one record durably; True if it is new, False if its dedup key was already stored.

        Returns only after the record is committed; raises StoreError if it could not be.
        """
        ...

    async def check_writable(self) -> None:
        """Raise StoreError unless a write transaction can be started now."""
        ...

    def counts(self) -> list[StatusCount]:
        """Number of stored events by status and event type."""
        ...

    def close(self) -> None:
        """Finish queued writes and release the store."""
        ...


def connect(path: Path) -> sqlite3.Connection:
    """Open the inbox database with the settings every connection to it must use."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


def count_events(conn: sqlite3.Connection) -> list[StatusCount]:
    """Number of stored events by status and event type."""
    rows = conn.execute(COUNT_BY_STATUS).fetchall()
    return [StatusCount(status, event_type, count) for status, event_type, count in rows]


def inbox_path(data_dir: Path) -> Path:
    """Where the inbox database lives in a data directory."""
    return data_dir / "inbox.sqlite3"


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
