"""Without Google credentials, backfill and replay write to the built-in local Sheets server as `serve`
does, and to the one `serve` runs when it holds the port."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from connector.cli import main
from connector.localsheets.testing import LocalSheets
from connector.settings import load_settings
from connector.sheets.backend import sheets_backend
from connector.threaded_server import free_port
from tests.backfill.test_command import CUSTOMER_COLUMNS
from tests.settings_files import write_settings

NO_CREDENTIALS = {"GOOGLE_APPLICATION_CREDENTIALS": None}


def write_local_settings(folder: Path) -> Path:
    """Settings with no API root and no credentials: the local Sheets server, on a free port."""
    extra = f"[local_sheets]\nport = {free_port()}\n"
    return write_settings(folder, None, "doopage-demo", "local-test-token-0123456789", extra=extra)


def run(config: Path, *args: str) -> tuple[int, str]:
    result = CliRunner(env=NO_CREDENTIALS).invoke(main, [args[0], *args[1:], "--config", str(config)])
    return result.exit_code, result.output


def test_backfill_and_replay_use_the_local_server_or_the_one_already_running(tmp_path: Path) -> None:
    config = write_local_settings(tmp_path)
    csv = tmp_path / "customers.csv"
    csv.write_text("ID,Full name,Tags\n1,Ann,vip\n", encoding="utf-8")
    code, output = run(config, "backfill", "customers", str(csv), *CUSTOMER_COLUMNS)
    assert code == 0, output
    assert "written: 1 rows" in output

    settings = load_settings(config)
    with sheets_backend(settings, environ={}) as serving:  # as `serve` holds the port
        code, output = run(config, "replay", "--company", "1")
        assert code == 0, output
        assert "1 rows written to doopage-demo" in output
        secret = (settings.data_dir / "local-sheets.secret").read_text()  # what the running server wrote
        customers = LocalSheets(serving.sheets.root, secret).sheet_values("doopage-demo", "Customers")
        assert [row[:2] for row in customers[1:]] == [[1, "Ann"]]
