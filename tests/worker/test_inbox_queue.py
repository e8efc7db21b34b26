"""Claiming inbox events with leases, settling them, and spreadsheet locks."""

from __future__ import annotations

import asyncio

import pytest

from connector.store.inbox import InboxRecord
from connector.store.sqlite_intake import SqliteInbox
from connector.store.sqlite_queue import open_queue


def record(n: int, company_id: int = 1, status: str = "pending") -> InboxRecord:
    return InboxRecord(
        received_ms=1_000 + n,
        endpoint="main",
        company_id=company_id,
        event_type="customer_created",
        event_ms=n,
        body=b"{}",
        content_key=f"key-{n}",
        status=status,
    )


@pytest.fixture
def queue(tmp_path):
    inbox = SqliteInbox.open(tmp_path)
    records = [record(n, company_id=1 + n % 2) for n in range(10)] + [record(99, status="unknown")]
    asyncio.run(inbox.put_many(records))
    inbox.close()
    q = open_queue(tmp_path)
    yield q
    q.close()


def test_claims_are_exclusive_until_the_lease_expires(queue):
    first = queue.claim("worker-a", limit=4, lease_ms=1_000, now=10_000)
    second = queue.claim("worker-b", limit=100, lease_ms=1_000, now=10_500)
    assert [e.dedup_key for e in first] == ["key-0", "key-1", "key-2", "key-3"]
    assert {e.dedup_key for e in second} == {f"key-{n}" for n in range(4, 10)}  # never the unknown one
    assert queue.claim("worker-c", limit=100, lease_ms=1_000, now=10_900) == []
    # worker-a died: its lease expires and its events are claimed again, counted as a second attempt.
    again = queue.claim("worker-c", limit=100, lease_ms=1_000, now=11_000)
    assert [e.dedup_key for e in again] == ["key-0", "key-1", "key-2", "key-3"]
    assert {e.attempts for e in again} == {2}


def test_done_events_are_never_claimed_again(queue):
    claimed = queue.claim("w", limit=100, lease_ms=1, now=0)
    queue.finish([e.id for e in claimed], "done")
    assert queue.claim("w", limit=100, lease_ms=1, now=10**12) == []
    assert queue.lag() == []


def test_released_events_wait_for_their_retry_time(queue):
    claimed = queue.claim("w", limit=2, lease_ms=60_000, now=0)
    queue.release([e.id for e in claimed], retry_at_ms=5_000)
    early = queue.claim("w", limit=100, lease_ms=60_000, now=4_999)
    assert {e.id for e in early}.isdisjoint(e.id for e in claimed)
    assert [e.id for e in queue.claim("w", limit=100, lease_ms=1, now=5_000)] == [e.id for e in claimed]


def test_failed_events_are_listed_with_their_error_and_can_be_retried(queue):
    claimed = queue.claim("w", limit=100, lease_ms=1, now=0)
    company_2 = [e.id for e in claimed if e.company_id == 2]
    queue.finish(company_2, "failed", error="403 The caller does not have permission")
    failed = queue.failed()
    assert [f.id for f in failed] == company_2
    assert {f.error for f in failed} == {"403 The caller does not have permission"}
    assert queue.failed(company_id=1) == []
    assert queue.requeue("failed", company_id=2) == len(company_2)
    assert queue.failed() == []
    assert [(lag.company_id, lag.pending) for lag in queue.lag()] == [(1, 5), (2, 5)]


def test_unrouted_events_come_back_when_requeued(queue):
    claimed = queue.claim("w", limit=100, lease_ms=1, now=0)
    queue.finish([e.id for e in claimed], "unrouted")
    assert queue.claim("w", limit=100, lease_ms=1, now=10**12) == []
    assert queue.requeue("unrouted") == 10
    assert len(queue.claim("w", limit=100, lease_ms=1, now=10**12)) == 10


def test_a_spreadsheet_lock_has_one_holder_at_a_time(queue):
    assert queue.take_lock("sheet-1", "a", ttl_ms=1_000, now=0)
    assert not queue.take_lock("sheet-1", "b", ttl_ms=1_000, now=500)
    assert queue.take_lock("sheet-1", "a", ttl_ms=1_000, now=600)  # renewal by its holder
    assert queue.take_lock("sheet-2", "b", ttl_ms=1_000, now=600)
    assert queue.take_lock("sheet-1", "b", ttl_ms=1_000, now=1_600)  # expired: taken over
    queue.drop_lock("sheet-1", "a")  # not a's any more: no effect
    assert not queue.take_lock("sheet-1", "a", ttl_ms=1_000, now=1_700)
    queue.drop_lock("sheet-1", "b")
    assert queue.take_lock("sheet-1", "a", ttl_ms=1_000, now=1_700)


def test_replay_reads_every_known_event_of_a_company_in_batches(queue):
    batches = list(queue.events_of(1, batch=2))
    assert [len(b) for b in batches] == [2, 2, 1]
    assert [e.dedup_key for b in batches for e in b] == ["key-0", "key-2", "key-4", "key-6", "key-8"]


def test_flush_outcomes_are_remembered(queue):
    queue.record_flush("sheet-1", "1")
    queue.record_flush("sheet-1", "1", error="429 quota")
    [flush] = queue.flushes()
    assert flush.last_ok_ms is not None
    assert flush.last_error == "429 quota"
