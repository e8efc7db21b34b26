"""A configured connector pointed at the session's local Sheets server, one spreadsheet per test."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from connector.localsheets.testing import LocalSheets
from connector.settings import Settings, load_settings
from connector.sheets.writer import SheetWriter
from connector.store import open_work_store
from connector.store.protocols import WorkStore
from connector.sync.routing import Router
from connector.sync.worker import Worker
from tests import settings_files

TOKEN = "worker-test-token-0123456789"


def write_settings(folder: Path, api_root: str, spreadsheet_id: str) -> Path:
    """The test settings (tests/settings_files.py), flushing as soon as an event waits."""
    return settings_files.write_settings(folder, api_root, spreadsheet_id, TOKEN, "max_delay_ms = 1")


@dataclass
class Connector:
    """The pieces of a configured connector, opened on a temporary data directory."""

    settings: Settings
    spreadsheet_id: str
    store: WorkStore
    worker: Worker
    sheets: LocalSheets

    def rows(self, title: str) -> list[list[object]]:
        """A worksheet's values, header first."""
        return self.sheets.sheet_values(self.spreadsheet_id, title)

    def records(self, title: str) -> dict[str, dict[str, object]]:
        """A worksheet as {key column text: {header: value}}; the key column is the first header's."""
        header, *rows = self.rows(title)
        return {str(row[0]): dict(zip(header, row, strict=False)) for row in rows}


@pytest.fixture
def connector(tmp_path: Path, local_sheets: LocalSheets) -> Iterator[Connector]:
    """A worker (not running) with its store and writer, and an empty spreadsheet."""
    spreadsheet_id = local_sheets.new_spreadsheet()
    settings = load_settings(write_settings(tmp_path, local_sheets.url, spreadsheet_id))
    from connector.sync.mapping import load_mapping

    store = open_work_store(settings)
    writer = SheetWriter.from_settings(settings.sheets, source=settings.source)
    router = Router.from_mapping(load_mapping(settings))
    worker = Worker(store, writer, router, settings.worker)
    yield Connector(settings, spreadsheet_id, store, worker, local_sheets)
    store.close()
