"""Which files `backfill` has imported, known by their content rather than their name or modification time.

An imported file's data carries an as-of time (by default the file's modification time), and its events'
keys depend on it. A file downloaded again or merely touched has a new modification time but the same
content: taking that new time would store every event again. So the as-of time first used for a content
(its SHA-256) is remembered in the inbox database, and used again for the same content.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Final

from connector.store.records import now_ms
from connector.store.sqlite_schema import connect, inbox_path, migrate, transaction

__all__ = ["content_digest", "remember_as_of", "remembered_as_of"]

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS imports (
    sha256   TEXT    PRIMARY KEY,
    as_of_ms INTEGER NOT NULL,
    first_ms INTEGER NOT NULL,
    name     TEXT    NOT NULL
);
"""
CHUNK: Final = 1 << 20


def content_digest(path: Path) -> str:
    """The SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def remembered_as_of(data_dir: Path, digest: str) -> int | None:
    """The as-of time an earlier import of this content used, if any."""
    path = inbox_path(data_dir)
    if not path.exists():
        return None
    conn = connect(path)
    try:
        conn.executescript(SCHEMA)  # the table of imports: a table of its own, not part of the store's schema
        row = conn.execute("SELECT as_of_ms FROM imports WHERE sha256 = ?", (digest,)).fetchone()
    finally:
        conn.close()
    return None if row is None else int(row[0])


def remember_as_of(data_dir: Path, digest: str, as_of_ms: int, name: str) -> int:
    """Record the as-of time of a content unless one is recorded already; the one in force."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = inbox_path(data_dir)
    migrate(path)  # the store may not exist yet
    conn = connect(path)
    try:
        conn.executescript(SCHEMA)
        with transaction(conn):
            conn.execute(
                "INSERT INTO imports (sha256, as_of_ms, first_ms, name) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (sha256) DO NOTHING",
                (digest, as_of_ms, now_ms(), name),
            )
            (kept,) = conn.execute("SELECT as_of_ms FROM imports WHERE sha256 = ?", (digest,)).fetchone()
    finally:
        conn.close()
    return int(kept)
