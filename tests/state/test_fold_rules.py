"""The folding rules: last writer wins by event time, ties, duplicates, units, and events without a timestamp."""

from __future__ import annotations

from typing import Any

import pytest

from connector.sync.state import (
    CustomerState,
    EntityKey,
    Envelope,
    OrderState,
    decode_state,
    encode_state,
    entity_key,
    event_time,
    fold,
    fold_batch,
    fold_customer,
    fold_order,
    visible_tags,
)

from .conftest import envelope, sample

T0 = 1_700_000_000_000  # an arbitrary event time, ms


def customer_event(event_type: str, at: int | None, received: int | None = None, **data: Any) -> Envelope:
    """A customer event for customer 7; ``at`` is its timestamp (None: DooPage sent none)."""
    data.setdefault("customer", {"id": 7, "name": "Lan"})
    body: dict[str, Any] = {"event_type": event_type, "data": data}
    if at is not None:
        body["timestamp"] = at
    return envelope(received if received is not None else (at or T0) + 5_000, **body)


def took(at: int, staff: str) -> Envelope:
    return customer_event("customer_took", at, staff={"id": len(staff), "name": staff})


def closed(at: int, staff: str = "Boss") -> Envelope:
    return customer_event("customer_closed", at, staff={"id": 99, "name": staff})


def transferred(at: int, to: str) -> Envelope:
    return customer_event(
        "customer_transferred", at, staff={"id": 1, "name": "A"}, new_staff={"id": 2, "name": to}
    )


def renamed(at: int, name: str) -> Envelope:
    return customer_event("customer_updated", at, customer={"id": 7, "name": name})


def note(received: int, text: str | None) -> Envelope:
    return customer_event("note_changed", None, received=received, note=text)


def tags(event_type: str, received: int, *tag_ids: int) -> Envelope:
    return customer_event(
        event_type, None, received=received, tags=[{"id": i, "name": f"t{i}"} for i in tag_ids]
    )


def final(envelopes: list[Envelope]) -> CustomerState:
    """Customer 7 after folding the envelopes in the given order."""
    state: CustomerState | None = None
    for item in envelopes:
        state = fold_customer(state, item)
    assert state is not None
    return state


def both_orders(envelopes: list[Envelope]) -> CustomerState:
    """The state after in-order and reversed delivery, which must agree."""
    forward, backward = final(envelopes), final(envelopes[::-1])
    assert forward == backward
    return forward


def status(state: CustomerState) -> str | None:
    return state.status.value if state.status else None


def test_late_older_rename_never_overwrites_a_newer_name() -> None:
    state = final([renamed(T0 + 2, "New"), renamed(T0 + 1, "Old")])
    assert state.name is not None
    assert state.name.value == "New"


def test_duplicate_delivery_changes_nothing() -> None:
    event = took(T0, "An")
    once = fold_customer(None, event)
    assert fold_customer(once, event) == once
    assert fold_customer(fold_customer(once, renamed(T0 + 1, "X")), event) == fold_customer(
        once, renamed(T0 + 1, "X")
    )


def test_out_of_order_transfer_leaves_the_customer_with_the_new_staff() -> None:
    state = both_orders([took(T0, "An"), transferred(T0 + 1, "Binh")])
    assert state.assigned_staff is not None
    assert state.assigned_staff.value.name == "Binh"
    assert status(state) == "assigned"


def test_a_later_took_assigns_a_closed_customer_again_an_older_one_does_not() -> None:
    assert status(
        both_orders([customer_event("customer_created", T0), closed(T0 + 1), took(T0 + 2, "An")])
    ) == ("assigned")
    state = both_orders([took(T0, "An"), closed(T0 + 1, "Boss")])
    assert status(state) == "closed"
    assert state.closed_by is not None
    assert state.closed_by.value.name == "Boss"
    assert state.assigned_staff is not None
    assert state.assigned_staff.value.name == "An"


def test_created_arriving_after_took_does_not_reopen() -> None:
    assert status(final([took(T0 + 1, "An"), customer_event("customer_created", T0)])) == "assigned"


def test_equal_times_follow_the_customer_lifecycle_whatever_the_delivery_order() -> None:
    assert (
        status(both_orders([customer_event("customer_created", T0), took(T0, "An"), closed(T0)])) == "closed"
    )


def test_equal_times_of_one_type_are_settled_by_the_dedup_key() -> None:
    first, second = took(T0, "An"), took(T0, "Binh")
    winner = max((first, second), key=lambda e: e.dedup_key)
    state = both_orders([first, second])
    assert state.assigned_staff is not None
    assert state.assigned_staff.value == winner.event.data.staff  # type: ignore[union-attr]


def test_events_without_timestamp_take_the_received_time() -> None:
    # The rule for tag_set, tag_unset, note_changed and customer_pipeline_updated: they happened when we
    # received them. So the note received last wins, whatever order the worker folds them in.
    early, late = note(T0 + 10, "first"), note(T0 + 20, "second")
    for event_type in ("tag_set", "tag_unset", "note_changed", "customer_pipeline_updated"):
        assert event_time(sample(event_type, T0 + 42)) == T0 + 42
    state = both_orders([early, late])
    assert state.note is not None
    assert state.note.value == "second"
    assert state.last_event.stamp.time_ms == T0 + 20
    assert state.first_seen_ms == T0 + 10


def test_a_received_time_competes_with_timestamps_on_the_same_clock() -> None:
    # A rename stamped after the note was received wins the name; one stamped before loses it.
    noted = customer_event(
        "note_changed", None, received=T0 + 10, customer={"id": 7, "name": "From note"}, note="n"
    )
    assert both_orders([noted, renamed(T0 + 11, "Later")]).name.value == "Later"  # type: ignore[union-attr]
    assert both_orders([noted, renamed(T0 + 9, "Earlier")]).name.value == "From note"  # type: ignore[union-attr]


def test_a_null_note_clears_the_note() -> None:
    assert both_orders([note(T0, "x"), note(T0 + 1, None)]).note.value is None  # type: ignore[union-attr]


def test_tags_are_a_set_decided_per_tag_by_the_latest_change() -> None:
    history = [tags("tag_set", T0, 1, 2), tags("tag_unset", T0 + 1, 1), tags("tag_set", T0 + 2, 3)]
    assert visible_tags(both_orders(history)) == ["t2", "t3"]
    # Setting tag 1 again later brings it back; the older unset cannot remove it once delivered late.
    assert visible_tags(both_orders([*history, tags("tag_set", T0 + 3, 1, 2)])) == ["t1", "t2", "t3"]


def test_tag_names_follow_the_latest_event_and_sort_without_case() -> None:
    renamed_tag = customer_event("tag_set", None, received=T0 + 5, tags=[{"id": 1, "name": "b-Renamed"}])
    state = both_orders([tags("tag_set", T0, 1, 2), renamed_tag])
    assert visible_tags(state) == ["b-Renamed", "t2"]


def test_pipeline_stage_is_the_latest() -> None:
    def stage(received: int, name: str) -> Envelope:
        return customer_event(
            "customer_pipeline_updated", None, received=received, pipeline={"id": received, "name": name}
        )

    state = both_orders([stage(T0, "Lead"), stage(T0 + 1, "Won")])
    assert state.pipeline is not None
    assert state.pipeline.value.name == "Won"


def test_an_event_without_a_name_keeps_the_name() -> None:
    state = both_orders(
        [renamed(T0, "Lan"), customer_event("customer_took", T0 + 1, customer={"id": 7}, staff={"id": 1})]
    )
    assert state.name is not None
    assert state.name.value == "Lan"


def order_event(event_type: str, received: int, **data: Any) -> Envelope:
    return envelope(received, event_type=event_type, data={"order_id": 5, **data})


def fold_orders(envelopes: list[Envelope]) -> OrderState:
    forward: OrderState | None = None
    backward: OrderState | None = None
    for item in envelopes:
        forward = fold_order(forward, item)
    for item in reversed(envelopes):
        backward = fold_order(backward, item)
    assert forward is not None
    assert forward == backward
    return forward


def test_order_time_falls_back_to_modified_then_created_seconds() -> None:
    created = order_event("order_created", T0 + 999_999, created_at=1_700_000_000)
    updated = order_event("order_updated", T0 + 999_999, created_at=1_700_000_000, modified_at=1_700_000_100)
    assert event_time(created) == 1_700_000_000_000
    assert event_time(updated) == 1_700_000_100_000
    assert event_time(order_event("order_updated", 123)) == 123
    stamped = envelope(0, event_type="order_created", timestamp=T0, data={"order_id": 5, "created_at": 1})
    assert event_time(stamped) == T0


def test_an_older_order_update_never_overwrites_statuses() -> None:
    older = order_event(
        "order_updated", 0, modified_at=100, picking_status="pending", payment_status="unpaid"
    )
    newer = order_event("order_updated", 0, modified_at=200, picking_status="shipped", payment_status="paid")
    state = fold_orders([older, newer])
    assert state.picking_status is not None
    assert state.picking_status.value == "shipped"
    assert state.payment_status is not None
    assert state.payment_status.value == "paid"
    assert state.modified_at is not None
    assert state.modified_at.value == 200
    assert state.first_seen_ms == 100_000
    assert state.last_event.stamp.time_ms == 200_000


def test_a_missing_order_status_leaves_the_known_one() -> None:
    state = fold_orders(
        [
            order_event("order_updated", 0, modified_at=100, payment_status="paid"),
            order_event("order_updated", 0, modified_at=200, picking_status="packed"),
        ]
    )
    assert state.payment_status is not None
    assert state.payment_status.value == "paid"
    assert state.picking_status is not None
    assert state.picking_status.value == "packed"


def test_entity_keys_name_the_customer_or_the_order() -> None:
    assert entity_key(sample("order_updated", 0).event) == EntityKey("order", 1, 1)
    assert entity_key(sample("tag_set", 0).event) == EntityKey("customer", 1, 1)


def test_fold_dispatches_by_event_and_refuses_the_wrong_state() -> None:
    order = fold(None, sample("order_created", 0))
    customer = fold(None, sample("customer_created", 0))
    assert isinstance(order, OrderState)
    assert isinstance(customer, CustomerState)
    with pytest.raises(TypeError):
        fold(order, sample("customer_took", 0))
    with pytest.raises(TypeError):
        fold(customer, sample("order_updated", 0))
    with pytest.raises(ValueError, match="customer"):
        fold(customer, customer_event("customer_took", T0, staff={"id": 1}))


def test_fold_batch_returns_every_touched_entity_starting_from_the_given_states() -> None:
    before = fold_batch({}, [renamed(T0, "Lan")])
    after = fold_batch(before, [took(T0 + 1, "An"), sample("order_created", 0)])
    assert set(after) == {EntityKey("customer", 1, 7), EntityKey("order", 1, 1)}
    customer = after[EntityKey("customer", 1, 7)]
    assert isinstance(customer, CustomerState)
    assert customer.name is not None
    assert customer.name.value == "Lan"


def test_persisted_state_round_trips(samples: dict[str, bytes]) -> None:
    states = fold_batch({}, [sample(event_type, T0 + i) for i, event_type in enumerate(samples)])
    states |= fold_batch({}, [tags("tag_set", T0, 1, 2), note(T0, None)])
    for state in states.values():
        assert decode_state(encode_state(state)) == state
