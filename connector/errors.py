"""Errors raised by the connector.

The tree::

    ConnectorError
    ├── ConfigError            a configuration file is wrong; carries file, path and reason
    └── StoreError             the durable inbox could not take or give an event
        └── StaleFence         a write carried a lock's fencing token that is no longer the newest

Later layers (the Sheets writer, the worker) hang their own families under ``ConnectorError``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

_UNKNOWN_FIELD = re.compile(r"unknown field `([^`]*)`")


class ConnectorError(Exception):
    """Base of every error the connector raises on purpose."""


class ConfigError(ConnectorError):
    """A configuration mistake, located by file and by path inside it."""

    def __init__(self, file: str, path: str, reason: str) -> None:
        self.file = file
        self.path = path
        self.reason = reason
        where = f"{file}: {path}" if path else file
        super().__init__(f"{where}: {reason}")


class StoreError(ConnectorError):
    """The inbox failed to store or read events."""


class StaleFence(StoreError):
    """A write under a spreadsheet lock was refused: the lock was taken by another holder since (this one
    was paused or cut off past its lease), so what it computed may be older than what is stored."""


def suggest_known_field(reason: str, names: Iterable[str]) -> str:
    """msgspec's "unknown field `x`" reason with "did you mean `y`?" added when a known name is close."""
    unknown = _UNKNOWN_FIELD.search(reason)
    if unknown:
        close = difflib.get_close_matches(unknown.group(1), sorted(set(names)), n=1)
        if close:
            return f"{reason}; did you mean `{close[0]}`?"
    return reason
