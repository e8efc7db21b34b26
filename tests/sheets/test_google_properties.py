"""Properties of Google's limits as the writer handles them: keys around 2**53, text cut to fit a cell, and
the adaptive request budget."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.localsheets.testing import LocalSheets
from connector.sheets import (
    RateLimiter,
    RateLimitSettings,
    RetrySettings,
    SheetsSettings,
    SheetWriter,
    WorksheetBatch,
    connect,
)
from connector.sheets.plan import CUT_MARKER, cut_text, utf16_units

from .conftest import FAST_BUDGET

EDGE = 2**53
# Integers on both sides of 2**53 (where doubles stop being exact), as numbers and as text.
big_keys = st.one_of(st.integers(EDGE - 3, EDGE + 3), st.integers(-EDGE - 3, -EDGE + 3).map(str))
big_batches = st.lists(st.lists(big_keys, min_size=1, max_size=6), min_size=1, max_size=3)


def key_text(cell: Any) -> str:
    """A key cell as the server's admin view shows it, as text (a double 2**53 shows as a float)."""
    return str(int(cell)) if isinstance(cell, float) and cell.is_integer() else str(cell)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=big_batches)
def test_keys_around_2_53_each_keep_one_row(
    local_sheets: LocalSheets, history: list[list[int | str]]
) -> None:
    spreadsheet_id = local_sheets.new_spreadsheet()
    config = SheetsSettings(
        api_root=local_sheets.url, rate_limit=FAST_BUDGET, retry=RetrySettings(max_attempts=2)
    )
    writer = SheetWriter(connect(config, environ={}), config)
    for batch in history:
        writer.flush(
            spreadsheet_id,
            [WorksheetBatch("T", "key", ["key", "n"], [(k, {"key": k, "n": 1}) for k in batch])],
        )
    rows = [key_text(row[0]) for row in local_sheets.sheet_values(spreadsheet_id, "T")[1:]]
    assert sorted(rows) == sorted({str(k) for batch in history for k in batch})
    local_sheets.delete_spreadsheet(spreadsheet_id)


@given(text=st.text(alphabet="ab\U0001f600é", max_size=120), limit=st.integers(40, 90))
def test_cut_text_fits_keeps_a_prefix_and_cuts_no_more_than_needed(text: str, limit: int) -> None:
    cut = cut_text(text, limit)
    assert utf16_units(cut) <= limit
    if utf16_units(text) <= limit:
        assert cut == text
        return
    kept = cut.removesuffix(CUT_MARKER)
    assert cut.endswith(CUT_MARKER)
    assert text.startswith(kept)
    assert utf16_units(text[: len(kept) + 1] + CUT_MARKER) > limit  # one more character would not fit


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@given(steps=st.lists(st.sampled_from(["send", "accepted", "throttled", "later"]), max_size=80))
def test_the_budget_stays_between_one_and_the_ceiling(steps: list[str]) -> None:
    clock = Clock()
    limiter = RateLimiter(
        RateLimitSettings(reads_per_minute=20, writes_per_minute=20), clock=clock, sleep=clock.sleep
    )
    throttled = 0
    for step in steps:
        if step == "send":
            limiter.acquire("write")
        elif step == "accepted":
            limiter.accepted("write")
        elif step == "throttled":
            limiter.throttled("write")
            throttled += 1
            assert limiter.ready_in("write") > 0  # nothing more until the window has passed
        else:
            clock.now += 7.0
        [_, write] = limiter.state()
        assert 1 <= write.budget <= write.ceiling == 20
        assert write.throttled == throttled
