"""Strict mode, quotas and the token endpoint: the local server refuses what Google refuses."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import gspread
import pytest
import requests

from connector.localsheets import LocalSheetsService
from connector.localsheets.quota import ANONYMOUS, QuotaSettings, QuotaState
from connector.localsheets.service import ProtectSpec
from connector.localsheets.testing import LocalSheets
from connector.localsheets.token import AuthSettings, caller_of, token_answer

PROTECTED = "You are trying to edit a protected cell or object"


def refused(call: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(gspread.exceptions.APIError) as caught:
        call(*args, **kwargs)
    assert caught.value.response.status_code == 400
    return str(caught.value.error["message"])


@pytest.fixture
def people(sheets: LocalSheets, client: gspread.Client) -> gspread.Spreadsheet:
    sid = sheets.new_spreadsheet(
        [{"title": "People", "values": [["id", "name"], ["1", "Ann"]]}, {"title": "Other"}]
    )
    return client.open_by_key(sid)


def test_a_protected_range_refuses_a_caller_who_is_not_its_editor(sheets, people) -> None:
    sheets.protect(people.id, "People", end_row=1)
    ws = people.worksheet("People")
    assert PROTECTED in refused(ws.update, [["ID"]], "A1")
    ws.update([["2", "Bo"]], "A3")  # below the protected header row
    # One protected sub-request fails the whole batchUpdate: the other tab is not written either.
    other = people.worksheet("Other")
    requests_ = [
        {
            "updateCells": {
                "rows": [{"values": [{"userEnteredValue": {"stringValue": "x"}}]}],
                "fields": "userEnteredValue",
                "start": {"sheetId": other.id},
            }
        },
        {
            "updateCells": {
                "rows": [{"values": [{"userEnteredValue": {"stringValue": "y"}}]}],
                "fields": "userEnteredValue",
                "start": {"sheetId": ws.id},
            }
        },
    ]
    assert PROTECTED in refused(people.batch_update, {"requests": requests_})
    assert sheets.sheet_values(people.id, "Other") == []
    assert sheets.sheet_values(people.id, "People") == [["id", "name"], ["1", "Ann"], ["2", "Bo"]]


def test_a_protected_whole_tab_refuses_rename_resize_delete_and_appends(sheets, people) -> None:
    sheets.protect(people.id, "People")
    ws = people.worksheet("People")
    assert PROTECTED in refused(ws.update_title, "Folk")
    assert PROTECTED in refused(ws.add_cols, 2)
    assert PROTECTED in refused(ws.append_row, ["3", "Cu"])
    assert PROTECTED in refused(people.del_worksheet, ws)


def test_editors_and_warning_only_ranges_can_be_edited(sheets, people) -> None:
    ws = people.worksheet("People")
    sheets.protect(people.id, "People", editors=["api-caller"])
    sheets.protect(people.id, "People", start_row=1, warning_only=True)
    ws.update([["2", "Bo"]], "A2")
    metadata = people.fetch_sheet_metadata()
    ranges = next(s for s in metadata["sheets"] if s["properties"]["title"] == "People")["protectedRanges"]
    assert [r["requestingUserCanEdit"] for r in ranges] == [True, True]
    assert ranges[0]["editors"] == {"users": ["api-caller"]}
    assert "editors" not in ranges[1]


def test_protection_is_reported_to_the_caller_and_lifted(sheets, people) -> None:
    protection = sheets.protect(people.id, "People", start_row=0, end_row=1, description="headers")
    metadata = people.fetch_sheet_metadata(
        params={"fields": "sheets(properties(title),protectedRanges(range,requestingUserCanEdit))"}
    )
    [ranges] = [s["protectedRanges"] for s in metadata["sheets"] if "protectedRanges" in s]
    assert ranges == [
        {
            "range": {"sheetId": people.worksheet("People").id, "endRowIndex": 1},
            "requestingUserCanEdit": False,
        }
    ]
    sheets.unprotect(people.id, protection)
    people.worksheet("People").update([["ID"]], "A1")


def test_without_strict_mode_protection_is_not_enforced(sheets, people) -> None:
    sheets.protect(people.id, "People")
    sheets.set_strict(False)
    try:
        people.worksheet("People").update([["ID"]], "A1")
    finally:
        sheets.set_strict(True)


def test_a_cell_over_50000_utf16_code_units_is_refused(sheets, people) -> None:
    ws = people.worksheet("Other")
    ws.update([["x" * 50_000, "\U0001f600" * 25_000]], "A1", raw=True)  # exactly at the limit
    message = refused(ws.update, [["\U0001f600" * 25_001]], "A2", raw=True)
    assert message.endswith("more than the maximum of 50000 characters in a single cell.")


def test_protections_survive_a_restart(tmp_path: Path) -> None:
    data = tmp_path / "sheets.json"
    first = LocalSheetsService(data_path=data, strict=True)
    first.put_spreadsheet("s", msgspec_spec())
    first.protect("s", ProtectSpec(sheet="Sheet1", end_row=2, editors=["a@b"], description="d"))
    [protection] = LocalSheetsService(data_path=data).spreadsheets["s"].sheets[0].protections
    assert (protection.end_row, protection.editors, protection.description) == (2, ("a@b",), "d")


def msgspec_spec() -> Any:
    from connector.localsheets import SpreadsheetSpec

    return SpreadsheetSpec()


# ---------------------------------------------------------------- quotas


def next_window(seconds: float) -> None:
    """Sleep to just after the start of the server's next quota window (it runs in this process)."""
    time.sleep(seconds - time.monotonic() % seconds + 0.02)


def test_a_quota_answers_429_without_retry_after_until_the_window_refills(sheets, people) -> None:
    sheets.set_quota(reads_per_window=2, window_seconds=1.0)
    try:
        next_window(1.0)
        people.fetch_sheet_metadata()
        people.fetch_sheet_metadata()
        with pytest.raises(gspread.exceptions.APIError) as caught:
            people.fetch_sheet_metadata()
        assert caught.value.response.status_code == 429
        assert "Retry-After" not in caught.value.response.headers
        assert "Read requests per minute per user" in caught.value.error["message"]
        body = {"values": [["writes are another quota"]]}
        people.values_update("Other!A1", params={"valueInputOption": "RAW"}, body=body)
        next_window(1.0)
        people.fetch_sheet_metadata()
        assert sheets.quota()["refused"] == {"read": 1}
    finally:
        sheets.set_quota()


def test_quota_windows_are_fixed_intervals() -> None:
    now = [10.0]
    state = QuotaState(clock=lambda: now[0])
    state.configure(QuotaSettings(writes_per_window=1, window_seconds=60))
    assert state.admit("spreadsheets.batchUpdate")
    assert not state.admit("values.update")
    assert state.admit("spreadsheets.get")  # no read quota set
    now[0] = 60.0
    assert state.admit("spreadsheets.batchUpdate")


def test_quotas_count_each_caller_apart_and_the_project_for_all() -> None:
    state = QuotaState(clock=lambda: 10.0)
    state.configure(QuotaSettings(writes_per_window=2, project_writes_per_window=3, window_seconds=60))
    assert [state.take("values.update", "a@x") for _ in range(3)] == [None, None, "user"]
    assert state.take("values.update", "b@x") is None  # b's own quota, the project's third
    assert state.take("values.update", "b@x") == "project"  # b has one left, the project none
    assert state.refused_by_caller == {"a@x": {"write": 1}, "b@x": {"write": 1}}


def test_a_token_of_the_endpoint_names_its_service_account() -> None:
    now = 1_700_000_000
    _, body = token_answer(
        grant(jwt({"iat": now, "exp": now + 3600, "iss": "sa@p.iam"})), AuthSettings(), now=now
    )
    assert caller_of(f"Bearer {body['access_token']}".encode()) == "sa@p.iam"
    _, unnamed = token_answer(grant(jwt({"iat": now, "exp": now + 3600})), AuthSettings(), now=now)
    for header in (f"Bearer {unnamed['access_token']}", "Bearer ya29.from-google", "", "Basic eDp5"):
        assert caller_of(header.encode()) == ANONYMOUS


# ---------------------------------------------------------------- the token endpoint


def jwt(claims: dict[str, Any], kid: str = "k1") -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256', 'typ': 'JWT', 'kid': kid})}.{part(claims)}.c2ln"


def grant(assertion: str) -> bytes:
    return f"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={assertion}".encode()


def test_the_token_endpoint_answers_as_google_does() -> None:
    now = 1_700_000_000
    good = jwt({"iat": now, "exp": now + 3600})
    status, body = token_answer(grant(good), AuthSettings(), now=now)
    assert status == 200
    assert body["token_type"] == "Bearer"
    assert token_answer(grant(good), AuthSettings(revoked_key_ids=["k1"]), now=now) == (
        400,
        {"error": "invalid_grant", "error_description": "Invalid JWT Signature."},
    )
    skewed = token_answer(grant(good), AuthSettings(clock_offset_seconds=7200), now=now)
    assert skewed[0] == 400
    assert "Check your iat and exp values" in skewed[1]["error_description"]
    assert token_answer(grant("nonsense"), AuthSettings(), now=now)[0] == 400
    assert (
        token_answer(b"grant_type=password", AuthSettings(), now=now)[1]["error"] == "unsupported_grant_type"
    )


def test_the_token_route_is_served(sheets) -> None:
    now = int(time.time())
    answer = requests.post(
        sheets.token_uri,
        data=grant(jwt({"iat": now, "exp": now + 60})),
        timeout=10,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 200
    assert answer.json()["access_token"].startswith("local-")
