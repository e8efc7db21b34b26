"""The console's HTML: a fixed shell that the shipped script (assets/console.js) fills from the JSON API.

Nothing here holds data, so the page needs no escaping of its own beyond the title; the script writes
every value with ``textContent``. The Content-Security-Policy lets the page load only its own script and
style and talk only to its own origin.
"""

from __future__ import annotations

from html import escape
from typing import Final

CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def _table(table_id: str, *headers: str) -> str:
    cells = "".join(f"<th>{escape(h)}</th>" for h in headers)
    return f'<table id="{table_id}"><thead><tr>{cells}</tr></thead><tbody></tbody></table>'


def console_page(title: str) -> str:
    """The console's page."""
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title>
<link rel="stylesheet" href="assets/console.css">
<script src="assets/console.js" defer></script>
</head>
<body>
<header><h1>{escape(title)}</h1><span class="muted">mapping: <span id="mapping-file"></span></span>
<span id="status">Loading…</span></header>
<main>
<div id="mapping-error"></div>
<div id="notice" role="status"></div>
<h2>Companies</h2>
{_table("companies", "company", "spreadsheet", "received", "written", "pending", "failed", "unrouted", "lag")}
<h2>Spreadsheets</h2>
{_table("spreadsheets", "spreadsheet", "companies", "last flush", "last error", "written as", "")}
<div class="grid">
<section><h2>Events per minute <small>last 3 hours</small></h2>
<svg id="chart-events" class="chart" viewBox="0 0 720 170" role="img" aria-label="events per minute"></svg>
<p class="legend"><span class="received">■ received</span><span class="written">— written</span></p></section>
<section><h2>Webhook to sheet <small>seconds, per minute of writing</small></h2>
<svg id="chart-latency" class="chart" viewBox="0 0 720 170" role="img" aria-label="latency"></svg>
<p class="legend"><span class="average">— mean</span><span class="longest">-- longest</span></p></section>
</div>
<section><h2>Failed events <small id="failed-total"></small></h2>
<p><button id="retry-all" type="button" hidden>Retry every failed event</button>
<span class="muted">Fix the cause first (share the spreadsheet, correct its id in the mapping file); retry
queues the events again and the worker writes them with the mapping file as it is now.</span></p>
{_table("failed", "id", "company", "event", "received", "attempts", "error")}</section>
<div class="grid">
<section><h2>Unrouted companies</h2>
<p class="muted">Events of companies the mapping does not name. Add the company to the mapping file: the
worker takes the change without a restart and writes its waiting events.</p>
{_table("unrouted", "company", "events waiting", "oldest")}</section>
<section><h2>Sheets request budget</h2>
<p>reads <meter id="budget-reads" min="0" value="0"></meter> <span id="budget-reads-text"></span><br>
writes <meter id="budget-writes" min="0" value="0"></meter> <span id="budget-writes-text"></span><br>
429 answers from Google in the last hour: <span id="throttled">0</span></p>
{_table("throttles", "time", "kind", "spreadsheet")}</section>
</div>
<section><h2>Rejected webhooks <small>latest first, no bodies kept</small></h2>
{_table("rejections", "time", "endpoint", "reason", "status", "why")}</section>
</main>
</body>
</html>
"""
