"""``doopage-sheets backfill`` through the real CLI against the local Sheets server."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from connector.settings import Settings
from connector.store import open_work_store
from connector.sync.backfill import (
    CsvOptions,
    import_records,
    parse_column_map,
    pending_backfill,
    read_csv,
    write_backfill,
)
from connector.sync.mapping import load_mapping
from tests.backfill.conftest import Backfill

AS_OF = "2024-01-01T00:00:00Z"  # 1704067200 s
CUSTOMER_COLUMNS = (
    "--column",
    "customer.id=ID",
    "--column",
    "customer.name=Full name",
    "--column",
    "tags=Tags",
)
CUSTOMERS_CSV = """ID,Full name,Tags,Ignored
1,Lan Anh,"VIP, wholesale",x
2,Minh,,y
3,=IMPORTXML(1),VIP,z
"""


def stored(backfill: Backfill) -> dict[str, int]:
    """Stored events by status (in the SQLite or the PostgreSQL store)."""
    store = open_work_store(backfill.settings)
    try:
        totals: dict[str, int] = {}
        for row in store.counts():
            totals[row.status] = totals.get(row.status, 0) + row.count
        return totals
    finally:
        store.close()


def import_customers(backfill: Backfill, text: str = CUSTOMERS_CSV, *extra: str) -> tuple[int, str, str]:
    path = backfill.file("customers.csv", text)
    result = backfill.run("customers", str(path), *CUSTOMER_COLUMNS, "--as-of", AS_OF, *extra)
    return result.exit_code, result.stdout, result.stderr


def pending(settings: Settings) -> tuple[int, int]:
    store = open_work_store(settings)
    try:
        return pending_backfill(store)
    finally:
        store.close()


@pytest.mark.parametrize("backfill", ["sqlite", "postgres"], indirect=True)
def test_a_customer_csv_lands_in_the_customers_sheet(backfill: Backfill) -> None:
    code, out, _ = import_customers(backfill)
    assert code == 0, out
    assert "3 rows read, 5 events, 0 invalid" in out
    assert "events: 5 stored, 0 already stored" in out
    assert "written: 3 rows (5 events) in 1 pass," in out
    rows = backfill.records("Customers")
    assert {key: (row["Name"], row["Tags"]) for key, row in rows.items()} == {
        "1": ("Lan Anh", "VIP, wholesale"),
        "2": ("Minh", ""),
        "3": ("=IMPORTXML(1)", "VIP"),
    }
    assert rows["1"]["First seen"] == "2024-01-01 07:00:00"  # the as-of time, in Asia/Ho_Chi_Minh
    assert backfill.sheets.formula_cells(backfill.spreadsheet_id) == 0
    # Synthetic events are no DooPage events: the Events log is left alone.
    assert backfill.rows("Events") == []
    assert stored(backfill) == {"done": 5}


def test_running_a_csv_backfill_twice_changes_nothing(backfill: Backfill) -> None:
    assert import_customers(backfill)[0] == 0
    first = backfill.rows("Customers")
    backfill.sheets.reset_counts()
    code, out, _ = import_customers(backfill)
    assert code == 0
    assert "events: 0 stored, 5 already stored" in out
    assert "written: 0 rows (0 events) in 0 passes, 0 Sheets requests" in out
    assert backfill.rows("Customers") == first
    assert backfill.sheets.total_requests() == 0


def test_invalid_rows_are_listed_and_nothing_is_imported(backfill: Backfill) -> None:
    text = CUSTOMERS_CSV + "x,Bad id,,\n5,Too,many,fields,here\n1,Again,,\n"
    code, out, err = import_customers(backfill, text)
    assert code == 2
    assert "6 rows read, 5 events, 3 invalid" in out
    assert "line 5: customer.id ('ID') 'x' is not a whole number" in err
    assert "line 6: has 5 fields, the header has 4" in err
    assert "line 7: customer.id 1 is already on line 2" in err
    assert "nothing imported" in err
    assert stored(backfill) == {}
    assert backfill.rows("Customers") == []


def test_skip_invalid_imports_the_good_rows_and_lists_the_others(backfill: Backfill) -> None:
    code, out, err = import_customers(backfill, CUSTOMERS_CSV + "x,Bad id,,\n", "--skip-invalid")
    assert code == 0
    assert "line 5: customer.id ('ID') 'x' is not a whole number" in err
    assert "1 invalid lines skipped" in out
    assert set(backfill.records("Customers")) == {"1", "2", "3"}


def test_check_validates_and_imports_nothing(backfill: Backfill) -> None:
    assert import_customers(backfill, CUSTOMERS_CSV, "--check")[0] == 0
    assert import_customers(backfill, CUSTOMERS_CSV + ",no id,,\n", "--check")[0] == 2
    assert stored(backfill) == {}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--column", "customer.id=Nope"), "the CSV has no column 'Nope'"),
        (("--column", "customer.name=Full name"), "needs customer.id"),
        (("--column", "customer.id=ID", "--as-of", "soon"), "--as-of: 'soon'"),
        (("--column", "customer.id=ID", "--timezone", "Mars/Base"), "unknown timezone"),
        (("--column", "customer.id=ID", "--delimiter", ";;"), "one character"),
    ],
)
def test_usage_mistakes_exit_2_with_a_reason(backfill: Backfill, args: tuple[str, ...], message: str) -> None:
    path = backfill.file("customers.csv", CUSTOMERS_CSV)
    result = backfill.run("customers", str(path), *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert stored(backfill) == {}


def test_an_order_csv_lands_in_the_orders_sheet(backfill: Backfill) -> None:
    path = backfill.file(
        "orders.csv",
        "Order,Created,Modified,Picking,Payment\n"
        "10,1618118040,2021-04-11 12:14:01,pending,paid\n"
        "11,2021-04-12T00:00:00Z,,,unpaid\n",
    )
    columns = ["order.id=Order", "order.created_at=Created", "order.modified_at=Modified"]
    columns += ["order.picking_status=Picking", "order.payment_status=Payment"]
    args = [arg for column in columns for arg in ("--column", column)]
    result = backfill.run("orders", str(path), *args, "--timezone", "Asia/Ho_Chi_Minh", "--as-of", AS_OF)
    assert result.exit_code == 0, result.output
    rows = backfill.records("Orders")
    assert rows["10"]["Created"] == "2021-04-11 12:14:00"
    assert rows["10"]["Modified"] == "2021-04-11 12:14:01"
    assert (rows["10"]["Picking status"], rows["10"]["Payment status"]) == ("pending", "paid")
    assert (rows["11"]["Created"], rows["11"]["Modified"], rows["11"]["Payment status"]) == (
        "2021-04-12 07:00:00",
        "",
        "unpaid",
    )


def jsonl(*bodies: dict[str, object]) -> str:
    return "".join(json.dumps(body) + "\n" for body in bodies)


def tag_event(kind: str, customer: int, tag: int, name: str) -> dict[str, object]:
    """A tag_set or tag_unset as DooPage sends it: without a timestamp."""
    return {
        "company_id": 1,
        "event_type": kind,
        "data": {"customer": {"id": customer}, "tags": [{"id": tag, "name": name}]},
    }


@pytest.mark.parametrize("backfill", ["sqlite", "postgres"], indirect=True)
def test_a_jsonl_history_keeps_its_order_and_runs_twice_to_the_same_sheet(
    backfill: Backfill, samples: dict[str, bytes]
) -> None:
    history = "".join(json.dumps(json.loads(body)) + "\n" for body in samples.values())
    # Set, unset and set again: the same body twice, and the file's order decides.
    history += jsonl(
        tag_event("tag_set", 50, 9, "gold"),
        tag_event("tag_unset", 50, 9, "gold"),
        tag_event("tag_set", 50, 9, "gold"),
        tag_event("tag_set", 51, 9, "gold"),
        tag_event("tag_unset", 51, 9, "gold"),
    )
    path = backfill.file("events.jsonl", history)
    result = backfill.run("events", str(path), "--as-of", AS_OF)
    assert result.exit_code == 0, result.output
    assert "events: 16 stored, 0 already stored" in result.stdout
    customers = backfill.records("Customers")
    assert customers["50"]["Tags"] == "gold"
    assert customers["51"]["Tags"] == ""
    assert customers["1"]["Status"] == "closed"
    assert "1" in backfill.records("Orders")
    # Real DooPage events go to the Events log, one row each.
    assert len(backfill.rows("Events")) == 1 + 16
    sheets = {title: backfill.rows(title) for title in ("Customers", "Orders", "Events")}

    backfill.sheets.reset_counts()
    again = backfill.run("events", str(path), "--as-of", AS_OF)
    assert again.exit_code == 0
    assert "events: 0 stored, 16 already stored" in again.stdout
    assert {title: backfill.rows(title) for title in sheets} == sheets
    assert backfill.sheets.total_requests() == 0


def test_bad_jsonl_lines_are_listed_and_nothing_is_imported(
    backfill: Backfill, samples: dict[str, bytes]
) -> None:
    good = json.dumps(json.loads(samples["customer_created"]))
    path = backfill.file("events.jsonl", f'{good}\n{{"company_id": "1"}}\n[1]\n')
    result = backfill.run("events", str(path))
    assert result.exit_code == 2
    assert "line 2: " in result.stderr
    assert "line 3: " in result.stderr
    assert stored(backfill) == {}
    skipped = backfill.run("events", str(path), "--skip-invalid")
    assert skipped.exit_code == 0
    assert stored(backfill) == {"done": 1}


def test_newer_data_wins_whichever_is_imported_first(backfill: Backfill) -> None:
    """A customer's name from a CSV as of 2024 and from a webhook of 2023 and one of 2025."""
    old_name = {"company_id": 1, "event_type": "customer_updated", "timestamp": 1_672_531_200_000}
    new_name = {"company_id": 1, "event_type": "customer_updated", "timestamp": 1_735_689_600_000}
    path = backfill.file(
        "events.jsonl",
        jsonl(
            {**old_name, "data": {"customer": {"id": 1, "name": "2023 name"}}},
            {**new_name, "data": {"customer": {"id": 2, "name": "2025 name"}}},
        ),
    )
    assert backfill.run("events", str(path)).exit_code == 0
    assert import_customers(backfill, "ID,Full name,Tags\n1,CSV name,\n2,CSV name,\n")[0] == 0
    names = {key: row["Name"] for key, row in backfill.records("Customers").items()}
    assert names == {"1": "CSV name", "2": "2025 name"}


@pytest.mark.parametrize("backfill", ["sqlite", "postgres"], indirect=True)
def test_an_interrupted_backfill_is_finished_by_resume_without_doubling_rows(backfill: Backfill) -> None:
    text = "ID,Full name,Tags\n" + "".join(f"{i},Customer {i},t{i % 3}\n" for i in range(1, 31))
    path = backfill.file("customers.csv", text)
    settings = backfill.settings
    options = CsvOptions(
        kind="customers",
        columns=parse_column_map("customers", ["customer.id=ID", "customer.name=Full name", "tags=Tags"]),
        company_id=1,
        as_of_ms=1_704_067_200_000,
    )
    with path.open(newline="") as stream:
        records = read_csv(stream, options).records
    # Interrupted right after storing: nothing written yet.
    assert import_records(settings, records).stored == 60
    assert pending(settings) == (30, 60)

    # Interrupted again after one pass of 10 rows (Ctrl-C between passes).
    def stop_after_first_pass(_: object) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_backfill(settings, load_mapping(settings), rows_per_write=10, on_pass=stop_after_first_pass)
    assert pending(settings) == (20, 40)
    assert len(backfill.records("Customers")) == 10

    result = backfill.run("resume")
    assert result.exit_code == 0, result.output
    assert "written: 20 rows (40 events)" in result.stdout
    # The same file imported again (same as-of time) stores nothing and writes nothing.
    code, out, _ = import_customers(backfill, text)
    assert code == 0
    assert "events: 0 stored, 60 already stored" in out
    rows = backfill.rows("Customers")
    keys = [str(row[0]) for row in rows[1:]]
    assert keys == [str(i) for i in range(1, 31)]  # each once, in the file's order
    assert {str(row[0]): row[1] for row in rows[1:]} == {str(i): f"Customer {i}" for i in range(1, 31)}


def test_a_claim_cut_short_is_given_back_at_once(backfill: Backfill) -> None:
    """Ctrl-C inside a pass releases the claim, so a resume need not wait for the lease to expire."""
    path = backfill.file("customers.csv", "ID,Full name\n1,A\n2,B\n")
    settings = backfill.settings
    options = CsvOptions(
        kind="customers",
        columns={"customer.id": "ID", "customer.name": "Full name"},
        company_id=1,
        as_of_ms=1_704_067_200_000,
    )
    with path.open(newline="") as stream:
        import_records(settings, read_csv(stream, options).records)

    class Interrupting:
        def flush(self, *_: object, **__: object) -> object:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_backfill(settings, load_mapping(settings), writer=Interrupting())  # type: ignore[arg-type]
    assert pending(settings) == (2, 2)
    result = backfill.run("resume")
    assert result.exit_code == 0, result.output
    assert set(backfill.records("Customers")) == {"1", "2"}


def test_rows_of_an_unmapped_company_are_refused_unless_allowed_then_kept_unrouted(
    backfill: Backfill,
) -> None:
    path = backfill.file("customers.csv", "ID,Full name,Tags\n1,A,\n")
    refused = backfill.run("customers", str(path), *CUSTOMER_COLUMNS, "--company", "99")
    assert refused.exit_code == 1, refused.output
    assert "nothing imported" in refused.stderr
    assert "company 99 is not mapped" in refused.stderr
    assert "written:" not in refused.stdout

    result = backfill.run("customers", str(path), *CUSTOMER_COLUMNS, "--company", "99", "--allow-unmapped")
    assert result.exit_code == 0, result.output
    assert "written: nothing; 1 events belong to companies without a mapping" in result.stdout
    assert stored(backfill) == {"unrouted": 1}


def write_csv(rows: list[tuple[int, str, str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["ID", "Full name", "Tags"])
    writer.writerows(rows)
    return out.getvalue()


def test_help_explains_the_column_map(backfill: Backfill) -> None:
    result = backfill.run("customers", "--help")
    assert result.exit_code == 0
    for text in ("FIELD=HEADER", "customer.id", "tags", "pipeline.name", "--skip-invalid", "--as-of"):
        assert text in result.stdout
    assert "order.created_at" in backfill.run("orders", "--help").stdout


def test_imports_read_files_from_disk_as_given(backfill: Backfill, tmp_path: Path) -> None:
    """A UTF-8 file with a byte order mark (as spreadsheet programs save CSV) reads like any other."""
    path = backfill.file("bom.csv", "\ufeff" + write_csv([(1, "Nguyễn Văn A", "khách quen")]))
    result = backfill.run("customers", str(path), *CUSTOMER_COLUMNS)
    assert result.exit_code == 0, result.output
    assert backfill.records("Customers")["1"]["Name"] == "Nguyễn Văn A"
    latin = backfill.file("latin.csv", "ID,Full name,Tags\n1,caf\xe9,\n".encode("latin-1"))
    bad = backfill.run("customers", str(latin), *CUSTOMER_COLUMNS)
    assert bad.exit_code == 2
    assert "not UTF-8" in bad.stderr


def test_passes_shrink_to_rows_that_fit_one_write_request(backfill: Backfill) -> None:
    """With a 10 kB request limit, passes after the first take only as many rows as fit one request."""
    text = backfill.config.read_text(encoding="utf-8")
    backfill.config.write_text(
        text.replace("[sheets]\n", "[sheets]\nmax_request_bytes = 10000\n"), encoding="utf-8"
    )
    path = backfill.file(
        "customers.csv", write_csv([(i, f"Customer number {i}", "VIP") for i in range(1, 201)])
    )
    settings = backfill.settings
    options = CsvOptions(
        kind="customers",
        columns=parse_column_map("customers", ["customer.id=ID", "customer.name=Full name", "tags=Tags"]),
        company_id=1,
        as_of_ms=1_704_067_200_000,
    )
    with path.open(newline="") as stream:
        import_records(settings, read_csv(stream, options).records)
    totals = write_backfill(settings, load_mapping(settings), rows_per_write=100)
    assert totals.rows == 200
    first, *rest = totals.reports
    assert first.sheets_requests > 2  # 100 rows: one read and several writes
    assert rest
    assert all(report.sheets_requests == 2 for report in rest)  # one read, one write
    assert len(backfill.records("Customers")) == 200


def test_the_same_content_with_a_new_modification_time_imports_nothing_new(backfill: Backfill) -> None:
    import os

    path = backfill.file("customers.csv", "ID,Full name,Tags\n1,A,vip\n2,B,\n")
    first = backfill.run("customers", str(path), *CUSTOMER_COLUMNS)
    assert first.exit_code == 0, first.output
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 3_600_000_000_000))  # touched, an hour later
    again = backfill.run("customers", str(path), *CUSTOMER_COLUMNS)
    assert again.exit_code == 0, again.output
    assert "events: 0 stored" in again.stdout
    path.write_text("ID,Full name,Tags\n1,A2,vip\n2,B,\n", encoding="utf-8")  # new content: imported
    changed = backfill.run("customers", str(path), *CUSTOMER_COLUMNS)
    assert "events: 0 stored" not in changed.stdout
    assert backfill.records("Customers")["1"]["Name"] == "A2"
