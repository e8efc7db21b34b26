"""The HTML of the local server's read-only viewer: a list of spreadsheets, and each one as grids.

Everything here is pure: a spreadsheet in, a page out. Every value goes through ``escape`` (control and
bidi characters shown as escapes, then ``html.escape``), so a cell holding ``<script>``,
``=IMPORTXML(...)`` or a right-to-left override shows as that text. A page is a fixed shell around a
content part whose hash is the page's ETag; the inline script re-fetches the page with that ETag every
second and swaps the content in when the server answers with a new one (see ``page_routes``). The
Content-Security-Policy allows only this module's own script and style, by hash, and no request but to
the page's own origin.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from html import escape as escape_html
from itertools import pairwise
from typing import Final
from urllib.parse import quote

from ..untrusted import printable
from .a1 import column_letter
from .model import Cell, Formula, Row, Sheet, Spreadsheet, format_number

# A browser table of more rows gets slow; the newest rows are the interesting ones while data arrives.
ROW_LIMIT: Final = 1000
POLL_MILLISECONDS: Final = 1000

_STYLE: Final = """
:root { font: 14px/1.4 system-ui, sans-serif; color: #202124; }
body { margin: 0; }
header { display: flex; gap: 1em; align-items: baseline; padding: .5em 1em;
  background: #f1f3f4; border-bottom: 1px solid #dadce0; }
header a { font-weight: 600; color: inherit; text-decoration: none; }
#status { margin-left: auto; color: #5f6368; font-size: 12px; }
main { padding: 0 1em 2em; }
h1 { font-size: 20px; margin: .8em 0 .2em; }
h2 { font-size: 16px; margin: 1.4em 0 .4em; }
.meta, h2 small { color: #5f6368; font-weight: normal; font-size: 12px; }
nav a { margin-right: 1em; }
table { border-collapse: collapse; }
th, td { border: 1px solid #dadce0; padding: 2px 6px; white-space: pre; max-width: 32em;
  overflow: hidden; text-overflow: ellipsis; text-align: left; }
thead th { position: sticky; top: 0; background: #f8f9fa; color: #5f6368; font-weight: normal;
  text-align: center; }
th.row { background: #f8f9fa; color: #5f6368; font-weight: normal; text-align: right; }
tr.head td { background: #e8f0fe; font-weight: 600; }
td.number { text-align: right; }
td.boolean { text-align: center; }
td.formula { color: #188038; font-family: ui-monospace, monospace; }
tr.gap td { color: #5f6368; font-style: italic; text-align: center; }
"""

_SCRIPT: Final = f"""
"use strict";
(() => {{
  const content = document.getElementById("content");
  const status = document.getElementById("status");
  const refresh = async () => {{
    try {{
      const answer = await fetch(location.href, {{
        cache: "no-store",
        headers: {{ "If-None-Match": content.dataset.etag }},
      }});
      if (answer.status !== 304) {{
        const page = new DOMParser().parseFromString(await answer.text(), "text/html");
        const fresh = page.getElementById("content");
        if (fresh === null) throw new Error(`HTTP ${{answer.status}}`);
        content.replaceChildren(...fresh.childNodes);
        content.dataset.etag = fresh.dataset.etag;
        document.title = page.title;
      }}
      status.textContent = `Live, checked ${{new Date().toLocaleTimeString()}}`;
    }} catch (error) {{
      status.textContent = `Not updating (${{error.message}}), retrying`;
    }}
    setTimeout(refresh, {POLL_MILLISECONDS});
  }};
  setTimeout(refresh, {POLL_MILLISECONDS});
}})();
"""


def escape(text: str) -> str:
    """Text for HTML: control and bidi characters shown as escapes (see connector.untrusted), then
    HTML-escaped, quotes included."""
    return escape_html(printable(text))


def _csp_hash(source: str) -> str:
    digest = hashlib.sha256(source.encode()).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


CONTENT_SECURITY_POLICY: Final = (
    f"default-src 'none'; script-src {_csp_hash(_SCRIPT)}; style-src {_csp_hash(_STYLE)}; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def content_etag(content: str) -> str:
    """The ETag of a page's content part: a strong validator from its hash."""
    return '"' + hashlib.blake2b(content.encode(), digest_size=16).hexdigest() + '"'


def document(title: str, content: str) -> str:
    """A whole page: the shell with its style and refresh script around ``content`` (already HTML)."""
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        '<header><a href="/">Local spreadsheets</a><span id="status" role="status">Live</span></header>\n'
        f'<main id="content" data-etag="{escape(content_etag(content))}">\n{content}</main>\n'
        f"<script>{_SCRIPT}</script>\n</body>\n</html>\n"
    )


def view_path(spreadsheet_id: str) -> str:
    """The viewer's path for one spreadsheet."""
    return "/view/" + quote(spreadsheet_id, safe="")


def index_content(spreadsheets: Iterable[Spreadsheet]) -> str:
    """The list of spreadsheets: title (linked to its grids), id, and each sheet's count of data rows."""
    items = [
        "<tr>"
        f'<td><a href="{escape(view_path(s.spreadsheet_id))}">{escape(s.title)}</a></td>'
        f"<td>{escape(s.spreadsheet_id)}</td>"
        f"<td>{escape(', '.join(_sheet_summary(sheet) for sheet in s.sheets))}</td>"
        "</tr>\n"
        for s in spreadsheets
    ]
    if not items:
        return "<h1>Local spreadsheets</h1>\n<p>No spreadsheets yet.</p>\n"
    return (
        "<h1>Local spreadsheets</h1>\n<table>\n"
        "<thead><tr><th>Title</th><th>Id</th><th>Sheets (data rows)</th></tr></thead>\n"
        f"<tbody>\n{''.join(items)}</tbody>\n</table>\n"
    )


def _sheet_summary(sheet: Sheet) -> str:
    return f"{sheet.title} ({body_rows(sheet)})"


def body_rows(sheet: Sheet) -> int:
    """Rows holding data below the header row (or the frozen rows): what a person calls the data rows."""
    return max(sheet.last_data_row() - max(sheet.frozen_rows, 1), 0)


def spreadsheet_content(spreadsheet: Spreadsheet, row_limit: int = ROW_LIMIT) -> str:
    """A spreadsheet's title, links to its sheets and every sheet as a grid, in tab order."""
    links = "".join(
        f'<a href="#sheet-{sheet.sheet_id}">{escape(sheet.title)}</a>' for sheet in spreadsheet.sheets
    )
    sections = "".join(sheet_section(sheet, row_limit) for sheet in spreadsheet.sheets)
    return (
        f"<h1>{escape(spreadsheet.title)}</h1>\n"
        f'<p class="meta">{escape(spreadsheet.spreadsheet_id)}</p>\n'
        f"<nav>{links}</nav>\n{sections}"
    )


def missing_content(spreadsheet_id: str) -> str:
    """What the viewer shows for an id the server does not hold (the page keeps checking for it)."""
    return f"<h1>Not found</h1>\n<p>No spreadsheet with id {escape(spreadsheet_id)} on this server.</p>\n"


def sheet_section(sheet: Sheet, row_limit: int = ROW_LIMIT) -> str:
    """One sheet: a heading with its sizes, then its data rows as a grid with row numbers and column letters."""
    data_rows = sheet.last_data_row()
    hidden = " hidden," if sheet.hidden else ""
    heading = (
        f'<h2 id="sheet-{sheet.sheet_id}">{escape(sheet.title)} <small>{body_rows(sheet)} rows below the header,{hidden} '
        f"grid {sheet.row_count}&times;{sheet.column_count}</small></h2>\n"
    )
    if data_rows == 0:
        return heading + "<p>No data.</p>\n"
    shown = shown_rows(data_rows, row_limit)
    width = max(len(sheet.rows[index]) for index in shown)
    header_rows = max(sheet.frozen_rows, 1)
    letters = "".join(f"<th>{column_letter(col)}</th>" for col in range(width))
    body: list[str] = []
    for previous, index in pairwise([-1, *shown]):
        if index > previous + 1:
            body.append(
                f'<tr class="gap"><th class="row"></th><td colspan="{width}">'
                f"rows {previous + 2} to {index} not shown</td></tr>\n"
            )
        body.append(_row(index, sheet.rows[index], width, index < header_rows))
    return (
        f'{heading}<table data-sheet="{escape(sheet.title)}">\n'
        f"<thead><tr><th></th>{letters}</tr></thead>\n<tbody>\n{''.join(body)}</tbody>\n</table>\n"
    )


def shown_rows(data_rows: int, row_limit: int) -> list[int]:
    """Row indices to show: all of them, or past the limit the first (the header) and the newest.

    The header and the newest row are always shown, even when ``row_limit`` is below 2.
    """
    limit = max(row_limit, 2)
    if data_rows <= limit:
        return list(range(data_rows))
    return [0, *range(data_rows - limit + 1, data_rows)]


def _row(index: int, row: Row, width: int, header: bool) -> str:
    padded = row + [None] * (width - len(row))
    cells = "".join(cell_html(cell) for cell in padded)
    attribute = ' class="head"' if header else ""
    return f'<tr{attribute}><th class="row">{index + 1}</th>{cells}</tr>\n'


def cell_html(cell: Cell | None) -> str:
    """One cell as a table cell: text escaped, numbers and booleans as Sheets shows them, formulas marked."""
    if cell is None:
        return "<td></td>"
    if isinstance(cell, Formula):
        return f'<td class="formula" title="formula">{escape(cell.text)}</td>'
    if isinstance(cell, bool):
        return f'<td class="boolean">{"TRUE" if cell else "FALSE"}</td>'
    if isinstance(cell, int | float):
        return f'<td class="number">{format_number(cell)}</td>'
    return f"<td>{escape(cell)}</td>"
