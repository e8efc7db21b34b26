"""Column mappings: which company writes to which spreadsheet, and what each worksheet column shows.

The mapping is TOML, either inline in the settings file under ``[mapping]`` or in a file it names
(``[mapping] file = "mapping.toml"``). msgspec checks its shape (unknown keys are errors); then
:func:`resolve_mapping` checks its meaning and compiles each column into a renderer. Every mistake is a
:class:`~connector.errors.ConfigError` with the file, the path (``companies[0].worksheets[1].columns[2]
.source``) and a reason that says what to write instead.

A worksheet shows one entity: ``customers`` (one row per customer), ``orders`` (one row per order) or
``events`` (an append-only log, one row per accepted event, keyed by its deduplication key). Each column
takes a *source field* from :data:`SOURCES` and renders it with a *format*:

========  ==========================  ====================================================================
format    suits sources of kind       cell value
========  ==========================  ====================================================================
text      text, number                a string (an id as text)
number    number                      a number
datetime  time                        a string: ``pattern`` (strftime, or ``"iso"`` for ISO 8601) in
                                      ``timezone`` (an IANA name; column, else company, else mapping,
                                      else UTC)
list      list                        the items joined with ``separator`` (default ``", "``)
========  ==========================  ====================================================================

A column without a format takes its source's natural one: number for a number source, otherwise
the one format that suits it.
Projection (:func:`rows_for`) is pure: entity states in, ``(key, {header: value})`` rows out, values ready
for the sheet writer (str, int, float, bool, or None for an empty cell).
"""

from __future__ import annotations

import difflib
import enum
import functools
import re
import zoneinfo
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Final, Literal, cast, get_args

import msgspec

from connector.errors import ConfigError, suggest_known_field
from connector.events import (
    CustomerClosed,
    CustomerPipelineUpdated,
    CustomerTook,
    CustomerTransferred,
    NoteChanged,
    OrderCreated,
    OrderUpdated,
    TagSet,
    TagUnset,
)
from connector.sync.state import CustomerState, Envelope, OrderState, event_time, stamp_of, visible_tags

if TYPE_CHECKING:
    from connector.settings import Settings

__all__ = [
    "DEFAULT_DATETIME_PATTERN",
    "DEFAULT_SEPARATOR",
    "KEY_SOURCES",
    "SOURCES",
    "Cell",
    "ColumnMapping",
    "ColumnSettings",
    "CompanyMapping",
    "CompanySettings",
    "Entity",
    "Format",
    "MappingFile",
    "MappingSettings",
    "Row",
    "SheetMapping",
    "Source",
    "SourceKind",
    "WorksheetMapping",
    "WorksheetSettings",
    "describe_mapping",
    "describe_sources",
    "load_mapping",
    "mapping_file",
    "parse_mapping",
    "resolve_mapping",
    "rows_for",
]

Entity = Literal["customers", "orders", "events"]
Format = Literal["text", "number", "datetime", "list"]
Cell = str | int | float | bool | None
Row = tuple[str, dict[str, Cell]]

DEFAULT_DATETIME_PATTERN: Final = "%Y-%m-%d %H:%M:%S"
DEFAULT_SEPARATOR: Final = ", "
DEFAULT_TIMEZONE: Final = "UTC"


# --- the configuration as written --------------------------------------------------------------------

Header = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
# Google limits a sheet's title to 100 characters.
Title = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
SpreadsheetId = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_-]+$")]


class ColumnSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """One column: its header, the source field it shows, and how."""

    header: Header
    source: str
    format: Format | None = None
    timezone: str | None = None  # datetime only
    pattern: str | None = None  # datetime only: strftime, or "iso"
    separator: str | None = None  # list only


class WorksheetSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """One worksheet (tab): the entity it shows, its key column and its columns in order."""

    title: Title
    entity: Entity
    key: str
    columns: Annotated[list[ColumnSettings], msgspec.Meta(min_length=1)]
    # The row the headers are in (1: the first); rows above it are a person's (a title, notes).
    header_row: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 1


class CompanySettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """One DooPage company and the spreadsheet its events are written to."""

    company_id: int
    spreadsheet_id: SpreadsheetId
    name: str = ""
    timezone: str | None = None
    # The service account of sheets.credentials to write this company's spreadsheet with (its
    # client_email, or its file as listed there); unset: the pool's stable choice (connector.sheets.pool).
    credential: Annotated[str, msgspec.Meta(min_length=1, max_length=400)] | None = None
    worksheets: Annotated[list[WorksheetSettings], msgspec.Meta(min_length=1)]


class MappingFile(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """A mapping file: a default timezone and the companies."""

    timezone: str | None = None
    companies: list[CompanySettings] = msgspec.field(default_factory=list)


class MappingSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """The ``[mapping]`` table of the settings: the mapping itself, or ``file`` naming where it is."""

    file: str | None = None
    timezone: str | None = None
    companies: list[CompanySettings] = msgspec.field(default_factory=list)


# --- source fields -----------------------------------------------------------------------------------


class SourceKind(enum.Enum):
    """What a source field holds, which decides the formats that suit it."""

    TEXT = "text"
    NUMBER = "number"
    TIME = "time"  # milliseconds since the epoch
    LIST = "list"  # a list of strings


_FORMATS_FOR: Final[dict[SourceKind, tuple[Format, ...]]] = {
    SourceKind.TEXT: ("text",),
    SourceKind.NUMBER: ("number", "text"),
    SourceKind.TIME: ("datetime",),
    SourceKind.LIST: ("list",),
}


@dataclass(frozen=True, slots=True)
class Source:
    """A source field: its name, kind, meaning, and how to read it from an entity."""

    name: str
    kind: SourceKind
    description: str
    read: Callable[[object], object]


# A source's reader is called with items of its entity only (rows_for picks them): it takes them as they
# are, without a wrapper that checks their type for every cell.


def _customer(read: Callable[[CustomerState], object]) -> Callable[[object], object]:
    return cast("Callable[[object], object]", read)


def _order(read: Callable[[OrderState], object]) -> Callable[[object], object]:
    return cast("Callable[[object], object]", read)


def _envelope(read: Callable[[Envelope], object]) -> Callable[[object], object]:
    return cast("Callable[[object], object]", read)


def _event_customer_id(envelope: Envelope) -> int | None:
    event = envelope.event
    return None if isinstance(event, OrderCreated | OrderUpdated) else event.data.customer.id


def _event_customer_name(envelope: Envelope) -> str | None:
    event = envelope.event
    return None if isinstance(event, OrderCreated | OrderUpdated) else event.data.customer.name


def _event_order_id(envelope: Envelope) -> int | None:
    event = envelope.event
    return event.data.order_id if isinstance(event, OrderCreated | OrderUpdated) else None


def _event_staff_name(envelope: Envelope) -> str | None:
    """The staff member who acted; for a transfer, the one who received the customer."""
    event = envelope.event
    if isinstance(event, CustomerTransferred):
        return event.data.new_staff.name
    if isinstance(event, CustomerTook | CustomerClosed | TagSet | TagUnset | CustomerPipelineUpdated):
        return event.data.staff.name if event.data.staff is not None else None
    return None


def _event_detail(envelope: Envelope) -> str | None:
    """A short human summary of what the event changed."""
    event = envelope.event
    if isinstance(event, CustomerTransferred):
        before = event.data.staff.name if event.data.staff is not None else None
        return f"{before or '?'} -> {event.data.new_staff.name or event.data.new_staff.id}"
    if isinstance(event, TagSet | TagUnset):
        sign = "+" if isinstance(event, TagSet) else "-"
        return f"{sign} " + DEFAULT_SEPARATOR.join(tag.name or str(tag.id) for tag in event.data.tags)
    if isinstance(event, NoteChanged):
        return event.data.note
    if isinstance(event, CustomerPipelineUpdated):
        return event.data.pipeline.name or str(event.data.pipeline.id)
    if isinstance(event, OrderUpdated):
        parts = [
            f"{label}: {value}"
            for label, value in (
                ("picking", event.data.picking_status),
                ("payment", event.data.payment_status),
            )
            if value is not None
        ]
        return DEFAULT_SEPARATOR.join(parts) or None
    return None


def _value(register: object) -> object:
    """The value of an optional state register (None when never written)."""
    return getattr(register, "value", None)


def _sources(*sources: Source) -> dict[str, Source]:
    return {source.name: source for source in sources}


_T, _N, _TM, _L = SourceKind.TEXT, SourceKind.NUMBER, SourceKind.TIME, SourceKind.LIST

SOURCES: Final[dict[Entity, dict[str, Source]]] = {
    "customers": _sources(
        Source("company.id", _N, "the DooPage company id", _customer(lambda c: c.company_id)),
        Source("customer.id", _N, "the customer's id (the key of a customers worksheet)",
               _customer(lambda c: c.customer_id)),
        Source("customer.name", _T, "the customer's name, from the latest event that carries it",
               _customer(lambda c: _value(c.name))),
        Source("customer.status", _T, "open, assigned or closed", _customer(lambda c: _value(c.status))),
        Source("customer.first_seen", _TM, "time of the customer's earliest event",
               _customer(lambda c: c.first_seen_ms)),
        Source("customer.last_event_time", _TM, "time of the customer's latest event",
               _customer(lambda c: c.last_event.stamp.time_ms)),
        Source("customer.last_event_type", _T, "event_type of the customer's latest event",
               _customer(lambda c: c.last_event.value)),
        Source("staff.id", _N, "id of the assigned staff member (took, or transferred to)",
               _customer(lambda c: c.assigned_staff.value.id if c.assigned_staff else None)),
        Source("staff.name", _T, "name of the assigned staff member (took, or transferred to)",
               _customer(lambda c: c.assigned_staff.value.name if c.assigned_staff else None)),
        Source("closed_by.id", _N, "id of the staff member who last closed the customer",
               _customer(lambda c: c.closed_by.value.id if c.closed_by else None)),
        Source("closed_by.name", _T, "name of the staff member who last closed the customer",
               _customer(lambda c: c.closed_by.value.name if c.closed_by else None)),
        Source("tags", _L, "names of the customer's current tags, sorted", _customer(visible_tags)),
        Source("note", _T, "the customer's note", _customer(lambda c: _value(c.note))),
        Source("pipeline.id", _N, "id of the customer's pipeline stage",
               _customer(lambda c: c.pipeline.value.id if c.pipeline else None)),
        Source("pipeline.name", _T, "name of the customer's pipeline stage",
               _customer(lambda c: c.pipeline.value.name if c.pipeline else None)),
    ),
    "orders": _sources(
        Source("company.id", _N, "the DooPage company id", _order(lambda o: o.company_id)),
        Source("order.id", _N, "the order's id (the key of an orders worksheet)",
               _order(lambda o: o.order_id)),
        Source("order.created_at", _TM, "when the order was created (DooPage's created_at)",
               _order(lambda o: o.created_at.value * 1000 if o.created_at else None)),
        Source("order.modified_at", _TM, "when the order was last modified (DooPage's modified_at)",
               _order(lambda o: o.modified_at.value * 1000 if o.modified_at else None)),
        Source("order.picking_status", _T, "the order's picking status",
               _order(lambda o: _value(o.picking_status))),
        Source("order.payment_status", _T, "the order's payment status",
               _order(lambda o: _value(o.payment_status))),
        Source("order.first_seen", _TM, "time of the order's earliest event",
               _order(lambda o: o.first_seen_ms)),
        Source("order.last_event_time", _TM, "time of the order's latest event",
               _order(lambda o: o.last_event.stamp.time_ms)),
        Source("order.last_event_type", _T, "event_type of the order's latest event",
               _order(lambda o: o.last_event.value)),
    ),
    "events": _sources(
        Source("company.id", _N, "the DooPage company id", _envelope(lambda e: e.event.company_id)),
        Source("event.type", _T, "the event_type", _envelope(lambda e: e.event.event_type)),
        Source("event.time", _TM, "the event's time: its timestamp, else the order's times, else received_at",
               _envelope(event_time)),
        Source("event.received_at", _TM, "when the connector received the event",
               _envelope(lambda e: e.received_ms)),
        Source("event.dedup_key", _T, "the event's deduplication key (the key of an events worksheet)",
               _envelope(lambda e: e.dedup_key)),
        Source("event.customer_id", _N, "the customer the event is about", _envelope(_event_customer_id)),
        Source("event.customer_name", _T, "the customer's name as the event gives it",
               _envelope(_event_customer_name)),
        Source("event.staff_name", _T, "the staff member who acted (for a transfer, the new one)",
               _envelope(_event_staff_name)),
        Source("event.order_id", _N, "the order the event is about", _envelope(_event_order_id)),
        Source("event.detail", _T, "what changed: tags, note, pipeline stage, statuses or transfer",
               _envelope(_event_detail)),
    ),
}  # fmt: skip

# The source that identifies a row; a worksheet's key column must show it.
KEY_SOURCES: Final[dict[Entity, str]] = {
    "customers": "customer.id",
    "orders": "order.id",
    "events": "event.dedup_key",
}


def describe_sources() -> str:
    """The documented list of source fields, by entity, with their kinds and meanings."""
    lines: list[str] = []
    for entity, sources in SOURCES.items():
        lines.append(f"{entity}:")
        for source in sources.values():
            formats = ", ".join(_FORMATS_FOR[source.kind])
            lines.append(f"  {source.name:<26} {source.kind.value:<7} [{formats}]  {source.description}")
    return "\n".join(lines)


# --- the compiled mapping ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ColumnMapping:
    """A validated column: header, source, and the function that renders the source's value as a cell."""

    header: str
    source: Source
    format: Format
    render: Callable[[object], Cell]
    options: str = ""  # the format's settings, for people: "Asia/Ho_Chi_Minh, %Y-%m-%d"


@dataclass(frozen=True, slots=True)
class WorksheetMapping:
    """A validated worksheet of one company's spreadsheet."""

    company_id: int
    title: str
    entity: Entity
    key_header: str
    columns: tuple[ColumnMapping, ...]
    header_row: int = 1

    @property
    def headers(self) -> list[str]:
        """The headers this worksheet writes, in order."""
        return [column.header for column in self.columns]


@dataclass(frozen=True, slots=True)
class CompanyMapping:
    """A validated company: the spreadsheet its events go to and the worksheets written there."""

    company_id: int
    name: str
    spreadsheet_id: str
    worksheets: tuple[WorksheetMapping, ...]
    credential: str | None = None  # the credential pinned for its spreadsheet (see CompanySettings)
    where: str = ""  # its path in the mapping file (``companies[3]``), for errors found later


@dataclass(frozen=True, slots=True)
class SheetMapping:
    """Every company's validated mapping, and the file it came from."""

    companies: tuple[CompanyMapping, ...]
    file: str

    def company(self, company_id: int) -> CompanyMapping | None:
        """The mapping of one company, or None when it has none."""
        for company in self.companies:
            if company.company_id == company_id:
                return company
        return None


def describe_mapping(mapping: SheetMapping) -> str:
    """What will be written where: per company its spreadsheet, worksheets and headers in order."""
    if not mapping.companies:
        return f"{mapping.file}: no company is mapped; every event will be kept as unrouted"
    lines = [
        f"{mapping.file}: {len(mapping.companies)} compan{'y' if len(mapping.companies) == 1 else 'ies'}"
    ]
    for company in mapping.companies:
        label = f" ({company.name})" if company.name else ""
        pin = f" (credential pinned: {company.credential})" if company.credential is not None else ""
        lines.append(f"company {company.company_id}{label} -> spreadsheet {company.spreadsheet_id}{pin}")
        for sheet in company.worksheets:
            lines.append(f"  worksheet {sheet.title!r}: {sheet.entity}, one row per {sheet.key_header!r}")
            for column in sheet.columns:
                how = f"{column.format}: {column.options}" if column.options else column.format
                lines.append(f"    {column.header!r:<28} <- {column.source.name} ({how})")
    return "\n".join(lines)


# --- loading and checking ----------------------------------------------------------------------------


def mapping_file(settings: Settings) -> Path | None:
    """The mapping file the settings name, absolute; None for an inline mapping."""
    name = settings.mapping.file
    if name is None:
        return None
    path = Path(name)
    return path if path.is_absolute() else Path(settings.source).resolve().parent / path


def load_mapping(settings: Settings) -> SheetMapping:
    """The validated mapping of these settings: inline under [mapping], or from the file it names."""
    inline = settings.mapping
    if inline.file is None:
        return resolve_mapping(inline.companies, inline.timezone, settings.source, "mapping.")
    if inline.companies or inline.timezone is not None:
        raise ConfigError(
            settings.source,
            "mapping.file",
            "[mapping] names a file, so it may not hold companies or a timezone too; "
            "move them into that file, or remove `file`",
        )
    path = mapping_file(settings)
    assert path is not None  # a file is named (checked above)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            settings.source, "mapping.file", f"cannot read the mapping file {path} ({exc})"
        ) from None
    return parse_mapping(text, str(path))


def parse_mapping(text: str, file: str) -> SheetMapping:
    """Validate a mapping file given as TOML text; ``file`` names it in errors."""
    try:
        decoded = msgspec.toml.decode(text, type=MappingFile)
    except msgspec.ValidationError as exc:
        raise _located(file, str(exc)) from None
    except msgspec.DecodeError as exc:
        raise ConfigError(file, "", f"not valid TOML: {exc}") from None
    return resolve_mapping(decoded.companies, decoded.timezone, file, "")


_FIELD_NAMES: Final = sorted(
    {
        name
        for struct in (MappingFile, CompanySettings, WorksheetSettings, ColumnSettings)
        for name in struct.__struct_fields__
    }
)
_UNKNOWN_FIELD: Final = re.compile(r"unknown field `([^`]*)`")
_HINTS: Final[dict[str, str]] = {
    "entity": "use one of: " + ", ".join(get_args(Entity)),
    "format": "use one of: " + ", ".join(get_args(Format)),
    "spreadsheet_id": "use the id in the spreadsheet's URL: https://docs.google.com/spreadsheets/d/<id>/edit",
}


def _located(file: str, message: str) -> ConfigError:
    """Split msgspec's ``reason - at `$.a[0].b``` into a ConfigError; suggest the key a typo meant."""
    reason, sep, where = message.rpartition(" - at ")
    if not sep:
        return ConfigError(file, "", message)
    path = where.strip("`").removeprefix("$").removeprefix(".")
    unknown = _UNKNOWN_FIELD.search(reason)
    reason = suggest_known_field(reason, _FIELD_NAMES)
    hint = _HINTS.get(path.rpartition(".")[2])
    if hint and not unknown:
        reason = f"{reason}; {hint}"
    return ConfigError(file, path, reason)


def resolve_mapping(
    companies: list[CompanySettings], timezone: str | None, file: str, prefix: str
) -> SheetMapping:
    """Check a decoded mapping's meaning and compile it; ``prefix`` is its path in ``file``."""
    default_zone = _zone(timezone or DEFAULT_TIMEZONE, file, f"{prefix}timezone")
    seen_companies: dict[int, str] = {}
    # Titles are unique per spreadsheet, across the companies that may share one; Google compares them
    # without regard to case.
    seen_titles: dict[tuple[str, str], str] = {}
    pinned: dict[str, tuple[str, str]] = {}  # spreadsheet -> (credential, the company that pinned it)
    resolved: list[CompanyMapping] = []
    for i, company in enumerate(companies):
        where = f"{prefix}companies[{i}]"
        if company.company_id in seen_companies:
            raise ConfigError(
                file,
                f"{where}.company_id",
                f"company {company.company_id} is already mapped by {seen_companies[company.company_id]}; "
                "map each company once (one company may have several worksheets)",
            )
        seen_companies[company.company_id] = where
        zone = (
            _zone(company.timezone, file, f"{where}.timezone")
            if company.timezone is not None
            else default_zone
        )
        worksheets: list[WorksheetMapping] = []
        for j, sheet in enumerate(company.worksheets):
            sheet_where = f"{where}.worksheets[{j}]"
            title_key = (company.spreadsheet_id, sheet.title.casefold())
            if title_key in seen_titles:
                raise ConfigError(
                    file,
                    f"{sheet_where}.title",
                    f"spreadsheet {company.spreadsheet_id} already has a worksheet titled {sheet.title!r} "
                    f"({seen_titles[title_key]}); give each worksheet of a spreadsheet its own title",
                )
            seen_titles[title_key] = sheet_where
            worksheets.append(_resolve_worksheet(company.company_id, sheet, zone, file, sheet_where))
        if company.credential is not None:
            _check_pin(company.spreadsheet_id, company.credential, pinned, file, f"{where}.credential")
        resolved.append(
            CompanyMapping(
                company.company_id,
                company.name,
                company.spreadsheet_id,
                tuple(worksheets),
                company.credential,
                where,
            )
        )
    return SheetMapping(tuple(resolved), file)


def _check_pin(
    spreadsheet_id: str, credential: str, pinned: dict[str, tuple[str, str]], file: str, where: str
) -> None:
    """A spreadsheet is written with one credential: companies sharing it may not pin different ones."""
    other = pinned.setdefault(spreadsheet_id, (credential, where))
    if other[0] != credential:
        raise ConfigError(
            file,
            where,
            f"spreadsheet {spreadsheet_id} is already pinned to credential {other[0]!r} by {other[1]}; "
            "the companies sharing a spreadsheet must pin the same credential (or only one of them pins it)",
        )


def _resolve_worksheet(
    company_id: int, sheet: WorksheetSettings, zone: tzinfo, file: str, where: str
) -> WorksheetMapping:
    """Check one worksheet's columns and key, and compile its columns."""
    columns: list[ColumnMapping] = []
    by_header: dict[str, int] = {}
    for k, column in enumerate(sheet.columns):
        column_where = f"{where}.columns[{k}]"
        header = column.header.strip()
        if not header:
            raise ConfigError(file, f"{column_where}.header", "a header cannot be blank")
        if header in by_header:
            raise ConfigError(
                file,
                f"{column_where}.header",
                f"header {header!r} is already used by columns[{by_header[header]}] of this worksheet; "
                "each column needs its own header",
            )
        by_header[header] = k
        columns.append(_resolve_column(sheet.entity, column, header, zone, file, column_where))
    key = sheet.key.strip()
    if key not in by_header:
        raise ConfigError(
            file,
            f"{where}.key",
            f"key {sheet.key!r} is not one of this worksheet's headers ({', '.join(map(repr, by_header))}); "
            "set it to the header of the column that identifies a row",
        )
    key_source = KEY_SOURCES[sheet.entity]
    if columns[by_header[key]].source.name != key_source:
        raise ConfigError(
            file,
            f"{where}.key",
            f"the key column of a {sheet.entity} worksheet must show {key_source}, which identifies a row; "
            f"{key!r} shows {columns[by_header[key]].source.name}",
        )
    return WorksheetMapping(company_id, sheet.title, sheet.entity, key, tuple(columns), sheet.header_row)


def _resolve_column(
    entity: Entity, column: ColumnSettings, header: str, zone: tzinfo, file: str, where: str
) -> ColumnMapping:
    """Check a column's source and format, and build its renderer."""
    source = _source(entity, column.source, file, f"{where}.source")
    allowed = _FORMATS_FOR[source.kind]
    fmt: Format = column.format or allowed[0]
    if fmt not in allowed:
        raise ConfigError(
            file,
            f"{where}.format",
            f"format {fmt!r} does not suit {source.name}, which is {source.kind.value}; "
            f"use {' or '.join(map(repr, allowed))}",
        )
    for option, owner in (("timezone", "datetime"), ("pattern", "datetime"), ("separator", "list")):
        if getattr(column, option) is not None and fmt != owner:
            raise ConfigError(
                file, f"{where}.{option}", f"`{option}` applies only to format = {owner!r}, not {fmt!r}"
            )
    options = ""
    if fmt == "datetime":
        column_zone = zone if column.timezone is None else _zone(column.timezone, file, f"{where}.timezone")
        pattern = _pattern(column.pattern or DEFAULT_DATETIME_PATTERN, file, f"{where}.pattern")
        render = _datetime_renderer(column_zone, pattern)
        options = f"{column_zone}, {pattern}"
    elif fmt == "list":
        separator = DEFAULT_SEPARATOR if column.separator is None else column.separator
        render = _list_renderer(separator)
        options = f"separator {separator!r}"
    elif fmt == "number":
        render = _number
    else:
        render = _text
    return ColumnMapping(header, source, fmt, render, options)


def _source(entity: Entity, name: str, file: str, where: str) -> Source:
    """The source field called ``name`` on this entity, or an error that names the right one."""
    sources = SOURCES[entity]
    if name in sources:
        return sources[name]
    valid = ", ".join(sources)
    elsewhere = [other for other, fields in SOURCES.items() if name in fields]
    if elsewhere:
        reason = (
            f"source {name!r} belongs to {' and '.join(elsewhere)} worksheets, not {entity}; "
            f"valid sources here: {valid}"
        )
    else:
        close = difflib.get_close_matches(name, list(sources), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        reason = f"unknown source field {name!r}; {hint}valid sources for {entity}: {valid}"
    raise ConfigError(file, where, reason)


def _zone(name: str, file: str, where: str) -> tzinfo:
    """The IANA timezone called ``name``, or an error suggesting the closest real one."""
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        close = difflib.get_close_matches(name, sorted(zoneinfo.available_timezones()), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(
            file,
            where,
            f"unknown timezone {name!r}; {hint}use an IANA name such as 'Asia/Ho_Chi_Minh' or 'UTC'",
        ) from None


def _pattern(pattern: str, file: str, where: str) -> str:
    """A datetime pattern: "iso" or a strftime pattern with at least one directive."""
    if pattern == "iso":
        return pattern
    if "%" not in pattern:
        raise ConfigError(
            file,
            where,
            f"pattern {pattern!r} has no strftime directive; "
            f"write e.g. {DEFAULT_DATETIME_PATTERN!r}, or 'iso'",
        )
    try:
        datetime(2021, 4, 11, tzinfo=UTC).strftime(pattern)
    except ValueError as exc:
        raise ConfigError(
            file, where, f"pattern {pattern!r} is not a valid strftime pattern ({exc})"
        ) from None
    return pattern


# --- rendering ---------------------------------------------------------------------------------------


def _text(value: object) -> Cell:
    return None if value is None else str(value)


def _number(value: object) -> Cell:
    assert value is None or isinstance(value, int | float)
    return value


# Rendered times are kept per whole second, per column: a flush's times cluster (the events of one
# second, customers first seen together), and making one is what the rows of a flush spend most on.
_SECONDS_KEPT: Final = 4096


def _datetime_renderer(zone: tzinfo, pattern: str) -> Callable[[object], Cell]:
    @functools.lru_cache(maxsize=_SECONDS_KEPT)
    def at_second(seconds: int) -> str:
        """The text of a whole second: ISO 8601 without a fraction for "iso", else the pattern's."""
        moment = datetime.fromtimestamp(seconds, zone)
        return moment.isoformat(timespec="seconds") if pattern == "iso" else moment.strftime(pattern)

    def render(value: object) -> Cell:
        if value is None:
            return None
        assert isinstance(value, int)
        seconds, millis = divmod(value, 1000)
        if pattern == "iso":
            whole = at_second(seconds)
            # ISO 8601: the date and time are its first 19 characters, the UTC offset follows them.
            return f"{whole[:19]}.{millis:03d}{whole[19:]}" if millis else whole
        if "%f" in pattern:  # shows the fraction: not the same text for the whole second
            return datetime.fromtimestamp(seconds, zone).replace(microsecond=millis * 1000).strftime(pattern)
        return at_second(seconds)

    return render


def _list_renderer(separator: str) -> Callable[[object], Cell]:
    def render(value: object) -> Cell:
        assert isinstance(value, list)
        return separator.join(value) if value else None

    return render


# --- projection --------------------------------------------------------------------------------------

_ITEM_TYPE: Final[dict[Entity, type]] = {"customers": CustomerState, "orders": OrderState, "events": Envelope}


def _company_of(item: CustomerState | OrderState | Envelope) -> int:
    return item.event.company_id if isinstance(item, Envelope) else item.company_id


def _sort_key(item: CustomerState | OrderState | Envelope) -> tuple[int, int, str]:
    """New rows are appended oldest first: by first seen, or for events in the order the fold applies them."""
    if isinstance(item, Envelope):
        stamp = stamp_of(item)
        return stamp.time_ms, stamp.rank, stamp.key
    if isinstance(item, CustomerState):
        return item.first_seen_ms, item.customer_id, ""
    return item.first_seen_ms, item.order_id, ""


def rows_for(
    worksheet: WorksheetMapping, items: Iterable[CustomerState | OrderState | Envelope]
) -> list[Row]:
    """The rows this worksheet shows for these items, as ``(key, {header: value})``, oldest first.

    Items of another entity or another company are skipped, so a worker may pass everything a batch
    touched to every worksheet of the company. The key is the key column's value as text.
    """
    kind = _ITEM_TYPE[worksheet.entity]
    mine = [item for item in items if isinstance(item, kind) and _company_of(item) == worksheet.company_id]
    mine.sort(key=_sort_key)
    # Column by column: each column's reader and renderer over every item, then the rows from them.
    headers = worksheet.headers
    columns = [list(map(column.render, map(column.source.read, mine))) for column in worksheet.columns]
    keys = columns[headers.index(worksheet.key_header)]
    rows = zip(keys, zip(*columns, strict=True), strict=True)
    return [(str(key), dict(zip(headers, values, strict=True))) for key, values in rows]
