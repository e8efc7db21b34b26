"""A pool of credentials (sheets.credentials): settings errors, the stable choice of a credential per
spreadsheet, pins, and budgets that really are one per credential against the local Sheets server, which
counts its quotas per caller as Google counts them per user."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import gspread
import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector import metrics
from connector.errors import ConfigError
from connector.localsheets.testing import LocalSheets
from connector.reload import mapping_changes
from connector.settings import parse_settings
from connector.sheets import RateLimitSettings, SheetsSettings, SheetWriter
from connector.sheets.client import connect_all
from connector.sheets.errors import PermanentSheetsError
from connector.sheets.pool import CredentialPool, choose
from connector.sync.mapping import parse_mapping
from connector.sync.routing import Router

from .conftest import FAST_BUDGET, write_service_account
from .test_writer import people

ENDPOINT = '[[endpoints]]\nname = "main"\ntoken = "abcdefghijklmnop1234"\nvalidation_key = "k"\n'


def accounts(folder: Path, count: int, token_uri: str = "") -> list[str]:
    """``count`` service-account files in ``folder`` (sa-0.json, ...), each its own client_email; the
    emails, made unique so budgets shared per credential in this process are not shared between tests."""
    run = uuid.uuid4().hex[:8]
    emails = [f"writer-{i}-{run}@test.iam.gserviceaccount.com" for i in range(count)]
    for i, email in enumerate(emails):
        extra = {"token_uri": token_uri} if token_uri else {}
        write_service_account(folder / f"sa-{i}.json", key_id=f"key-{i}-{run}", client_email=email, **extra)
    return emails


def settings_file(folder: Path, sheets: str) -> Path:
    path = folder / "settings.toml"
    path.write_text(f"{ENDPOINT}\n[sheets]\n{sheets}\n")
    return path


def load(path: Path) -> SheetsSettings:
    return parse_settings(path.read_text(), str(path), environ={}).sheets


# ---------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("sheets", "path", "reason"),
    [
        (
            'credentials_file = "a.json"\ncredentials = ["b.json"]',
            "sheets.credentials",
            "either credentials_file",
        ),
        ('credentials = ["a.json", "b.json", "a.json"]', "sheets.credentials[2]", "already credentials[0]"),
        ('credentials = ["a.json", " "]', "sheets.credentials[1]", "empty file name"),
    ],
)
def test_credentials_as_written_are_checked_when_the_settings_load(
    tmp_path: Path, sheets: str, path: str, reason: str
) -> None:
    file = settings_file(tmp_path, sheets)
    with pytest.raises(ConfigError) as caught:
        load(file)
    assert (caught.value.file, caught.value.path) == (str(file), path)
    assert reason in caught.value.reason


def test_every_file_of_the_pool_is_loaded_at_start_up_relative_to_the_settings_file(tmp_path: Path) -> None:
    emails = accounts(tmp_path, 2)
    file = settings_file(tmp_path, 'credentials = ["sa-0.json", "sa-1.json", "missing.json"]')
    with pytest.raises(ConfigError) as caught:
        SheetWriter.from_settings(load(file), source=str(file), environ={})
    assert (caught.value.file, caught.value.path) == (str(file), "sheets.credentials[2]")
    assert str(tmp_path / "missing.json") in caught.value.reason
    (tmp_path / "missing.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"credentials\[2\]: cannot use service-account file"):
        SheetWriter.from_settings(load(file), source=str(file), environ={})

    file = settings_file(tmp_path, 'credentials = ["sa-0.json", "sa-1.json"]')
    writer = SheetWriter.from_settings(load(file), source=str(file), environ={})
    assert [member.email for member in writer.pool.members] == emails
    assert [member.connection.name for member in writer.pool.members] == ["sa-0.json", "sa-1.json"]


def test_two_files_of_one_service_account_are_refused(tmp_path: Path) -> None:
    [email] = accounts(tmp_path, 1)
    write_service_account(tmp_path / "copy.json", key_id="other-key", client_email=email)
    file = settings_file(tmp_path, 'credentials = ["sa-0.json", "copy.json"]')
    with pytest.raises(ConfigError) as caught:
        connect_all(load(file), source=str(file), environ={})
    assert caught.value.path == "sheets.credentials[1]"
    assert email in caught.value.reason
    assert "already credentials[0]" in caught.value.reason


# ---------------------------------------------------------------- the stable choice

EMAILS = st.lists(
    st.from_regex(r"[a-z]{1,8}@[a-z]{1,6}\.iam\.gserviceaccount\.com", fullmatch=True),
    min_size=1,
    max_size=6,
    unique=True,
)
IDS = [f"sheet-{n}" for n in range(120)]


def assigned(emails: list[str]) -> dict[str, str]:
    return {sid: emails[choose(sid, emails)] for sid in IDS}


@given(emails=EMAILS, new=st.from_regex(r"new[a-z]{1,8}@x\.iam\.gserviceaccount\.com", fullmatch=True))
def test_a_credential_added_takes_spreadsheets_only_for_itself(emails: list[str], new: str) -> None:
    before, after = assigned(emails), assigned([*emails, new])
    assert all(after[sid] in (before[sid], new) for sid in IDS)


@given(emails=EMAILS.filter(lambda emails: len(emails) > 1), data=st.data())
def test_a_credential_removed_gives_away_only_its_own_spreadsheets(
    emails: list[str], data: st.DataObject
) -> None:
    gone = data.draw(st.sampled_from(emails))
    before, after = assigned(emails), assigned([e for e in emails if e != gone])
    assert all(after[sid] == before[sid] for sid in IDS if before[sid] != gone)


@given(emails=EMAILS, data=st.data())
def test_the_order_of_the_list_does_not_matter(emails: list[str], data: st.DataObject) -> None:
    assert assigned(data.draw(st.permutations(emails))) == assigned(emails)


def test_spreadsheets_spread_evenly_and_the_choice_is_the_same_in_every_process() -> None:
    emails = [f"sa-{i}@p.iam.gserviceaccount.com" for i in range(4)]
    ids = [f"company-{n}" for n in range(400)]
    here = [choose(sid, emails) for sid in ids]
    assert all(70 <= n <= 130 for n in Counter(here).values())  # about 100 each
    code = (
        "import sys; from connector.sheets.pool import choose; "
        f"e = {emails!r}; print(*(choose(f'company-{{n}}', e) for n in range(400)))"
    )
    elsewhere = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={"PYTHONHASHSEED": "7"}
    ).stdout.split()
    assert [int(i) for i in elsewhere] == here


# ---------------------------------------------------------------- pins

MAPPING = """
[[companies]]
company_id = {company}
spreadsheet_id = "{sid}"
{pin}
[[companies.worksheets]]
title = "People"
entity = "customers"
key = "ID"
columns = [{{ header = "ID", source = "customer.id" }}]
"""


def mapping_text(*companies: tuple[int, str, str | None]) -> str:
    return "".join(
        MAPPING.format(company=c, sid=sid, pin=f'credential = "{pin}"' if pin else "")
        for c, sid, pin in companies
    )


def test_a_company_pins_its_spreadsheet_by_client_email_or_by_file(tmp_path: Path) -> None:
    emails = accounts(tmp_path, 3)
    file = settings_file(tmp_path, 'credentials = ["sa-0.json", "sa-1.json", "sa-2.json"]')
    pool = CredentialPool.of(connect_all(load(file), source=str(file), environ={}), FAST_BUDGET)
    mapping = parse_mapping(
        mapping_text((1, "s1", emails[2]), (2, "s2", "sa-1.json"), (3, "s3", None)), "m.toml"
    )
    pool.check_pins(mapping)
    router = Router.from_mapping(mapping)
    assert pool.member_for("s1", router.pin("s1")).email == emails[2]
    assert pool.member_for("s2", router.pin("s2")).email == emails[1]
    assert router.pin("s3") is None
    assert pool.member_for("s3").email == emails[choose("s3", emails)]
    assert "pinned by the mapping" in pool.describe("s1", router.pin("s1"))
    assert "by hash" in pool.describe("s3")


def test_a_pin_naming_no_credential_of_the_pool_is_a_config_error(tmp_path: Path) -> None:
    accounts(tmp_path, 2)
    file = settings_file(tmp_path, 'credentials = ["sa-0.json", "sa-1.json"]')
    pool = CredentialPool.of(connect_all(load(file), source=str(file), environ={}), FAST_BUDGET)
    mapping = parse_mapping(mapping_text((1, "s1", None), (2, "s2", "sa-9.json")), "m.toml")
    with pytest.raises(ConfigError) as caught:
        pool.check_pins(mapping)
    assert (caught.value.file, caught.value.path) == ("m.toml", "companies[1].credential")
    assert "'sa-9.json' is not one of sheets.credentials" in caught.value.reason
    assert "sa-1.json" in caught.value.reason  # what may be named instead
    with pytest.raises(PermanentSheetsError, match=r"not one of sheets\.credentials"):
        pool.member_for("s2", "sa-9.json")  # a mapping changed under a running flush: parked, said why


def test_companies_sharing_a_spreadsheet_cannot_pin_different_credentials() -> None:
    pins = ("a@x.iam.gserviceaccount.com", "b@x.iam.gserviceaccount.com")
    text = mapping_text((1, "shared", pins[0]), (2, "shared", pins[1]))
    text = text.replace('title = "People"', 'title = "Others"', 1)  # titles are unique per spreadsheet
    with pytest.raises(ConfigError) as caught:
        parse_mapping(text, "m.toml")
    assert caught.value.path == "companies[1].credential"
    assert f"already pinned to credential {pins[0]!r} by companies[0]" in caught.value.reason
    assert (
        Router.from_mapping(parse_mapping(text.replace(pins[1], pins[0]), "m.toml")).pin("shared") == pins[0]
    )


def test_a_reload_that_changes_a_pin_says_so_and_forgets_what_the_writer_knew_of_the_spreadsheet() -> None:
    before = parse_mapping(mapping_text((1, "s1", None), (2, "s2", None)), "m.toml")
    after = parse_mapping(mapping_text((1, "s1", "sa-1.json"), (2, "s2", None)), "m.toml")
    lines, touched = mapping_changes(before, after)
    assert lines == [
        "company 1: its spreadsheet is now written with credential sa-1.json (was chosen by the pool)"
    ]
    assert touched == {"s1"}


# ---------------------------------------------------------------- one budget per credential, for real


def ids_for_each(emails: list[str]) -> list[str]:
    """A spreadsheet id the pool gives to each credential, in order."""
    found: dict[int, str] = {}
    while len(found) < len(emails):
        sid = f"test-{uuid.uuid4().hex}"
        found.setdefault(choose(sid, emails), sid)
    return [found[i] for i in range(len(emails))]


def write_once(client: gspread.Client, spreadsheet_id: str) -> None:
    """One write request (values.update) as a plain gspread user would send it."""
    client.open_by_key(spreadsheet_id).sheet1.update_acell("Z1", "x")


def test_each_credential_spends_its_own_budget_and_the_server_counts_each_caller_apart(
    server: LocalSheets, tmp_path: Path
) -> None:
    emails = accounts(tmp_path, 2, token_uri=server.token_uri)
    budget = RateLimitSettings(reads_per_minute=1000, writes_per_minute=2, smooth=False)
    settings = SheetsSettings(
        api_root=server.url,
        credentials=[str(tmp_path / "sa-0.json"), str(tmp_path / "sa-1.json")],
        rate_limit=budget,
    )
    writer = SheetWriter.from_settings(settings, environ={})
    first, second = ids_for_each(emails)
    for sid in (first, second):
        server.create_spreadsheet(sid)
    server.set_quota(writes_per_window=2, window_seconds=60)  # Google's per-user quota, scaled down
    try:
        for n in range(2):
            assert writer.flush(first, [people((str(n), {"name": "a"}))]).rate_limit_wait == 0
        assert writer.ready_in(first) > 50  # its credential spent its 2 writes of this minute
        assert writer.ready_in(second) == 0.0  # the other credential's budget is untouched
        assert writer.ready_in() == 0.0  # so some flush can still go
        for n in range(2):
            assert writer.flush(second, [people((str(n), {"name": "b"}))]).rate_limit_wait == 0
        assert server.quota()["refused"] == {}  # 4 writes in one window, 2 per caller: none refused

        # The server's quota is per caller too: one more write past the budget is refused for that caller.
        client = writer.pool.members[0].connection.client
        with pytest.raises(gspread.exceptions.APIError) as caught:
            write_once(client, first)
        assert caught.value.response.status_code == 429
        assert "per minute per user" in caught.value.response.text
        assert server.quota()["refused_by_caller"] == {emails[0]: {"write": 1}}
    finally:
        server.set_quota()
    assert len(server.sheet_values(first, "People")) == 3
    assert len(server.sheet_values(second, "People")) == 3
    states = {(state.credential, state.kind): state for state in writer.budget()}
    assert set(states) == {(email, kind) for email in emails for kind in ("read", "write")}
    for email in emails:  # the budget metric too is one per credential
        labels = {"kind": "write", "credential": email}
        assert metrics.WORKER_REGISTRY.get_sample_value("doopage_sheets_budget_per_minute", labels) == 2


def test_the_project_quota_is_shared_by_every_caller(server: LocalSheets, tmp_path: Path) -> None:
    accounts(tmp_path, 2, token_uri=server.token_uri)
    settings = SheetsSettings(
        api_root=server.url, credentials=[str(tmp_path / "sa-0.json"), str(tmp_path / "sa-1.json")]
    )
    clients = [connection.client for connection in connect_all(settings, environ={})]
    sid = server.new_spreadsheet()
    server.set_quota(writes_per_window=5, project_writes_per_window=3, window_seconds=60)
    try:
        for client in (clients[0], clients[1], clients[0]):
            write_once(client, sid)
        with pytest.raises(gspread.exceptions.APIError) as caught:
            write_once(clients[1], sid)
    finally:
        server.set_quota()
    assert caught.value.response.status_code == 429
    assert "limit 'Write requests per minute'" in caught.value.response.text
