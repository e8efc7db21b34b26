"""High availability on PostgreSQL: two ``serve`` replicas (each with its worker) on one database.

A client that tries the other replica when one does not answer (as a load balancer would) delivers a
stream of DooPage events, alternating between the replicas; one replica is killed with SIGKILL twice
mid-stream and started again, and, in another test, the database itself is restarted mid-stream. Every
acknowledged event must reach the sheet, no row may be doubled, and the sheet must be exact soon after
the last delivery, without restarting any service.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from connector.localsheets.testing import LocalSheets, local_sheets_process
from connector.threaded_server import free_port
from tests.e2e.harness import (
    PATH,
    Service,
    assert_sheet_is,
    deliveries,
    expected_sheet,
    history,
    write_settings,
)
from tests.store.postgres import fresh_schema, restart_server

# How soon after the last acknowledged delivery the sheet must be exact.
EXACT_WITHIN_S = 15.0


@pytest.fixture(scope="module")
def sheets() -> Iterator[LocalSheets]:
    """The local Sheets API server as a process of its own."""
    with local_sheets_process() as server:
        yield server


@dataclass
class Replicas:
    """Two `serve` replicas of one settings file but for their ports, on one PostgreSQL schema."""

    services: list[Service]
    spreadsheet_id: str

    def stop(self) -> None:
        for service in self.services:
            if service.process is not None:
                service.kill()


@pytest.fixture
def replicas(tmp_path: Path, sheets: LocalSheets) -> Iterator[Replicas]:
    spreadsheet_id = sheets.new_spreadsheet()
    with fresh_schema() as url:
        services = []
        for name in ("a", "b"):
            folder = tmp_path / name
            folder.mkdir()
            config = write_settings(folder, sheets.url, spreadsheet_id, free_port())
            with config.open("a", encoding="utf-8") as file:
                # (write_settings gives each replica's console a port of its own: both run on this machine)
                file.write(f'\n[store]\nurl = "{url}"\n')
            services.append(Service(config))
        group = Replicas(services, spreadsheet_id)
        try:
            for service in services:
                service.start()
            yield group
        finally:
            group.stop()


@dataclass
class FailoverClient:
    """Delivers each body until a replica acknowledges it: first to the replica whose turn it is, then to
    the other when that one does not answer or answers 503 (as a load balancer retries)."""

    replicas: list[Service]
    answers: Counter[int] = field(default_factory=Counter)  # status codes seen (0: no answer)
    acknowledged: int = 0
    last_ack: float = 0.0
    _turn: Iterator[int] = field(default_factory=lambda: itertools.cycle((0, 1)))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def deliver(self, body: bytes, client: httpx.Client) -> None:
        with self._lock:
            first = next(self._turn)
        for attempt in range(2_000):
            service = self.replicas[(first + attempt) % 2]
            try:
                status = client.post(
                    f"http://127.0.0.1:{service.port}{PATH}",
                    content=body,
                    headers={"content-type": "application/json"},
                ).status_code
            except httpx.TransportError:
                status = 0
            with self._lock:
                self.answers[status] += 1
                if status == 200:
                    self.acknowledged += 1
                    self.last_ack = time.monotonic()
                    return
            assert status in (0, 503), f"answer {status}"
            if attempt % 2:
                time.sleep(0.05)  # both replicas refused: wait a moment, as DooPage retries later
        raise AssertionError("no replica acknowledged a delivery")

    def send_all(self, bodies: list[bytes], senders: int, progress: Callable[[int], None]) -> None:
        """Deliver every body over ``senders`` connections each; ``progress`` sees the count of acks."""
        queue = iter(enumerate(bodies))
        taking = threading.Lock()

        def sender() -> None:
            with httpx.Client(timeout=3.0) as client:
                while True:
                    with taking:
                        item = next(queue, None)
                    if item is None:
                        return
                    self.deliver(item[1], client)
                    progress(self.acknowledged)

        threads = [threading.Thread(target=sender) for _ in range(senders)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


def wait_exact(replicas: Replicas, sheets: LocalSheets, bodies: list[bytes], after: float) -> float:
    """Seconds from ``after`` until the sheet holds exactly the fold of ``bodies``; fails past the limit."""
    settings = replicas.services[0].settings
    expected = expected_sheet(settings, bodies)
    while True:
        try:
            assert_sheet_is(sheets, replicas.spreadsheet_id, settings, expected)
            return time.monotonic() - after
        except AssertionError as exc:
            if "duplicated keys" in str(exc):
                raise
            if time.monotonic() - after > EXACT_WITHIN_S:
                raise
        time.sleep(0.2)


def test_killing_a_replica_twice_mid_stream_loses_nothing_and_doubles_nothing(
    replicas: Replicas, sheets: LocalSheets
) -> None:
    events = history(seed=11, events=900, customers=120, orders=80)
    sent = deliveries(events, seed=12, duplicate_rate=0.1)
    client = FailoverClient(replicas.services)
    victim = replicas.services[0]
    second_kill = threading.Event()
    errors: list[BaseException] = []

    def wait_acked(count: int) -> None:
        while client.acknowledged < count:
            time.sleep(0.01)

    def control() -> None:
        """Kill the replica at a quarter of the stream and at half of it, starting it again each time."""
        try:
            for at in (len(sent) // 4, len(sent) // 2):
                wait_acked(at)
                victim.kill()
                if at == len(sent) // 2:
                    second_kill.set()
                time.sleep(0.5)
                victim.start()
        except BaseException as exc:
            errors.append(exc)
            second_kill.set()

    def progress(acked: int) -> None:
        # The last quarter waits for the second kill, so that both fall mid-stream however slow a
        # restart is on a busy machine.
        if acked >= 3 * len(sent) // 4:
            second_kill.wait(120)

    controller = threading.Thread(target=control)
    controller.start()
    client.send_all(sent, senders=4, progress=progress)
    controller.join()
    assert not errors, errors
    assert client.acknowledged == len(sent)
    assert client.answers[0] > 0, "no delivery met the killed replica"
    took = wait_exact(replicas, sheets, events, client.last_ack)
    print(f"kill -9 twice: sheet exact {took:.1f} s after the last ack; answers {dict(client.answers)}")
    assert took <= EXACT_WITHIN_S


def test_a_database_restart_mid_stream_gives_503s_then_recovers_without_restarting_the_service(
    replicas: Replicas, sheets: LocalSheets
) -> None:
    events = history(seed=13, events=600, customers=80, orders=60)
    sent = deliveries(events, seed=14, duplicate_rate=0.1)
    client = FailoverClient(replicas.services)
    restarted: list[threading.Thread] = []

    deciding = threading.Lock()  # the senders report progress concurrently

    def progress(acked: int) -> None:
        with deciding:
            if acked >= len(sent) // 3 and not restarted:
                restart = threading.Thread(target=restart_server)
                restarted.append(restart)
                restart.start()

    pids = [service.process.pid for service in replicas.services if service.process is not None]
    client.send_all(sent, senders=4, progress=progress)
    for restart in restarted:
        restart.join()
    assert restarted, "the database was not restarted"
    assert client.acknowledged == len(sent)
    assert client.answers[503] > 0, "no request was refused while the database was down"
    took = wait_exact(replicas, sheets, events, client.last_ack)
    print(f"database restart: sheet exact {took:.1f} s after the last ack; answers {dict(client.answers)}")
    assert took <= EXACT_WITHIN_S
    # The same processes served before and after: nothing was restarted.
    assert [service.process.pid for service in replicas.services if service.process is not None] == pids
