"""``doopage-sheets check-config``: offline validation with a plan per company, and --online reachability."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from connector.cli import main
from connector.localsheets.testing import LocalSheets, local_sheets_thread

from .conftest import EXAMPLE_MAPPING

ENDPOINTS = """
[[endpoints]]
name = "main"
token = "test-token-0123456789abcdef"
validation_key = "key"
"""


def settings_file(folder: Path, text: str) -> Path:
    path = folder / "settings.toml"
    path.write_text(ENDPOINTS + text, encoding="utf-8")
    return path


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["check-config", *args])
    return result.exit_code, result.stdout, result.stderr


def test_prints_each_company_with_its_worksheets_and_headers(tmp_path: Path) -> None:
    code, out, _ = run("--config", str(settings_file(tmp_path, f'[mapping]\nfile = "{EXAMPLE_MAPPING}"\n')))
    assert code == 0
    assert "settings are valid" in out
    assert "company 1 (DooPage demo) -> spreadsheet doopage-demo" in out
    for line in (
        "worksheet 'Customers': customers, one row per 'Customer ID'",
        "worksheet 'Orders': orders, one row per 'Order ID'",
        "worksheet 'Events': events, one row per 'Event key'",
        "'Tags'",
        "<- order.payment_status (text)",
        "<- customer.first_seen (datetime: Asia/Ho_Chi_Minh, %Y-%m-%d %H:%M:%S)",
    ):
        assert line in out


def test_a_mapping_mistake_exits_non_zero_with_file_path_and_reason(tmp_path: Path) -> None:
    broken = EXAMPLE_MAPPING.read_text(encoding="utf-8").replace('"customer.name"', '"customer.nmae"', 1)
    (tmp_path / "mapping.toml").write_text(broken, encoding="utf-8")
    code, out, err = run("--config", str(settings_file(tmp_path, '[mapping]\nfile = "mapping.toml"\n')))
    assert code == 2
    assert out == ""
    assert (
        f"{tmp_path / 'mapping.toml'}: companies[0].worksheets[0].columns[1].source: unknown source field"
        in err
    )
    assert "did you mean 'customer.name'?" in err


def test_a_settings_mistake_exits_non_zero(tmp_path: Path) -> None:
    code, _, err = run("--config", str(settings_file(tmp_path, "[mapping]\nfiles = 'x'\n")))
    assert code == 2
    assert "mapping: Object contains unknown field `files`" in err


def test_no_mapping_says_events_stay_unrouted(tmp_path: Path) -> None:
    code, out, _ = run("--config", str(settings_file(tmp_path, "")))
    assert code == 0
    assert "no company is mapped; every event will be kept as unrouted" in out


@pytest.fixture(scope="module")
def sheets() -> Iterator[LocalSheets]:
    with local_sheets_thread(seed=3, strict=True) as server:
        yield server


def test_online_opens_each_spreadsheet_and_names_the_worksheets_to_create(
    tmp_path: Path, sheets: LocalSheets
) -> None:
    sheets.create_spreadsheet("doopage-demo", title="Sales")
    config = settings_file(
        tmp_path, f'[mapping]\nfile = "{EXAMPLE_MAPPING}"\n[sheets]\napi_root = "{sheets.url}"\n'
    )
    code, out, _ = run("--config", str(config), "--online")
    assert code == 0, out
    assert f"Sheets API at {sheets.url}" in out
    assert (
        "spreadsheet doopage-demo ('Sales'): reachable; worksheets to be created on the first write: " in out
    )
    assert "Customers, Orders, Events" in out


def test_online_fails_for_a_spreadsheet_that_does_not_exist(tmp_path: Path, sheets: LocalSheets) -> None:
    mapping = EXAMPLE_MAPPING.read_text(encoding="utf-8").replace('"doopage-demo"', '"no-such-sheet"')
    (tmp_path / "mapping.toml").write_text(mapping, encoding="utf-8")
    config = settings_file(
        tmp_path, f'[mapping]\nfile = "mapping.toml"\n[sheets]\napi_root = "{sheets.url}"\n'
    )
    code, out, _ = run("--config", str(config), "--online")
    assert code == 1
    assert "spreadsheet no-such-sheet: NOT reachable" in out
    assert "404" in out or "not found" in out.lower()


def test_a_missing_credentials_file_is_not_valid(tmp_path: Path) -> None:
    text = f'[mapping]\nfile = "{EXAMPLE_MAPPING}"\n[sheets]\ncredentials_file = "missing.json"\n'
    code, out, err = run("--config", str(settings_file(tmp_path, text)))
    assert code == 2
    assert "settings are valid" not in out
    assert "sheets.credentials_file: cannot use service-account file" in err
    assert "missing.json" in err


def test_online_without_credentials_checks_the_local_server_serve_would_use(tmp_path: Path) -> None:
    from connector.threaded_server import free_port

    text = f'[mapping]\nfile = "{EXAMPLE_MAPPING}"\n[local_sheets]\nport = {free_port()}\n[server]\ndata_dir = "data"\n'
    result = CliRunner(env={"GOOGLE_APPLICATION_CREDENTIALS": None}).invoke(
        main, ["check-config", "--online", "--config", str(settings_file(tmp_path, text))]
    )
    assert result.exit_code == 0, result.output
    assert "no Google credentials: writes go to the built-in local Sheets server" in result.stdout
    assert "spreadsheet doopage-demo ('DooPage demo'): reachable" in result.stdout


def test_the_example_secrets_on_an_open_address_are_warned_about(tmp_path: Path) -> None:
    text = (
        ENDPOINTS.replace("test-token-0123456789abcdef", "demo-token-change-me-0123456789")
        + f'[mapping]\nfile = "{EXAMPLE_MAPPING}"\n[server]\nhost = "0.0.0.0"\n'
    )
    path = tmp_path / "settings.toml"
    path.write_text(text, encoding="utf-8")
    code, _, err = run("--config", str(path))
    assert code == 0
    assert "warning:" in err
    assert "example's token or validation key" in err
    code, _, err = run("--config", str(settings_file(tmp_path, f'[mapping]\nfile = "{EXAMPLE_MAPPING}"\n')))
    assert "warning" not in err
