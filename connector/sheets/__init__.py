"""Writing rows into Google Sheets: batched, idempotent upserts by key through gspread.

The public surface::

    writer = SheetWriter.from_settings(settings.sheets, source=settings.source)
    report = writer.flush(spreadsheet_id, [WorksheetBatch(title, key_header, headers, upserts)])

Modules: ``config`` (settings), ``client`` (gspread connection), ``snapshot`` (what to read, pure),
``plan`` (what to write, pure), ``retry`` (the tenacity policy and typed errors), ``ratelimit``
(requests per minute per credential), ``writer`` (the I/O), ``errors``.
"""

from connector.sheets.client import SheetsConnection, connect, is_loopback_root
from connector.sheets.config import RateLimitSettings, RetrySettings, SheetsSettings
from connector.sheets.errors import PermanentSheetsError, SheetsError, TransientSheetsError
from connector.sheets.plan import CellValue, Key, Upsert, WorksheetBatch
from connector.sheets.ratelimit import RateLimiter
from connector.sheets.writer import FlushReport, SheetWriter, WorksheetReport

__all__ = [
    "CellValue",
    "FlushReport",
    "Key",
    "PermanentSheetsError",
    "RateLimitSettings",
    "RateLimiter",
    "RetrySettings",
    "SheetWriter",
    "SheetsConnection",
    "SheetsError",
    "SheetsSettings",
    "TransientSheetsError",
    "Upsert",
    "WorksheetBatch",
    "WorksheetReport",
    "connect",
    "is_loopback_root",
]
