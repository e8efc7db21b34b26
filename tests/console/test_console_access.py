"""Who may reach the console: settings refuse an open listener without a password; the gate asks for it;
and the pieces `serve` prints and logs for a person."""

from __future__ import annotations

import base64
import logging
from pathlib import Path

import httpx
import pytest
import uvicorn

from connector.commands.startup import webhook_urls
from connector.console.app import create_console_app, host_name
from connector.errors import ConfigError
from connector.rejections import LINES_PER_MINUTE, RejectionLog
from connector.settings import load_settings, parse_settings
from connector.threaded_server import free_port, serving
from tests import settings_files

ENDPOINT = """
[[endpoints]]
name = "main"
token = "abcdefghijklmnopqrstuvwx"
validation_key = "key"
"""


def test_a_console_reachable_from_elsewhere_needs_a_password():
    with pytest.raises(ConfigError) as refused:
        parse_settings(ENDPOINT + '[console]\nhost = "0.0.0.0"\n', "settings.toml")
    assert refused.value.path == "console.basic_auth"
    assert "listens on 0.0.0.0" in str(refused.value)
    settings = parse_settings(
        ENDPOINT
        + '[console]\nhost = "0.0.0.0"\nbasic_auth = { username = "ops", password = "s3cret-pass" }\n',
        "settings.toml",
    )
    assert "s3cret-pass" in settings.secret_values()
    assert parse_settings(ENDPOINT + '[console]\nhost = "::1"\n', "settings.toml").console.port == 8081


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("127.0.0.1:8081", "127.0.0.1"),
        ("localhost", "localhost"),
        ("[::1]:8081", "::1"),
        ("evil.example", "evil.example"),
    ],
)
def test_host_name_drops_the_port(header, name):
    assert host_name(header) == name


def test_the_console_on_every_interface_asks_for_basic_auth(tmp_path: Path, local_sheets):
    config = settings_files.write_settings(tmp_path, local_sheets.url, "sheet", "abcdefghijklmnopqrstuvwx")
    port = free_port()
    with config.open("a", encoding="utf-8") as file:
        file.write(
            f'\n[console]\nhost = "0.0.0.0"\nport = {port}\nbasic_auth = {{ username = "ops", password = "pw-123456" }}\n'
        )
    settings = load_settings(config)
    server = uvicorn.Server(
        uvicorn.Config(create_console_app(settings), host="127.0.0.1", port=port, log_config=None)
    )
    good = "Basic " + base64.b64encode(b"ops:pw-123456").decode()
    bad = "Basic " + base64.b64encode(b"ops:wrong").decode()
    with serving(server), httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        refused = http.get("/api/overview")
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Basic ")
        assert http.get("/", headers={"authorization": bad}).status_code == 401
        # Any Host name is fine here (the password guards it).
        answer = http.get("/api/overview", headers={"authorization": good, "host": "console.example"})
        assert answer.status_code == 200
        assert answer.json()["companies"][0]["company_id"] == 1
        assert http.get("/assets/console.js", headers={"authorization": good}).status_code == 200


def test_rejections_are_logged_with_their_reason_and_a_flood_is_summarised(caplog):
    clock = [0.0]
    rejections = RejectionLog(clock=lambda: clock[0])
    with caplog.at_level(logging.INFO, logger="connector.intake"):
        for _ in range(LINES_PER_MINUTE + 5):
            rejections.note("invalid", 400, "main", "invalid event at $.company_id: Expected int, got str")
        rejections.note("unknown_token", 404, "", "Not Found")
        clock[0] = 61.0
        rejections.note("company", 403, "main", "company_id 9 is not accepted on this endpoint")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == LINES_PER_MINUTE + 1
    assert (
        lines[0]
        == "webhook rejected (invalid, 400) on endpoint main: invalid event at $.company_id: Expected int, got str"
    )
    assert lines[-1].startswith("webhook rejected (company, 403) on endpoint main: company_id 9")
    assert lines[-1].endswith("[6 more rejections not logged before this one: invalid 5, unknown_token 1]")


def test_the_webhook_url_is_printed_with_the_token_masked_unless_asked(tmp_path: Path):
    settings = parse_settings(
        ENDPOINT + '[server]\nhost = "0.0.0.0"\nport = 9000\n', str(tmp_path / "s.toml")
    )
    assert webhook_urls(settings, show_token=False) == [
        ("main", "http://127.0.0.1:9000/webhooks/doopage/abcd…")
    ]
    assert webhook_urls(settings, show_token=True)[0][1].endswith(
        "/webhooks/doopage/abcdefghijklmnopqrstuvwx"
    )
