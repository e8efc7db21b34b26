"""Bounded waits: a stalled inbox answers 503 in time, and /readyz says when the inbox cannot take writes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar.testing import TestClient

from connector.intake.app import create_app
from connector.settings import load_settings
from connector.store.sqlite_intake import SqliteInbox
from tests.webhook.conftest import JSON, URL, write_config


@pytest.fixture
def quick_client(tmp_path: Path) -> Iterator[TestClient]:
    """The app with a 1 s commit time limit."""
    settings = load_settings(write_config(tmp_path, extra="commit_timeout_ms = 1000"))
    with TestClient(create_app(settings)) as client:
        yield client


def test_a_stalled_writer_costs_a_503_in_time_and_readiness_until_it_resumes(
    quick_client: TestClient, samples: dict[str, bytes]
) -> None:
    inbox: SqliteInbox = quick_client.app.state.inbox
    assert quick_client.get("/readyz").status_code == 200
    assert inbox._writer is not None
    pid = inbox._writer.process.pid
    os.kill(pid, signal.SIGSTOP)  # stands in for an I/O stall
    try:
        started = time.monotonic()
        refused = quick_client.post(URL, content=samples["customer_created"], headers=JSON)
        assert refused.status_code == 503
        assert "retry" in refused.json()["detail"]
        assert time.monotonic() - started < 3
        not_ready = quick_client.get("/readyz")
        assert not_ready.status_code == 503
        assert "not confirmed within 1 s" in not_ready.json()["detail"]
    finally:
        os.kill(pid, signal.SIGCONT)
    assert quick_client.get("/readyz").status_code == 200
    # The stalled commit went through after all: DooPage's redelivery is a duplicate, nothing is lost.
    again = quick_client.post(URL, content=samples["customer_created"], headers=JSON)
    assert again.json()["status"] == "duplicate"


@pytest.fixture
def small_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs of its own, where mounting is allowed (as root on these machines)."""
    mount_point = tmp_path / "fs"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)], capture_output=True, check=False
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here: {mounted.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_webhooks_and_readiness_get_503_while_the_disk_is_full_and_recover_after(
    small_filesystem: Path, samples: dict[str, bytes]
) -> None:
    (small_filesystem / "settings.toml").write_text(
        write_config(small_filesystem).read_text().replace("[server]", "[server]\ncommit_timeout_ms = 2000")
    )
    settings = load_settings(small_filesystem / "settings.toml")
    with TestClient(create_app(settings)) as client:
        assert client.get("/readyz").status_code == 200
        filler = small_filesystem / "filler"
        # Fill the disk to the last block.
        with filler.open("wb", buffering=0) as out, contextlib.suppress(OSError):
            while True:
                out.write(b"\0" * 4096)
        statuses = set()
        for n in range(40):  # new pages are needed sooner or later
            body = samples["customer_created"].replace(b"1618118040123", str(1618118040124 + n).encode())
            statuses.add(client.post(URL, content=body + b" " * 20_000, headers=JSON).status_code)
        assert 503 in statuses
        assert client.get("/readyz").status_code == 503
        filler.unlink()
        assert client.get("/readyz").status_code == 200
        assert client.post(URL, content=samples["customer_updated"], headers=JSON).status_code == 200
