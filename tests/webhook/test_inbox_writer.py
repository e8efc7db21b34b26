"""The inbox's writer process: its wire format, what happens when it dies, and closing."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import sqlite3
import time

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.errors import StoreError
from connector.store import sqlite_intake as sqlite_inbox
from connector.store.sqlite_intake import SqliteInbox
from connector.store.sqlite_schema import inbox_path
from connector.store.sqlite_writer import Committed, FrameReader, WriteBatch, frame
from tests.webhook.conftest import JSON, URL
from tests.webhook.test_inbox import record


def stored_keys(inbox: SqliteInbox) -> set[str]:
    with sqlite3.connect(inbox.path) as conn:
        return {key for (key,) in conn.execute("SELECT dedup_key FROM events")}


answers = st.builds(
    Committed,
    seq=st.integers(min_value=0, max_value=2**40),
    group=st.integers(min_value=0, max_value=2**40),
    inserted=st.lists(st.booleans(), max_size=40),
    error=st.none() | st.text(max_size=30),
)


@given(messages=st.lists(answers, max_size=12), cuts=st.lists(st.integers(min_value=0), max_size=30))
def test_messages_come_out_whole_and_in_order_however_the_stream_is_cut(messages, cuts):
    stream = b"".join(frame(message) for message in messages)
    points = sorted({cut % (len(stream) + 1) for cut in cuts} | {0, len(stream)})
    reader = FrameReader(Committed)
    received: list[Committed] = []
    for start, end in itertools.pairwise(points):
        received += reader.feed(stream[start:end])
    assert received == messages


def test_a_batch_round_trips_through_msgpack():
    batch = WriteBatch(7, [record(1, body=b'{"a": "\xc3\xa9"}'), record(2)])
    (decoded,) = FrameReader(WriteBatch).feed(frame(batch))
    assert decoded == batch
    assert msgspec.msgpack.encode(decoded) == msgspec.msgpack.encode(batch)


def test_a_batch_bigger_than_the_socket_buffer_is_stored_whole(tmp_path):
    # About 6 MB in one frame: the socket takes it in pieces as the writer reads.
    records = [record(n, body=b"x" * 1200) for n in range(5_000)]
    inbox = SqliteInbox.open(tmp_path)

    async def put() -> list[bool]:
        outcome = await inbox.put_many(records)
        inbox.close()
        return outcome

    assert asyncio.run(put()) == [True] * 5_000
    assert len(stored_keys(inbox)) == 5_000


def test_one_inbox_serves_one_event_loop_after_another(tmp_path):
    inbox = SqliteInbox.open(tmp_path)
    try:
        assert asyncio.run(inbox.put(record(1))) is True
        assert asyncio.run(inbox.put(record(1))) is False
        assert asyncio.run(inbox.put(record(2))) is True
    finally:
        inbox.close()
    assert stored_keys(inbox) == {"key-1", "key-2"}


def test_closing_commits_what_was_already_handed_to_the_writer(tmp_path):
    inbox = SqliteInbox.open(tmp_path)

    async def put_then_close() -> None:
        puts = [asyncio.ensure_future(inbox.put(record(n))) for n in range(50)]
        await asyncio.sleep(0)  # the puts queue their records
        await asyncio.sleep(0)  # and the batch goes to the writer
        inbox.close()  # before any answer came back
        outcomes = await asyncio.gather(*puts, return_exceptions=True)
        assert all(isinstance(outcome, StoreError) for outcome in outcomes)

    asyncio.run(put_then_close())
    assert stored_keys(inbox) == {f"key-{n}" for n in range(50)}


def test_the_writer_ignores_ctrl_c_meant_for_the_service(tmp_path):
    inbox = SqliteInbox.open(tmp_path)

    async def put_interrupt_put() -> list[bool]:
        first = await inbox.put(record(1))
        assert inbox._writer is not None
        os.kill(inbox._writer.process.pid, signal.SIGINT)
        await asyncio.sleep(0.2)
        second = await inbox.put(record(2))
        inbox.close()
        return [first, second]

    assert asyncio.run(put_interrupt_put()) == [True, True]


def test_a_killed_writer_costs_a_503_then_a_new_writer_takes_over(client, settings, samples, monkeypatch):
    monkeypatch.setattr(sqlite_inbox, "RESTART_DELAY_S", 0.5)
    inbox: SqliteInbox = client.app.state.inbox
    assert client.post(URL, content=samples["customer_created"], headers=JSON).json()["status"] == "stored"
    assert inbox._writer is not None
    killed = inbox._writer.process
    killed.kill()
    killed.wait()

    # The service notices at once: requests get 503 (DooPage retries) until a new writer may start.
    refused = client.post(URL, content=samples["customer_updated"], headers=JSON)
    assert refused.status_code == 503
    assert "retry" in refused.json()["detail"]
    time.sleep(0.6)
    retried = client.post(URL, content=samples["customer_updated"], headers=JSON)
    assert retried.status_code == 200
    assert retried.json()["status"] == "stored"
    assert inbox._writer is not None
    assert inbox._writer.process.pid != killed.pid
    assert client.post(URL, content=samples["customer_created"], headers=JSON).json()["status"] == "duplicate"
    with sqlite3.connect(inbox_path(settings.data_dir)) as conn:
        assert conn.execute("SELECT COUNT(*) FROM events").fetchone() == (2,)


def test_a_closed_inbox_leaves_no_writer_running(tmp_path):
    inbox = SqliteInbox.open(tmp_path)
    assert inbox._writer is not None
    process = inbox._writer.process
    inbox.close()
    assert process.poll() == 0
    with pytest.raises(StoreError):
        asyncio.run(inbox.put(record(1)))


def test_a_commit_waits_out_another_connections_write_transaction(tmp_path):
    # A worker's transaction holds the database; the writer (no busy timeout of SQLite's) asks again
    # until it ends, and the request is stored, not refused.
    inbox = SqliteInbox.open(tmp_path)
    holder = sqlite3.connect(inbox.path, isolation_level=None)

    async def put_while_held() -> bool:
        holder.execute("BEGIN IMMEDIATE")
        put = asyncio.ensure_future(inbox.put(record(1)))
        await asyncio.sleep(0.3)
        assert not put.done()
        holder.execute("COMMIT")
        return await put

    try:
        assert asyncio.run(put_while_held()) is True
    finally:
        inbox.close()
        holder.close()
    assert stored_keys(inbox) == {"key-1"}
