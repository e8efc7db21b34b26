"""What the store holds and hands out, whatever the backend: records, statuses, and fencing tokens."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Final, Literal

import msgspec

__all__ = [
    "CSV_IMPORT_ENDPOINT",
    "STATUSES",
    "CompanyLag",
    "FailedEvent",
    "Fence",
    "FlushRecord",
    "InboxRecord",
    "Outcome",
    "StatusCount",
    "StoredEvent",
    "nested_counts",
    "now_ms",
]

# pending: waiting for the worker; done: written to its sheets; failed: a permanent error, parked;
# unrouted: its company has no spreadsheet mapping yet; unknown: an event type this version cannot read;
# backfill: imported by `doopage-sheets backfill`, which writes it itself (the worker leaves it alone).
STATUSES: Final = ("pending", "done", "failed", "unrouted", "unknown", "backfill")

# The endpoint name of events made from CSV rows by `backfill`: folded into state like any event, but
# never shown in an events worksheet, since DooPage never sent them.
CSV_IMPORT_ENDPOINT: Final = "backfill-csv"

# How a claimed event is settled.
Outcome = Literal["done", "failed", "unrouted"]


def nested_counts(rows: Iterable[tuple[int, str, int]]) -> dict[int, dict[str, int]]:
    """(company, status, count) rows as company -> status -> count."""
    counts: dict[int, dict[str, int]] = {}
    for company_id, status, count in rows:
        counts.setdefault(company_id, {})[status] = count
    return counts


def now_ms() -> int:
    """Wall-clock time in milliseconds since the epoch."""
    return time.time_ns() // 1_000_000


class InboxRecord(msgspec.Struct, frozen=True, kw_only=True, array_like=True):
    """One webhook body as it is stored.

    ``content_key`` is the hash of the body's canonical JSON; ``subject`` what the event is about
    (``customer:1``), None for an unknown type. Deduplication:

    * an event with a ``timestamp`` is the same event whenever its content is the same; its dedup key is
      its content key;
    * an event without one (tag_set, tag_unset, note_changed, customer_pipeline_updated in DooPage's
      samples) can truly happen twice with the same body: tag A set, unset, set again. It counts as a
      repeated delivery only when it equals the latest timestamp-less event of the same subject, which is
      also when storing it again could change nothing. Otherwise it is a new event and gets a dedup key of
      its own (``<content key>@<received ms>``).
    """

    received_ms: int
    endpoint: str
    company_id: int
    event_type: str
    event_ms: int | None
    body: bytes
    content_key: str
    subject: str | None = None
    status: str = "pending"

    @property
    def repeatable(self) -> bool:
        """Whether the same body may be a new event (it carries no timestamp)."""
        return self.event_ms is None and self.subject is not None


class StoredEvent(msgspec.Struct, frozen=True):
    """One event as the store holds it."""

    id: int
    received_ms: int
    endpoint: str
    company_id: int
    event_type: str
    event_ms: int | None
    body: bytes
    dedup_key: str
    attempts: int


class StatusCount(msgspec.Struct, frozen=True):
    """How many events of one type are in one status."""

    status: str
    event_type: str
    count: int


class CompanyLag(msgspec.Struct, frozen=True):
    """Pending work of one company: how many events, and since when the oldest waits (all pending events
    for ``lag``; those a claim could take now for ``pending_work``)."""

    company_id: int
    pending: int
    oldest_received_ms: int


class FailedEvent(msgspec.Struct, frozen=True):
    """An event parked by a permanent error."""

    id: int
    company_id: int
    event_type: str
    received_ms: int
    attempts: int
    error: str


class FlushRecord(msgspec.Struct, frozen=True):
    """The last flush of one spreadsheet: when it last succeeded, and the last error."""

    spreadsheet_id: str
    company_ids: str
    last_ok_ms: int | None
    last_error: str | None
    last_error_ms: int | None


class Fence(msgspec.Struct, frozen=True):
    """One hold of a named lock. ``token`` grows with every acquisition of the lock, so a write that
    carries an older token than the lock's newest comes from a holder that lost it, and is refused."""

    name: str
    owner: str
    token: int
