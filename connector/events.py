"""DooPage webhook events as typed msgspec Structs, and the decoding of a raw webhook body.

Every event body is ``{"company_id", "event_type", "timestamp"?, "data"}``. The eleven documented types
form one tagged union on ``event_type``; a single decoder for it is built at import and reused.

Decoding is lenient about what DooPage may add (unknown fields are ignored, and every field that is not
needed to identify what happened has a default) but strict about types: an ``id`` sent as a string is
an error, not a silent coercion. A body whose envelope is valid but whose ``event_type`` we do not know
yet decodes to :class:`UnknownEvent`, so it can be kept instead of lost.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Final

import msgspec

__all__ = [
    "CUSTOMER_EVENT_TYPES",
    "KNOWN_EVENT_TYPES",
    "ORDER_EVENT_TYPES",
    "Customer",
    "CustomerClosed",
    "CustomerCreated",
    "CustomerPipelineUpdated",
    "CustomerTook",
    "CustomerTransferred",
    "CustomerUpdated",
    "DecodedBody",
    "Event",
    "EventDecodeError",
    "KnownEvent",
    "NoteChanged",
    "OrderCreated",
    "OrderUpdated",
    "Pipeline",
    "Staff",
    "Tag",
    "TagSet",
    "TagUnset",
    "UnknownEvent",
    "content_key",
    "decode_body",
    "decode_stored",
    "subject_of",
]


# Ids are stored as SQLite integers, times rendered as dates: values outside these ranges are errors.
Id = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
EpochMs = Annotated[int, msgspec.Meta(ge=0, le=253_402_300_799_999)]  # milliseconds, up to year 9999
EpochSeconds = Annotated[int, msgspec.Meta(ge=0, le=253_402_300_799)]  # seconds, up to year 9999
# An event type is kept whatever its text (shown escaped), except U+0000, which PostgreSQL's text cannot hold.
EventType = Annotated[str, msgspec.Meta(pattern=r"^[^\x00]*$")]


# --- the things events talk about ---------------------------------------------------------------


class Customer(msgspec.Struct, frozen=True, omit_defaults=True):
    """A DooPage customer (a contact or conversation)."""

    id: Id
    name: str | None = None


class Staff(msgspec.Struct, frozen=True, omit_defaults=True):
    """A staff member of the company."""

    id: Id
    name: str | None = None


class Tag(msgspec.Struct, frozen=True, omit_defaults=True):
    """A customer tag."""

    id: Id
    name: str | None = None


class Pipeline(msgspec.Struct, frozen=True, omit_defaults=True):
    """A stage of the company's sales pipeline."""

    id: Id
    name: str | None = None


# --- the ``data`` object of each event type -----------------------------------------------------


class CustomerData(msgspec.Struct, frozen=True, omit_defaults=True):
    customer: Customer


class CustomerStaffData(msgspec.Struct, frozen=True, omit_defaults=True):
    customer: Customer
    staff: Staff | None = None


class TransferData(msgspec.Struct, frozen=True, omit_defaults=True):
    customer: Customer
    new_staff: Staff
    staff: Staff | None = None


class OrderCreatedData(msgspec.Struct, frozen=True, omit_defaults=True):
    order_id: Id
    created_at: EpochSeconds | None = None


class OrderUpdatedData(msgspec.Struct, frozen=True, omit_defaults=True):
    order_id: Id
    created_at: EpochSeconds | None = None
    modified_at: EpochSeconds | None = None
    picking_status: str | None = None
    payment_status: str | None = None


class TagsData(msgspec.Struct, frozen=True, omit_defaults=True):
    customer: Customer
    tags: list[Tag]
    staff: Staff | None = None


class NoteData(msgspec.Struct, frozen=True, omit_defaults=True):
    customer: Customer
    note: str | None


class PipelineData(msgspec.Struct, frozen=True, omit_defaults=True):
    customer: Customer
    pipeline: Pipeline
    staff: Staff | None = None


# --- the events ---------------------------------------------------------------------------------


class Event(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, tag_field="event_type"):
    """Fields every DooPage event carries. ``timestamp`` is in milliseconds and may be absent."""

    company_id: Id
    timestamp: EpochMs | None = None

    @property
    def event_type(self) -> str:
        """The ``event_type`` this struct was decoded from."""
        tag = self.__struct_config__.tag
        assert isinstance(tag, str)
        return tag


class CustomerCreated(Event, frozen=True, kw_only=True, tag="customer_created"):
    data: CustomerData


class CustomerUpdated(Event, frozen=True, kw_only=True, tag="customer_updated"):
    data: CustomerData


class CustomerTook(Event, frozen=True, kw_only=True, tag="customer_took"):
    data: CustomerStaffData


class CustomerTransferred(Event, frozen=True, kw_only=True, tag="customer_transferred"):
    data: TransferData


class CustomerClosed(Event, frozen=True, kw_only=True, tag="customer_closed"):
    data: CustomerStaffData


class OrderCreated(Event, frozen=True, kw_only=True, tag="order_created"):
    data: OrderCreatedData


class OrderUpdated(Event, frozen=True, kw_only=True, tag="order_updated"):
    data: OrderUpdatedData


class TagSet(Event, frozen=True, kw_only=True, tag="tag_set"):
    data: TagsData


class TagUnset(Event, frozen=True, kw_only=True, tag="tag_unset"):
    data: TagsData


class NoteChanged(Event, frozen=True, kw_only=True, tag="note_changed"):
    data: NoteData


class CustomerPipelineUpdated(Event, frozen=True, kw_only=True, tag="customer_pipeline_updated"):
    data: PipelineData


KnownEvent = (
    CustomerCreated
    | CustomerUpdated
    | CustomerTook
    | CustomerTransferred
    | CustomerClosed
    | OrderCreated
    | OrderUpdated
    | TagSet
    | TagUnset
    | NoteChanged
    | CustomerPipelineUpdated
)

EVENT_CLASSES: Final[tuple[type[Event], ...]] = (
    CustomerCreated,
    CustomerUpdated,
    CustomerTook,
    CustomerTransferred,
    CustomerClosed,
    OrderCreated,
    OrderUpdated,
    TagSet,
    TagUnset,
    NoteChanged,
    CustomerPipelineUpdated,
)
KNOWN_EVENT_TYPES: Final[frozenset[str]] = frozenset(str(cls.__struct_config__.tag) for cls in EVENT_CLASSES)
# The same, by what they are about, in the order of EVENT_CLASSES.
ORDER_EVENT_TYPES: Final[tuple[str, ...]] = tuple(
    str(cls.__struct_config__.tag) for cls in EVENT_CLASSES if cls in (OrderCreated, OrderUpdated)
)
CUSTOMER_EVENT_TYPES: Final[tuple[str, ...]] = tuple(
    str(cls.__struct_config__.tag) for cls in EVENT_CLASSES if cls not in (OrderCreated, OrderUpdated)
)


class UnknownEvent(msgspec.Struct, frozen=True, kw_only=True):
    """A well-formed body whose ``event_type`` this version does not know; kept, not interpreted."""

    company_id: Id
    event_type: EventType
    timestamp: EpochMs | None = None
    data: msgspec.Raw = msgspec.Raw(b"null")


# --- decoding -----------------------------------------------------------------------------------


class EventDecodeError(ValueError):
    """A webhook body that is not a valid DooPage event; the message names the field and the problem."""


class DecodedBody(msgspec.Struct, frozen=True, omit_defaults=True):
    """A decoded webhook body with its deduplication key."""

    event: KnownEvent | UnknownEvent
    content_key: str  # sha256 hex of the canonical JSON: equal for equal content


_known_decoder: Final = msgspec.json.Decoder(KnownEvent)
_unknown_decoder: Final = msgspec.json.Decoder(UnknownEvent)
_any_decoder: Final = msgspec.json.Decoder()
_canonical_encoder: Final = msgspec.json.Encoder(order="sorted")


def content_key(body: bytes) -> str:
    """Hash of the body's canonical JSON form: same content, same key, whatever the spacing or key order.

    Raises what msgspec raises for a body that is not JSON (``decode_body`` turns those into messages).
    """
    canonical = _canonical_encoder.encode(_any_decoder.decode(body))
    return hashlib.sha256(canonical).hexdigest()


def decode_body(body: bytes) -> DecodedBody:
    """Decode one webhook body, or raise :class:`EventDecodeError` naming what is wrong."""
    try:
        # The generic pass first: it checks the whole document (syntax, UTF-8, depth), unknown fields too.
        key = content_key(body)
        try:
            event: KnownEvent | UnknownEvent = _known_decoder.decode(body)
        except msgspec.ValidationError as known_error:
            event = _decode_unknown(body, known_error)
    except msgspec.DecodeError as exc:
        raise EventDecodeError(f"body is not valid JSON: {exc}") from None
    except UnicodeDecodeError as exc:
        raise EventDecodeError(f"body is not valid UTF-8 ({exc.reason})") from None
    except RecursionError:
        raise EventDecodeError("body is nested too deeply") from None
    return DecodedBody(event=event, content_key=key)


def decode_stored(body: bytes) -> KnownEvent | UnknownEvent:
    """The event of a body the inbox stored, as :func:`decode_body` decodes it, or its error.

    The content key is stored with the body, so it is not computed again; a body of a known type is
    decoded once, with the typed decoder, which checks the syntax and depth of the fields it skips as
    well. Anything else (an unknown type, a body that no longer decodes) takes decode_body's way.
    """
    try:
        event: KnownEvent = _known_decoder.decode(body)
        body.decode()  # the typed decoder skips unknown fields' text without checking its UTF-8
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return decode_body(body).event
    return event


def subject_of(event: KnownEvent | UnknownEvent) -> str | None:
    """The one thing an event is about, as ``customer:<id>`` or ``order:<id>``; None for an unknown type."""
    if isinstance(event, UnknownEvent):
        return None
    if isinstance(event, (OrderCreated, OrderUpdated)):  # a tuple: faster than a union, once per event
        return f"order:{event.data.order_id}"
    return f"customer:{event.data.customer.id}"


def _decode_unknown(body: bytes, known_error: msgspec.ValidationError) -> UnknownEvent:
    """Keep a body of an event type we do not know; otherwise report why the known decoding failed."""
    try:
        envelope = _unknown_decoder.decode(body)
    except (msgspec.ValidationError, RecursionError):
        raise EventDecodeError(_describe(known_error)) from None
    if envelope.event_type in KNOWN_EVENT_TYPES:
        raise EventDecodeError(_describe(known_error)) from None
    return envelope


def _describe(error: msgspec.ValidationError) -> str:
    """Turn msgspec's ``Expected `int`, got `str` - at `$.data.customer.id``` into a plain sentence."""
    text = str(error)
    reason, sep, where = text.rpartition(" - at ")
    if not sep:
        return f"invalid event: {text}"
    return f"invalid event at {where.strip('`')}: {reason}"
