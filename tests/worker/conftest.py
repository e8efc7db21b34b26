"""A configured connector pointed at the session's local Sheets server, one spreadsheet per test."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from connector.inbox_queue import InboxQueue, open_queue
from connector.localsheets.testing import LocalSheets
from connector.routing import Router
from connector.settings import Settings, load_settings
from connector.sheets.writer import SheetWriter
from connector.state_store import StateStore
from connector.worker import Worker

TOKEN = "worker-test-token-0123456789"
MAPPING = Path(__file__).resolve().parents[2] / "config" / "mapping.example.toml"


def write_settings(folder: Path, api_root: str, spreadsheet_id: str, extra: str = "") -> Path:
    """Settings using the shipped default mapping, pointed at ``spreadsheet_id`` on ``api_root``."""
    mapping = MAPPING.read_text(encoding="utf-8").replace('"doopage-demo"', f'"{spreadsheet_id}"')
    (folder / "mapping.toml").write_text(mapping, encoding="utf-8")
    path = folder / "settings.toml"
    path.write_text(
        f"""
[server]
data_dir = "data"

[[endpoints]]
name = "main"
token = "{TOKEN}"
validation_key = "key"

[mapping]
file = "mapping.toml"

[sheets]
api_root = "{api_root}"
retry = {{ max_attempts = 12, max_seconds = 60, base_backoff = 0.01, max_backoff = 0.05 }}
rate_limit = {{ reads_per_minute = 100000, writes_per_minute = 100000 }}

[worker]
embedded = false
max_delay_ms = 1
{extra}
""",
        encoding="utf-8",
    )
    return path


@dataclass
class Connector:
    """The pieces of a configured connector, opened on a temporary data directory."""

    settings: Settings
    spreadsheet_id: str
    queue: InboxQueue
    states: StateStore
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
    """A worker (not running) with its queue, state store and writer, and an empty spreadsheet."""
    spreadsheet_id = local_sheets.new_spreadsheet()
    settings = load_settings(write_settings(tmp_path, local_sheets.url, spreadsheet_id))
    from connector.mapping import load_mapping

    queue = open_queue(settings.data_dir)
    states = StateStore.open(settings.data_dir)
    writer = SheetWriter.from_settings(settings.sheets, source=settings.source)
    router = Router.from_mapping(load_mapping(settings))
    worker = Worker(queue, states, writer, router, settings.worker)
    yield Connector(settings, spreadsheet_id, queue, states, worker, local_sheets)
    queue.close()
    states.close()
