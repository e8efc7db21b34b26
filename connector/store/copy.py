"""Moving a store's contents to another backend: ``doopage-sheets store copy --from ... --to ...``.

Everything a store holds is copied as it is: the events with their ids, statuses, attempts and errors
(ids are kept so that the order of events is kept), the folded entity states, the flush records, and the
spreadsheet locks with their fencing tokens (so tokens keep growing after the move). Leases are not: the
services are stopped during a copy, so every claim and lock hold ends; a retry time of a released event
is kept. The target must hold no events yet; a PostgreSQL target is migrated first.

A location is a SQLite data directory (the ``server.data_dir`` of a settings file) or a PostgreSQL URL.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import psycopg

from connector.errors import StoreError
from connector.store.pg_schema import check_version, migrate
from connector.store.pg_store import store_errors
from connector.store.sqlite_schema import connect, inbox_path
from connector.store.sqlite_schema import migrate as migrate_sqlite

__all__ = ["CopyReport", "copy_store", "is_postgres_url", "store_label"]

# The tables copied, with their columns in one order for both backends.
TABLES: Final = {
    "events": (
        "id, received_ms, endpoint, company_id, event_type, event_ms, body, dedup_key, content_key, subject,"
        " status, attempts, lease_owner, lease_until, last_error, updated_ms"
    ),
    "entity_state": "kind, company_id, entity_id, state",
    "flushes": "spreadsheet_id, company_ids, last_ok_ms, last_error, last_error_ms",
    "locks": "name, owner, until_ms, token",
}

BATCH: Final = 5_000


@dataclass
class CopyReport:
    """How many rows of each table were copied."""

    rows: dict[str, int]


def is_postgres_url(location: str) -> bool:
    """Whether a location names a PostgreSQL database rather than a data directory."""
    return location.startswith(("postgresql://", "postgres://"))


def copy_store(source: str, target: str) -> CopyReport:
    """Copy every row of the store at ``source`` into the empty store at ``target``."""
    if source == target:
        raise StoreError("the source and the target are the same store")
    with _open(source, create=False) as reading, _open(target, create=True) as writing:
        if _count(writing, "events"):
            raise StoreError(
                f"the target {store_label(target)} already holds events; copy only into an empty store"
            )
        rows = {}
        for table, columns in TABLES.items():
            rows[table] = _copy_table(reading, writing, table, columns)
        if isinstance(writing, psycopg.Connection):
            # New events get ids after the copied ones.
            writing.execute(
                "SELECT setval(pg_get_serial_sequence('events', 'id'), COALESCE(MAX(id), 0) + 1, false)"
                " FROM events"
            )
        writing.commit()
    return CopyReport(rows)


Conn = sqlite3.Connection | psycopg.Connection[Any]


@contextlib.contextmanager
def _open(location: str, *, create: bool) -> Iterator[Conn]:
    if is_postgres_url(location):
        if create:
            migrate(location)
        with store_errors(f"cannot open {store_label(location)}"), psycopg.connect(location) as conn:
            check_version(conn)
            conn.commit()
            yield conn
        return
    path = inbox_path(Path(location))
    if not create and not path.exists():
        raise StoreError(f"there is no store in {location} (no {path.name})")
    Path(location).mkdir(parents=True, exist_ok=True)
    migrate_sqlite(path)
    lite = connect(path)
    try:
        lite.execute("BEGIN IMMEDIATE" if create else "BEGIN")
        yield lite
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            lite.execute("ROLLBACK")
        raise
    finally:
        lite.close()


def store_label(location: str) -> str:
    """A location for messages, without a password."""
    if not is_postgres_url(location):
        return location
    info = psycopg.conninfo.conninfo_to_dict(location)
    return f"postgresql://{info.get('host', '')}/{info.get('dbname', '')}"


def _count(conn: Conn, table: str) -> int:
    row = conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()  # noqa: S608 (a fixed table name)
    return int(row[0]) if row else 0


def _copy_table(reading: Conn, writing: Conn, table: str, columns: str) -> int:
    names = [c.strip() for c in columns.split(",")]
    select = f"SELECT {columns} FROM {table} ORDER BY 1"  # noqa: S608 (fixed names)
    copied = 0
    if isinstance(writing, psycopg.Connection):
        with writing.cursor() as cursor, cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            for row in _rows(reading, select):
                copy.write_row(_moved(table, names, row))
                copied += 1
    else:
        marks = ", ".join("?" * len(names))
        insert = f"INSERT INTO {table} ({columns}) VALUES ({marks})"  # noqa: S608 (fixed names)
        batch: list[tuple[Any, ...]] = []
        for row in _rows(reading, select):
            batch.append(_moved(table, names, row))
            if len(batch) >= BATCH:
                writing.executemany(insert, batch)
                copied += len(batch)
                batch = []
        writing.executemany(insert, batch)
        copied += len(batch)
    return copied


def _rows(conn: Conn, select: str) -> Iterator[tuple[Any, ...]]:
    if isinstance(conn, psycopg.Connection):
        with conn.cursor(name="copy_source") as cursor:  # server-side: rows come in batches
            cursor.itersize = BATCH
            cursor.execute(select)
            yield from cursor
    else:
        yield from conn.execute(select)


def _moved(table: str, names: list[str], row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A row as the target gets it: bytes as bytes, and no lease or lock hold carried over."""
    values = [bytes(v) if isinstance(v, memoryview) else v for v in row]
    if table == "events" and values[names.index("lease_owner")] is not None:
        values[names.index("lease_owner")] = None
        values[names.index("lease_until")] = None
    if table == "locks":
        values[names.index("until_ms")] = 0
    return tuple(values)
