"""The worker as a child of ``serve``: restarted when it dies, never outliving the service, and what a
dead process held taken over at once."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx

from connector.localsheets.testing import LocalSheets
from connector.samples import sample_bodies
from connector.store.owners import _host, is_gone, this_process
from tests.e2e.harness import PATH, Service

JSON = {"content-type": "application/json"}


def worker_children(pid: int) -> list[int]:
    """The worker child processes of a ``serve`` process."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            if b"connector.sync.supervisor" in cmdline:
                found.append(int(child))
    return found


def wait_for(condition, seconds: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def post_samples(service: Service, names: list[str]) -> None:
    bodies = sample_bodies()
    with httpx.Client(base_url=service.base, timeout=5) as http:
        for name in names:
            assert http.post(PATH, content=bodies[name], headers=JSON).status_code == 200


def test_a_killed_worker_child_is_restarted_and_goes_on_writing(
    service: Service, sheets_server: LocalSheets, spreadsheet_id: str
) -> None:
    service.start()
    assert service.process is not None
    [child] = worker_children(service.process.pid)
    post_samples(service, ["customer_created"])
    service.wait_settled(1)
    subprocess.run(["kill", "-9", str(child)], check=True)
    wait_for(lambda: worker_children(service.process.pid) not in ([], [child]), 10, "no new worker child")  # type: ignore[union-attr]
    post_samples(service, ["order_created", "customer_closed"])
    assert service.wait_settled(3) == {"done": 3}
    assert "stopped (exit status -9); starting another" in service.log()
    assert service.stop() == 0


def test_the_worker_child_never_outlives_a_killed_service(service: Service) -> None:
    service.start()
    assert service.process is not None
    [child] = worker_children(service.process.pid)
    service.kill()
    wait_for(lambda: not Path(f"/proc/{child}").exists(), 15, "the worker child outlived serve")


def test_an_owner_is_gone_only_when_its_process_on_this_host_has_ended() -> None:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        start = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
        owner = f"{_host()}/{process.pid}/{start}/worker"
        assert not is_gone(owner)
        assert is_gone(f"{_host()}/{process.pid}/{int(start) + 1}/worker")  # a recycled pid
        assert not is_gone(f"another-host/{process.pid}/0/worker")  # only its lease can tell
        assert not is_gone("worker-1234")  # an owner id of another form
    finally:
        process.kill()
        process.wait()
    assert is_gone(owner)
    assert not is_gone(f"{this_process()}/worker")


def test_a_starting_worker_takes_over_at_once_what_a_dead_process_held(tmp_path: Path) -> None:
    from connector.store.sqlite_store import SqliteStore
    from connector.sync.worker import take_over_gone_owners
    from tests.store.conftest import _sqlite, record

    put, open_store = _sqlite(tmp_path)
    put([record(n) for n in range(3)])
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    start = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    dead = f"{_host()}/{process.pid}/{start}/worker"
    store: SqliteStore = open_store()  # type: ignore[assignment]
    try:
        held = store.take_lock("sheet-1", dead, ttl_ms=3_600_000)
        assert held is not None
        assert len(store.claim(dead, [1], 3_600_000, max_events=10, max_bytes=10**6)) == 3
        assert take_over_gone_owners(store) == []  # alive: nothing taken
        process.kill()
        process.wait()
        assert take_over_gone_owners(store) == [dead]
        taken = store.take_lock("sheet-1", "new-worker", ttl_ms=10_000)
        assert taken is not None
        assert taken.token > held.token
        assert len(store.claim("new-worker", [1], 10_000, max_events=10, max_bytes=10**6)) == 3
    finally:
        process.kill()
        store.close()


def test_metrics_of_the_worker_child_are_served_by_serve_and_survive_its_restart(service: Service) -> None:
    service.start()
    assert service.process is not None
    post_samples(service, ["customer_created"])
    service.wait_settled(1)

    def flushes() -> float:
        text = httpx.get(f"{service.base}/metrics", timeout=5).text
        [line] = [line for line in text.splitlines() if line.startswith("doopage_flush_seconds_count")]
        return float(line.split()[-1])

    assert flushes() >= 1
    [child] = worker_children(service.process.pid)
    subprocess.run(["kill", "-9", str(child)], check=True)
    wait_for(lambda: worker_children(service.process.pid) not in ([], [child]), 10, "no new worker child")  # type: ignore[union-attr]
    post_samples(service, ["order_created"])
    service.wait_settled(2)
    assert flushes() >= 2  # the dead child's count is kept, the new one's added
    assert service.stop() == 0
