"""Holding a spreadsheet lock through a flush: a heartbeat renews it, and the flush checks it before writing.

The lock's lease is short (``worker.lease_ms``, 10 s by default) so that a dead holder is replaced in
seconds; while a flush runs, a heartbeat thread renews the lock and the claims of the flush's events every
third of the lease. :meth:`Hold.check`, called before each write request, raises :class:`LockLost` when a
renewal failed (another holder took the lock) or when no renewal succeeded for longer than the lease
allows (this process was paused, or cut off from the store): a write after that could land after the next
holder's, so it is not sent. The fenced commit (:meth:`FlushLog.commit_flush`) catches what gets past.
"""

from __future__ import annotations

import logging
import threading
import time
from types import TracebackType

from connector.errors import ConnectorError, StoreError
from connector.store.protocols import WorkStore
from connector.store.records import Fence

__all__ = ["Hold", "LockLost"]

log = logging.getLogger(__name__)


class LockLost(ConnectorError):
    """The spreadsheet lock of a flush in progress is no longer (surely) held: the flush must stop."""


class Hold:
    """A live hold of a spreadsheet lock, renewed in the background while the ``with`` block runs, and
    dropped when it ends."""

    def __init__(self, store: WorkStore, fence: Fence, lease_ms: int) -> None:
        self._store = store
        self.fence = fence
        self._lease_ms = lease_ms
        # Trust the hold for the lease less one renewal period: the margin covers a renewal in flight.
        self._trust_s = lease_ms * 2 / 3 / 1000
        self._renewed_at = time.monotonic()
        self._lost: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"hold-{fence.name}", daemon=True)

    def __enter__(self) -> Hold:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
        self._store.drop_lock(self.fence)

    def check(self) -> None:
        """Raise LockLost unless the lock is still ours and was renewed recently enough."""
        if self._lost is not None:
            raise LockLost(f"spreadsheet {self.fence.name}: {self._lost}")
        silent = time.monotonic() - self._renewed_at
        if silent > self._trust_s:
            raise LockLost(
                f"spreadsheet {self.fence.name}: the lock was last renewed {silent:.1f} s ago"
                f" (lease {self._lease_ms / 1000:g} s); this process was paused or lost the store"
            )

    def _beat(self) -> None:
        interval = self._lease_ms / 3 / 1000
        while not self._stop.wait(interval):
            try:
                if not self._store.renew_lock(self.fence, self._lease_ms):
                    self._lost = f"the lock was taken by another holder (our token {self.fence.token})"
                    log.warning("spreadsheet %s: %s", self.fence.name, self._lost)
                    return
                self._store.renew_claims(self.fence.owner, self._lease_ms)
            except StoreError as exc:  # tried again next beat; check() stops the flush if it goes on
                log.warning("spreadsheet %s: could not renew the lock: %s", self.fence.name, exc)
                continue
            self._renewed_at = time.monotonic()
