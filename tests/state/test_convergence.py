"""Property: any delivery order, with any duplicates and any batching, gives the sheet in-order delivery gives.

A history of events over three customers and two orders is generated with distinct times; the inbox
deduplicates identical bodies, so a repeated body keeps its first received time, as it does in the inbox.
Delivery is a permutation with random duplicates, folded in random batches with each batch's states
saved and loaded through their persisted form, and each batch's rows upserted into a simulated sheet.
"""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from connector.events import CUSTOMER_EVENT_TYPES
from connector.sync.mapping import Cell, SheetMapping, parse_mapping, rows_for
from connector.sync.state import EntityKey, EntityState, Envelope, decode_state, encode_state, fold_batch

from .conftest import EXAMPLE_MAPPING, envelope

START_MS = 1_700_000_000_000
CUSTOMERS = st.integers(1, 3)
NAMES = st.sampled_from(["Lan", "Minh", "Hoa"])
STAFF = st.builds(lambda i: {"id": i, "name": f"staff {i}"}, st.integers(1, 3))
TAGS = st.lists(st.builds(lambda i: {"id": i, "name": f"tag {i}"}, st.integers(1, 4)), min_size=1, max_size=3)
STATUSES = st.none() | st.sampled_from(["pending", "packed", "shipped", "paid", "unpaid"])


@st.composite
def customer_body(draw: st.DrawFn) -> dict[str, Any]:
    customer: dict[str, Any] = {"id": draw(CUSTOMERS)}
    if draw(st.booleans()):
        customer["name"] = draw(NAMES)
    kind = draw(st.sampled_from(CUSTOMER_EVENT_TYPES))
    data: dict[str, Any] = {"customer": customer}
    if kind in ("customer_took", "customer_closed", "tag_set", "tag_unset", "customer_pipeline_updated"):
        data["staff"] = draw(STAFF)
    if kind == "customer_transferred":
        data["staff"] = draw(STAFF)
        data["new_staff"] = draw(STAFF)
    if kind in ("tag_set", "tag_unset"):
        data["tags"] = draw(TAGS)
    if kind == "note_changed":
        data["note"] = draw(st.none() | st.sampled_from(["call back", "VIP", ""]))
    if kind == "customer_pipeline_updated":
        data["pipeline"] = draw(st.builds(lambda i: {"id": i, "name": f"stage {i}"}, st.integers(1, 3)))
    return {"event_type": kind, "data": data}


@st.composite
def order_body(draw: st.DrawFn) -> dict[str, Any]:
    data: dict[str, Any] = {"order_id": draw(st.integers(1, 2))}
    kind = draw(st.sampled_from(["order_created", "order_updated"]))
    if kind == "order_updated":
        data["picking_status"] = draw(STATUSES)
        data["payment_status"] = draw(STATUSES)
    return {"event_type": kind, "data": data}


@st.composite
def histories(draw: st.DrawFn) -> list[Envelope]:
    """Events in the order they happened, each at its own time; the timestamp-less kinds at their receipt."""
    bodies = draw(st.lists(customer_body() | order_body(), min_size=1, max_size=25))
    history: list[Envelope] = []
    seen: set[str] = set()
    for i, body in enumerate(bodies):
        at = START_MS + i * 1_000  # distinct, and whole seconds so order times in seconds stay distinct too
        kind = body["event_type"]
        if kind.startswith("order_"):
            body["data"]["created_at"] = START_MS // 1000
            if kind == "order_updated":
                body["data"]["modified_at"] = at // 1000
            if draw(st.booleans()):
                body["timestamp"] = at  # otherwise the time comes from modified_at / created_at
        elif kind not in ("tag_set", "tag_unset", "note_changed", "customer_pipeline_updated"):
            body["timestamp"] = at
        item = envelope(at, **body)
        if item.dedup_key not in seen:  # the inbox stores an identical body once
            seen.add(item.dedup_key)
            history.append(item)
    return history


MAPPING: SheetMapping = parse_mapping(EXAMPLE_MAPPING.read_text(encoding="utf-8"), str(EXAMPLE_MAPPING))
Sheet = dict[str, dict[str, dict[str, Cell]]]  # worksheet title -> key -> row


def deliver(batches: list[list[Envelope]]) -> Sheet:
    """Run batches the way the worker does: load state, fold, upsert the rows, save the state."""
    stored: dict[EntityKey, bytes] = {}
    sheet: Sheet = {}
    company = MAPPING.company(1)
    assert company is not None
    for batch in batches:
        states: dict[EntityKey, EntityState] = {key: decode_state(blob) for key, blob in stored.items()}
        touched = fold_batch(states, batch)
        items: list[Any] = [*touched.values(), *batch]
        for worksheet in company.worksheets:
            rows = sheet.setdefault(worksheet.title, {})
            rows.update(rows_for(worksheet, items))
        stored |= {key: encode_state(state) for key, state in touched.items()}
    return sheet


def split(items: list[Envelope], cuts: list[int]) -> list[list[Envelope]]:
    """Cut a delivery into batches at the given positions."""
    edges = sorted({0, len(items), *(c % (len(items) + 1) for c in cuts)})
    return [items[a:b] for a, b in itertools.pairwise(edges)]


@settings(max_examples=150, deadline=None)
@given(history=histories(), data=st.data())
def test_any_permutation_with_duplicates_gives_the_in_order_sheet(
    history: list[Envelope], data: st.DataObject
) -> None:
    expected = deliver([history])
    assert expected == deliver([[item] for item in history])

    shuffled = data.draw(st.permutations(history), label="delivery order")
    repeats = data.draw(st.lists(st.sampled_from(history), max_size=10), label="redelivered")
    delivery = list(shuffled)
    for item in repeats:
        delivery.insert(data.draw(st.integers(0, len(delivery)), label="position"), item)
    cuts = data.draw(st.lists(st.integers(0, 100), max_size=6), label="batch cuts")

    assert deliver(split(delivery, cuts)) == expected
