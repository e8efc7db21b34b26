"""The contract every store backend meets: intake dedup, claims, locks with fencing tokens, state, flush
records."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from msgspec.structs import replace

from connector.errors import StaleFence
from connector.store.protocols import WorkStore
from connector.store.records import InboxRecord
from connector.sync.state import EntityKey, fold_batch
from tests.state.conftest import envelope, sample
from tests.store.conftest import Backend, record

ALL = (1, 2)
CUSTOMER = EntityKey("customer", 1, 1)
ORDER = EntityKey("order", 1, 1)


def claim(
    store: WorkStore, owner: str, now: int, companies=ALL, max_events=100, lease_ms=1_000, max_bytes=10**9
):
    return store.claim(owner, companies, lease_ms, max_events=max_events, max_bytes=max_bytes, now=now)


def test_pending_work_counts_claimable_events_per_company(store: WorkStore) -> None:
    assert [(w.company_id, w.pending, w.oldest_received_ms) for w in store.pending_work(0)] == [
        (1, 5, 1_000),
        (2, 5, 1_001),
    ]
    claim(store, "a", now=0, companies=[1])
    assert [w.company_id for w in store.pending_work(500)] == [2]
    assert [w.company_id for w in store.pending_work(1_000)] == [1, 2]  # the lease ran out


def test_claims_are_exclusive_until_the_lease_expires(store: WorkStore) -> None:
    first = claim(store, "worker-a", now=10_000, max_events=4)
    second = claim(store, "worker-b", now=10_500)
    assert [e.dedup_key for e in first] == ["key-0", "key-1", "key-2", "key-3"]
    assert {e.dedup_key for e in second} == {f"key-{n}" for n in range(4, 10)}  # never the unknown one
    assert claim(store, "worker-c", now=10_900) == []
    again = claim(store, "worker-c", now=11_000)  # worker-a's lease expired
    assert [e.dedup_key for e in again] == ["key-0", "key-1", "key-2", "key-3"]
    assert {e.attempts for e in again} == {2}


def test_a_claim_takes_one_companys_events_up_to_a_size(backend: Backend) -> None:
    put, open_store = backend
    put([record(n, body=b"x" * 100) for n in range(10)])
    store = open_store()
    try:
        assert claim(store, "a", now=0, companies=[2]) == []
        # Bodies before the last one taken stay under the bound: 3 x 100 < 250, so 3 events.
        assert [e.dedup_key for e in claim(store, "a", now=0, max_bytes=250)] == ["key-0", "key-1", "key-2"]
        # At least one, however large.
        assert len(claim(store, "b", now=0, max_bytes=1)) == 1
    finally:
        store.close()


def test_renewed_claims_are_not_taken_by_others(store: WorkStore) -> None:
    claimed = claim(store, "a", now=0)
    assert store.renew_claims("a", lease_ms=10**12) == len(claimed)
    assert claim(store, "b", now=5_000) == []


def test_a_large_claim_is_renewed_whole(backend: Backend) -> None:
    # More events than one of the SQLite store's short transactions holds: each is renewed once.
    put, open_store = backend
    put([record(n, company_id=1) for n in range(1_234)])
    store = open_store()
    try:
        claimed = claim(store, "a", now=0, companies=[1], max_events=2_000)
        assert len(claimed) == 1_234
        assert store.renew_claims("a", lease_ms=10**12, now=0) == 1_234
        assert claim(store, "b", now=5_000, companies=[1]) == []
    finally:
        store.close()


def test_a_large_flush_commit_marks_every_event_done_and_saves_every_state(backend: Backend) -> None:
    # More events and states than one of the SQLite store's short transactions holds.
    put, open_store = backend
    put([record(n, company_id=1) for n in range(1_234)])
    store = open_store()
    try:
        fence = store.take_lock("sheet-1", "a", ttl_ms=1_000, now=0)
        assert fence is not None
        claimed = claim(store, "a", now=0, companies=[1], max_events=2_000)
        folded = [
            envelope(n, event_type="customer_updated", timestamp=n, data={"customer": {"id": n}})
            for n in range(1, 1_101)
        ]
        states = fold_batch({}, folded)
        store.commit_flush(fence, states, [e.id for e in claimed[:-2]], "1")
        assert store.load(states) == states
        assert {c.status: c.count for c in store.counts()} == {"done": 1_232, "pending": 2}
        assert [e.id for e in claim(store, "b", now=10**12, companies=[1])] == [e.id for e in claimed[-2:]]
    finally:
        store.close()


def test_finish_and_release_touch_only_events_the_owner_still_leases(store: WorkStore) -> None:
    mine = claim(store, "a", now=0)
    theirs = claim(store, "b", now=2_000)  # a's lease ran out; b holds them now
    assert {e.id for e in theirs} == {e.id for e in mine}
    assert store.finish("a", [e.id for e in mine], "failed", "late") == 0
    store.release("a", [e.id for e in mine], retry_at_ms=10**12)
    assert claim(store, "c", now=2_500) == []  # still b's
    assert store.failed() == []


def test_released_events_wait_for_their_retry_time(store: WorkStore) -> None:
    claimed = claim(store, "w", now=0, max_events=2, lease_ms=60_000)
    store.release("w", [e.id for e in claimed], retry_at_ms=5_000)
    early = claim(store, "w", now=4_999, lease_ms=60_000)
    assert {e.id for e in early}.isdisjoint(e.id for e in claimed)
    assert [e.id for e in claim(store, "w", now=5_000)] == [e.id for e in claimed]


def test_failed_events_are_listed_with_their_error_and_can_be_retried(store: WorkStore) -> None:
    claimed = claim(store, "w", now=0)
    company_2 = [e.id for e in claimed if e.company_id == 2]
    assert store.finish("w", company_2, "failed", error="403 The caller does not have permission") == 5
    failed = store.failed()
    assert [f.id for f in failed] == company_2
    assert {f.error for f in failed} == {"403 The caller does not have permission"}
    assert store.failed(company_id=1) == []
    assert store.requeue("failed", company_id=2) == len(company_2)
    assert store.failed() == []
    assert [(lag.company_id, lag.pending) for lag in store.lag()] == [(1, 5), (2, 5)]


def test_unrouted_events_are_set_aside_and_come_back_when_requeued(store: WorkStore) -> None:
    assert store.park_unrouted([2], now=0) == 5
    assert [w.company_id for w in store.pending_work(0)] == [1]
    assert store.requeue("unrouted") == 5
    assert len(claim(store, "w", now=10**12)) == 10


def test_a_lock_has_one_holder_and_its_token_grows_with_each_hold(store: WorkStore) -> None:
    first = store.take_lock("sheet-1", "a", ttl_ms=1_000, now=0)
    assert first is not None
    assert store.take_lock("sheet-1", "b", ttl_ms=1_000, now=500) is None
    assert store.take_lock("sheet-1", "a", ttl_ms=1_000, now=500) is None  # a hold is renewed, not retaken
    assert store.renew_lock(first, ttl_ms=1_000, now=600)
    assert store.take_lock("sheet-1", "b", ttl_ms=1_000, now=1_500) is None  # renewed until 1,600
    assert store.take_lock("sheet-2", "b", ttl_ms=1_000, now=600) is not None
    second = store.take_lock("sheet-1", "b", ttl_ms=1_000, now=1_600)  # expired: taken over
    assert second is not None
    assert second.token > first.token
    assert not store.renew_lock(first, ttl_ms=1_000, now=1_700)  # a's hold is lost
    store.drop_lock(first)  # not a's any more: no effect
    assert store.take_lock("sheet-1", "a", ttl_ms=1_000, now=1_700) is None
    store.drop_lock(second)
    third = store.take_lock("sheet-1", "a", ttl_ms=1_000, now=1_700)
    assert third is not None
    assert third.token > second.token


def test_a_flush_commit_saves_state_and_marks_events_done_under_the_newest_token(
    store: WorkStore, samples: dict[str, bytes]
) -> None:
    fence = store.take_lock("sheet-1", "a", ttl_ms=1_000, now=0)
    assert fence is not None
    claimed = claim(store, "a", now=0, companies=[1])
    states = fold_batch({}, [sample("customer_created", 0), sample("order_created", 0)])
    store.commit_flush(fence, states, [e.id for e in claimed], "1")
    assert store.load([CUSTOMER, ORDER]) == states
    assert [(c.status, c.count) for c in store.counts() if c.status == "done"] == [("done", 5)]
    assert claim(store, "b", now=10**12, companies=[1]) == []
    [flush] = store.flushes()
    assert (flush.spreadsheet_id, flush.company_ids, flush.last_error) == ("sheet-1", "1", None)


def test_a_commit_with_a_stale_token_is_refused_and_stores_nothing(store: WorkStore) -> None:
    stale = store.take_lock("sheet-1", "a", ttl_ms=1_000, now=0)
    assert stale is not None
    claimed = claim(store, "a", now=0, companies=[1])
    newer = store.take_lock("sheet-1", "b", ttl_ms=1_000, now=5_000)  # a was paused past its lease
    assert newer is not None
    newest_state = fold_batch({}, [sample("customer_closed", 5)])
    store.commit_flush(newer, newest_state, [], "1")
    with pytest.raises(StaleFence):
        store.commit_flush(
            stale, fold_batch({}, [sample("customer_created", 0)]), [e.id for e in claimed], "1"
        )
    assert store.load([CUSTOMER]) == newest_state
    assert not [c for c in store.counts() if c.status == "done"]


def test_saved_states_replace_older_ones_and_are_listed_by_company(store: WorkStore) -> None:
    assert store.load([CUSTOMER, ORDER]) == {}
    store.save_states(fold_batch({}, [sample("customer_created", 0), sample("order_created", 0)]).values())
    later = fold_batch(store.load([CUSTOMER]), [sample("customer_closed", 0)])
    store.save_states(later.values())
    assert store.load([CUSTOMER])[CUSTOMER].last_event.value == "customer_closed"
    assert [s.key for s in store.company_states("order", 1)] == [ORDER]
    assert store.company_states("customer", 2) == []
    assert store.state_counts() == {"customer": 1, "order": 1}


def test_load_finds_every_saved_state_of_many_entities_of_every_kind_and_company(store: WorkStore) -> None:
    # More entities of one kind and company than one statement asks for, two companies, both kinds.
    envelopes = [
        envelope(
            n, event_type="customer_updated", timestamp=n, company_id=company, data={"customer": {"id": n}}
        )
        for company in (1, 2)
        for n in range(1, 1_201)
    ] + [envelope(n, event_type="order_created", timestamp=n, data={"order_id": n}) for n in range(1, 601)]
    saved = fold_batch({}, envelopes)
    store.save_states(saved.values())
    missing = [EntityKey("customer", 1, 5_000), EntityKey("order", 2, 1), EntityKey("customer", 3, 1)]
    wanted = [*saved][::3] + missing
    assert store.load(wanted) == {key: saved[key] for key in wanted if key in saved}
    assert store.load(iter(saved)) == saved  # any iterable of keys
    assert store.load([]) == {}


def test_events_of_a_company_come_in_batches_without_unknown_types(store: WorkStore) -> None:
    batches = list(store.events_of(1, batch=2))
    assert [len(b) for b in batches] == [2, 2, 1]
    assert [e.dedup_key for b in batches for e in b] == ["key-0", "key-2", "key-4", "key-6", "key-8"]


def test_flush_outcomes_are_remembered(store: WorkStore) -> None:
    store.record_flush("sheet-1", "1")
    store.record_flush("sheet-1", "1", error="429 quota")
    [flush] = store.flushes()
    assert flush.last_ok_ms is not None
    assert flush.last_error == "429 quota"


def test_a_gone_owners_leases_and_locks_end_at_once(store: WorkStore) -> None:
    fence = store.take_lock("sheet-1", "dead", ttl_ms=10**12, now=0)
    assert fence is not None
    claim(store, "dead", now=0, lease_ms=10**12)
    assert store.lease_owners(now=1) == {"dead"}
    store.expire_owner("dead")
    assert store.lease_owners(now=1) == set()
    assert len(claim(store, "alive", now=1)) == 10
    taken = store.take_lock("sheet-1", "alive", ttl_ms=1_000, now=1)
    assert taken is not None
    assert taken.token > fence.token


def untimed(content: str, n: int, subject: str = "customer:1") -> InboxRecord:
    """A record without a timestamp (tag_set, note_changed, ...), received at ``n``."""
    return InboxRecord(
        received_ms=1_000 + n,
        endpoint="main",
        company_id=1,
        event_type="tag_set",
        event_ms=None,
        body=b"{}",
        content_key=content,
        subject=subject,
    )


def test_intake_stores_a_timestamped_event_once_however_often_it_comes(backend: Backend) -> None:
    put, _ = backend
    assert put([record(1), record(2), record(1)]) == [True, True, False]  # within one group
    assert put([record(2), record(3)]) == [False, True]  # across groups


def test_intake_takes_an_untimed_event_again_only_when_it_is_not_the_subjects_latest(
    backend: Backend,
) -> None:
    put, open_store = backend
    # Tag A set, redelivered (a duplicate: it repeats the latest), unset (B), set again (A: a new event).
    assert put([untimed("A", 1), untimed("A", 2)]) == [True, False]
    assert put([untimed("B", 3)]) == [True]
    assert put([untimed("A", 4), untimed("A", 5)]) == [True, False]
    assert put([untimed("A", 6, subject="customer:2")]) == [True]  # another subject has its own latest
    store = open_store()
    try:
        assert sum(c.count for c in store.counts()) == 4
    finally:
        store.close()


def test_events_given_back_with_a_reason_are_listed_as_waiting_until_requeued_or_done(
    store: WorkStore,
) -> None:
    claimed = claim(store, "w", now=0, companies=[1])
    store.release("w", [e.id for e in claimed], retry_at_ms=5_000, error="key header 'Customer ID' not found")
    waiting = store.failed(waiting=True)
    assert [w.id for w in waiting] == [e.id for e in claimed]
    assert {w.error for w in waiting} == {"key header 'Customer ID' not found"}
    assert store.failed() == []
    fence = store.take_lock("sheet-1", "w", ttl_ms=1_000, now=5_000)
    assert fence is not None
    again = claim(store, "w", now=5_000, companies=[1])
    store.commit_flush(fence, {}, [e.id for e in again], "1")
    assert store.failed(waiting=True) == []


def test_figures_count_events_per_company_status_and_minute(store: WorkStore) -> None:
    # 10 pending events, companies 1 and 2 in turn, received at 1,000 to 1,009; one unknown of company 1.
    newest = store.newest_event_id()
    assert store.events_by_company(0) == {1: 6, 2: 5}
    assert store.events_by_company(0, newest) == {1: 6, 2: 5}
    assert store.events_by_company(newest) == {}
    assert sum(store.events_by_company(newest - 3, newest - 1).values()) == 2
    assert store.status_by_company(["pending", "unknown", "failed"]) == {
        1: {"pending": 5, "unknown": 1},
        2: {"pending": 5},
    }
    assert [(b.company_id, b.pending, b.oldest_received_ms) for b in store.backlog("pending")] == [
        (1, 5, 1_000),
        (2, 5, 1_001),
    ]
    assert store.backlog("unrouted") == []
    assert store.received_per_minute(0, 60_000) == {0: 11}
    assert store.received_per_minute(1_005, 5) == {1_005: 5, 1_095: 1}
    assert store.ids_settle_ms >= 0


def test_figures_list_the_newest_parked_events(store: WorkStore) -> None:
    claimed = claim(store, "w", now=0)
    assert store.latest_failed(10) == []
    assert store.newest_failed_by_company() == []
    for event in claimed[:6]:  # companies 1 and 2 in turn
        store.finish("w", [event.id], "failed", error=f"HTTP 403 #{event.id}")
    ids = sorted(event.id for event in claimed[:6])
    assert [f.id for f in store.latest_failed(4)] == ids[::-1][:4]
    newest = store.newest_failed_by_company()
    assert [(f.company_id, f.error) for f in newest] == [
        (1, f"HTTP 403 #{ids[4]}"),
        (2, f"HTTP 403 #{ids[5]}"),
    ]
    assert store.status_by_company(["failed"]) == {1: {"failed": 3}, 2: {"failed": 3}}


@pytest.fixture
def backfill_store(backend: Backend) -> Iterator[WorkStore]:
    """Five imported events about three customers (1, 2 and 2, 3 and 3)."""
    put, open_store = backend
    put(
        [
            replace(record(n, status="backfill"), subject=f"customer:{subject}")
            for n, subject in enumerate([1, 2, 2, 3, 3])
        ]
    )
    opened = open_store()
    yield opened
    opened.close()


def test_subjects_waiting_counts_customers_and_their_events_in_a_status(backfill_store: WorkStore) -> None:
    assert backfill_store.subjects_waiting("backfill") == (3, 5)
    assert backfill_store.subjects_waiting("failed") == (0, 0)
