"""The service and the local Sheets server as real processes over HTTP: from webhooks to sheet cells."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import datetime
from zoneinfo import ZoneInfo

import httpx
from loadgen import Delivery, SendResult, send_each

from connector.events import decode_body
from connector.localsheets.testing import LocalSheets
from tests.e2e.harness import (
    PATH,
    Service,
    assert_sheet_is,
    deliveries,
    expected_sheet,
    history,
    sheet_rows,
)

VIETNAM = ZoneInfo("Asia/Ho_Chi_Minh")  # the shipped mapping's timezone
# DooPage's documented order of the sample events; the four without a timestamp are received last.
SAMPLE_ORDER = (
    "customer_created",
    "customer_updated",
    "customer_took",
    "customer_transferred",
    "customer_closed",
    "order_created",
    "order_updated",
    "tag_set",
    "tag_unset",
    "note_changed",
    "customer_pipeline_updated",
)
CUSTOMER_HEADERS = [
    "Customer ID",
    "Name",
    "Status",
    "Assigned to",
    "Closed by",
    "Tags",
    "Note",
    "Pipeline stage",
    "First seen",
    "Last activity",
    "Last event",
]
ORDER_HEADERS = ["Order ID", "Created", "Modified", "Picking status", "Payment status", "Last activity"]


def send(service: Service, bodies: list[bytes], connections: int = 8) -> SendResult:
    """POST every body over ``connections`` concurrent connections, as fast as the service answers."""
    return asyncio.run(send_each("127.0.0.1", service.port, PATH, bodies, connections))


def test_the_eleven_samples_give_the_expected_customer_and_order_rows(
    service: Service, sheets_server: LocalSheets, spreadsheet_id: str, samples: dict[str, bytes]
) -> None:
    service.start()
    started = datetime.now(VIETNAM).replace(tzinfo=None, microsecond=0)
    with httpx.Client(base_url=service.base, timeout=10) as http:
        for event_type in SAMPLE_ORDER:
            response = http.post(
                PATH, content=samples[event_type], headers={"content-type": "application/json"}
            )
            assert response.json() == {"status": "stored", "event_type": event_type}
    assert service.wait_settled(11) == {"done": 11}

    customers = sheet_rows(sheets_server, spreadsheet_id, "Customers", CUSTOMER_HEADERS, "Customer ID")
    assert list(customers) == ["1"]
    customer = dict(zip(CUSTOMER_HEADERS, customers["1"], strict=True))
    last_activity = customer.pop("Last activity")
    last_event = customer.pop("Last event")
    assert customer == {
        "Customer ID": 1,
        "Name": "DooPage customer",  # from the untimed events, which count as received after the timed ones
        "Status": "closed",
        "Assigned to": "Doopage staff 2",
        "Closed by": "Doopage staff",
        "Tags": "",  # tag_unset removed both tags that tag_set added
        "Note": "Customer note",
        "Pipeline stage": "Re-target",
        "First seen": "2021-04-11 12:14:00",  # 1618118040123 ms in Asia/Ho_Chi_Minh
    }
    # The latest event is one of the untimed ones, dated when the service received it.
    assert last_event in {"tag_set", "tag_unset", "note_changed", "customer_pipeline_updated"}
    received = datetime.strptime(last_activity, "%Y-%m-%d %H:%M:%S")
    assert started <= received <= datetime.now(VIETNAM).replace(tzinfo=None)

    orders = sheet_rows(sheets_server, spreadsheet_id, "Orders", ORDER_HEADERS, "Order ID")
    assert orders == {
        "1": [1, "2021-04-11 12:14:00", "2021-04-11 12:14:01", "pending", "paid", "2021-04-11 12:14:00"]
    }
    events = sheets_server.sheet_values(spreadsheet_id, "Events")
    assert sorted(row[1] for row in events[1:]) == sorted(SAMPLE_ORDER)
    assert service.stop() == 0


def test_5000_shuffled_duplicated_events_from_concurrent_senders_give_exactly_the_expected_sheet(
    service: Service, sheets_server: LocalSheets, spreadsheet_id: str
) -> None:
    events = history(seed=5, events=5000, customers=500, orders=300)
    sent = deliveries(events, seed=6, duplicate_rate=0.2)
    service.start()
    result = send(service, sent)
    assert len(result.acknowledged()) == len(sent)
    assert service.wait_settled(len(events)) == {"done": len(events)}

    expected = expected_sheet(service.settings, events)
    assert (len(expected["Customers"]), len(expected["Orders"]), len(expected["Events"])) == (500, 300, 5000)
    assert_sheet_is(sheets_server, spreadsheet_id, service.settings, expected)
    assert service.stop() == 0


def test_kill_9_during_a_load_then_a_restart_reflects_every_acknowledged_event_once(
    service: Service, sheets_server: LocalSheets, spreadsheet_id: str
) -> None:
    events = history(seed=7, events=3000, customers=300, orders=200)
    sent = deliveries(events, seed=8, duplicate_rate=0.1)
    acknowledged: list[int] = []
    outcome: list[SendResult] = []

    def on_ack(delivery: Delivery) -> None:
        acknowledged.append(delivery.index)

    def load() -> None:
        outcome.append(asyncio.run(send_each("127.0.0.1", service.port, PATH, sent, 8, on_ack=on_ack)))

    service.start()
    sender = threading.Thread(target=load)
    sender.start()
    # Mid-load: the worker is claiming and flushing all the while (it flushes every 20 ms).
    while len(acknowledged) < len(sent) // 3 and sender.is_alive():
        time.sleep(0.005)
    service.kill()
    sender.join(timeout=30)
    [result] = outcome
    acked = {decode_body(sent[i]).content_key for i in result.acknowledged()}
    assert 0 < len(result.acknowledged()) < len(sent)

    service.start()
    stored = service.stored_bodies()
    assert acked <= {decode_body(body).content_key for body in stored}
    assert service.wait_settled(len(stored)) == {"done": len(stored)}
    # Stored includes any event committed whose answer the kill cut off: the sheet shows each exactly once.
    assert_sheet_is(sheets_server, spreadsheet_id, service.settings, expected_sheet(service.settings, stored))
    assert service.stop() == 0


def test_20_percent_injected_429_and_503_answers_give_the_same_final_sheet(
    service: Service, sheets_server: LocalSheets, spreadsheet_id: str
) -> None:
    # The history of the 5,000-event test, delivered in another order with other duplicates.
    events = history(seed=5, events=5000, customers=500, orders=300)
    sent = deliveries(events, seed=10, duplicate_rate=0.1)
    # Half of the faults strike after the change was made: the answer is lost, the write is not.
    sheets_server.set_faults(rate_429=0.1, rate_503=0.1, timing="random", seed=11)
    sheets_server.reset_counts()
    service.start()
    result = send(service, sent)
    assert len(result.acknowledged()) == len(sent)
    assert service.wait_settled(len(events)) == {"done": len(events)}
    injected = sheets_server.injected_faults()
    sheets_server.clear_faults()

    assert sum(injected.values()) >= 5, injected
    assert_sheet_is(sheets_server, spreadsheet_id, service.settings, expected_sheet(service.settings, events))
    assert service.stop() == 0
