"""Arbitrary request bodies and ranges get Google-shaped 4xx answers, never a server error."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar.testing import TestClient

from connector.localsheets import LocalSheetsService, SheetSpec, SpreadsheetSpec, create_litestar

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-3, 2000)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)

_request_kinds = st.sampled_from(
    [
        "addSheet",
        "deleteSheet",
        "updateSheetProperties",
        "updateSpreadsheetProperties",
        "insertDimension",
        "deleteDimension",
        "appendDimension",
        "updateCells",
        "appendCells",
        "duplicateSheet",
        "sortRange",
        "repeatCell",
    ]
)

_field_names = st.sampled_from(
    [
        "sheetId",
        "properties",
        "range",
        "start",
        "rows",
        "fields",
        "dimension",
        "startIndex",
        "endIndex",
        "length",
        "title",
        "gridProperties",
        "rowIndex",
        "values",
        "userEnteredValue",
        "sortSpecs",
        "sourceSheetId",
        "dimensionIndex",
        "sortOrder",
    ]
)

_payloads = st.recursive(
    st.none() | st.integers(-2, 5) | st.sampled_from(["ROWS", "COLUMNS", "*", "userEnteredValue", "x"]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_field_names, children, max_size=5),
    max_leaves=15,
)


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient[Any]]:
    """The Litestar app (no fault injector) on Litestar's test client, with spreadsheet "s"."""
    service = LocalSheetsService(seed=0)
    service.put_spreadsheet(
        "s", SpreadsheetSpec(sheets=[SheetSpec(title="Data", sheet_id=0, rows=5, columns=3)])
    )
    with TestClient(app=create_litestar(service)) as test_client:
        yield test_client


def _assert_google_error_or_ok(response: Any) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == {"code", "message", "status"}
        assert error["code"] == response.status_code


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.dictionaries(_request_kinds, _payloads, min_size=1, max_size=1), max_size=3))
def test_arbitrary_batch_update_requests_never_fail_the_server(
    client: TestClient[Any], requests: list[Any]
) -> None:
    _assert_google_error_or_ok(client.post("/v4/spreadsheets/s:batchUpdate", json={"requests": requests}))


@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_json)
def test_arbitrary_json_bodies_never_fail_the_server(client: TestClient[Any], body: Any) -> None:
    for path in (
        "/v4/spreadsheets/s:batchUpdate",
        "/v4/spreadsheets/s/values:batchUpdate",
        "/v4/spreadsheets",
    ):
        _assert_google_error_or_ok(client.post(path, json=body))
    _assert_google_error_or_ok(
        client.put("/v4/spreadsheets/s/values/Data!A1?valueInputOption=RAW", json=body)
    )


@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(min_size=1, max_size=20))
def test_arbitrary_ranges_never_fail_the_server(client: TestClient[Any], text: str) -> None:
    _assert_google_error_or_ok(client.get(f"/v4/spreadsheets/s/values/{quote(text, safe='')}"))
    _assert_google_error_or_ok(client.get("/v4/spreadsheets/s/values:batchGet", params={"ranges": [text]}))


def test_malformed_json_is_a_google_400(client: TestClient[Any]) -> None:
    response = client.post(
        "/v4/spreadsheets/s:batchUpdate", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["status"] == "INVALID_ARGUMENT"


def test_unknown_routes_are_google_404s(client: TestClient[Any]) -> None:
    response = client.get("/v4/nothing/here")
    assert response.status_code == 404
    assert response.json()["error"]["status"] == "NOT_FOUND"
