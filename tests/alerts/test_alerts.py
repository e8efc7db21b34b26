"""Alerts over a real SMTP server (aiosmtpd) and a real HTTP receiver: parked events and lag are sent
once per condition, repeated only after the configured time, and again at once after the condition cleared."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiosmtpd.controller import Controller

from connector.alerts import Alerter
from connector.settings import load_settings
from connector.store.sqlite_schema import connect, inbox_path, migrate
from connector.threaded_server import free_port
from tests.console.test_queries import add_event
from tests.settings_files import write_settings

MINUTE = 60_000


class Mailbox:
    """An aiosmtpd handler keeping every message it is sent."""

    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()


@pytest.fixture
def receiver() -> Iterator[tuple[list[dict[str, Any]], str]]:
    """A local HTTP server keeping each JSON body POSTed to it."""
    bodies: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["content-length"])
            bodies.append(json.loads(self.rfile.read(length)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield bodies, f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()


def test_parked_events_and_lag_are_alerted_by_webhook_and_email_within_the_rate_limit(
    tmp_path: Path, mailbox: tuple[Mailbox, int], receiver: tuple[list[dict[str, Any]], str]
) -> None:
    box, smtp_port = mailbox
    bodies, url = receiver
    config = write_settings(tmp_path, "http://127.0.0.1:9", "sheet-a", "alerts-test-token-0123456789")
    with config.open("a", encoding="utf-8") as file:
        file.write(
            f'\n[alerts]\nwebhook_url = "{url}"\nlag_minutes = 5\nrepeat_minutes = 30\n'
            f'smtp = {{ host = "127.0.0.1", port = {smtp_port}, starttls = false, '
            'sender = "connector@example.com", to = ["ops@example.com"] }\n'
        )
    settings = load_settings(config)
    now = [1_800_000_000_000]
    alerter = Alerter(settings, clock=lambda: now[0])
    settings.data_dir.mkdir()
    migrate(inbox_path(settings.data_dir))
    inbox = connect(inbox_path(settings.data_dir))
    add_event(inbox, 1, 1, "failed", now[0] - MINUTE, "spreadsheet sheet-a (HTTP 403): not shared")
    add_event(inbox, 2, 1, "pending", now[0] - 6 * MINUTE)

    sent = alerter.check_once()
    assert [alert.key for alert in sent] == ["parked:sheet-a", "lag:sheet-a"]
    assert len(bodies) == 2
    assert bodies[0]["text"].startswith("doopage-sheets: 1 events parked for spreadsheet sheet-a")
    assert "HTTP 403): not shared" in bodies[0]["text"]
    assert [m["Subject"] for m in box.messages] == [
        "doopage-sheets: 1 events parked for spreadsheet sheet-a",
        "doopage-sheets: spreadsheet sheet-a is 6 min behind",
    ]
    assert box.messages[0]["To"] == "ops@example.com"

    now[0] += 10 * MINUTE
    assert alerter.check_once() == []  # still true, but sent 10 minutes ago
    now[0] += 25 * MINUTE
    assert [alert.key for alert in alerter.check_once()] == ["parked:sheet-a", "lag:sheet-a"]  # repeated

    inbox.execute("UPDATE events SET status = 'done'")  # retried and written: cleared
    now[0] += MINUTE
    assert alerter.check_once() == []
    inbox.execute("UPDATE events SET status = 'failed' WHERE id = 1")
    now[0] += MINUTE
    assert [alert.key for alert in alerter.check_once()] == ["parked:sheet-a"]  # at once, not in 30 min
    assert len(bodies) == 5
    assert len(box.messages) == 5


def test_a_failing_channel_is_tried_again_at_the_next_check(
    tmp_path: Path, mailbox: tuple[Mailbox, int]
) -> None:
    box, smtp_port = mailbox
    config = write_settings(tmp_path, "http://127.0.0.1:9", "sheet-a", "alerts-test-token-0123456789")
    dead = free_port()
    with config.open("a", encoding="utf-8") as file:
        file.write(
            f'\n[alerts]\nsmtp = {{ host = "127.0.0.1", port = {dead}, starttls = false, '
            'sender = "c@example.com", to = ["ops@example.com"] }\n'
        )
    settings = load_settings(config)
    alerter = Alerter(settings)
    settings.data_dir.mkdir()
    migrate(inbox_path(settings.data_dir))
    inbox = connect(inbox_path(settings.data_dir))
    add_event(inbox, 1, 1, "failed", 1, "HTTP 404")
    assert alerter.check_once() == []  # nothing listens there: logged, not marked sent
    assert settings.alerts.smtp is not None
    smtp = msgspec.structs.replace(settings.alerts.smtp, port=smtp_port)  # the server is back
    alerter.config = msgspec.structs.replace(settings.alerts, smtp=smtp)
    assert [alert.key for alert in alerter.check_once()] == ["parked:sheet-a"]
    assert len(box.messages) == 1


def test_alert_settings_are_checked_at_start_up(tmp_path: Path) -> None:
    from connector.errors import ConfigError
    from connector.settings import parse_settings

    endpoint = '[[endpoints]]\nname = "main"\ntoken = "abcdefghijklmnopqrstuvwx"\nvalidation_key = "k"\n'
    with pytest.raises(ConfigError, match=r"alerts.webhook_url: an http\(s\) URL is needed"):
        parse_settings(endpoint + '[alerts]\nwebhook_url = "hooks.slack.com/x"\n', "s.toml")
    with pytest.raises(ConfigError, match=r"alerts.smtp.to"):
        parse_settings(endpoint + '[alerts]\nsmtp = { host = "h", sender = "a@b", to = [] }\n', "s.toml")
    settings = parse_settings(
        endpoint + '[alerts]\nwebhook_url = "https://hooks.example/T/secret-part"\n', "s.toml"
    )
    assert settings.alerts.enabled
    assert "https://hooks.example/T/secret-part" in settings.secret_values()  # never logged
    assert not parse_settings(endpoint, "s.toml").alerts.enabled
