"""Proposing a mapping from a spreadsheet's header rows, and writing a mapping file from it.

:func:`suggest_worksheet` reads one worksheet's headers (English or Vietnamese, with or without
diacritics: "Tên khách hàng", "Ten khach hang", "Customer name") and proposes a source for each header it
recognises, the worksheet's entity (customers, orders or an events log) and its key column. Headers it
does not recognise are listed, not guessed. :func:`mapping_toml` renders companies and worksheets as a
mapping file, checked with the same parser the service uses before anyone writes it. Everything here is
pure; reading the header rows is the commands' business.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from connector.sync.mapping import KEY_SOURCES, Entity, SheetMapping, parse_mapping

__all__ = [
    "DEFAULT_WORKSHEETS",
    "CompanyPlan",
    "ProposedColumn",
    "ProposedWorksheet",
    "mapping_toml",
    "normalise",
    "spreadsheet_id_from",
    "suggest_worksheet",
]

# What people call each source, in English and Vietnamese, compared after normalise().
_NAMES: Final[dict[Entity, dict[str, tuple[str, ...]]]] = {
    "customers": {
        "customer.id": ("customer id", "id", "id khach hang", "ma khach hang", "ma kh", "khach hang id"),
        "customer.name": (
            "name", "customer", "customer name", "full name", "ten", "ten khach hang", "ho ten", "ho va ten",
            "khach hang", "ten kh",
        ),
        "customer.status": ("status", "trang thai", "tinh trang"),
        "staff.name": (
            "assigned to", "staff", "sales", "owner", "nhan vien", "nhan vien phu trach", "nguoi phu trach",
            "phu trach", "sale",
        ),
        "staff.id": ("staff id", "ma nhan vien", "id nhan vien"),
        "closed_by.name": ("closed by", "nguoi dong", "dong boi"),
        "tags": ("tags", "tag", "labels", "the", "nhan", "the khach hang"),
        "note": ("note", "notes", "ghi chu"),
        "pipeline.name": ("pipeline", "stage", "pipeline stage", "giai doan", "buoc", "quy trinh"),
        "customer.first_seen": ("first seen", "created", "created at", "ngay tao", "thoi gian tao"),
        "customer.last_event_time": (
            "last activity", "updated", "updated at", "last updated", "cap nhat", "cap nhat lan cuoi",
            "hoat dong gan nhat", "ngay cap nhat",
        ),
        "customer.last_event_type": ("last event", "su kien cuoi", "su kien gan nhat"),
        "company.id": ("company id", "ma cong ty"),
    },
    "orders": {
        "order.id": ("order id", "order", "id", "ma don", "ma don hang", "don hang", "id don hang", "so don"),
        "order.created_at": ("created", "created at", "order date", "ngay tao", "ngay dat", "ngay dat hang"),
        "order.modified_at": ("modified", "modified at", "updated at", "ngay sua", "ngay cap nhat"),
        "order.picking_status": (
            "picking status", "picking", "fulfillment", "trang thai lay hang", "trang thai giao hang",
            "giao hang", "lay hang", "van chuyen",
        ),
        "order.payment_status": ("payment status", "payment", "thanh toan", "trang thai thanh toan"),
        "order.last_event_time": ("last activity", "last updated", "cap nhat", "hoat dong gan nhat"),
        "order.last_event_type": ("last event", "su kien cuoi"),
        "order.first_seen": ("first seen",),
        "company.id": ("company id", "ma cong ty"),
    },
    "events": {
        "event.dedup_key": ("event key", "key", "ma su kien", "khoa su kien"),
        "event.type": ("event", "event type", "type", "su kien", "loai su kien"),
        "event.time": ("time", "event time", "thoi gian", "thoi diem"),
        "event.received_at": ("received", "received at", "nhan luc", "thoi gian nhan"),
        "event.customer_id": ("customer id", "ma khach hang", "id khach hang"),
        "event.customer_name": ("customer", "customer name", "khach hang", "ten khach hang"),
        "event.staff_name": ("staff", "nhan vien"),
        "event.order_id": ("order id", "ma don", "ma don hang"),
        "event.detail": ("detail", "details", "chi tiet", "noi dung"),
        "company.id": ("company id", "ma cong ty"),
    },
}  # fmt: skip

# Extra column settings per source (a list's separator; an ISO receive time).
_OPTIONS: Final[dict[str, dict[str, str]]] = {
    "tags": {"format": "list", "separator": ", "},
    "event.received_at": {"format": "datetime", "pattern": "iso"},
}


@dataclass(frozen=True)
class ProposedColumn:
    """One header and the source proposed for it."""

    header: str
    source: str


@dataclass(frozen=True)
class ProposedWorksheet:
    """A worksheet's proposed mapping: its entity, key header, columns, and the headers left alone."""

    title: str
    entity: Entity
    key: str
    columns: tuple[ProposedColumn, ...]
    unrecognised: tuple[str, ...] = ()


@dataclass(frozen=True)
class CompanyPlan:
    """One company of a mapping file to write."""

    company_id: int
    spreadsheet_id: str
    worksheets: tuple[ProposedWorksheet, ...]
    name: str = ""
    notes: list[str] = field(default_factory=list)


def _columns(*pairs: tuple[str, str]) -> tuple[ProposedColumn, ...]:
    return tuple(ProposedColumn(header, source) for header, source in pairs)


# The worksheets proposed for a spreadsheet that has none with headers yet (the shipped example's).
DEFAULT_WORKSHEETS: Final = (
    ProposedWorksheet(
        "Customers",
        "customers",
        "Customer ID",
        _columns(
            ("Customer ID", "customer.id"), ("Name", "customer.name"), ("Status", "customer.status"),
            ("Assigned to", "staff.name"), ("Closed by", "closed_by.name"), ("Tags", "tags"), ("Note", "note"),
            ("Pipeline stage", "pipeline.name"), ("First seen", "customer.first_seen"),
            ("Last activity", "customer.last_event_time"), ("Last event", "customer.last_event_type"),
        ),
    ),
    ProposedWorksheet(
        "Orders",
        "orders",
        "Order ID",
        _columns(
            ("Order ID", "order.id"), ("Created", "order.created_at"), ("Modified", "order.modified_at"),
            ("Picking status", "order.picking_status"), ("Payment status", "order.payment_status"),
            ("Last activity", "order.last_event_time"),
        ),
    ),
    ProposedWorksheet(
        "Events",
        "events",
        "Event key",
        _columns(
            ("Time", "event.time"), ("Event", "event.type"), ("Customer ID", "event.customer_id"),
            ("Customer", "event.customer_name"), ("Staff", "event.staff_name"), ("Order ID", "event.order_id"),
            ("Detail", "event.detail"), ("Received", "event.received_at"), ("Event key", "event.dedup_key"),
        ),
    ),
)  # fmt: skip

_SPREADSHEET_URL: Final = re.compile(r"/spreadsheets/d/([A-Za-z0-9_-]+)")
_SPREADSHEET_ID: Final = re.compile(r"^[A-Za-z0-9_-]+$")


def spreadsheet_id_from(text: str) -> str:
    """The spreadsheet id in a Google Sheets URL, or the id itself; ValueError for anything else."""
    text = text.strip()
    found = _SPREADSHEET_URL.search(text)
    if found:
        return found.group(1)
    if _SPREADSHEET_ID.match(text):
        return text
    raise ValueError(
        f"not a spreadsheet URL or id: {text!r} (copy the address of the spreadsheet from the browser: "
        "https://docs.google.com/spreadsheets/d/<id>/edit)"
    )


def normalise(header: str) -> str:
    """A header as compared: no diacritics (đ as d), lower case, words separated by single spaces."""
    text = header.replace("đ", "d").replace("Đ", "D")
    text = "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))
    return " ".join(re.sub(r"[^0-9a-z]+", " ", text.casefold()).split())


def suggest_worksheet(title: str, headers: Sequence[str]) -> ProposedWorksheet | None:
    """The mapping proposed for a worksheet with these headers; None when no entity's key is there."""
    best: ProposedWorksheet | None = None
    for entity, names in _NAMES.items():
        lookup = {name: source for source, synonyms in names.items() for name in synonyms}
        columns: list[ProposedColumn] = []
        unrecognised: list[str] = []
        used: set[str] = set()
        for header in headers:
            if not header.strip():
                continue
            source = lookup.get(normalise(header))
            if source is None or source in used:
                unrecognised.append(header)
                continue
            used.add(source)
            columns.append(ProposedColumn(header, source))
        key = next((c.header for c in columns if c.source == KEY_SOURCES[entity]), None)
        if key is None:
            continue
        proposal = ProposedWorksheet(title, entity, key, tuple(columns), tuple(unrecognised))
        if best is None or len(proposal.columns) > len(best.columns):
            best = proposal
    return best


def _string(text: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's)."""
    return json.dumps(text, ensure_ascii=False)


def _column_line(column: ProposedColumn) -> str:
    fields = {"header": column.header, "source": column.source, **_OPTIONS.get(column.source, {})}
    inner = ", ".join(f"{name} = {_string(value)}" for name, value in fields.items())
    return f"    {{ {inner} }},"


def mapping_toml(companies: Sequence[CompanyPlan], timezone: str, file: str) -> tuple[str, SheetMapping]:
    """The text of a mapping file for these companies, and the mapping it parses to (ConfigError if the
    plan is not a valid mapping, which would be a bug here)."""
    lines = [
        "# doopage-sheets column mapping, written by `doopage-sheets init` / `mapping suggest`.",
        "# Check it with `doopage-sheets check-config`; the sources are listed in the README.",
        "",
        f"timezone = {_string(timezone)}",
    ]
    for company in companies:
        lines += ["", "[[companies]]", f"company_id = {company.company_id}"]
        if company.name:
            lines.append(f"name = {_string(company.name)}")
        lines.append(f"spreadsheet_id = {_string(company.spreadsheet_id)}")
        lines += [f"# {note}" for note in company.notes]
        for sheet in company.worksheets:
            lines += ["", "[[companies.worksheets]]", f"title = {_string(sheet.title)}"]
            lines += [f'entity = "{sheet.entity}"', f"key = {_string(sheet.key)}"]
            if sheet.unrecognised:
                lines.append(f"# not recognised, left to people: {', '.join(sheet.unrecognised)}")
            lines += ["columns = [", *(_column_line(column) for column in sheet.columns), "]"]
    text = "\n".join(lines) + "\n"
    return text, parse_mapping(text, file)
