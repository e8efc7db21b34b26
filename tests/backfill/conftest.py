"""A configured connector for backfill tests: settings on the local Sheets server, and the CLI runner."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from connector.cli import main
from connector.localsheets.testing import LocalSheets
from connector.settings import Settings, load_settings

TOKEN = "backfill-test-token-0123456789"
MAPPING = Path(__file__).resolve().parents[2] / "config" / "mapping.example.toml"


def write_settings(folder: Path, api_root: str, spreadsheet_id: str) -> Path:
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
backoff_ms = 1
poll_ms = 1
""",
        encoding="utf-8",
    )
    return path


@dataclass
class Backfill:
    """A connector's settings on a fresh spreadsheet, and a way to run ``doopage-sheets backfill``."""

    folder: Path
    config: Path
    spreadsheet_id: str
    sheets: LocalSheets

    @property
    def settings(self) -> Settings:
        """The loaded settings."""
        return load_settings(self.config)

    def run(self, *args: str) -> Result:
        """Run ``doopage-sheets backfill ARGS --config <settings>`` in-process."""
        return CliRunner().invoke(main, ["backfill", args[0], "--config", str(self.config), *args[1:]])

    def file(self, name: str, text: str | bytes) -> Path:
        """Write an input file in the test's folder."""
        path = self.folder / name
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
        return path

    def rows(self, title: str) -> list[list[object]]:
        """A worksheet's values, header first ([] when it does not exist yet)."""
        titles = {sheet["title"] for sheet in self.sheets.stats(self.spreadsheet_id)["sheets"]}
        return self.sheets.sheet_values(self.spreadsheet_id, title) if title in titles else []

    def records(self, title: str) -> dict[str, dict[str, object]]:
        """A worksheet as {first column's text: {header: value}}."""
        rows = self.rows(title)
        if not rows:
            return {}
        header, *body = rows
        return {str(row[0]): dict(zip(map(str, header), row, strict=False)) for row in body}


@pytest.fixture
def backfill(tmp_path: Path, local_sheets: LocalSheets) -> Iterator[Backfill]:
    """Settings for a new empty spreadsheet on the session's local Sheets server."""
    spreadsheet_id = local_sheets.new_spreadsheet()
    yield Backfill(
        tmp_path, write_settings(tmp_path, local_sheets.url, spreadsheet_id), spreadsheet_id, local_sheets
    )
    local_sheets.delete_spreadsheet(spreadsheet_id)
