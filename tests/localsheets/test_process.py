"""The server as a real process: the CLI command, persistence across restarts, and the data file."""

from __future__ import annotations

import json
from pathlib import Path

import requests
from click.testing import CliRunner

from connector.cli import main
from connector.localsheets.testing import local_sheets_process


def test_cli_help_describes_the_command() -> None:
    result = CliRunner().invoke(main, ["local-sheets", "--help"])
    assert result.exit_code == 0
    assert "--data" in result.output
    assert "--port" in result.output


def test_cli_server_answers_and_keeps_spreadsheets_across_restarts(tmp_path: Path) -> None:
    data = tmp_path / "sheets.json"
    with local_sheets_process(data=data, strict=True) as first:
        assert first.strict()
        created = requests.post(
            f"{first.url}/v4/spreadsheets", json={"properties": {"title": "Kept"}}, timeout=10
        ).json()
        spreadsheet_id = created["spreadsheetId"]
        client = first.gspread_client()
        ws = client.open_by_key(spreadsheet_id).sheet1
        ws.update([["key", "value"], ["k1", "=1+1"]], "A1", value_input_option="USER_ENTERED")
        ws.update([["k2", "=not a formula"]], "A3", value_input_option="RAW")
    assert data.exists()
    assert json.loads(data.read_bytes())["version"] == 1
    with local_sheets_process(data=data) as second:
        assert not second.strict()
        assert second.sheet_values(spreadsheet_id, "Sheet1") == [
            ["key", "value"],
            ["k1", "=1+1"],
            ["k2", "=not a formula"],
        ]
        assert second.formula_cells(spreadsheet_id) == 1
        metadata = requests.get(f"{second.url}/v4/spreadsheets/{spreadsheet_id}", timeout=10).json()
        assert metadata["properties"]["title"] == "Kept"


def test_without_data_file_nothing_survives(tmp_path: Path) -> None:
    with local_sheets_process() as first:
        first.create_spreadsheet("temporary")
    with local_sheets_process() as second:
        response = requests.get(f"{second.url}/v4/spreadsheets/temporary", timeout=10)
        assert response.status_code == 404
        assert response.json() == {
            "error": {"code": 404, "message": "Requested entity was not found.", "status": "NOT_FOUND"}
        }


def test_a_corrupt_data_file_stops_start_up_with_a_message(tmp_path: Path) -> None:
    data = tmp_path / "broken.json"
    data.write_text("{not json")
    result = CliRunner().invoke(main, ["local-sheets", "--port", "0", "--data", str(data)])
    assert result.exit_code == 2
    assert "not a local-sheets data file" in result.output
