"""Secrets never reach the logs, the status output or the configuration report."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import time

import httpx
from click.testing import CliRunner

from connector.cli import main
from connector.logs import RedactingFilter
from connector.samples import sample_bodies
from connector.threaded_server import free_port
from tests.security.conftest import KEY, PASSWORD, TOKEN

CONFIG = """
[server]
port = {port}
data_dir = "data"
log_level = "debug"
log_format = "{fmt}"

[worker]
embedded = false

[[endpoints]]
name = "main"
token = "env:TEST_DOOPAGE_TOKEN"
validation_key = "env:TEST_DOOPAGE_KEY"
basic_auth = {{ username = "doopage", password = "file:password.txt" }}

[console]
port = {console_port}
"""


def exercise_service(tmp_path, fmt: str) -> str:
    """Run the service as a process, send it everything that mentions a secret, return its log."""
    port = free_port()
    (tmp_path / "password.txt").write_text(PASSWORD + "\n")
    config = tmp_path / "settings.toml"
    config.write_text(CONFIG.format(port=port, fmt=fmt, console_port=free_port()))
    env = {"TEST_DOOPAGE_TOKEN": TOKEN, "TEST_DOOPAGE_KEY": KEY, "PATH": "/usr/bin:/bin"}
    process = subprocess.Popen(
        [sys.executable, "-m", "connector", "serve", "--config", str(config)],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    url = f"{base}/webhooks/doopage/{TOKEN}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base}/healthz")
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                assert process.poll() is None
                time.sleep(0.05)
        auth = ("doopage", PASSWORD)
        httpx.get(url, params={"validation_key": KEY, "challenge_key": "c"}, auth=auth)
        httpx.get(url, params={"validation_key": KEY + "x", "challenge_key": "c"}, auth=auth)
        httpx.post(url, content=sample_bodies()["customer_created"], auth=auth)
        httpx.post(url, content=b"{broken", auth=auth)
        httpx.post(url, content=b"{}", auth=("doopage", "wrong-" + PASSWORD))
        httpx.post(f"{base}/webhooks/doopage/{TOKEN}x", content=b"{}")
    finally:
        process.send_signal(signal.SIGTERM)
        _, log = process.communicate(timeout=30)
    return log


def assert_no_secret(text: str) -> None:
    for secret in (TOKEN, KEY, PASSWORD):
        assert secret not in text


def test_no_secret_in_text_logs(tmp_path):
    log = exercise_service(tmp_path, "text")
    assert "wrong validation_key" in log  # the log does speak of what happened
    assert_no_secret(log)


def test_json_logs_are_json_lines_without_secrets(tmp_path):
    log = exercise_service(tmp_path, "json")
    entries = [json.loads(line) for line in log.splitlines() if line.strip()]
    assert entries
    assert {"time", "level", "logger", "message"} <= set(entries[0])
    assert_no_secret(log)


def test_status_and_check_config_print_no_secret(tmp_path):
    exercise_service(tmp_path, "text")
    env = {"TEST_DOOPAGE_TOKEN": TOKEN, "TEST_DOOPAGE_KEY": KEY, "COLUMNS": "200"}
    config = str(tmp_path / "settings.toml")
    status = CliRunner(env=env).invoke(main, ["status", "--config", config])
    assert status.exit_code == 0, status.output
    assert "customer_created" in status.output
    checked = CliRunner(env=env).invoke(main, ["check-config", "--config", config])
    assert_no_secret(status.output + checked.output)


def test_redaction_covers_urls_from_any_library():
    redact = RedactingFilter([TOKEN, "short"]).redact
    line = f"GET http://h/webhooks/doopage/{TOKEN}?validation_key=abc&challenge_key=zz HTTP/1.1"
    assert redact(line) == "GET http://h/webhooks/doopage/***?validation_key=***&challenge_key=*** HTTP/1.1"
    assert redact("a short word") == "a short word"  # secrets under 6 characters are left to the patterns
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "token %s", (TOKEN,), None)
    RedactingFilter([TOKEN]).filter(record)
    assert record.getMessage() == "token ***"
