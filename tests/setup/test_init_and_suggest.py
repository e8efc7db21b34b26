"""`init` and `mapping suggest`: header rows read from a spreadsheet (English and Vietnamese) become a
mapping the service accepts; init writes settings that load and prints what DooPage needs."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner

from connector.cli import main
from connector.localsheets.guard import ADMIN_SECRET_ENV
from connector.localsheets.testing import LocalSheets
from connector.mapping_suggest import normalise, spreadsheet_id_from, suggest_worksheet
from connector.settings import load_settings
from connector.sync.mapping import parse_mapping
from tests import settings_files

VIETNAMESE_CUSTOMERS = [
    "Mã khách hàng",
    "Tên khách hàng",
    "Trạng thái",
    "Nhân viên phụ trách",
    "Nhãn",
    "Ghi chú",
    "Cột riêng",
]
VIETNAMESE_ORDERS = ["Mã đơn", "Ngày đặt hàng", "Trạng thái thanh toán", "Giao hàng"]


def test_headers_are_compared_without_case_diacritics_or_punctuation():
    assert normalise("  Tên khách-hàng ") == "ten khach hang"
    assert normalise("Mã Đơn") == "ma don"


@pytest.mark.parametrize(
    ("headers", "entity", "key", "sources"),
    [
        (
            VIETNAMESE_CUSTOMERS,
            "customers",
            "Mã khách hàng",
            ["customer.id", "customer.name", "customer.status", "staff.name", "tags", "note"],
        ),
        (
            VIETNAMESE_ORDERS,
            "orders",
            "Mã đơn",
            ["order.id", "order.created_at", "order.payment_status", "order.picking_status"],
        ),
        (
            ["Customer ID", "Full name", "Tags", "Last activity"],
            "customers",
            "Customer ID",
            ["customer.id", "customer.name", "tags", "customer.last_event_time"],
        ),
        (
            ["Time", "Event", "Detail", "Event key"],
            "events",
            "Event key",
            ["event.time", "event.type", "event.detail", "event.dedup_key"],
        ),
    ],
)
def test_recognised_headers_get_a_source_and_the_worksheet_an_entity(headers, entity, key, sources):
    proposal = suggest_worksheet("Sheet", headers)
    assert proposal is not None
    assert (proposal.entity, proposal.key) == (entity, key)
    assert [column.source for column in proposal.columns] == sources


def test_a_worksheet_without_a_key_column_is_not_guessed():
    assert suggest_worksheet("Notes", ["Ghi chú", "Ngày"]) is None
    assert suggest_worksheet("Blank", []) is None


def test_urls_and_ids_are_both_taken():
    url = "https://docs.google.com/spreadsheets/d/1AbC-d_9/edit#gid=0"
    assert spreadsheet_id_from(url) == "1AbC-d_9"
    assert spreadsheet_id_from("1AbC-d_9") == "1AbC-d_9"
    with pytest.raises(ValueError, match="not a spreadsheet URL"):
        spreadsheet_id_from("https://example.com/x y")


def vietnamese_spreadsheet(local_sheets: LocalSheets) -> str:
    return local_sheets.new_spreadsheet(
        [
            {"title": "Khách hàng", "values": [VIETNAMESE_CUSTOMERS, ["1", "An"]]},
            {"title": "Đơn hàng", "values": [VIETNAMESE_ORDERS]},
            {"title": "Ghi chép", "values": [["Nội dung"]]},
        ],
        title="Shop",
    )


def test_mapping_suggest_prints_a_mapping_the_service_accepts(tmp_path: Path, local_sheets: LocalSheets):
    spreadsheet_id = vietnamese_spreadsheet(local_sheets)
    config = settings_files.write_settings(tmp_path, local_sheets.url, "unused", "suggest-token-0123456789")
    result = CliRunner().invoke(
        main, ["mapping", "suggest", "--config", str(config), "--company", "7", "--spreadsheet",
               f"https://docs.google.com/spreadsheets/d/{spreadsheet_id}/edit"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    mapping = parse_mapping(result.stdout, "proposed.toml")
    [company] = mapping.companies
    assert (company.company_id, company.spreadsheet_id) == (7, spreadsheet_id)
    customers, orders = company.worksheets
    assert (customers.title, customers.key_header) == ("Khách hàng", "Mã khách hàng")
    assert list(orders.headers) == VIETNAMESE_ORDERS
    assert "Cột riêng" in result.stderr  # not recognised, said so
    assert "'Ghi chép' left out" in result.stderr


def test_init_writes_settings_and_mapping_from_the_headers_and_says_what_to_paste(
    tmp_path: Path, local_sheets: LocalSheets
):
    spreadsheet_id = vietnamese_spreadsheet(local_sheets)
    key_file = tmp_path / "key.json"
    key_file.write_text(json.dumps({"client_email": "bot@project.iam.gserviceaccount.com"}), encoding="utf-8")
    port = urlsplit(local_sheets.url).port
    folder = tmp_path / "conf"
    # The local server already running: init finds it (its admin secret, as `serve` leaves it in the data
    # directory, given here in the environment).
    env = {"GOOGLE_APPLICATION_CREDENTIALS": None, ADMIN_SECRET_ENV: local_sheets.admin_secret}
    result = CliRunner(env=env).invoke(
        main,
        ["init", "--dir", str(folder), "--local-sheets-port", str(port)],
        # Answers: the spreadsheet URL, the company id, no key (the local server, already running).
        input=f"https://docs.google.com/spreadsheets/d/{spreadsheet_id}/edit\n42\n\n",
    )
    assert result.exit_code == 0, result.output
    settings = load_settings(folder / "settings.toml")
    token = settings.endpoints[0].token.reveal()
    assert f"/webhooks/doopage/{token}" in result.stdout
    assert f"Validation key: {settings.endpoints[0].validation_key.reveal()}" in result.stdout
    assert settings.endpoints[0].companies == [42]
    mapping = parse_mapping((folder / "mapping.toml").read_text(encoding="utf-8"), "m.toml")
    assert [sheet.title for sheet in mapping.companies[0].worksheets] == ["Khách hàng", "Đơn hàng"]

    again = CliRunner().invoke(main, ["init", "--dir", str(folder), "--spreadsheet", "x", "--company", "1"])
    assert again.exit_code == 2
    assert "exist already" in again.stderr

    with_key = CliRunner().invoke(
        main,
        ["init", "--dir", str(tmp_path / "other"), "--spreadsheet", "new-sheet", "--company", "3",
         "--credentials", str(key_file), "--force"],
    )  # fmt: skip
    # The key is a fake, so the headers cannot be read from Google: the default worksheets are proposed.
    assert with_key.exit_code == 0, with_key.output
    assert "Share the spreadsheet with bot@project.iam.gserviceaccount.com as Editor." in with_key.stdout
    written = parse_mapping((tmp_path / "other" / "mapping.toml").read_text(encoding="utf-8"), "m.toml")
    assert [sheet.title for sheet in written.companies[0].worksheets] == ["Customers", "Orders", "Events"]
