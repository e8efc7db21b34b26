"""The local server's request guard over HTTP: Host names, other origins, JSON writes, the admin secret."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from connector.localsheets.guard import ADMIN_SECRET_HEADER, host_names
from connector.localsheets.testing import LocalSheets


def write(
    sheets: LocalSheets, spreadsheet_id: str, headers: dict[str, str], body: bytes | None = None
) -> Any:
    payload = {"valueInputOption": "USER_ENTERED", "data": [{"range": "Sheet1!A1", "values": [["=1+1"]]}]}
    return requests.post(
        f"{sheets.url}/v4/spreadsheets/{spreadsheet_id}/values:batchUpdate",
        data=json.dumps(payload).encode() if body is None else body,
        headers=headers,
        timeout=10,
    )


@pytest.mark.parametrize(
    "headers",
    [
        {"host": "rebound.example.com"},
        {"host": "rebound.example.com:8765"},
        {"origin": "http://evil.example"},
        {"origin": "null"},
        {"origin": "http://127.0.0.1:1"},  # same site, another origin
        {"sec-fetch-site": "cross-site"},
        {"sec-fetch-site": "same-site"},
    ],
)
def test_requests_by_another_name_or_from_another_origin_are_refused(
    sheets: LocalSheets, headers: dict[str, str]
) -> None:
    spreadsheet_id = sheets.new_spreadsheet()
    answer = write(sheets, spreadsheet_id, {"content-type": "application/json", **headers})
    assert answer.status_code == 403
    assert answer.json()["error"]["status"] == "PERMISSION_DENIED"
    assert sheets.sheet_values(spreadsheet_id, "Sheet1") == []


def test_same_origin_and_plain_clients_are_served(sheets: LocalSheets) -> None:
    spreadsheet_id = sheets.new_spreadsheet()
    port = sheets.url.rsplit(":", 1)[1]
    for headers in (
        {},
        {"origin": sheets.url, "sec-fetch-site": "same-origin"},
        {"host": f"localhost:{port}"},
    ):
        assert (
            write(sheets, spreadsheet_id, {"content-type": "application/json", **headers}).status_code == 200
        )
    assert sheets.sheet_values(spreadsheet_id, "Sheet1") == [["=1+1"]]  # the admin dump shows formulas


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", None]
)
def test_writes_with_a_body_must_be_json(sheets: LocalSheets, content_type: str | None) -> None:
    spreadsheet_id = sheets.new_spreadsheet()
    headers = {} if content_type is None else {"content-type": content_type}
    answer = write(sheets, spreadsheet_id, headers)
    assert answer.status_code == 415
    assert sheets.sheet_values(spreadsheet_id, "Sheet1") == []


def test_admin_routes_need_the_servers_secret(sheets: LocalSheets) -> None:
    spreadsheet_id = sheets.new_spreadsheet()
    for secret in (None, "", "wrong-secret"):
        headers = {} if secret is None else {ADMIN_SECRET_HEADER: secret}
        assert requests.post(f"{sheets.url}/_admin/reset", headers=headers, timeout=10).status_code == 403
        assert requests.get(f"{sheets.url}/_admin/counts", headers=headers, timeout=10).status_code == 403
    assert sheets.stats(spreadsheet_id)["spreadsheetId"] == spreadsheet_id  # the handle has the secret


def test_the_viewer_may_be_opened_from_a_link_elsewhere(sheets: LocalSheets) -> None:
    spreadsheet_id = sheets.new_spreadsheet()
    headers = {"sec-fetch-site": "cross-site", "sec-fetch-mode": "navigate"}
    assert requests.get(f"{sheets.url}/view/{spreadsheet_id}", headers=headers, timeout=10).status_code == 200
    assert requests.get(f"{sheets.url}/", headers=headers, timeout=10).status_code == 200
    assert requests.get(f"{sheets.url}/", headers={"host": "rebound.example"}, timeout=10).status_code == 403


def test_host_names_are_the_loopback_names_the_listening_address_and_the_configured_ones() -> None:
    assert host_names("0.0.0.0")  # noqa: S104 == {"127.0.0.1", "localhost", "::1"}
    assert host_names("::", ["Sheets.LAN"]) == {"127.0.0.1", "localhost", "::1", "sheets.lan"}
    assert "192.168.1.5" in host_names("192.168.1.5")
