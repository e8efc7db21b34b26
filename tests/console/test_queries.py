"""The console's queries over a SQLite store and a journal filled by hand, and the journal's own bounds
(the store's figures themselves are in the contract suite, tests/store/test_contract.py, on both backends)."""

from __future__ import annotations

import sqlite3
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.console.queries import overview, spreadsheet_link
from connector.journal import REJECTIONS_KEPT, Journal, connect_journal
from connector.store.records import now_ms
from connector.store.sqlite_schema import connect, inbox_path, migrate
from connector.store.sqlite_store import SqliteStore
from connector.sync.mapping import parse_mapping

MAPPING = """
[[companies]]
company_id = 1
name = "Shop"
spreadsheet_id = "sheet-a"
[[companies.worksheets]]
title = "Customers"
entity = "customers"
key = "Customer ID"
columns = [{ header = "Customer ID", source = "customer.id" }]
"""


def add_event(
    inbox: sqlite3.Connection, n: int, company: int, status: str, received: int, error: str = ""
) -> None:
    inbox.execute(
        "INSERT INTO events (received_ms, endpoint, company_id, event_type, body, dedup_key, content_key,"
        " status, last_error, updated_ms) VALUES (?, 'main', ?, 'customer_created', x'7b7d', ?, ?, ?, ?, ?)",
        (received, company, f"k{n}", f"k{n}", status, error or None, received),
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    opened = SqliteStore.open(tmp_path)
    yield opened
    opened.close()


@pytest.fixture
def stores(tmp_path: Path) -> tuple[sqlite3.Connection, sqlite3.Connection]:
    migrate(inbox_path(tmp_path))
    inbox = connect(inbox_path(tmp_path))
    return inbox, connect_journal(tmp_path)


def test_overview_counts_each_company_and_lists_what_needs_attention(stores, store, tmp_path):
    inbox, journal = stores
    now = now_ms()  # the journal stamps its rows with the clock
    statuses = ["done"] * 5 + ["pending"] * 2 + ["failed"] * 3
    for n, status in enumerate(statuses):
        add_event(inbox, n, 1, status, now - 5_000 - n * 1000, "spreadsheet sheet-a (HTTP 403)")
    add_event(inbox, 100, 7, "unrouted", now - 90_000)
    add_event(inbox, 101, 7, "unrouted", now - 10_000)
    inbox.execute(
        "INSERT INTO flushes VALUES ('sheet-a', '1', ?, 'HTTP 403', ?)", (now - 60_000, now - 1_000)
    )
    inbox.execute("INSERT INTO flushes VALUES ('gone', '9', NULL, 'old error', 1)")
    writes = Journal(tmp_path)
    writes.flush(
        "sheet-a", "1", 4, rows_updated=3, rows_added=1, requests=2, seconds=0.3, latencies_ms=[100, 300]
    )
    writes.sheets_request("read", "200", "sheet-a")
    writes.sheets_request("write", "429", "sheet-a")
    writes.rejection("main", "invalid", 400, "invalid event at $.data: Expected object")
    writes.close()

    mapping = parse_mapping(MAPPING, "mapping.toml")
    links = {"sheet-a": spreadsheet_link("http://127.0.0.1:8765", "https://sheets.googleapis.com", "sheet-a")}
    asked = now_ms()  # after the journal's rows
    view = overview(store, journal, mapping, now_ms=asked, links=links, reads_limit=50, writes_limit=40)

    shop, stranger = view.companies
    assert (shop.received, shop.written, shop.pending, shop.failed, shop.unrouted) == (10, 5, 2, 3, 0)
    assert shop.lag_ms == asked - (now - 5_000 - 6 * 1000)  # the older of the two pending events
    assert (stranger.company_id, stranger.spreadsheet_id, stranger.unrouted) == (7, None, 2)
    [sheet] = view.spreadsheets  # "gone" is no longer mapped: not shown
    assert sheet.link == "http://127.0.0.1:8765/view/sheet-a"
    assert (sheet.failed, sheet.last_error) == (3, "HTTP 403")
    assert sheet.last_flush is not None
    assert (sheet.last_flush.rows_updated, sheet.last_flush.rows_added) == (3, 1)
    assert [(u.company_id, u.events, u.oldest_ms) for u in view.unrouted] == [(7, 2, now - 90_000)]
    assert view.failed_total == 3
    assert {f.error for f in view.failed} == {"spreadsheet sheet-a (HTTP 403)"}
    assert (view.budget.reads, view.budget.writes, view.budget.writes_limit) == (1, 1, 40)
    assert view.budget.throttled_last_hour == 1
    assert [t.kind for t in view.throttles] == ["write"]
    assert [(r.reason, r.status) for r in view.rejections] == [("invalid", 400)]
    assert len(view.minutes) == 180
    recent = view.minutes[-3:]  # the events span a minute's boundary or two
    assert sum(m.received for m in recent) == 12
    [written] = [m for m in recent if m.written]
    assert (written.written, written.latency_avg_ms, written.latency_max_ms) == (4, 200, 300)


def test_an_error_followed_by_a_good_flush_is_history(stores, store):
    inbox, journal = stores
    now = now_ms()
    inbox.execute("INSERT INTO flushes VALUES ('sheet-a', '1', ?, 'HTTP 500', ?)", (now, now - 1))
    mapping = parse_mapping(MAPPING, "mapping.toml")
    view = overview(store, journal, mapping, now_ms=now, links={"sheet-a": ""}, reads_limit=1, writes_limit=1)
    assert view.spreadsheets[0].last_error is None


def test_links_go_to_google_or_to_the_local_viewer():
    google = "https://sheets.googleapis.com"
    assert spreadsheet_link(google, google, "1Ab/c") == "https://docs.google.com/spreadsheets/d/1Ab%2Fc/edit"
    assert spreadsheet_link("http://127.0.0.1:9/", google, "x") == "http://127.0.0.1:9/view/x"


def test_the_journal_keeps_only_the_latest_rejections(tmp_path):
    journal = Journal(tmp_path)
    for n in range(REJECTIONS_KEPT + 20):
        journal.rejection("main", "invalid", 400, f"#{n} " + "x" * 1000)
    journal.close()
    journal = Journal(tmp_path)  # pruning happens on the first write of a new journal
    journal.close()
    conn = connect_journal(tmp_path)
    rows = conn.execute("SELECT detail FROM rejections ORDER BY id").fetchall()
    assert len(rows) == REJECTIONS_KEPT
    assert rows[-1][0].startswith(f"#{REJECTIONS_KEPT + 19} ")
    assert max(len(detail) for (detail,) in rows) == 300


def test_counts_kept_between_refreshes_follow_new_events_and_status_changes(stores, store):
    from connector.console.queries import Tally

    inbox, journal = stores
    mapping = parse_mapping(MAPPING, "mapping.toml")
    tally, seen = Tally(), {}
    now = now_ms()

    def shop() -> tuple[int, int, int, int]:
        view = overview(
            store, journal, mapping, now_ms=now_ms(), links={"sheet-a": ""}, reads_limit=1, writes_limit=1,
            tally=tally, seen_minutes=seen,
        )  # fmt: skip
        company = view.companies[0]
        return company.received, company.written, company.pending, sum(m.received for m in view.minutes)

    for n in range(3):
        add_event(inbox, n, 1, "pending", now - 5 * 60_000)
    assert shop() == (3, 0, 3, 3)
    inbox.execute("UPDATE events SET status = 'done' WHERE id <= 2")
    add_event(inbox, 10, 1, "pending", now)
    assert shop() == (4, 2, 2, 4)
    assert shop() == (4, 2, 2, 4)  # nothing new: the same


@settings(max_examples=12, deadline=None)
@given(st.lists(st.integers(min_value=2, max_value=6), min_size=1, max_size=6))
def test_the_journal_opens_from_several_connections_at_its_first_start(rounds: list[int]) -> None:
    # serve and its worker child open the journal at the same moment on a new data directory: SQLite
    # answers "locked" at once to all but one switch to WAL (this fails without the retry).
    for openers in rounds:
        with tempfile.TemporaryDirectory() as folder:
            barrier = threading.Barrier(openers)
            errors: list[BaseException] = []

            def open_it(
                data_dir: Path = Path(folder),
                barrier: threading.Barrier = barrier,
                errors: list[BaseException] = errors,
            ) -> None:
                barrier.wait()
                try:
                    connect_journal(data_dir).close()
                except BaseException as exc:
                    errors.append(exc)

            threads = [threading.Thread(target=open_it) for _ in range(openers)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert errors == []
            journal = connect_journal(Path(folder))
            assert journal.execute("PRAGMA journal_mode").fetchone() == ("wal",)
            journal.close()


class LateIds:
    """Figures of a store whose ids may commit out of order for a while (as on PostgreSQL)."""

    ids_settle_ms = 1_000

    def __init__(self) -> None:
        self.events: dict[int, int] = {}  # id -> company

    def newest_event_id(self) -> int:
        return max(self.events, default=0)

    def events_by_company(self, after_id: int, up_to_id: int | None = None) -> dict[int, int]:
        counts: dict[int, int] = {}
        for event_id, company in self.events.items():
            if after_id < event_id <= (up_to_id if up_to_id is not None else event_id):
                counts[company] = counts.get(company, 0) + 1
        return counts


def test_counts_kept_by_id_take_in_a_lower_id_committed_late() -> None:
    from connector.console.queries import Tally

    store, tally = LateIds(), Tally()
    store.events = {1: 7, 3: 7}  # id 2 is taken but not committed yet
    assert tally.update(store, now=0) == {7: 2}
    store.events[2] = 8
    assert tally.update(store, now=500) == {7: 2, 8: 1}
    assert tally.up_to_id == 0  # nothing settled yet
    store.events[4] = 8
    assert tally.update(store, now=1_600) == {7: 2, 8: 2}
    assert tally.up_to_id == 3  # what was newest a settle time ago
    assert tally.update(store, now=1_700) == {7: 2, 8: 2}
