"""The store's backends, for the contract suite: each test runs once per backend."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from connector.store.pg_intake import PgIntake
from connector.store.pg_store import PgStore
from connector.store.protocols import WorkStore
from connector.store.records import InboxRecord
from connector.store.sqlite_intake import SqliteInbox
from connector.store.sqlite_store import SqliteStore
from tests.store.postgres import fresh_schema

# A backend: (put these records through its intake, open a work store), both on the same data.
Backend = tuple[Callable[[list[InboxRecord]], list[bool]], Callable[[], WorkStore]]


def record(n: int, company_id: int = 1, status: str = "pending", body: bytes = b"{}") -> InboxRecord:
    """A timestamped record; ``n`` orders them and makes their dedup keys."""
    return InboxRecord(
        received_ms=1_000 + n,
        endpoint="main",
        company_id=company_id,
        event_type="customer_created",
        event_ms=n,
        body=body,
        content_key=f"key-{n}",
        subject=f"customer:{n}",
        status=status,
    )


def _sqlite(folder: Path) -> Backend:
    def put(records: list[InboxRecord]) -> list[bool]:
        async def run() -> list[bool]:
            inbox = SqliteInbox.open(folder)
            try:
                return await inbox.put_many(records)
            finally:
                inbox.close()

        return asyncio.run(run())

    return put, lambda: SqliteStore.open(folder)


def _postgres(url: str) -> Backend:
    def put(records: list[InboxRecord]) -> list[bool]:
        async def run() -> list[bool]:
            intake = PgIntake.open(url)
            try:
                return await intake.put_many(records)
            finally:
                await intake.aclose()

        return asyncio.run(run())

    return put, lambda: PgStore.open(url)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Each backend on fresh, empty data (PostgreSQL: a schema of its own in the test database)."""
    with ExitStack() as stack:
        if request.param == "sqlite":
            yield _sqlite(tmp_path)
        else:
            yield _postgres(stack.enter_context(fresh_schema()))


@pytest.fixture
def store(backend: Backend) -> Iterator[WorkStore]:
    """A work store holding 10 pending events of companies 1 and 2, and one of an unknown type."""
    put, open_store = backend
    put([record(n, company_id=1 + n % 2) for n in range(10)] + [record(99, status="unknown")])
    opened = open_store()
    yield opened
    opened.close()
