"""What only the PostgreSQL backend has: replicas deduplicating at the same instant, versioned migrations
(and the refusal of another version), the wake-up of idle workers, and copying a SQLite store in."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import defaultdict
from pathlib import Path

import msgspec
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.errors import StoreError
from connector.store.copy import copy_store
from connector.store.pg_intake import PgIntake
from connector.store.pg_schema import check_version, known_version, migrate
from connector.store.pg_store import PgStore
from connector.store.records import InboxRecord
from connector.store.sqlite_intake import SqliteInbox
from connector.store.sqlite_store import SqliteStore
from connector.sync.state import EntityKey, fold_batch
from tests.state.conftest import sample
from tests.store.conftest import record
from tests.store.postgres import fresh_schema


def delivery(content: int, subject: int, timed: bool, received_ms: int) -> InboxRecord:
    """A delivery of event ``content`` about customer ``subject``, with or without a timestamp."""
    return InboxRecord(
        received_ms=received_ms,
        endpoint="main",
        company_id=1,
        event_type="customer_updated" if timed else "tag_set",
        event_ms=content if timed else None,
        body=b"{}",
        content_key=f"{'timed' if timed else 'untimed'}-{content}",
        subject=f"customer:{subject}",
    )


async def _deliver_to_two_replicas(url: str, waves: list[list[InboxRecord]]) -> list[bool]:
    """Each wave delivered to both replicas at the same instant (each stamps its own receive time);
    every answer, in order."""
    replicas = [PgIntake.open(url, concurrency=2), PgIntake.open(url, concurrency=2)]
    try:
        answers: list[bool] = []
        for wave in waves:
            puts = [
                replica.put(msgspec.structs.replace(r, received_ms=r.received_ms + n))
                for r in wave
                for n, replica in enumerate(replicas)
            ]
            answers += await asyncio.gather(*puts)
        return answers
    finally:
        for replica in replicas:
            await replica.aclose()


deliveries = st.lists(
    st.lists(st.tuples(st.integers(0, 3), st.integers(1, 2), st.booleans()), min_size=1, max_size=6),
    min_size=1,
    max_size=5,
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(waves=deliveries)
def test_two_replicas_receiving_the_same_deliveries_at_once_store_each_event_once(
    waves: list[list[tuple[int, int, bool]]],
) -> None:
    with fresh_schema() as url:
        records = [
            [
                delivery(content, subject, timed, 1_000 * w + 10 * i)
                for i, (content, subject, timed) in enumerate(wave)
            ]
            for w, wave in enumerate(waves)
        ]
        answers = asyncio.run(_deliver_to_two_replicas(url, records))
        with psycopg.connect(url) as conn:
            rows = conn.execute("SELECT content_key, subject, event_ms FROM events ORDER BY id").fetchall()
    # As many "stored" answers as rows: an answer never claims a row that is not there, or hides one.
    assert sum(answers) == len(rows)
    # Nothing is lost: every event delivered is stored.
    assert {key for key, _, _ in rows} == {r.content_key for wave in records for r in wave}
    # A timestamped event is stored once, whoever received it.
    timed = [key for key, _, event_ms in rows if event_ms is not None]
    assert len(timed) == len(set(timed))
    # An event without a timestamp is never stored right after an equal one of its subject: the two
    # replicas' copies of one delivery count once.
    by_subject: dict[str, list[str]] = defaultdict(list)
    for key, subject, event_ms in rows:
        if event_ms is None:
            by_subject[subject].append(key)
    for keys in by_subject.values():
        assert all(a != b for a, b in itertools.pairwise(keys)), keys


def test_migrate_is_idempotent_and_safe_from_several_hosts_at_once() -> None:
    with fresh_schema(migrated=False) as url:
        results: list[list[str]] = []
        threads = [threading.Thread(target=lambda: results.append(migrate(url))) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(len(applied) for applied in results) == [0, 0, 0, known_version()]
        assert migrate(url) == []
        with psycopg.connect(url) as conn:
            check_version(conn)


def test_a_database_without_the_schema_or_with_another_version_is_refused_with_what_to_run() -> None:
    with fresh_schema(migrated=False) as url:
        with pytest.raises(StoreError, match="no doopage-sheets schema yet: run `doopage-sheets migrate"):
            PgStore.open(url)
        with pytest.raises(StoreError, match="run `doopage-sheets migrate"):
            PgIntake.open(url)
        migrate(url)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO schema_version (version, name) VALUES (%s, 'from a newer program')", (99,)
            )
        with pytest.raises(StoreError, match=r"newer than this program's .* upgrade doopage-sheets"):
            PgStore.open(url)
        with pytest.raises(StoreError, match="newer than this program's"):
            migrate(url)


def test_an_idle_worker_wakes_when_events_arrive() -> None:
    with fresh_schema() as url:
        store = PgStore.open(url)
        try:
            assert store.pending_work() == []  # idle: it would sleep IDLE_WAIT_S (5 s) without a notification
            stop = threading.Event()
            store.wait_for_work(stop, 0.01)  # starts listening
            woke = threading.Event()

            def wait() -> None:
                store.wait_for_work(stop, 0.01)
                woke.set()

            waiter = threading.Thread(target=wait)
            waiter.start()
            time.sleep(0.3)
            assert not woke.is_set()

            async def put() -> None:
                intake = PgIntake.open(url)
                try:
                    await intake.put(record(1))
                finally:
                    await intake.aclose()

            asyncio.run(put())
            assert woke.wait(3.0), "the notification did not wake the worker"
            stop.set()
            waiter.join()
        finally:
            store.close()


def test_a_sqlite_store_is_copied_into_postgres_with_states_flushes_and_lock_tokens(tmp_path: Path) -> None:
    async def fill() -> None:
        inbox = SqliteInbox.open(tmp_path)
        try:
            await inbox.put_many([record(n) for n in range(5)] + [record(9, status="unknown")])
        finally:
            inbox.close()

    asyncio.run(fill())
    source = SqliteStore.open(tmp_path)
    try:
        states = fold_batch({}, [sample("customer_created", 0)])
        source.save_states(states.values())
        fence = source.take_lock("sheet-1", "old", ttl_ms=10**12)
        assert fence is not None
        source.claim("old", [1], 10**12, max_events=2, max_bytes=10**9)
        source.record_flush("sheet-1", "1", error="429 quota")
        counts = source.counts()
    finally:
        source.close()
    with fresh_schema(migrated=False) as url:
        report = copy_store(str(tmp_path), url)
        assert report.rows == {"events": 6, "entity_state": 1, "flushes": 1, "locks": 1}
        store = PgStore.open(url)
        try:
            assert store.counts() == counts
            assert store.load([EntityKey("customer", 1, 1)]) == states
            assert store.flushes()[0].last_error == "429 quota"
            assert store.lease_owners() == set()  # no lease or hold survives the move
            assert len(store.claim("new", [1], 1_000, max_events=100, max_bytes=10**9)) == 5
            taken = store.take_lock("sheet-1", "new", ttl_ms=1_000)
            assert taken is not None
            assert taken.token > fence.token
        finally:
            store.close()

        async def put_more() -> bool:
            intake = PgIntake.open(url)
            try:
                return await intake.put(record(7))
            finally:
                await intake.aclose()

        assert asyncio.run(put_more())  # new events get ids after the copied ones
        with pytest.raises(StoreError, match="already holds events"):
            copy_store(str(tmp_path), url)
