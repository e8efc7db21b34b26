"""The webhook intake on PostgreSQL: group commits from an async connection pool.

Requests queue up on the event loop; whatever has queued when a connection is free goes to the database
as one transaction (group commit): one multi-row ``INSERT ... ON CONFLICT (dedup_key) DO NOTHING
RETURNING``, with ``synchronous_commit = on``, and a ``NOTIFY`` that wakes idle workers. Each caller's
future is resolved after that commit, so nothing is acknowledged before it is durable. A few commits may
be in flight at once (``store.commit_concurrency``); the requests arriving meanwhile form the next group.

Deduplication holds across replicas writing at the same instant:

* a timestamped event's dedup key is its content key, unique in the table: of two transactions
  inserting the same key, the second waits for the first and then stores nothing;
* an event without a timestamp is a repeat only when it equals the latest timestamp-less event of its
  subject (see :class:`~connector.store.records.InboxRecord`): the transaction first takes a transaction
  advisory lock per subject (in a fixed order), so two replicas judging the same subject take turns and
  the second sees what the first stored.

Two groups that happen to insert the same keys in opposite orders can deadlock; PostgreSQL then aborts
one, which is tried again at once. When the database is unreachable or restarting, callers get
StoreError (503: DooPage delivers again) until the pool has reconnected on its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, Final

import msgspec
import psycopg
import psycopg_pool

from connector.errors import StoreError
from connector.store.pg_schema import check_version
from connector.store.pg_store import COUNT_BY_STATUS, EVENTS_CHANNEL, first_line, store_errors
from connector.store.protocols import CommitWaiter
from connector.store.records import InboxRecord, StatusCount, now_ms
from connector.store.sqlite_writer import first_of_each

__all__ = ["PgIntake"]

log = logging.getLogger(__name__)

DEFAULT_COMMIT_TIMEOUT_S: Final = 5.0
# How often a group is tried again after a deadlock or serialization failure.
CONFLICT_RETRIES: Final = 3

# The rows inserted, and one NOTIFY (on EVENTS_CHANNEL) when there is any: one statement, so that a group
# of timestamped events is one round trip (committed before its answer comes back, in autocommit). The
# rows go as one JSON parameter (see _Row), encoded in C by msgspec and read by PostgreSQL's
# json_to_recordset: psycopg's array dumpers cost twice the client CPU per row (scripts/bench_ingest.py
# --store postgres); the bodies travel in base64, so any bytes come back as they were.
INSERT: Final = """
WITH inserted AS (
    INSERT INTO events (received_ms, endpoint, company_id, event_type, event_ms, body, dedup_key,
        content_key, subject, status, updated_ms)
    SELECT r, e, c, t, m, decode(b, 'base64'), d, k, s, st, r FROM json_to_recordset(%s::json)
        AS rows (r bigint, e text, c bigint, t text, m bigint, b text, d text, k text, s text, st text)
    ON CONFLICT (dedup_key) DO NOTHING
    RETURNING dedup_key
)
SELECT inserted.dedup_key FROM inserted CROSS JOIN (
    SELECT COUNT(pg_notify('doopage_sheets_events', '')) FROM (SELECT 1 FROM inserted LIMIT 1) AS any_row
) AS woken
"""
assert EVENTS_CHANNEL in INSERT


class _Row(msgspec.Struct, frozen=True):
    """One row of the INSERT's JSON (short names: they are repeated in every row)."""

    r: int  # received_ms (also updated_ms)
    e: str  # endpoint
    c: int  # company_id
    t: str  # event_type
    m: int | None  # event_ms
    b: bytes  # body (base64 in JSON)
    d: str  # dedup_key
    k: str  # content_key
    s: str | None  # subject
    st: str  # status


_rows_json = msgspec.json.Encoder()

# One advisory lock per subject, taken in the order of the subquery.
LOCK_SUBJECTS: Final = """
SELECT pg_advisory_xact_lock(h) FROM (
    SELECT DISTINCT hashtextextended(s, 0) AS h FROM unnest(%s::text[]) AS s ORDER BY 1
) AS subjects
"""

LATEST_UNTIMED: Final = """
SELECT DISTINCT ON (company_id, subject) company_id, subject, content_key FROM events
WHERE event_ms IS NULL AND (company_id, subject) IN (SELECT * FROM unnest(%s::bigint[], %s::text[]))
ORDER BY company_id, subject, id DESC
"""

PROBE: Final = (
    "INSERT INTO probe (id, at_ms) VALUES (1, %s) ON CONFLICT (id) DO UPDATE SET at_ms = excluded.at_ms"
)

_Write = tuple[list[InboxRecord], asyncio.Future[list[bool]]]


class PgIntake(CommitWaiter):
    """The intake on a PostgreSQL database, used from one event loop (the pool opens on first use)."""

    def __init__(self, conninfo: str, commit_timeout_s: float, concurrency: int = 2) -> None:
        self._conninfo = conninfo
        self.commit_timeout_s = commit_timeout_s
        self._concurrency = concurrency
        self._pool: psycopg_pool.AsyncConnectionPool[Any] | None = None
        self._queue: list[_Write] = []
        self._in_flight = 0
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self.commits = 0  # transactions committed
        self.records = 0  # records those transactions took (stored or duplicate)

    @classmethod
    def open(
        cls, conninfo: str, commit_timeout_s: float = DEFAULT_COMMIT_TIMEOUT_S, concurrency: int = 2
    ) -> PgIntake:
        """The intake on this database; StoreError now if it cannot be reached or has another schema."""
        with store_errors("cannot open the store"), psycopg.connect(conninfo, connect_timeout=10) as conn:
            check_version(conn)
        return cls(conninfo, commit_timeout_s, concurrency)

    def counts(self) -> list[StatusCount]:
        """Number of stored events by status and event type (a connection of its own: called off the loop)."""
        with store_errors("store"), psycopg.connect(self._conninfo, connect_timeout=5) as conn:
            return [StatusCount(*row) for row in conn.execute(COUNT_BY_STATUS).fetchall()]

    async def aclose(self) -> None:
        """Wait for the commits in flight, then close the pool."""
        self._closed = True
        commits = {task for task in self._tasks if task is not asyncio.current_task()}
        if commits:
            await asyncio.wait(commits, timeout=self.commit_timeout_s)
        _fail(self._queue, StoreError("the intake is closed"))
        self._queue = []
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    def close(self) -> None:
        """Refuse new writes and close the pool (from the event loop: once the commits in flight end)."""
        if self._closed:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._closed = True
            return
        task = loop.create_task(self.aclose())
        self._tasks.add(task)  # a reference, so that it runs to its end
        task.add_done_callback(self._tasks.discard)
        self._closed = True

    # --- group commit -------------------------------------------------------------------------------------

    async def _confirmed(self, records: list[InboxRecord]) -> list[bool]:
        if self._closed:
            raise StoreError("the intake is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[bool]] = loop.create_future()
        self._queue.append((records, future))
        self._schedule()
        # One timer per request (cheaper than wait_for and shield, measured per acknowledgement): the
        # group's commit goes on when it fires, and a result that comes too late is dropped.
        timer = loop.call_later(self.commit_timeout_s, _expire, future, self.commit_timeout_s)
        try:
            return await future
        finally:
            timer.cancel()

    def _schedule(self) -> None:
        """Start a group at the end of this loop turn, if a commit slot is free."""
        if not self._scheduled and self._in_flight < self._concurrency:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._start_group)

    def _start_group(self) -> None:
        self._scheduled = False
        if not self._queue or self._in_flight >= self._concurrency:
            return
        group, self._queue = self._queue, []
        self._in_flight += 1
        task = asyncio.get_running_loop().create_task(self._commit_group(group))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _commit_group(self, group: list[_Write]) -> None:
        records = [record for records, _ in group for record in records]
        try:
            inserted = await self._store(records)
        except StoreError as exc:
            log.error("the intake could not commit %d records: %s", len(records), exc)
            _fail(group, exc)
        except Exception as exc:  # answered as 503 (retry later); the intake lives on
            log.exception("the intake could not commit %d records", len(records))
            _fail(group, StoreError(f"the intake could not commit: {type(exc).__name__}"))
        else:
            self.commits += 1
            self.records += len(records)
            start = 0
            for part, future in group:
                end = start + len(part)
                if not future.done():
                    future.set_result(inserted[start:end])
                start = end
        finally:
            self._in_flight -= 1
            if self._queue:
                self._schedule()

    async def _connected_pool(self) -> psycopg_pool.AsyncConnectionPool[Any]:
        if self._pool is None:
            self._pool = psycopg_pool.AsyncConnectionPool(
                self._conninfo,
                min_size=1,
                max_size=self._concurrency + 1,
                kwargs={"autocommit": True, "connect_timeout": 5},
                configure=_configure,
                # No check when lending a connection (a round trip per group): a connection the
                # database dropped fails its group (503, delivered again) and is replaced.
                timeout=self.commit_timeout_s,
                name="doopage-sheets-intake",
                open=False,
            )
            await self._pool.open()
        return self._pool

    async def _store(self, records: list[InboxRecord]) -> list[bool]:
        pool = await self._connected_pool()
        # A group of timestamped events is one statement, its own transaction; one with events without
        # a timestamp takes locks and reads first, in an explicit transaction.
        explicit = any(record.repeatable for record in records)
        for attempt in range(CONFLICT_RETRIES + 1):
            try:
                async with pool.connection() as conn:
                    if not explicit:
                        return await insert_group(conn, records)
                    async with conn.transaction():
                        return await insert_group(conn, records)
            except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure):
                if attempt == CONFLICT_RETRIES:
                    raise StoreError("the intake's transaction kept conflicting with another") from None
            except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
                raise StoreError(first_line(exc)) from exc
        raise AssertionError("unreachable")


async def _configure(conn: psycopg.AsyncConnection[Any]) -> None:
    await conn.execute("SET synchronous_commit = on")


async def insert_group(conn: psycopg.AsyncConnection[Any], records: list[InboxRecord]) -> list[bool]:
    """Store records in arrival order (inside the caller's transaction when any has no timestamp); for
    each, whether it is new (the first of equal keys wins). No record at all writes the probe row (a
    writability check)."""
    if not records:
        await conn.execute(PROBE, (now_ms(),))
        return []
    keys = await _dedup_keys(conn, records)
    rows = [(record, key) for record, key in zip(records, keys, strict=True) if key is not None]
    inserted: set[str] = set()
    if rows:
        cursor = await conn.execute(INSERT, (_rows(rows),))
        inserted = {key for (key,) in await cursor.fetchall()}
    return first_of_each(keys, inserted)


async def _dedup_keys(conn: psycopg.AsyncConnection[Any], records: Sequence[InboxRecord]) -> list[str | None]:
    """Each record's dedup key; None for a timestamp-less record that repeats its subject's latest."""
    untimed = sorted({(r.company_id, r.subject or "") for r in records if r.repeatable})
    if not untimed:
        return [record.content_key for record in records]
    await conn.execute(LOCK_SUBJECTS, ([f"{company}:{subject}" for company, subject in untimed],))
    cursor = await conn.execute(
        LATEST_UNTIMED, ([company for company, _ in untimed], [subject for _, subject in untimed])
    )
    latest: dict[tuple[int, str], str] = {(c, s): k for c, s, k in await cursor.fetchall()}
    keys: list[str | None] = []
    for record in records:
        if not record.repeatable:
            keys.append(record.content_key)
            continue
        subject = (record.company_id, record.subject or "")
        if latest.get(subject) == record.content_key:
            keys.append(None)
        else:
            keys.append(f"{record.content_key}@{record.received_ms}")
            latest[subject] = record.content_key
    return keys


def _rows(rows: Sequence[tuple[InboxRecord, str]]) -> str:
    """The INSERT's JSON parameter."""
    return _rows_json.encode(
        [
            _Row(
                r.received_ms,
                r.endpoint,
                r.company_id,
                r.event_type,
                r.event_ms,
                r.body,
                key,
                r.content_key,
                r.subject,
                r.status,
            )
            for r, key in rows
        ]
    ).decode()


def _expire(future: asyncio.Future[list[bool]], timeout_s: float) -> None:
    """Answer a request whose commit was not confirmed in time (503: DooPage delivers it again)."""
    if not future.done():
        log.error("a commit was not confirmed within %.1f s; answering 503", timeout_s)
        future.set_exception(StoreError(f"the commit was not confirmed within {timeout_s:g} s"))


def _fail(group: list[_Write], error: StoreError) -> None:
    for _, future in group:
        if not future.done():
            future.set_exception(error)
