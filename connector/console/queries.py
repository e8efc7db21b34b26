"""What the console shows: the store's figures, this host's journal, and the mapping.

The events, their statuses and the flush outcomes come through the storage seam
(:class:`~connector.store.protocols.Figures`, on SQLite or PostgreSQL alike); the Sheets requests, the
flush log and the refused webhooks from the journal, a SQLite file of this host's data directory. Every
function returns plain structs, so the console never depends on the memory of the process that runs the
worker. :func:`overview` gathers everything the page shows.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict, deque
from typing import Final
from urllib.parse import quote

import msgspec

from connector.store.protocols import Figures, WorkStore
from connector.store.records import STATUSES, FailedEvent
from connector.sync.mapping import SheetMapping
from connector.sync.routing import Router

__all__ = [
    "Budget",
    "CompanyView",
    "Minute",
    "Overview",
    "Rejection",
    "SpreadsheetView",
    "Tally",
    "Throttle",
    "UnroutedView",
    "overview",
    "spreadsheet_link",
]

MINUTE_MS: Final = 60_000
HISTORY_MINUTES: Final = 180
LIST_LIMIT: Final = 50
GOOGLE_SHEET_URL: Final = "https://docs.google.com/spreadsheets/d/{}/edit"


class CompanyView(msgspec.Struct, frozen=True):
    """One company: its events by what became of them, and how long the oldest pending one waits."""

    company_id: int
    name: str
    spreadsheet_id: str | None  # None: not mapped
    received: int
    written: int
    pending: int
    failed: int
    unrouted: int
    lag_ms: int | None  # age of the oldest pending event; None when nothing is pending


class LastFlush(msgspec.Struct, frozen=True):
    """The latest flush of a spreadsheet as the journal has it."""

    at_ms: int
    events: int
    rows_updated: int
    rows_added: int
    requests: int
    seconds: float
    error: str | None


class SpreadsheetView(msgspec.Struct, frozen=True):
    """One mapped spreadsheet: where to open it, who writes to it, and how its flushes went."""

    spreadsheet_id: str
    link: str
    companies: list[int]
    failed: int
    last_ok_ms: int | None
    last_error: str | None
    last_error_ms: int | None
    last_flush: LastFlush | None
    credential: str = ""  # with a pool of credentials, the one that writes it, and why


class Minute(msgspec.Struct, frozen=True):
    """One minute of the chart: events received and written, and how long the written ones took."""

    at_ms: int
    received: int
    written: int
    latency_avg_ms: int | None
    latency_max_ms: int | None


class Budget(msgspec.Struct, frozen=True):
    """Sheets requests sent in the last 60 seconds against the configured budget, and 429s of the hour."""

    reads: int
    reads_limit: int
    writes: int
    writes_limit: int
    throttled_last_hour: int


class Throttle(msgspec.Struct, frozen=True):
    """A Sheets request answered 429 (rate limited by Google)."""

    at_ms: int
    kind: str
    spreadsheet_id: str


class Rejection(msgspec.Struct, frozen=True):
    """A refused webhook: when, on which endpoint, why (never its body)."""

    at_ms: int
    endpoint: str
    reason: str
    status: int
    detail: str


class UnroutedView(msgspec.Struct, frozen=True):
    """A company with no mapping whose events wait for one."""

    company_id: int
    events: int
    oldest_ms: int


class Overview(msgspec.Struct, frozen=True):
    """Everything the console page shows."""

    now_ms: int
    companies: list[CompanyView]
    spreadsheets: list[SpreadsheetView]
    minutes: list[Minute]
    budget: Budget
    throttles: list[Throttle]
    rejections: list[Rejection]
    failed: list[FailedEvent]
    failed_total: int
    unrouted: list[UnroutedView]
    mapping_file: str
    mapping_error: str | None


def spreadsheet_link(api_root: str, google_root: str, spreadsheet_id: str) -> str:
    """Where a person opens a spreadsheet: Google's page, or the local Sheets server's viewer."""
    if api_root.rstrip("/") == google_root.rstrip("/"):
        return GOOGLE_SHEET_URL.format(quote(spreadsheet_id, safe=""))
    return f"{api_root.rstrip('/')}/view/{quote(spreadsheet_id, safe='')}"


class Tally:
    """Events per company up to an id, kept between refreshes: events are never deleted, so only the
    ones stored since need counting. An id is counted into the totals once the store says no lower id
    can still appear (:attr:`~connector.store.protocols.Figures.ids_settle_ms`); the events above it are
    counted afresh each time."""

    def __init__(self) -> None:
        self.up_to_id = 0
        self.totals: dict[int, int] = defaultdict(int)
        self._seen: deque[tuple[int, int]] = deque()  # (when, newest id then), oldest first

    def update(self, store: Figures, now: int) -> dict[int, int]:
        """Every company's event count now."""
        self._seen.append((now, store.newest_event_id()))
        settled = self.up_to_id
        while self._seen and self._seen[0][0] <= now - store.ids_settle_ms:
            settled = max(settled, self._seen.popleft()[1])
        if settled > self.up_to_id:
            for company_id, count in store.events_by_company(self.up_to_id, settled).items():
                self.totals[company_id] += count
            self.up_to_id = settled
        counts = dict(self.totals)
        for company_id, count in store.events_by_company(self.up_to_id).items():
            counts[company_id] = counts.get(company_id, 0) + count
        return counts


def status_counts(store: Figures, now: int, tally: Tally | None = None) -> dict[int, dict[str, int]]:
    """company -> status -> number of events.

    Nearly every event is ``done``, so grouping the whole table by status would read every row. Instead
    the totals come from ``tally`` (only events stored since the last call are counted) and the few
    events in other statuses from the status index; ``done`` is the difference (measured by
    scripts/bench_console.py).
    """
    totals = (tally or Tally()).update(store, now)
    counts: dict[int, dict[str, int]] = defaultdict(dict)
    counts.update(store.status_by_company([status for status in STATUSES if status != "done"]))
    for company_id, total in totals.items():
        done = total - sum(counts[company_id].values())
        if done:
            counts[company_id]["done"] = done
    return counts


def oldest_pending(store: Figures) -> dict[int, int]:
    """company -> receive time of its oldest pending event."""
    return {lag.company_id: lag.oldest_received_ms for lag in store.backlog("pending")}


def written_per_minute(journal: sqlite3.Connection, since_ms: int) -> dict[int, tuple[int, int, int]]:
    """minute (ms) -> (events written, their mean and their longest webhook-to-sheet latency in ms)."""
    rows = journal.execute(
        "SELECT at_ms / ? * ?, SUM(events), SUM(latency_avg_ms * events) / SUM(events), MAX(latency_max_ms)"
        " FROM flush_log WHERE at_ms >= ? AND error IS NULL GROUP BY 1",
        (MINUTE_MS, MINUTE_MS, since_ms),
    )
    return {minute: (events, average, longest) for minute, events, average, longest in rows}


def minutes(
    store: Figures, journal: sqlite3.Connection, now_ms: int, seen: dict[int, int] | None = None
) -> list[Minute]:
    """The last :data:`HISTORY_MINUTES` minutes, oldest first, every minute present (zero when quiet).

    ``seen`` (minute -> events received), kept by the caller between calls, saves counting again the
    minutes that are over: only the last two (an event is stamped a moment before it is committed) and
    any not counted yet are read.
    """
    last = now_ms // MINUTE_MS * MINUTE_MS
    first = last - (HISTORY_MINUTES - 1) * MINUTE_MS
    known = {} if seen is None else seen  # minutes counted once they were over
    for minute in [m for m in known if m < first]:
        del known[minute]
    settled = last - MINUTE_MS  # the minutes before this one are over, late commits included
    missing = [m for m in range(first, settled, MINUTE_MS) if m not in known]
    since = missing[0] if missing else settled
    fresh = store.received_per_minute(since, MINUTE_MS)
    for minute in range(since, settled, MINUTE_MS):
        known[minute] = fresh.get(minute, 0)
    received = {**known, **{m: count for m, count in fresh.items() if m >= settled}}
    written = written_per_minute(journal, first)
    series = []
    for at in range(first, last + 1, MINUTE_MS):
        events, average, longest = written.get(at, (0, None, None))
        series.append(Minute(at, received.get(at, 0), events, average, longest))
    return series


def last_flushes(journal: sqlite3.Connection) -> dict[str, LastFlush]:
    """spreadsheet -> its latest journaled flush."""
    rows = journal.execute(
        "SELECT spreadsheet_id, at_ms, events, rows_updated, rows_added, requests, seconds, error"
        " FROM flush_log WHERE id IN (SELECT MAX(id) FROM flush_log GROUP BY spreadsheet_id)"
    )
    return {spreadsheet_id: LastFlush(*rest) for spreadsheet_id, *rest in rows}


def flush_outcomes(store: WorkStore) -> dict[str, tuple[int | None, str | None, int | None]]:
    """spreadsheet -> (last success, last error, its time) from the store's flush records."""
    return {f.spreadsheet_id: (f.last_ok_ms, f.last_error, f.last_error_ms) for f in store.flushes()}


def budget(journal: sqlite3.Connection, now_ms: int, reads_limit: int, writes_limit: int) -> Budget:
    """Requests of the last minute by kind, against the limits, and the 429s of the last hour."""
    used = dict(
        journal.execute(
            "SELECT kind, COUNT(*) FROM sheets_requests WHERE at_ms > ? GROUP BY kind", (now_ms - MINUTE_MS,)
        ).fetchall()
    )
    (throttled,) = journal.execute(
        "SELECT COUNT(*) FROM sheets_requests WHERE status = '429' AND at_ms > ?", (now_ms - 60 * MINUTE_MS,)
    ).fetchone()
    return Budget(used.get("read", 0), reads_limit, used.get("write", 0), writes_limit, throttled)


def throttles(journal: sqlite3.Connection, limit: int = LIST_LIMIT) -> list[Throttle]:
    """The latest 429 answers, newest first."""
    rows = journal.execute(
        "SELECT at_ms, kind, spreadsheet_id FROM sheets_requests WHERE status = '429' ORDER BY id DESC LIMIT ?",
        (limit,),
    )
    return [Throttle(*row) for row in rows]


def rejections(journal: sqlite3.Connection, limit: int = LIST_LIMIT) -> list[Rejection]:
    """The latest refused webhooks, newest first."""
    rows = journal.execute(
        "SELECT at_ms, endpoint, reason, status, detail FROM rejections ORDER BY id DESC LIMIT ?", (limit,)
    )
    return [Rejection(*row) for row in rows]


def unrouted(store: Figures) -> list[UnroutedView]:
    """Companies whose events wait for a mapping, with how many and since when."""
    return [UnroutedView(u.company_id, u.pending, u.oldest_received_ms) for u in store.backlog("unrouted")]


def company_views(
    mapping: SheetMapping, counts: dict[int, dict[str, int]], oldest: dict[int, int], now_ms: int
) -> list[CompanyView]:
    """Every mapped company, then every other company that has events, by id."""
    names = {c.company_id: (c.name, c.spreadsheet_id) for c in mapping.companies}
    views = []
    for company_id in sorted(set(names) | set(counts)):
        name, spreadsheet_id = names.get(company_id, ("", None))
        by_status = counts.get(company_id, {})
        waiting = oldest.get(company_id)
        views.append(
            CompanyView(
                company_id=company_id,
                name=name,
                spreadsheet_id=spreadsheet_id,
                received=sum(by_status.values()),
                written=by_status.get("done", 0),
                pending=by_status.get("pending", 0),
                failed=by_status.get("failed", 0),
                unrouted=by_status.get("unrouted", 0),
                lag_ms=None if waiting is None else max(0, now_ms - waiting),
            )
        )
    return views


def spreadsheet_views(
    mapping: SheetMapping,
    companies: list[CompanyView],
    outcomes: dict[str, tuple[int | None, str | None, int | None]],
    flushes: dict[str, LastFlush],
    link: dict[str, str],
    credentials: dict[str, str] | None = None,
) -> list[SpreadsheetView]:
    """Every spreadsheet the mapping names (a spreadsheet no longer mapped is not shown); ``credentials``
    says which credential of a pool writes each."""
    failed_by_company = {c.company_id: c.failed for c in companies}
    views = []
    for spreadsheet_id, mapped in sorted(Router.from_mapping(mapping).spreadsheets().items()):
        company_ids = [company.company_id for company in mapped]
        ok_ms, error, error_ms = outcomes.get(spreadsheet_id, (None, None, None))
        if error_ms is not None and ok_ms is not None and ok_ms > error_ms:
            error = error_ms = None  # written since: the error is history
        views.append(
            SpreadsheetView(
                spreadsheet_id=spreadsheet_id,
                link=link[spreadsheet_id],
                companies=company_ids,
                failed=sum(failed_by_company.get(c, 0) for c in company_ids),
                last_ok_ms=ok_ms,
                last_error=error,
                last_error_ms=error_ms,
                last_flush=flushes.get(spreadsheet_id),
                credential=(credentials or {}).get(spreadsheet_id, ""),
            )
        )
    return views


def overview(
    store: WorkStore,
    journal: sqlite3.Connection,
    mapping: SheetMapping,
    *,
    now_ms: int,
    links: dict[str, str],
    reads_limit: int,
    writes_limit: int,
    mapping_error: str | None = None,
    seen_minutes: dict[int, int] | None = None,
    tally: Tally | None = None,
    credentials: dict[str, str] | None = None,
) -> Overview:
    """Everything the page shows, as of ``now_ms``; ``links`` gives each mapped spreadsheet's URL and
    ``credentials`` which credential of a pool writes it; ``seen_minutes`` and ``tally``, kept by the
    caller, spare counting again what was counted before."""
    companies = company_views(mapping, status_counts(store, now_ms, tally), oldest_pending(store), now_ms)
    return Overview(
        now_ms=now_ms,
        companies=companies,
        spreadsheets=spreadsheet_views(
            mapping, companies, flush_outcomes(store), last_flushes(journal), links, credentials
        ),
        minutes=minutes(store, journal, now_ms, seen_minutes),
        budget=budget(journal, now_ms, reads_limit, writes_limit),
        throttles=throttles(journal),
        rejections=rejections(journal),
        failed=store.latest_failed(LIST_LIMIT),
        failed_total=sum(company.failed for company in companies),
        unrouted=unrouted(store),
        mapping_file=mapping.file,
        mapping_error=mapping_error,
    )
