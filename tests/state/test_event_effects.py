"""Every event type's effect on the row it touches, from DooPage's sample body to the final cell values.

Each case folds one sample onto a known base history and projects through the default mapping
(config/mapping.example.toml, Asia/Ho_Chi_Minh, so 05:14 UTC reads 12:14): exactly the listed cells
change, and the Events log gets one row for the event.
"""

from __future__ import annotations

from typing import Any

import pytest

from connector.sync.mapping import Cell, SheetMapping, WorksheetMapping, rows_for
from connector.sync.state import EntityState, Envelope, fold_batch

from .conftest import envelope, sample

BASE_MS = 1618117200000  # 2021-04-11 12:00:00 in Ho Chi Minh City
TAGS_MS = 1618117260000  # 12:01:00
RECEIVED_MS = 1618118400000  # 12:20:00: when the samples without a timestamp arrive
AT_SAMPLE = "2021-04-11 12:14:00"
AT_RECEIVED = "2021-04-11 12:20:00"

# Customer 1 before each case: updated at 12:00 as "Old name", tagged tag_name and vip at 12:01.
BASE_CUSTOMER = [
    envelope(
        BASE_MS,
        event_type="customer_updated",
        timestamp=BASE_MS,
        data={"customer": {"id": 1, "name": "Old name"}},
    ),
    envelope(
        TAGS_MS,
        event_type="tag_set",
        data={
            "customer": {"id": 1, "name": "Old name"},
            "tags": [{"id": 1, "name": "tag_name"}, {"id": 3, "name": "vip"}],
        },
    ),
]
BASE_CUSTOMER_ROW: dict[str, Cell] = {
    "Customer ID": 1,
    "Name": "Old name",
    "Status": None,
    "Assigned to": None,
    "Closed by": None,
    "Tags": "tag_name, vip",
    "Note": None,
    "Pipeline stage": None,
    "First seen": "2021-04-11 12:00:00",
    "Last activity": "2021-04-11 12:01:00",
    "Last event": "tag_set",
}

CUSTOMER_CASES: list[tuple[str, dict[str, Cell], dict[str, Cell]]] = [
    # event type, cells of its Customers row that change, cells of its Events row
    (
        "customer_created",
        {"Name": "DooPage", "Status": "open", "Last activity": AT_SAMPLE, "Last event": "customer_created"},
        {"Time": AT_SAMPLE, "Customer": "DooPage", "Staff": None, "Detail": None},
    ),
    (
        "customer_updated",
        {"Name": "DooPage", "Last activity": AT_SAMPLE, "Last event": "customer_updated"},
        {"Time": AT_SAMPLE, "Customer": "DooPage", "Staff": None, "Detail": None},
    ),
    (
        "customer_took",
        {
            "Name": "DooPage",
            "Status": "assigned",
            "Assigned to": "Doopage staff",
            "Last activity": AT_SAMPLE,
            "Last event": "customer_took",
        },
        {"Time": AT_SAMPLE, "Staff": "Doopage staff", "Detail": None},
    ),
    (
        "customer_transferred",
        {
            "Name": "DooPage",
            "Status": "assigned",
            "Assigned to": "Doopage staff 2",
            "Last activity": AT_SAMPLE,
            "Last event": "customer_transferred",
        },
        {"Time": AT_SAMPLE, "Staff": "Doopage staff 2", "Detail": "Doopage staff -> Doopage staff 2"},
    ),
    (
        "customer_closed",
        {
            "Name": "DooPage",
            "Status": "closed",
            "Closed by": "Doopage staff",
            "Last activity": AT_SAMPLE,
            "Last event": "customer_closed",
        },
        {"Time": AT_SAMPLE, "Staff": "Doopage staff", "Detail": None},
    ),
    (
        "tag_set",
        {
            "Name": "DooPage customer",
            "Tags": "tag 2, tag_name, vip",
            "Last activity": AT_RECEIVED,
            "Last event": "tag_set",
        },
        {"Time": AT_RECEIVED, "Staff": "DooPage staff", "Detail": "+ tag_name, tag 2"},
    ),
    (
        "tag_unset",
        {"Name": "DooPage customer", "Tags": "vip", "Last activity": AT_RECEIVED, "Last event": "tag_unset"},
        {"Time": AT_RECEIVED, "Staff": "DooPage staff", "Detail": "- tag_name, tag 2"},
    ),
    (
        "note_changed",
        {
            "Name": "DooPage customer",
            "Note": "Customer note",
            "Last activity": AT_RECEIVED,
            "Last event": "note_changed",
        },
        {"Time": AT_RECEIVED, "Staff": None, "Detail": "Customer note"},
    ),
    (
        "customer_pipeline_updated",
        {
            "Name": "DooPage customer",
            "Pipeline stage": "Re-target",
            "Last activity": AT_RECEIVED,
            "Last event": "customer_pipeline_updated",
        },
        {"Time": AT_RECEIVED, "Staff": "DooPage staff", "Detail": "Re-target"},
    ),
]

ORDER_CASES: list[tuple[str, dict[str, Cell], dict[str, Cell]]] = [
    # event type, its whole Orders row (a new order), cells of its Events row
    (
        "order_created",
        {
            "Order ID": 1,
            "Created": AT_SAMPLE,
            "Modified": None,
            "Picking status": None,
            "Payment status": None,
            "Last activity": AT_SAMPLE,
        },
        {"Time": AT_SAMPLE, "Order ID": 1, "Customer ID": None, "Detail": None},
    ),
    (
        "order_updated",
        {
            "Order ID": 1,
            "Created": AT_SAMPLE,
            "Modified": "2021-04-11 12:14:01",
            "Picking status": "pending",
            "Payment status": "paid",
            "Last activity": AT_SAMPLE,
        },
        {"Time": AT_SAMPLE, "Order ID": 1, "Customer ID": None, "Detail": "picking: pending, payment: paid"},
    ),
]


def sheet(mapping: SheetMapping, title: str) -> WorksheetMapping:
    """The worksheet called ``title`` of company 1."""
    company = mapping.company(1)
    assert company is not None
    return next(ws for ws in company.worksheets if ws.title == title)


def only_row(worksheet: WorksheetMapping, items: list[Any]) -> tuple[str, dict[str, Cell]]:
    """The one row this worksheet shows for the items."""
    rows = rows_for(worksheet, items)
    assert len(rows) == 1, rows
    return rows[0]


def fold_all(envelopes: list[Envelope]) -> list[EntityState]:
    """The states of every entity the envelopes touch, folded from nothing."""
    return list(fold_batch({}, envelopes).values())


@pytest.mark.parametrize(
    ("event_type", "changed", "logged"), CUSTOMER_CASES, ids=[c[0] for c in CUSTOMER_CASES]
)
def test_customer_event_changes_exactly_its_cells(
    default_mapping: SheetMapping, event_type: str, changed: dict[str, Cell], logged: dict[str, Cell]
) -> None:
    customers = sheet(default_mapping, "Customers")
    assert only_row(customers, fold_all(BASE_CUSTOMER)) == ("1", BASE_CUSTOMER_ROW)

    event = sample(event_type, RECEIVED_MS)
    states = fold_all([*BASE_CUSTOMER, event])

    assert only_row(customers, states) == ("1", {**BASE_CUSTOMER_ROW, **changed})
    assert rows_for(sheet(default_mapping, "Orders"), states) == []
    key, row = only_row(sheet(default_mapping, "Events"), [event])
    assert key == event.dedup_key == row["Event key"]
    assert row["Event"] == event_type
    assert row["Customer ID"] == 1
    assert row["Order ID"] is None
    assert {header: row[header] for header in logged} == logged


@pytest.mark.parametrize(("event_type", "expected", "logged"), ORDER_CASES, ids=[c[0] for c in ORDER_CASES])
def test_order_event_fills_its_order_row(
    default_mapping: SheetMapping, event_type: str, expected: dict[str, Cell], logged: dict[str, Cell]
) -> None:
    event = sample(event_type, RECEIVED_MS)
    states = fold_all([event])

    assert only_row(sheet(default_mapping, "Orders"), states) == ("1", expected)
    assert rows_for(sheet(default_mapping, "Customers"), states) == []
    key, row = only_row(sheet(default_mapping, "Events"), [event])
    assert key == event.dedup_key
    assert row["Event"] == event_type
    assert {header: row[header] for header in logged} == logged


def test_every_sample_event_type_has_a_case(samples: dict[str, bytes]) -> None:
    assert {case[0] for case in CUSTOMER_CASES + ORDER_CASES} == set(samples)


def test_all_samples_in_documented_order_give_a_closed_customer_and_a_paid_order(
    default_mapping: SheetMapping, samples: dict[str, bytes]
) -> None:
    # The timestamped samples share one timestamp; the tie-break follows a customer's life, so the last
    # status-changing event of the documented flow (closed) wins, whatever the delivery order.
    events = [sample(event_type, RECEIVED_MS + i) for i, event_type in enumerate(samples)]
    for delivery in (events, events[::-1]):
        states = fold_all(delivery)
        _, customer = only_row(sheet(default_mapping, "Customers"), states)
        assert customer["Status"] == "closed"
        assert customer["Assigned to"] == "Doopage staff 2"
        assert customer["Closed by"] == "Doopage staff"
        _, order = only_row(sheet(default_mapping, "Orders"), states)
        assert order["Payment status"] == "paid"
