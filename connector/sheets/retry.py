"""The one retry policy of every Sheets request, and the mapping of failures onto typed errors.

A sign-in that cannot reach Google's token endpoint is transient too; a sign-in Google refuses (a deleted
or revoked key, a clock far off: ``invalid_grant``) is permanent, with a message saying what to check.

Transient failures (429, 500, 502, 503, 504, timeouts, lost connections) are retried with exponential
backoff and full jitter (tenacity's ``wait_random_exponential``), waiting at least as long as the server's
``Retry-After`` when it sends one, within a bounded number of attempts and a bounded total time. Anything
else is permanent and raised at once. The writer wraps its whole read-plan-write cycle in this policy, so
after a write whose outcome is unknown the keys are read again before anything is written again.
"""

from __future__ import annotations

import email.utils
import logging
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime

import msgspec
import requests
import tenacity
from google.auth.exceptions import RefreshError, TransportError
from gspread.exceptions import APIError

from connector import metrics
from connector.sheets.config import RetrySettings
from connector.sheets.errors import PermanentSheetsError, SheetsError, TransientSheetsError

__all__ = [
    "TRANSIENT_STATUSES",
    "RetryAfterOrJitter",
    "classify_failure",
    "is_transient",
    "parse_retry_after",
    "retry_policy",
]

log = logging.getLogger("connector.sheets")

TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})


def is_transient(exc: BaseException) -> bool:
    """The retry predicate: only failures classified as transient are tried again."""
    return isinstance(exc, TransientSheetsError)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date); None if absent or bad."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if math.isnan(seconds):
        return None
    return max(0.0, seconds)


def _api_error_message(error: APIError) -> str:
    """Google's own message, or the body when the answer was not Google-shaped."""
    message = error.error.get("message") if isinstance(error.error, dict) else None
    status = error.error.get("status") if isinstance(error.error, dict) else None
    text = str(message or "no message")
    return f"{status}: {text}" if status and not str(status).startswith("invalid JSON") else text


SIGN_IN_ADVICE = (
    "check that the service account's key is not deleted or disabled in the Google Cloud console "
    "(IAM > Service accounts > Keys), that the key file is the current one, and that this machine's "
    "clock is right (a clock minutes off makes Google refuse the sign-in with invalid_grant)"
)


def _sign_in_failure(spreadsheet_id: str, exc: RefreshError | TransportError) -> SheetsError:
    """A failure to get an access token: unreachable token endpoint (transient) or a refusal."""
    # google-auth puts its message first and the token endpoint's answer after it.
    detail = exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)
    if isinstance(exc, TransportError):
        return TransientSheetsError(
            spreadsheet_id, f"cannot reach Google's sign-in (token endpoint): {detail}"
        )
    if exc.retryable:
        return TransientSheetsError(spreadsheet_id, f"Google's sign-in failed for now: {detail}")
    return PermanentSheetsError(
        spreadsheet_id, f"Google refused the service account's sign-in ({detail}): {SIGN_IN_ADVICE}"
    )


def classify_failure(spreadsheet_id: str, exc: BaseException) -> SheetsError:
    """Map a gspread/requests/google-auth failure onto PermanentSheetsError or TransientSheetsError."""
    if isinstance(exc, SheetsError):
        return exc
    if isinstance(exc, RefreshError | TransportError):
        return _sign_in_failure(spreadsheet_id, exc)
    if isinstance(exc, APIError):
        status = exc.response.status_code
        cause = _api_error_message(exc)
        if status in TRANSIENT_STATUSES:
            retry_after = parse_retry_after(exc.response.headers.get("Retry-After"))
            return TransientSheetsError(spreadsheet_id, cause, status, retry_after=retry_after)
        return PermanentSheetsError(spreadsheet_id, cause, status)
    if isinstance(exc, requests.ConnectTimeout):
        # Nothing was sent: the outcome is known (not applied), but retrying is the same either way.
        return TransientSheetsError(spreadsheet_id, f"connect timeout ({exc})")
    if isinstance(exc, requests.Timeout):
        return TransientSheetsError(spreadsheet_id, f"timed out ({exc})", outcome_unknown=True)
    if isinstance(exc, requests.ConnectionError | requests.exceptions.ChunkedEncodingError):
        return TransientSheetsError(spreadsheet_id, f"connection lost ({exc})", outcome_unknown=True)
    if isinstance(exc, requests.exceptions.JSONDecodeError | msgspec.DecodeError):
        # A 2xx whose body was cut short: the request may have been applied.
        return TransientSheetsError(spreadsheet_id, f"unreadable answer ({exc})", outcome_unknown=True)
    if isinstance(exc, requests.RequestException):
        return PermanentSheetsError(spreadsheet_id, f"request failed ({exc})")
    raise TypeError(f"not a Sheets request failure: {exc!r}") from exc


class RetryAfterOrJitter(tenacity.wait.wait_base):
    """Full-jitter exponential backoff, but never shorter than the server's ``Retry-After``."""

    def __init__(self, settings: RetrySettings) -> None:
        self._jitter = tenacity.wait_random_exponential(
            multiplier=settings.base_backoff, max=settings.max_backoff
        )
        self._cap = settings.max_seconds

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        """Seconds to sleep before the next attempt."""
        backoff = self._jitter(retry_state)
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None and outcome.failed else None
        if isinstance(exc, TransientSheetsError) and exc.retry_after is not None:
            return min(max(backoff, exc.retry_after), self._cap)
        return backoff


def _log_retry(retry_state: tenacity.RetryCallState) -> None:
    """One warning per retried attempt, naming the cause and the wait."""
    outcome = retry_state.outcome
    exc = outcome.exception() if outcome is not None else None
    wait = retry_state.next_action.sleep if retry_state.next_action is not None else 0.0
    metrics.SHEETS_RETRIES.inc()
    log.warning("sheets attempt %d failed (%s); retrying in %.2fs", retry_state.attempt_number, exc, wait)


def retry_policy(settings: RetrySettings, sleep: Callable[[float], None] = time.sleep) -> tenacity.Retrying:
    """The tenacity policy for Sheets work; re-raises the last typed error when it gives up."""
    return tenacity.Retrying(
        retry=tenacity.retry_if_exception(is_transient),
        wait=RetryAfterOrJitter(settings),
        stop=tenacity.stop_after_attempt(settings.max_attempts)
        | tenacity.stop_after_delay(settings.max_seconds),
        sleep=sleep,
        before_sleep=_log_retry,
        reraise=True,
    )
