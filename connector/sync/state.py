"""Customer and order state folded from DooPage events: pure functions, no I/O.

Every field of an entity is a last-writer-wins register: the value and the :class:`Stamp` of the event
that wrote it. An event overwrites a field only when its stamp is greater, so folding is commutative,
associative and idempotent: any permutation of a history, with any duplicates, ends in the same state,
and a late, older event never overwrites newer data.

The rules
---------
Event time (:func:`event_time`, milliseconds since the epoch):
    the event's ``timestamp`` when present; else, for orders, ``modified_at`` then ``created_at``
    (seconds, times 1000); else the time the inbox received the event. The four types DooPage sends
    without a timestamp (tag_set, tag_unset, note_changed, customer_pipeline_updated) therefore count as
    happening when we received them: the only clock we have for them, and the one that orders repeated
    changes of the same field as a person made them.
Ties (:class:`Stamp`):
    stamps compare as ``(time, rank, dedup_key)``. On equal times the rank follows a customer's life
    (created < updated < note < pipeline < tag_set < tag_unset < took < transferred < closed; for orders
    created < updated), so DooPage's samples, which all share one timestamp, fold to the state their
    documented order implies; the dedup key (a hash of the body) settles the rest.
Tags:
    a last-writer-wins element set: per tag id, whether it is present and its name, with the stamp of
    the tag_set or tag_unset that decided it. The visible set is the present tags, sorted by name.
Status:
    one register written by the status-changing events: created -> open, took and transferred ->
    assigned, closed -> closed; so a took later than a close assigns again, an older one does not.
first_seen is the least event time seen; last_event is the register of the greatest stamp.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final, Generic, Literal, TypeVar

import msgspec

from connector.events import (
    Customer,
    CustomerClosed,
    CustomerCreated,
    CustomerPipelineUpdated,
    CustomerTook,
    CustomerTransferred,
    CustomerUpdated,
    KnownEvent,
    NoteChanged,
    OrderCreated,
    OrderUpdated,
    Pipeline,
    Staff,
    TagSet,
    TagUnset,
)

__all__ = [
    "CUSTOMER",
    "ORDER",
    "CustomerState",
    "EntityKey",
    "EntityKind",
    "EntityState",
    "Envelope",
    "OrderState",
    "Register",
    "Stamp",
    "Status",
    "TagEntry",
    "decode_state",
    "encode_state",
    "entity_key",
    "event_time",
    "fold",
    "fold_batch",
    "fold_customer",
    "fold_order",
    "stamp_of",
    "visible_tags",
]

T = TypeVar("T")

CUSTOMER: Final = "customer"
ORDER: Final = "order"
EntityKind = Literal["customer", "order"]
Status = Literal["open", "assigned", "closed"]

# Tie-break rank on equal event times; see the module docstring.
_RANK: Final[dict[str, int]] = {
    "customer_created": 0,
    "customer_updated": 1,
    "note_changed": 2,
    "customer_pipeline_updated": 3,
    "tag_set": 4,
    "tag_unset": 5,
    "customer_took": 6,
    "customer_transferred": 7,
    "customer_closed": 8,
    "order_created": 0,
    "order_updated": 1,
}

CustomerEvent = (
    CustomerCreated
    | CustomerUpdated
    | CustomerTook
    | CustomerTransferred
    | CustomerClosed
    | TagSet
    | TagUnset
    | NoteChanged
    | CustomerPipelineUpdated
)
OrderEvent = OrderCreated | OrderUpdated


class Envelope(msgspec.Struct, frozen=True, kw_only=True):
    """The fold's input: a decoded event with what the inbox knows of it."""

    event: KnownEvent
    received_ms: int  # when the inbox received it, milliseconds since the epoch
    dedup_key: str  # the inbox's deduplication key: sha256 hex of the canonical body


class Stamp(msgspec.Struct, frozen=True, order=True, array_like=True):
    """The version of a write; a greater stamp wins. Ordered as (time, rank, dedup_key)."""

    time_ms: int
    rank: int
    key: str


class Register(msgspec.Struct, Generic[T], frozen=True, array_like=True):
    """A last-writer-wins register: a value and the stamp of the event that wrote it."""

    value: T
    stamp: Stamp


class TagEntry(msgspec.Struct, frozen=True, array_like=True):
    """One tag's membership: present or removed, decided by the event with ``stamp``."""

    present: bool
    name: str | None
    stamp: Stamp


class EntityKey(msgspec.Struct, frozen=True, order=True, array_like=True):
    """Which entity an event touches: ('customer' | 'order', company id, customer or order id)."""

    kind: EntityKind
    company_id: int
    entity_id: int


class CustomerState(msgspec.Struct, frozen=True, kw_only=True, tag="customer"):
    """What the events of one customer add up to."""

    company_id: int
    customer_id: int
    first_seen_ms: int
    last_event: Register[str]  # value: the event type
    name: Register[str] | None = None
    status: Register[Status] | None = None
    assigned_staff: Register[Staff] | None = None
    closed_by: Register[Staff] | None = None
    note: Register[str | None] | None = None
    pipeline: Register[Pipeline] | None = None
    tags: dict[int, TagEntry] = msgspec.field(default_factory=dict)

    @property
    def key(self) -> EntityKey:
        """This customer's entity key."""
        return EntityKey(CUSTOMER, self.company_id, self.customer_id)


class OrderState(msgspec.Struct, frozen=True, kw_only=True, tag="order"):
    """What the events of one order add up to. ``created_at`` and ``modified_at`` are in seconds."""

    company_id: int
    order_id: int
    first_seen_ms: int
    last_event: Register[str]
    created_at: Register[int] | None = None
    modified_at: Register[int] | None = None
    picking_status: Register[str] | None = None
    payment_status: Register[str] | None = None

    @property
    def key(self) -> EntityKey:
        """This order's entity key."""
        return EntityKey(ORDER, self.company_id, self.order_id)


EntityState = CustomerState | OrderState

_state_encoder: Final = msgspec.msgpack.Encoder()
_state_decoder: Final[msgspec.msgpack.Decoder[EntityState]] = msgspec.msgpack.Decoder(EntityState)


def encode_state(state: EntityState) -> bytes:
    """The state's persisted form (msgpack)."""
    return _state_encoder.encode(state)


def decode_state(data: bytes) -> EntityState:
    """Decode a state written by :func:`encode_state`."""
    return _state_decoder.decode(data)


# --- time and keys -----------------------------------------------------------------------------------


def event_time(envelope: Envelope) -> int:
    """The event's time in milliseconds: its timestamp, else the order's times, else when we received it."""
    event = envelope.event
    if event.timestamp is not None:
        return event.timestamp
    if isinstance(event, OrderUpdated) and event.data.modified_at is not None:
        return event.data.modified_at * 1000
    if isinstance(event, OrderCreated | OrderUpdated) and event.data.created_at is not None:
        return event.data.created_at * 1000
    return envelope.received_ms


def stamp_of(envelope: Envelope) -> Stamp:
    """The version every write of this event carries."""
    return Stamp(event_time(envelope), _RANK[envelope.event.event_type], envelope.dedup_key)


def entity_key(event: KnownEvent) -> EntityKey:
    """The one customer or order an event is about."""
    if isinstance(event, OrderCreated | OrderUpdated):
        return EntityKey(ORDER, event.company_id, event.data.order_id)
    return EntityKey(CUSTOMER, event.company_id, event.data.customer.id)


# --- folding -----------------------------------------------------------------------------------------


def _put(current: Register[T] | None, value: T, stamp: Stamp) -> Register[T]:
    """Last-writer-wins: the write lands only if its stamp is newer than the current one."""
    if current is not None and current.stamp >= stamp:
        return current
    return Register(value, stamp)


def _put_tags(current: dict[int, TagEntry], event: TagSet | TagUnset, stamp: Stamp) -> dict[int, TagEntry]:
    """Apply a tag_set or tag_unset per tag, each tag its own last-writer-wins element."""
    present = isinstance(event, TagSet)
    tags = dict(current)
    for tag in event.data.tags:
        old = tags.get(tag.id)
        if old is None or old.stamp < stamp:
            tags[tag.id] = TagEntry(present, tag.name, stamp)
    return tags


def fold_customer(state: CustomerState | None, envelope: Envelope) -> CustomerState:
    """Apply one customer event to a customer's state (None for a customer not seen before)."""
    event = envelope.event
    if not isinstance(event, CustomerEvent):
        raise TypeError(f"{event.event_type} is not a customer event")
    stamp = stamp_of(envelope)
    customer: Customer = event.data.customer
    if state is None:
        state = CustomerState(
            company_id=event.company_id,
            customer_id=customer.id,
            first_seen_ms=stamp.time_ms,
            last_event=Register(event.event_type, stamp),
        )
    elif (state.company_id, state.customer_id) != (event.company_id, customer.id):
        raise ValueError(f"event for customer {customer.id} folded into customer {state.customer_id}")
    changes: dict[str, object] = {
        "first_seen_ms": min(state.first_seen_ms, stamp.time_ms),
        "last_event": _put(state.last_event, event.event_type, stamp),
    }
    if customer.name is not None:
        changes["name"] = _put(state.name, customer.name, stamp)
    if isinstance(event, CustomerCreated):
        changes["status"] = _put(state.status, "open", stamp)
    elif isinstance(event, CustomerTook):
        changes["status"] = _put(state.status, "assigned", stamp)
        if event.data.staff is not None:
            changes["assigned_staff"] = _put(state.assigned_staff, event.data.staff, stamp)
    elif isinstance(event, CustomerTransferred):
        changes["status"] = _put(state.status, "assigned", stamp)
        changes["assigned_staff"] = _put(state.assigned_staff, event.data.new_staff, stamp)
    elif isinstance(event, CustomerClosed):
        changes["status"] = _put(state.status, "closed", stamp)
        if event.data.staff is not None:
            changes["closed_by"] = _put(state.closed_by, event.data.staff, stamp)
    elif isinstance(event, TagSet | TagUnset):
        changes["tags"] = _put_tags(state.tags, event, stamp)
    elif isinstance(event, NoteChanged):
        changes["note"] = _put(state.note, event.data.note, stamp)
    elif isinstance(event, CustomerPipelineUpdated):
        changes["pipeline"] = _put(state.pipeline, event.data.pipeline, stamp)
    return msgspec.structs.replace(state, **changes)


def fold_order(state: OrderState | None, envelope: Envelope) -> OrderState:
    """Apply one order event to an order's state (None for an order not seen before)."""
    event = envelope.event
    if not isinstance(event, OrderEvent):
        raise TypeError(f"{event.event_type} is not an order event")
    stamp = stamp_of(envelope)
    if state is None:
        state = OrderState(
            company_id=event.company_id,
            order_id=event.data.order_id,
            first_seen_ms=stamp.time_ms,
            last_event=Register(event.event_type, stamp),
        )
    elif (state.company_id, state.order_id) != (event.company_id, event.data.order_id):
        raise ValueError(f"event for order {event.data.order_id} folded into order {state.order_id}")
    changes: dict[str, object] = {
        "first_seen_ms": min(state.first_seen_ms, stamp.time_ms),
        "last_event": _put(state.last_event, event.event_type, stamp),
    }
    # A field DooPage leaves out (or sends as null) says nothing about it, so it never clears a value.
    if event.data.created_at is not None:
        changes["created_at"] = _put(state.created_at, event.data.created_at, stamp)
    if isinstance(event, OrderUpdated):
        data = event.data
        if data.modified_at is not None:
            changes["modified_at"] = _put(state.modified_at, data.modified_at, stamp)
        if data.picking_status is not None:
            changes["picking_status"] = _put(state.picking_status, data.picking_status, stamp)
        if data.payment_status is not None:
            changes["payment_status"] = _put(state.payment_status, data.payment_status, stamp)
    return msgspec.structs.replace(state, **changes)


def fold(state: EntityState | None, envelope: Envelope) -> EntityState:
    """Apply one event to the state of the entity it touches (see :func:`entity_key`)."""
    if isinstance(envelope.event, OrderEvent):
        if state is not None and not isinstance(state, OrderState):
            raise TypeError("an order event cannot be folded into a customer's state")
        return fold_order(state, envelope)
    if state is not None and not isinstance(state, CustomerState):
        raise TypeError("a customer event cannot be folded into an order's state")
    return fold_customer(state, envelope)


def fold_batch(
    states: Mapping[EntityKey, EntityState], envelopes: Iterable[Envelope]
) -> dict[EntityKey, EntityState]:
    """Fold a batch of events into the given states; returns the state of every entity the batch touched.

    ``states`` needs the current state of each touched entity that has one (absent means never seen).
    """
    touched: dict[EntityKey, EntityState] = {}
    for envelope in envelopes:
        key = entity_key(envelope.event)
        current = touched.get(key, states.get(key))
        touched[key] = fold(current, envelope)
    return touched


def visible_tags(state: CustomerState) -> list[str]:
    """The customer's present tags by name (a tag without a name shows its id), sorted."""
    names = [
        entry.name if entry.name is not None else str(tag_id)
        for tag_id, entry in state.tags.items()
        if entry.present
    ]
    return sorted(names, key=lambda name: (name.casefold(), name))
