"""Backfill: importing history (JSONL of webhook bodies) and CSV exports, then writing them to the sheets.

Two steps, each safe to repeat:

1. **Import.** A file is read and every line or row validated first (:func:`read_jsonl`,
   :func:`read_csv`, pure). Unless told to skip them, one bad line means nothing is imported. The events
   are stored in the inbox with status ``backfill`` (the embedded worker only claims ``pending``, so only
   the backfill command writes them), deduplicated like webhooks: importing the same file again stores
   nothing.
2. **Write** (:func:`write_backfill`). Passes of ``claim_subjects`` (every backfill event of up to 5,000
   customers or orders: one row each) through the worker's own :meth:`Worker.process`, so a flush writes
   at most 5,000 rows to a worksheet, until no backfill event is left. When 5,000 rows would not fit in
   one write request (``sheets.max_request_bytes``, which the writer splits at), later passes take as
   many rows as fit, so the backfill uses the fewest write requests. A run that is interrupted leaves
   its events in ``backfill``; the next run (or ``backfill resume``) writes them.

Times of imported events
------------------------
The *as-of* time (``--as-of``, by default the file's modification time) says when the file's content was
true. A CSV row becomes synthetic DooPage events whose ``timestamp`` is the as-of time, so the fold's
per-field last-writer-wins lets any newer real webhook win over imported data, and imported data win
over older webhooks. Each imported line or row is stored as received at ``as-of + its line number``
milliseconds: the events DooPage sends without a timestamp (tag_set, tag_unset, note_changed,
customer_pipeline_updated) take their time from that, so a JSONL history keeps its order (a tag set,
unset and set again ends set), and re-importing the file gives the same deduplication keys, so nothing is
stored twice.

CSV rows as events
------------------
A customer row gives ``customer_updated`` (id and name), and, for cells that are not empty,
``note_changed``, ``customer_pipeline_updated`` and ``tag_set``. An order row gives one
``order_updated``. An empty cell says nothing about its field (as a field DooPage leaves out), so it never
clears a value; tags are only ever added. Tags and pipeline stages need ids: taken from the ``tag_ids`` /
``pipeline.id`` columns when mapped, otherwise derived from the name (:func:`derived_id`: a negative
number, never equal to a real DooPage id; the same name always gets the same id).

The synthetic events are stored under the endpoint ``backfill-csv`` and are not written to ``events``
worksheets (the log of DooPage's own events); JSONL lines (endpoint ``backfill``) are, like any webhook.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import time
import zoneinfo
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Final, Literal

import msgspec

from connector.events import (
    Customer,
    CustomerData,
    CustomerPipelineUpdated,
    CustomerUpdated,
    EventDecodeError,
    KnownEvent,
    NoteChanged,
    NoteData,
    OrderUpdated,
    OrderUpdatedData,
    Pipeline,
    PipelineData,
    Tag,
    TagsData,
    TagSet,
    UnknownEvent,
    content_key,
    decode_body,
    subject_of,
)
from connector.settings import Settings
from connector.sheets.plan import WorksheetBatch, encode_writes, plan_worksheet
from connector.sheets.writer import FlushReport, SheetWriter
from connector.store import open_intake, open_work_store
from connector.store.owners import owner_id
from connector.store.protocols import Figures, WorkStore
from connector.store.records import CSV_IMPORT_ENDPOINT, InboxRecord, StoredEvent
from connector.sync.mapping import SheetMapping
from connector.sync.routing import Router
from connector.sync.worker import PassReport, Worker

__all__ = [
    "BACKFILL_STATUS",
    "CSV_ENDPOINT",
    "CUSTOMER_FIELDS",
    "JSONL_ENDPOINT",
    "MAX_ROWS_PER_WRITE",
    "ORDER_FIELDS",
    "STORE_CHUNK",
    "BackfillInput",
    "CsvKind",
    "CsvOptions",
    "ImportCounts",
    "Problem",
    "RowError",
    "UsageError",
    "WriteTotals",
    "customer_events",
    "derived_id",
    "file_as_of",
    "import_records",
    "order_events",
    "parse_column_map",
    "parse_datetime_ms",
    "parse_epoch_seconds",
    "parse_timezone",
    "pending_backfill",
    "read_csv",
    "read_jsonl",
    "record_for",
    "split_list",
    "write_backfill",
]

BACKFILL_STATUS: Final = "backfill"
JSONL_ENDPOINT: Final = "backfill"
CSV_ENDPOINT: Final = CSV_IMPORT_ENDPOINT
# Issue 5: a backfill writes at most 5,000 rows per worksheet per request.
MAX_ROWS_PER_WRITE: Final = 5_000
# Records per store transaction: a multi-row INSERT binds 11 values per record, and SQLite allows 32,766.
STORE_CHUNK: Final = 2_000
# DooPage's id and time ranges (see connector.events).
_MIN_ID: Final = -(2**63)
_MAX_ID: Final = 2**63 - 1
_MAX_EPOCH_SECONDS: Final = 253_402_300_799  # 9999-12-31T23:59:59Z

CsvKind = Literal["customers", "orders"]

# The fields a CSV column can feed, and what each means (shown by --help).
CUSTOMER_FIELDS: Final[dict[str, str]] = {
    "customer.id": "the customer id (required; a whole number)",
    "customer.name": "the customer's name",
    "tags": "tag names, split on --tag-separator",
    "tag_ids": "the tags' DooPage ids, in the same order as tags (else derived from each name)",
    "note": "the note",
    "pipeline.name": "the pipeline stage's name",
    "pipeline.id": "the pipeline stage's DooPage id (else derived from the name)",
}
ORDER_FIELDS: Final[dict[str, str]] = {
    "order.id": "the order id (required; a whole number)",
    "order.created_at": "when the order was created (epoch seconds or ISO 8601)",
    "order.modified_at": "when the order was last modified (epoch seconds or ISO 8601)",
    "order.picking_status": "the picking status",
    "order.payment_status": "the payment status",
}
_FIELDS: Final[dict[CsvKind, dict[str, str]]] = {"customers": CUSTOMER_FIELDS, "orders": ORDER_FIELDS}
_KEY_FIELD: Final[dict[CsvKind, str]] = {"customers": "customer.id", "orders": "order.id"}

_encoder: Final = msgspec.json.Encoder()


class UsageError(ValueError):
    """A backfill asked for something that cannot work (a bad column map, a missing header, a bad time)."""


class RowError(ValueError):
    """One CSV row or JSONL line that cannot be imported; the message says why."""


class Problem(msgspec.Struct, frozen=True):
    """A line of the input that cannot be imported, and why."""

    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass(frozen=True)
class BackfillInput:
    """What reading a file gave: the records to store, the lines that could not be read, rows read."""

    records: list[InboxRecord]
    problems: list[Problem]
    rows: int
    unknown: int = 0  # JSONL lines of an event type this version does not know (kept, not written)


@dataclass(frozen=True)
class CsvOptions:
    """How to read a CSV export: the column map and the cell syntax."""

    kind: CsvKind
    columns: Mapping[str, str]  # field -> CSV header
    company_id: int
    as_of_ms: int
    tag_separator: str = ","
    delimiter: str = ","
    timezone: tzinfo = UTC


@dataclass
class ImportCounts:
    """What storing records in the inbox did."""

    stored: int = 0
    duplicate: int = 0


@dataclass
class WriteTotals:
    """What writing the backfill events to the sheets did, over all passes."""

    passes: int = 0
    rows: int = 0  # customers and orders all of whose backfill events were settled
    done: int = 0
    failed: int = 0
    unrouted: int = 0
    sheets_requests: int = 0
    remaining: int = 0  # backfill events still waiting when the run stopped
    seconds: float = 0.0
    reports: list[PassReport] = field(default_factory=list)


# --- pure parsing and conversion ---------------------------------------------------------------------


def parse_column_map(kind: CsvKind, specs: Sequence[str]) -> dict[str, str]:
    """``FIELD=HEADER`` options -> {field: header}; UsageError naming a bad one and the valid fields."""
    fields = _FIELDS[kind]
    columns: dict[str, str] = {}
    for spec in specs:
        name, sep, header = spec.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UsageError(f"--column {spec!r}: write it as FIELD=HEADER, for example customer.id=ID")
        if name not in fields:
            raise UsageError(
                f"--column {spec!r}: {name!r} is not a {kind} field; the fields are: {', '.join(fields)}"
            )
        if name in columns:
            raise UsageError(f"--column {spec!r}: {name} is mapped twice")
        if not header:
            raise UsageError(f"--column {spec!r}: the CSV header after '=' is empty")
        columns[name] = header
    key = _KEY_FIELD[kind]
    if key not in columns:
        raise UsageError(f"the column map needs {key}: add --column {key}=HEADER (the CSV column of the id)")
    if kind == "customers" and "tag_ids" in columns and "tags" not in columns:
        raise UsageError("--column tag_ids needs --column tags too (the ids go with the names)")
    return columns


def parse_epoch_seconds(text: str, zone: tzinfo = UTC) -> int:
    """A time cell as epoch seconds: a number of seconds, or ISO 8601 (a naive one is in ``zone``)."""
    return parse_datetime_ms(text, zone) // 1000


def parse_datetime_ms(text: str, zone: tzinfo = UTC) -> int:
    """A time as epoch milliseconds: epoch seconds (may have a fraction) or ISO 8601; ValueError if not."""
    value = text.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{value!r} is neither epoch seconds nor an ISO 8601 time") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=zone)
        ms = int(moment.timestamp() * 1000)
    else:
        if seconds != seconds or seconds in (float("inf"), float("-inf")):
            raise ValueError(f"{value!r} is not a time")
        if seconds > _MAX_EPOCH_SECONDS:
            raise ValueError(f"{value!r} is after the year 9999 (epoch milliseconds? give seconds)")
        ms = int(seconds * 1000)
    if not 0 <= ms <= _MAX_EPOCH_SECONDS * 1000 + 999:
        raise ValueError(f"{value!r} is outside 1970-01-01 .. 9999-12-31")
    return ms


def parse_timezone(name: str) -> tzinfo:
    """An IANA timezone by name; UsageError if unknown."""
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise UsageError(f"unknown timezone {name!r} (use an IANA name such as Asia/Ho_Chi_Minh)") from None


def derived_id(kind: str, name: str) -> int:
    """A stable id for a named thing that came without one: negative, so no DooPage id can equal it.

    The first 63 bits of sha256(``kind:name``), negated (minus one, so never 0).
    """
    digest = hashlib.sha256(f"{kind}:{name}".encode()).digest()
    return -(int.from_bytes(digest[:8], "big") >> 1) - 1


def split_list(text: str, separator: str) -> list[str]:
    """Cell items split on ``separator``, trimmed, empties and repeats dropped, order kept."""
    items = (item.strip() for item in text.split(separator))
    return list(dict.fromkeys(item for item in items if item))


def _whole_number(text: str, what: str) -> int:
    value = text.strip()
    if not value:
        raise RowError(f"{what} is empty")
    try:
        number = int(value)
    except ValueError:
        raise RowError(f"{what} {value!r} is not a whole number") from None
    if not _MIN_ID <= number <= _MAX_ID:
        raise RowError(f"{what} {value!r} is out of range")
    return number


def _cell(row: Mapping[str, str], columns: Mapping[str, str], name: str) -> str:
    """A mapped field's cell, trimmed; empty when the field is not mapped."""
    header = columns.get(name)
    return row[header].strip() if header is not None else ""


def _time_cell(row: Mapping[str, str], options: CsvOptions, name: str) -> int | None:
    text = _cell(row, options.columns, name)
    if not text:
        return None
    try:
        return parse_epoch_seconds(text, options.timezone)
    except ValueError as exc:
        raise RowError(f"{name} ({options.columns[name]!r}): {exc}") from None


def customer_events(row: Mapping[str, str], options: CsvOptions) -> list[KnownEvent]:
    """The synthetic events of one customer row (see the module docstring); RowError if it is invalid."""
    columns = options.columns
    customer_id = _whole_number(
        _cell(row, columns, "customer.id"), f"customer.id ({columns['customer.id']!r})"
    )
    name = _cell(row, columns, "customer.name") or None
    customer = Customer(id=customer_id, name=name)
    common = {"company_id": options.company_id, "timestamp": options.as_of_ms}
    events: list[KnownEvent] = [CustomerUpdated(data=CustomerData(customer=customer), **common)]
    note = _cell(row, columns, "note")
    if note:
        events.append(NoteChanged(data=NoteData(customer=customer, note=note), **common))
    stage_name = _cell(row, columns, "pipeline.name")
    stage_id_text = _cell(row, columns, "pipeline.id")
    if stage_name or stage_id_text:
        stage_id = (
            _whole_number(stage_id_text, f"pipeline.id ({columns['pipeline.id']!r})")
            if stage_id_text
            else derived_id("pipeline", stage_name)
        )
        pipeline = Pipeline(id=stage_id, name=stage_name or None)
        events.append(
            CustomerPipelineUpdated(data=PipelineData(customer=customer, pipeline=pipeline), **common)
        )
    names = split_list(_cell(row, columns, "tags"), options.tag_separator)
    if names:
        events.append(TagSet(data=TagsData(customer=customer, tags=_tags(row, options, names)), **common))
    return events


def _tags(row: Mapping[str, str], options: CsvOptions, names: list[str]) -> list[Tag]:
    """The row's tags with their ids: from the tag_ids column, or derived from the names."""
    if "tag_ids" not in options.columns:
        return [Tag(id=derived_id("tag", name), name=name) for name in names]
    what = f"tag_ids ({options.columns['tag_ids']!r})"
    texts = [item.strip() for item in _cell(row, options.columns, "tag_ids").split(options.tag_separator)]
    texts = [text for text in texts if text]
    if len(texts) != len(names):
        raise RowError(f"{what} has {len(texts)} ids for {len(names)} tags")
    return [Tag(id=_whole_number(text, what), name=name) for text, name in zip(texts, names, strict=True)]


def order_events(row: Mapping[str, str], options: CsvOptions) -> list[KnownEvent]:
    """The synthetic ``order_updated`` of one order row; RowError if it is invalid."""
    columns = options.columns
    order_id = _whole_number(_cell(row, columns, "order.id"), f"order.id ({columns['order.id']!r})")
    data = OrderUpdatedData(
        order_id=order_id,
        created_at=_time_cell(row, options, "order.created_at"),
        modified_at=_time_cell(row, options, "order.modified_at"),
        picking_status=_cell(row, columns, "order.picking_status") or None,
        payment_status=_cell(row, columns, "order.payment_status") or None,
    )
    return [OrderUpdated(company_id=options.company_id, timestamp=options.as_of_ms, data=data)]


def record_for(
    event: KnownEvent | UnknownEvent, body: bytes, key: str, received_ms: int, endpoint: str
) -> InboxRecord:
    """The inbox record of an imported event: status ``backfill`` (``unknown`` for an unknown type)."""
    return InboxRecord(
        received_ms=received_ms,
        endpoint=endpoint,
        company_id=event.company_id,
        event_type=event.event_type,
        event_ms=event.timestamp,
        body=body,
        content_key=key,
        subject=subject_of(event),
        status="unknown" if isinstance(event, UnknownEvent) else BACKFILL_STATUS,
    )


def read_csv(lines: Iterable[str], options: CsvOptions) -> BackfillInput:
    """Read a CSV export (header first) into inbox records; every bad row becomes a Problem.

    UsageError when a mapped header is missing from the file or appears in it twice. A ``line`` is the
    file line a row starts on; a customer or order id seen on an earlier row is a problem too.
    """
    convert = customer_events if options.kind == "customers" else order_events
    key_field = _KEY_FIELD[options.kind]
    reader = csv.reader(lines, delimiter=options.delimiter, strict=True)
    records: list[InboxRecord] = []
    problems: list[Problem] = []
    try:
        header = next(reader)
    except StopIteration:
        raise UsageError("the CSV file is empty: it needs a header row") from None
    except csv.Error as exc:
        raise UsageError(f"line 1: the header row is not valid CSV ({exc})") from None
    header = [text.strip() for text in header]
    _check_headers(options.columns, header)
    first_seen: dict[int, int] = {}
    rows = 0
    start = reader.line_num + 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            problems.append(Problem(start, f"not valid CSV ({exc})"))
            start = reader.line_num + 1
            continue
        line, start = start, reader.line_num + 1
        if not cells or all(not cell.strip() for cell in cells):
            continue
        rows += 1
        if len(cells) != len(header):
            problems.append(Problem(line, f"has {len(cells)} fields, the header has {len(header)}"))
            continue
        row = dict(zip(header, cells, strict=True))
        try:
            events = convert(row, options)
        except RowError as exc:
            problems.append(Problem(line, str(exc)))
            continue
        entity = _entity_id(events[0])
        if entity in first_seen:
            problems.append(Problem(line, f"{key_field} {entity} is already on line {first_seen[entity]}"))
            continue
        first_seen[entity] = line
        for event in events:
            body = _encoder.encode(event)
            records.append(record_for(event, body, content_key(body), options.as_of_ms + line, CSV_ENDPOINT))
    return BackfillInput(records, problems, rows)


def _entity_id(event: KnownEvent) -> int:
    if isinstance(event, OrderUpdated):
        return event.data.order_id
    assert isinstance(event, CustomerUpdated)
    return event.data.customer.id


def _check_headers(columns: Mapping[str, str], header: Sequence[str]) -> None:
    """Every mapped header once in the file's header row; UsageError listing the headers it has."""
    for name, wanted in columns.items():
        count = header.count(wanted)
        if count == 0:
            raise UsageError(
                f"--column {name}={wanted}: the CSV has no column {wanted!r}; its headers are: "
                + ", ".join(repr(h) for h in header)
            )
        if count > 1:
            raise UsageError(f"--column {name}={wanted}: the CSV has {count} columns named {wanted!r}")


def read_jsonl(lines: Iterable[bytes], as_of_ms: int, max_line_bytes: int) -> BackfillInput:
    """Read webhook bodies, one per line, into inbox records; every bad line becomes a Problem.

    Each line is decoded exactly as a POST body is (:func:`connector.events.decode_body`); blank lines
    are skipped; a line longer than ``max_line_bytes`` (the service's body limit) is refused.
    """
    records: list[InboxRecord] = []
    problems: list[Problem] = []
    rows = unknown = 0
    for line, raw in enumerate(lines, start=1):
        body = raw.rstrip(b"\r\n")
        if not body.strip():
            continue
        rows += 1
        if len(body) > max_line_bytes:
            problems.append(
                Problem(line, f"the body has {len(body)} bytes, more than the limit {max_line_bytes}")
            )
            continue
        try:
            decoded = decode_body(body)
        except EventDecodeError as exc:
            problems.append(Problem(line, str(exc)))
            continue
        if isinstance(decoded.event, UnknownEvent):
            unknown += 1
        records.append(record_for(decoded.event, body, decoded.content_key, as_of_ms + line, JSONL_ENDPOINT))
    return BackfillInput(records, problems, rows, unknown)


def file_as_of(path: Path) -> int:
    """A file's modification time in epoch milliseconds: the default as-of time of its content."""
    return path.stat().st_mtime_ns // 1_000_000


# --- storing ------------------------------------------------------------------------------------------


def import_records(
    settings: Settings,
    records: Sequence[InboxRecord],
    on_stored: Callable[[int], None] | None = None,
) -> ImportCounts:
    """Store records durably in the settings' store (SQLite or PostgreSQL), in chunks; how many were new
    and how many already there."""
    return asyncio.run(_store_all(settings, records, on_stored))


async def _store_all(
    settings: Settings, records: Sequence[InboxRecord], on_stored: Callable[[int], None] | None
) -> ImportCounts:
    counts = ImportCounts()
    inbox = open_intake(settings)
    try:
        for start in range(0, len(records), STORE_CHUNK):
            chunk = list(records[start : start + STORE_CHUNK])
            outcome = await inbox.put_many(chunk)
            new = sum(outcome)
            counts.stored += new
            counts.duplicate += len(chunk) - new
            if on_stored is not None:
                on_stored(len(chunk))
    finally:
        await inbox.aclose()
    return counts


# --- writing ------------------------------------------------------------------------------------------


def pending_backfill(store: Figures) -> tuple[int, int]:
    """Rows (customers and orders) with backfill events still to write, and how many events."""
    return store.subjects_waiting(BACKFILL_STATUS)


class _MeasuringWriter(SheetWriter):
    """The sheet writer, also noting the largest write body a flush needs (as if all its rows were new).

    A backfill sizes its passes with it: a write over ``max_request_bytes`` is split in two requests, so
    passes of as many rows as fit in one request take the fewest requests in all.
    """

    largest_flush_bytes = 0

    def flush(
        self,
        spreadsheet_id: str,
        batches: Sequence[WorksheetBatch],
        *,
        before_write: Callable[[], None] | None = None,
        pin: str | None = None,
    ) -> FlushReport:
        """Measure, then flush as the sheet writer does."""
        plans = [plan_worksheet(batch, None, new_sheet_id=1) for batch in batches]
        size = sum(len(body.payload) for body in encode_writes(plans, self._settings.max_request_bytes))
        self.largest_flush_bytes = max(self.largest_flush_bytes, size)
        return super().flush(spreadsheet_id, batches, before_write=before_write, pin=pin)


def _next_pass_rows(writer: SheetWriter, rows: int, limit: int, max_request_bytes: int) -> int:
    """How many rows the next pass takes: as many as fit one write request, judged by the last pass."""
    if not isinstance(writer, _MeasuringWriter) or writer.largest_flush_bytes == 0 or rows == 0:
        return limit
    per_row = writer.largest_flush_bytes / rows
    writer.largest_flush_bytes = 0
    # A margin, because the next rows may be a little larger than these.
    return max(1, min(limit, int(max_request_bytes * 0.95 / per_row)))


def write_backfill(
    settings: Settings,
    mapping: SheetMapping,
    *,
    rows_per_write: int = MAX_ROWS_PER_WRITE,
    on_pass: Callable[[WriteTotals], None] | None = None,
    idle_passes: int = 3,
    sleep: Callable[[float], None] = time.sleep,
    writer: SheetWriter | None = None,
) -> WriteTotals:
    """Write every ``backfill`` event to its sheets in passes of at most ``rows_per_write`` rows.

    After the first pass, a pass takes fewer rows when that many would not fit in one write request
    (``sheets.max_request_bytes``), since the writer would split it in two.

    Stops when none is left, or after ``idle_passes`` passes in a row that settled nothing (the
    spreadsheet is failing transiently, or another process holds the events); ``remaining`` then says
    how many wait for the next run. ConfigError if the settings cannot reach the Sheets API.
    """
    if not 1 <= rows_per_write <= MAX_ROWS_PER_WRITE:
        raise ValueError(f"rows_per_write must be within 1..{MAX_ROWS_PER_WRITE}")
    sheet_writer = writer
    if sheet_writer is None:
        sheet_writer = _MeasuringWriter.from_settings(settings.sheets, source=settings.source)
        sheet_writer.pool.check_pins(mapping)
    pass_rows = rows_per_write
    totals = WriteTotals()
    started = time.monotonic()
    queue = open_work_store(settings)
    owner = owner_id("backfill")
    # The worker leaves CSV rows' synthetic events out of events worksheets by itself.
    worker = Worker(
        queue,
        sheet_writer,
        Router.from_mapping(mapping),
        settings.worker,
        max_request_bytes=settings.sheets.max_request_bytes,
        owner=owner,
    )
    try:
        idle = 0
        while True:
            rows_before, _ = pending_backfill(queue)
            if rows_before == 0:
                break
            claimed = queue.claim_subjects(owner, BACKFILL_STATUS, pass_rows, settings.worker.lease_ms)
            settled = _run_pass(queue, worker, claimed, totals) if claimed else 0
            rows_after, _ = pending_backfill(queue)
            totals.rows += max(rows_before - rows_after, 0)
            pass_rows = _next_pass_rows(
                sheet_writer, rows_before - rows_after, rows_per_write, settings.sheets.max_request_bytes
            )
            if on_pass is not None:
                on_pass(totals)
            idle = 0 if settled else idle + 1
            if idle >= idle_passes:
                break
            if not settled:
                # Events leased elsewhere or given back after a transient failure: wait for them.
                sleep(max(settings.worker.backoff_ms, settings.worker.poll_ms) / 1000)
    finally:
        totals.remaining = pending_backfill(queue)[1]
        totals.seconds = time.monotonic() - started
        queue.close()
    return totals


def _run_pass(queue: WorkStore, worker: Worker, claimed: Sequence[StoredEvent], totals: WriteTotals) -> int:
    """Process one claim; how many events it settled."""
    try:
        report = worker.process(claimed)
    except BaseException:
        # Interrupted (Ctrl-C) or broken: give the claim back now rather than when its lease runs out.
        # Events already settled keep their status; folding again what was written changes nothing.
        queue.release(worker.owner, [event.id for event in claimed])
        raise
    totals.reports.append(report)
    totals.done += report.done
    totals.failed += report.failed
    totals.unrouted += report.unrouted
    totals.sheets_requests += report.sheets_requests
    totals.passes += 1
    return report.done + report.failed + report.unrouted
