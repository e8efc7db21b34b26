"""Keeps Sheets requests per minute per credential under a budget, across threads.

Google counts requests per minute per user, separately for reads and writes. A token bucket admits
``capacity + rate * 60`` requests in a bad minute, so it would need a small capacity to stay under the
quota; a sliding-window log (the send times of the last 60 seconds) gives the exact guarantee instead: no
60-second window ever holds more than the budget. Limiters are shared per credential within a process, so
two writers using the same service account draw on one budget.

A window alone lets the whole budget go in a burst and then stalls every writer for most of a minute,
which is what a steady stream of flushes runs into; so by default (``smooth``) requests are also spaced
``60 s / budget`` apart on average: any ``burst`` requests in a row span at least ``burst`` spacings.
A flush's few writes then go back to back (a batchUpdate, then its values, more than one body for a
backlog) instead of each waiting a spacing, while a minute still never holds more than the budget.

The configured budget is a ceiling, not a promise: other tools using the same credential draw on the same
Google quota, and Google answers 429 without a ``Retry-After``. So each budget adapts (AIMD, as TCP
does): a 429 cuts it to half, or to the requests Google did accept in the last window when that is
fewer, and nothing more of that kind is sent until the window has passed (Google refills per-minute
quotas per minute); every accepted request adds ``1 / budget`` back, about one request per minute of
full use, up to the ceiling.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Literal

import msgspec

from connector import metrics
from connector.sheets.config import RateLimitSettings

__all__ = ["BudgetState", "RateLimiter", "RequestKind", "SlidingWindow", "shared_limiter"]

RequestKind = Literal["read", "write"]
WINDOW_SECONDS = 60.0


class SlidingWindow:
    """At most ``limit`` acquisitions in any ``window`` seconds, and none closer than ``burst`` times
    ``min_interval`` to the ``burst``-th one before it (with ``burst`` 1: to the one before);
    ``acquire`` blocks until one is allowed."""

    def __init__(
        self,
        limit: int,
        window: float = WINDOW_SECONDS,
        *,
        min_interval: float = 0.0,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self._limit = limit
        self._window = window
        self._min_interval = min_interval
        self._burst = max(1, burst)
        self._clock = clock
        self._sleep = sleep
        self._sent: deque[float] = deque()
        self._paused_until = 0.0
        self._lock = threading.Lock()

    def set_limit(self, limit: int, min_interval: float, burst: int | None = None) -> None:
        """Change the number of acquisitions allowed per window (and their spacing, and burst)."""
        with self._lock:
            self._limit = max(1, limit)
            self._min_interval = min_interval
            if burst is not None:
                self._burst = max(1, burst)

    def pause(self, seconds: float) -> None:
        """Allow nothing for ``seconds`` from now (a longer pause already set is kept)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)

    def recent(self) -> int:
        """Acquisitions in the last window."""
        with self._lock:
            self._evict(self._clock())
            return len(self._sent)

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
        if now < self._paused_until:
            return max(self._paused_until - now, 1e-3)
        self._evict(now)
        if len(self._sent) >= self._burst:
            spaced = self._sent[-self._burst] + self._burst * self._min_interval
            if now < spaced:
                return max(spaced - now, 1e-3)
        if len(self._sent) < self._limit:
            return 0.0
        return max(self._sent[0] + self._window - now, 1e-3)

    def _evict(self, now: float) -> None:
        """Forget the acquisitions that left the window (under the lock)."""
        while self._sent and self._sent[0] <= now - self._window:
            self._sent.popleft()

    def acquire(self) -> float:
        """Block until a slot is free, take it, and return the seconds spent waiting."""
        waited = 0.0
        while (delay := self.try_acquire()) > 0.0:
            # Sleep outside the lock so other threads can still see the window; re-check after waking.
            self._sleep(delay)
            waited += delay
        return waited


class BudgetState(msgspec.Struct, frozen=True):
    """Where one budget stands: requests per window now and at most, and the 429s met."""

    kind: str
    budget: float
    ceiling: int
    window_seconds: float
    throttled: int
    last_throttled_unix: float | None
    credential: str = ""  # whose budget (a service account's client_email), when the writer says


class _Budget:
    """The adaptive budget of one kind of request (under the limiter's lock)."""

    def __init__(self, kind: RequestKind, ceiling: int, window: SlidingWindow) -> None:
        self.kind = kind
        self.ceiling = ceiling
        self.budget = float(ceiling)
        self.window = window
        self.throttled = 0
        self.last_throttled_unix: float | None = None


class RateLimiter:
    """One adaptive read budget and one adaptive write budget for one credential."""

    def __init__(
        self,
        settings: RateLimitSettings,
        *,
        credential: str = "",
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._credential = credential  # whose budget: the label of its metrics
        self._smooth = settings.smooth
        self._burst = settings.burst
        self._window_seconds = settings.window_seconds
        self._lock = threading.Lock()

        def budget(kind: RequestKind, limit: int) -> _Budget:
            window = SlidingWindow(
                limit,
                settings.window_seconds,
                min_interval=self._spacing(limit),
                burst=self._burst,
                clock=clock,
                sleep=sleep,
            )
            metrics.SHEETS_BUDGET.labels(kind, credential).set(limit)
            return _Budget(kind, limit, window)

        self._budgets: dict[RequestKind, _Budget] = {
            "read": budget("read", settings.reads_per_minute),
            "write": budget("write", settings.writes_per_minute),
        }

    def _spacing(self, limit: float) -> float:
        return self._window_seconds / limit if self._smooth else 0.0

    def reconfigure(self, settings: RateLimitSettings) -> None:
        """Take new ceilings (a settings reload), keeping the record of the requests already sent; a
        budget cut by 429s stays cut, under the new ceiling."""
        with self._lock:
            self._smooth = settings.smooth
            self._burst = settings.burst
            for state, ceiling in (
                (self._budgets["read"], settings.reads_per_minute),
                (self._budgets["write"], settings.writes_per_minute),
            ):
                state.ceiling = ceiling
                self._set(state, min(state.budget, float(ceiling)) if state.throttled else float(ceiling))

    def acquire(self, kind: RequestKind) -> float:
        """Wait for budget for one request of this kind; returns the seconds waited."""
        return self._budgets[kind].window.acquire()

    def ready_in(self, kind: RequestKind) -> float:
        """Seconds until a request of this kind would go without waiting (0.0: now)."""
        return self._budgets[kind].window.ready_in()

    def flush_ready_in(self) -> float:
        """Seconds until a flush (a read, then a write) could start without waiting (0.0: now). A write
        only the ceiling's spacing away counts as ready: the read and the planning come first and take as
        long (a write held back by a 429 does not)."""
        write = self.ready_in("write")
        spacing = self._spacing(self._budgets["write"].ceiling)
        return max(self.ready_in("read"), 0.0 if write <= spacing else write)

    def accepted(self, kind: RequestKind) -> None:
        """A request of this kind was not refused for quota: grow the budget by ``1 / budget``."""
        with self._lock:
            state = self._budgets[kind]
            if state.budget < state.ceiling:
                self._set(state, min(float(state.ceiling), state.budget + 1.0 / state.budget))

    def throttled(self, kind: RequestKind, retry_after: float | None = None) -> None:
        """Google answered 429 to a request of this kind: cut the budget and wait for the window."""
        with self._lock:
            state = self._budgets[kind]
            state.throttled += 1
            state.last_throttled_unix = time.time()
            # The refused request is in the window too; what Google accepted is the rest.
            accepted = max(1, state.window.recent() - 1)
            self._set(state, max(1.0, min(state.budget / 2, float(accepted))))
            if retry_after is None:
                # Google did not say when: its per-minute quota refills within a window. (A Retry-After
                # is waited for by the retry policy itself.)
                state.window.pause(self._window_seconds)
        metrics.SHEETS_THROTTLED.labels(kind, self._credential).inc()

    def _set(self, state: _Budget, budget: float) -> None:
        state.budget = budget
        state.window.set_limit(int(budget), self._spacing(budget), self._burst)
        metrics.SHEETS_BUDGET.labels(state.kind, self._credential).set(budget)

    def state(self) -> list[BudgetState]:
        """Both budgets as they stand now."""
        with self._lock:
            return [
                BudgetState(
                    kind=b.kind,
                    budget=round(b.budget, 2),
                    ceiling=b.ceiling,
                    window_seconds=self._window_seconds,
                    throttled=b.throttled,
                    last_throttled_unix=b.last_throttled_unix,
                )
                for b in self._budgets.values()
            ]


_shared: dict[tuple[str, int, int, bool, int, float], RateLimiter] = {}
_shared_lock = threading.Lock()


def shared_limiter(credential_id: str, settings: RateLimitSettings) -> RateLimiter:
    """The process-wide limiter of a credential (one per credential and budget)."""
    key = (
        credential_id,
        settings.reads_per_minute,
        settings.writes_per_minute,
        settings.smooth,
        settings.burst,
        settings.window_seconds,
    )
    with _shared_lock:
        limiter = _shared.get(key)
        if limiter is None:
            limiter = _shared[key] = RateLimiter(settings, credential=credential_id)
        return limiter
