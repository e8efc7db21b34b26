"""The embedded inbox: a SQLite file written by a writer process of its own.

Durability costs an fsync per commit. Instead of one commit per request, requests go to the writer
(:mod:`connector.store.sqlite_writer`) in batches over a socket pair, one batch per transaction (group commit):
while the writer commits one batch, the requests arriving meanwhile queue up and go together as the next
one as soon as it answers. Each caller awaits its own future, resolved when the answer to its batch comes
back, that is after the commit that holds its row: nothing is acknowledged before it is on disk, and the
event loop never waits for SQLite. The socket is served by the event loop itself (no thread), so a busy
loop and the writer never take turns for the interpreter lock.

If the writer process dies, the requests it had not answered fail with StoreError (503: DooPage delivers
them again, and whatever had been stored is then a duplicate) and the next request starts a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from connector.errors import StoreError
from connector.store.protocols import CommitWaiter
from connector.store.records import InboxRecord, StatusCount
from connector.store.sqlite_schema import connect, count_events, inbox_path, migrate
from connector.store.sqlite_writer import Committed, FrameReader, WriteBatch, frame

__all__ = ["SqliteInbox"]

log = logging.getLogger(__name__)

# After a writer process died, how long before the next request may start another one.
RESTART_DELAY_S: Final = 1.0
# How much one read takes from the writer's answers (a few bytes each).
ANSWERS_READ_SIZE: Final = 1 << 16
# How long a request waits for its commit to be confirmed before it is answered 503.
DEFAULT_COMMIT_TIMEOUT_S: Final = 5.0
# How long closing waits for the writer to commit what it was sent.
CLOSE_TIMEOUT_S: Final = 60.0


# One caller waiting for its records (none: a writability check) to be committed. A plain tuple: one is
# made per request.
_Write = tuple[list[InboxRecord], asyncio.Future[list[bool]]]


class _WriterProcess:
    """A running writer process and the service's (non-blocking) end of its socket."""

    def __init__(self, path: Path) -> None:
        ours, theirs = socket.socketpair()
        with theirs:
            command = [
                sys.executable,
                "-m",
                "connector.store.sqlite_writer",
                "--fd",
                str(theirs.fileno()),
                str(path),
            ]
            # Its own session: a Ctrl-C in the terminal is for the service, which then closes the socket.
            self.process = subprocess.Popen(
                command, pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, start_new_session=True
            )
        ours.setblocking(False)
        self.sock = ours
        self.answers = FrameReader(Committed)
        self.unsent = bytearray()  # what the socket did not take yet
        self.last_group = -1

    def exit_code(self) -> int | None:
        """The process's exit code, waiting a moment for it (it has closed its socket)."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            return self.process.wait(timeout=1.0)
        return None


@dataclass(eq=False)
class SqliteInbox(CommitWaiter):
    """The embedded inbox, used from one event loop at a time (a new one once the previous is closed)."""

    path: Path
    commit_timeout_s: float = 5.0
    _reader: sqlite3.Connection | None = field(default=None, init=False)
    _writer: _WriterProcess | None = field(default=None, init=False)
    _loop: asyncio.AbstractEventLoop | None = field(default=None, init=False)
    _batch: list[_Write] = field(default_factory=list, init=False)  # not yet handed over
    _waiting: dict[int, list[_Write]] = field(default_factory=dict, init=False)  # sent, not answered
    _seq: itertools.count[int] = field(default_factory=itertools.count, init=False)
    _restart_after: float = field(default=0.0, init=False)
    _closed: bool = field(default=False, init=False)
    commits: int = field(default=0, init=False)  # transactions the writer answered with
    records: int = field(default=0, init=False)  # records those transactions took (stored or duplicate)
    timeouts: int = field(default=0, init=False)  # callers answered before their commit was confirmed

    @classmethod
    def open(cls, data_dir: Path, commit_timeout_s: float = DEFAULT_COMMIT_TIMEOUT_S) -> SqliteInbox:
        """Create the data directory and database if needed, and start the writer process.

        A caller whose commit is not confirmed within ``commit_timeout_s`` gets StoreError (a 503: DooPage
        delivers again; if the commit did happen, the next delivery is a duplicate).
        """
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the data directory {data_dir}: {exc.strerror}") from exc
        inbox = cls(inbox_path(data_dir), commit_timeout_s)
        migrate(inbox.path)
        inbox._reader = connect(inbox.path)
        inbox._writer = _WriterProcess(inbox.path)
        return inbox

    async def _confirmed(self, records: list[InboxRecord]) -> list[bool]:
        """Queue records and wait for their commit, at most ``commit_timeout_s``."""
        try:
            return await asyncio.wait_for(self._enqueue(records), self.commit_timeout_s)
        except TimeoutError:
            self.timeouts += 1
            log.error(
                "the inbox writer did not confirm a commit within %.1f s (stalled disk or process?);"
                " answering 503",
                self.commit_timeout_s,
            )
            raise StoreError(f"the commit was not confirmed within {self.commit_timeout_s:g} s") from None

    def counts(self) -> list[StatusCount]:
        """Number of stored events by status and event type."""
        assert self._reader is not None, "inbox is not open"
        return count_events(self._reader)

    async def aclose(self) -> None:
        """As :meth:`close` (nothing to wait for on the loop: the writer process commits what it was sent)."""
        self.close()

    def close(self) -> None:
        """Send what is queued, let the writer commit it and stop, then release the database."""
        if self._closed:
            return
        if self._batch and self._loop is not None and not self._loop.is_closed():
            self._hand_over()
        self._closed = True
        writer, self._writer = self._writer, None
        if writer is not None:
            self._detach(writer)
            with contextlib.suppress(OSError):
                writer.sock.setblocking(True)
                writer.sock.sendall(writer.unsent)
            writer.sock.close()  # the writer reads to the end, commits, and exits
            try:
                writer.process.wait(timeout=CLOSE_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                log.error("the inbox writer did not stop within %.0f s; killed", CLOSE_TIMEOUT_S)
                writer.process.kill()
                writer.process.wait()
            log.info("inbox closed: %d records in %d commits", self.records, self.commits)
        self._fail_waiting(StoreError("the inbox closed before the commit was confirmed"))
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    # --- the event loop side ------------------------------------------------------------------------------

    def _enqueue(self, records: list[InboxRecord]) -> asyncio.Future[list[bool]]:
        """Queue records for the next batch; the future of their outcome (resolved after the commit)."""
        if self._closed:
            raise StoreError("the inbox is closed")
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._attach(loop)
        future: asyncio.Future[list[bool]] = loop.create_future()
        self._batch.append((records, future))
        if len(self._batch) == 1 and not self._waiting:
            # Nothing is being committed: what this turn of the event loop queues goes at the end of the
            # turn. Otherwise it goes when the commit in flight is answered, with whatever joined it.
            loop.call_soon(self._hand_over)
        return future

    def _attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Serve the writer's socket from ``loop`` (the previous loop, if any, must be closed)."""
        if self._loop is not None and not self._loop.is_closed():
            raise StoreError("the inbox is in use by another event loop")
        self._loop = loop
        # Callers from a closed loop are gone; late answers for them are ignored.
        self._waiting.clear()
        self._batch.clear()
        if self._writer is not None:
            loop.add_reader(self._writer.sock.fileno(), self._on_readable, self._writer)
            if self._writer.unsent:
                loop.add_writer(self._writer.sock.fileno(), self._on_writable, self._writer)

    def _detach(self, writer: _WriterProcess) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(writer.sock.fileno())
            self._loop.remove_writer(writer.sock.fileno())

    def _running_writer(self) -> _WriterProcess | None:
        """The writer process, starting one if the last one died (not more than once a second)."""
        if self._writer is None and time.monotonic() >= self._restart_after:
            self._writer = _WriterProcess(self.path)
            assert self._loop is not None
            self._loop.add_reader(self._writer.sock.fileno(), self._on_readable, self._writer)
            log.warning("started a new inbox writer process (pid %d)", self._writer.process.pid)
        return self._writer

    def _hand_over(self) -> None:
        """Send the queued requests as one batch."""
        batch, self._batch = self._batch, []
        if not batch:
            return
        if self._closed:
            _fail(batch, StoreError("the inbox is closed"))
            return
        writer = self._running_writer()
        if writer is None:
            _fail(batch, StoreError("the inbox writer is restarting"))
            return
        seq = next(self._seq)
        self._waiting[seq] = batch
        self._send(writer, frame(WriteBatch(seq, [record for records, _ in batch for record in records])))

    def _send(self, writer: _WriterProcess, data: bytes) -> None:
        if writer.unsent:  # already waiting for the socket to take more
            writer.unsent += data
            return
        try:
            sent = writer.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._lost(writer)
            return
        if sent < len(data):
            writer.unsent += data[sent:]
            assert self._loop is not None
            self._loop.add_writer(writer.sock.fileno(), self._on_writable, writer)

    def _on_writable(self, writer: _WriterProcess) -> None:
        try:
            sent = writer.sock.send(writer.unsent)
        except BlockingIOError:
            return
        except OSError:
            self._lost(writer)
            return
        del writer.unsent[:sent]
        if not writer.unsent and self._loop is not None:
            self._loop.remove_writer(writer.sock.fileno())

    def _on_readable(self, writer: _WriterProcess) -> None:
        try:
            data = writer.sock.recv(ANSWERS_READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._lost(writer)
            return
        for answer in writer.answers.feed(data):
            if answer.group != writer.last_group:
                writer.last_group = answer.group
                self.commits += 1
            self._settle(answer)
        if not self._waiting:
            self._hand_over()

    def _settle(self, answer: Committed) -> None:
        batch = self._waiting.pop(answer.seq, None)
        if batch is None:
            return
        if answer.error is not None:
            count = sum(len(records) for records, _ in batch)
            log.error("the inbox could not commit %d records: %s", count, answer.error)
            _fail(batch, StoreError(f"the inbox could not commit: {answer.error}"))
            return
        self.records += len(answer.inserted)
        start = 0
        for records, future in batch:
            end = start + len(records)
            # A caller that went away (client disconnected) has a cancelled future; its row is stored.
            if not future.done():
                future.set_result(answer.inserted[start:end])
            start = end

    def _lost(self, writer: _WriterProcess) -> None:
        """The writer process went away: fail what it had not answered; the next request starts another."""
        if writer is not self._writer:
            return
        self._detach(writer)
        writer.sock.close()
        self._writer = None
        self._restart_after = time.monotonic() + RESTART_DELAY_S
        log.error(
            "the inbox writer process stopped (exit code %s); %d waiting requests refused, to be retried",
            writer.exit_code(),
            sum(len(batch) for batch in self._waiting.values()),
        )
        self._fail_waiting(StoreError("the inbox writer stopped before confirming the commit"))
        if self._batch and self._loop is not None:
            self._loop.call_soon(self._hand_over)  # refused until a new writer may start

    def _fail_waiting(self, error: StoreError) -> None:
        waiting, self._waiting = self._waiting, {}
        if self._loop is not None and not self._loop.is_closed():
            for batch in waiting.values():
                _fail(batch, error)


def _fail(batch: list[_Write], error: StoreError) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(error)
