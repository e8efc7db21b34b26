"""The request budget per credential: never more than the limit in any 60-second window."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.sheets import SheetsSettings, SheetWriter, connect
from connector.sheets.config import RateLimitSettings
from connector.sheets.ratelimit import RateLimiter, SlidingWindow, shared_limiter


class FakeClock:
    """A clock that only moves when someone sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_requests_within_the_budget_do_not_wait() -> None:
    clock = FakeClock()
    window = SlidingWindow(3, clock=clock, sleep=clock.sleep)
    assert [window.acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert clock.slept == []


def test_the_request_over_the_budget_waits_until_the_oldest_leaves_the_window() -> None:
    clock = FakeClock()
    window = SlidingWindow(2, clock=clock, sleep=clock.sleep)
    window.acquire()
    clock.now += 10
    window.acquire()
    assert window.acquire() == 50.0
    assert window.acquire() == 10.0


@settings(max_examples=60, deadline=None)
@given(
    limit=st.integers(1, 6),
    gaps=st.lists(st.floats(0, 30, allow_nan=False), min_size=1, max_size=40),
)
def test_no_window_of_sixty_seconds_ever_holds_more_than_the_limit(limit: int, gaps: list[float]) -> None:
    clock = FakeClock()
    window = SlidingWindow(limit, clock=clock, sleep=clock.sleep)
    sent: list[float] = []
    for gap in gaps:
        clock.now += gap
        window.acquire()
        sent.append(clock.now)
    for i, start in enumerate(sent):
        inside = [t for t in sent[i:] if t < start + 60]
        assert len(inside) <= limit


def test_reads_and_writes_have_separate_budgets() -> None:
    clock = FakeClock()
    limiter = RateLimiter(
        RateLimitSettings(reads_per_minute=1, writes_per_minute=1), clock=clock, sleep=clock.sleep
    )
    assert limiter.acquire("read") == 0.0
    assert limiter.acquire("write") == 0.0
    assert limiter.acquire("read") == 60.0


def test_threads_share_one_budget() -> None:
    window = SlidingWindow(200)
    results: list[float] = []
    lock = threading.Lock()

    def take() -> None:
        for _ in range(25):
            waited = window.acquire()
            with lock:
                results.append(waited)

    threads = [threading.Thread(target=take) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [0.0] * 200
    assert window.try_acquire() > 0


def test_smooth_budget_spaces_requests_evenly_instead_of_bursting() -> None:
    clock = FakeClock()
    limiter = RateLimiter(
        RateLimitSettings(reads_per_minute=50, writes_per_minute=50, burst=1), clock=clock, sleep=clock.sleep
    )
    waits = [limiter.acquire("read") for _ in range(60)]
    # Never the whole budget at once and then most of a minute of stall: one request every 1.2 s.
    assert waits[0] == 0.0
    assert max(waits) <= 1.2 + 1e-9
    assert sum(waits) == pytest.approx(59 * 1.2)
    assert limiter.acquire("write") == 0.0  # the other kind has its own spacing


def test_a_flushs_few_writes_go_back_to_back_and_the_next_few_a_burst_of_spacings_later() -> None:
    clock = FakeClock()
    limiter = RateLimiter(RateLimitSettings(writes_per_minute=50), clock=clock, sleep=clock.sleep)
    # 50 a minute, bursts of 4 (the default): four at once, then each waits for the fourth before it.
    assert [limiter.acquire("write") for _ in range(4)] == [0.0] * 4
    assert limiter.acquire("write") == pytest.approx(4.8)
    assert [limiter.acquire("write") for _ in range(3)] == [0.0] * 3
    clock.now += 10  # a quiet spell: the next burst need not wait
    assert [limiter.acquire("write") for _ in range(4)] == [0.0] * 4


@settings(max_examples=60, deadline=None)
@given(
    burst=st.integers(1, 5),
    gaps=st.lists(st.floats(0, 5, allow_nan=False), min_size=1, max_size=60),
)
def test_any_burst_of_requests_in_a_row_spans_its_spacings_and_no_minute_holds_more_than_the_budget(
    burst: int, gaps: list[float]
) -> None:
    clock = FakeClock()
    limit, spacing = 20, 3.0
    window = SlidingWindow(limit, min_interval=spacing, burst=burst, clock=clock, sleep=clock.sleep)
    sent: list[float] = []
    for gap in gaps:
        clock.now += gap
        window.acquire()
        sent.append(clock.now)
    for index in range(burst, len(sent)):
        assert sent[index] - sent[index - burst] >= burst * spacing - 1e-9
    for index, first in enumerate(sent):
        assert sum(1 for t in sent[index:] if t < first + 60) <= limit


def test_bursty_budget_when_smoothing_is_off() -> None:
    clock = FakeClock()
    budget = RateLimitSettings(reads_per_minute=50, writes_per_minute=50, smooth=False)
    limiter = RateLimiter(budget, clock=clock, sleep=clock.sleep)
    assert [limiter.acquire("read") for _ in range(50)] == [0.0] * 50
    assert limiter.acquire("read") == 60.0


def test_one_limiter_per_credential_and_budget() -> None:
    budget = RateLimitSettings(reads_per_minute=7, writes_per_minute=9)
    assert shared_limiter("a@x", budget) is shared_limiter("a@x", budget)
    assert shared_limiter("a@x", budget) is not shared_limiter("b@x", budget)


def test_a_429_cuts_the_budget_to_what_google_accepted_and_waits_for_the_window() -> None:
    clock = FakeClock()
    limiter = RateLimiter(
        RateLimitSettings(reads_per_minute=50, writes_per_minute=50), clock=clock, sleep=clock.sleep
    )
    for _ in range(9):
        limiter.acquire("write")
    limiter.throttled("write")  # the 9th was refused: Google let 8 through this minute
    [read, write] = limiter.state()
    assert (write.budget, write.ceiling, write.throttled) == (8, 50, 1)
    assert write.last_throttled_unix is not None
    assert read.budget == 50  # reads have a quota of their own
    assert limiter.ready_in("write") == pytest.approx(60.0)
    assert limiter.acquire("write") == pytest.approx(60.0)


def test_repeated_429s_halve_the_budget_down_to_one() -> None:
    clock = FakeClock()
    limiter = RateLimiter(
        RateLimitSettings(reads_per_minute=40, writes_per_minute=40, smooth=False),
        clock=clock,
        sleep=clock.sleep,
    )
    budgets = []
    for _ in range(7):
        for _ in range(40):
            limiter.acquire("read")
            if limiter.ready_in("read"):
                break
        limiter.throttled("read")
        budgets.append(limiter.state()[0].budget)
    assert budgets == sorted(budgets, reverse=True)
    assert budgets[-1] == 1


def test_accepted_requests_grow_the_budget_back_by_about_one_per_window_up_to_the_ceiling() -> None:
    clock = FakeClock()
    limiter = RateLimiter(
        RateLimitSettings(reads_per_minute=10, writes_per_minute=10), clock=clock, sleep=clock.sleep
    )
    limiter.acquire("read")
    limiter.acquire("read")
    limiter.throttled("read")
    assert limiter.state()[0].budget == 1
    for _ in range(3):
        limiter.acquire("read")
        limiter.accepted("read")
    assert limiter.state()[0].budget == pytest.approx(2.9)  # 1 -> 2 -> 2.5 -> 2.9: +1 / budget each
    for _ in range(500):
        limiter.accepted("read")
    assert limiter.state()[0].budget == 10


def test_a_flush_is_not_due_while_writes_wait_for_the_quota_window() -> None:
    settings = SheetsSettings(api_root="http://127.0.0.1:9")
    limiter = RateLimiter(settings.rate_limit)
    writer = SheetWriter(connect(settings, environ={}), settings, limiter=limiter)
    assert writer.ready_in() == 0.0
    limiter.throttled("write")  # a 429 to a write: nothing more is written for a minute
    assert 59 < writer.ready_in() <= 60


def test_a_flush_may_start_while_its_write_is_only_the_smoothing_interval_away() -> None:
    settings = SheetsSettings(api_root="http://127.0.0.1:9", rate_limit=RateLimitSettings(burst=1))
    limiter = RateLimiter(settings.rate_limit)
    writer = SheetWriter(connect(settings, environ={}), settings, limiter=limiter)
    limiter.acquire("write")  # the last write of a flush: the next may go 1.2 s later (50 a minute)
    assert 0 < limiter.ready_in("write") <= 1.2
    assert writer.ready_in() == 0.0  # its read and planning come first
    limiter.acquire("read")
    assert 0 < writer.ready_in() <= 1.2  # but a read goes only when its own budget lets it
