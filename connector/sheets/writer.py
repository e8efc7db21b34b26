"""The sheet writer: one flush = one read and one write per spreadsheet, retried as a whole.

A flush, for all the worksheets of one spreadsheet:

1. **Read** (one ``spreadsheets.get``): header rows, key columns, sheet ids and grid sizes of every
   worksheet of the flush (see :mod:`connector.sheets.snapshot` for the ranges and why the key column's
   place is a verified guess). Key -> row is rebuilt from this read every time, so rows a person sorted,
   moved or inserted since the last flush still get their own updates.
2. **Plan** (pure, :mod:`connector.sheets.plan`): structural sub-requests (addSheet, appendDimension,
   header cells, appendCells when the end of the data is not known) and blocks of values.
3. **Write**: the values in one ``values:batchUpdate`` (RAW), after one ``spreadsheets:batchUpdate`` of
   the structural sub-requests when there are any; all in that one batchUpdate when it fits; more bodies
   only when one would pass ``max_request_bytes``. The API applies each request whole or not at all.

The three steps run inside the single tenacity policy (:mod:`connector.sheets.retry`): a transient failure
anywhere, including a write whose answer was lost, starts the cycle again from the read, so a write that
was in fact applied is seen as applied and its new rows are updated, not appended a second time.

Worksheets that must not be written now are held back and reported (``FlushReport.blocked``) while the
other worksheets are written (:mod:`connector.sheets.blocking`): a worksheet whose key header is missing
from row 1 while it has data rows, and one where the plan would edit a range protected against this
account (Google says so per range in ``requestingUserCanEdit``, read with the header rows). Should Google
refuse a write as protected anyway, each worksheet is written on its own and those refused are held back.
A flush that would take the spreadsheet past Google's 10,000,000-cell limit is refused before writing.

Worksheet titles are matched as Google matches them, without regard to case: a tab a person renamed from
"Customers" to "customers" is still the one written.

Extra requests happen only off the steady path, and each is logged: on the first flush after start-up
when a worksheet must be created or has vanished (the read naming it is refused with 400, then the list
of worksheets is fetched); when a person moved the key column since the last flush (its new column is read
once more); and when a write is refused with 400 (the writer forgets what it remembered and runs the cycle
once more from a fresh look, since a person may have deleted columns or a worksheet meanwhile).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import msgspec
import requests
from google.auth.exceptions import RefreshError, TransportError
from gspread.exceptions import APIError
from gspread.urls import SPREADSHEET_BATCH_UPDATE_URL, SPREADSHEET_URL, SPREADSHEET_VALUES_BATCH_UPDATE_URL

from connector import metrics
from connector.sheets.blocking import (
    MAX_SPREADSHEET_CELLS,
    BlockedWorksheet,
    cell_growth,
    is_cell_limit_error,
    is_protection_error,
    missing_key_header,
    protected_reason,
)
from connector.sheets.client import SheetsConnection, connect_all
from connector.sheets.config import RateLimitSettings, SheetsSettings
from connector.sheets.errors import PermanentSheetsError, TransientSheetsError
from connector.sheets.plan import (
    WorksheetBatch,
    WorksheetPlan,
    WriteBody,
    encode_writes,
    new_sheet_id,
    plan_worksheet,
)
from connector.sheets.pool import CredentialPool, PoolMember
from connector.sheets.ratelimit import BudgetState, RateLimiter, RequestKind
from connector.sheets.retry import classify_failure, retry_policy
from connector.sheets.snapshot import (
    GRID_FIELDS,
    METADATA_FIELDS,
    SheetProperties,
    SheetSnapshot,
    Tail,
    parse_sheet_list,
    parse_snapshots,
    read_ranges,
    title_key,
)

__all__ = ["BlockedWorksheet", "FlushReport", "SheetWriter", "WorksheetReport"]

log = logging.getLogger("connector.sheets")
_T = TypeVar("_T")


class WorksheetReport(msgspec.Struct, frozen=True):
    """What one flush did to one worksheet."""

    title: str
    created: bool
    rows_updated: int
    rows_appended: int
    duplicate_keys: tuple[str, ...]
    headers_added: tuple[str, ...]
    headers_readded: tuple[str, ...]


class FlushReport(msgspec.Struct, frozen=True):
    """What one flush did to one spreadsheet, and the requests it took (failed attempts included)."""

    spreadsheet_id: str
    worksheets: tuple[WorksheetReport, ...]
    read_requests: int
    write_requests: int
    attempts: int
    rate_limit_wait: float
    # Worksheets not written by this flush, with why (their rows must wait); the others were written.
    blocked: tuple[BlockedWorksheet, ...] = ()

    @property
    def requests(self) -> int:
        """All Sheets API requests sent for this flush."""
        return self.read_requests + self.write_requests

    @property
    def rows_updated(self) -> int:
        """Existing rows that received values."""
        return sum(w.rows_updated for w in self.worksheets)

    @property
    def rows_appended(self) -> int:
        """New rows."""
        return sum(w.rows_appended for w in self.worksheets)

    def describe(self) -> str:
        """What changed, for people: ``Customers 12 updated, 3 added; Orders 2 updated``."""
        parts = []
        for sheet in self.worksheets:
            changes = [
                f"{n} {what}"
                for n, what in ((sheet.rows_updated, "updated"), (sheet.rows_appended, "added"))
                if n
            ]
            if changes:
                parts.append(f"{sheet.title} {', '.join(changes)}")
        return "; ".join(parts) or "nothing changed"

    @property
    def duplicate_keys(self) -> tuple[tuple[str, str], ...]:
        """``(worksheet, key)`` of every key found in more than one row; only its first row is written."""
        return tuple((w.title, key) for w in self.worksheets for key in w.duplicate_keys)


class _Remembered(msgspec.Struct, frozen=True):
    """What the last successful flush left in a worksheet: its title there, header row, key column, grid
    size (rows: at least) and the first row under its rows."""

    header: tuple[str, ...]
    key_column: int
    sheet_title: str
    row_count: int
    column_count: int
    tail_start: int

    def tail(self, header_row: int, row_count: int | None = None) -> Tail | None:
        """The tail the next read asks for: none when it would start at the key column's first row (no
        rows of ours yet) or past the grid (``row_count``: the grid's rows when known, else as left)."""
        rows = self.row_count if row_count is None else row_count
        if header_row < self.tail_start < rows:
            return Tail(self.tail_start, self.column_count)
        return None


class _Outcome(msgspec.Struct, frozen=True):
    """What one cycle wrote, and what it held back."""

    plans: list[WorksheetPlan]
    blocked: dict[str, str]


class _Stats:
    """Mutable request counts of one flush, and the credential it is sent with."""

    def __init__(self, member: PoolMember, before_write: Callable[[], None] | None = None) -> None:
        self.http = member.connection.client.http_client
        self.limiter = member.limiter
        self.before_write = before_write
        self.reads = 0
        self.writes = 0
        self.attempts = 0
        self.waited = 0.0
        self.refreshed = False


class SheetWriter:
    """Upserts rows by key into the worksheets of spreadsheets; safe to share between threads.

    Flushes of one spreadsheet are serialised; flushes of different spreadsheets may run in parallel.
    Each spreadsheet is written with one credential of the pool (``connector.sheets.pool``; a single
    connection is a pool of one), within that credential's request budget (``limiter``: a single
    connection's; by default the process-wide one of its credential).
    ``sleep`` is what retries wait with (tests pass a recorder so nothing really sleeps).
    """

    def __init__(
        self,
        connection: SheetsConnection | CredentialPool,
        settings: SheetsSettings,
        *,
        limiter: RateLimiter | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if isinstance(connection, SheetsConnection):
            budget = None if limiter is None else (lambda _: limiter)
            connection = CredentialPool.of([connection], settings.rate_limit, budget)
        self.pool = connection
        self._settings = settings
        self._sleep = sleep
        self._remembered: dict[str, dict[str, _Remembered]] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        # Told of every request sent: (kind, status, spreadsheet id); the worker records them for the console.
        self.on_request: Callable[[str, str, str], None] | None = None

    @classmethod
    def from_settings(
        cls, settings: SheetsSettings, *, source: str = "", environ: Mapping[str, str] | None = None
    ) -> SheetWriter:
        """Connect with these settings, every credential of the pool (ConfigError if one cannot work),
        and build a writer."""
        connections = connect_all(settings, source=source, environ=environ)
        return cls(CredentialPool.of(connections, settings.rate_limit), settings)

    def set_rate_limit(self, settings: RateLimitSettings) -> None:
        """Use a new request budget from now on, for each credential (shared with the writers of the
        same credential)."""
        for member in self.pool.members:
            member.limiter.reconfigure(settings)

    def ready_in(self, spreadsheet_id: str | None = None, pin: str | None = None) -> float:
        """Seconds until a flush (a read, then a write) of this spreadsheet (written with the credential
        ``pin`` names, else the pool's choice) could go without waiting for the request budget (0.0:
        now); without a spreadsheet, of any spreadsheet (the soonest of the credentials). After a 429
        that is the rest of the quota window."""
        if spreadsheet_id is None:
            return min(member.limiter.flush_ready_in() for member in self.pool.members)
        try:
            member = self.pool.member_for(spreadsheet_id, pin)
        except PermanentSheetsError:
            return 0.0  # a pin naming no credential: the flush itself fails at once and says why
        return member.limiter.flush_ready_in()

    def credential_of(self, spreadsheet_id: str, pin: str | None = None) -> str:
        """The client_email of the credential that writes this spreadsheet ("" for a pin naming none:
        its flush fails at once and says why)."""
        try:
            return self.pool.member_for(spreadsheet_id, pin).email
        except PermanentSheetsError:
            return ""

    def budget(self) -> list[BudgetState]:
        """The request budgets of every credential as they stand (cut by 429s), each naming its own."""
        return [
            msgspec.structs.replace(state, credential=member.email)
            for member in self.pool.members
            for state in member.limiter.state()
        ]

    def forget(self, spreadsheet_id: str) -> None:
        """Drop what the writer remembers of a spreadsheet; the next flush starts from a fresh look."""
        with self._guard:
            self._remembered.pop(spreadsheet_id, None)

    def flush(
        self,
        spreadsheet_id: str,
        batches: Sequence[WorksheetBatch],
        *,
        before_write: Callable[[], None] | None = None,
        pin: str | None = None,
    ) -> FlushReport:
        """Apply every batch to its worksheet in one read and one write; retried as a whole on failure.

        ``before_write`` is called right before each write request; whatever it raises stops the flush
        there (the worker checks that it still holds the spreadsheet's lock). ``pin``: the credential
        the mapping pins for the spreadsheet (None: the pool's choice).
        Raises PermanentSheetsError at once on 400/403/404, TransientSheetsError when retries run out.
        """
        titles = [batch.title for batch in batches]
        if len({title_key(title) for title in titles}) != len(titles):
            raise ValueError(f"a flush names a worksheet twice (titles are compared without case): {titles}")
        stats = _Stats(self.pool.member_for(spreadsheet_id, pin), before_write)
        if not batches:
            return self._report(spreadsheet_id, _Outcome([], {}), stats)
        with self._lock_for(spreadsheet_id):
            for attempt in retry_policy(self._settings.retry, self._sleep):
                with attempt:
                    outcome = self._attempt(spreadsheet_id, batches, stats)
        return self._report(spreadsheet_id, outcome, stats)

    def _lock_for(self, spreadsheet_id: str) -> threading.Lock:
        """The lock serialising flushes of one spreadsheet."""
        with self._guard:
            return self._locks.setdefault(spreadsheet_id, threading.Lock())

    def _attempt(self, spreadsheet_id: str, batches: Sequence[WorksheetBatch], stats: _Stats) -> _Outcome:
        """One read-plan-write cycle, run once more from a fresh look if the API calls it a bad request."""
        stats.attempts += 1
        stats.refreshed = False
        try:
            return self._cycle(spreadsheet_id, batches, stats, refresh=False)
        except PermanentSheetsError as exc:
            if exc.status != 400 or stats.refreshed:
                raise
            log.warning("spreadsheet %s: %s; looking at it afresh and trying once more", spreadsheet_id, exc)
            self.forget(spreadsheet_id)
            return self._cycle(spreadsheet_id, batches, stats, refresh=True)

    def _cycle(
        self, spreadsheet_id: str, batches: Sequence[WorksheetBatch], stats: _Stats, *, refresh: bool
    ) -> _Outcome:
        """Read header rows and key columns, plan, write; remember the result for the next flush."""
        with self._guard:
            remembered = dict(self._remembered.get(spreadsheet_id, {}))
        taken_ids: set[int] = set()
        # The title to name each worksheet by in ranges: as the sheet spells it, once known.
        names = {title: memory.sheet_title for title, memory in remembered.items()}
        existing: Mapping[str, SheetProperties] | None = None
        if refresh:
            stats.refreshed = True
            existing = self._fetch_properties(spreadsheet_id, stats)
            taken_ids = {p.sheet_id for p in existing.values()}
            found = {b.title: existing[title_key(b.title)] for b in batches if title_key(b.title) in existing}
            names = {title: properties.title for title, properties in found.items()}
            asked = {
                b.title: _guess_key_column(b, remembered.get(b.title), found[b.title])
                for b in batches
                if b.title in found
            }
            tails = _tails(batches, remembered, found)
            snapshots = self._read(spreadsheet_id, asked, names, batches, stats, tails) if asked else {}
        else:
            asked = {b.title: _guess_key_column(b, remembered.get(b.title), None) for b in batches}
            tails = _tails(batches, remembered, None)
            try:
                snapshots = self._read(spreadsheet_id, asked, names, batches, stats, tails)
            except PermanentSheetsError as exc:
                if exc.status != 400:
                    raise
                # A range named a worksheet that does not exist (not created yet, or deleted by a person):
                # the normal first write into a new spreadsheet, so not worth more than a debug line; the
                # worksheets created next are logged at INFO.
                log.debug(
                    "spreadsheet %s: not every worksheet of %s exists yet (%s)",
                    spreadsheet_id,
                    list(asked),
                    exc,
                )
                return self._cycle(spreadsheet_id, batches, stats, refresh=True)
            if len(snapshots) != len(asked):
                return self._cycle(spreadsheet_id, batches, stats, refresh=True)
        snapshots = self._read_moved_key_columns(spreadsheet_id, batches, snapshots, stats)

        plans, blocked = self._plan(batches, snapshots, remembered, set(taken_ids), spare=True)
        past, existing = self._past_cell_limit(spreadsheet_id, plans, snapshots, existing, stats)
        if past is not None:
            # Without the spare rows the flush may still fit under the limit: only then is it refused.
            plans, blocked = self._plan(batches, snapshots, remembered, set(taken_ids), spare=False)
            past, _ = self._past_cell_limit(spreadsheet_id, plans, snapshots, existing, stats)
            if past is not None:
                raise PermanentSheetsError(spreadsheet_id, _cell_limit_message(past))
        written = self._write_plans(spreadsheet_id, plans, blocked, stats)
        with self._guard:
            self._remembered[spreadsheet_id] = {
                **self._remembered.get(spreadsheet_id, {}),
                **{
                    p.title: _Remembered(
                        p.layout.header,
                        p.key_column,
                        p.sheet_title,
                        p.row_count,
                        p.column_count,
                        p.tail_start,
                    )
                    for p in written
                },
            }
        return _Outcome(written, blocked)

    def _plan(
        self,
        batches: Sequence[WorksheetBatch],
        snapshots: Mapping[str, SheetSnapshot],
        remembered: Mapping[str, _Remembered],
        taken_ids: set[int],
        *,
        spare: bool,
    ) -> tuple[list[WorksheetPlan], dict[str, str]]:
        """The plans of the worksheets that can be written now, and why the others cannot."""
        plans: list[WorksheetPlan] = []
        blocked: dict[str, str] = {}
        for batch in batches:
            sheet_id = new_sheet_id(batch.title, taken_ids)
            taken_ids.add(sheet_id)
            previous = remembered.get(batch.title)
            snapshot = snapshots.get(batch.title)
            reason = missing_key_header(batch, snapshot, previous.header if previous else ())
            if reason is None:
                plan = plan_worksheet(
                    batch,
                    snapshot,
                    new_sheet_id=sheet_id,
                    previous_header=previous.header if previous else (),
                    max_request_bytes=self._settings.max_request_bytes,
                    spare=spare,
                )
                reason = protected_reason(plan, snapshot)
            if reason is None:
                plans.append(plan)
            else:
                blocked[batch.title] = reason
        return plans, blocked

    def _past_cell_limit(
        self,
        spreadsheet_id: str,
        plans: Sequence[WorksheetPlan],
        snapshots: Mapping[str, SheetSnapshot],
        existing: Mapping[str, SheetProperties] | None,
        stats: _Stats,
    ) -> tuple[str | None, Mapping[str, SheetProperties] | None]:
        """Whether the plans would grow the spreadsheet past Google's cell limit (what they would do, or
        None), checked before writing; and the worksheets as listed, when they were.

        ``existing`` is every worksheet when this cycle fetched the list. Otherwise the read showed only
        the flush's own worksheets; when they and the growth reach half the limit, the grid sizes of every
        worksheet are fetched to count exactly.
        """
        growth = sum(cell_growth(plan, snapshots.get(plan.title)) for plan in plans)
        if growth == 0:
            return None, existing
        if existing is None:
            known = sum(snapshot.properties.cells for snapshot in snapshots.values())
            if known + growth <= MAX_SPREADSHEET_CELLS // 2:
                return None, existing
            existing = self._fetch_properties(spreadsheet_id, stats)
        total = sum(p.cells for p in existing.values())
        if total + growth <= MAX_SPREADSHEET_CELLS:
            return None, existing
        what = (
            f"writing would take the spreadsheet from {total:,} to {total + growth:,} cells, past "
            f"Google's limit of {MAX_SPREADSHEET_CELLS:,} cells per spreadsheet"
        )
        return what, existing

    def _write_plans(
        self, spreadsheet_id: str, plans: list[WorksheetPlan], blocked: dict[str, str], stats: _Stats
    ) -> list[WorksheetPlan]:
        """Write the plans in as few batchUpdates as fit; the plans that were written.

        Should Google refuse the first batchUpdate (so nothing of it was applied) as editing a protected
        range, each worksheet is written on its own and the refused ones are added to ``blocked``.
        """
        try:
            self._write_bodies(spreadsheet_id, plans, stats)
        except _RefusedFirst as refused:
            if not is_protection_error(refused.error.cause):
                raise refused.error from None
            log.warning(
                "spreadsheet %s: %s; writing each worksheet on its own", spreadsheet_id, refused.error
            )
        else:
            return plans
        written: list[WorksheetPlan] = []
        for plan in plans:
            try:
                self._write_bodies(spreadsheet_id, [plan], stats)
            except _RefusedFirst as refused:
                if not is_protection_error(refused.error.cause):
                    raise refused.error from None
                blocked[plan.title] = (
                    f"worksheet {plan.title!r}: Google refused the write: {refused.error.cause} (the service "
                    "account is not an editor of a protected range there): its rows wait until the owner "
                    "adds the account as an editor or removes the protection"
                )
                continue
            written.append(plan)
        return written

    def _write_bodies(self, spreadsheet_id: str, plans: Sequence[WorksheetPlan], stats: _Stats) -> None:
        """Send the plans' writes in bodies of at most max_request_bytes, in order.

        A permanent refusal of the first body is raised as _RefusedFirst (nothing was applied); of a later
        one, as itself (earlier bodies were applied, so the cycle must start again from a fresh read).
        """
        for index, body in enumerate(encode_writes(plans, self._settings.max_request_bytes)):
            try:
                self._write(spreadsheet_id, body, stats)
            except PermanentSheetsError as exc:
                if is_cell_limit_error(exc.cause):
                    what = f"Google refused the write: {exc.cause}"
                    raise PermanentSheetsError(spreadsheet_id, _cell_limit_message(what), exc.status) from exc
                if index == 0:
                    raise _RefusedFirst(exc) from exc
                raise

    def _read_moved_key_columns(
        self,
        spreadsheet_id: str,
        batches: Sequence[WorksheetBatch],
        snapshots: dict[str, SheetSnapshot],
        stats: _Stats,
    ) -> dict[str, SheetSnapshot]:
        """Read again the key columns that are not where they were guessed to be (a person moved them)."""
        moved: dict[str, int | None] = {}
        for batch in batches:
            snapshot = snapshots.get(batch.title)
            column = _key_position(batch, snapshot) if snapshot is not None else None
            if snapshot is None or column is None or column == snapshot.key_column:
                continue
            if snapshot.properties.row_count <= batch.header_row:
                # A grid that ends at the header has no key cells to read (a range below it is refused).
                snapshots = {**snapshots, batch.title: msgspec.structs.replace(snapshot, key_column=column)}
                continue
            moved[batch.title] = column
        if not moved:
            return snapshots
        log.info("spreadsheet %s: key columns moved %s; reading them there", spreadsheet_id, moved)
        names = {title: snapshots[title].properties.title for title in moved}
        again = self._read(spreadsheet_id, moved, names, batches, stats, {})
        for batch in batches:
            snapshot = again.get(batch.title)
            if snapshot is not None and _key_position(batch, snapshot) != snapshot.key_column:
                raise TransientSheetsError(
                    spreadsheet_id, f"the key column of {batch.title!r} moved while read"
                )
        # The first read's tail stands: it covered every column.
        kept = {
            title: msgspec.structs.replace(
                snapshot, tail_start=snapshots[title].tail_start, tail_last=snapshots[title].tail_last
            )
            for title, snapshot in again.items()
        }
        return {**snapshots, **kept}

    def _fetch_properties(self, spreadsheet_id: str, stats: _Stats) -> dict[str, SheetProperties]:
        """The worksheets the spreadsheet has now: title -> id and grid size."""
        params: dict[str, Any] = {"fields": METADATA_FIELDS}
        return self._get(spreadsheet_id, params, stats, parse_sheet_list)

    def _read(
        self,
        spreadsheet_id: str,
        asked: Mapping[str, int | None],
        names: Mapping[str, str],
        batches: Sequence[WorksheetBatch],
        stats: _Stats,
        tails: Mapping[str, Tail],
    ) -> dict[str, SheetSnapshot]:
        """One spreadsheets.get of the header rows and key columns of ``asked`` (title -> key column), and
        of the ``tails`` asked for.

        ``names`` gives the title a worksheet has in the sheet where it differs from ours (in case only);
        ``batches`` the row each worksheet's headers are in.
        """
        header_rows = {batch.title: batch.header_row for batch in batches}
        ranges = [
            a1
            for title, column in asked.items()
            for a1 in read_ranges(
                names.get(title, title), column, header_rows.get(title, 1), tails.get(title)
            )
        ]
        params: dict[str, Any] = {"ranges": ranges, "fields": GRID_FIELDS, "includeGridData": "true"}
        return self._get(
            spreadsheet_id, params, stats, lambda body: parse_snapshots(body, asked, header_rows, tails)
        )

    def _get(
        self, spreadsheet_id: str, params: dict[str, Any], stats: _Stats, parse: Callable[[bytes], _T]
    ) -> _T:
        """One ``spreadsheets.get`` through gspread's HTTP client, its answer decoded by ``parse``.

        gspread's ``spreadsheets_get`` would decode the answer with the standard json module; taking the
        bytes and decoding them into typed structs is several times faster for a long key column.
        """

        def call() -> _T:
            response = stats.http.request("get", SPREADSHEET_URL % spreadsheet_id, params=params)
            return parse(response.content)

        return self._send(spreadsheet_id, "read", stats, call)

    def _write(self, spreadsheet_id: str, body: WriteBody, stats: _Stats) -> None:
        """One spreadsheets:batchUpdate or values:batchUpdate through gspread's HTTP client; the API
        applies all of it or none."""
        headers = {"Content-Type": "application/json"}
        url = (
            SPREADSHEET_VALUES_BATCH_UPDATE_URL if body.values else SPREADSHEET_BATCH_UPDATE_URL
        ) % spreadsheet_id
        self._send(
            spreadsheet_id,
            "write",
            stats,
            lambda: stats.http.request("post", url, data=body.payload, headers=headers),
        )

    def _send(self, spreadsheet_id: str, kind: RequestKind, stats: _Stats, call: Callable[[], _T]) -> _T:
        """Send one request within the rate budget, mapping failures onto typed errors."""
        waited = stats.limiter.acquire(kind)
        stats.waited += waited
        if waited:
            metrics.RATE_LIMIT_WAIT_SECONDS.labels(kind).inc(waited)
        if kind == "write" and stats.before_write is not None:
            stats.before_write()  # after any wait for the budget, as close to the request as can be
        if kind == "read":
            stats.reads += 1
        else:
            stats.writes += 1
        try:
            result = call()
        except (
            APIError,
            requests.RequestException,
            msgspec.DecodeError,
            RefreshError,
            TransportError,
        ) as exc:
            error = classify_failure(spreadsheet_id, exc)
            self._count(kind, str(error.status or type(exc).__name__), spreadsheet_id)
            if error.status == 429:
                retry_after = error.retry_after if isinstance(error, TransientSheetsError) else None
                stats.limiter.throttled(kind, retry_after)
            raise error from exc
        stats.limiter.accepted(kind)
        self._count(kind, "200", spreadsheet_id)
        return result

    def _count(self, kind: RequestKind, status: str, spreadsheet_id: str) -> None:
        metrics.SHEETS_REQUESTS.labels(kind, status).inc()
        if self.on_request is not None:
            self.on_request(kind, status, spreadsheet_id)

    def _report(self, spreadsheet_id: str, outcome: _Outcome, stats: _Stats) -> FlushReport:
        """Log what changed and build the report."""
        worksheets: list[WorksheetReport] = []
        for title, reason in outcome.blocked.items():
            log.warning("spreadsheet %s: %r not written: %s", spreadsheet_id, title, reason)
        for plan in outcome.plans:
            if plan.created:
                log.info("spreadsheet %s: created worksheet %r", spreadsheet_id, plan.title)
            elif plan.layout.added:
                log.info(
                    "spreadsheet %s: %r: added headers %s", spreadsheet_id, plan.title, plan.layout.added
                )
            if plan.layout.readded:
                log.warning(
                    "spreadsheet %s: %r: headers %s were renamed or deleted in the sheet; added them again "
                    "after the last column",
                    spreadsheet_id,
                    plan.title,
                    plan.layout.readded,
                )
            if plan.duplicate_keys:
                log.warning(
                    "spreadsheet %s: %r: %d keys are in more than one row (only the first is updated): %s",
                    spreadsheet_id,
                    plan.title,
                    len(plan.duplicate_keys),
                    ", ".join(plan.duplicate_keys[:10]),
                )
            worksheets.append(
                WorksheetReport(
                    title=plan.title,
                    created=plan.created,
                    rows_updated=plan.updated,
                    rows_appended=plan.appended,
                    duplicate_keys=plan.duplicate_keys,
                    headers_added=() if plan.created else plan.layout.added,
                    headers_readded=plan.layout.readded,
                )
            )
        return FlushReport(
            spreadsheet_id=spreadsheet_id,
            worksheets=tuple(worksheets),
            read_requests=stats.reads,
            write_requests=stats.writes,
            attempts=stats.attempts,
            rate_limit_wait=stats.waited,
            blocked=tuple(BlockedWorksheet(title, reason) for title, reason in outcome.blocked.items()),
        )


class _RefusedFirst(Exception):
    """The first batchUpdate of a write was refused for good: nothing of the write was applied."""

    def __init__(self, error: PermanentSheetsError) -> None:
        super().__init__(str(error))
        self.error = error


def _cell_limit_message(what: str) -> str:
    """``what`` happened with Google's limit of cells per spreadsheet, and what a person can do."""
    return (
        f"{what}; delete empty rows or columns or unused tabs (every cell of every tab's grid counts), or "
        "map the company to another spreadsheet, then retry the failed events"
    )


def _tails(
    batches: Sequence[WorksheetBatch],
    remembered: Mapping[str, _Remembered],
    found: Mapping[str, SheetProperties] | None,
) -> dict[str, Tail]:
    """The tails to read (see :meth:`_Remembered.tail`); ``found``: the worksheets as just listed, when
    they were."""
    tails: dict[str, Tail] = {}
    for batch in batches:
        memory = remembered.get(batch.title)
        if memory is None or (found is not None and batch.title not in found):
            continue
        rows = found[batch.title].row_count if found is not None else None
        tail = memory.tail(batch.header_row, rows)
        if tail is not None:
            tails[batch.title] = tail
    return tails


def _key_position(batch: WorksheetBatch, snapshot: SheetSnapshot) -> int | None:
    """Where the sheet's header row has the key header now (None when it is not there)."""
    return snapshot.header.index(batch.key_header) if batch.key_header in snapshot.header else None


def _guess_key_column(
    batch: WorksheetBatch, remembered: _Remembered | None, properties: SheetProperties | None
) -> int | None:
    """The column to read keys from before the header is seen: last flush's, else its place in our headers."""
    column = remembered.key_column if remembered is not None else list(batch.headers).index(batch.key_header)
    if properties is not None and (
        column >= properties.column_count or properties.row_count <= batch.header_row
    ):
        return None
    return column
