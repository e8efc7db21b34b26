"""The worker's side of the SQLite store: claims, spreadsheet locks, entity state and flush records.

A claim marks events with an owner and a lease deadline; an event becomes ``done`` only in the fenced
commit of the flush that wrote it (:meth:`SqliteStore.commit_flush`). A lock row is never deleted, so its
fencing token only grows: each acquisition adds one, and a commit whose token is not the lock's current
one is refused. Everything here is synchronous: workers run it in their own threads, never on the event
loop. One connection per instance, guarded by a lock so that a heartbeat thread may share it.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sqlite3
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Final, Literal, TypeVar

from connector.errors import StaleFence, StoreError
from connector.store.records import (
    CompanyLag,
    FailedEvent,
    Fence,
    FlushRecord,
    Outcome,
    StatusCount,
    StoredEvent,
    nested_counts,
    now_ms,
)
from connector.store.sqlite_schema import connect, count_events, inbox_path, migrate, transaction
from connector.sync.state import EntityKey, EntityKind, EntityState, decode_state, encode_state

__all__ = ["SqliteStore", "stale", "state_rows"]

T = TypeVar("T")


PENDING_WORK: Final = """
SELECT company_id, COUNT(*), MIN(received_ms) FROM events WHERE status = 'pending' AND (lease_until IS NULL OR lease_until <= ?)
GROUP BY company_id ORDER BY company_id
"""

# The oldest claimable events of some companies, as long as the bodies before each stay under a size.
CLAIM: Final = """
UPDATE events SET lease_owner = ?, lease_until = ?, attempts = attempts + 1
WHERE id IN (
    SELECT id FROM (
        SELECT id, SUM(length(body)) OVER (ORDER BY id) - length(body) AS before FROM events
        WHERE status = 'pending' AND (lease_until IS NULL OR lease_until <= ?) AND company_id IN (SELECT value FROM json_each(?))
        ORDER BY id LIMIT ?
    ) WHERE before < ?
)
RETURNING id, received_ms, endpoint, company_id, event_type, event_ms, body, dedup_key, attempts
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

EVENTS_OF: Final = """
SELECT id, received_ms, endpoint, company_id, event_type, event_ms, body, dedup_key, attempts FROM events
WHERE company_id = ? AND status != 'unknown' AND id > ? ORDER BY id LIMIT ?
"""

ACQUIRE: Final = """
INSERT INTO locks (name, owner, until_ms, token) VALUES (?, ?, ?, 1)
ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, until_ms = excluded.until_ms, token = locks.token + 1
WHERE locks.until_ms <= ?
RETURNING token
"""


UPSERT_STATE: Final = """
INSERT INTO entity_state (kind, company_id, entity_id, state) VALUES (?, ?, ?, ?)
ON CONFLICT (kind, company_id, entity_id) DO UPDATE SET state = excluded.state
"""

# A parked event as FailedEvent, and the newest parked event of each company.
FAILED: Final = (
    "SELECT id, company_id, event_type, received_ms, attempts, COALESCE(last_error, '') FROM events"
)
NEWEST_FAILED: Final = "SELECT MAX(id) FROM events WHERE status = 'failed' GROUP BY company_id"
MAX_ID: Final = 2**63 - 1
SUBJECTS_WAITING: Final = """
SELECT COUNT(*), COALESCE(SUM(n), 0) FROM (
    SELECT COUNT(*) AS n FROM events WHERE status = ? GROUP BY company_id, subject
)
"""

# The most rows one worker transaction writes, and the pause after each: the inbox writer's commits wait
# behind a worker's transaction (a few milliseconds), and take their turn in the pause.
ROWS_PER_TRANSACTION: Final = 500
PAUSE_BETWEEN_S: Final = 0.001

RENEW: Final = """
UPDATE events SET lease_until = ? WHERE id IN (
    SELECT id FROM events WHERE status IN ('pending', 'backfill') AND id > ? AND lease_owner = ? ORDER BY id LIMIT ?
)
RETURNING id
"""

# MARK_DONE and SELECT_STATES take {ids}: as many placeholders as ids (_placeholders); every value is bound.
MARK_DONE: Final = """
UPDATE events SET status = 'done', last_error = NULL, updated_ms = ?, lease_owner = NULL, lease_until = NULL
WHERE id IN ({ids}) AND status IN ('pending', 'backfill')
"""
SELECT_STATES: Final = (
    "SELECT state FROM entity_state WHERE kind = ? AND company_id = ? AND entity_id IN ({ids})"
)

RECORD_OK: Final = """
INSERT INTO flushes (spreadsheet_id, company_ids, last_ok_ms) VALUES (?, ?, ?)
ON CONFLICT (spreadsheet_id) DO UPDATE SET company_ids = excluded.company_ids, last_ok_ms = excluded.last_ok_ms
"""

RECORD_ERROR: Final = """
INSERT INTO flushes (spreadsheet_id, company_ids, last_error, last_error_ms) VALUES (?, ?, ?, ?)
ON CONFLICT (spreadsheet_id) DO UPDATE SET company_ids = excluded.company_ids,
    last_error = excluded.last_error, last_error_ms = excluded.last_error_ms
"""


class SqliteStore:
    """Every worker role on the SQLite file of a data directory (see :class:`WorkStore`)."""

    def __init__(self, path: Path) -> None:
        migrate(path)
        try:
            self._conn = connect(path)
            # The worker's commits are not flushed to disk one by one (the inbox writer's are, and each of
            # them flushes the log up to its own commit, the worker's before it included): the intake's
            # flushes do not queue behind the worker's. Only an operating-system crash or a power cut can
            # undo the worker's latest commits, and then as a whole, in order: their events are pending
            # again and are folded and written again, which upserts the same rows.
            self._conn.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the store {path}: {exc}") from exc
        self.path = path
        self._lock = threading.RLock()

    @classmethod
    def open(cls, data_dir: Path) -> SqliteStore:
        """The store of a data directory (created if needed)."""
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the data directory {data_dir}: {exc.strerror}") from exc
        return cls(inbox_path(data_dir))

    def close(self) -> None:
        """Release the connection."""
        with self._lock:
            self._conn.close()

    def wait_for_work(self, stop: threading.Event, timeout_s: float) -> None:
        """Sleep between passes of an idle worker (SQLite has no notifications: a plain poll)."""
        stop.wait(timeout_s)

    @contextlib.contextmanager
    def _db(self, write: bool = True) -> Iterator[sqlite3.Connection]:
        """The connection, held by this thread; a write transaction when ``write``; errors as StoreError."""
        with self._lock:
            try:
                if write:
                    with transaction(self._conn):
                        yield self._conn
                else:
                    yield self._conn
            except sqlite3.Error as exc:
                raise StoreError(f"store {self.path}: {exc}") from exc

    # --- claims -------------------------------------------------------------------------------------------

    def pending_work(self, now: int | None = None) -> list[CompanyLag]:
        at = now_ms() if now is None else now
        with self._db(write=False) as db:
            return [CompanyLag(*row) for row in db.execute(PENDING_WORK, (at,))]

    def claim(
        self,
        owner: str,
        company_ids: Sequence[int],
        lease_ms: int,
        *,
        max_events: int,
        max_bytes: int,
        now: int | None = None,
    ) -> list[StoredEvent]:
        at = now_ms() if now is None else now
        companies = "[" + ",".join(str(int(c)) for c in company_ids) + "]"
        claimed: list[StoredEvent] = []
        taken_bytes = 0
        # In transactions of a few thousand rows: the inbox writer waits for none of them long.
        while len(claimed) < max_events and taken_bytes < max_bytes:
            limit = min(max_events - len(claimed), ROWS_PER_TRANSACTION)
            params = (owner, at + lease_ms, at, companies, limit, max(max_bytes - taken_bytes, 1))
            with self._db() as db:
                rows = db.execute(CLAIM, params).fetchall()
            chunk = [StoredEvent(*row) for row in rows]
            claimed += chunk
            taken_bytes += sum(len(e.body) for e in chunk)
            if len(chunk) < limit:
                break
            time.sleep(PAUSE_BETWEEN_S)
        return sorted(claimed, key=lambda e: e.id)

    def claim_subjects(
        self, owner: str, status: str, subjects: int, lease_ms: int, now: int | None = None
    ) -> list[StoredEvent]:
        at = now_ms() if now is None else now
        params = (owner, at + lease_ms, status, at, status, at, subjects)
        with self._db() as db:
            rows = db.execute(CLAIM_SUBJECTS, params).fetchall()
        return sorted((StoredEvent(*row) for row in rows), key=lambda e: e.id)

    def renew_claims(self, owner: str, lease_ms: int, now: int | None = None) -> int:
        at = now_ms() if now is None else now
        renewed, after = 0, 0
        # In short transactions like the claim's (a flush may hold tens of thousands of events), walking
        # the owner's events in id order.
        while True:
            with self._db() as db:
                ids = [
                    row[0] for row in db.execute(RENEW, (at + lease_ms, after, owner, ROWS_PER_TRANSACTION))
                ]
            renewed += len(ids)
            if len(ids) < ROWS_PER_TRANSACTION:
                return renewed
            after = max(ids)
            time.sleep(PAUSE_BETWEEN_S)

    def finish(self, owner: str, ids: Iterable[int], outcome: Outcome, error: str | None = None) -> int:
        params = [(outcome, error, now_ms(), event_id, owner) for event_id in ids]
        with self._db() as db:
            before = db.total_changes
            db.executemany(
                "UPDATE events SET status = ?, last_error = ?, updated_ms = ?, lease_owner = NULL,"
                " lease_until = NULL WHERE id = ? AND lease_owner = ? AND status IN ('pending', 'backfill')",
                params,
            )
            return db.total_changes - before

    def release(
        self, owner: str, ids: Iterable[int], retry_at_ms: int | None = None, error: str | None = None
    ) -> None:
        params = [(retry_at_ms, error, event_id, owner) for event_id in ids]
        with self._db() as db:
            db.executemany(
                "UPDATE events SET lease_owner = NULL, lease_until = ?, last_error = ?"
                " WHERE id = ? AND lease_owner = ? AND status IN ('pending', 'backfill')",
                params,
            )

    def park_unrouted(self, company_ids: Sequence[int], now: int | None = None) -> int:
        at = now_ms() if now is None else now
        companies = "[" + ",".join(str(int(c)) for c in company_ids) + "]"
        with self._db() as db:
            return db.execute(
                "UPDATE events SET status = 'unrouted', updated_ms = ? WHERE status = 'pending' AND (lease_until IS NULL OR lease_until <= ?)"
                " AND company_id IN (SELECT value FROM json_each(?))",
                (at, at, companies),
            ).rowcount

    def requeue(self, status: Literal["failed", "unrouted"], company_id: int | None = None) -> int:
        sql = (
            "UPDATE events SET status = 'pending', lease_until = NULL, last_error = NULL, updated_ms = ?"
            " WHERE status = ?"
        )
        params: tuple[object, ...] = (now_ms(), status)
        if company_id is not None:
            sql += " AND company_id = ?"
            params += (company_id,)
        with self._db() as db:
            return db.execute(sql, params).rowcount

    def lease_owners(self, now: int | None = None) -> set[str]:
        at = now_ms() if now is None else now
        with self._db(write=False) as db:
            events = db.execute(
                "SELECT DISTINCT lease_owner FROM events WHERE lease_owner IS NOT NULL AND lease_until > ?"
                " AND status IN ('pending', 'backfill')",
                (at,),
            ).fetchall()
            locks = db.execute("SELECT DISTINCT owner FROM locks WHERE until_ms > ?", (at,)).fetchall()
        return {owner for (owner,) in [*events, *locks]}

    def expire_owner(self, owner: str) -> None:
        with self._db() as db:
            db.execute(
                "UPDATE events SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = ?"
                " AND status IN ('pending', 'backfill')",
                (owner,),
            )
            db.execute("UPDATE locks SET until_ms = 0 WHERE owner = ?", (owner,))

    def counts(self) -> list[StatusCount]:
        with self._db(write=False) as db:
            return count_events(db)

    def lag(self) -> list[CompanyLag]:
        return self.backlog("pending")

    def failed(
        self, company_id: int | None = None, limit: int = 100, *, waiting: bool = False
    ) -> list[FailedEvent]:
        sql = "SELECT id, company_id, event_type, received_ms, attempts, COALESCE(last_error, '') FROM events"
        sql += (
            " WHERE status = 'pending' AND last_error IS NOT NULL" if waiting else " WHERE status = 'failed'"
        )
        params: tuple[object, ...] = ()
        if company_id is not None:
            sql += " AND company_id = ?"
            params = (company_id,)
        sql += " ORDER BY id LIMIT ?"
        with self._db(write=False) as db:
            return [FailedEvent(*row) for row in db.execute(sql, (*params, limit))]

    def events_of(self, company_id: int, batch: int = 1000) -> Iterator[list[StoredEvent]]:
        after = 0
        while True:
            with self._db(write=False) as db:
                rows = db.execute(EVENTS_OF, (company_id, after, batch)).fetchall()
            if not rows:
                return
            events = [StoredEvent(*row) for row in rows]
            yield events
            after = events[-1].id

    # --- locks --------------------------------------------------------------------------------------------

    def take_lock(self, name: str, owner: str, ttl_ms: int, now: int | None = None) -> Fence | None:
        at = now_ms() if now is None else now
        with self._db() as db:
            row = db.execute(ACQUIRE, (name, owner, at + ttl_ms, at)).fetchone()
        return None if row is None else Fence(name, owner, int(row[0]))

    def renew_lock(self, fence: Fence, ttl_ms: int, now: int | None = None) -> bool:
        at = now_ms() if now is None else now
        with self._db() as db:
            cursor = db.execute(
                "UPDATE locks SET until_ms = ? WHERE name = ? AND token = ? AND owner = ?",
                (at + ttl_ms, fence.name, fence.token, fence.owner),
            )
            return cursor.rowcount == 1

    def drop_lock(self, fence: Fence) -> None:
        with self._db() as db:
            db.execute(
                "UPDATE locks SET until_ms = 0 WHERE name = ? AND token = ?", (fence.name, fence.token)
            )

    # --- entity state -------------------------------------------------------------------------------------

    def load(self, keys: Iterable[EntityKey]) -> dict[EntityKey, EntityState]:
        ids: dict[tuple[str, int], set[int]] = defaultdict(set)
        for key in keys:
            ids[key.kind, key.company_id].add(key.entity_id)
        blobs: list[bytes] = []
        with self._db(write=False) as db:
            for (kind, company_id), wanted in ids.items():
                entity_ids = sorted(wanted)
                for start in range(0, len(entity_ids), ROWS_PER_TRANSACTION):
                    chunk = entity_ids[start : start + ROWS_PER_TRANSACTION]
                    sql = SELECT_STATES.format(ids=_placeholders(len(chunk)))
                    rows = db.execute(sql, (kind, company_id, *chunk))
                    blobs += [blob for (blob,) in rows]
        states = map(decode_state, blobs)
        return {state.key: state for state in states}

    def save_states(self, states: Iterable[EntityState]) -> None:
        with self._db() as db:
            db.executemany(UPSERT_STATE, state_rows(states))

    def company_states(self, kind: EntityKind, company_id: int) -> list[EntityState]:
        with self._db(write=False) as db:
            blobs = [
                row[0]
                for row in db.execute(
                    "SELECT state FROM entity_state WHERE kind = ? AND company_id = ? ORDER BY entity_id",
                    (kind, company_id),
                )
            ]
        return [decode_state(blob) for blob in blobs]

    def state_counts(self) -> dict[str, int]:
        with self._db(write=False) as db:
            rows = db.execute("SELECT kind, COUNT(*) FROM entity_state GROUP BY kind ORDER BY kind")
            return {kind: count for kind, count in rows}

    # --- flushes ------------------------------------------------------------------------------------------

    def commit_flush(
        self,
        fence: Fence,
        states: Mapping[EntityKey, EntityState],
        done_ids: Sequence[int],
        company_ids: str,
    ) -> None:
        # In short transactions with pauses between them (the inbox writer waits for none of them long),
        # each refused unless the token is still the newest: every write is made while the hold is ours.
        # States go first: if the hold is lost part way, no event is done yet, or every state is saved,
        # and the events not marked are folded again by the next holder (folding is idempotent).
        at = now_ms()
        self._write_fenced(
            fence, state_rows(states.values()), lambda db, rows: db.executemany(UPSERT_STATE, rows)
        )
        self._write_fenced(
            fence,
            done_ids,
            lambda db, ids: db.execute(MARK_DONE.format(ids=_placeholders(len(ids))), (at, *ids)),
        )
        with self._db() as db:
            self._check_fence(db, fence)
            db.execute(RECORD_OK, (fence.name, company_ids, at))

    def _write_fenced(
        self,
        fence: Fence,
        rows: Sequence[T],
        write: Callable[[sqlite3.Connection, Sequence[T]], object],
    ) -> None:
        """``write`` the rows in transactions of at most ROWS_PER_TRANSACTION, each refused unless the
        fence's token is still the newest, with a pause after each."""
        for start in range(0, len(rows), ROWS_PER_TRANSACTION):
            with self._db() as db:
                self._check_fence(db, fence)
                write(db, rows[start : start + ROWS_PER_TRANSACTION])
            time.sleep(PAUSE_BETWEEN_S)

    @staticmethod
    def _check_fence(db: sqlite3.Connection, fence: Fence) -> None:
        row = db.execute("SELECT token FROM locks WHERE name = ?", (fence.name,)).fetchone()
        if row is None or row[0] != fence.token:
            raise stale(fence, row and row[0])

    def record_flush(self, spreadsheet_id: str, company_ids: str, error: str | None = None) -> None:
        at = now_ms()
        with self._db() as db:
            if error is None:
                db.execute(RECORD_OK, (spreadsheet_id, company_ids, at))
            else:
                db.execute(RECORD_ERROR, (spreadsheet_id, company_ids, error, at))

    def flushes(self) -> list[FlushRecord]:
        with self._db(write=False) as db:
            rows = db.execute(
                "SELECT spreadsheet_id, company_ids, last_ok_ms, last_error, last_error_ms FROM flushes"
                " ORDER BY spreadsheet_id"
            )
            return [FlushRecord(*row) for row in rows]

    # --- figures ------------------------------------------------------------------------------------------

    ids_settle_ms = 0  # one writer: ids are committed in order

    def newest_event_id(self) -> int:
        with self._db(write=False) as db:
            (newest,) = db.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()
            return int(newest)

    def events_by_company(self, after_id: int, up_to_id: int | None = None) -> dict[int, int]:
        with self._db(write=False) as db:
            rows = db.execute(
                "SELECT company_id, COUNT(*) FROM events WHERE id > ? AND id <= ? GROUP BY company_id",
                (after_id, MAX_ID if up_to_id is None else up_to_id),
            )
            return dict(rows.fetchall())

    def status_by_company(self, statuses: Sequence[str]) -> dict[int, dict[str, int]]:
        with self._db(write=False) as db:
            rows = db.execute(
                "SELECT company_id, status, COUNT(*) FROM events WHERE status IN (SELECT value FROM json_each(?))"
                " GROUP BY company_id, status",
                (json.dumps(list(statuses)),),
            )
            return nested_counts(rows)

    def backlog(self, status: str) -> list[CompanyLag]:
        with self._db(write=False) as db:
            rows = db.execute(
                "SELECT company_id, COUNT(*), MIN(received_ms) FROM events WHERE status = ?"
                " GROUP BY company_id ORDER BY company_id",
                (status,),
            )
            return [CompanyLag(*row) for row in rows]

    def received_per_minute(self, since_ms: int, minute_ms: int) -> dict[int, int]:
        with self._db(write=False) as db:
            rows = db.execute(
                "SELECT received_ms / ? * ?, COUNT(*) FROM events WHERE received_ms >= ? GROUP BY 1",
                (minute_ms, minute_ms, since_ms),
            )
            return dict(rows.fetchall())

    def latest_failed(self, limit: int) -> list[FailedEvent]:
        with self._db(write=False) as db:
            rows = db.execute(f"{FAILED} WHERE status = 'failed' ORDER BY id DESC LIMIT ?", (limit,))
            return [FailedEvent(*row) for row in rows]

    def newest_failed_by_company(self) -> list[FailedEvent]:
        with self._db(write=False) as db:
            rows = db.execute(f"{FAILED} WHERE id IN ({NEWEST_FAILED}) ORDER BY company_id")
            return [FailedEvent(*row) for row in rows]

    def subjects_waiting(self, status: str) -> tuple[int, int]:
        with self._db(write=False) as db:
            subjects, events = db.execute(SUBJECTS_WAITING, (status,)).fetchone()
            return int(subjects), int(events)


@functools.lru_cache(maxsize=64)
def _placeholders(count: int) -> str:
    """``?, ?, ?`` for ``count`` values."""
    return ", ".join(["?"] * count)


def state_rows(states: Iterable[EntityState]) -> list[tuple[str, int, int, bytes]]:
    """States as ``entity_state`` rows (both backends)."""
    keyed = ((state.key, state) for state in states)
    return [(key.kind, key.company_id, key.entity_id, encode_state(state)) for key, state in keyed]


def stale(fence: Fence, token: int | None) -> StaleFence:
    """The refusal of a flush commit whose fence is no longer its lock's newest hold (both backends)."""
    return StaleFence(
        f"the lock of {fence.name} was taken by another holder (token {token}, ours {fence.token});"
        " nothing saved"
    )
