"""The store: the durable inbox of events, their claims, the spreadsheet locks, entity state and flush
records, behind one protocol per role (:mod:`connector.store.protocols`).

:func:`open_work_store` and :func:`open_intake` pick the backend for a settings file: the PostgreSQL
database of ``[store] url`` when there is one, else the SQLite file in ``server.data_dir``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from connector.settings import Settings
    from connector.store.protocols import Intake, WorkStore

__all__ = ["check_store", "open_intake", "open_work_store"]


def open_work_store(settings: Settings) -> WorkStore:
    """A worker's store for these settings, on a connection of its own (StoreError if it cannot open, or
    if the database's schema is not this program's)."""
    if settings.store is not None:
        from connector.store.pg_store import PgStore

        return PgStore.open(settings.store.url.reveal(), settings.store.worker_pool_size, settings.source)
    from connector.store.sqlite_store import SqliteStore

    return SqliteStore.open(settings.data_dir)


def open_intake(settings: Settings) -> Intake:
    """The webhook routes' store for these settings; starts what it needs (the SQLite writer process, or
    a connection pool on first use)."""
    timeout_s = settings.server.commit_timeout_ms / 1000
    if settings.store is not None:
        from connector.store.pg_intake import PgIntake

        return PgIntake.open(settings.store.url.reveal(), timeout_s, settings.store.commit_concurrency)
    from connector.store.sqlite_intake import SqliteInbox

    return SqliteInbox.open(settings.data_dir, timeout_s)


def check_store(settings: Settings) -> None:
    """Raise StoreError, saying what to run, unless the store can be used by this program: a PostgreSQL
    database must be reachable and at this program's schema version (the SQLite file migrates itself)."""
    if settings.store is None:
        return
    import psycopg

    from connector.store.pg_schema import check_version
    from connector.store.pg_store import store_errors

    with (
        store_errors("cannot open the store"),
        psycopg.connect(settings.store.url.reveal(), connect_timeout=10) as conn,
    ):
        check_version(conn, settings.source)
