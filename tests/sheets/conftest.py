"""Fixtures of the Sheets writer tests: the local Sheets server over real HTTP, and writers pointed at it."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from connector.localsheets.testing import LocalSheets
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


@functools.cache
def _private_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def write_service_account(
    path: Path,
    token_uri: str = GOOGLE_TOKEN_URI,
    key_id: str = "1",
    client_email: str = "writer@test.iam.gserviceaccount.com",
) -> Path:
    """Write a well-formed service-account JSON file to ``path`` (its key made once per test session: the
    local token endpoint checks no signature, it knows a key by ``key_id``)."""
    pem = _private_key_pem()
    info = {
        "type": "service_account",
        "project_id": "test",
        "private_key_id": key_id,
        "private_key": pem,
        "client_email": client_email,
        "client_id": "1",
        "token_uri": token_uri,
    }
    path.write_text(json.dumps(info))
    return path
