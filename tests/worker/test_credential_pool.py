"""Two service accounts writing two spreadsheets: the worker as it starts from a settings file with
``sheets.credentials``, one company pinned, the other given a credential by the pool's hash; signed in at
the local Sheets server's token endpoint like Google's."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from connector.cli import main
from connector.console.app import ConsoleData
from connector.errors import ConfigError
from connector.localsheets.testing import LocalSheets
from connector.mapping_watch import MappingWatcher
from connector.settings import Settings, load_settings
from connector.sheets.pool import choose
from connector.store import open_work_store
from connector.sync.routing import Router
from connector.sync.worker import Worker, WorkerThread
from tests import settings_files
from tests.sheets.conftest import write_service_account
from tests.worker.conftest import TOKEN, Connector
from tests.worker.test_operations import run
from tests.worker.test_worker import store


def two_company_settings(
    folder: Path, sheets: LocalSheets, pin: str
) -> tuple[Settings, list[str], list[str]]:
    """Settings with two service accounts (sa-0.json, sa-1.json) and the shipped mapping twice: company
    1 on a spreadsheet the hash gives to sa-0, company 2 on another pinned to ``pin``. The settings, the
    accounts' emails and the spreadsheet ids."""
    run_id = uuid.uuid4().hex[:8]
    emails = [f"pool-{i}-{run_id}@test.iam.gserviceaccount.com" for i in range(2)]
    for i, email in enumerate(emails):
        write_service_account(
            folder / f"sa-{i}.json",
            token_uri=sheets.token_uri,
            key_id=f"key-{i}-{run_id}",
            client_email=email,
        )
    first = next(sid for sid in (f"test-{uuid.uuid4().hex}" for _ in range(100)) if choose(sid, emails) == 0)
    second = f"test-{uuid.uuid4().hex}"
    for sid in (first, second):
        sheets.create_spreadsheet(sid)
    path = settings_files.write_settings(folder, sheets.url, first, TOKEN, "max_delay_ms = 1")
    path.write_text(
        path.read_text().replace("[sheets]\n", '[sheets]\ncredentials = ["sa-0.json", "sa-1.json"]\n')
    )
    mapping = (folder / "mapping.toml").read_text()
    start = mapping.index("\n[[companies]]\n")
    again = (
        mapping[start:]
        .replace("company_id = 1 ", "company_id = 2 ")
        .replace(json.dumps(first), json.dumps(second))
    )
    again = re.sub(r"# credential = .*", f"credential = {json.dumps(pin)}", again)
    (folder / "mapping.toml").write_text(mapping + "\n" + again)
    return load_settings(path), emails, [first, second]


def of_company(body: bytes, company_id: int) -> bytes:
    return body.replace(b'"company_id": 1', f'"company_id": {company_id}'.encode())


def test_two_credentials_write_two_spreadsheets_each_with_its_own(tmp_path, local_sheets, samples):
    settings, emails, (first, second) = two_company_settings(tmp_path, local_sheets, pin="sa-1.json")
    thread = WorkerThread(settings)  # loads both files and checks the pin, as at start-up
    queue = open_work_store(settings)
    worker = Worker(queue, thread.writer, Router.from_mapping(thread.mapping), settings.worker)
    connector = Connector(settings, first, queue, worker, local_sheets)
    created = samples["customer_created"]
    # The first credential's key is revoked: only the spreadsheet it writes is refused.
    local_sheets.set_auth(
        revoked_key_ids=[json.loads((tmp_path / "sa-0.json").read_text())["private_key_id"]]
    )
    try:
        store(connector, [of_company(created, 1), of_company(created, 2)])
        report = worker.run_once()
    finally:
        local_sheets.set_auth()
    assert (report.done, report.failed) == (1, 1)
    [failed] = queue.failed()
    assert (failed.company_id, "invalid_grant" in failed.error) == (1, True)
    assert len(local_sheets.sheet_values(second, "Customers")) == 2  # written with sa-1, as pinned

    store(connector, [of_company(samples["customer_updated"], 1)], received_ms=1_700_000_100_000)
    assert worker.run_once().done == 1  # the key works again: sa-0 writes its spreadsheet
    assert len(local_sheets.sheet_values(first, "Customers")) == 2

    checked = run(connector, "check-config")
    assert checked.exit_code == 0, checked.output
    text = " ".join(checked.output.split())
    assert "with a pool of 2 credentials" in text
    assert f"spreadsheet {first} is written as {emails[0]} (by hash)" in text
    assert f"spreadsheet {second} is written as {emails[1]} (pinned by the mapping)" in text
    status = " ".join(run(connector, "status").output.split())
    assert emails[0] in status
    assert emails[1] in status
    console = ConsoleData(settings)
    try:
        view = console.overview()
    finally:
        console.close()
    assert {s.spreadsheet_id: s.credential for s in view.spreadsheets} == {
        first: f"{emails[0]} (by hash)",
        second: f"{emails[1]} (pinned by the mapping)",
    }
    assert view.budget.writes_limit == 2 * settings.sheets.rate_limit.writes_per_minute  # one budget each
    queue.close()


def test_a_pin_to_a_credential_not_in_the_pool_stops_the_start(tmp_path, local_sheets):
    settings, _, _ = two_company_settings(tmp_path, local_sheets, pin="sa-7.json")
    with pytest.raises(ConfigError) as caught:
        WorkerThread(settings)
    assert caught.value.file == str(tmp_path / "mapping.toml")
    assert caught.value.path == "companies[1].credential"
    assert "'sa-7.json' is not one of sheets.credentials" in caught.value.reason


def test_a_mapping_file_changed_to_pin_an_unknown_credential_is_refused_while_running(tmp_path, local_sheets):
    settings, emails, (first, _) = two_company_settings(tmp_path, local_sheets, pin="sa-1.json")
    thread = WorkerThread(settings)
    watcher = MappingWatcher(settings, thread.mapping, check=thread.writer.pool.check_pins)
    path = tmp_path / "mapping.toml"
    path.write_text(path.read_text().replace('credential = "sa-1.json"', 'credential = "nobody@x.iam"'))
    assert watcher.check() is None  # refused: the previous mapping stays in use
    assert watcher.error is not None
    assert (
        "companies[1].credential: credential 'nobody@x.iam' is not one of sheets.credentials" in watcher.error
    )
    path.write_text(path.read_text().replace('credential = "nobody@x.iam"', f'credential = "{emails[0]}"'))
    changed = watcher.check()
    assert changed is not None
    assert Router.from_mapping(changed).pin(first) is None  # company 1 unpinned: by hash, as before
    assert watcher.error is None


def test_check_config_refuses_a_pin_when_writes_go_to_the_built_in_local_server(tmp_path):
    path = settings_files.write_settings(tmp_path, None, "sheet-1", TOKEN)
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(re.sub(r"# credential = .*", 'credential = "sa-1.json"', mapping.read_text()))
    result = CliRunner().invoke(main, ["check-config", "--config", str(path)])
    assert result.exit_code == 2
    assert f"{mapping}: companies[0].credential: pins credential 'sa-1.json'" in result.output
    assert "no Google credentials are configured" in result.output
