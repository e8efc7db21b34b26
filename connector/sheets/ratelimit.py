"""Keeps Sheets requests per minute per credential under a budget, across threads.

Google counts requests per minute per user, separately for reads and writes. A token bucket admits
``capacity + rate * 60`` requests in a bad minute, so it would need a small capacity to stay under the
quota; a sliding-window log (the send times of the last 60 seconds) gives the exact guarantee instead: no
60-second window ever holds more than the budget. Limiters are shared per credential within a process, so
two writers using the same service account draw on one budget.

A window alone lets the whole budget go in a burst and then stalls every writer for most of a minute,
which is what a steady stream of flushes runs into; so by default (``smooth``) requests are also spaced
at least ``60 s / budget`` apart, and a request waits at most about that long.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Literal

from connector.sheets.config import RateLimitSettings

__all__ = ["RateLimiter", "RequestKind", "SlidingWindow", "shared_limiter"]

RequestKind = Literal["read", "write"]
WINDOW_SECONDS = 60.0


class SlidingWindow:
    """At most ``limit`` acquisitions in any ``window`` seconds, and none closer than ``min_interval`` to
    the one before; ``acquire`` blocks until one is allowed."""

    def __init__(
        self,
        limit: int,
        window: float = WINDOW_SECONDS,
        *,
        min_interval: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self._limit = limit
        self._window = window
        self._min_interval = min_interval
        self._clock = clock
        self._sleep = sleep
        self._sent: deque[float] = deque()
        self._lock = threading.Lock()

    def set_limit(self, limit: int, min_interval: float) -> None:
        """Change the budget from now on; the requests already sent still count in their window."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        with self._lock:
            self._limit = limit
            self._min_interval = min_interval

    def try_acquire(self) -> float:
        """Take a slot and return 0.0, or take nothing and return the seconds until one frees up."""
        with self._lock:
            now = self._clock()
            delay = self._delay(now)
            if delay == 0.0:
                self._sent.append(now)
            return delay

    def ready_in(self) -> float:
        """Seconds until a slot frees up (0.0: one is free now), taking nothing."""
        with self._lock:
            return self._delay(self._clock())

    def _delay(self, now: float) -> float:
        while self._sent and self._sent[0] <= now - self._window:
            self._sent.popleft()
        if self._sent and now < self._sent[-1] + self._min_interval:
            return max(self._sent[-1] + self._min_interval - now, 1e-3)
        if len(self._sent) < self._limit:
            return 0.0
        return max(self._sent[0] + self._window - now, 1e-3)

    def acquire(self) -> float:
        """Block until a slot is free, take it, and return the seconds spent waiting."""
        waited = 0.0
        while (delay := self.try_acquire()) > 0.0:
            # Sleep outside the lock so other threads can still see the window; re-check after waking.
            self._sleep(delay)
            waited += delay
        return waited


class RateLimiter:
    """One read window and one write window for one credential."""

    def __init__(
        self,
        settings: RateLimitSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._windows: dict[RequestKind, SlidingWindow] = {
            kind: SlidingWindow(limit, min_interval=interval, clock=clock, sleep=sleep)
            for kind, (limit, interval) in _budgets(settings).items()
        }

    def reconfigure(self, settings: RateLimitSettings) -> None:
        """Take a new budget (a settings reload), keeping the record of the requests already sent."""
        for kind, (limit, interval) in _budgets(settings).items():
            self._windows[kind].set_limit(limit, interval)

    def acquire(self, kind: RequestKind) -> float:
        """Wait for budget for one request of this kind; returns the seconds waited."""
        return self._windows[kind].acquire()

    def ready_in(self, kind: RequestKind) -> float:
        """Seconds until a request of this kind would go without waiting (0.0: now)."""
        return self._windows[kind].ready_in()


def _budgets(settings: RateLimitSettings) -> dict[RequestKind, tuple[int, float]]:
    """Per kind of request: the limit per window and the least spacing between two requests."""

    def budget(limit: int) -> tuple[int, float]:
        return limit, WINDOW_SECONDS / limit if settings.smooth else 0.0

    return {"read": budget(settings.reads_per_minute), "write": budget(settings.writes_per_minute)}


_shared: dict[tuple[str, int, int, bool], RateLimiter] = {}
_shared_lock = threading.Lock()


def shared_limiter(credential_id: str, settings: RateLimitSettings) -> RateLimiter:
    """The process-wide limiter of a credential (one per credential and budget)."""
    key = (credential_id, settings.reads_per_minute, settings.writes_per_minute, settings.smooth)
    with _shared_lock:
        limiter = _shared.get(key)
        if limiter is None:
            limiter = _shared[key] = RateLimiter(settings)
        return limiter
