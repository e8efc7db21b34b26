"""Prometheus metrics, served at ``/metrics``.

Defined once here, updated where things happen: the webhook routes (received, accepted, rejected; on the
default registry), the worker (flush duration, webhook-to-sheet latency) and the sheet writer (requests,
retries, rate-limiter waits, the request budget and the 429s) on :data:`WORKER_REGISTRY`; the inbox depth is read from the inbox when the
metrics are scraped.

The worker runs in a child process of ``serve``: there its metrics use prometheus_client's multiprocess
mode (``PROMETHEUS_MULTIPROC_DIR``, set by the supervisor), and ``serve`` reads them from that folder when
scraped (:func:`render`), summed over the worker processes it has had, so counters survive a restart.
"""

from __future__ import annotations

import collections
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

__all__ = [
    "CONNECTIONS_REFUSED",
    "CONTENT_TYPE",
    "EVENTS_REJECTED",
    "FLUSH_SECONDS",
    "INBOX_DEPTH",
    "INTAKE",
    "RATE_LIMIT_WAIT_SECONDS",
    "SHEETS_BUDGET",
    "SHEETS_REQUESTS",
    "SHEETS_RETRIES",
    "SHEETS_THROTTLED",
    "WEBHOOK_TO_SHEET_SECONDS",
    "WORKER_REGISTRY",
    "IntakeCounts",
    "render",
    "worker_metrics_dir",
]

CONTENT_TYPE: Final = CONTENT_TYPE_LATEST

EVENTS_REJECTED: Final = Counter(
    "doopage_events_rejected_total",
    "Webhook POSTs refused, by reason (invalid, company, media_type, too_large, client_disconnect, store, "
    "auth, address).",
    ["reason"],
)
CONNECTIONS_REFUSED: Final = Counter(
    "doopage_connections_refused_total",
    "Connections answered and closed by a limit, by reason (header_too_large, header_timeout, "
    "body_timeout, too_many_connections).",
    ["reason"],
)
INBOX_DEPTH: Final = Gauge("doopage_inbox_events", "Events in the inbox, by status.", ["status"])

# The worker's and the sheet writer's metrics (see the module docstring).
WORKER_REGISTRY: Final = CollectorRegistry()
FLUSH_SECONDS: Final = Histogram(
    "doopage_flush_seconds",
    "Duration of one flush of one spreadsheet (read, plan, write, retries included).",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
    registry=WORKER_REGISTRY,
)
WEBHOOK_TO_SHEET_SECONDS: Final = Histogram(
    "doopage_webhook_to_sheet_seconds",
    "Time from receiving an event to its row being written.",
    buckets=(0.1, 0.25, 0.5, 1, 1.5, 2, 3, 5, 10, 30, 60, 300),
    registry=WORKER_REGISTRY,
)
SHEETS_REQUESTS: Final = Counter(
    "doopage_sheets_requests_total",
    "Sheets API requests, by kind (read, write) and status (the HTTP status, or the error's name).",
    ["kind", "status"],
    registry=WORKER_REGISTRY,
)
SHEETS_RETRIES: Final = Counter(
    "doopage_sheets_retries_total", "Sheets attempts retried after a failure.", registry=WORKER_REGISTRY
)
SHEETS_BUDGET: Final = Gauge(
    "doopage_sheets_budget_per_minute",
    "Sheets requests the connector allows itself per quota window now, by kind (read, write) and credential "
    "(a service account's client_email); cut by 429s.",
    ["kind", "credential"],
    registry=WORKER_REGISTRY,
    multiprocess_mode="livemostrecent",
)
SHEETS_THROTTLED: Final = Counter(
    "doopage_sheets_throttled_total",
    "Sheets requests Google refused with 429 (quota exhausted), by kind (read, write) and credential.",
    ["kind", "credential"],
    registry=WORKER_REGISTRY,
)
RATE_LIMIT_WAIT_SECONDS: Final = Counter(
    "doopage_rate_limit_wait_seconds_total",
    "Time spent waiting for the Sheets request budget.",
    ["kind"],
    registry=WORKER_REGISTRY,
)


class IntakeCounts:
    """The intake route's two counters, received by endpoint and accepted by event type and outcome.

    Every webhook counts in both. prometheus_client's own counters validate labels and take a lock on
    each increment, which cost more than the rest of the route's checks; these are plain integers, only
    ever added to by the event loop, and exported as counters when scraped (from a copy taken in one C
    call, so a scrape from another thread never sees them change under it).
    """

    def __init__(self) -> None:
        self.received: collections.Counter[str] = collections.Counter()
        self.accepted: collections.Counter[tuple[str, str]] = collections.Counter()

    def collect(self) -> Iterator[CounterMetricFamily]:
        """The prometheus_client collector protocol."""
        received = CounterMetricFamily(
            "doopage_events_received",
            "Webhook POSTs received on a known endpoint, by endpoint.",
            labels=["endpoint"],
        )
        for endpoint, count in self.received.copy().items():
            received.add_metric([endpoint], count)
        accepted = CounterMetricFamily(
            "doopage_events_accepted",
            "Events acknowledged with 200, by event type (every type not known to this version as "
            "unknown) and outcome (stored or duplicate).",
            labels=["event_type", "outcome"],
        )
        for labels, count in self.accepted.copy().items():
            accepted.add_metric(list(labels), count)
        yield received
        yield accepted


INTAKE: Final = IntakeCounts()
REGISTRY.register(INTAKE)


def worker_metrics_dir(data_dir: Path) -> Path:
    """The folder a worker child writes its metrics to, emptied of an earlier run's (call at start-up)."""
    folder = data_dir / "worker-metrics"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def render(worker_dir: Path | None = None) -> bytes:
    """Every metric in Prometheus' text format: this process's, and the worker's (from the worker
    children's folder when given, else this process's own)."""
    if worker_dir is None:
        return generate_latest() + generate_latest(WORKER_REGISTRY)
    children = CollectorRegistry()
    MultiProcessCollector(children, path=str(worker_dir))  # type: ignore[no-untyped-call]
    return generate_latest() + generate_latest(children)
