"""Errors raised by the connector.

The tree::

    ConnectorError
    ├── ConfigError            a configuration file is wrong; carries file, path and reason
    └── StoreError             the durable inbox could not take or give an event
        └── StaleFence         a write carried a lock's fencing token that is no longer the newest

Later layers (the Sheets writer, the worker) hang their own families under ``ConnectorError``.
"""

from __future__ import annotations


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
