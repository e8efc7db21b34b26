"""A configured connector for backfill tests: settings on the local Sheets server, and the CLI runner."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from connector.cli import main
from connector.localsheets.testing import LocalSheets
from connector.settings import Settings, load_settings
from tests import settings_files
from tests.store.postgres import fresh_schema

TOKEN = "backfill-test-token-0123456789"


def write_settings(folder: Path, api_root: str, spreadsheet_id: str) -> Path:
    """The test settings (tests/settings_files.py), retrying without waiting."""
    return settings_files.write_settings(
        folder, api_root, spreadsheet_id, TOKEN, "backoff_ms = 1\npoll_ms = 1"
    )


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
def backfill(request: pytest.FixtureRequest, tmp_path: Path, local_sheets: LocalSheets) -> Iterator[Backfill]:
    """Settings for a new empty spreadsheet on the session's local Sheets server; the SQLite store, or a
    PostgreSQL one when the test asks for ``postgres`` (indirect parametrization)."""
    spreadsheet_id = local_sheets.new_spreadsheet()
    config = write_settings(tmp_path, local_sheets.url, spreadsheet_id)
    with ExitStack() as stack:
        if getattr(request, "param", "sqlite") == "postgres":
            with config.open("a", encoding="utf-8") as settings:
                settings.write(f'\n[store]\nurl = "{stack.enter_context(fresh_schema())}"\n')
        yield Backfill(tmp_path, config, spreadsheet_id, local_sheets)
    local_sheets.delete_spreadsheet(spreadsheet_id)
