"""Operator commands: status, failed list/retry, replay, and the worker process's clean stop."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner

from connector.cli import main
from connector.settings import load_settings
from connector.store.sqlite_schema import inbox_path
from connector.sync.worker import WorkerThread
from tests.worker.test_worker import ORDER, store


def run(connector, *args: str):
    # A wide terminal, so that rich's tables show ids whole.
    return CliRunner(env={"COLUMNS": "200"}).invoke(
        main, [*args, "--config", connector.settings.source], catch_exceptions=False
    )


def test_status_shows_statuses_lag_and_last_flush(connector, samples):
    store(connector, [samples[name] for name in ORDER])
    before = run(connector, "status")
    assert before.exit_code == 0
    assert "pending" in before.output
    assert "Lag per company" in before.output
    connector.worker.run_once()
    after = run(connector, "status").output
    assert "No pending events." in after
    assert connector.spreadsheet_id in after
    assert "worker-test-token" not in before.output + after  # the path token is a secret


def test_failed_events_are_listed_then_retried_into_the_sheet(connector, samples):
    connector.sheets.delete_spreadsheet(connector.spreadsheet_id)
    store(connector, [samples["customer_created"]])
    connector.worker.run_once()
    listed = run(connector, "failed", "list")
    assert "customer_created" in listed.output
    assert "404" in listed.output or "not found" in listed.output.lower()

    connector.sheets.create_spreadsheet(connector.spreadsheet_id)  # the operator fixed the cause
    assert "1 failed event queued again" in run(connector, "failed", "retry").output
    assert connector.worker.run_once().done == 1
    assert list(connector.records("Customers")) == ["1"]
    assert run(connector, "failed", "list").output.strip() == "no failed events"


def test_replay_rebuilds_a_damaged_sheet_and_changes_nothing_the_second_time(connector, samples):
    store(connector, [samples[name] for name in ORDER])
    connector.worker.run_once()
    expected = {title: connector.rows(title) for title in ("Customers", "Orders", "Events")}

    # A person wipes a cell and a whole row's name; replay writes them back.
    client = connector.sheets.gspread_client()
    sheet = client.open_by_key(connector.spreadsheet_id).worksheet("Customers")
    sheet.update_acell("B2", "")
    result = run(connector, "replay", "--company", "1")
    assert result.exit_code == 0, result.output
    assert "11 events folded into 2 customers and orders" in result.output
    assert {title: connector.rows(title) for title in expected} == expected

    connector.sheets.reset_counts()
    run(connector, "replay", "--company", "1")
    assert {title: connector.rows(title) for title in expected} == expected


def test_replay_skips_a_stored_body_that_no_longer_decodes(connector, samples):
    store(connector, [samples[name] for name in ORDER])
    connector.worker.run_once()
    expected = {title: connector.rows(title) for title in ("Customers", "Orders")}
    # A body this version cannot read any more (a damaged row, or a format a later DooPage changed).
    with sqlite3.connect(inbox_path(connector.settings.data_dir)) as conn:
        conn.execute("UPDATE events SET body = ? WHERE event_type = 'note_changed'", (b'{"event_type": 1}',))

    result = run(connector, "replay", "--company", "1")
    assert result.exit_code == 0, result.output
    assert "10 events folded into 2 customers and orders" in result.output
    assert connector.rows("Orders") == expected["Orders"]


def test_replay_onto_a_new_spreadsheet(connector, samples):
    store(connector, [samples[name] for name in ORDER])
    connector.worker.run_once()
    new_id = connector.sheets.new_spreadsheet()
    result = run(connector, "replay", "--company", "1", "--spreadsheet", new_id)
    assert result.exit_code == 0, result.output
    for title in ("Customers", "Orders", "Events"):
        assert connector.sheets.sheet_values(new_id, title) == connector.rows(title)


def test_replay_of_an_unmapped_company_is_a_clear_error(connector):
    result = CliRunner().invoke(main, ["replay", "--company", "99", "--config", connector.settings.source])
    assert result.exit_code == 2
    assert "company 99 has no mapping" in result.output


def test_worker_process_stops_cleanly_on_sigterm_and_writes_what_it_claimed(connector, samples):
    store(connector, [samples[name] for name in ORDER])
    process = subprocess.Popen(
        [sys.executable, "-m", "connector", "worker", "--config", connector.settings.source],
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while connector.store.lag() and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0, process.stderr.read() if process.stderr else ""
    assert connector.store.lag() == []
    assert list(connector.records("Customers")) == ["1"]


def test_unrouted_events_are_written_once_their_company_is_mapped(connector, samples):
    other = json.loads(samples["customer_created"])
    other["company_id"] = 7
    store(connector, [json.dumps(other).encode()])
    assert connector.worker.run_once().unrouted == 1
    assert "unrouted" in run(connector, "status").output

    # The operator maps company 7 (to a spreadsheet of its own) and restarts the worker.
    second = connector.sheets.new_spreadsheet()
    mapping_file = Path(connector.settings.source).parent / "mapping.toml"
    text = mapping_file.read_text()
    company_block = text[text.index("\n[[companies]]") :]
    company_block = company_block.replace("company_id = 1", "company_id = 7")
    company_block = company_block.replace(connector.spreadsheet_id, second)
    mapping_file.write_text(text + "\n" + company_block)
    thread = WorkerThread(load_settings(connector.settings.source))
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while connector.store.lag() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        thread.stop()
    assert [row[0] for row in connector.sheets.sheet_values(second, "Customers")] == ["Customer ID", 1]


def test_demo_prints_the_worksheets_from_the_samples():
    result = CliRunner(env={"COLUMNS": "250"}).invoke(main, ["demo", "--config", "config/example.toml"])
    assert result.exit_code == 0, result.output
    assert "tag_unset                    200 stored" in result.output
    assert "doopage-demo / Customers" in result.output
    assert "DooPage customer" in result.output
    assert "Doopage staff 2" in result.output  # the transferred-to staff is the assignee
    assert "doopage-demo / Orders" in result.output


def test_events_made_from_csv_rows_stay_out_of_the_events_log(connector, samples):
    import asyncio

    from connector.events import decode_body, subject_of
    from connector.store.records import CSV_IMPORT_ENDPOINT, InboxRecord
    from connector.store.sqlite_intake import SqliteInbox

    decoded = decode_body(samples["customer_updated"])
    inbox = SqliteInbox.open(connector.settings.data_dir)
    record = InboxRecord(
        received_ms=1_700_000_000_000,
        endpoint=CSV_IMPORT_ENDPOINT,
        company_id=1,
        event_type="customer_updated",
        event_ms=decoded.event.timestamp,
        body=samples["customer_updated"],
        content_key=decoded.content_key,
        subject=subject_of(decoded.event),
    )
    asyncio.run(inbox.put(record))
    inbox.close()
    assert connector.worker.run_once().done == 1
    assert list(connector.records("Customers")) == ["1"]
    assert logged_rows(connector) == []
    run(connector, "replay", "--company", "1")
    assert logged_rows(connector) == []


def logged_rows(connector) -> list[list[object]]:
    """The Events worksheet's data rows; none when the worksheet was never created."""
    from connector.localsheets.testing import LocalSheetsAdminError

    try:
        return connector.rows("Events")[1:]
    except LocalSheetsAdminError:
        return []
