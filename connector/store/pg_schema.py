"""The PostgreSQL store's schema: versioned SQL files applied in order, and the check that refuses a
database whose version this program does not know.

The files are ``migrations/NNNN_name.sql`` in this package; version N is the file numbered N. A table
``schema_version`` records which ones were applied. :func:`migrate` takes a session advisory lock first,
so replicas that run ``doopage-sheets migrate`` at the same moment apply each file once, one after the
other; each file runs in a transaction of its own together with its row in ``schema_version``.

Unlike the embedded SQLite file, a shared database is never migrated implicitly: ``serve`` and
``worker`` only check (:func:`check_version`) and say what to run.
"""

from __future__ import annotations

import functools
import importlib.resources
import re
from typing import Any, Final

import psycopg

from connector.errors import StoreError

__all__ = ["Migration", "applied_version", "check_version", "known_version", "migrate", "migrations"]

# Any fixed number: the key of the advisory lock held while migrating.
MIGRATION_LOCK: Final = 0x646F6F70616765  # "doopage"

_FILE: Final = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")

MIGRATE_HINT: Final = "run `doopage-sheets migrate --config {config}`"


class Migration:
    """One versioned SQL file."""

    def __init__(self, version: int, name: str, sql: str) -> None:
        self.version = version
        self.name = name
        self.sql = sql


@functools.cache
def migrations() -> tuple[Migration, ...]:
    """Every migration shipped with this program, by version (1, 2, ... without gaps)."""
    folder = importlib.resources.files("connector.store") / "migrations"
    found = []
    for entry in folder.iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    assert [m.version for m in found] == list(range(1, len(found) + 1)), "migration numbers have a gap"
    return tuple(found)


def known_version() -> int:
    """The schema version this program works with."""
    return migrations()[-1].version


def applied_version(conn: psycopg.Connection[Any]) -> int:
    """The database's schema version; 0 when it has none of this program's tables yet."""
    exists = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return 0
    row = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()
    return int(row[0]) if row else 0


def check_version(conn: psycopg.Connection[Any], config: str = "") -> None:
    """Raise StoreError, saying what to do, unless the database has exactly this program's schema
    (``config``: the settings file, for the command to run)."""
    hint = MIGRATE_HINT.format(config=config or "<your settings file>")
    version = applied_version(conn)
    known = known_version()
    if version == known:
        return
    if version > known:
        raise StoreError(
            f"the database has schema version {version}, newer than this program's ({known}):"
            " upgrade doopage-sheets on this host"
        )
    if version == 0:
        raise StoreError(f"the database has no doopage-sheets schema yet: {hint}")
    raise StoreError(
        f"the database has schema version {version}, older than this program's ({known}): {hint}"
    )


def migrate(conninfo: str) -> list[str]:
    """Bring the database to this program's schema; the names of the files applied (none: up to date).

    Raises StoreError when the database cannot be reached or a file fails (that file's changes are rolled
    back; the ones before it stay), or when the database is newer than this program.
    """
    try:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
            try:
                return _apply(conn)
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
    except psycopg.Error as exc:
        raise StoreError(f"cannot migrate the database: {exc}") from exc


def _apply(conn: psycopg.Connection[Any]) -> list[str]:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_version ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
        " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
    )
    current = applied_version(conn)
    if current > known_version():
        check_version(conn)
    applied = []
    for migration in migrations():
        if migration.version <= current:
            continue
        with conn.transaction():
            conn.execute(migration.sql.encode())
            conn.execute(
                "INSERT INTO schema_version (version, name) VALUES (%s, %s)",
                (migration.version, migration.name),
            )
        applied.append(migration.name)
    return applied
