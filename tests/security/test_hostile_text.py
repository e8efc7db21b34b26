"""Text from webhooks shown by the operator commands: markup printed as text, controls as escapes."""

from __future__ import annotations

import json
import logging
import sys
import unicodedata
from pathlib import Path

import httpx
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.text import Text

from connector.cli import main
from connector.logs import RedactingFilter
from connector.samples import sample_bodies
from connector.settings import load_settings
from connector.store import open_work_store
from connector.untrusted import as_text, for_rich, printable
from tests.security.conftest import TOKEN, settings_text

HOSTILE_TYPES = ("[/bold]", "[link=http://evil]x[/link]", "\x1b[2J\x1b]0;owned\x07clear", "abc\u202egnp.exe")
RAW_CONTROLS = ("\x1b", "\x07", "\u202e", "\r")


def event(event_type: str) -> bytes:
    return json.dumps({"company_id": 7, "event_type": event_type, "data": {}}).encode()


def run(*args: str) -> str:
    result = CliRunner(env={"COLUMNS": "250"}).invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_status_and_failed_list_print_hostile_event_types_and_errors_as_text(serve_app, tmp_path: Path):
    base = serve_app(settings_text())
    config = str(tmp_path / "app0" / "settings.toml")
    with httpx.Client(base_url=base) as http:
        for event_type in HOSTILE_TYPES:
            answer = http.post(f"/webhooks/doopage/{TOKEN}", content=event(event_type))
            assert answer.json() == {"status": "stored", "event_type": event_type}
        assert http.post(f"/webhooks/doopage/{TOKEN}", content=sample_bodies()["tag_set"]).status_code == 200
    queue = open_work_store(load_settings(config))
    try:
        claimed = queue.claim("test", [1], 60_000, max_events=10, max_bytes=10**6)
        queue.finish("test", [stored.id for stored in claimed], "failed", "[/red] \x1b[31mnot shared\u202e\r")
    finally:
        queue.close()

    status = run("status", "--config", config)
    failed = run("failed", "list", "--config", config)

    for shown in (
        "[/bold]",
        "[link=http://evil]x[/link]",
        "\\x1b[2J\\x1b]0;owned\\x07clear",
        "abc\\u202egnp.exe",
    ):
        assert shown in status
    assert "[/red] \\x1b[31mnot shared\\u202e\\x0d" in failed
    for raw in RAW_CONTROLS:
        assert raw not in status
        assert raw not in failed


def test_log_lines_show_control_and_bidi_characters_as_escapes():
    record = logging.LogRecord(
        "x", logging.ERROR, __file__, 1, "could not store a %s event", (HOSTILE_TYPES[2],), None
    )
    RedactingFilter().filter(record)
    assert record.getMessage() == "could not store a \\x1b[2J\\x1b]0;owned\\x07clear event"
    try:
        raise ValueError("abc\u202egnp.exe")
    except ValueError:
        failed = logging.LogRecord("x", logging.ERROR, __file__, 1, "boom", (), sys.exc_info())
    RedactingFilter().filter(failed)
    assert failed.exc_text is not None
    assert "abc\\u202egnp.exe" in failed.exc_text
    assert "\u202e" not in failed.exc_text


BIDI_AND_BREAKS = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u2028\u2029")


def harmless(char: str) -> bool:
    return char in "\n\t" or (unicodedata.category(char) != "Cc" and char not in BIDI_AND_BREAKS)


@settings(max_examples=300)
@given(st.text())
def test_any_text_prints_as_itself_with_only_controls_escaped(text: str) -> None:
    shown = printable(text)
    assert all(harmless(char) for char in shown)
    assert as_text(text).plain == shown  # rich shows it as the text it is
    assert Text.from_markup(f"[bold]{for_rich(text)}[/bold]").plain == shown  # and inside markup
    if all(harmless(char) for char in text):
        assert shown == text
