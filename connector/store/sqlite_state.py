"""Folded customer and order state, persisted in SQLite beside the inbox.

The worker loads the state of the entities a batch touches, folds the batch (:mod:`connector.sync.state`)
and saves the result in one transaction, so it never needs an entity's whole history. Save before the
batch is acknowledged in the inbox: if the process dies between the two, the batch is folded again on
restart, which changes nothing because folding is idempotent.

One SQLite file in the data directory (``state.sqlite3``), WAL, ``synchronous=FULL``: once acknowledged
events are no longer re-read, this state is the only record of what they did. One connection, guarded
by a lock, so the store may be used from a worker thread.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Final

from connector.errors import StoreError
from connector.sync.state import EntityKey, EntityKind, EntityState, decode_state, encode_state

__all__ = ["SCHEMA", "SCHEMA_VERSION", "StateStore", "state_path"]

SCHEMA_VERSION: Final = 1

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS entity_state (
    kind        TEXT    NOT NULL,
    company_id  INTEGER NOT NULL,
    entity_id   INTEGER NOT NULL,
    state       BLOB    NOT NULL,
    PRIMARY KEY (kind, company_id, entity_id)
) WITHOUT ROWID;
"""

SELECT_ONE: Final = "SELECT state FROM entity_state WHERE kind = ? AND company_id = ? AND entity_id = ?"

SELECT_COMPANY: Final = """
SELECT state FROM entity_state WHERE kind = ? AND company_id = ? ORDER BY entity_id
"""

UPSERT: Final = """
INSERT INTO entity_state (kind, company_id, entity_id, state) VALUES (?, ?, ?, ?)
ON CONFLICT (kind, company_id, entity_id) DO UPDATE SET state = excluded.state
"""

COUNT: Final = "SELECT kind, COUNT(*) FROM entity_state GROUP BY kind ORDER BY kind"


def state_path(data_dir: Path) -> Path:
    """Where the state database lives in a data directory."""
    return data_dir / "state.sqlite3"


class StateStore:
    """Customer and order states by :class:`~connector.sync.state.EntityKey`."""

    def __init__(self, path: Path, busy_timeout: float = 10.0) -> None:
        """Open the store at ``path``; a write waits up to ``busy_timeout`` seconds for another writer."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=busy_timeout
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._migrate()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the state store {path}: {exc}") from exc
        self.path = path
        self._lock = threading.Lock()

    @classmethod
    def open(cls, data_dir: Path, busy_timeout: float = 10.0) -> StateStore:
        """Open (creating if needed) the state store of a data directory."""
        return cls(state_path(data_dir), busy_timeout)

    def _migrate(self) -> None:
        """Create the schema, or refuse a file written by a newer version."""
        (version,) = self._conn.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(f"schema version {version} is newer than this program's")
        self._conn.executescript(SCHEMA)
        self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def load(self, keys: Iterable[EntityKey]) -> dict[EntityKey, EntityState]:
        """The stored states of these entities; an entity never saved is absent from the result."""
        found: dict[EntityKey, EntityState] = {}
        with self._lock, self._errors("read"):
            for key in set(keys):
                row = self._conn.execute(SELECT_ONE, (key.kind, key.company_id, key.entity_id)).fetchone()
                if row is not None:
                    found[key] = decode_state(row[0])
        return found

    def save(self, states: Mapping[EntityKey, EntityState] | Iterable[EntityState]) -> None:
        """Write these states (replacing older ones) in one durable transaction."""
        values = states.values() if isinstance(states, Mapping) else states
        rows = [(s.key.kind, s.key.company_id, s.key.entity_id, encode_state(s)) for s in values]
        with self._lock, self._errors("write"):
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(UPSERT, rows)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def company_states(self, kind: EntityKind, company_id: int) -> list[EntityState]:
        """Every stored state of one kind for a company, by id (for replaying onto a new spreadsheet)."""
        with self._lock, self._errors("read"):
            blobs = [row[0] for row in self._conn.execute(SELECT_COMPANY, (kind, company_id))]
        return [decode_state(blob) for blob in blobs]

    def counts(self) -> dict[str, int]:
        """Number of stored states by kind ('customer', 'order')."""
        with self._lock, self._errors("read"):
            return {kind: count for kind, count in self._conn.execute(COUNT)}

    def close(self) -> None:
        """Release the database file."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Turn sqlite3 errors into StoreError naming the file and what failed."""
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreError(f"cannot {action} the state store {self.path}: {exc}") from exc
