"""The read-only viewer over HTTP and its renderer: grids shown as stored, values escaped, nothing writable."""

from __future__ import annotations

from html.parser import HTMLParser

import gspread
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.localsheets.model import Formula, Sheet
from connector.localsheets.page import cell_html, sheet_section, shown_rows
from connector.localsheets.testing import LocalSheets
from connector.untrusted import printable

HOSTILE = '<script>document.body.dataset.pwned = "1"</script>'
FORMULA_TEXT = '=IMPORTXML("http://example.com", "//a")'


class _Grids(HTMLParser):
    """Collects each ``<table data-sheet>``'s rows as cell texts, the column-letter row first."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, list[list[str]]] = {}
        self.links: list[str] = []
        self._table: list[list[str]] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if tag == "table" and named.get("data-sheet") is not None:
            self._table = self.tables.setdefault(str(named["data-sheet"]), [])
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []
        elif tag == "a" and named.get("href"):
            self.links.append(str(named["href"]))

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._table is not None and self._cell is not None:
            self._table[-1].append("".join(self._cell))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def grids(html: str) -> _Grids:
    """Parse a viewer page."""
    parser = _Grids()
    parser.feed(html)
    parser.close()
    return parser


def _orders(sheets: LocalSheets) -> str:
    return sheets.new_spreadsheet(
        [
            {
                "title": "Orders",
                "values": [["Order", "Customer", "Total"], [1, HOSTILE, 12.5], [2, FORMULA_TEXT, True]],
            },
            {"title": "Empty"},
        ],
        title="Shop <b>&</b>",
    )


def test_index_links_every_spreadsheet_to_its_grids(sheets: LocalSheets) -> None:
    spreadsheet_id = _orders(sheets)
    answer = requests.get(f"{sheets.url}/", timeout=10)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    assert f"/view/{spreadsheet_id}" in grids(answer.text).links
    assert "Shop &lt;b&gt;&amp;&lt;/b&gt;" in answer.text
    assert "Orders (2), Empty (0)" in answer.text  # the header row is not a data row


def test_view_shows_each_sheet_with_column_letters_and_row_numbers(sheets: LocalSheets) -> None:
    answer = requests.get(f"{sheets.url}/view/{_orders(sheets)}", timeout=10)
    assert answer.status_code == 200
    assert grids(answer.text).tables == {
        "Orders": [
            ["", "A", "B", "C"],
            ["1", "Order", "Customer", "Total"],
            ["2", "1", HOSTILE, "12.5"],
            ["3", "2", FORMULA_TEXT, "TRUE"],
        ]
    }
    assert '<tr class="head"><th class="row">1</th><td>Order</td>' in answer.text
    assert '<h2 id="sheet-' in answer.text
    assert "Empty <small>0 rows below the header" in answer.text
    assert "Orders <small>2 rows below the header" in answer.text


def test_cell_values_arrive_escaped_never_as_markup(sheets: LocalSheets) -> None:
    text = requests.get(f"{sheets.url}/view/{_orders(sheets)}", timeout=10).text
    assert "<script>document" not in text
    assert "&lt;script&gt;document.body.dataset.pwned = &quot;1&quot;&lt;/script&gt;" in text
    assert "<td>=IMPORTXML(&quot;http://example.com&quot;, &quot;//a&quot;)</td>" in text
    assert text.count("<script>") == 1  # the page's own refresh script


def test_page_is_read_only(sheets: LocalSheets) -> None:
    spreadsheet_id = _orders(sheets)
    before = sheets.sheet_values(spreadsheet_id, "Orders")
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        for path in ("/", f"/view/{spreadsheet_id}"):
            json = {"content-type": "application/json"}  # past the request guard, to the routes
            answer = requests.request(method, f"{sheets.url}{path}", data=b"{}", headers=json, timeout=10)
            assert answer.status_code == 405, (method, path)
    assert sheets.sheet_values(spreadsheet_id, "Orders") == before


def test_page_forbids_foreign_scripts_and_is_not_counted_as_an_api_request(sheets: LocalSheets) -> None:
    answer = requests.get(f"{sheets.url}/view/{_orders(sheets)}", timeout=10)
    policy = answer.headers["content-security-policy"]
    assert policy.startswith("default-src 'none'; script-src 'sha256-")
    assert "unsafe-inline" not in policy
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert sheets.total_requests() == 0


def test_unchanged_page_answers_304_until_rows_change(sheets: LocalSheets, client: gspread.Client) -> None:
    spreadsheet_id = _orders(sheets)
    url = f"{sheets.url}/view/{spreadsheet_id}"
    first = requests.get(url, timeout=10)
    etag = first.headers["etag"]
    unchanged = requests.get(url, headers={"If-None-Match": etag}, timeout=10)
    assert (unchanged.status_code, unchanged.content) == (304, b"")

    client.open_by_key(spreadsheet_id).worksheet("Orders").append_row([3, "Ann", 7])
    changed = requests.get(url, headers={"If-None-Match": etag}, timeout=10)
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag
    assert grids(changed.text).tables["Orders"][-1] == ["4", "3", "Ann", "7"]


def test_unknown_spreadsheet_is_a_404_page(sheets: LocalSheets) -> None:
    answer = requests.get(f"{sheets.url}/view/no-such-id", timeout=10)
    assert answer.status_code == 404
    assert answer.headers["content-type"].startswith("text/html")
    assert "No spreadsheet with id no-such-id" in answer.text


def test_long_sheet_shows_header_and_newest_rows_with_a_gap_row() -> None:
    sheet = Sheet(sheet_id=1, title="Log")
    sheet.write(0, 0, [["n"], *([index] for index in range(1, 10))])
    tables = grids(sheet_section(sheet, row_limit=4)).tables
    assert tables["Log"] == [
        ["", "A"],
        ["1", "n"],
        ["", "rows 2 to 7 not shown"],
        *[[str(n), str(n - 1)] for n in (8, 9, 10)],
    ]


@settings(max_examples=40)
@given(st.integers(min_value=1, max_value=60), st.integers(min_value=0, max_value=30))
def test_shown_rows_keep_the_header_and_the_newest_rows_within_the_limit(data_rows: int, limit: int) -> None:
    shown = shown_rows(data_rows, limit)
    assert shown[0] == 0
    assert len(shown) == min(data_rows, max(limit, 2))
    assert shown == sorted(set(shown))
    assert shown[-1] == data_rows - 1


@settings(max_examples=80)
@given(st.text())
def test_any_text_cell_reads_back_as_the_same_text_with_controls_shown_as_escapes(text: str) -> None:
    html = f'<table data-sheet="t"><tr>{cell_html(text or None)}</tr></table>'
    assert grids(html).tables["t"] == [[printable(text)]]
    assert "<" not in cell_html(text)[4:-5]


def test_control_and_bidi_characters_in_cells_and_titles_show_as_escapes() -> None:
    assert cell_html("invoice\u202egnp.exe") == "<td>invoice\\u202egnp.exe</td>"
    assert cell_html("\x1b[2Jcleared\rover") == "<td>\\x1b[2Jcleared\\x0dover</td>"
    assert cell_html("two\nlines\tand a tab") == "<td>two\nlines\tand a tab</td>"
    sheet = Sheet(sheet_id=1, title="\u2067Orders", row_count=2, column_count=1)
    sheet.write(0, 0, [["x"]])
    assert "\\u2067Orders" in sheet_section(sheet)
    assert "\u2067" not in sheet_section(sheet)


def test_formulas_are_marked_and_numbers_shown_as_sheets_does() -> None:
    assert cell_html(Formula("=SUM(A1:A2)")) == '<td class="formula" title="formula">=SUM(A1:A2)</td>'
    assert cell_html(3.0) == '<td class="number">3</td>'
    assert cell_html(False) == '<td class="boolean">FALSE</td>'
