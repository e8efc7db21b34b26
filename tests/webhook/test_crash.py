"""kill -9 the real service under load: every acknowledged event is in the inbox after a restart."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

import httpx

from connector.events import decode_body
from connector.store.sqlite_schema import inbox_path
from connector.threaded_server import free_port
from tests.e2e.harness import Service
from tests.webhook.conftest import JSON, URL, write_config


def children_of(pid: int) -> list[int]:
    """The running child processes of a process (Linux /proc)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def event_body(n: int) -> bytes:
    return json.dumps(
        {
            "company_id": 1,
            "event_type": "customer_updated",
            "timestamp": 1_700_000_000_000 + n,
            "data": {"customer": {"id": n, "name": f"Customer {n}"}},
        }
    ).encode()


def test_kill_9_loses_no_acknowledged_event(tmp_path):
    config = write_config(tmp_path, extra=f"port = {free_port()}")
    config.write_text(config.read_text() + f"\n[console]\nport = {free_port()}\n")  # not the shared 8081
    service = Service(config)
    acknowledged: list[bytes] = []
    lock = threading.Lock()
    stop = threading.Event()

    def sender(worker: int) -> None:
        with httpx.Client(base_url=service.base, timeout=5) as http:
            n = worker
            while not stop.is_set():
                body = event_body(n)
                try:
                    response = http.post(URL, content=body, headers=JSON)
                except httpx.TransportError:
                    return  # the service is gone
                if response.status_code == 200:
                    with lock:
                        acknowledged.append(body)
                n += 8

    try:
        service.start()
        senders = [threading.Thread(target=sender, args=(i,)) for i in range(8)]
        for thread in senders:
            thread.start()
        while len(acknowledged) < 300:
            time.sleep(0.01)
        assert service.process is not None
        writers = children_of(service.process.pid)
        assert writers, "the service runs its inbox writer as a child process"
        service.kill()
        # The writer sees the service's end of the socket close, commits what it read, and exits.
        deadline = time.monotonic() + 10
        while any(Path(f"/proc/{pid}").exists() for pid in writers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(Path(f"/proc/{pid}").exists() for pid in writers), (
            "the inbox writer outlived the service"
        )
        stop.set()
        for thread in senders:
            thread.join(timeout=10)
    finally:
        stop.set()
        if service.process is not None:
            service.kill()

    service.start()
    try:
        # Delivering an acknowledged event again after the restart is a duplicate, not a new row.
        again = httpx.post(service.base + URL, content=acknowledged[0], headers=JSON, timeout=5)
        assert again.json()["status"] == "duplicate"
    finally:
        assert service.stop() == 0

    conn = sqlite3.connect(inbox_path(service.settings.data_dir))
    stored = {key for (key,) in conn.execute("SELECT dedup_key FROM events")}
    missing = [body for body in acknowledged if decode_body(body).content_key not in stored]
    assert len(acknowledged) >= 300
    assert missing == []
