"""The worker's side of the inbox: claim events with a lease, then finish, park or release them.

A claim marks events with an owner and a lease deadline. An event is acknowledged (``done``) only after
its sheet write succeeded; a worker that dies leaves leases that simply expire, and the next claim takes
those events again. Named locks (one per spreadsheet) keep two workers from flushing the same spreadsheet
at once. Everything here is synchronous: the worker runs it in its own thread, never on the event loop.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Final, Literal

import msgspec

from connector.inbox import SCHEMA, StatusCount, connect, count_events, inbox_path, now_ms, transaction

__all__ = ["CompanyLag", "FailedEvent", "FlushRecord", "InboxQueue", "StoredEvent", "open_queue"]

CLAIM: Final = """
UPDATE events SET lease_owner = ?, lease_until = ?, attempts = attempts + 1
WHERE id IN (
    SELECT id FROM events
    WHERE status = 'pending' AND (lease_until IS NULL OR lease_until <= ?)
    ORDER BY id LIMIT ?
)
RETURNING id, received_ms, endpoint, company_id, event_type, event_ms, body, dedup_key, attempts
"""

EVENTS_OF: Final = """
SELECT id, received_ms, endpoint, company_id, event_type, event_ms, body, dedup_key, attempts FROM events
WHERE company_id = ? AND status != 'unknown' AND id > ? ORDER BY id LIMIT ?
"""

CLAIM_SUBJECTS: Final = """
UPDATE events SET lease_owner = ?, lease_until = ?, attempts = attempts + 1
WHERE status = ? AND (lease_until IS NULL OR lease_until <= ?) AND subject IN (
    SELECT subject FROM events
    WHERE status = ? AND (lease_until IS NULL OR lease_until <= ?)
    GROUP BY subject ORDER BY MIN(id) LIMIT ?
)
RETURNING id, received_ms, endpoint, company_id, event_type, event_ms, body, dedup_key, attempts
"""

CLAIMABLE: Final = """
SELECT COUNT(*), MIN(received_ms) FROM events
WHERE status = 'pending' AND (lease_until IS NULL OR lease_until <= ?)
"""

LAG: Final = """
SELECT company_id, COUNT(*), MIN(received_ms) FROM events WHERE status = 'pending'
GROUP BY company_id ORDER BY company_id
"""

TAKE_LOCK: Final = """
INSERT INTO locks (name, owner, until_ms) VALUES (?, ?, ?)
ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, until_ms = excluded.until_ms
WHERE locks.owner = excluded.owner OR locks.until_ms <= ?
"""

Outcome = Literal["done", "failed", "unrouted"]


class StoredEvent(msgspec.Struct, frozen=True):
    """One event as the inbox holds it."""

    id: int
    received_ms: int
    endpoint: str
    company_id: int
    event_type: str
    event_ms: int | None
    body: bytes
    dedup_key: str
    attempts: int


class CompanyLag(msgspec.Struct, frozen=True):
    """Pending work of one company: how many events, and since when the oldest waits."""

    company_id: int
    pending: int
    oldest_received_ms: int


class FailedEvent(msgspec.Struct, frozen=True):
    """An event parked by a permanent error."""

    id: int
    company_id: int
    event_type: str
    received_ms: int
    attempts: int
    error: str


class FlushRecord(msgspec.Struct, frozen=True):
    """The last flush of one spreadsheet: when it last succeeded, and the last error."""

    spreadsheet_id: str
    company_ids: str
    last_ok_ms: int | None
    last_error: str | None
    last_error_ms: int | None


class InboxQueue:
    """Claiming and settling inbox events; one instance per worker thread."""

    def __init__(self, path: Path) -> None:
        self._conn = connect(path)
        self._conn.executescript(SCHEMA)

    def close(self) -> None:
        """Release the connection."""
        self._conn.close()

    def claim(self, owner: str, limit: int, lease_ms: int, now: int | None = None) -> list[StoredEvent]:
        """Lease up to ``limit`` pending events, oldest first, that no live lease holds."""
        at = now_ms() if now is None else now
        with transaction(self._conn):
            rows = self._conn.execute(CLAIM, (owner, at + lease_ms, at, limit)).fetchall()
        return sorted((StoredEvent(*row) for row in rows), key=lambda e: e.id)

    def claim_subjects(
        self, owner: str, status: str, subjects: int, lease_ms: int, now: int | None = None
    ) -> list[StoredEvent]:
        """Lease every event in ``status`` of up to ``subjects`` customers or orders (a backfill's unit:
        one row each), so that one flush writes at most that many rows; the subjects stored first go
        first, so a backfill's rows land in the order of its file."""
        at = now_ms() if now is None else now
        params = (owner, at + lease_ms, status, at, status, at, subjects)
        with transaction(self._conn):
            rows = self._conn.execute(CLAIM_SUBJECTS, params).fetchall()
        return sorted((StoredEvent(*row) for row in rows), key=lambda e: e.id)

    def claimable(self, now: int | None = None) -> tuple[int, int]:
        """How many pending events a claim could take now, and the receive time of the oldest (0 if none)."""
        at = now_ms() if now is None else now
        count, oldest = self._conn.execute(CLAIMABLE, (at,)).fetchone()
        return int(count), int(oldest or 0)

    def finish(self, ids: Iterable[int], outcome: Outcome, error: str | None = None) -> None:
        """Settle claimed events: written (``done``), parked (``failed``) or waiting for a mapping."""
        params = [(outcome, error, now_ms(), event_id) for event_id in ids]
        with transaction(self._conn):
            self._conn.executemany(
                "UPDATE events SET status = ?, last_error = ?, updated_ms = ?, lease_owner = NULL,"
                " lease_until = NULL WHERE id = ?",
                params,
            )

    def release(self, ids: Iterable[int], retry_at_ms: int | None = None, error: str | None = None) -> None:
        """Give claimed events back (pending or backfill); with ``retry_at_ms``, not claimed before then;
        ``error`` says why they wait (shown by ``failed list`` until they are done)."""
        params = [(retry_at_ms, error, event_id) for event_id in ids]
        with transaction(self._conn):
            self._conn.executemany(
                "UPDATE events SET lease_owner = NULL, lease_until = ?, last_error = ?"
                " WHERE id = ? AND status IN ('pending', 'backfill')",
                params,
            )

    def requeue(self, status: Literal["failed", "unrouted"], company_id: int | None = None) -> int:
        """Put parked or unrouted events back to pending (all, or one company's); how many."""
        sql = (
            "UPDATE events SET status = 'pending', lease_until = NULL, last_error = NULL, updated_ms = ?"
            " WHERE status = ?"
        )
        params: tuple[object, ...] = (now_ms(), status)
        if company_id is not None:
            sql += " AND company_id = ?"
            params += (company_id,)
        with transaction(self._conn):
            return self._conn.execute(sql, params).rowcount

    def counts(self) -> list[StatusCount]:
        """Number of stored events by status and event type."""
        return count_events(self._conn)

    def lag(self) -> list[CompanyLag]:
        """Pending events per company, with the receive time of the oldest."""
        return [CompanyLag(*row) for row in self._conn.execute(LAG)]

    def failed(
        self, company_id: int | None = None, limit: int = 100, *, waiting: bool = False
    ) -> list[FailedEvent]:
        """Parked events, oldest first, with their error; ``waiting``: instead, pending events given back
        with a reason (a worksheet held back), which are retried by themselves."""
        sql = "SELECT id, company_id, event_type, received_ms, attempts, COALESCE(last_error, '') FROM events"
        sql += (
            " WHERE status = 'pending' AND last_error IS NOT NULL" if waiting else " WHERE status = 'failed'"
        )
        params: tuple[object, ...] = ()
        if company_id is not None:
            sql += " AND company_id = ?"
            params = (company_id,)
        sql += " ORDER BY id LIMIT ?"
        return [FailedEvent(*row) for row in self._conn.execute(sql, (*params, limit))]

    def events_of(self, company_id: int, batch: int = 1000) -> Iterator[list[StoredEvent]]:
        """Every stored event of a company except those of unknown type, in batches, oldest first."""
        after = 0
        while True:
            rows = self._conn.execute(EVENTS_OF, (company_id, after, batch)).fetchall()
            if not rows:
                return
            events = [StoredEvent(*row) for row in rows]
            yield events
            after = events[-1].id

    def take_lock(self, name: str, owner: str, ttl_ms: int, now: int | None = None) -> bool:
        """Take or renew a named lock; False if another owner holds it and it has not expired."""
        at = now_ms() if now is None else now
        with transaction(self._conn):
            cursor = self._conn.execute(TAKE_LOCK, (name, owner, at + ttl_ms, at))
            return cursor.rowcount == 1

    def drop_lock(self, name: str, owner: str) -> None:
        """Release a named lock if this owner holds it."""
        with transaction(self._conn):
            self._conn.execute("DELETE FROM locks WHERE name = ? AND owner = ?", (name, owner))

    def record_flush(self, spreadsheet_id: str, company_ids: str, error: str | None = None) -> None:
        """Remember a flush's outcome for ``status``."""
        at = now_ms()
        with transaction(self._conn):
            if error is None:
                self._conn.execute(
                    "INSERT INTO flushes (spreadsheet_id, company_ids, last_ok_ms) VALUES (?, ?, ?)"
                    " ON CONFLICT (spreadsheet_id) DO UPDATE SET company_ids = excluded.company_ids,"
                    " last_ok_ms = excluded.last_ok_ms",
                    (spreadsheet_id, company_ids, at),
                )
            else:
                self._conn.execute(
                    "INSERT INTO flushes (spreadsheet_id, company_ids, last_error, last_error_ms)"
                    " VALUES (?, ?, ?, ?) ON CONFLICT (spreadsheet_id) DO UPDATE SET"
                    " company_ids = excluded.company_ids, last_error = excluded.last_error,"
                    " last_error_ms = excluded.last_error_ms",
                    (spreadsheet_id, company_ids, error, at),
                )

    def flushes(self) -> list[FlushRecord]:
        """The last flush outcome of every spreadsheet."""
        rows = self._conn.execute(
            "SELECT spreadsheet_id, company_ids, last_ok_ms, last_error, last_error_ms FROM flushes"
            " ORDER BY spreadsheet_id"
        )
        return [FlushRecord(*row) for row in rows]


def open_queue(data_dir: Path) -> InboxQueue:
    """The worker's view of the inbox in a data directory (created if needed)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    return InboxQueue(inbox_path(data_dir))
