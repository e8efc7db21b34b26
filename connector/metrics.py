"""Prometheus metrics, served at ``/metrics``.

Defined once here on the default registry, updated where things happen: the webhook routes (received,
accepted, rejected), the worker (flush duration, webhook-to-sheet latency), the sheet writer (requests,
retries, rate-limiter waits); the inbox depth is read from the inbox when the metrics are scraped.
"""

from __future__ import annotations

import functools
from typing import Final

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

__all__ = [
    "CONTENT_TYPE",
    "EVENTS_ACCEPTED",
    "EVENTS_RECEIVED",
    "EVENTS_REJECTED",
    "FLUSH_SECONDS",
    "INBOX_DEPTH",
    "RATE_LIMIT_WAIT_SECONDS",
    "SHEETS_REQUESTS",
    "SHEETS_RETRIES",
    "WEBHOOK_TO_SHEET_SECONDS",
    "accepted",
    "received",
    "render",
]

CONTENT_TYPE: Final = CONTENT_TYPE_LATEST

EVENTS_RECEIVED: Final = Counter(
    "doopage_events_received_total", "Webhook POSTs received on a known endpoint, by endpoint.", ["endpoint"]
)
EVENTS_ACCEPTED: Final = Counter(
    "doopage_events_accepted_total",
    "Events acknowledged with 200, by event type and outcome (stored or duplicate).",
    ["event_type", "outcome"],
)
EVENTS_REJECTED: Final = Counter(
    "doopage_events_rejected_total",
    "Webhook POSTs refused, by reason (invalid, company, media_type, too_large, store, auth, address).",
    ["reason"],
)
INBOX_DEPTH: Final = Gauge("doopage_inbox_events", "Events in the inbox, by status.", ["status"])
FLUSH_SECONDS: Final = Histogram(
    "doopage_flush_seconds",
    "Duration of one flush of one spreadsheet (read, plan, write, retries included).",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
)
WEBHOOK_TO_SHEET_SECONDS: Final = Histogram(
    "doopage_webhook_to_sheet_seconds",
    "Time from receiving an event to its row being written.",
    buckets=(0.1, 0.25, 0.5, 1, 1.5, 2, 3, 5, 10, 30, 60, 300),
)
SHEETS_REQUESTS: Final = Counter(
    "doopage_sheets_requests_total",
    "Sheets API requests, by kind (read, write) and status (the HTTP status, or the error's name).",
    ["kind", "status"],
)
SHEETS_RETRIES: Final = Counter("doopage_sheets_retries_total", "Sheets attempts retried after a failure.")
RATE_LIMIT_WAIT_SECONDS: Final = Counter(
    "doopage_rate_limit_wait_seconds_total", "Time spent waiting for the Sheets request budget.", ["kind"]
)


# Every webhook counts twice; looking a labelled child up (validation, a lock) costs more than counting,
# so the children the intake route uses are looked up once.


@functools.lru_cache(maxsize=64)
def received(endpoint: str) -> Counter:
    """EVENTS_RECEIVED for one endpoint."""
    return EVENTS_RECEIVED.labels(endpoint)


@functools.lru_cache(maxsize=256)
def accepted(event_type: str, outcome: str) -> Counter:
    """EVENTS_ACCEPTED for one event type and outcome."""
    return EVENTS_ACCEPTED.labels(event_type, outcome)


def render() -> bytes:
    """Every metric in Prometheus' text format."""
    return generate_latest()
