"""The worker: from stored events to rows in the spreadsheets, acknowledged only once written.

One pass (:meth:`Worker.run_once`) looks at the pending events per company, sets aside those of companies
without a mapping (``unrouted``), and flushes each spreadsheet whose events are due (enough of them, or the
oldest has waited ``max_delay_ms``) while the Sheets request budget lets a flush start. A flush of one
spreadsheet is one critical section (the flush protocol of DESIGN.md):

1. take the spreadsheet's lock, with a fencing token (:meth:`Locks.take_lock`); a heartbeat renews it and
   the claims while the flush runs (:class:`~connector.sync.hold.Hold`);
2. claim the pending events of the spreadsheet's companies: as many as are waiting, up to about
   ``sheets.max_request_bytes`` of bodies (one write request) and ``worker.max_batch_events``;
3. load the touched customer and order states, fold the events into them, project the states (and, for an
   event log, the events) onto rows with the column mapping, and flush them with the sheet writer in one
   read and one write, checking before the write that the lock is still held;
4. in one transaction that is refused if the token is no longer the newest, save the states and mark the
   events ``done`` (:meth:`FlushLog.commit_flush`); release the lock.

A permanent Sheets error parks the events as ``failed`` with the error; a transient one gives them back to
be retried after a back-off, while other spreadsheets go on. Events with rows in a worksheet the writer
held back (its key header missing, a protected range: ``FlushReport.blocked``) are given back with the
reason and a back-off, and come back by themselves; the spreadsheet's other events are done. A flush that lost its lock gives its events
back: the lock's new holder folds them into the newest state and writes their rows again. Folding is
idempotent and order-free (per-field last-writer-wins), so an event processed twice leaves the same rows.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from connector import metrics
from connector.budget_file import save_budget
from connector.errors import StaleFence
from connector.events import EventDecodeError, UnknownEvent, decode_stored
from connector.journal import Journal
from connector.mapping_watch import MappingWatcher
from connector.settings import Settings, WorkerSettings
from connector.sheets.errors import PermanentSheetsError, SheetsError
from connector.sheets.plan import WorksheetBatch
from connector.sheets.writer import SheetWriter
from connector.store import open_work_store
from connector.store.owners import is_gone, owner_id
from connector.store.pg_budget import writer_for
from connector.store.protocols import WorkStore
from connector.store.records import CSV_IMPORT_ENDPOINT, StoredEvent, now_ms
from connector.sync.blocked import held_events, held_message
from connector.sync.hold import Hold, LockLost
from connector.sync.mapping import CompanyMapping, load_mapping, rows_for
from connector.sync.routing import Router
from connector.sync.state import EntityKey, EntityState, Envelope, entity_key, fold_batch

__all__ = [
    "PassReport",
    "Worker",
    "WorkerThread",
    "envelope_of",
    "take_over_gone_owners",
    "tune_interpreter_for_flushes",
    "worksheet_batches",
]

log = logging.getLogger(__name__)

# Objects the interpreter may allocate, beyond those it frees, between two collections of its youngest
# generation, in a process that runs a worker (see tune_interpreter_for_flushes).
FLUSH_GC_THRESHOLD: Final = 100_000


@dataclass
class PassReport:
    """What one pass did."""

    claimed: int = 0
    done: int = 0
    failed: int = 0
    unrouted: int = 0
    released: int = 0
    flushes: int = 0
    sheets_requests: int = 0
    latencies_ms: list[int] = field(default_factory=list)  # receive -> written, per event done


def envelope_of(stored: StoredEvent) -> Envelope | str:
    """The fold input for a stored event, or why it has none (its body no longer decodes, or its type is
    one this version does not know)."""
    try:
        event = decode_stored(stored.body)
    except EventDecodeError as exc:
        return f"stored body does not decode: {exc}"
    if isinstance(event, UnknownEvent):
        return f"unknown event type {event.event_type!r}"
    return Envelope(event=event, received_ms=stored.received_ms, dedup_key=stored.dedup_key)


def take_over_gone_owners(store: WorkStore) -> list[str]:
    """End the leases and lock holds of owners whose process is provably gone (on this host); which."""
    gone = sorted(owner for owner in store.lease_owners() if is_gone(owner))
    for owner in gone:
        store.expire_owner(owner)
        log.info("took over the leases and locks of %s (its process is gone)", owner)
    return gone


class Worker:
    """Flushes pending events to their spreadsheets; one instance per thread."""

    def __init__(
        self,
        store: WorkStore,
        writer: SheetWriter,
        router: Router,
        settings: WorkerSettings,
        *,
        max_request_bytes: int = 2_000_000,
        owner: str | None = None,
        clock: Callable[[], int] = now_ms,
        journal: Journal | None = None,
        watcher: MappingWatcher | None = None,
    ) -> None:
        self.store = store
        self.writer = writer
        self.router = router
        self.settings = settings
        self.max_request_bytes = max_request_bytes
        self.owner = owner or owner_id("worker")
        self._clock = clock
        self.journal = journal  # where flushes are recorded for the console
        self.watcher = watcher  # follows the mapping file; None: the router never changes
        self._failures: dict[str, int] = defaultdict(int)  # consecutive transient failures by spreadsheet

    def due(
        self, report: PassReport | None = None, router: Router | None = None
    ) -> list[tuple[str, list[int]]]:
        """The spreadsheets to flush now, oldest waiting first, each with its companies; events of
        companies without a mapping are set aside as ``unrouted`` on the way (counted in ``report``).

        A spreadsheet is due when ``batch_size`` events wait, or the oldest has waited ``max_delay_ms``.
        """
        router = router or self.router
        now = self._clock()
        work, unmapped = router.split(self.store.pending_work(now), lambda p: p.company_id)
        unrouted = [pending.company_id for pending in unmapped]
        if unrouted:
            parked = self.store.park_unrouted(unrouted, now)
            if report is not None:
                report.unrouted += parked
            log.info("%d events of unmapped companies %s set aside as unrouted", parked, unrouted)
            # A settings reload may have mapped one of these companies meanwhile: theirs go back.
            for company_id in unrouted:
                if self.router.route(company_id) is not None:
                    self.store.requeue("unrouted", company_id)
        due = []
        for spreadsheet_id, companies in work.items():
            events = sum(p.pending for p in companies)
            oldest = min(p.oldest_received_ms for p in companies)
            if events >= self.settings.batch_size or now - oldest >= self.settings.max_delay_ms:
                due.append((oldest, spreadsheet_id, sorted(p.company_id for p in companies)))
        return [(spreadsheet_id, companies) for _, spreadsheet_id, companies in sorted(due)]

    def run(self, stop: threading.Event, on_pass: Callable[[PassReport], None] | None = None) -> None:
        """Work until ``stop`` is set; the flush in flight is finished first."""
        poll = self.settings.poll_ms / 1000
        while not stop.is_set():
            try:
                self.follow_mapping()
                report = self.run_once(stop)
            except Exception:
                # A bug or a broken store must not kill the worker silently: log it, wait, go on.
                log.exception("worker pass failed; trying again shortly")
                stop.wait(max(poll, 1.0))
                continue
            if on_pass is not None and report.claimed + report.unrouted:
                on_pass(report)
            if not report.flushes:
                self.store.wait_for_work(stop, poll)

    def follow_mapping(self) -> None:
        """Route with the mapping file's current content, and queue again the events of a newly mapped
        company (see connector.mapping_watch)."""
        mapping = self.watcher.check() if self.watcher is not None else None
        if mapping is not None:
            self.router = Router.from_mapping(mapping)
            requeue_mapped(self.store, self.router)

    def run_once(self, stop: threading.Event | None = None) -> PassReport:
        """Flush every due spreadsheet whose lock is free, while the request budget of the credential
        that writes it lets a flush start (with a pool of credentials, a spreadsheet whose credential
        has spent its budget waits while those of the others go on).

        Waiting for the budget before claiming, rather than inside the flush, lets every event that
        arrives meanwhile join the flush instead of waiting for the next one.
        """
        report = PassReport()
        if self.writer.ready_in() > 0:
            return report  # no credential has budget for a flush now
        router = self.router  # one mapping for the whole pass, even if a reload replaces it meanwhile
        due = self.due(report, router)
        spent: set[str] = set()  # credentials found out of budget in this pass: not asked again
        for spreadsheet_id, companies in due:
            if stop is not None and stop.is_set():
                break
            pin = router.pin(spreadsheet_id)
            credential = self.writer.credential_of(spreadsheet_id, pin)
            if credential in spent:
                continue
            if self.writer.ready_in(spreadsheet_id, pin) > 0:
                spent.add(credential)
                continue
            fence = self.store.take_lock(spreadsheet_id, self.owner, self.settings.lease_ms)
            if fence is None:
                continue  # another worker is flushing it; it takes these events too, or the next pass does
            with Hold(self.store, fence, self.settings.lease_ms) as hold:
                claimed = self.store.claim(
                    self.owner,
                    companies,
                    self.settings.lease_ms,
                    max_events=self.settings.max_batch_events,
                    max_bytes=self.max_request_bytes,
                )
                report.claimed += len(claimed)
                self._flush(hold, self._fold_inputs(claimed, report), report, router)
        return report

    def process(self, claimed: Sequence[StoredEvent]) -> PassReport:
        """Settle events claimed by this worker's owner (a backfill's pass): per spreadsheet, under its
        lock, as a flush does; a spreadsheet whose lock is held elsewhere gets its events back."""
        report = PassReport(claimed=len(claimed))
        router = self.router
        by_spreadsheet, unrouted = router.split(claimed, lambda e: e.company_id)
        if unrouted:
            report.unrouted += self.store.finish(self.owner, [e.id for e in unrouted], "unrouted")
        for spreadsheet_id, events in by_spreadsheet.items():
            fence = self.store.take_lock(spreadsheet_id, self.owner, self.settings.lease_ms)
            if fence is None:
                self.store.release(self.owner, [e.id for e in events], self._clock() + self.settings.poll_ms)
                report.released += len(events)
                continue
            with Hold(self.store, fence, self.settings.lease_ms) as hold:
                self._flush(hold, self._fold_inputs(events, report), report, router)
        return report

    def _fold_inputs(
        self, claimed: Sequence[StoredEvent], report: PassReport
    ) -> list[tuple[StoredEvent, Envelope]]:
        """The fold inputs of claimed events; an event that cannot be folded is parked with the reason."""
        items = []
        for stored in claimed:
            envelope = envelope_of(stored)
            if isinstance(envelope, str):
                report.failed += self.store.finish(self.owner, [stored.id], "failed", envelope)
            else:
                items.append((stored, envelope))
        return items

    def _flush(
        self,
        hold: Hold,
        items: list[tuple[StoredEvent, Envelope]],
        report: PassReport,
        router: Router,
    ) -> None:
        """Write what these events change to the fenced spreadsheet, then commit (see the module doc)."""
        if not items:
            return
        fence = hold.fence
        spreadsheet_id = fence.name
        ids = [stored.id for stored, _ in items]
        companies = sorted({stored.company_id for stored, _ in items})
        label = ",".join(str(c) for c in companies)
        started = time.monotonic()
        try:
            envelopes = [envelope for _, envelope in items]
            keys = {entity_key(envelope.event) for envelope in envelopes}
            touched = fold_batch(self.store.load(keys), envelopes)
            mappings = [m for m in (router.route(c) for c in companies) if m is not None]
            logged = [envelope for stored, envelope in items if stored.endpoint != CSV_IMPORT_ENDPOINT]
            batches = worksheet_batches(mappings, touched, logged)
            with metrics.FLUSH_SECONDS.time():
                flushed = self.writer.flush(
                    spreadsheet_id, batches, before_write=hold.check, pin=router.pin(spreadsheet_id)
                )
            held = held_events(mappings, touched, items, logged, flushed.blocked) if flushed.blocked else {}
            hold.check()
            self.store.commit_flush(fence, touched, [i for i in ids if i not in held], label)
        except (LockLost, StaleFence) as exc:
            log.warning("%s; its %d events go back to be written by the lock's holder", exc, len(ids))
            self.store.release(self.owner, ids)
            report.released += len(ids)
            return
        except PermanentSheetsError as exc:
            log.error(
                "spreadsheet %s: %s; parking %d events of company %s", spreadsheet_id, exc, len(ids), label
            )
            report.failed += self.store.finish(self.owner, ids, "failed", str(exc))
            self.store.record_flush(spreadsheet_id, label, error=str(exc))
            self._journal_error(spreadsheet_id, label, len(ids), started, str(exc))
            return
        except SheetsError as exc:
            delay = self._backoff(spreadsheet_id)
            log.warning(
                "spreadsheet %s: %s; retrying its %d events in %d ms", spreadsheet_id, exc, len(ids), delay
            )
            self.store.release(self.owner, ids, retry_at_ms=self._clock() + delay, error=str(exc))
            self.store.record_flush(spreadsheet_id, label, error=str(exc))
            self._journal_error(spreadsheet_id, label, len(ids), started, str(exc))
            report.released += len(ids)
            return
        if held:
            self._hold_back(spreadsheet_id, label, held, held_message(flushed.blocked), report)
        else:
            self._failures.pop(spreadsheet_id, None)
        done_at = self._clock()
        report.done += len(ids) - len(held)
        report.flushes += 1
        report.sheets_requests += flushed.requests
        latencies = [done_at - stored.received_ms for stored, _ in items if stored.id not in held]
        report.latencies_ms.extend(latencies)
        for latency in latencies:
            metrics.WEBHOOK_TO_SHEET_SECONDS.observe(latency / 1000)
        seconds = time.monotonic() - started
        log.info(
            "%s: %s — %.2f s, %d requests", spreadsheet_id, flushed.describe(), seconds, flushed.requests
        )
        if self.journal is not None:
            self.journal.flush(
                spreadsheet_id,
                label,
                len(ids),
                rows_updated=flushed.rows_updated,
                rows_added=flushed.rows_appended,
                requests=flushed.requests,
                seconds=seconds,
                latencies_ms=latencies,
            )

    def _backoff(self, spreadsheet_id: str) -> int:
        """Milliseconds to wait before retrying a spreadsheet: doubled each consecutive time, capped."""
        self._failures[spreadsheet_id] += 1
        return int(
            min(
                self.settings.backoff_ms * 2 ** (self._failures[spreadsheet_id] - 1),
                self.settings.max_backoff_ms,
            )
        )

    def _hold_back(
        self, spreadsheet_id: str, label: str, held: Mapping[int, str], message: str, report: PassReport
    ) -> None:
        """Give back events whose worksheet was held back, each with its reason, after a back-off."""
        delay = self._backoff(spreadsheet_id)
        log.warning("spreadsheet %s: %d events wait %d ms: %s", spreadsheet_id, len(held), delay, message)
        by_reason: dict[str, list[int]] = defaultdict(list)
        for event_id, reason in held.items():
            by_reason[reason].append(event_id)
        for reason, ids in by_reason.items():
            self.store.release(self.owner, ids, retry_at_ms=self._clock() + delay, error=reason)
        self.store.record_flush(spreadsheet_id, label, error=message)
        report.released += len(held)

    def _journal_error(
        self, spreadsheet_id: str, label: str, events: int, started: float, error: str
    ) -> None:
        if self.journal is not None:
            seconds = time.monotonic() - started
            self.journal.flush(spreadsheet_id, label, events, seconds=seconds, error=error)


def requeue_mapped(store: WorkStore, router: Router) -> None:
    """Give the unrouted events of every company the router now maps back to the worker."""
    for company_id in sorted(router.company_ids):
        requeued = store.requeue("unrouted", company_id)
        if requeued:
            log.info("company %d is mapped now: %d unrouted events queued again", company_id, requeued)


def worksheet_batches(
    companies: Sequence[CompanyMapping],
    touched: Mapping[EntityKey, EntityState],
    envelopes: Sequence[Envelope],
) -> list[WorksheetBatch]:
    """The writer's batches for one spreadsheet: the rows each worksheet of each company shows for what
    this pass touched (the mapping guarantees a worksheet title is used once per spreadsheet)."""
    items: list[EntityState | Envelope] = [*touched.values(), *envelopes]
    batches = []
    for company in companies:
        for worksheet in company.worksheets:
            rows = rows_for(worksheet, items)
            if rows:
                batches.append(
                    WorksheetBatch(
                        worksheet.title, worksheet.key_header, worksheet.headers, rows, worksheet.header_row
                    )
                )
    return batches


def tune_interpreter_for_flushes() -> None:
    """Interpreter settings for a process that runs a worker, once it has started (measured with
    scripts/bench_ingest.py and scripts/bench_worker_cpu.py).

    A flush keeps everything it makes (stored events, envelopes, states, rows: some twenty objects an
    event) until it ends, and makes no garbage cycles. With the default gen-0 threshold (700) the cyclic
    garbage collector scanned these objects again and again, for about a third of the CPU a flush
    spent on decoding, folding, rows and the store; at FLUSH_GC_THRESHOLD the flush of a few thousand
    events is over before the first collection. Start-up objects are frozen out of its scans altogether.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(FLUSH_GC_THRESHOLD, 10, 10)


class WorkerThread:
    """The worker of a settings file, run in a thread of its own: built (and checked) up front, then
    started and stopped, for example by ``doopage-sheets worker`` (the process ``serve`` supervises)."""

    def __init__(self, settings: Settings) -> None:
        # All three raise ConfigError now, at start-up, rather than in the thread later.
        self.mapping = load_mapping(settings)
        self.writer = writer_for(settings)  # with a PostgreSQL store, the budgets are shared in it
        self.writer.pool.check_pins(self.mapping)
        self.settings = settings
        self.stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self.worker: Worker | None = None  # while started; a settings reload swaps its router
        self._store: WorkStore | None = None
        self._journal: Journal | None = None

    def start(self) -> Worker:
        """Open the store, take over what dead processes held, give back events whose company is now
        mapped, and start working."""
        self._store = open_work_store(self.settings)
        take_over_gone_owners(self._store)
        self._journal = Journal(self.settings.data_dir)
        self.writer.on_request = self._journal.sheets_request
        router = Router.from_mapping(self.mapping)
        requeue_mapped(self._store, router)
        worker = self.worker = Worker(
            self._store,
            self.writer,
            router,
            self.settings.worker,
            max_request_bytes=self.settings.sheets.max_request_bytes,
            journal=self._journal,
            watcher=MappingWatcher(self.settings, self.mapping, check=self.writer.pool.check_pins),
        )
        self._thread = threading.Thread(
            target=worker.run, args=(self.stop_event, self._save_budget), name="sheets-worker"
        )
        self._thread.start()
        log.info("worker %s started", worker.owner)
        return worker

    def _save_budget(self, report: PassReport) -> None:
        """Keep the Sheets request budget where ``status`` can show it."""
        if report.flushes or report.released:
            save_budget(self.settings.data_dir, self.writer.budget(), time.time())

    def stop(self) -> None:
        """Let the flush in flight finish, then close the store."""
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._store is not None:
            self._store.close()
            self._store = None
        if self._journal is not None:
            self._journal.close()
            self._journal = None
