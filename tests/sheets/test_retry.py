"""The retry policy and the mapping of failures onto typed errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import msgspec
import pytest
import requests
from gspread.exceptions import APIError

from connector.errors import ConnectorError
from connector.sheets.config import RetrySettings
from connector.sheets.errors import PermanentSheetsError, SheetsError, TransientSheetsError
from connector.sheets.retry import classify_failure, is_transient, parse_retry_after, retry_policy


def api_error(status: int, retry_after: str | None = None, body: object = None) -> APIError:
    response = requests.Response()
    response.status_code = status
    if retry_after is not None:
        response.headers["Retry-After"] = retry_after
    default = {"error": {"code": status, "message": "the message", "status": "STATUS"}}
    response._content = msgspec.json.encode(default if body is None else body)
    return APIError(response)


@pytest.mark.parametrize(
    ("failure", "kind", "status", "unknown"),
    [
        (api_error(429), TransientSheetsError, 429, False),
        (api_error(500), TransientSheetsError, 500, False),
        (api_error(502), TransientSheetsError, 502, False),
        (api_error(503), TransientSheetsError, 503, False),
        (api_error(504), TransientSheetsError, 504, False),
        (api_error(400), PermanentSheetsError, 400, None),
        (api_error(401), PermanentSheetsError, 401, None),
        (api_error(403), PermanentSheetsError, 403, None),
        (api_error(404), PermanentSheetsError, 404, None),
        (api_error(404, body="not json"), PermanentSheetsError, 404, None),
        (requests.ConnectTimeout("x"), TransientSheetsError, None, False),
        (requests.ReadTimeout("x"), TransientSheetsError, None, True),
        (requests.ConnectionError("reset"), TransientSheetsError, None, True),
        (requests.exceptions.ChunkedEncodingError("cut"), TransientSheetsError, None, True),
        (requests.exceptions.JSONDecodeError("bad", "", 0), TransientSheetsError, None, True),
        (requests.exceptions.InvalidURL("x"), PermanentSheetsError, None, None),
    ],
)
def test_failures_are_classified(
    failure: BaseException, kind: type[SheetsError], status: int | None, unknown: bool | None
) -> None:
    error = classify_failure("sheet-1", failure)
    assert type(error) is kind
    assert isinstance(error, ConnectorError)
    assert error.spreadsheet_id == "sheet-1"
    assert error.status == status
    assert "sheet-1" in str(error)
    if isinstance(error, TransientSheetsError):
        assert error.outcome_unknown is unknown
    assert is_transient(error) is (kind is TransientSheetsError)


def test_the_cause_names_googles_message() -> None:
    error = classify_failure(
        "s",
        api_error(
            404,
            body={
                "error": {"code": 404, "message": "Requested entity was not found.", "status": "NOT_FOUND"}
            },
        ),
    )
    assert error.cause == "NOT_FOUND: Requested entity was not found."


def test_a_retry_after_header_is_carried() -> None:
    error = classify_failure("s", api_error(429, retry_after="7"))
    assert isinstance(error, TransientSheetsError)
    assert error.retry_after == 7.0


NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, None),
        ("", None),
        ("3", 3.0),
        ("0.5", 0.5),
        ("-4", 0.0),
        ("nan", None),
        ("soon", None),
        (format_datetime(NOW + timedelta(seconds=30), usegmt=True), 30.0),
        (format_datetime(NOW - timedelta(seconds=30), usegmt=True), 0.0),
    ],
)
def test_retry_after_values(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, NOW) == seconds


class Flaky:
    """Fails with the given errors, one per call, then returns "done"."""

    def __init__(self, *errors: SheetsError) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


def run(policy_settings: RetrySettings, func: Flaky, sleeps: list[float]) -> str:
    result = ""
    for attempt in retry_policy(policy_settings, sleeps.append):
        with attempt:
            result = func()
    return result


SETTINGS = RetrySettings(max_attempts=5, max_seconds=60, base_backoff=1, max_backoff=8)


def test_transient_failures_are_retried_with_bounded_jittered_waits() -> None:
    sleeps: list[float] = []
    func = Flaky(
        TransientSheetsError("s", "503", 503), TransientSheetsError("s", "reset", outcome_unknown=True)
    )
    assert run(SETTINGS, func, sleeps) == "done"
    assert func.calls == 3
    assert len(sleeps) == 2
    assert all(0 <= s <= 8 for s in sleeps)


def test_a_permanent_failure_is_raised_at_once() -> None:
    sleeps: list[float] = []
    func = Flaky(PermanentSheetsError("s", "not found", 404))
    with pytest.raises(PermanentSheetsError):
        run(SETTINGS, func, sleeps)
    assert (func.calls, sleeps) == (1, [])


def test_retry_after_is_waited_at_least() -> None:
    sleeps: list[float] = []
    func = Flaky(TransientSheetsError("s", "quota", 429, retry_after=20))
    run(SETTINGS, func, sleeps)
    assert sleeps == [20]


def test_retry_after_is_capped_by_the_total_time() -> None:
    sleeps: list[float] = []
    run(
        RetrySettings(max_seconds=5), Flaky(TransientSheetsError("s", "quota", 429, retry_after=3600)), sleeps
    )
    assert sleeps == [5]


def test_attempts_are_bounded_and_the_last_typed_error_is_raised() -> None:
    sleeps: list[float] = []
    func = Flaky(*[TransientSheetsError("s", f"503 #{i}", 503) for i in range(10)])
    with pytest.raises(TransientSheetsError, match="#4"):
        run(SETTINGS, func, sleeps)
    assert func.calls == 5
    assert len(sleeps) == 4
