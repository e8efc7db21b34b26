"""Several workers on one store never lose an update: threads and processes, paused and killed at random.

Each example feeds ``tag_set`` events (each its own tag) for a few customers while several workers flush
them; hypothesis draws when each worker is paused (past its lease, as a GC pause, swap or SIGSTOP would)
and when it is killed mid-flush. Afterwards one clean worker drains what is left, and the saved state and
the sheet must equal the fold of all events: every tag present, one row per customer, one log row per
event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.events import decode_body, subject_of
from connector.localsheets.testing import LocalSheets
from connector.settings import Settings, load_settings
from connector.sheets.writer import SheetWriter
from connector.store import open_work_store
from connector.store.pg_intake import PgIntake
from connector.store.protocols import WorkStore
from connector.store.records import InboxRecord, now_ms
from connector.store.sqlite_schema import connect, inbox_path, migrate
from connector.store.sqlite_writer import insert_all
from connector.sync.mapping import load_mapping
from connector.sync.routing import Router
from connector.sync.state import EntityKey, visible_tags
from connector.sync.worker import Worker
from tests import settings_files
from tests.store.postgres import fresh_schema

TOKEN = "coordination-test-token-0123"
CUSTOMERS = 4


def tag_event(n: int) -> bytes:
    """The n-th tag_set event: tag ``t<n>`` set on customer ``n % CUSTOMERS + 1``."""
    customer = n % CUSTOMERS + 1
    body = {
        "company_id": 1,
        "event_type": "tag_set",
        "data": {
            "customer": {"id": customer, "name": f"Customer {customer}"},
            "staff": {"id": 1, "name": "Staff"},
            "tags": [{"id": 10_000 + n, "name": f"t{n}"}],
        },
    }
    return json.dumps(body).encode()


class Feeder:
    """Stores events as the intake would: into the SQLite file, or through the PostgreSQL intake."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._loop = asyncio.new_event_loop()
        self._intake = None if settings.store is None else PgIntake.open(settings.store.url.reveal())

    def feed(self, first: int, count: int) -> None:
        """Store events ``first .. first + count - 1``."""
        records = _tag_records(first, count)
        if self._intake is None:
            conn = connect(inbox_path(self.settings.data_dir))
            try:
                assert all(insert_all(conn, records))
            finally:
                conn.close()
        else:
            assert all(self._loop.run_until_complete(self._intake.put_many(records)))

    def close(self) -> None:
        if self._intake is not None:
            self._loop.run_until_complete(self._intake.aclose())
        self._loop.close()


def _tag_records(first: int, count: int) -> list[InboxRecord]:
    records = []
    for n in range(first, first + count):
        body = tag_event(n)
        decoded = decode_body(body)
        records.append(
            InboxRecord(
                received_ms=now_ms(),
                endpoint="main",
                company_id=1,
                event_type="tag_set",
                event_ms=None,
                body=body,
                content_key=decoded.content_key,
                subject=subject_of(decoded.event),
            )
        )
    return records


def settings_for(folder: Path, sheets: LocalSheets, lease_ms: int, store_url: str | None) -> Settings:
    spreadsheet_id = sheets.new_spreadsheet()
    worker = "max_delay_ms = 1\npoll_ms = 5\nmax_batch_events = 7"
    if store_url is not None:
        worker += f"\n[store]\nurl = {json.dumps(store_url)}"
    settings = load_settings(settings_files.write_settings(folder, sheets.url, spreadsheet_id, TOKEN, worker))
    # Shorter than the settings allow (1 s), so that examples are quick: set here, not in the file.
    settings = msgspec.structs.replace(
        settings, worker=msgspec.structs.replace(settings.worker, lease_ms=lease_ms)
    )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate(inbox_path(settings.data_dir))
    return settings


def drain_and_check(settings: Settings, sheets: LocalSheets, events: int) -> None:
    """Drain what is left with one clean worker, then compare state and sheet with the fold of all."""
    mapping = load_mapping(settings)
    store = open_work_store(settings)
    try:
        writer = SheetWriter.from_settings(settings.sheets, source=settings.source)
        worker = Worker(store, writer, Router.from_mapping(mapping), settings.worker)
        deadline = time.monotonic() + 60
        while store.lag():
            assert time.monotonic() < deadline, f"not drained: {store.lag()}"
            worker.run_once()
            time.sleep(0.02)
        expected = {c: sorted(f"t{n}" for n in range(events) if n % CUSTOMERS + 1 == c) for c in range(1, 5)}
        expected = {c: tags for c, tags in expected.items() if tags}
        states = store.load(EntityKey("customer", 1, c) for c in expected)
        saved = {key.entity_id: visible_tags(state) for key, state in states.items()}  # type: ignore[arg-type]
        assert saved == {c: sorted(tags, key=str.casefold) for c, tags in expected.items()}
        spreadsheet_id = mapping.companies[0].spreadsheet_id
        header, *rows = sheets.sheet_values(spreadsheet_id, "Customers")
        keys = [str(row[header.index("Customer ID")]) for row in rows]
        assert sorted(keys) == sorted(str(c) for c in expected), "a customer row is missing or doubled"
        for row in rows:
            customer = int(row[header.index("Customer ID")])
            tags = str(row[header.index("Tags")]).split(", ")
            assert sorted(tags) == sorted(expected[customer]), f"customer {customer}: lost tags"
        log_header, *log_rows = sheets.sheet_values(spreadsheet_id, "Events")
        log_keys = [row[log_header.index("Event key")] for row in log_rows]
        assert len(log_keys) == len(set(log_keys)) == events, "an event log row is missing or doubled"
    finally:
        store.close()


# --- threads --------------------------------------------------------------------------------------------


class Killed(BaseException):
    """The worker's 'process' was killed: nothing it does from here on reaches the store or the sheet."""


class Puppet:
    """One worker's switches: paused (all its threads wait, its heartbeat too) and killed, each armed to
    happen when the worker next reaches a point of its flush: its read, its write, its commit."""

    def __init__(self) -> None:
        self.running = threading.Event()
        self.running.set()
        self.killed = False
        self.armed: dict[str, tuple[str, int]] = {}

    def gate(self, point: str = "") -> None:
        action = self.armed.pop(point, None) if point else None
        if action is not None:
            kind, pause_ms = action
            if kind == "kill":
                self.killed = True
            else:
                self.running.clear()
                threading.Timer(pause_ms / 1000, self.running.set).start()
        self.running.wait()
        if self.killed:
            raise Killed


class PuppetStore:
    """A store whose every call first passes the worker's gate."""

    def __init__(self, inner: WorkStore, puppet: Puppet) -> None:
        self._inner = inner
        self._puppet = puppet

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._inner, name)

        def gated(*args: Any, **kwargs: Any) -> Any:
            self._puppet.gate("commit" if name == "commit_flush" else "")
            return method(*args, **kwargs)

        return gated


class PuppetWriter:
    """A sheet writer that passes the gate before its read and right before the lock check of a write."""

    def __init__(self, inner: SheetWriter, puppet: Puppet) -> None:
        self._inner = inner
        self._puppet = puppet

    def ready_in(self) -> float:
        return self._inner.ready_in()

    def flush(self, spreadsheet_id: str, batches: Any, *, before_write: Callable[[], None]) -> Any:
        self._puppet.gate("read")

        def gated_check() -> None:
            self._puppet.gate("write")
            before_write()

        return self._inner.flush(spreadsheet_id, batches, before_write=gated_check)


def run_puppet(worker: Worker, stop: threading.Event) -> None:
    with contextlib.suppress(Killed):
        worker.run(stop)


actions = st.lists(
    st.tuples(
        st.integers(0, 2),  # which worker
        st.integers(0, 600),  # when it is armed, ms after the start
        st.sampled_from(["read", "write", "commit"]),  # where in its next flush it happens
        st.sampled_from(["pause", "kill"]),
        st.integers(50, 900),  # how long a pause lasts, ms (the lease is 300 ms)
    ),
    max_size=6,
)


@pytest.fixture
def pg_schemas() -> Iterator[Callable[[], str]]:
    """A new store on the test PostgreSQL for each example (a fresh schema: its URL); dropped at the end."""
    with contextlib.ExitStack() as schemas:
        yield lambda: schemas.enter_context(fresh_schema())


@pytest.fixture
def folders(tmp_path: Path) -> Callable[[], Path]:
    counter = iter(range(10**6))

    def new() -> Path:
        folder = tmp_path / f"example-{next(counter)}"
        folder.mkdir()
        return folder

    return new


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # killed heartbeats
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(schedule=actions)
def test_worker_threads_paused_and_killed_lose_no_update(
    schedule: list[tuple[int, int, str, str, int]], local_sheets: LocalSheets, folders: Callable[[], Path]
) -> None:
    run_threads(schedule, local_sheets, folders(), None)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # killed heartbeats
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(schedule=actions)
def test_worker_threads_on_postgres_paused_and_killed_lose_no_update(
    schedule: list[tuple[int, int, str, str, int]],
    local_sheets: LocalSheets,
    folders: Callable[[], Path],
    pg_schemas: Callable[[], str],
) -> None:
    run_threads(schedule, local_sheets, folders(), pg_schemas())


def run_threads(
    schedule: list[tuple[int, int, str, str, int]],
    local_sheets: LocalSheets,
    folder: Path,
    store_url: str | None,
) -> None:
    """Three worker threads on one store (SQLite in ``folder``, or PostgreSQL), puppeteered."""
    settings = settings_for(folder, local_sheets, lease_ms=300, store_url=store_url)
    feeder = Feeder(settings)
    router = Router.from_mapping(load_mapping(settings))
    puppets = [Puppet() for _ in range(3)]
    stop = threading.Event()
    threads, stores = [], []
    for i, puppet in enumerate(puppets):
        store = open_work_store(settings)
        stores.append(store)
        writer = SheetWriter.from_settings(settings.sheets, source=settings.source)
        worker = Worker(
            PuppetStore(store, puppet),  # type: ignore[arg-type]
            PuppetWriter(writer, puppet),  # type: ignore[arg-type]
            router,
            settings.worker,
            owner=f"thread-worker-{i}",
        )
        threads.append(threading.Thread(target=run_puppet, args=(worker, stop), daemon=True))
    for thread in threads:
        thread.start()
    started = time.monotonic()
    events = 0
    pending = sorted(schedule, key=lambda action: action[1])
    while events < 120 or pending:
        elapsed_ms = (time.monotonic() - started) * 1000
        while pending and pending[0][1] <= elapsed_ms:
            who, _, point, kind, pause_ms = pending.pop(0)
            puppets[who].armed[point] = (kind, pause_ms)
        if events < 120:
            feeder.feed(events, 4)
            events += 4
        time.sleep(0.03)
    time.sleep(1.0)  # let the last pauses end and the leases of the killed run out
    stop.set()
    for puppet in puppets:
        puppet.running.set()
    for thread in threads:
        thread.join(30)
        assert not thread.is_alive()
    for store in stores:
        store.close()
    feeder.close()
    drain_and_check(settings, local_sheets, events)


# --- processes ------------------------------------------------------------------------------------------


def start_worker(config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "connector", "worker", "--config", str(config)],
        stdin=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


signals = st.lists(
    st.tuples(
        st.integers(0, 1),  # which worker process
        st.integers(0, 2_000),  # when, ms after the start
        st.sampled_from(["stop", "kill"]),
        st.integers(200, 2_500),  # how long a SIGSTOP lasts, ms (the lease is 1 s)
    ),
    min_size=1,
    max_size=4,
)


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(schedule=signals)
def test_worker_processes_stopped_and_killed_lose_no_update(
    schedule: list[tuple[int, int, str, int]], local_sheets: LocalSheets, folders: Callable[[], Path]
) -> None:
    run_processes(schedule, local_sheets, folders(), None)


@settings(max_examples=2, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(schedule=signals)
def test_worker_processes_on_postgres_stopped_and_killed_lose_no_update(
    schedule: list[tuple[int, int, str, int]],
    local_sheets: LocalSheets,
    folders: Callable[[], Path],
    pg_schemas: Callable[[], str],
) -> None:
    run_processes(schedule, local_sheets, folders(), pg_schemas())


def run_processes(
    schedule: list[tuple[int, int, str, int]], local_sheets: LocalSheets, folder: Path, store_url: str | None
) -> None:
    """Two `doopage-sheets worker` processes on one store, stopped and killed by signals."""
    settings = settings_for(folder, local_sheets, lease_ms=1_000, store_url=store_url)
    config = folder / "settings.toml"
    feeder = Feeder(settings)
    workers = [start_worker(config) for _ in range(2)]
    try:
        started = time.monotonic()
        events = 0
        pending = sorted(schedule, key=lambda action: action[1])
        resumes: list[tuple[float, int]] = []
        while events < 100 or pending or resumes:
            now = time.monotonic()
            elapsed_ms = (now - started) * 1000
            while pending and pending[0][1] <= elapsed_ms:
                who, _, kind, stop_ms = pending.pop(0)
                if kind == "kill":
                    workers[who].kill()
                    workers[who].wait()
                    workers[who] = start_worker(config)  # as the supervisor would
                else:
                    workers[who].send_signal(signal.SIGSTOP)
                    resumes.append((now + stop_ms / 1000, who))
            for resume in [r for r in resumes if r[0] <= now]:
                resumes.remove(resume)
                workers[resume[1]].send_signal(signal.SIGCONT)
            if events < 100:
                feeder.feed(events, 10)
                events += 10
            time.sleep(0.05)
    finally:
        for process in workers:
            process.send_signal(signal.SIGCONT)
            process.terminate()
        for process in workers:
            process.wait(60)
        feeder.close()
    drain_and_check(settings, local_sheets, events)
