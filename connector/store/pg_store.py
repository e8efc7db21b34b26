"""The worker's side of the PostgreSQL store: claims, spreadsheet locks, entity state and flush records.

The same design as the SQLite store (:mod:`connector.store.sqlite_store`), for any number of worker
processes on any number of hosts:

* a claim leases the oldest pending events with ``FOR UPDATE SKIP LOCKED``: two workers claiming at once
  take different events instead of waiting for each other;
* a lock row is never deleted, so its fencing token only grows; the fenced commit locks the row
  (``FOR UPDATE``) while it checks the token, so no acquisition slips between the check and the commit;
* every statement gets the lease times from the caller's clock (hosts keep their clocks in step with NTP;
  leases are seconds long), while safety never depends on clocks: a late writer is refused by its token.

Connections come from a small pool (a flush and its heartbeat thread run at the same time); a broken one
(the database restarted) is replaced, and any database error is raised as StoreError, which the worker
logs and retries. An idle worker sleeps until the intake's ``NOTIFY`` says events arrived
(:meth:`PgStore.wait_for_work`), with its poll interval as the fallback.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Final, Literal

import psycopg
import psycopg_pool

from connector.errors import StoreError
from connector.store.pg_schema import check_version
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
from connector.store.sqlite_store import stale, state_rows
from connector.sync.state import EntityKey, EntityKind, EntityState, decode_state

__all__ = ["EVENTS_CHANNEL", "PgStore", "first_line", "open_pool", "store_errors"]

log = logging.getLogger(__name__)

# The channel the intake notifies when it stored new events.
EVENTS_CHANNEL: Final = "doopage_sheets_events"
# How long an idle worker (nothing pending at its last look) sleeps when no notification comes.
IDLE_WAIT_S: Final = 5.0
# How long a caller waits for a connection from the pool before StoreError.
POOL_TIMEOUT_S: Final = 10.0

PENDING_WORK: Final = """
SELECT company_id, COUNT(*), MIN(received_ms) FROM events
WHERE status = 'pending' AND (lease_until IS NULL OR lease_until <= %(at)s)
GROUP BY company_id ORDER BY company_id
"""

ANY_PENDING: Final = "SELECT EXISTS (SELECT 1 FROM events WHERE status = 'pending')"

# The oldest claimable events of some companies (skipping rows another claim has locked), as long as the
# bodies before each stay under a size.
CLAIM: Final = """
UPDATE events SET lease_owner = %(owner)s, lease_until = %(until)s, attempts = attempts + 1
WHERE id IN (
    SELECT id FROM (
        SELECT id, SUM(octet_length(body)) OVER (ORDER BY id) - octet_length(body) AS before
        FROM (
            SELECT id, body FROM events
            WHERE status = 'pending' AND (lease_until IS NULL OR lease_until <= %(at)s)
                AND company_id = ANY(%(companies)s)
            ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED
        ) AS free
    ) AS sized WHERE before < %(max_bytes)s
)
RETURNING id, received_ms, endpoint, company_id, event_type, event_ms, body, dedup_key, attempts
"""

CLAIM_SUBJECTS: Final = """
UPDATE events SET lease_owner = %(owner)s, lease_until = %(until)s, attempts = attempts + 1
WHERE status = %(status)s AND (lease_until IS NULL OR lease_until <= %(at)s) AND subject IN (
    SELECT subject FROM events
    WHERE status = %(status)s AND (lease_until IS NULL OR lease_until <= %(at)s)
    GROUP BY subject ORDER BY MIN(id) LIMIT %(subjects)s
)
RETURNING id, received_ms, endpoint, company_id, event_type, event_ms, body, dedup_key, attempts
"""

EVENTS_OF: Final = """
SELECT id, received_ms, endpoint, company_id, event_type, event_ms, body, dedup_key, attempts FROM events WHERE company_id = %s AND status != 'unknown' AND id > %s ORDER BY id LIMIT %s
"""

# A parked event as FailedEvent, and the newest parked event of each company.
FAILED: Final = (
    "SELECT id, company_id, event_type, received_ms, attempts, COALESCE(last_error, '') FROM events"
)
NEWEST_FAILED: Final = "SELECT MAX(id) FROM events WHERE status = 'failed' GROUP BY company_id"
MAX_ID: Final = 2**63 - 1
SUBJECTS_WAITING: Final = """
SELECT COUNT(*), COALESCE(SUM(n), 0) FROM (
    SELECT COUNT(*) AS n FROM events WHERE status = %s GROUP BY company_id, subject
) AS waiting
"""

COUNT_BY_STATUS: Final = """
SELECT status, event_type, COUNT(*) FROM events GROUP BY status, event_type ORDER BY status, event_type
"""

ACQUIRE: Final = """
INSERT INTO locks AS l (name, owner, until_ms, token) VALUES (%(name)s, %(owner)s, %(until)s, 1)
ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, until_ms = excluded.until_ms, token = l.token + 1
WHERE l.until_ms <= %(at)s
RETURNING token
"""

UPSERT_STATE: Final = """
INSERT INTO entity_state (kind, company_id, entity_id, state) VALUES (%s, %s, %s, %s)
ON CONFLICT (kind, company_id, entity_id) DO UPDATE SET state = excluded.state
"""

RECORD_OK: Final = """
INSERT INTO flushes (spreadsheet_id, company_ids, last_ok_ms) VALUES (%s, %s, %s)
ON CONFLICT (spreadsheet_id) DO UPDATE SET company_ids = excluded.company_ids, last_ok_ms = excluded.last_ok_ms
"""

RECORD_ERROR: Final = """
INSERT INTO flushes (spreadsheet_id, company_ids, last_error, last_error_ms) VALUES (%s, %s, %s, %s)
ON CONFLICT (spreadsheet_id) DO UPDATE SET company_ids = excluded.company_ids,
    last_error = excluded.last_error, last_error_ms = excluded.last_error_ms
"""


def _configure(conn: psycopg.Connection[Any]) -> None:
    # Durable commits whatever the server's default; the pool keeps connections in autocommit between uses.
    conn.execute("SET synchronous_commit = on")


def open_pool(conninfo: str, max_size: int, name: str) -> psycopg_pool.ConnectionPool[Any]:
    """A pool of connections to the store's database, checked to be alive when handed out."""
    pool: psycopg_pool.ConnectionPool[Any] = psycopg_pool.ConnectionPool(
        conninfo,
        min_size=1,
        max_size=max_size,
        kwargs={"autocommit": True, "connect_timeout": 5},
        configure=_configure,
        check=psycopg_pool.ConnectionPool.check_connection,
        timeout=POOL_TIMEOUT_S,
        name=name,
        open=False,
    )
    try:
        pool.open(wait=True, timeout=POOL_TIMEOUT_S)
    except psycopg_pool.PoolTimeout as exc:
        pool.close()
        raise StoreError(f"cannot connect to the database: {first_line(exc)}") from exc
    return pool


@contextlib.contextmanager
def store_errors(what: str) -> Iterator[None]:
    """Raise database and pool errors as StoreError."""
    try:
        yield
    except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
        raise StoreError(f"{what}: {first_line(exc)}") from exc


def first_line(exc: BaseException) -> str:
    """An error's first line (psycopg's messages go on with details and hints)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class PgStore:
    """Every worker role on a PostgreSQL database (see :class:`~connector.store.protocols.WorkStore`)."""

    def __init__(self, pool: psycopg_pool.ConnectionPool[Any], conninfo: str) -> None:
        self._pool = pool
        self._conninfo = conninfo
        self._idle = False  # whether the last look for work found nothing pending
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._listener: threading.Thread | None = None

    @classmethod
    def open(cls, conninfo: str, pool_size: int = 2, config: str = "") -> PgStore:
        """A store on this database; StoreError if it cannot be reached or has another schema version
        (``config``: the settings file, named in the command the error says to run)."""
        pool = open_pool(conninfo, max(pool_size, 2), "doopage-sheets-worker")
        try:
            with store_errors("cannot open the store"), pool.connection() as conn:
                check_version(conn, config)
        except StoreError:
            pool.close()
            raise
        return cls(pool, conninfo)

    def close(self) -> None:
        """Release the connections; the listening thread ends within half a second, on its own."""
        self._closed.set()
        self._wake.set()
        self._pool.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection in a transaction, committed at the end; errors as StoreError."""
        with store_errors("store"), self._pool.connection() as conn, conn.transaction():
            yield conn

    def _rows(self, sql: Any, params: Any = None) -> list[tuple[Any, ...]]:
        with self._tx() as conn:
            return conn.execute(sql, params).fetchall()

    def _changed(self, sql: Any, params: Any = None) -> int:
        with self._tx() as conn:
            return conn.execute(sql, params).rowcount

    # --- waking up --------------------------------------------------------------------------------------

    def wait_for_work(self, stop: threading.Event, timeout_s: float) -> None:
        """Sleep ``timeout_s`` while events are pending; when none at all was at the last look, sleep until
        the intake notifies new events (at most IDLE_WAIT_S). ``stop`` ends either wait early."""
        if self._listener is None:
            self._listener = threading.Thread(target=self._listen, name="store-listen", daemon=True)
            self._listener.start()
        if not self._idle:  # events are waiting to become due: notifications change nothing
            stop.wait(timeout_s)
            return
        step = min(timeout_s, 0.1)
        waited = 0.0
        while waited < max(timeout_s, IDLE_WAIT_S) and not stop.is_set():
            if self._wake.wait(step):
                break
            waited += step
        # A notification from before the last look at the work costs one pass at most.
        self._wake.clear()

    def _listen(self) -> None:
        """LISTEN on the events channel and set the wake flag on each notification, reconnecting."""
        while not self._closed.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {EVENTS_CHANNEL}")
                    self._wake.set()  # events may have arrived while not listening
                    while not self._closed.is_set():
                        for _ in conn.notifies(timeout=0.5, stop_after=1):
                            self._wake.set()
            except psycopg.Error as exc:
                log.debug("listening for new events failed (%s); trying again", first_line(exc))
                self._wake.set()
                self._closed.wait(1.0)

    # --- claims -----------------------------------------------------------------------------------------

    def pending_work(self, now: int | None = None) -> list[CompanyLag]:
        at = now_ms() if now is None else now
        rows = self._rows(PENDING_WORK, {"at": at})
        # Idle only when nothing is pending at all: leased or backed-off events come back without a
        # notification, so while there are any the worker keeps to its poll interval.
        self._idle = not rows and not self._rows(ANY_PENDING)[0][0]
        return [CompanyLag(*row) for row in rows]

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
        params = {
            "owner": owner,
            "until": at + lease_ms,
            "at": at,
            "companies": [int(c) for c in company_ids],
            "limit": max_events,
            "max_bytes": max_bytes,
        }
        return _events(self._rows(CLAIM, params))

    def claim_subjects(
        self, owner: str, status: str, subjects: int, lease_ms: int, now: int | None = None
    ) -> list[StoredEvent]:
        at = now_ms() if now is None else now
        params = {"owner": owner, "until": at + lease_ms, "status": status, "at": at, "subjects": subjects}
        return _events(self._rows(CLAIM_SUBJECTS, params))

    def renew_claims(self, owner: str, lease_ms: int, now: int | None = None) -> int:
        at = now_ms() if now is None else now
        return self._changed(
            "UPDATE events SET lease_until = %s WHERE lease_owner = %s AND status IN ('pending', 'backfill')",
            (at + lease_ms, owner),
        )

    def finish(self, owner: str, ids: Iterable[int], outcome: Outcome, error: str | None = None) -> int:
        return self._changed(
            "UPDATE events SET status = %s, last_error = %s, updated_ms = %s, lease_owner = NULL,"
            " lease_until = NULL WHERE id = ANY(%s) AND lease_owner = %s AND status IN ('pending', 'backfill')",
            (outcome, error, now_ms(), list(ids), owner),
        )

    def release(
        self, owner: str, ids: Iterable[int], retry_at_ms: int | None = None, error: str | None = None
    ) -> None:
        self._changed(
            "UPDATE events SET lease_owner = NULL, lease_until = %s, last_error = %s"
            " WHERE id = ANY(%s) AND lease_owner = %s AND status IN ('pending', 'backfill')",
            (retry_at_ms, error, list(ids), owner),
        )

    def park_unrouted(self, company_ids: Sequence[int], now: int | None = None) -> int:
        at = now_ms() if now is None else now
        return self._changed(
            "UPDATE events SET status = 'unrouted', updated_ms = %s WHERE status = 'pending'"
            " AND (lease_until IS NULL OR lease_until <= %s) AND company_id = ANY(%s)",
            (at, at, [int(c) for c in company_ids]),
        )

    def requeue(self, status: Literal["failed", "unrouted"], company_id: int | None = None) -> int:
        sql = (
            "UPDATE events SET status = 'pending', lease_until = NULL, last_error = NULL, updated_ms = %s"
            " WHERE status = %s"
        )
        params: tuple[object, ...] = (now_ms(), status)
        if company_id is not None:
            sql += " AND company_id = %s"
            params += (company_id,)
        return self._changed(sql, params)

    def lease_owners(self, now: int | None = None) -> set[str]:
        at = now_ms() if now is None else now
        rows = self._rows(
            "SELECT lease_owner FROM events WHERE lease_owner IS NOT NULL AND lease_until > %(at)s"
            " AND status IN ('pending', 'backfill') UNION SELECT owner FROM locks WHERE until_ms > %(at)s",
            {"at": at},
        )
        return {owner for (owner,) in rows}

    def expire_owner(self, owner: str) -> None:
        with self._tx() as conn:
            conn.execute(
                "UPDATE events SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = %s AND status IN ('pending', 'backfill')",
                (owner,),
            )
            conn.execute("UPDATE locks SET until_ms = 0 WHERE owner = %s", (owner,))

    def counts(self) -> list[StatusCount]:
        return [StatusCount(*row) for row in self._rows(COUNT_BY_STATUS)]

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
            sql += " AND company_id = %s"
            params = (company_id,)
        sql += " ORDER BY id LIMIT %s"
        return [FailedEvent(*row) for row in self._rows(sql, (*params, limit))]

    def events_of(self, company_id: int, batch: int = 1000) -> Iterator[list[StoredEvent]]:
        after = 0
        while True:
            events = _events(self._rows(EVENTS_OF, (company_id, after, batch)))
            if not events:
                return
            yield events
            after = events[-1].id

    # --- locks --------------------------------------------------------------------------------------------

    def take_lock(self, name: str, owner: str, ttl_ms: int, now: int | None = None) -> Fence | None:
        at = now_ms() if now is None else now
        rows = self._rows(ACQUIRE, {"name": name, "owner": owner, "until": at + ttl_ms, "at": at})
        return Fence(name, owner, int(rows[0][0])) if rows else None

    def renew_lock(self, fence: Fence, ttl_ms: int, now: int | None = None) -> bool:
        at = now_ms() if now is None else now
        return (
            self._changed(
                "UPDATE locks SET until_ms = %s WHERE name = %s AND token = %s AND owner = %s",
                (at + ttl_ms, fence.name, fence.token, fence.owner),
            )
            == 1
        )

    def drop_lock(self, fence: Fence) -> None:
        self._changed(
            "UPDATE locks SET until_ms = 0 WHERE name = %s AND token = %s", (fence.name, fence.token)
        )

    # --- entity state -------------------------------------------------------------------------------------

    def load(self, keys: Iterable[EntityKey]) -> dict[EntityKey, EntityState]:
        wanted = set(keys)
        if not wanted:
            return {}
        rows = self._rows(
            "SELECT s.state FROM entity_state s"
            " JOIN unnest(%s::text[], %s::bigint[], %s::bigint[]) AS k(kind, company_id, entity_id)"
            " USING (kind, company_id, entity_id)",
            (
                [k.kind for k in wanted],
                [k.company_id for k in wanted],
                [k.entity_id for k in wanted],
            ),
        )
        states = (decode_state(bytes(state)) for (state,) in rows)
        return {state.key: state for state in states}

    def save_states(self, states: Iterable[EntityState]) -> None:
        rows = state_rows(states)
        if rows:
            with self._tx() as conn, conn.cursor() as cursor:
                cursor.executemany(UPSERT_STATE, rows)

    def company_states(self, kind: EntityKind, company_id: int) -> list[EntityState]:
        rows = self._rows(
            "SELECT state FROM entity_state WHERE kind = %s AND company_id = %s ORDER BY entity_id",
            (kind, company_id),
        )
        return [decode_state(bytes(state)) for (state,) in rows]

    def state_counts(self) -> dict[str, int]:
        rows = self._rows("SELECT kind, COUNT(*) FROM entity_state GROUP BY kind ORDER BY kind")
        return {kind: count for kind, count in rows}

    # --- flushes ------------------------------------------------------------------------------------------

    def commit_flush(
        self,
        fence: Fence,
        states: Mapping[EntityKey, EntityState],
        done_ids: Sequence[int],
        company_ids: str,
    ) -> None:
        at = now_ms()
        with self._tx() as conn:
            # Locking the row holds off any acquisition of the lock until this transaction ends.
            row = conn.execute("SELECT token FROM locks WHERE name = %s FOR UPDATE", (fence.name,)).fetchone()
            if row is None or row[0] != fence.token:
                raise stale(fence, row and row[0])
            rows = state_rows(states.values())
            if rows:
                with conn.cursor() as cursor:
                    cursor.executemany(UPSERT_STATE, rows)
            conn.execute(
                "UPDATE events SET status = 'done', last_error = NULL, updated_ms = %s, lease_owner = NULL,"
                " lease_until = NULL WHERE id = ANY(%s) AND status IN ('pending', 'backfill')",
                (at, list(done_ids)),
            )
            conn.execute(RECORD_OK, (fence.name, company_ids, at))

    def record_flush(self, spreadsheet_id: str, company_ids: str, error: str | None = None) -> None:
        at = now_ms()
        if error is None:
            self._changed(RECORD_OK, (spreadsheet_id, company_ids, at))
        else:
            self._changed(RECORD_ERROR, (spreadsheet_id, company_ids, error, at))

    def flushes(self) -> list[FlushRecord]:
        rows = self._rows(
            "SELECT spreadsheet_id, company_ids, last_ok_ms, last_error, last_error_ms FROM flushes"
            " ORDER BY spreadsheet_id"
        )
        return [FlushRecord(*row) for row in rows]

    # --- figures ------------------------------------------------------------------------------------------

    # Concurrent intake transactions commit in any order: a lower id may appear until the transaction
    # that took it ends, which the intake's commit time limit and the pool's bound to seconds.
    ids_settle_ms = 60_000

    def newest_event_id(self) -> int:
        ((newest,),) = self._rows("SELECT COALESCE(MAX(id), 0) FROM events")
        return int(newest)

    def events_by_company(self, after_id: int, up_to_id: int | None = None) -> dict[int, int]:
        rows = self._rows(
            "SELECT company_id, COUNT(*) FROM events WHERE id > %s AND id <= %s GROUP BY company_id",
            (after_id, MAX_ID if up_to_id is None else up_to_id),
        )
        return {company_id: count for company_id, count in rows}

    def status_by_company(self, statuses: Sequence[str]) -> dict[int, dict[str, int]]:
        rows = self._rows(
            "SELECT company_id, status, COUNT(*) FROM events WHERE status = ANY(%s) GROUP BY company_id, status",
            (list(statuses),),
        )
        return nested_counts(rows)

    def backlog(self, status: str) -> list[CompanyLag]:
        rows = self._rows(
            "SELECT company_id, COUNT(*), MIN(received_ms) FROM events WHERE status = %s"
            " GROUP BY company_id ORDER BY company_id",
            (status,),
        )
        return [CompanyLag(*row) for row in rows]

    def received_per_minute(self, since_ms: int, minute_ms: int) -> dict[int, int]:
        rows = self._rows(
            "SELECT received_ms / %s * %s, COUNT(*) FROM events WHERE received_ms >= %s GROUP BY 1",
            (minute_ms, minute_ms, since_ms),
        )
        return {minute: count for minute, count in rows}

    def latest_failed(self, limit: int) -> list[FailedEvent]:
        rows = self._rows(f"{FAILED} WHERE status = 'failed' ORDER BY id DESC LIMIT %s", (limit,))
        return [FailedEvent(*row) for row in rows]

    def newest_failed_by_company(self) -> list[FailedEvent]:
        rows = self._rows(f"{FAILED} WHERE id IN ({NEWEST_FAILED}) ORDER BY company_id")
        return [FailedEvent(*row) for row in rows]

    def subjects_waiting(self, status: str) -> tuple[int, int]:
        ((subjects, events),) = self._rows(SUBJECTS_WAITING, (status,))
        return int(subjects), int(events)


def _events(rows: list[tuple[Any, ...]]) -> list[StoredEvent]:
    events = [
        StoredEvent(id_, received, endpoint, company, kind, event_ms, bytes(body), key, attempts)
        for id_, received, endpoint, company, kind, event_ms, body, key, attempts in rows
    ]
    return sorted(events, key=lambda e: e.id)
