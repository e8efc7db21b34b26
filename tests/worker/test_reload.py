"""SIGHUP reloads the settings and mapping of a running `serve`; `failed retry` never parks events again
under a spreadsheet id the mapping no longer names."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from connector.localsheets.testing import LocalSheets
from connector.reload import mapping_changes, mapping_fingerprint, settings_changes
from connector.runners import live_runners, registered
from connector.settings import load_settings, parse_settings
from connector.sync.mapping import CompanyMapping, load_mapping, parse_mapping
from connector.sync.routing import Router
from connector.threaded_server import free_port
from tests.e2e.harness import PATH, Service, write_settings
from tests.worker.test_worker import store

WRONG_ID = "no-such-spreadsheet-0000"


@pytest.fixture
def service(tmp_path: Path, local_sheets: LocalSheets) -> Iterator[tuple[Service, str]]:
    """`serve` (worker embedded) whose mapping names a spreadsheet that does not exist; the good id."""
    good = local_sheets.new_spreadsheet()
    config = write_settings(tmp_path, local_sheets.url, WRONG_ID, free_port())
    config.write_text(config.read_text().replace('log_level = "warning"', 'log_level = "info"'))
    handle = Service(config)
    handle.start()
    yield handle, good
    if handle.process is not None:
        handle.stop()


def wait_for(condition, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def retry(config: Path, *options: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "connector", "failed", "retry", "--config", str(config), *options]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_failed_retry_after_fixing_the_spreadsheet_id_writes_to_the_new_one(
    service: tuple[Service, str], local_sheets: LocalSheets, samples: dict[str, bytes]
) -> None:
    handle, good = service
    with httpx.Client(base_url=handle.base) as http:
        for name in ("customer_created", "order_created"):
            assert http.post(PATH, content=samples[name]).status_code == 200
    wait_for(lambda: handle.inbox().get("failed") == 2, "the events were not parked")

    mapping = handle.config.parent / "mapping.toml"
    mapping.write_text(mapping.read_text().replace(WRONG_ID, good))  # the operator fixes the id...
    status = subprocess.run(
        [sys.executable, "-m", "connector", "status", "--config", str(handle.config)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert f"Running: serve (pid {handle.process.pid})" in status.stdout
    assert (
        f"another mapping than the file's: reload it with `kill -HUP {handle.process.pid}`" in status.stdout
    )
    result = retry(handle.config)  # ...and retries, without restarting the service
    assert result.returncode == 0, result.stderr
    assert "has an older mapping: asking it to reload" in result.stdout
    assert "2 failed events queued again" in result.stdout
    counts = handle.wait_settled(2)
    assert counts == {"done": 2}
    assert [row[0] for row in local_sheets.sheet_values(good, "Customers")[1:]] == [1]
    assert handle.process is not None
    assert handle.process.poll() is None
    assert f"company 1 now writes to spreadsheet {good} (was {WRONG_ID})" in handle.log()


def test_sighup_applies_log_level_and_rate_limits_and_refuses_a_broken_file(
    service: tuple[Service, str], samples: dict[str, bytes]
) -> None:
    handle, _ = service
    assert handle.process is not None
    base = handle.base  # read from the file, which is about to break
    settings = handle.config.read_text()
    handle.config.write_text(settings.replace('log_level = "info"', 'log_level = "debug"\nport_typo = 1'))
    os.kill(handle.process.pid, signal.SIGHUP)
    wait_for(lambda: "reload refused" in handle.log(), "a broken file was not refused")
    assert "port_typo" in handle.log()
    assert handle.process.poll() is None  # SIGHUP no longer kills it
    assert httpx.get(f"{base}/healthz").status_code == 200

    changed = settings.replace('log_level = "info"', 'log_level = "warning"')
    changed = changed.replace("reads_per_minute = 100000", "reads_per_minute = 60000")
    handle.config.write_text(changed.replace("lease_ms = 3000", "lease_ms = 4000"))
    os.kill(handle.process.pid, signal.SIGHUP)
    # serve reloads, then its worker child (which serve passes the signal on to): both log it.
    wait_for(lambda: handle.log().count("takes effect after a restart") >= 2, "the reload was not logged")
    log = handle.log()
    assert "reload: server.log_level: info -> warning" in log
    assert "reload: sheets.rate_limit.reads_per_minute: 100000 -> 60000" in log
    assert "takes effect after a restart: worker.lease_ms" in log
    assert handle.process.poll() is None
    # A hang-up reaches the whole process group: the inbox writer child goes on too.
    pid = handle.process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    assert children
    for child in children:
        os.kill(int(child), signal.SIGHUP)
    with httpx.Client(base_url=base) as http:
        assert http.post(PATH, content=samples["tag_set"]).status_code == 200
    time.sleep(0.5)
    assert " INFO " not in handle.log().rsplit("takes effect after a restart", 1)[1]  # warning level now


def test_failed_retry_queues_nothing_while_a_running_worker_keeps_another_mapping(
    tmp_path: Path, local_sheets: LocalSheets
) -> None:
    config = write_settings(tmp_path, local_sheets.url, WRONG_ID, free_port())
    data = tmp_path / "data"
    # A worker that holds its record but never reloads (its process ignores SIGHUP's reload).
    with registered(data, "worker", str(config), "another-mapping"):
        previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
        try:
            result = retry(config, "--reload-wait", "1")
        finally:
            signal.signal(signal.SIGHUP, previous)
    assert result.returncode == 1
    assert "did not take the mapping" in result.stderr
    assert "Nothing was queued again." in result.stderr
    assert live_runners(data) == []  # its record went with it


def test_records_of_dead_processes_are_removed(tmp_path: Path) -> None:
    with registered(tmp_path, "serve", "settings.toml", "abc") as registration:
        assert [runner.mapping for runner in live_runners(tmp_path)] == ["abc"]
        registration.update("def")
        assert [runner.mapping for runner in live_runners(tmp_path)] == ["def"]
    leftover = tmp_path / "running" / "99999999.json"
    leftover.write_text(
        '{"pid": 99999999, "command": "serve", "config": "x", "mapping": "m", "loaded_ms": 1}'
    )
    assert live_runners(tmp_path) == []
    assert not leftover.exists()


def test_what_a_reload_reports() -> None:
    base = """
[[endpoints]]
name = "main"
token = "reload-test-token-0123456789"
validation_key = "key"
"""
    old = parse_settings(base, "settings.toml")
    new = parse_settings(
        base.replace('"key"', '"other-key"')
        + '[server]\nlog_level = "debug"\nport = 9000\n[sheets]\nrate_limit = { writes_per_minute = 10 }\n',
        "settings.toml",
    )
    applied, restart = settings_changes(old, new)
    assert applied == [
        "server.log_level: info -> debug",
        "sheets.rate_limit.writes_per_minute: 50 -> 10",
    ]
    assert restart == ["endpoints", "server.port"]  # a secret is named, never shown

    company = """
[[companies]]
company_id = {id}
spreadsheet_id = "{sheet}"
[[companies.worksheets]]
title = "Customers"
entity = "customers"
key = "Id"
columns = [{{ header = "Id", source = "customer.id" }}]
"""
    before = parse_mapping(company.format(id=1, sheet="a") + company.format(id=2, sheet="b"), "m.toml")
    after = parse_mapping(company.format(id=1, sheet="c") + company.format(id=3, sheet="b"), "m.toml")
    lines, touched = mapping_changes(before, after)
    assert lines == [
        "company 1 now writes to spreadsheet c (was a)",
        "company 2 is no longer mapped: its new events are kept as unrouted",
        "company 3 is mapped now, to spreadsheet b",
    ]
    assert touched == {"a", "b", "c"}
    assert mapping_fingerprint(before) == mapping_fingerprint(
        parse_mapping(company.format(id=1, sheet="a") + company.format(id=2, sheet="b"), "other.toml")
    )
    assert mapping_fingerprint(before) != mapping_fingerprint(after)


def map_company_seven(connector) -> str:
    """Map company 7, in the mapping file, to a new spreadsheet of its own; its id."""
    second = connector.sheets.new_spreadsheet()
    mapping_file = Path(connector.settings.source).parent / "mapping.toml"
    text = mapping_file.read_text()
    block = text[text.index("\n[[companies]]") :].replace("company_id = 1", "company_id = 7")
    mapping_file.write_text(text + "\n" + block.replace(connector.spreadsheet_id, second))
    return str(second)


def test_the_worker_process_writes_unrouted_events_once_a_reload_maps_their_company(connector, samples):
    other = json.loads(samples["customer_created"])
    other["company_id"] = 7
    store(connector, [json.dumps(other).encode()])
    process = subprocess.Popen(
        [sys.executable, "-m", "connector", "worker", "--config", connector.settings.source],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: any(row.status == "unrouted" for row in connector.store.counts()), "not unrouted")
        second = map_company_seven(connector)
        process.send_signal(signal.SIGHUP)
        wait_for(
            lambda: {row.status for row in connector.store.counts()} == {"done"}, "company 7 not written"
        )
        assert [row[0] for row in connector.sheets.sheet_values(second, "Customers")[1:]] == [1]
    finally:
        process.send_signal(signal.SIGTERM)
        status = process.wait(timeout=30)
    log = process.stderr.read() if process.stderr else ""
    assert status == 0, log
    assert "reload: company 7 is mapped now, to spreadsheet" in log
    assert "company 7 is mapped now: 1 unrouted events queued again" in log


def test_events_set_aside_while_a_reload_maps_their_company_go_back_to_the_queue(connector, samples):
    """The race of a reload with a pass: the pass sorted with the old mapping, the new one maps the company."""
    other = json.loads(samples["customer_created"])
    other["company_id"] = 7
    store(connector, [json.dumps(other).encode()])
    second = map_company_seven(connector)
    reloaded = Router.from_mapping(load_mapping(load_settings(connector.settings.source)))
    company = connector.worker.router.route(1)
    assert company is not None

    class ReloadMidPass(Router):
        def route(self, company_id: int) -> CompanyMapping | None:
            connector.worker.router = reloaded  # the reload lands while this pass sorts its events
            return super().route(company_id)

    connector.worker.router = ReloadMidPass([company])
    assert connector.worker.run_once().unrouted == 1
    assert {row.status for row in connector.store.counts()} == {"pending"}  # back in the queue, not parked
    assert connector.worker.run_once().done == 1
    assert [row[0] for row in connector.sheets.sheet_values(second, "Customers")[1:]] == [1]
