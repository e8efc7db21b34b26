"""Properties of a backfill over arbitrary input: importing twice is importing once."""

from __future__ import annotations

import csv
import io
import tempfile
from pathlib import Path

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.cli import main
from connector.localsheets.testing import LocalSheets
from connector.sync.backfill import split_list
from tests.backfill.conftest import write_settings

# Cell text as people type it: any printable text, commas, quotes, line breaks and formula look-alikes.
cell_text = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\x00"), max_size=12
)
tag_names = st.lists(st.sampled_from(["VIP", "vip", "gold", "=1+1", "Hà Nội", " spaced "]), max_size=3)
customers = st.dictionaries(
    st.integers(min_value=1, max_value=10**12), st.tuples(cell_text, tag_names), min_size=1, max_size=15
)


def export(rows: dict[int, tuple[str, list[str]]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["ID", "Name", "Tags"])
    for customer_id, (name, tags) in rows.items():
        writer.writerow([customer_id, name, ",".join(tags)])
    return out.getvalue()


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=customers)
def test_any_customer_csv_imported_twice_gives_the_rows_of_importing_it_once(
    local_sheets: LocalSheets, rows: dict[int, tuple[str, list[str]]]
) -> None:
    spreadsheet_id = local_sheets.new_spreadsheet()
    try:
        with tempfile.TemporaryDirectory() as folder:
            config = write_settings(Path(folder), local_sheets.url, spreadsheet_id)
            source = Path(folder) / "customers.csv"
            source.write_text(export(rows), encoding="utf-8", newline="")
            command = ["backfill", "customers", "--config", str(config), str(source)]
            command += [
                "--column",
                "customer.id=ID",
                "--column",
                "customer.name=Name",
                "--column",
                "tags=Tags",
            ]
            first = CliRunner().invoke(main, command)
            assert first.exit_code == 0, first.output
            once = local_sheets.sheet_values(spreadsheet_id, "Customers")
            second = CliRunner().invoke(main, command)
            assert second.exit_code == 0, second.output
            assert local_sheets.sheet_values(spreadsheet_id, "Customers") == once
    finally:
        local_sheets.delete_spreadsheet(spreadsheet_id)
    header = once[0]
    shown = {str(row[0]): dict(zip(header, row, strict=False)) for row in once[1:]}
    # One row each (within one write, rows are ordered by id, not by the file).
    assert len(once) == 1 + len(rows)
    assert set(shown) == {str(customer_id) for customer_id in rows}
    for customer_id, (name, tags) in rows.items():
        row = shown[str(customer_id)]
        assert row["Name"] == name.strip()
        wanted = sorted(split_list(",".join(tags), ","), key=lambda tag: (tag.casefold(), tag))
        assert row["Tags"] == ", ".join(wanted)
