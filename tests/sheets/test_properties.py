"""Property: whatever batches arrive, in whatever order and with whatever repetition, each key ends in
exactly one row holding its last values (real gspread over HTTP against the local server)."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.localsheets.testing import LocalSheets
from connector.sheets import CellValue, RetrySettings, SheetsSettings, SheetWriter, WorksheetBatch, connect

from .conftest import FAST_BUDGET

HEADERS = ["key", "a", "b"]
keys = st.one_of(st.integers(0, 12), st.sampled_from(["x", "y", "=z", "+1", "007"]))
values = st.one_of(st.none(), st.integers(-5, 5), st.booleans(), st.text("ab=+@-", max_size=4))
upsert = st.tuples(keys, st.fixed_dictionaries({}, optional={"a": values, "b": values}))
batches = st.lists(st.lists(upsert, max_size=12), min_size=1, max_size=4)


def expected_rows(history: list[list[tuple[Any, dict[str, CellValue]]]]) -> dict[str, dict[str, CellValue]]:
    """Last value per key and header; headers never given stay empty."""
    rows: dict[str, dict[str, CellValue]] = {}
    for batch in history:
        for key, upserted in batch:
            rows.setdefault(str(key), {}).update(upserted)
    return rows


def cell(value: CellValue) -> Any:
    """A written value as the server's admin view shows it ("" for empty)."""
    return "" if value is None else value


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=batches)
def test_repeated_keys_leave_one_row_per_key_with_its_last_values(
    local_sheets: LocalSheets, history: list[list[tuple[Any, dict[str, CellValue]]]]
) -> None:
    local_sheets.clear_faults()
    spreadsheet_id = local_sheets.new_spreadsheet()
    config = SheetsSettings(
        api_root=local_sheets.url, rate_limit=FAST_BUDGET, retry=RetrySettings(max_attempts=2)
    )
    writer = SheetWriter(connect(config, environ={}), config)
    for batch in history:
        writer.flush(spreadsheet_id, [WorksheetBatch("T", "key", HEADERS, batch)])
    wanted = expected_rows(history)
    if not wanted:
        return
    values = local_sheets.sheet_values(spreadsheet_id, "T")
    assert values[0] == HEADERS
    found: dict[str, list[Any]] = {}
    for row in values[1:]:
        text = str(row[0])
        assert text not in found
        found[text] = [*row, "", ""][1:3]
    assert found == {key: [cell(v.get("a")), cell(v.get("b"))] for key, v in wanted.items()}
    local_sheets.delete_spreadsheet(spreadsheet_id)
