"""The inbox: every accepted webhook body, stored durably before it is acknowledged.

:class:`Inbox` is the narrow storage interface the routes and the worker use; :class:`SqliteInbox` is the
embedded default (one SQLite file in the data directory, WAL, ``synchronous=FULL``).

Durability costs an fsync per commit. Instead of one commit per request, writes go through a single
writer thread that takes whatever requests are waiting, inserts them all in one transaction and commits
once (group commit): while one fsync runs, the next requests queue up and share the next one. Each caller
awaits its own future, resolved only after the commit that holds its row, so nothing is acknowledged
before it is on disk, and the event loop never blocks on SQLite.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol

import msgspec

from connector.errors import StoreError

log = logging.getLogger(__name__)

__all__ = [
    "CSV_IMPORT_ENDPOINT",
    "STATUSES",
    "Inbox",
    "InboxRecord",
    "SqliteInbox",
    "StatusCount",
    "count_events",
    "inbox_path",
    "now_ms",
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

# How many queued requests one transaction takes at most; bounds the latency of the last one in it.
MAX_GROUP: Final = 512


def now_ms() -> int:
    """Wall-clock time in milliseconds since the epoch."""
    return time.time_ns() // 1_000_000


class InboxRecord(msgspec.Struct, frozen=True, kw_only=True):
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


@dataclass
class _Write:
    """A queued request for the writer thread: records to insert, or none for a writability check."""

    records: list[InboxRecord]
    future: asyncio.Future[list[bool]]
    loop: asyncio.AbstractEventLoop


_STOP: Final = object()
_Settlement = tuple[asyncio.Future[list[bool]], list[bool] | StoreError]


@dataclass
class SqliteInbox:
    """The embedded inbox: one SQLite file, written by one group-committing thread."""

    path: Path
    _queue: queue.SimpleQueue[list[_Write] | object] = field(default_factory=queue.SimpleQueue, init=False)
    _batch: list[_Write] = field(default_factory=list, init=False)  # not yet handed over (event loop side)
    _thread: threading.Thread | None = field(default=None, init=False)
    _reader: sqlite3.Connection | None = field(default=None, init=False)
    commits: int = field(default=0, init=False)  # transactions committed by the writer thread
    records: int = field(default=0, init=False)  # records those transactions took (stored or duplicate)

    @classmethod
    def open(cls, data_dir: Path) -> SqliteInbox:
        """Create the data directory and database if needed, and start the writer thread."""
        data_dir.mkdir(parents=True, exist_ok=True)
        inbox = cls(inbox_path(data_dir))
        writer = connect(inbox.path)
        writer.executescript(SCHEMA)
        inbox._reader = connect(inbox.path)
        inbox._thread = threading.Thread(target=inbox._run, args=(writer,), name="inbox-writer", daemon=True)
        inbox._thread.start()
        return inbox

    async def put(self, record: InboxRecord) -> bool:
        """Store one record durably; True if new, False if a duplicate (see Inbox.put)."""
        (inserted,) = await self._submit([record])
        return inserted

    async def put_many(self, records: list[InboxRecord]) -> list[bool]:
        """Store several records in one transaction; for each, whether it was new."""
        return await self._submit(records)

    async def check_writable(self) -> None:
        """Raise StoreError unless the writer thread can start a write transaction now."""
        await self._submit([])

    def counts(self) -> list[StatusCount]:
        """Number of stored events by status and event type."""
        assert self._reader is not None, "inbox is not open"
        return count_events(self._reader)

    def close(self) -> None:
        """Let the writer finish what is queued, then close both connections."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None
            log.info("inbox closed: %d records in %d commits", self.records, self.commits)
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    async def _submit(self, records: list[InboxRecord]) -> list[bool]:
        if self._thread is None:
            raise StoreError("the inbox is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[bool]] = loop.create_future()
        self._batch.append(_Write(records, future, loop))
        if len(self._batch) == 1:
            # The requests of one turn of the event loop go to the writer thread together: one wake-up
            # (and one fight for the interpreter lock) per turn rather than one per request.
            loop.call_soon(self._hand_over)
        return await future

    def _hand_over(self) -> None:
        batch, self._batch = self._batch, []
        self._queue.put(batch)

    def _run(self, conn: sqlite3.Connection) -> None:
        """The writer thread: take every waiting request, one transaction for all, then answer them."""
        try:
            while True:
                first = self._queue.get()
                if not isinstance(first, list):  # _STOP
                    return
                group = list(first)
                stopping = False
                while len(group) < MAX_GROUP:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if not isinstance(item, list):
                        stopping = True
                        break
                    group.extend(item)
                self._commit_group(group, conn)
                if stopping:
                    return
        finally:
            conn.close()

    def _commit_group(self, group: list[_Write], conn: sqlite3.Connection) -> None:
        records = [record for write in group for record in write.records]
        outcome: list[bool] | StoreError
        try:
            outcome = _insert_all(conn, records)
            self.commits += 1
            self.records += len(records)
        except Exception as exc:
            # Whatever went wrong, this group is answered (503, retry) and the thread lives on.
            log.exception("the inbox could not commit %d records", len(records))
            outcome = StoreError(f"the inbox could not commit: {exc}")
        # One wake-up per event loop for the whole group, not one per request.
        by_loop: dict[asyncio.AbstractEventLoop, list[_Settlement]] = {}
        start = 0
        for write in group:
            end = start + len(write.records)
            result = outcome if isinstance(outcome, StoreError) else outcome[start:end]
            by_loop.setdefault(write.loop, []).append((write.future, result))
            start = end
        for loop, settlements in by_loop.items():
            loop.call_soon_threadsafe(_settle_all, settlements)


@functools.lru_cache(maxsize=MAX_GROUP)
def _insert_sql(rows: int) -> str:
    """One multi-row INSERT of ``rows`` rows."""
    # Only placeholders are interpolated; every value is bound.
    values = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * rows)
    return (
        "INSERT INTO events (received_ms, endpoint, company_id, event_type, event_ms, body, dedup_key,"  # noqa: S608
        f" content_key, subject, status, updated_ms) VALUES {values} ON CONFLICT (dedup_key) DO NOTHING"
    )


def _new_keys_sql() -> str:
    """The dedup keys of the rows with ids in a range (the rows one INSERT just added)."""
    return "SELECT dedup_key FROM events WHERE id > ? AND id <= ?"


LATEST_UNTIMED: Final = """
SELECT content_key FROM events WHERE company_id = ? AND subject = ? AND event_ms IS NULL
ORDER BY id DESC LIMIT 1
"""


def _insert_all(conn: sqlite3.Connection, records: list[InboxRecord]) -> list[bool]:
    """Store records durably, in arrival order; for each, whether it is new (the first of equal keys wins).

    The usual group (events with a timestamp only) is one INSERT statement, which SQLite runs as a
    transaction of its own: the sqlite3 module lets go of the interpreter lock around every call, and
    taking it back from a busy event loop is most of what a commit costs, so fewer calls, faster acks.
    """
    if not records or any(record.repeatable for record in records):
        # (No record at all is a writability check: can a write transaction start now?)
        with transaction(conn):
            return _insert_with_repeats(conn, records)
    keys = [record.content_key for record in records]
    inserted = _insert_rows(conn, list(zip(records, keys, strict=True)))
    return _first_of_each(keys, inserted)


def _insert_with_repeats(conn: sqlite3.Connection, records: list[InboxRecord]) -> list[bool]:
    """Store records some of which have no timestamp (see InboxRecord), inside the caller's transaction."""
    keys: list[str | None] = []
    for record in records:
        if record.repeatable:
            # One by one, so that the next repeatable record of the group sees this one as the latest.
            key = _dedup_key(conn, record)
            keys.append(key if key is not None and _insert_rows(conn, [(record, key)]) else None)
        else:
            keys.append(record.content_key)
    timed = [(record, record.content_key) for record in records if not record.repeatable]
    inserted = _insert_rows(conn, timed) if timed else set()
    inserted.update(key for record, key in zip(records, keys, strict=True) if record.repeatable and key)
    return _first_of_each(keys, inserted)


def _first_of_each(keys: Sequence[str | None], inserted: set[str]) -> list[bool]:
    """For each key in order, whether it was inserted (only its first occurrence counts)."""
    outcome = []
    remaining = set(inserted)
    for key in keys:
        outcome.append(key is not None and key in remaining)
        remaining.discard(key or "")
    return outcome


def _insert_rows(conn: sqlite3.Connection, rows: list[tuple[InboxRecord, str]]) -> set[str]:
    """Insert ``(record, dedup key)`` rows in one statement, skipping stored keys; the keys inserted.

    New rows get consecutive ids (the statement holds the write lock), so when some rows were skipped
    the inserted ones are found by id; when none was, no second statement is needed.
    """
    params: list[object] = []
    for r, key in rows:
        params += (r.received_ms, r.endpoint, r.company_id, r.event_type, r.event_ms, r.body, key)
        params += (r.content_key, r.subject, r.status, r.received_ms)
    before = conn.total_changes
    cursor = conn.execute(_insert_sql(len(rows)), params)
    added = conn.total_changes - before
    if added == len(rows):
        return {key for _, key in rows}
    if added == 0:
        return set()
    last = cursor.lastrowid or 0
    return {key for (key,) in conn.execute(_new_keys_sql(), (last - added, last))}


def _dedup_key(conn: sqlite3.Connection, record: InboxRecord) -> str | None:
    """A repeatable record's dedup key, or None when it repeats the latest event of its subject."""
    latest = conn.execute(LATEST_UNTIMED, (record.company_id, record.subject)).fetchone()
    if latest is not None and latest[0] == record.content_key:
        return None
    return f"{record.content_key}@{record.received_ms}"


def _settle_all(settlements: list[_Settlement]) -> None:
    for future, result in settlements:
        # A caller that went away (client disconnected) has a cancelled future; its row is stored anyway.
        if future.done():
            continue
        if isinstance(result, StoreError):
            future.set_exception(result)
        else:
            future.set_result(result)
