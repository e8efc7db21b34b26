"""Fixtures of the end-to-end tests: a local Sheets server process, and the service as a process."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from connector.localsheets.testing import LocalSheets, local_sheets_process
from connector.threaded_server import free_port
from tests.e2e.harness import Service, write_settings

# The load generator the benchmarks share lives in scripts/, which is not a package.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))


@pytest.fixture(scope="session")
def sheets_server() -> Iterator[LocalSheets]:
    """The local Sheets API server as a child process, shared by the end-to-end tests."""
    with local_sheets_process(strict=True) as server:
        yield server


@pytest.fixture
def spreadsheet_id(sheets_server: LocalSheets) -> Iterator[str]:
    """A new empty spreadsheet on the shared server; faults are turned off again afterwards."""
    yield sheets_server.new_spreadsheet()
    sheets_server.clear_faults()


@pytest.fixture
def service(tmp_path: Path, sheets_server: LocalSheets, spreadsheet_id: str) -> Iterator[Service]:
    """The service configured for ``spreadsheet_id`` (not started); stopped at the end if running."""
    handle = Service(write_settings(tmp_path, sheets_server.url, spreadsheet_id, free_port()))
    yield handle
    if handle.process is not None:
        handle.kill()
