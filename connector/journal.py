"""The journal: what the operator console shows that no other table keeps.

Three small, bounded tables in their own SQLite file beside the inbox (``journal.sqlite3``), so that the
console reads everything it shows from the data directory and never from another process's memory:

* ``rejections`` — webhooks refused, with the reason, the HTTP status and the time (never a body); the
  newest :data:`REJECTIONS_KEPT` are kept;
* ``sheets_requests`` — every Sheets API request with its kind and status, for the request budget of the
  last minute and the recent 429s; :data:`REQUESTS_KEPT_MS` of them are kept;
* ``flush_log`` — every flush of a spreadsheet: events, rows updated and added, requests, duration, the
  webhook-to-sheet latency of its events, or its error; :data:`FLUSHES_KEPT_MS` of them are kept.

Writes come from the event loop (rejections) and from the worker (requests, flushes). Neither may wait for
a disk: :class:`Journal` queues rows in memory (bounded; the oldest are dropped if the disk stalls) and a
thread of its own writes them every :data:`FLUSH_INTERVAL_S`, in one transaction. The journal is for
people, not for recovery: ``synchronous=NORMAL``, and a crash may lose its last quarter-second.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from connector.store.records import now_ms
from connector.store.sqlite_schema import transaction

__all__ = ["SCHEMA", "Journal", "connect_journal", "journal_path"]

log = logging.getLogger(__name__)

REJECTIONS_KEPT: Final = 500
REQUESTS_KEPT_MS: Final = 6 * 3600 * 1000
FLUSHES_KEPT_MS: Final = 24 * 3600 * 1000
FLUSH_INTERVAL_S: Final = 0.25
QUEUE_LIMIT: Final = 20_000
DETAIL_LIMIT: Final = 300  # characters of a rejection's reason text kept
PRUNE_EVERY_S: Final = 60.0
WAL_SWITCH_TIMEOUT_S: Final = 10.0

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS rejections (
    id       INTEGER PRIMARY KEY,
    at_ms    INTEGER NOT NULL,
    endpoint TEXT    NOT NULL,
    reason   TEXT    NOT NULL,
    status   INTEGER NOT NULL,
    detail   TEXT    NOT NULL
);
CREATE TABLE IF NOT EXISTS sheets_requests (
    id             INTEGER PRIMARY KEY,
    at_ms          INTEGER NOT NULL,
    kind           TEXT    NOT NULL,
    status         TEXT    NOT NULL,
    spreadsheet_id TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS sheets_requests_by_time ON sheets_requests (at_ms);
CREATE TABLE IF NOT EXISTS flush_log (
    id             INTEGER PRIMARY KEY,
    at_ms          INTEGER NOT NULL,
    spreadsheet_id TEXT    NOT NULL,
    company_ids    TEXT    NOT NULL,
    events         INTEGER NOT NULL,
    rows_updated   INTEGER NOT NULL,
    rows_added     INTEGER NOT NULL,
    requests       INTEGER NOT NULL,
    seconds        REAL    NOT NULL,
    latency_avg_ms INTEGER,
    latency_max_ms INTEGER,
    error          TEXT
);
CREATE INDEX IF NOT EXISTS flush_log_by_time ON flush_log (at_ms);
"""

INSERT_REJECTION: Final = (
    "INSERT INTO rejections (at_ms, endpoint, reason, status, detail) VALUES (?, ?, ?, ?, ?)"
)
INSERT_REQUEST: Final = (
    "INSERT INTO sheets_requests (at_ms, kind, status, spreadsheet_id) VALUES (?, ?, ?, ?)"
)
INSERT_FLUSH: Final = """
INSERT INTO flush_log (at_ms, spreadsheet_id, company_ids, events, rows_updated, rows_added, requests,
    seconds, latency_avg_ms, latency_max_ms, error)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""


def journal_path(data_dir: Path) -> Path:
    """Where the journal lives in a data directory."""
    return data_dir / "journal.sqlite3"


def connect_journal(data_dir: Path) -> sqlite3.Connection:
    """A connection to the journal of a data directory, its tables created if needed."""
    data_dir.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(journal_path(data_dir), isolation_level=None, check_same_thread=False, timeout=10)
    _use_wal(conn)
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(SCHEMA)
    return conn


def _use_wal(conn: sqlite3.Connection) -> None:
    """Switch to WAL. On a new file this needs the file to itself, and SQLite answers "locked" at once
    (no busy wait) when another process opens it at the same moment (serve and its worker at first
    start): try again for a while."""
    deadline = time.monotonic() + WAL_SWITCH_TIMEOUT_S
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


class Journal:
    """Queues journal rows and writes them from a thread of its own; safe to call from any thread."""

    def __init__(self, data_dir: Path) -> None:
        self._conn = connect_journal(data_dir)
        self._rows: deque[tuple[str, tuple[object, ...]]] = deque(maxlen=QUEUE_LIMIT)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._last_prune = 0.0
        self._thread = threading.Thread(target=self._run, name="journal", daemon=True)
        self._thread.start()

    def rejection(self, endpoint: str, reason: str, status: int, detail: str) -> None:
        """A webhook refused: its endpoint ("" when unknown), reason, HTTP status and why (no body)."""
        self._rows.append((INSERT_REJECTION, (now_ms(), endpoint, reason, status, detail[:DETAIL_LIMIT])))

    def sheets_request(self, kind: str, status: str, spreadsheet_id: str) -> None:
        """One Sheets API request sent, and how it was answered (HTTP status or the error's name)."""
        self._rows.append((INSERT_REQUEST, (now_ms(), kind, status, spreadsheet_id)))

    def flush(
        self,
        spreadsheet_id: str,
        company_ids: str,
        events: int,
        *,
        rows_updated: int = 0,
        rows_added: int = 0,
        requests: int = 0,
        seconds: float = 0.0,
        latencies_ms: list[int] | None = None,
        error: str | None = None,
    ) -> None:
        """One flush of a spreadsheet: what it wrote and how long its events waited, or its error."""
        latencies = latencies_ms or []
        average = sum(latencies) // len(latencies) if latencies else None
        row = (
            now_ms(),
            spreadsheet_id,
            company_ids,
            events,
            rows_updated,
            rows_added,
            requests,
            seconds,
            average,
            max(latencies) if latencies else None,
            error,
        )
        self._rows.append((INSERT_FLUSH, row))
        self._wake.set()

    def close(self) -> None:
        """Write what is queued and release the file."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)
        self._conn.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(FLUSH_INTERVAL_S)
            self._wake.clear()
            self._write()
        self._write()

    def _write(self) -> None:
        rows = list(self._drain())
        now = now_ms()
        prune = now / 1000 - self._last_prune >= PRUNE_EVERY_S
        if not rows and not prune:
            return
        try:
            with transaction(self._conn):
                for sql, params in rows:
                    self._conn.execute(sql, params)
                if prune:
                    self._prune(now)
        except sqlite3.Error as exc:
            # The journal only informs the console; losing rows must not stop the service.
            log.warning("could not write %d console journal rows: %s", len(rows), exc)
            return
        if prune:
            self._last_prune = now / 1000

    def _drain(self) -> Iterator[tuple[str, tuple[object, ...]]]:
        while True:
            try:
                yield self._rows.popleft()
            except IndexError:
                return

    def _prune(self, now: int) -> None:
        self._conn.execute(
            "DELETE FROM rejections WHERE id <= (SELECT MAX(id) FROM rejections) - ?", (REJECTIONS_KEPT,)
        )
        self._conn.execute("DELETE FROM sheets_requests WHERE at_ms < ?", (now - REQUESTS_KEPT_MS,))
        self._conn.execute("DELETE FROM flush_log WHERE at_ms < ?", (now - FLUSHES_KEPT_MS,))
