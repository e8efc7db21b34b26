"""Fixtures shared by every test folder."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from connector.localsheets.testing import LocalSheets, local_sheets_thread
from connector.samples import sample_bodies


@pytest.fixture(scope="session")
def samples() -> dict[str, bytes]:
    """DooPage's 11 sample webhook bodies (copied verbatim from its webhook page), keyed by event type."""
    bodies = sample_bodies()
    assert len(bodies) == 11
    return bodies


@pytest.fixture(scope="session")
def local_sheets() -> Iterator[LocalSheets]:
    """One local Sheets API server for the session; ``.url`` is the API root for ``sheets.api_root``.

    It is shared: make your own spreadsheet (``local_sheets.new_spreadsheet(...)`` gives a unique id),
    call ``reset_counts()`` before counting requests, and ``clear_faults()`` after injecting faults.
    It runs in strict mode: it refuses what Google refuses (protected ranges, oversized cells), so a test
    fails wherever Google would.
    """
    with local_sheets_thread(strict=True) as server:
        yield server
