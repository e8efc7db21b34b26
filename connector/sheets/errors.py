"""Errors raised while talking to the Sheets API.

The tree (under :class:`~connector.errors.ConnectorError`)::

    SheetsError                 carries the spreadsheet id, the cause, and the HTTP status if there was one
    ├── PermanentSheetsError    400 / 403 / 404 and other answers that retrying cannot fix
    └── TransientSheetsError    429 / 5xx, timeouts, dropped connections; retried, raised once retries run out

A caller parks the work on a permanent error and backs off on a transient one.
"""

from __future__ import annotations

from connector.errors import ConnectorError

__all__ = ["PermanentSheetsError", "SheetsError", "TransientSheetsError"]


class SheetsError(ConnectorError):
    """A Sheets API request failed; names the spreadsheet and the cause."""

    def __init__(self, spreadsheet_id: str, cause: str, status: int | None = None) -> None:
        self.spreadsheet_id = spreadsheet_id
        self.cause = cause
        self.status = status
        code = f" (HTTP {status})" if status is not None else ""
        super().__init__(f"spreadsheet {spreadsheet_id}{code}: {cause}")


class PermanentSheetsError(SheetsError):
    """An answer that will not change by asking again: bad request, no permission, no such spreadsheet."""


class TransientSheetsError(SheetsError):
    """A failure that may pass: rate limited, server error, timeout or a dropped connection.

    ``retry_after`` is the server's ``Retry-After`` in seconds, when it sent one. ``outcome_unknown`` is
    true when the request may have been applied although no answer arrived (a timeout or a connection
    lost after sending), which is why the writer re-reads the keys before writing again.
    """

    def __init__(
        self,
        spreadsheet_id: str,
        cause: str,
        status: int | None = None,
        *,
        retry_after: float | None = None,
        outcome_unknown: bool = False,
    ) -> None:
        super().__init__(spreadsheet_id, cause, status)
        self.retry_after = retry_after
        self.outcome_unknown = outcome_unknown
