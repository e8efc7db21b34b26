"""Logging: text or JSON lines on standard error, with secrets taken out of every record.

The filter removes the configured secrets (path tokens, validation keys, basic-auth passwords) wherever they
appear in a message or its arguments, and, as a second line of defence, anything that looks like a webhook
path token or a ``validation_key`` / ``challenge_key`` query value, so that a URL logged by a library
(uvicorn, httpx) cannot leak one either. It also shows control and bidi characters as escapes, so that
an event type or an error text cannot drive the terminal or the log viewer that shows the log.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Final, Literal

import msgspec

from connector.untrusted import printable

__all__ = ["JsonFormatter", "MainServerOnly", "RedactingFilter", "setup_logging"]

REDACTED: Final = "***"
MIN_SECRET_LENGTH: Final = 6
_PATTERNS: Final = (
    re.compile(r"(/webhooks/doopage/)[^/?#\s\"']+"),
    re.compile(r"((?:validation_key|challenge_key)=)[^&\s\"']+"),
)
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class RedactingFilter(logging.Filter):
    """Replaces secrets in log records with ``***``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        # Longest first, so that a secret containing another is removed whole. Very short secrets would
        # blank out ordinary words; they can only reach a log inside a URL, which the patterns cover.
        self._secrets = sorted({s for s in secrets if len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        """The text with every known secret and token-looking value replaced."""
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        for pattern in _PATTERNS:
            text = pattern.sub(rf"\g<1>{REDACTED}", text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        """Render the message once, redacted, so that no formatter sees the raw arguments; control and
        bidi characters (from webhook bodies or Sheets answers) are shown as escapes."""
        message = printable(self.redact(record.getMessage()))
        record.msg, record.args = message, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = printable(self.redact(record.exc_text))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the exception if any."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON line."""
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        return msgspec.json.encode(entry).decode()


def setup_logging(
    level: str = "info", fmt: Literal["text", "json"] = "text", secrets: Iterable[str] = ()
) -> None:
    """Send every logger's records (uvicorn's and Litestar's too) through one redacting handler."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(RedactingFilter(secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # uvicorn installs handlers of its own on these; let them propagate to ours instead.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    server_log = logging.getLogger("uvicorn.error")
    for old_filter in list(server_log.filters):
        if isinstance(old_filter, MainServerOnly):
            server_log.removeFilter(old_filter)
    server_log.addFilter(MainServerOnly())


class MainServerOnly(logging.Filter):
    """Keeps uvicorn's start and stop lines of the main server only.

    `serve` runs up to three uvicorn servers (the service on the main thread, the console and the local
    Sheets server on threads of their own), and uvicorn logs every server's "Shutting down" and "Finished
    server process" to the one ``uvicorn.error`` logger: the same lines three times at each stop. Its
    warnings and errors from every server still pass.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Whether to keep the record."""
        return record.levelno >= logging.WARNING or record.threadName == threading.main_thread().name
