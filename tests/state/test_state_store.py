"""The SQLite state store: states saved in one transaction come back equal, also after reopening."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from connector.errors import StoreError
from connector.store.sqlite_state import StateStore, state_path
from connector.sync.state import EntityKey, fold_batch

from .conftest import sample

CUSTOMER = EntityKey("customer", 1, 1)
ORDER = EntityKey("order", 1, 1)


def test_saved_states_load_equal_after_reopening(tmp_path: Path, samples: dict[str, bytes]) -> None:
    states = fold_batch({}, [sample(event_type, 1_000 + i) for i, event_type in enumerate(samples)])
    assert set(states) == {CUSTOMER, ORDER}
    with StateStore.open(tmp_path) as store:
        assert store.load([CUSTOMER, ORDER]) == {}
        store.save(states)
    assert state_path(tmp_path).exists()
    with StateStore.open(tmp_path) as store:
        assert store.load([CUSTOMER, ORDER, EntityKey("order", 1, 2)]) == states
        assert store.counts() == {"customer": 1, "order": 1}


def test_save_replaces_and_folding_continues_from_the_loaded_state(tmp_path: Path) -> None:
    with StateStore.open(tmp_path) as store:
        store.save(fold_batch({}, [sample("customer_created", 0)]))
        later = fold_batch(store.load([CUSTOMER]), [sample("customer_closed", 0)])
        store.save(later.values())
        (customer,) = store.load([CUSTOMER]).values()
        assert customer == later[CUSTOMER]
        assert customer.last_event.value == "customer_closed"
        assert store.counts() == {"customer": 1}


def test_company_states_list_one_kind_of_one_company(tmp_path: Path) -> None:
    with StateStore.open(tmp_path) as store:
        store.save(fold_batch({}, [sample("customer_created", 0), sample("order_created", 0)]))
        assert [s.key for s in store.company_states("order", 1)] == [ORDER]
        assert [s.key for s in store.company_states("customer", 1)] == [CUSTOMER]
        assert store.company_states("customer", 2) == []


def test_the_store_uses_wal(tmp_path: Path) -> None:
    StateStore.open(tmp_path).close()
    conn = sqlite3.connect(state_path(tmp_path))
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        conn.close()


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    conn = sqlite3.connect(state_path(tmp_path))
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        StateStore.open(tmp_path)


def test_a_failed_write_raises_store_error_and_keeps_the_old_state(tmp_path: Path) -> None:
    with StateStore.open(tmp_path, busy_timeout=0.05) as store:
        before = fold_batch({}, [sample("customer_created", 0)])
        store.save(before)
        conn = sqlite3.connect(state_path(tmp_path), isolation_level=None)
        conn.execute("BEGIN EXCLUSIVE")  # another writer holds the database past the busy timeout
        try:
            with pytest.raises(StoreError, match="cannot write"):
                store.save(fold_batch(before, [sample("customer_closed", 0)]))
        finally:
            conn.execute("ROLLBACK")
            conn.close()
        assert store.load([CUSTOMER]) == before
