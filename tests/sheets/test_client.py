"""Connecting: the API root, credentials, and the refusal of anonymous access to a non-loopback root."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.auth.transport.requests import AuthorizedSession

from connector.errors import ConfigError
from connector.settings import parse_settings
from connector.sheets import SheetsSettings, connect, is_loopback_root
from connector.sheets.client import ApiRootAdapter

from .conftest import write_service_account

ENDPOINT = """
[[endpoints]]
name = "main"
token = "abcdefghijklmnopqrstuvwx"
validation_key = "key"
"""


@pytest.fixture(scope="module")
def service_account_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A well-formed service-account JSON file with a freshly generated key (never sent anywhere)."""
    return write_service_account(tmp_path_factory.mktemp("creds") / "service-account.json")


@pytest.mark.parametrize(
    ("root", "loopback"),
    [
        ("http://127.0.0.1:8765", True),
        ("http://127.9.9.9", True),
        ("http://localhost:1", True),
        ("http://[::1]:80", True),
        ("https://sheets.googleapis.com", False),
        ("http://10.0.0.1", False),
        ("http://localhost.example.com", False),
        ("http://128.0.0.1", False),
    ],
)
def test_loopback_roots(root: str, loopback: bool) -> None:
    assert is_loopback_root(root) is loopback


@pytest.mark.parametrize("root", ["https://sheets.googleapis.com", "http://10.1.2.3:8080"])
def test_anonymous_access_to_a_non_loopback_root_is_a_config_error(root: str) -> None:
    with pytest.raises(ConfigError) as caught:
        connect(SheetsSettings(api_root=root), source="conf.toml", environ={})
    assert caught.value.file == "conf.toml"
    assert caught.value.path == "sheets.credentials_file"
    assert "GOOGLE_APPLICATION_CREDENTIALS" in caught.value.reason


def test_anonymous_access_to_a_loopback_root_is_allowed() -> None:
    connection = connect(SheetsSettings(api_root="http://127.0.0.1:9"), environ={})
    assert connection.credential_id == "anonymous@http://127.0.0.1:9"
    adapter = connection.client.http_client.session.get_adapter(
        "https://sheets.googleapis.com/v4/spreadsheets/x"
    )
    assert isinstance(adapter, ApiRootAdapter)
    assert connection.client.http_client.timeout == (10.0, 60.0)


def test_a_service_account_file_from_the_settings(service_account_file: Path) -> None:
    settings = SheetsSettings(credentials_file=service_account_file.name)
    connection = connect(settings, source=str(service_account_file.parent / "conf.toml"), environ={})
    assert connection.credential_id == "writer@test.iam.gserviceaccount.com"
    session = connection.client.http_client.session
    assert isinstance(session, AuthorizedSession)
    # Google's own root needs no rewriting.
    assert not isinstance(session.get_adapter("https://sheets.googleapis.com/v4/x"), ApiRootAdapter)


def test_a_service_account_file_from_the_environment(service_account_file: Path) -> None:
    environ = {"GOOGLE_APPLICATION_CREDENTIALS": str(service_account_file)}
    connection = connect(SheetsSettings(api_root="https://gateway.example.com"), environ=environ)
    assert connection.credential_id == "writer@test.iam.gserviceaccount.com"
    assert isinstance(
        connection.client.http_client.session.get_adapter("https://sheets.googleapis.com/"), ApiRootAdapter
    )


@pytest.mark.parametrize("content", [None, "{}", "not json"])
def test_an_unusable_credentials_file_is_a_config_error(tmp_path: Path, content: str | None) -> None:
    path = tmp_path / "creds.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match="cannot use service-account file") as caught:
        connect(SheetsSettings(credentials_file=str(path)), environ={})
    assert caught.value.path == "sheets.credentials_file"


@pytest.mark.parametrize(
    ("table", "path", "reason"),
    [
        ('[sheets]\napi_root = "ftp://x"', "sheets", "http(s) URL"),
        ('[sheets]\napi_root = "http://127.0.0.1/v4"', "sheets", "no path"),
        ("[sheets]\nretries = 3", "sheets", "unknown field `retries`"),
        ("[sheets.retry]\nmax_attempts = 0", "sheets.retry.max_attempts", ">= 1"),
        ("[sheets.rate_limit]\nreads_per_minute = 0", "sheets.rate_limit.reads_per_minute", ">= 1"),
        ("[sheets]\nread_timeout = -1", "sheets.read_timeout", "> 0"),
    ],
)
def test_sheets_settings_errors_name_the_path(table: str, path: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings(ENDPOINT + table, "conf.toml", environ={})
    assert caught.value.path == path
    assert reason in caught.value.reason


def test_sheets_settings_defaults() -> None:
    settings = parse_settings(ENDPOINT, "conf.toml", environ={}).sheets
    assert settings.api_root == "https://sheets.googleapis.com"
    assert (settings.rate_limit.reads_per_minute, settings.rate_limit.writes_per_minute) == (50, 50)
    assert settings.max_request_bytes == 2_000_000
