"""The operator console in headless Chromium, against `doopage-sheets serve` as a real process, on the
SQLite store and on a PostgreSQL one.

DooPage's samples arrive for a company whose mapping names a spreadsheet that does not exist: they are
parked as failed. The page shows them (counts, the error, the chart, a rejected webhook); then the
spreadsheet id is corrected in the mapping file and "retry" is clicked, and the parked events land in
the right spreadsheet without a restart.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.wait import WebDriverWait

from connector.localsheets.testing import LocalSheets
from connector.threaded_server import free_port
from tests.browser import chromium
from tests.e2e.harness import PATH, Service, write_settings
from tests.store.postgres import fresh_schema

WAIT_SECONDS = 30
WRONG_ID = "no-such-spreadsheet-0000"


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    """Debian's chromium, headless (skips where it is missing)."""
    with chromium(1280, 1600) as driver:
        yield driver


@pytest.fixture
def service(request: pytest.FixtureRequest, tmp_path: Path, local_sheets: LocalSheets) -> Iterator[Service]:
    """`serve` with the shipped mapping pointed at a spreadsheet id that does not exist, console on; on
    the SQLite store, or on a PostgreSQL one when the test asks for ``postgres``."""
    config = write_settings(tmp_path, local_sheets.url, WRONG_ID, free_port())
    with ExitStack() as stack:
        store = ""
        if getattr(request, "param", "sqlite") == "postgres":
            store = f'[store]\nurl = "{stack.enter_context(fresh_schema())}"\n'
        with config.open("a", encoding="utf-8") as settings:
            settings.write(f"\n{store}")
        running = Service(config)
        running.start()
        try:
            yield running
        finally:
            if running.process is not None:
                running.stop()


def cells(driver: webdriver.Chrome, selector: str) -> list[str]:
    """The text of each cell of the first row matching a CSS selector (read in one script: the page
    may redraw between two reads)."""
    texts: list[str] = driver.execute_script(
        "const row = document.querySelector(arguments[0]);"
        "return row === null ? [] : [...row.cells].map((cell) => cell.textContent);",
        selector,
    )
    return texts


def wait_until(driver: webdriver.Chrome, check: object, message: str) -> None:
    """Wait for the page (it refreshes every 2 s) to satisfy ``check``."""
    with contextlib.suppress(TimeoutException):
        WebDriverWait(driver, WAIT_SECONDS, poll_frequency=0.2).until(check)  # type: ignore[arg-type]
    assert check(driver), message  # type: ignore[operator]


def screenshot(driver: webdriver.Chrome, folder: Path, name: str) -> None:
    """Keep a screenshot (in $CONSOLE_SCREENSHOTS when set, for looking at; else the test's folder)."""
    target = Path(os.environ.get("CONSOLE_SCREENSHOTS", folder))
    target.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(target / f"{name}.png"))


@pytest.mark.parametrize("service", ["sqlite", "postgres"], indirect=True)
def test_console_shows_parked_events_and_retry_writes_them_after_the_mapping_is_fixed(
    browser: webdriver.Chrome,
    service: Service,
    local_sheets: LocalSheets,
    samples: dict[str, bytes],
    tmp_path: Path,
) -> None:
    with httpx.Client(base_url=service.base, timeout=10) as http:
        for body in samples.values():
            assert http.post(PATH, content=body).status_code == 200
        assert http.post(PATH, content=b'{"company_id": "one"}').status_code == 400
    assert service.wait_settled(len(samples)) == {"failed": len(samples)}

    console = f"http://127.0.0.1:{service.settings.console.port}/"
    browser.get(console)
    assert browser.title == "doopage-sheets console"
    wait_until(browser, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-loaded"), "no data")
    company = cells(browser, '#companies tr[data-company="1"]')
    assert company[:7] == ["1 (DooPage demo)", WRONG_ID, "11", "0", "0", "11", "0"]
    errors: list[str] = browser.execute_script(
        'return [...document.querySelectorAll("#failed td.error")].map((cell) => cell.textContent);'
    )
    assert len(errors) == len(samples)
    assert any("404" in error or "not found" in error.lower() for error in errors), errors
    sheet_row = cells(browser, f'#spreadsheets tr[data-spreadsheet="{WRONG_ID}"]')
    assert sheet_row[3] != "-"  # its last error
    link = browser.find_element(By.CSS_SELECTOR, f'#spreadsheets tr[data-spreadsheet="{WRONG_ID}"] a')
    assert link.get_attribute("href") == f"{local_sheets.url}/view/{WRONG_ID}"
    # The journal is written a moment after the refusal: the page shows it at its next refresh at the latest.
    wait_until(
        browser, lambda d: len(cells(d, "#rejections tbody tr")) == 5, "the rejected webhook is not shown"
    )
    rejected = cells(browser, "#rejections tbody tr")
    assert rejected[2:4] == ["invalid", "400"]
    assert "event_type" in rejected[4]
    # The chart drew the minute the samples arrived in: one bar at least.
    assert int(browser.find_element(By.ID, "chart-events").get_attribute("data-drawn") or 0) >= 1
    assert browser.find_elements(By.CSS_SELECTOR, "#chart-events rect.received")
    screenshot(browser, tmp_path, "console-failed")

    right_id = local_sheets.new_spreadsheet(title="Fixed")
    mapping = service.config.parent / "mapping.toml"
    mapping.write_text(mapping.read_text(encoding="utf-8").replace(WRONG_ID, right_id), encoding="utf-8")
    wait_until(
        browser,
        lambda d: d.find_elements(
            By.CSS_SELECTOR, f'#spreadsheets tr[data-spreadsheet="{right_id}"] button.retry'
        ),
        "the page did not follow the mapping file to the new spreadsheet id",
    )
    browser.find_element(
        By.CSS_SELECTOR, f'#spreadsheets tr[data-spreadsheet="{right_id}"] button.retry'
    ).click()
    wait_until(browser, lambda d: "queued again" in d.find_element(By.ID, "notice").text, "no notice")
    assert browser.find_element(By.ID, "notice").text.startswith("11 failed events queued again")
    wait_until(
        browser,
        lambda d: cells(d, '#companies tr[data-company="1"]')[3:6] == ["11", "0", "0"],
        "the retried events were not written",
    )
    customers = local_sheets.sheet_values(right_id, "Customers")
    orders = local_sheets.sheet_values(right_id, "Orders")
    assert len(customers) == 2  # the header and the sample customer
    assert len(orders) == 2
    assert browser.find_elements(By.CSS_SELECTOR, "#failed td.empty")
    # The chart is drawn from the flush's latency, which may reach the page a refresh after its counts.
    wait_until(
        browser,
        lambda d: int(d.find_element(By.ID, "chart-latency").get_attribute("data-drawn") or 0) >= 1,
        "the latency chart was not drawn after the retried events were written",
    )
    screenshot(browser, tmp_path, "console-after-retry")


def test_retry_without_the_csrf_token_is_refused(service: Service) -> None:
    console = f"http://127.0.0.1:{service.settings.console.port}"
    with httpx.Client(base_url=console, timeout=10) as http:
        assert http.get("/").status_code == 200  # sets the CSRF cookie
        refused = http.post("/api/retry", json={})
        assert refused.status_code == 403
        token = http.cookies["doopage_console_csrf"]
        assert http.post("/api/retry", json={}, headers={"x-csrftoken": token}).json() == {"queued": 0}
        # A page on another name (DNS rebinding to 127.0.0.1) gets nothing.
        assert http.get("/api/overview", headers={"host": "attacker.example"}).status_code == 421


def test_the_openapi_viewer_works_offline(browser: webdriver.Chrome, service: Service) -> None:
    browser.get(f"{service.base}/schema")
    wait_until(
        browser,
        lambda d: (
            "doopage-sheets"
            in " ".join(e.text for e in d.find_elements(By.CSS_SELECTOR, ".swagger-ui .info .title"))
        ),
        "Swagger UI did not render the document (its assets come from the package)",
    )
    operations = browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")
    assert any("/webhooks/doopage/" in op.text for op in operations)
    with httpx.Client(base_url=service.base, timeout=10) as http:
        assert http.get("/schema/assets/swagger-ui-bundle.js").status_code == 200
        assert "cdn." not in http.get("/schema").text
