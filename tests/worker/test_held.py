"""Worksheets the writer holds back, sign-in failures and the request budget, seen from the worker."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from connector.budget_file import load_budget, save_budget
from connector.localsheets.testing import LocalSheets
from connector.settings import Settings, load_settings
from connector.sheets import SheetsSettings, connect
from connector.sheets.writer import SheetWriter
from connector.store import open_work_store
from connector.sync.mapping import load_mapping
from connector.sync.routing import Router
from connector.sync.worker import Worker
from tests import settings_files
from tests.sheets.conftest import write_service_account
from tests.worker.conftest import TOKEN, Connector
from tests.worker.test_operations import run
from tests.worker.test_worker import ORDER, store

LATER = [name for name in ORDER if name != "customer_created"]
CUSTOMER_EVENTS = 8  # of LATER, all but order_created and order_updated


@pytest.fixture
def quick(tmp_path: Path, local_sheets: LocalSheets) -> Iterator[Connector]:
    """A connector whose waiting events come back after a millisecond (not seconds)."""
    spreadsheet_id = local_sheets.new_spreadsheet()
    lines = "max_delay_ms = 1\nbackoff_ms = 1\nmax_backoff_ms = 1"
    path = settings_files.write_settings(tmp_path, local_sheets.url, spreadsheet_id, TOKEN, lines)
    yield from _opened(load_settings(path), spreadsheet_id, local_sheets)


def _opened(settings: Settings, spreadsheet_id: str, sheets: LocalSheets) -> Iterator[Connector]:
    store = open_work_store(settings)
    writer = SheetWriter.from_settings(settings.sheets, source=settings.source)
    worker = Worker(store, writer, Router.from_mapping(load_mapping(settings)), settings.worker)
    yield Connector(settings, spreadsheet_id, store, worker, sheets)
    store.close()


def set_header(connector: Connector, title: str, old: str, new: str) -> None:
    """A person renames a header cell of row 1."""
    header = connector.rows(title)[0]
    ws = connect(SheetsSettings(api_root=connector.sheets.url), environ={}).client.open_by_key(
        connector.spreadsheet_id
    )
    ws.worksheet(title).update_cell(1, header.index(old) + 1, new)


def next_pass(connector: Connector):
    time.sleep(0.01)  # past the 1 ms back-off
    return connector.worker.run_once()


def test_a_renamed_key_header_makes_its_events_wait_and_they_resume_when_it_is_back(quick, samples):
    store(quick, [samples["customer_created"]])
    quick.worker.run_once()
    set_header(quick, "Customers", "Customer ID", "Mã KH")
    customers_before = quick.rows("Customers")
    store(quick, [samples[name] for name in LATER], received_ms=1_700_000_100_000)

    report = quick.worker.run_once()
    assert (report.done, report.released, report.failed) == (2, CUSTOMER_EVENTS, 0)
    assert quick.rows("Customers") == customers_before  # nothing appended a second time
    assert len(quick.records("Orders")) == 1
    message = "key header 'Customer ID' not found in row 1 of 'Customers'"
    listed = run(quick, "failed", "list").output
    assert "no failed events" in listed
    assert "Waiting events" in listed
    assert message in " ".join(listed.split())
    assert message in " ".join(run(quick, "status").output.split())

    report = next_pass(quick)  # still renamed: the events wait again
    assert report.released == CUSTOMER_EVENTS
    set_header(quick, "Customers", "Mã KH", "Customer ID")
    report = next_pass(quick)
    assert (report.done, report.released) == (CUSTOMER_EVENTS, 0)
    assert list(quick.records("Customers")) == ["1"]
    assert quick.records("Customers")["1"]["Status"] == "closed"
    assert "Waiting events" not in run(quick, "failed", "list").output
    assert quick.store.lag() == []


def test_a_protected_tab_makes_only_its_events_wait(quick, samples):
    store(quick, [samples["customer_created"], samples["order_created"]])
    quick.worker.run_once()
    protection = quick.sheets.protect(quick.spreadsheet_id, "Orders")
    store(quick, [samples["order_updated"], samples["customer_updated"]], received_ms=1_700_000_100_000)
    report = quick.worker.run_once()
    assert (report.done, report.released) == (1, 1)
    [waiting] = quick.store.failed(waiting=True)
    assert waiting.event_type == "order_updated"
    assert "'Orders' is protected" in waiting.error
    quick.sheets.unprotect(quick.spreadsheet_id, protection)
    report = next_pass(quick)
    assert report.done == 1
    assert quick.records("Orders")["1"]["Modified"] == "2021-04-11 12:14:01"


def test_a_refused_sign_in_parks_the_events_with_what_to_check(tmp_path, local_sheets, samples):
    spreadsheet_id = local_sheets.new_spreadsheet()
    key = write_service_account(tmp_path / "key.json", token_uri=local_sheets.token_uri, key_id="revoked-key")
    path = settings_files.write_settings(
        tmp_path, local_sheets.url, spreadsheet_id, TOKEN, "max_delay_ms = 1"
    )
    path.write_text(path.read_text().replace("[sheets]\n", f'[sheets]\ncredentials_file = "{key}"\n'))
    local_sheets.set_auth(revoked_key_ids=["revoked-key"])
    try:
        connector = next(_opened(load_settings(path), spreadsheet_id, local_sheets))
        store(connector, [samples["customer_created"]])
        report = connector.worker.run_once()  # no exception escapes the pass
        assert report.failed == 1
        [failed] = connector.store.failed()
        assert "invalid_grant" in failed.error
        assert "clock" in failed.error
        online = run(connector, "check-config", "--online")
        assert online.exit_code == 1
        assert "invalid_grant" in online.output
    finally:
        local_sheets.set_auth()


def test_status_shows_the_request_budget_the_worker_saved(connector, samples):
    store(connector, [samples["customer_created"]])
    connector.worker.run_once()
    budgets = connector.worker.writer.budget()
    save_budget(connector.settings.data_dir, budgets, time.time())
    saved = load_budget(connector.settings.data_dir)
    assert saved is not None
    assert saved[1] == budgets
    output = run(connector, "status").output
    assert "Sheets request budget" in output
    assert "429s" in output
