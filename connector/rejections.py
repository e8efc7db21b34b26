"""Refused webhooks: counted in the metrics, kept in the journal for the console, and logged readably.

A refusal is logged at INFO with its reason, since a misconfigured sender is the usual cause and someone
setting up DooPage wants to see it. A flood (a scanner, a sender stuck on a bad body) must not drown the
log, so at most :data:`LINES_PER_MINUTE` such lines are written a minute; the next line after a quiet
spell says how many were left out.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Final

from connector import metrics
from connector.journal import Journal

__all__ = ["RejectionLog"]

log = logging.getLogger("connector.intake")

LINES_PER_MINUTE: Final = 10
WINDOW_S: Final = 60.0


class RejectionLog:
    """Where the webhook routes report a refusal; used from the event loop only."""

    def __init__(self, journal: Journal | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.journal = journal
        self._clock = clock
        self._window_start = float("-inf")
        self._lines = 0
        self._left_out: Counter[str] = Counter()

    def note(self, reason: str, status: int, endpoint: str, detail: str, *, quiet: bool = False) -> None:
        """Count, journal and (within the log's budget) log one refused webhook; ``quiet`` ones (a client
        that went away) at debug level only."""
        metrics.EVENTS_REJECTED.labels(reason).inc()
        if self.journal is not None:
            self.journal.rejection(endpoint, reason, status, detail)
        if quiet:
            log.debug("webhook rejected (%s) on endpoint %s: %s", reason, endpoint, detail)
            return
        now = self._clock()
        if now - self._window_start >= WINDOW_S:
            self._window_start, self._lines = now, 0
        if self._lines >= LINES_PER_MINUTE:
            self._left_out[reason] += 1
            return
        self._lines += 1
        where = f" on endpoint {endpoint}" if endpoint else ""
        line = f"webhook rejected ({reason}, {status}){where}: {detail}"
        if self._left_out:
            counts = ", ".join(f"{name} {count}" for name, count in sorted(self._left_out.items()))
            line += f" [{sum(self._left_out.values())} more rejections not logged before this one: {counts}]"
            self._left_out.clear()
        log.info(line)
