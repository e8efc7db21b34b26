"""The worker follows the mapping file: a company added gets its waiting events written, a broken edit
keeps the previous mapping, and each flush is journaled for the console and logged in one line."""

from __future__ import annotations

import json
import logging

from connector.journal import connect_journal
from connector.mapping_watch import MappingWatcher
from tests.worker.test_worker import store


def test_a_company_added_to_the_mapping_file_is_written_without_a_restart(connector, samples, caplog):
    other = json.loads(samples["customer_created"])
    other["company_id"] = 42
    store(connector, [json.dumps(other).encode()])
    worker = connector.worker
    worker.watcher = MappingWatcher(connector.settings)
    assert worker.run_once().unrouted == 1

    mapping = connector.settings.data_dir.parent / "mapping.toml"
    text = mapping.read_text(encoding="utf-8")
    mapping.write_text(text.replace("company_id = 1 ", "company_id = 42 "), encoding="utf-8")
    with caplog.at_level(logging.INFO):
        worker.follow_mapping()
        report = worker.run_once()
    assert report.done == 1
    assert "company 42 is mapped now: 1 unrouted events queued again" in caplog.text
    assert [row[0] for row in connector.rows("Customers")[1:]] == [1]
    flush_line = next(
        r.getMessage()
        for r in caplog.records
        if r.name == "connector.sync.worker" and " — " in r.getMessage()
    )
    assert flush_line.startswith(f"{connector.spreadsheet_id}: Customers 1 added; Events 1 added — ")
    assert flush_line.endswith(" s, 3 requests")


def test_a_broken_mapping_edit_keeps_the_previous_mapping(connector, caplog):
    watcher = MappingWatcher(connector.settings)
    mapping = connector.settings.data_dir.parent / "mapping.toml"
    mapping.write_text(
        mapping.read_text(encoding="utf-8") + "\n[[companies]]\ncompany_id = 'x'\n", encoding="utf-8"
    )
    with caplog.at_level(logging.ERROR):
        assert watcher.check() is None
        assert watcher.check() is None  # logged once
    assert watcher.mapping.companies[0].company_id == 1
    assert watcher.error is not None
    assert "companies[1].company_id" in watcher.error
    assert caplog.text.count("cannot be used") == 1


def test_flushes_and_requests_are_journaled(connector, samples, tmp_path):
    from connector.journal import Journal

    journal = Journal(connector.settings.data_dir)
    connector.worker.journal = journal
    connector.worker.writer.on_request = journal.sheets_request
    store(connector, [samples["customer_created"], samples["order_created"]])
    connector.worker.run_once()
    journal.close()
    conn = connect_journal(connector.settings.data_dir)
    [(events, added, requests, error)] = conn.execute(
        "SELECT events, rows_added, requests, error FROM flush_log"
    )
    assert (events, added, error) == (2, 4, None)
    assert conn.execute("SELECT COUNT(*) FROM sheets_requests").fetchone() == (requests,)
