"""The inbox writer: a process of its own that inserts webhook records into SQLite, committing in groups.

The web service (:class:`connector.store.sqlite_intake.SqliteInbox`) talks to it over a socket pair in
length-prefixed msgpack frames: a :class:`WriteBatch` out, a :class:`Committed` back once the batch is on
disk. Whatever batches have arrived while one commit runs go into the next transaction together (group
commit), so one fsync answers many requests. Being a separate process, its SQLite work runs beside the
event loop instead of taking turns with it for the interpreter lock.

It stops when the service closes its end of the socket (or dies): what it has read by then is committed
first. It ignores SIGINT, SIGTERM and SIGHUP, which are the service's to handle.

    python -m connector.store.sqlite_writer --fd N PATH
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import itertools
import logging
import signal
import socket
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Final, Generic, TypeVar

import msgspec
import tenacity

from connector.store.records import InboxRecord, now_ms
from connector.store.sqlite_schema import connect, transaction

__all__ = ["Committed", "FrameReader", "WriteBatch", "first_of_each", "frame", "insert_all", "main"]

log = logging.getLogger("connector.store.sqlite_writer")

# How much one read takes from the socket; bounds the size of one group (about 1,500 typical bodies).
READ_SIZE: Final = 1 << 20

# How often WAL pages are copied into the database (see checkpoint_until).
CHECKPOINT_INTERVAL_S: Final = 0.5

# While a worker's transaction holds the database, the writer asks again this often, for this long at most
# (see locked_retry); the service answers 503 to requests not committed within its commit timeout anyway.
BUSY_POLL_S: Final = 0.0005
BUSY_GIVE_UP_S: Final = 10.0

_LENGTH: Final = 4  # bytes of the big-endian length before each frame

T = TypeVar("T")


class WriteBatch(msgspec.Struct, array_like=True, frozen=True):
    """Records to store, in arrival order; none asks whether a write transaction can start now."""

    seq: int
    records: list[InboxRecord]


class Committed(msgspec.Struct, array_like=True, frozen=True):
    """The answer to one WriteBatch: for each record whether it was new, or why nothing was stored.

    ``group`` numbers the writer's transactions: batches committed together share it.
    """

    seq: int
    group: int
    inserted: list[bool]
    error: str | None = None


def frame(message: msgspec.Struct) -> bytes:
    """One message as a frame: its msgpack encoding after its length."""
    payload = msgspec.msgpack.encode(message)
    return len(payload).to_bytes(_LENGTH, "big") + payload


class FrameReader(Generic[T]):
    """Decodes the messages in a byte stream that arrives in arbitrary pieces."""

    def __init__(self, kind: type[T]) -> None:
        self._decoder = msgspec.msgpack.Decoder(kind)
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[T]:
        """Add the bytes just read; every message they complete, in order."""
        self._buffer += data
        messages: list[T] = []
        start = 0
        with memoryview(self._buffer) as view:
            while len(view) - start >= _LENGTH:
                end = start + _LENGTH + int.from_bytes(view[start : start + _LENGTH], "big")
                if end > len(view):
                    break
                messages.append(self._decoder.decode(view[start + _LENGTH : end]))
                start = end
        del self._buffer[:start]
        return messages


# --- storing ----------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _insert_sql(rows: int) -> str:
    """One multi-row INSERT of ``rows`` rows."""
    # Only placeholders are interpolated; every value is bound.
    values = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * rows)
    return (
        "INSERT INTO events (received_ms, endpoint, company_id, event_type, event_ms, body, dedup_key,"  # noqa: S608
        f" content_key, subject, status, updated_ms) VALUES {values} ON CONFLICT (dedup_key) DO NOTHING"
    )


# SQLite binds at most 32,766 parameters per statement; 11 per row.
_ROWS_PER_INSERT: Final = 2_000

PROBE: Final = (
    "INSERT INTO probe (id, at_ms) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET at_ms = excluded.at_ms"
)

NEW_KEYS: Final = "SELECT dedup_key FROM events WHERE id > ? AND id <= ?"

LATEST_UNTIMED: Final = """
SELECT content_key FROM events WHERE company_id = ? AND subject = ? AND event_ms IS NULL
ORDER BY id DESC LIMIT 1
"""


def insert_all(conn: sqlite3.Connection, records: list[InboxRecord]) -> list[bool]:
    """Store records durably, in arrival order; for each, whether it is new (the first of equal keys wins).

    The usual group (events with a timestamp only, no more than one statement holds) is one INSERT, which
    SQLite runs as a transaction of its own; anything else is one explicit transaction. No record at all
    is a writability check: can a write transaction start now?
    """
    simple = len(records) <= _ROWS_PER_INSERT and not any(record.repeatable for record in records)
    if records and simple:
        keys = [record.content_key for record in records]
        return first_of_each(keys, _insert_rows(conn, list(zip(records, keys, strict=True))))
    with transaction(conn):
        if not records:
            conn.execute(PROBE, (now_ms(),))
            return []
        return _insert_with_repeats(conn, records)


def _insert_with_repeats(conn: sqlite3.Connection, records: list[InboxRecord]) -> list[bool]:
    """Store records some of which have no timestamp (see InboxRecord), inside the caller's transaction."""
    keys: list[str | None] = []
    for record in records:
        if record.repeatable:
            # One by one, so that the next repeatable record of the group sees this one as the latest.
            key = _dedup_key(conn, record)
            keys.append(key if key is not None and _insert_rows(conn, [(record, key)]) else None)
        else:
            keys.append(record.content_key)
    timed = [(record, record.content_key) for record in records if not record.repeatable]
    inserted: set[str] = set()
    for start in range(0, len(timed), _ROWS_PER_INSERT):
        inserted |= _insert_rows(conn, timed[start : start + _ROWS_PER_INSERT])
    inserted.update(key for record, key in zip(records, keys, strict=True) if record.repeatable and key)
    return first_of_each(keys, inserted)


def first_of_each(keys: Sequence[str | None], inserted: set[str]) -> list[bool]:
    """For each key in order, whether it was inserted (only its first occurrence counts)."""
    outcome = []
    remaining = set(inserted)
    for key in keys:
        outcome.append(key is not None and key in remaining)
        remaining.discard(key or "")
    return outcome


def _insert_rows(conn: sqlite3.Connection, rows: list[tuple[InboxRecord, str]]) -> set[str]:
    """Insert ``(record, dedup key)`` rows in one statement, skipping stored keys; the keys inserted.

    New rows get consecutive ids (the statement holds the write lock), so when some rows were skipped
    the inserted ones are found by id; when none was, no second statement is needed.
    """
    params: list[object] = []
    for r, key in rows:
        params += (r.received_ms, r.endpoint, r.company_id, r.event_type, r.event_ms, r.body, key)
        params += (r.content_key, r.subject, r.status, r.received_ms)
    before = conn.total_changes
    cursor = conn.execute(_insert_sql(len(rows)), params)
    added = conn.total_changes - before
    if added == len(rows):
        return {key for _, key in rows}
    if added == 0:
        return set()
    last = cursor.lastrowid or 0
    return {key for (key,) in conn.execute(NEW_KEYS, (last - added, last))}


def _dedup_key(conn: sqlite3.Connection, record: InboxRecord) -> str | None:
    """A repeatable record's dedup key, or None when it repeats the latest event of its subject."""
    latest = conn.execute(LATEST_UNTIMED, (record.company_id, record.subject)).fetchone()
    if latest is not None and latest[0] == record.content_key:
        return None
    return f"{record.content_key}@{record.received_ms}"


def is_busy(exc: BaseException) -> bool:
    """Whether an error is "the database is locked": another connection's write transaction is open."""
    return isinstance(exc, sqlite3.OperationalError) and exc.sqlite_errorcode == sqlite3.SQLITE_BUSY


# SQLite's own busy handler sleeps longer and longer between tries (up to 100 ms), so a commit waiting
# behind a worker's transaction could sleep long after it ended, and a worker starting its next one at
# once could keep it out for seconds. The writer's connection has no busy timeout; it polls finely here.
locked_retry = tenacity.Retrying(
    retry=tenacity.retry_if_exception(is_busy),
    wait=tenacity.wait_fixed(BUSY_POLL_S),
    stop=tenacity.stop_after_delay(BUSY_GIVE_UP_S),
    reraise=True,
)


def commit_group(conn: sqlite3.Connection, batches: list[WriteBatch], group: int) -> list[Committed]:
    """Store the records of several batches in one go; the answer to each batch."""
    records = [record for batch in batches for record in batch.records]
    try:
        inserted = locked_retry(insert_all, conn, records)
    except Exception as exc:  # answered as 503 (retry later); the writer lives on
        return [Committed(batch.seq, group, [], f"{type(exc).__name__}: {exc}") for batch in batches]
    answers = []
    start = 0
    for batch in batches:
        end = start + len(batch.records)
        answers.append(Committed(batch.seq, group, inserted[start:end]))
        start = end
    return answers


def serve(sock: socket.socket, conn: sqlite3.Connection) -> None:
    """Answer the batches arriving on ``sock`` until the other end closes it."""
    reader = FrameReader(WriteBatch)
    groups = itertools.count()
    while True:
        try:
            data = sock.recv(READ_SIZE)
        except OSError:
            data = b""
        batches = reader.feed(data)
        if batches:
            answers = b"".join(frame(answer) for answer in commit_group(conn, batches, next(groups)))
            # If the service is gone, what it sent is stored all the same, and the next read ends the loop.
            with contextlib.suppress(OSError):
                sock.sendall(answers)
        if not data:
            return


def checkpoint_until(stopped: threading.Event, path: Path, interval_s: float = CHECKPOINT_INTERVAL_S) -> None:
    """Copy committed WAL pages into the database now and then, beside the writer.

    SQLite would otherwise do it inside a commit every 1,000 pages, and the requests waiting for that
    commit would wait for the copy and its fsync too. A passive checkpoint blocks no writer.
    """
    conn = connect(path)
    try:
        while not stopped.wait(interval_s):
            try:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error as exc:  # tried again next time; commits go on meanwhile
                log.warning("inbox checkpoint failed: %s", exc)
    finally:
        conn.close()


def main(argv: Sequence[str] | None = None) -> None:
    """Run the writer on an inherited socket until the service closes it."""
    parser = argparse.ArgumentParser(prog="python -m connector.store.sqlite_writer", description=__doc__)
    parser.add_argument("--fd", type=int, required=True, help="the inherited socket's file descriptor")
    parser.add_argument("path", type=Path, help="the inbox database")
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the service reloads on it, and goes on using this writer
    conn = connect(args.path)
    conn.execute("PRAGMA wal_autocheckpoint=0")  # see checkpoint_until
    conn.execute("PRAGMA busy_timeout=0")  # see locked_retry
    stopped = threading.Event()
    checkpointer = threading.Thread(
        target=checkpoint_until, args=(stopped, args.path), name="inbox-checkpoint", daemon=True
    )
    checkpointer.start()
    try:
        with socket.socket(fileno=args.fd) as sock:
            serve(sock, conn)
    finally:
        stopped.set()
        checkpointer.join()
        conn.close()


if __name__ == "__main__":
    main()
