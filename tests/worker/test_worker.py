"""The worker folds inbox events into the sheet, acknowledging only what it wrote."""

from __future__ import annotations

import asyncio
import json
import sqlite3

from connector.events import decode_body, subject_of
from connector.store.records import InboxRecord
from connector.store.sqlite_intake import SqliteInbox
from connector.store.sqlite_schema import inbox_path


def store(connector, bodies: list[bytes], received_ms: int = 1_700_000_000_000) -> None:
    inbox = SqliteInbox.open(connector.settings.data_dir)
    records = []
    for i, body in enumerate(bodies):
        decoded = decode_body(body)
        records.append(
            InboxRecord(
                received_ms=received_ms + i,
                endpoint="main",
                company_id=decoded.event.company_id,
                event_type=decoded.event.event_type,
                event_ms=decoded.event.timestamp,
                body=body,
                content_key=decoded.content_key,
                subject=subject_of(decoded.event),
            )
        )
    try:
        asyncio.run(inbox.put_many(records))
    finally:
        inbox.close()


ORDER = [
    "customer_created",
    "customer_updated",
    "customer_took",
    "customer_transferred",
    "customer_closed",
    "tag_set",
    "tag_unset",
    "note_changed",
    "customer_pipeline_updated",
    "order_created",
    "order_updated",
]


def test_the_eleven_samples_give_the_expected_rows(connector, samples):
    store(connector, [samples[name] for name in ORDER])
    report = connector.worker.run_once()
    assert (report.claimed, report.done, report.failed) == (11, 11, 0)

    customers = connector.records("Customers")
    assert list(customers) == ["1"]
    row = customers["1"]
    assert row["Name"] == "DooPage customer"  # the untimed events were received last
    assert row["Status"] == "closed"
    assert row["Assigned to"] == "Doopage staff 2"
    assert row["Closed by"] == "Doopage staff"
    assert row["Tags"] == ""  # unset after set
    assert row["Note"] == "Customer note"
    assert row["Pipeline stage"] == "Re-target"

    orders = connector.records("Orders")
    assert list(orders) == ["1"]
    assert orders["1"]["Created"] == "2021-04-11 12:14:00"  # 1618118040 s in Asia/Ho_Chi_Minh
    assert orders["1"]["Modified"] == "2021-04-11 12:14:01"
    assert orders["1"]["Picking status"] == "pending"
    assert orders["1"]["Payment status"] == "paid"

    events = connector.rows("Events")
    assert len(events) == 1 + 11
    assert connector.store.lag() == []


def test_a_second_pass_over_the_same_events_changes_nothing(connector, samples):
    store(connector, [samples[name] for name in ORDER])
    connector.worker.run_once()
    before = {title: connector.rows(title) for title in ("Customers", "Orders", "Events")}
    # As if the worker had died between the sheet write and the acknowledgement.
    conn = sqlite3.connect(inbox_path(connector.settings.data_dir))
    with conn:
        conn.execute("UPDATE events SET status = 'pending'")
    conn.close()
    report = connector.worker.run_once()
    assert report.done == 11
    assert report.sheets_requests == 2  # one read, one write
    assert {title: connector.rows(title) for title in before} == before


def test_unmapped_company_is_kept_as_unrouted(connector, samples):
    other = json.loads(samples["customer_created"])
    other["company_id"] = 42
    store(connector, [json.dumps(other).encode()])
    report = connector.worker.run_once()
    assert report.unrouted == 1
    assert connector.store.requeue("unrouted", company_id=42) == 1


def test_a_missing_spreadsheet_parks_the_events_as_failed(connector, samples):
    connector.sheets.delete_spreadsheet(connector.spreadsheet_id)
    store(connector, [samples["customer_created"]])
    report = connector.worker.run_once()
    assert report.failed == 1
    [failed] = connector.store.failed()
    assert "404" in failed.error or "not found" in failed.error.lower()


def test_a_flush_waits_for_the_request_budget_before_claiming(connector, samples):
    from connector.sheets import connect
    from connector.sheets.config import RateLimitSettings
    from connector.sheets.ratelimit import RateLimiter
    from connector.sheets.writer import SheetWriter
    from connector.sync.worker import Worker

    class Clock:
        now = 1000.0

        def __call__(self) -> float:
            return self.now

        def sleep(self, seconds: float) -> None:
            self.now += seconds

    clock = Clock()
    budget = RateLimitSettings(reads_per_minute=2, writes_per_minute=2, burst=1)
    limiter = RateLimiter(budget, clock=clock, sleep=clock.sleep)
    sheets = connector.settings.sheets
    writer = SheetWriter(connect(sheets, environ={}), sheets, limiter=limiter)
    worker = Worker(connector.store, writer, connector.worker.router, connector.settings.worker)
    store(connector, [samples["customer_created"]])
    assert worker.due()
    worker.run_once()  # the first flush into a new spreadsheet reads twice (to create the worksheets)
    store(connector, [samples["order_created"]], received_ms=1_700_000_100_000)
    assert worker.due()
    assert worker.run_once().claimed == 0  # an event is waiting, but the flush would wait for the budget
    clock.now += 30  # a budget of 2 per minute: one request every 30 s
    assert worker.run_once().done == 1
