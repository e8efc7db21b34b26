"""The SQLite inbox: group commit, durability and failure handling."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from connector.errors import StoreError
from connector.store.records import InboxRecord
from connector.store.sqlite_intake import SqliteInbox
from connector.store.sqlite_schema import inbox_path
from tests.webhook.conftest import JSON, URL


def record(n: int, body: bytes = b"{}") -> InboxRecord:
    """The n-th distinct timestamped record (dedup key ``key-<n>``)."""
    return InboxRecord(
        received_ms=1,
        endpoint="main",
        company_id=1,
        event_type="customer_created",
        event_ms=n,
        body=body,
        content_key=f"key-{n}",
    )


def test_concurrent_puts_share_commits_and_all_land(tmp_path):
    inbox = SqliteInbox.open(tmp_path)

    async def put_all() -> list[bool]:
        return await asyncio.gather(*(inbox.put(record(n)) for n in range(200)))

    try:
        assert asyncio.run(put_all()) == [True] * 200
        assert inbox.commits < 50  # 200 acknowledgements, a handful of fsyncs
    finally:
        inbox.close()
    conn = sqlite3.connect(inbox_path(tmp_path))
    assert conn.execute("SELECT COUNT(*), COUNT(DISTINCT dedup_key) FROM events").fetchone() == (200, 200)


def test_duplicates_within_one_group_are_stored_once(tmp_path):
    inbox = SqliteInbox.open(tmp_path)

    async def put_twice() -> list[bool]:
        return await asyncio.gather(*(inbox.put(record(n % 3)) for n in range(9)))

    try:
        outcome = asyncio.run(put_twice())
        assert outcome.count(True) == 3
        assert sum(c.count for c in inbox.counts()) == 3
    finally:
        inbox.close()


def test_database_is_in_wal_mode(tmp_path):
    SqliteInbox.open(tmp_path).close()
    conn = sqlite3.connect(inbox_path(tmp_path))
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_closed_inbox_refuses_writes(tmp_path):
    inbox = SqliteInbox.open(tmp_path)
    inbox.close()
    with pytest.raises(StoreError):
        asyncio.run(inbox.put(record(1)))


def test_a_failing_store_answers_503_and_keeps_nothing_half_written(client, settings, samples):
    # Break the real database under the running app: the next commit fails.
    conn = sqlite3.connect(inbox_path(settings.data_dir))
    conn.execute("ALTER TABLE events RENAME TO events_moved")
    conn.commit()
    response = client.post(URL, content=samples["customer_created"], headers=JSON)
    assert response.status_code == 503
    assert "retry" in response.json()["detail"]
    assert client.get("/readyz").status_code == 200  # the writer thread survived

    conn.execute("ALTER TABLE events_moved RENAME TO events")
    conn.commit()
    assert client.post(URL, content=samples["customer_created"], headers=JSON).json()["status"] == "stored"
