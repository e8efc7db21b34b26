"""Replay: rebuild a company's state from its stored events and write every row again.

For after a mapping change (new columns, another format), onto a new spreadsheet, or to repair a sheet a
person damaged. Rows are upserted by key, so a replay is idempotent: running it twice, or over a sheet
that is already right, changes nothing. The inbox's statuses are left as they are.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from connector.errors import ConfigError, ConnectorError
from connector.sheets.plan import WorksheetBatch
from connector.sheets.writer import SheetWriter
from connector.store.owners import owner_id
from connector.store.protocols import WorkStore
from connector.store.records import CSV_IMPORT_ENDPOINT, StoredEvent
from connector.sync.hold import Hold
from connector.sync.mapping import CompanyMapping, SheetMapping
from connector.sync.state import EntityKey, EntityState, Envelope, fold_batch
from connector.sync.worker import envelope_of, worksheet_batches

__all__ = ["ReplayBusyError", "ReplayReport", "company_or_error", "envelopes_of", "replay_company"]

log = logging.getLogger(__name__)

# Rows per write request: each flush writes at most this many rows to a worksheet.
CHUNK = 5000
# How long a replay waits for the worker to finish a flush of the same spreadsheet.
LOCK_WAIT_SECONDS = 120.0


class ReplayBusyError(ConnectorError):
    """Another process kept the spreadsheet's lock for too long."""


@dataclass
class ReplayReport:
    """What a replay did."""

    events: int = 0
    entities: int = 0
    rows_written: int = 0
    requests: int = 0


def envelopes_of(stored: Iterable[StoredEvent]) -> list[Envelope]:
    """The fold inputs of stored events; events that do not decode as a known type are skipped (the
    worker parks them as failed with the reason)."""
    return [envelope for envelope in map(envelope_of, stored) if not isinstance(envelope, str)]


def replay_company(
    company: CompanyMapping,
    store: WorkStore,
    writer: SheetWriter,
    *,
    spreadsheet_id: str | None = None,
    lease_ms: int = 10_000,
    progress: Callable[[int], None] | None = None,
) -> ReplayReport:
    """Fold every stored event of the company afresh, save the states, and write all their rows.

    All of it under the lock of the company's spreadsheet (and of ``spreadsheet_id``, which sends the rows
    to another spreadsheet than the mapping's), the one workers take, so no flush runs meanwhile; the
    states are saved fenced, like a flush's. ``progress`` is told how many more rows were written after
    each write.
    """
    owner = owner_id("replay")
    target = (
        company if spreadsheet_id is None else dataclasses.replace(company, spreadsheet_id=spreadsheet_id)
    )
    report = ReplayReport()
    with contextlib.ExitStack() as held:
        hold = held.enter_context(_spreadsheet_lock(store, company.spreadsheet_id, owner, lease_ms))
        checks = [hold.check]
        if target.spreadsheet_id != company.spreadsheet_id:
            checks.append(
                held.enter_context(_spreadsheet_lock(store, target.spreadsheet_id, owner, lease_ms)).check
            )

        def still_held() -> None:
            for check in checks:
                check()

        rebuilt: dict[EntityKey, EntityState] = {}
        for batch in store.events_of(company.company_id):
            envelopes = envelopes_of(batch)
            report.events += len(envelopes)
            rebuilt.update(fold_batch(rebuilt, envelopes))
        report.entities = len(rebuilt)
        store.commit_flush(hold.fence, rebuilt, [], str(company.company_id))

        entity_states = list(rebuilt.values())
        for start in range(0, len(entity_states), CHUNK):
            chunk = {s.key: s for s in entity_states[start : start + CHUNK]}
            _write(writer, target, worksheet_batches([target], chunk, []), report, progress, still_held)
        for batch in store.events_of(company.company_id, batch=CHUNK):
            logged = envelopes_of(e for e in batch if e.endpoint != CSV_IMPORT_ENDPOINT)
            _write(writer, target, worksheet_batches([target], {}, logged), report, progress, still_held)
    return report


def _write(
    writer: SheetWriter,
    company: CompanyMapping,
    batches: Sequence[WorksheetBatch],
    report: ReplayReport,
    progress: Callable[[int], None] | None,
    still_held: Callable[[], None],
) -> None:
    if not batches:
        return
    flushed = writer.flush(company.spreadsheet_id, batches, before_write=still_held, pin=company.credential)
    rows = flushed.rows_updated + flushed.rows_appended
    report.rows_written += rows
    report.requests += flushed.requests
    if progress is not None:
        progress(rows)


@contextlib.contextmanager
def _spreadsheet_lock(store: WorkStore, spreadsheet_id: str, owner: str, lease_ms: int) -> Iterator[Hold]:
    """Hold a spreadsheet's lock (the one workers take), renewed, for the length of the replay."""
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while (fence := store.take_lock(spreadsheet_id, owner, lease_ms)) is None:
        if time.monotonic() > deadline:
            raise ReplayBusyError(f"spreadsheet {spreadsheet_id} is being flushed by another process")
        time.sleep(0.2)
    with Hold(store, fence, lease_ms) as hold:
        yield hold


def company_or_error(mapping: SheetMapping, company_id: int) -> CompanyMapping:
    """The mapping of one company, or a ConfigError saying it has none."""
    company = mapping.company(company_id)
    if company is None:
        known = ", ".join(str(c.company_id) for c in mapping.companies) or "none"
        raise ConfigError(
            mapping.file, "mapping", f"company {company_id} has no mapping (mapped companies: {known})"
        )
    return company
