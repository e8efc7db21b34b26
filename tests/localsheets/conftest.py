"""Fixtures of the local Sheets server tests: the shared server, cleaned per test, and gspread clients."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gspread
import pytest

from connector.localsheets.testing import LocalSheets


@pytest.fixture
def sheets(local_sheets: LocalSheets) -> Iterator[LocalSheets]:
    """The session's local server with counters zeroed and faults off (and off again afterwards)."""
    local_sheets.clear_faults()
    local_sheets.reset_counts()
    yield local_sheets
    local_sheets.clear_faults()


@pytest.fixture
def client(sheets: LocalSheets) -> gspread.Client:
    """A real gspread client, anonymous, reaching the local server over HTTP."""
    gc: gspread.Client = sheets.gspread_client()
    return gc


@pytest.fixture
def spreadsheet(sheets: LocalSheets, client: gspread.Client) -> gspread.Spreadsheet:
    """A fresh spreadsheet with one empty 1000x26 "Sheet1", opened through gspread."""
    return client.open_by_key(sheets.new_spreadsheet())


def api_create(client: gspread.Client, body: dict[str, Any]) -> dict[str, Any]:
    """``spreadsheets.create`` through gspread's own HTTP client (gspread only wraps Drive's create)."""
    response = client.http_client.request("post", gspread.urls.SPREADSHEETS_API_V4_BASE_URL, json=body)
    created: dict[str, Any] = response.json()
    return created
