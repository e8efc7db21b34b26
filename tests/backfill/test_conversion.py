"""Pure parsing and conversion: column maps, cells, CSV rows and JSONL lines into inbox records."""

from __future__ import annotations

import io
from datetime import UTC
from zoneinfo import ZoneInfo

import msgspec
import pytest

from connector.events import decode_body
from connector.sync.backfill import (
    BACKFILL_STATUS,
    CSV_ENDPOINT,
    JSONL_ENDPOINT,
    CsvOptions,
    Problem,
    UsageError,
    derived_id,
    parse_column_map,
    parse_datetime_ms,
    parse_epoch_seconds,
    read_csv,
    read_jsonl,
    split_list,
)

AS_OF = 1_700_000_000_000  # 2023-11-14T22:13:20Z


def customers(columns: dict[str, str], **options: object) -> CsvOptions:
    return CsvOptions(kind="customers", columns=columns, company_id=7, as_of_ms=AS_OF, **options)  # type: ignore[arg-type]


def orders(columns: dict[str, str]) -> CsvOptions:
    return CsvOptions(kind="orders", columns=columns, company_id=7, as_of_ms=AS_OF)


def bodies(text: str, options: CsvOptions) -> list[dict[str, object]]:
    parsed = read_csv(io.StringIO(text), options)
    assert parsed.problems == []
    return [msgspec.json.decode(record.body) for record in parsed.records]


FULL = {
    "customer.id": "ID",
    "customer.name": "Full name",
    "tags": "Tags",
    "note": "Note",
    "pipeline.name": "Stage",
}


@pytest.mark.parametrize(
    ("specs", "expected"),
    [
        (["customer.id=ID"], {"customer.id": "ID"}),
        (["customer.id=ID", "customer.name=Full name"], {"customer.id": "ID", "customer.name": "Full name"}),
        (["customer.id=a=b"], {"customer.id": "a=b"}),  # only the first '=' separates
    ],
)
def test_column_map_parses_field_equals_header(specs: list[str], expected: dict[str, str]) -> None:
    assert parse_column_map("customers", specs) == expected


@pytest.mark.parametrize(
    ("kind", "specs", "message"),
    [
        ("customers", ["customer.name=Name"], "needs customer.id"),
        ("customers", ["customer.id"], "FIELD=HEADER"),
        ("customers", ["customer.id=ID", "order.id=X"], "not a customers field"),
        ("customers", ["customer.id=ID", "customer.id=Other"], "mapped twice"),
        ("customers", ["customer.id="], "empty"),
        ("customers", ["customer.id=ID", "tag_ids=T"], "needs --column tags"),
        ("orders", ["customer.id=ID"], "not a orders field"),
    ],
)
def test_column_map_mistakes_are_named(kind: str, specs: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_column_map(kind, specs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "zone", "ms"),
    [
        ("1618118040", UTC, 1_618_118_040_000),
        (" 1618118040.5 ", UTC, 1_618_118_040_500),
        ("2021-04-11T05:14:00Z", UTC, 1_618_118_040_000),
        ("2021-04-11T12:14:00+07:00", UTC, 1_618_118_040_000),
        ("2021-04-11 12:14:00", ZoneInfo("Asia/Ho_Chi_Minh"), 1_618_118_040_000),
        ("2021-04-11T05:14:00", UTC, 1_618_118_040_000),
        ("0", UTC, 0),
    ],
)
def test_times_are_epoch_seconds_or_iso_8601(text: str, zone: ZoneInfo, ms: int) -> None:
    assert parse_datetime_ms(text, zone) == ms
    assert parse_epoch_seconds(text, zone) == ms // 1000


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("yesterday", "neither epoch seconds nor an ISO 8601"),
        ("1618118040123", "milliseconds"),
        ("-5", "outside"),
        ("nan", "not a time"),
        ("1969-12-31T00:00:00Z", "outside"),
    ],
)
def test_bad_times_say_why(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_datetime_ms(text)


def test_derived_ids_are_stable_negative_and_distinct() -> None:
    assert derived_id("tag", "VIP") == derived_id("tag", "VIP")
    assert derived_id("tag", "VIP") != derived_id("tag", "vip")
    assert derived_id("tag", "VIP") != derived_id("pipeline", "VIP")
    assert -(2**63) <= derived_id("tag", "VIP") < 0


@pytest.mark.parametrize(
    ("text", "separator", "items"),
    [
        ("a, b ,c", ",", ["a", "b", "c"]),
        ("a;;b;a", ";", ["a", "b"]),
        ("", ",", []),
        (" , ", ",", []),
    ],
)
def test_list_cells_are_split_trimmed_and_deduplicated(text: str, separator: str, items: list[str]) -> None:
    assert split_list(text, separator) == items


def test_a_full_customer_row_becomes_the_events_that_set_each_field() -> None:
    text = 'ID,Full name,Tags,Note,Stage\n12,Lan Anh,"VIP, wholesale",call back,Won\n'
    got = bodies(text, customers(FULL))
    common = {"company_id": 7, "timestamp": AS_OF}
    customer = {"id": 12, "name": "Lan Anh"}
    assert got == [
        {**common, "event_type": "customer_updated", "data": {"customer": customer}},
        {**common, "event_type": "note_changed", "data": {"customer": customer, "note": "call back"}},
        {
            **common,
            "event_type": "customer_pipeline_updated",
            "data": {"customer": customer, "pipeline": {"id": derived_id("pipeline", "Won"), "name": "Won"}},
        },
        {
            **common,
            "event_type": "tag_set",
            "data": {
                "customer": customer,
                "tags": [
                    {"id": derived_id("tag", "VIP"), "name": "VIP"},
                    {"id": derived_id("tag", "wholesale"), "name": "wholesale"},
                ],
            },
        },
    ]


@pytest.mark.parametrize(
    ("row", "event_types"),
    [
        ("5,,,,", ["customer_updated"]),  # empty cells say nothing
        ("5,Minh,,,", ["customer_updated"]),
        ("5,,x,,", ["customer_updated", "tag_set"]),
        ("5,,,n,", ["customer_updated", "note_changed"]),
        ("5,,,,Lead", ["customer_updated", "customer_pipeline_updated"]),
    ],
)
def test_only_filled_cells_give_events(row: str, event_types: list[str]) -> None:
    got = bodies("ID,Full name,Tags,Note,Stage\n" + row + "\n", customers(FULL))
    assert [body["event_type"] for body in got] == event_types


def test_tag_ids_and_pipeline_ids_are_taken_from_their_columns() -> None:
    columns = {"customer.id": "ID", "tags": "Tags", "tag_ids": "Tag ids", "pipeline.id": "SID"}
    got = bodies('ID,Tags,Tag ids,SID\n1,"a,b","10,11",3\n', customers(columns))
    assert got[1]["data"] == {"customer": {"id": 1}, "pipeline": {"id": 3}}
    assert got[2]["data"] == {
        "customer": {"id": 1},
        "tags": [{"id": 10, "name": "a"}, {"id": 11, "name": "b"}],
    }


def test_an_order_row_becomes_one_order_updated() -> None:
    columns = {
        "order.id": "Order",
        "order.created_at": "Created",
        "order.modified_at": "Modified",
        "order.picking_status": "Picking",
        "order.payment_status": "Payment",
    }
    text = "Order,Created,Modified,Picking,Payment\n9,1618118040,2021-04-11T05:14:01Z,pending,paid\n10,,,,\n"
    assert bodies(text, orders(columns)) == [
        {
            "company_id": 7,
            "event_type": "order_updated",
            "timestamp": AS_OF,
            "data": {
                "order_id": 9,
                "created_at": 1618118040,
                "modified_at": 1618118041,
                "picking_status": "pending",
                "payment_status": "paid",
            },
        },
        {"company_id": 7, "event_type": "order_updated", "timestamp": AS_OF, "data": {"order_id": 10}},
    ]


def test_records_round_trip_through_the_webhook_decoder() -> None:
    parsed = read_csv(io.StringIO("ID,Full name,Tags,Note,Stage\n3,=HYPERLINK(1),a,b,c\n"), customers(FULL))
    for record in parsed.records:
        decoded = decode_body(record.body)
        assert decoded.content_key == record.content_key
        assert (record.status, record.endpoint, record.company_id) == (BACKFILL_STATUS, CSV_ENDPOINT, 7)
        assert record.event_ms == AS_OF
        assert record.subject == "customer:3"
        assert record.received_ms == AS_OF + 2  # the as-of time plus the row's line number


@pytest.mark.parametrize(
    ("text", "problems"),
    [
        ("ID,Full name\n,x\n", [Problem(2, "customer.id ('ID') is empty")]),
        ("ID,Full name\nabc,x\n", [Problem(2, "customer.id ('ID') 'abc' is not a whole number")]),
        ("ID,Full name\n1.5,x\n", [Problem(2, "customer.id ('ID') '1.5' is not a whole number")]),
        (
            "ID,Full name\n99999999999999999999,x\n",
            [Problem(2, "customer.id ('ID') '99999999999999999999' is out of range")],
        ),
        ("ID,Full name\n1,x,extra\n", [Problem(2, "has 3 fields, the header has 2")]),
        ("ID,Full name\n1,x\n\n1,y\n", [Problem(4, "customer.id 1 is already on line 2")]),
        ('ID,Full name\n1,"a\nb"\nz,c\n', [Problem(4, "customer.id ('ID') 'z' is not a whole number")]),
    ],
)
def test_bad_customer_rows_are_reported_with_their_line(text: str, problems: list[Problem]) -> None:
    parsed = read_csv(io.StringIO(text), customers({"customer.id": "ID", "customer.name": "Full name"}))
    assert parsed.problems == problems


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (
            "1,yesterday",
            "order.created_at ('Created'): 'yesterday' is neither epoch seconds nor an ISO 8601 time",
        ),
        ("1,1618118040123", "order.created_at ('Created'): '1618118040123' is after the year 9999"),
    ],
)
def test_bad_order_times_are_reported_with_their_line(row: str, reason: str) -> None:
    parsed = read_csv(
        io.StringIO("Order,Created\n" + row + "\n"),
        orders({"order.id": "Order", "order.created_at": "Created"}),
    )
    assert len(parsed.problems) == 1
    assert parsed.problems[0].line == 2
    assert parsed.problems[0].reason.startswith(reason)


def test_a_missing_or_doubled_header_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="no column 'Name'; its headers are: 'ID', 'Full name'"):
        read_csv(io.StringIO("ID,Full name\n"), customers({"customer.id": "ID", "customer.name": "Name"}))
    with pytest.raises(UsageError, match="2 columns named 'ID'"):
        read_csv(io.StringIO("ID,ID\n"), customers({"customer.id": "ID"}))
    with pytest.raises(UsageError, match="empty"):
        read_csv(io.StringIO(""), customers({"customer.id": "ID"}))


def test_a_byte_order_mark_and_other_delimiters_are_read() -> None:
    options = customers({"customer.id": "ID", "tags": "Tags"}, delimiter=";", tag_separator="|")
    got = bodies("ID;Tags\n4;a|b\n", options)
    assert [tag["name"] for tag in got[1]["data"]["tags"]] == ["a", "b"]  # type: ignore[index]


def test_jsonl_lines_are_validated_like_webhook_bodies(samples: dict[str, bytes]) -> None:
    good = samples["tag_set"].replace(b"\n", b"")
    lines = [
        good + b"\n",
        b"\n",
        b'{"company_id": 1, "event_type": "customer_updated", "data": {"customer": {"id": "x"}}}\n',
        b"{not json\n",
        b'{"company_id": 1, "event_type": "brand_new", "data": {}}\r\n',
        b"x" * 1001 + b"\n",
    ]
    parsed = read_jsonl(lines, AS_OF, max_line_bytes=1000)
    assert [problem.line for problem in parsed.problems] == [3, 4, 6]
    assert "data.customer.id" in parsed.problems[0].reason
    assert "not valid JSON" in parsed.problems[1].reason
    assert "more than the limit 1000" in parsed.problems[2].reason
    assert parsed.rows == 5
    assert parsed.unknown == 1
    tag_set, unknown = parsed.records
    assert (tag_set.status, tag_set.endpoint, tag_set.event_ms) == (BACKFILL_STATUS, JSONL_ENDPOINT, None)
    assert tag_set.received_ms == AS_OF + 1
    assert (unknown.status, unknown.received_ms) == ("unknown", AS_OF + 5)
