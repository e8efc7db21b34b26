"""The worker: from claimed inbox events to rows in the spreadsheets, acknowledged only once written.

One pass (:meth:`Worker.run_once`):

1. claim a batch of pending events with a lease (a crashed worker's lease expires and another takes over);
2. decode them; events of a company without a mapping are set aside as ``unrouted``;
3. per spreadsheet, under a lock that keeps any other worker from flushing it at the same time: fold the
   events into the stored customer and order states, project the touched states (and, for an event log,
   the events themselves) onto rows with the column mapping, and flush them with the sheet writer in one
   read and one write;
4. only then save the states and mark the events ``done``. A permanent Sheets error parks that
   spreadsheet's events as ``failed`` with the error; a transient one gives them back, to be retried after
   a back-off, while other spreadsheets go on. Events with rows in a worksheet the writer held back (its
   key header missing, a protected range: ``FlushReport.blocked``) are given back with the reason and a
   back-off, and come back by themselves; the spreadsheet's other events are done.

Folding is idempotent and order-free (per-field last-writer-wins), so an event processed twice after a
crash between the write and the acknowledgement leaves the same rows.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from connector import metrics
from connector.budget_file import save_budget
from connector.events import EventDecodeError, UnknownEvent, decode_body
from connector.held import held_events, held_message
from connector.inbox import CSV_IMPORT_ENDPOINT, now_ms
from connector.inbox_queue import InboxQueue, StoredEvent, open_queue
from connector.mapping import CompanyMapping, load_mapping, rows_for
from connector.routing import Router
from connector.settings import Settings, WorkerSettings
from connector.sheets.errors import PermanentSheetsError, SheetsError
from connector.sheets.plan import WorksheetBatch
from connector.sheets.writer import SheetWriter
from connector.state import EntityKey, EntityState, Envelope, entity_key, fold_batch
from connector.state_store import StateStore

__all__ = ["PassReport", "Worker", "WorkerThread", "envelope_of", "worksheet_batches"]

log = logging.getLogger(__name__)


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
        event = decode_body(stored.body).event
    except EventDecodeError as exc:
        return f"stored body does not decode: {exc}"
    if isinstance(event, UnknownEvent):
        return f"unknown event type {event.event_type!r}"
    return Envelope(event=event, received_ms=stored.received_ms, dedup_key=stored.dedup_key)


class Worker:
    """Claims inbox events and writes them to their spreadsheets; one instance per thread."""

    def __init__(
        self,
        queue: InboxQueue,
        states: StateStore,
        writer: SheetWriter,
        router: Router,
        settings: WorkerSettings,
        *,
        owner: str | None = None,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.queue = queue
        self.states = states
        self.writer = writer
        self.router = router
        self.settings = settings
        self.owner = owner or f"worker-{uuid.uuid4().hex[:12]}"
        self._clock = clock
        self._failures: dict[str, int] = defaultdict(int)  # consecutive transient failures by spreadsheet

    def due(self) -> bool:
        """Whether a pass should run now: enough events pending, or the oldest has waited long enough,
        and the Sheets request budget lets a flush start at once.

        Waiting for the budget before claiming, rather than inside the flush, lets every event that
        arrives meanwhile join the batch instead of waiting for the next one.
        """
        now = self._clock()
        pending, oldest = self.queue.claimable(now)
        if pending == 0:
            return False
        if pending < self.settings.batch_size and now - oldest < self.settings.max_delay_ms:
            return False
        return self.writer.ready_in() == 0.0

    def run(self, stop: threading.Event, on_pass: Callable[[PassReport], None] | None = None) -> None:
        """Work until ``stop`` is set; the pass in flight is finished first."""
        poll = self.settings.poll_ms / 1000
        while not stop.is_set():
            try:
                if not self.due():
                    stop.wait(poll)
                    continue
                report = self.run_once()
            except Exception:
                # A bug or a broken store must not kill the worker silently: log it, wait, go on.
                log.exception("worker pass failed; trying again shortly")
                stop.wait(max(poll, 1.0))
                continue
            if on_pass is not None:
                on_pass(report)

    def run_once(self) -> PassReport:
        """Claim one batch of pending events and settle every event in it."""
        return self.process(self.queue.claim(self.owner, self.settings.batch_size, self.settings.lease_ms))

    def process(self, claimed: Sequence[StoredEvent]) -> PassReport:
        """Settle claimed events: write what they change to their spreadsheets, then mark them."""
        report = PassReport(claimed=len(claimed))
        if not claimed:
            return report
        by_spreadsheet: dict[str, list[tuple[StoredEvent, Envelope]]] = defaultdict(list)
        unrouted: list[int] = []
        for stored in claimed:
            envelope = self._envelope(stored, report)
            if envelope is None:
                continue
            company = self.router.route(stored.company_id)
            if company is None:
                unrouted.append(stored.id)
            else:
                by_spreadsheet[company.spreadsheet_id].append((stored, envelope))
        if unrouted:
            self.queue.finish(unrouted, "unrouted")
            report.unrouted += len(unrouted)
        for spreadsheet_id, items in by_spreadsheet.items():
            self._flush_spreadsheet(spreadsheet_id, items, report)
        return report

    def _envelope(self, stored: StoredEvent, report: PassReport) -> Envelope | None:
        """The fold input for a stored event; an event that cannot be folded is parked with the reason."""
        envelope = envelope_of(stored)
        if isinstance(envelope, str):
            self.queue.finish([stored.id], "failed", envelope)
            report.failed += 1
            return None
        return envelope

    def _flush_spreadsheet(
        self, spreadsheet_id: str, items: list[tuple[StoredEvent, Envelope]], report: PassReport
    ) -> None:
        ids = [stored.id for stored, _ in items]
        if not self.queue.take_lock(spreadsheet_id, self.owner, self.settings.lease_ms):
            # Another worker is flushing this spreadsheet; ours wait for the next pass.
            self.queue.release(ids, retry_at_ms=self._clock() + self.settings.poll_ms)
            report.released += len(ids)
            return
        companies = sorted({stored.company_id for stored, _ in items})
        label = ",".join(str(c) for c in companies)
        try:
            envelopes = [envelope for _, envelope in items]
            keys = {entity_key(envelope.event) for envelope in envelopes}
            touched = fold_batch(self.states.load(keys), envelopes)
            mappings = [m for m in (self.router.route(c) for c in companies) if m is not None]
            logged = [envelope for stored, envelope in items if stored.endpoint != CSV_IMPORT_ENDPOINT]
            batches = worksheet_batches(mappings, touched, logged)
            with metrics.FLUSH_SECONDS.time():
                flushed = self.writer.flush(spreadsheet_id, batches)
        except PermanentSheetsError as exc:
            log.error(
                "spreadsheet %s: %s; parking %d events of company %s", spreadsheet_id, exc, len(ids), label
            )
            self.queue.finish(ids, "failed", str(exc))
            self.queue.record_flush(spreadsheet_id, label, error=str(exc))
            report.failed += len(ids)
            return
        except SheetsError as exc:
            delay = self._backoff(spreadsheet_id)
            log.warning(
                "spreadsheet %s: %s; retrying its %d events in %d ms", spreadsheet_id, exc, len(ids), delay
            )
            self.queue.release(ids, retry_at_ms=self._clock() + delay, error=str(exc))
            self.queue.record_flush(spreadsheet_id, label, error=str(exc))
            report.released += len(ids)
            return
        finally:
            self.queue.drop_lock(spreadsheet_id, self.owner)
        held = held_events(mappings, touched, items, logged, flushed.blocked) if flushed.blocked else {}
        self.states.save(touched)
        self.queue.finish([i for i in ids if i not in held], "done")
        if held:
            self._hold(spreadsheet_id, label, held, held_message(flushed.blocked), report)
        else:
            self.queue.record_flush(spreadsheet_id, label)
            self._failures.pop(spreadsheet_id, None)
        done_at = self._clock()
        report.done += len(ids) - len(held)
        report.flushes += 1
        report.sheets_requests += flushed.requests
        latencies = [done_at - stored.received_ms for stored, _ in items if stored.id not in held]
        report.latencies_ms.extend(latencies)
        for latency in latencies:
            metrics.WEBHOOK_TO_SHEET_SECONDS.observe(latency / 1000)

    def _backoff(self, spreadsheet_id: str) -> int:
        """Milliseconds to wait before retrying a spreadsheet: doubled each consecutive time, capped."""
        self._failures[spreadsheet_id] += 1
        return int(
            min(
                self.settings.backoff_ms * 2 ** (self._failures[spreadsheet_id] - 1),
                self.settings.max_backoff_ms,
            )
        )

    def _hold(
        self, spreadsheet_id: str, label: str, held: Mapping[int, str], message: str, report: PassReport
    ) -> None:
        """Give back events whose worksheet was held back, each with its reason, after a back-off."""
        delay = self._backoff(spreadsheet_id)
        log.warning("spreadsheet %s: %d events wait %d ms: %s", spreadsheet_id, len(held), delay, message)
        by_reason: dict[str, list[int]] = defaultdict(list)
        for event_id, reason in held.items():
            by_reason[reason].append(event_id)
        for reason, ids in by_reason.items():
            self.queue.release(ids, retry_at_ms=self._clock() + delay, error=reason)
        self.queue.record_flush(spreadsheet_id, label, error=message)
        report.released += len(held)


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
                batches.append(WorksheetBatch(worksheet.title, worksheet.key_header, worksheet.headers, rows))
    return batches


class WorkerThread:
    """The worker of a settings file, run in a thread of its own: built (and checked) up front, then
    started and stopped, for example by the web service's lifespan or by ``doopage-sheets worker``."""

    def __init__(self, settings: Settings) -> None:
        # Both raise ConfigError now, at start-up, rather than in the thread later.
        self.mapping = load_mapping(settings)
        self.writer = SheetWriter.from_settings(settings.sheets, source=settings.source)
        self.settings = settings
        self.stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._queue: InboxQueue | None = None
        self._states: StateStore | None = None

    def start(self) -> Worker:
        """Open the stores, give back events whose company is now mapped, and start working."""
        self._queue = open_queue(self.settings.data_dir)
        self._states = StateStore.open(self.settings.data_dir)
        router = Router.from_mapping(self.mapping)
        for company_id in sorted(router.company_ids):
            requeued = self._queue.requeue("unrouted", company_id)
            if requeued:
                log.info("company %d is mapped now: %d unrouted events queued again", company_id, requeued)
        worker = Worker(self._queue, self._states, self.writer, router, self.settings.worker)
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
        """Let the pass in flight finish, then close the stores."""
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        for store in (self._queue, self._states):
            if store is not None:
                store.close()
        self._queue = self._states = None
