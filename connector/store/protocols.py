"""The storage seam: one protocol per role, each implemented by every backend.

* :class:`Intake` — the webhook routes store events durably and deduplicated (async: on the event loop).
* :class:`Claims` — workers lease pending events, renew the lease, and finish, park or release them.
* :class:`Locks` — one named lock per spreadsheet, each hold carrying a fencing token that only grows.
* :class:`EntityStates` — folded customer and order states.
* :class:`FlushLog` — the outcome of each spreadsheet's last flush, and the fenced commit of a flush.
* :class:`Figures` — what the console and the alerts read: counts per company and status, the latest
  parked events, events received per minute.

:class:`WorkStore` is every role a worker needs. The contract every implementation must meet is
``tests/store/test_contract.py``, run against each backend.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Literal, Protocol

from connector.store.records import (
    CompanyLag,
    FailedEvent,
    Fence,
    FlushRecord,
    InboxRecord,
    Outcome,
    StatusCount,
    StoredEvent,
)
from connector.sync.state import EntityKey, EntityKind, EntityState

__all__ = ["Claims", "CommitWaiter", "EntityStates", "Figures", "FlushLog", "Intake", "Locks", "WorkStore"]


class Intake(Protocol):
    """What the webhook routes need: store an event before it is acknowledged."""

    async def put(self, record: InboxRecord) -> bool:
        """Store one record durably; True if it is new, False if its dedup key was already stored.

        Returns only after the record is committed; raises StoreError if it could not be, or if the commit
        was not confirmed in time.
        """
        ...

    async def put_many(self, records: list[InboxRecord]) -> list[bool]:
        """Store several records durably in one transaction (an import); for each, whether it was new."""
        ...

    async def check_writable(self) -> None:
        """Raise StoreError unless a write can be committed now (a real write: a full disk shows)."""
        ...

    def counts(self) -> list[StatusCount]:
        """Number of stored events by status and event type."""
        ...

    def close(self) -> None:
        """Finish queued writes and release the store."""
        ...

    async def aclose(self) -> None:
        """Finish queued writes and release the store, from the event loop (when it is about to end)."""
        ...


class CommitWaiter(ABC):
    """The puts of an :class:`Intake`, for a backend that queues records for its next group commit and
    waits for it (both do): one ``_confirmed`` serves them all."""

    @abstractmethod
    async def _confirmed(self, records: list[InboxRecord]) -> list[bool]:
        """Queue records for a commit and wait for it, at most the commit time limit (StoreError then);
        for each record whether it was new. No record at all is a writability check."""

    async def put(self, record: InboxRecord) -> bool:
        """Store one record durably; True if new, False if a duplicate (see Intake.put)."""
        (inserted,) = await self._confirmed([record])
        return inserted

    async def put_many(self, records: list[InboxRecord]) -> list[bool]:
        """Store several records in one transaction; for each, whether it was new."""
        return await self._confirmed(records)

    async def check_writable(self) -> None:
        """Raise StoreError unless a write commits now, within the commit time limit."""
        await self._confirmed([])


class Claims(Protocol):
    """Leasing events to one worker at a time, and settling them."""

    def pending_work(self, now: int | None = None) -> list[CompanyLag]:
        """Per company, the pending events no live lease holds (a released event counts once its retry
        time has come)."""
        ...

    def claim(
        self,
        owner: str,
        company_ids: Sequence[int],
        lease_ms: int,
        *,
        max_events: int,
        max_bytes: int,
        now: int | None = None,
    ) -> list[StoredEvent]:
        """Lease the oldest claimable pending events of these companies, by id, up to ``max_events`` and
        about ``max_bytes`` of bodies (always at least one when any is claimable)."""
        ...

    def claim_subjects(
        self, owner: str, status: str, subjects: int, lease_ms: int, now: int | None = None
    ) -> list[StoredEvent]:
        """Lease every event in ``status`` of up to ``subjects`` customers or orders, stored first first."""
        ...

    def renew_claims(self, owner: str, lease_ms: int, now: int | None = None) -> int:
        """Extend the lease of every event this owner holds; how many."""
        ...

    def finish(self, owner: str, ids: Iterable[int], outcome: Outcome, error: str | None = None) -> int:
        """Settle events this owner still leases: ``failed`` or ``unrouted`` (``done`` goes through
        :meth:`FlushLog.commit_flush`, fenced); how many were settled."""
        ...

    def release(
        self, owner: str, ids: Iterable[int], retry_at_ms: int | None = None, error: str | None = None
    ) -> None:
        """Give back events this owner still leases; with ``retry_at_ms``, not claimable before then;
        ``error`` says why they wait (``failed(waiting=True)`` lists them until they are done)."""
        ...

    def park_unrouted(self, company_ids: Sequence[int], now: int | None = None) -> int:
        """Set the claimable pending events of companies without a mapping aside as ``unrouted``."""
        ...

    def requeue(self, status: Literal["failed", "unrouted"], company_id: int | None = None) -> int:
        """Put parked or unrouted events back to pending (all, or one company's), their error cleared;
        how many."""
        ...

    def lease_owners(self, now: int | None = None) -> set[str]:
        """Owners holding a live lease on an event or a lock."""
        ...

    def expire_owner(self, owner: str) -> None:
        """End every lease and lock hold of an owner that is gone (its fencing tokens stay spent)."""
        ...

    def counts(self) -> list[StatusCount]:
        """Number of stored events by status and event type."""
        ...

    def lag(self) -> list[CompanyLag]:
        """Pending events per company, with the receive time of the oldest."""
        ...

    def failed(
        self, company_id: int | None = None, limit: int = 100, *, waiting: bool = False
    ) -> list[FailedEvent]:
        """Parked events, oldest first, with their error; ``waiting``: instead, pending events given back
        with a reason (a worksheet held back, Google unreachable), which are retried by themselves."""
        ...

    def events_of(self, company_id: int, batch: int = 1000) -> Iterator[list[StoredEvent]]:
        """Every stored event of a company except those of unknown type, in batches, oldest first."""
        ...


class Locks(Protocol):
    """Named locks with fencing tokens: one holder at a time, and a lost hold is detectable."""

    def take_lock(self, name: str, owner: str, ttl_ms: int, now: int | None = None) -> Fence | None:
        """Take the lock if it is free or its hold has expired; the fence of the new hold (its token
        greater than any before), or None while another hold is live."""
        ...

    def renew_lock(self, fence: Fence, ttl_ms: int, now: int | None = None) -> bool:
        """Extend this hold; False if the lock was taken by another since (the hold is lost)."""
        ...

    def drop_lock(self, fence: Fence) -> None:
        """End this hold, if it is still the lock's newest."""
        ...


class EntityStates(Protocol):
    """Folded customer and order states by :class:`~connector.sync.state.EntityKey`."""

    def load(self, keys: Iterable[EntityKey]) -> dict[EntityKey, EntityState]:
        """The stored states of these entities; an entity never saved is absent from the result."""
        ...

    def save_states(self, states: Iterable[EntityState]) -> None:
        """Write states without a lock (for tools that run alone: replay onto a new sheet, tests)."""
        ...

    def company_states(self, kind: EntityKind, company_id: int) -> list[EntityState]:
        """Every stored state of one kind for a company, by id."""
        ...

    def state_counts(self) -> dict[str, int]:
        """Number of stored states by kind ('customer', 'order')."""
        ...


class FlushLog(Protocol):
    """What the worker records of a flush."""

    def commit_flush(
        self,
        fence: Fence,
        states: Mapping[EntityKey, EntityState],
        done_ids: Sequence[int],
        company_ids: str,
    ) -> None:
        """Only while ``fence`` is the newest hold of its lock (the spreadsheet id): save the states,
        mark the events ``done``, and record the flush as succeeded.

        Raises StaleFence if the lock was taken by another holder since: nothing is stored when it was
        taken before the call; a backend that splits the work into several transactions (states first,
        then events) checks the token in each, so no write is ever made by a stale holder.
        """
        ...

    def record_flush(self, spreadsheet_id: str, company_ids: str, error: str | None = None) -> None:
        """Remember a flush's outcome for ``status`` (an error, or a success without state)."""
        ...

    def flushes(self) -> list[FlushRecord]:
        """The last flush outcome of every spreadsheet."""
        ...


class Figures(Protocol):
    """Read-only figures of the stored events for the console and the alerts (cheap on a large store:
    each reads an index, or only the events stored since the caller last looked)."""

    # How long after an event id is handed out an event with a lower id may still be committed (0:
    # ids are committed in order). Counts kept by id between calls settle only after this long.
    ids_settle_ms: int

    def newest_event_id(self) -> int:
        """The highest event id stored (0 when there is none)."""
        ...

    def events_by_company(self, after_id: int, up_to_id: int | None = None) -> dict[int, int]:
        """Per company, the stored events with an id above ``after_id`` (and at most ``up_to_id``)."""
        ...

    def status_by_company(self, statuses: Sequence[str]) -> dict[int, dict[str, int]]:
        """company -> status -> number of events, for these statuses only."""
        ...

    def backlog(self, status: str) -> list[CompanyLag]:
        """Per company, the events in ``status`` and the receive time of the oldest, by company."""
        ...

    def received_per_minute(self, since_ms: int, minute_ms: int) -> dict[int, int]:
        """Start of each minute (``minute_ms`` long) since ``since_ms`` -> events received in it."""
        ...

    def latest_failed(self, limit: int) -> list[FailedEvent]:
        """The newest parked events, newest first."""
        ...

    def newest_failed_by_company(self) -> list[FailedEvent]:
        """The newest parked event of every company that has one, by company."""
        ...

    def subjects_waiting(self, status: str) -> tuple[int, int]:
        """How many customers and orders have events in ``status``, and how many events that is."""
        ...


class WorkStore(Claims, Locks, EntityStates, FlushLog, Figures, Protocol):
    """Every role a worker uses, on one connection of its own."""

    def wait_for_work(self, stop: threading.Event, timeout_s: float) -> None:
        """Sleep between passes of an idle worker: ``timeout_s``, or until ``stop`` is set; a backend that
        hears of new events (PostgreSQL's NOTIFY) may wake earlier, and sleep longer when nothing waits."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...


# How a caller opens a work store for one worker thread.
WorkStoreFactory = Callable[[], WorkStore]
