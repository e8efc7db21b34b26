"""The running `serve` process holds no more memory while connections pour endless headers into it."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from connector.threaded_server import free_port
from tests.security.conftest import settings_text

CONNECTIONS = 8
PER_CONNECTION = 48 * 1024 * 1024


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def pour_headers(port: int) -> bytes:
    """Send up to PER_CONNECTION bytes of one header; return what the server answered."""
    with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\nX-Endless: ")
        sent = 0
        try:
            while sent < PER_CONNECTION:
                sock.sendall(b"a" * 65536)
                sent += 65536
        except TimeoutError:
            pass
        try:
            return sock.recv(65536)
        except TimeoutError:
            return b""


def test_endless_headers_on_eight_connections_leave_the_process_size_alone(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "settings.toml"
    config.write_text(settings_text(server_extra=f"port = {port}"))
    process = subprocess.Popen(
        [sys.executable, "-m", "connector", "serve", "--config", str(config)],
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        before = rss_bytes(process.pid)
        with ThreadPoolExecutor(CONNECTIONS) as pool:
            answers = list(pool.map(pour_headers, [port] * CONNECTIONS))
        grown = rss_bytes(process.pid) - before
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert all(answer.startswith(b"HTTP/1.1 431 ") for answer in answers), answers
    assert grown < 32 * 1024 * 1024, f"the process grew by {grown / 2**20:.0f} MiB"
