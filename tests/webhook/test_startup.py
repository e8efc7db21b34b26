"""`serve` as a process: start-up mistakes end in one line naming the setting, before anything starts."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from connector.threaded_server import free_port
from tests.webhook.conftest import write_config


def serve(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "connector", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def settings_file(folder: Path, server: str) -> Path:
    """Settings with the embedded worker writing to the local Sheets server on a free port."""
    config = write_config(folder, extra=server)
    text = config.read_text().replace("embedded = false", "embedded = true")
    config.write_text(text.replace('data_dir = "data"\n', "") + f"\n[local_sheets]\nport = {free_port()}\n")
    return config


def assert_refused_before_starting(result: subprocess.CompletedProcess[str], setting: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("configuration error: ")
    assert f": {setting}: " in lines[0]
    assert "Traceback" not in result.stderr


def test_a_data_dir_that_cannot_be_written_is_named_at_start_up(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    result = serve(settings_file(tmp_path, f'data_dir = "{tmp_path / "a-file" / "data"}"'))
    assert_refused_before_starting(result, "server.data_dir")
    assert "is not a writable folder (Not a directory)" in result.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders")
def test_a_read_only_data_dir_is_named_at_start_up(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o555)
    try:
        result = serve(settings_file(tmp_path, f'data_dir = "{data}"'))
    finally:
        data.chmod(0o755)
    assert_refused_before_starting(result, "server.data_dir")


def test_a_port_in_use_is_named_before_the_local_sheets_server_or_the_worker_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = serve(settings_file(tmp_path, f'data_dir = "data"\nport = {port}'))
    assert_refused_before_starting(result, "server.port")
    assert f"cannot listen on 127.0.0.1:{port} (Address already in use)" in result.stderr
    assert "set server.port to a free port" in result.stderr
