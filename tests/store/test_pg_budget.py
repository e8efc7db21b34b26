"""The Sheets request budget kept in PostgreSQL: workers on several hosts together stay under it."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from connector.settings import parse_settings
from connector.sheets.config import RateLimitSettings
from connector.sheets.pool import choose
from connector.store.pg_budget import WINDOW_MS, PgBudget, window_delay, writer_for
from tests.sheets.conftest import write_service_account
from tests.store.postgres import fresh_schema


def test_workers_of_one_credential_hammering_at_once_get_exactly_the_budget_between_them() -> None:
    budget = RateLimitSettings(reads_per_minute=25, writes_per_minute=7, smooth=False)
    with fresh_schema() as url:
        workers = [PgBudget(url, "robot@example.iam", budget) for _ in range(4)]
        other = PgBudget(url, "other@example.iam", budget)
        admitted = {"read": 0, "write": 0}
        count = threading.Lock()
        deadline = time.monotonic() + 1.0

        def hammer(limiter: PgBudget) -> None:
            while time.monotonic() < deadline:
                for kind in ("read", "write"):
                    if limiter.try_acquire(kind) == 0.0:  # type: ignore[arg-type]
                        with count:
                            admitted[kind] += 1

        threads = [threading.Thread(target=hammer, args=(w,)) for w in workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        try:
            assert admitted == {"read": 25, "write": 7}
            assert workers[0].ready_in("write") > 55  # the next one only when the window moves on
            assert other.try_acquire("write") == 0.0  # another credential has its own budget
        finally:
            for limiter in [*workers, other]:
                limiter.close()


def test_a_smooth_budget_spaces_requests_across_workers() -> None:
    with fresh_schema() as url:
        first, second = (PgBudget(url, "robot@example.iam", RateLimitSettings()) for _ in range(2))
        try:
            for worker in (first, second, first, second):
                assert worker.try_acquire("read") == 0.0
            # 50 a minute, bursts of 4: the fifth goes 4 x 1.2 s after the first, whichever worker sends.
            wait = second.try_acquire("read")
            assert 4.5 < wait <= 4.8
            assert second.try_acquire("write") == 0.0
        finally:
            first.close()
            second.close()


@given(
    sent=st.lists(st.integers(0, WINDOW_MS - 1), max_size=8, unique=True),
    limit=st.integers(1, 8),
    spacing=st.sampled_from([0, 1_200]),
)
def test_a_request_admitted_after_the_delay_never_overfills_a_window(
    sent: list[int], limit: int, spacing: int
) -> None:
    now = WINDOW_MS
    in_window = sorted(t for t in sent if t > now - WINDOW_MS)[-limit:] if sent else []
    delay = window_delay(
        now, len(in_window), min(in_window, default=None), max(in_window, default=None), limit, spacing
    )
    later = now + delay
    still = [t for t in in_window if t > later - WINDOW_MS]
    assert len(still) < limit
    if in_window:
        assert later >= max(in_window) + spacing


def test_a_pool_of_credentials_has_one_budget_each_in_the_database(tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:8]
    emails = [f"pg-pool-{i}-{run}@test.iam.gserviceaccount.com" for i in range(2)]
    for i, email in enumerate(emails):
        write_service_account(tmp_path / f"sa-{i}.json", key_id=f"k{i}", client_email=email)
    with fresh_schema() as url:
        text = (
            '[[endpoints]]\nname = "main"\ntoken = "abcdefghijklmnop1234"\nvalidation_key = "k"\n'
            '[store]\nurl = "env:TEST_STORE_URL"\n'
            '[sheets]\napi_root = "http://127.0.0.1:9"\ncredentials = ["sa-0.json", "sa-1.json"]\n'
            "rate_limit = { writes_per_minute = 2, smooth = false }\n"
        )
        settings = parse_settings(text, str(tmp_path / "settings.toml"), environ={"TEST_STORE_URL": url})
        writer = writer_for(settings)
        budgets = [member.limiter for member in writer.pool.members]
        try:
            assert all(isinstance(budget, PgBudget) for budget in budgets)
            first = next(f"s{n}" for n in range(100) if choose(f"s{n}", emails) == 0)
            second = next(f"s{n}" for n in range(100) if choose(f"s{n}", emails) == 1)
            assert [budgets[0].acquire("write") for _ in range(2)] == [0.0, 0.0]
            assert writer.ready_in(first) > 55  # the first credential's writes of this minute are spent
            assert writer.ready_in(second) == 0.0  # the second's are its own
            # Another worker (process, host) of the first credential sees the same spent budget.
            again = writer_for(settings)
            assert again.ready_in(first) > 55
            assert again.ready_in(second) == 0.0
            budgets += [member.limiter for member in again.pool.members]
        finally:
            for budget in budgets:
                assert isinstance(budget, PgBudget)
                budget.close()
