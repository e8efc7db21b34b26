"""kill -9 the real service under load: every acknowledged event is in the inbox after a restart."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from connector.events import decode_body
from connector.inbox import inbox_path
from connector.settings import load_settings
from connector.threaded_server import free_port
from tests.webhook.conftest import JSON, URL, write_config


def start_service(config: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "connector", "serve", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    return process


def wait_ready(base: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else "exited"
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError("the service did not become ready")


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
    port = free_port()
    config = write_config(tmp_path, extra=f"port = {port}")
    base = f"http://127.0.0.1:{port}"
    service = start_service(config)
    acknowledged: list[bytes] = []
    lock = threading.Lock()
    stop = threading.Event()

    def sender(worker: int) -> None:
        with httpx.Client(base_url=base, timeout=5) as http:
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
        wait_ready(base, service)
        senders = [threading.Thread(target=sender, args=(i,)) for i in range(8)]
        for thread in senders:
            thread.start()
        while len(acknowledged) < 300:
            time.sleep(0.01)
        writers = children_of(service.pid)
        assert writers, "the service runs its inbox writer as a child process"
        os.kill(service.pid, signal.SIGKILL)
        service.wait(timeout=10)
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
        if service.poll() is None:
            service.kill()
            service.wait()

    restarted = start_service(config)
    try:
        wait_ready(base, restarted)
        # Delivering an acknowledged event again after the restart is a duplicate, not a new row.
        again = httpx.post(base + URL, content=acknowledged[0], headers=JSON, timeout=5)
        assert again.json()["status"] == "duplicate"
    finally:
        restarted.send_signal(signal.SIGTERM)
        assert restarted.wait(timeout=20) == 0

    conn = sqlite3.connect(inbox_path(load_settings(config).data_dir))
    stored = {key for (key,) in conn.execute("SELECT dedup_key FROM events")}
    missing = [body for body in acknowledged if decode_body(body).content_key not in stored]
    assert len(acknowledged) >= 300
    assert missing == []
