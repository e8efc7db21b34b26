"""Fault injection: what a client sees over real HTTP, and the seeded decisions behind it."""

from __future__ import annotations

import gspread
import msgspec
import pytest
import requests
from gspread.exceptions import APIError

from connector.localsheets.faults import FaultSettings, FaultState, request_kind
from connector.localsheets.testing import LocalSheets, LocalSheetsAdminError


def test_injected_429_is_google_shaped_with_retry_after(
    sheets: LocalSheets, spreadsheet: gspread.Spreadsheet
) -> None:
    ws = spreadsheet.sheet1
    sheets.set_faults(script=["429"], retry_after=3)
    with pytest.raises(APIError) as caught:
        ws.update([["a"]], "A1")
    assert caught.value.code == 429
    assert caught.value.error["status"] == "RESOURCE_EXHAUSTED"
    assert caught.value.response.headers["Retry-After"] == "3"
    # A fault before processing leaves the sheet untouched; the next request goes through.
    assert sheets.sheet_values(spreadsheet.id, "Sheet1") == []
    ws.update([["a"]], "A1")
    assert sheets.sheet_values(spreadsheet.id, "Sheet1") == [["a"]]
    assert sheets.injected_faults() == {"429:before": 1}


def test_dropped_connection_before_processing_changes_nothing(
    sheets: LocalSheets, spreadsheet: gspread.Spreadsheet
) -> None:
    ws = spreadsheet.sheet1
    sheets.set_faults(script=["drop:before"])
    with pytest.raises(requests.exceptions.ConnectionError) as caught:
        ws.update([["lost"]], "A1")
    assert "RemoteDisconnected" in repr(caught.value) or "reset" in repr(caught.value).lower()
    assert sheets.sheet_values(spreadsheet.id, "Sheet1") == []


def test_dropped_connection_after_processing_applies_the_write(
    sheets: LocalSheets, spreadsheet: gspread.Spreadsheet
) -> None:
    ws = spreadsheet.sheet1
    sheets.set_faults(script=["drop:after"])
    with pytest.raises(requests.exceptions.ConnectionError):
        ws.append_row(["applied"])
    # The unknown-outcome case: the client saw a failure but the row is in the sheet.
    assert sheets.sheet_values(spreadsheet.id, "Sheet1") == [["applied"]]


def test_error_after_processing_applies_the_write_and_answers_503(
    sheets: LocalSheets, spreadsheet: gspread.Spreadsheet
) -> None:
    ws = spreadsheet.sheet1
    sheets.set_faults(script=["503:after"])
    with pytest.raises(APIError) as caught:
        ws.update([["done"]], "B2")
    assert caught.value.code == 503
    assert sheets.sheet_values(spreadsheet.id, "Sheet1") == [[], ["", "done"]]


def test_faults_can_target_one_request_kind(sheets: LocalSheets, spreadsheet: gspread.Spreadsheet) -> None:
    ws = spreadsheet.sheet1
    sheets.set_faults(rate_500=1.0, kinds=["spreadsheets.batchUpdate"])
    ws.update([["reads and value writes pass"]], "A1")
    assert ws.acell("A1").value == "reads and value writes pass"
    with pytest.raises(APIError) as caught:
        spreadsheet.batch_update(
            {"requests": [{"appendDimension": {"sheetId": 0, "dimension": "ROWS", "length": 1}}]}
        )
    assert caught.value.code == 500


def test_faulted_requests_are_still_counted(sheets: LocalSheets, spreadsheet: gspread.Spreadsheet) -> None:
    sheets.set_faults(script=["429", "ok"])
    sheets.reset_counts()
    with pytest.raises(APIError):
        spreadsheet.values_get("A1")
    spreadsheet.values_get("A1")
    assert sheets.counts() == {"values.get": 2}


def test_bad_fault_settings_are_refused(sheets: LocalSheets) -> None:
    with pytest.raises(LocalSheetsAdminError, match="400"):
        sheets.set_faults(rate_429=0.8, rate_503=0.5)
    with pytest.raises(LocalSheetsAdminError, match="400"):
        sheets.set_faults(script=["418"])
    with pytest.raises(LocalSheetsAdminError, match="400"):
        sheets.set_faults(rate_429=0.1, typo=1)


def test_added_latency_is_reported_back(sheets: LocalSheets) -> None:
    settings = sheets.set_faults(latency_ms=5)
    assert settings["latency_ms"] == 5


def _outcomes(state: FaultState, n: int) -> list[str]:
    out = []
    for _ in range(n):
        fault = state.decide("values.update")
        out.append("ok" if fault is None else f"{fault.kind}{fault.status}{'a' if fault.after else 'b'}")
    return out


def test_a_seed_makes_the_fault_sequence_repeat() -> None:
    settings = FaultSettings(rate_429=0.2, rate_503=0.1, drop_rate=0.1, timing="random", seed=42)
    first, second = FaultState(), FaultState()
    first.configure(settings)
    second.configure(settings)
    run = _outcomes(first, 300)
    assert run == _outcomes(second, 300)
    assert {"ok", "status429a", "status429b", "status503a", "drop0a", "drop0b"} <= set(run)
    # Rates hold roughly: 40% faulted over 300 requests.
    assert 80 <= sum(o != "ok" for o in run) <= 160


def test_script_runs_before_rates_and_counts_outcomes() -> None:
    state = FaultState()
    state.configure(FaultSettings(script=["ok", "500:after", "drop"], seed=1))
    assert _outcomes(state, 4) == ["ok", "status500a", "drop0b", "ok"]
    assert dict(state.injected) == {"500:after": 1, "drop:before": 1}


def test_fault_settings_reject_unknown_fields() -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"rate_42": 1}', type=FaultSettings)


@pytest.mark.parametrize(
    ("method", "path", "kind"),
    [
        ("POST", "/v4/spreadsheets", "spreadsheets.create"),
        ("GET", "/v4/spreadsheets/abc", "spreadsheets.get"),
        ("POST", "/v4/spreadsheets/abc:batchUpdate", "spreadsheets.batchUpdate"),
        ("GET", "/v4/spreadsheets/abc/values:batchGet", "values.batchGet"),
        ("POST", "/v4/spreadsheets/abc/values:batchUpdate", "values.batchUpdate"),
        ("POST", "/v4/spreadsheets/abc/values:batchClear", "values.batchClear"),
        ("GET", "/v4/spreadsheets/abc/values/'My Sheet'!A1:B2", "values.get"),
        ("PUT", "/v4/spreadsheets/abc/values/Sheet1!A1", "values.update"),
        ("POST", "/v4/spreadsheets/abc/values/Sheet1!A1:append", "values.append"),
        ("POST", "/v4/spreadsheets/abc/values/a/b!A1:clear", "values.clear"),
        ("POST", "/drive/v3/files", "drive.files.create"),
    ],
)
def test_request_kinds_follow_google_method_names(method: str, path: str, kind: str) -> None:
    assert request_kind(method, path) == kind
