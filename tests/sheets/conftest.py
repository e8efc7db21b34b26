"""Fixtures of the Sheets writer tests: the local Sheets server over real HTTP, and writers pointed at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from connector.localsheets.testing import LocalSheets
from connector.localsheets.testing import write_service_account as local_service_account
from connector.sheets import RateLimitSettings, RetrySettings, SheetsSettings, SheetWriter, connect

# Tests must not wait: a budget no test reaches, a quota "minute" of 50 ms (a 429 pauses that kind of
# request for one window), and retries that "sleep" into a list.
FAST_BUDGET = RateLimitSettings(reads_per_minute=1_000_000, writes_per_minute=1_000_000, window_seconds=0.05)


@pytest.fixture
def server(local_sheets: LocalSheets) -> Iterator[LocalSheets]:
    """The session's local Sheets server with counts zeroed and no faults, left with no faults afterwards.

    Each test uses spreadsheets of its own, so sharing the server is safe.
    """
    local_sheets.clear_faults()
    local_sheets.reset_counts()
    yield local_sheets
    local_sheets.clear_faults()


@pytest.fixture
def spreadsheet_id(server: LocalSheets) -> str:
    """A fresh spreadsheet (one empty "Sheet1"), counts zeroed after creating it."""
    sid = server.new_spreadsheet()
    server.reset_counts()
    return sid


class Sleeps(list[float]):
    """What the writer's retries asked to sleep, recorded instead of slept."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


WriterFactory = Callable[..., SheetWriter]


@pytest.fixture
def make_writer(server: LocalSheets, sleeps: Sleeps) -> WriterFactory:
    """Build a writer on the local server; keyword arguments override SheetsSettings fields."""

    def make(**overrides: object) -> SheetWriter:
        fields: dict[str, object] = {
            "api_root": server.url,
            "rate_limit": FAST_BUDGET,
            "retry": RetrySettings(max_attempts=6, max_seconds=60),
            "read_timeout": 10.0,
            **overrides,
        }
        settings = SheetsSettings(**fields)  # type: ignore[arg-type]
        return SheetWriter(connect(settings, environ={}), settings, sleep=sleeps)

    return make


GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"


def write_service_account(
    path: Path,
    token_uri: str = GOOGLE_TOKEN_URI,
    key_id: str = "1",
    client_email: str = "writer@test.iam.gserviceaccount.com",
) -> Path:
    """Write a well-formed service-account JSON file to ``path`` (see the local server's helper)."""
    return local_service_account(path, token_uri, client_email=client_email, key_id=key_id)
