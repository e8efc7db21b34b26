"""Mapping configuration: mistakes fail with the file, the path inside it and a reason a person can act on."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.errors import ConfigError
from connector.settings import load_settings
from connector.sync.mapping import SheetMapping, describe_sources, load_mapping, parse_mapping
from connector.sync.routing import Router

from .conftest import EXAMPLE_MAPPING

VALID = """
timezone = "Asia/Ho_Chi_Minh"

[[companies]]
company_id = 1
spreadsheet_id = "sheet-1"

[[companies.worksheets]]
title = "Customers"
entity = "customers"
key = "ID"
columns = [
    { header = "ID", source = "customer.id" },
    { header = "Name", source = "customer.name" },
    { header = "Seen", source = "customer.first_seen", format = "datetime" },
    { header = "Tags", source = "tags" },
]

[[companies.worksheets]]
title = "Orders"
entity = "orders"
key = "Order"
columns = [
    { header = "Order", source = "order.id" },
    { header = "Paid", source = "order.payment_status" },
]
"""

ENDPOINTS = """
[[endpoints]]
name = "main"
token = "test-token-0123456789abcdef"
validation_key = "key"
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def mistake(tmp_path: Path, old: str, new: str) -> ConfigError:
    """The error of the valid mapping with its first ``old`` replaced by ``new``."""
    assert old in VALID
    path = write(tmp_path, "mapping.toml", VALID.replace(old, new, 1))
    with pytest.raises(ConfigError) as caught:
        parse_mapping(path.read_text(encoding="utf-8"), str(path))
    error = caught.value
    assert error.file == str(path)
    assert str(error) == f"{path}: {error.path}: {error.reason}"
    return error


# The five mistakes the issue names: misspelt key, unknown source, unknown timezone, duplicated header,
# two worksheets with one title. Each: (old text, new text, path, words the reason must contain).
MISTAKES = [
    pytest.param(
        'columns = [\n    { header = "ID"',
        'colums = [\n    { header = "ID"',
        "companies[0].worksheets[0]",
        ["unknown field `colums`", "did you mean `columns`?"],
        id="misspelt-key",
    ),
    pytest.param(
        'spreadsheet_id = "sheet-1"',
        'spreadsheet = "sheet-1"',
        "companies[0]",
        ["unknown field `spreadsheet`", "did you mean `spreadsheet_id`?"],
        id="misspelt-company-key",
    ),
    pytest.param(
        'source = "customer.name"',
        'source = "customer.nmae"',
        "companies[0].worksheets[0].columns[1].source",
        ["unknown source field 'customer.nmae'", "did you mean 'customer.name'?", "customer.status"],
        id="unknown-source",
    ),
    pytest.param(
        'timezone = "Asia/Ho_Chi_Minh"',
        'timezone = "Asia/Ho_Chi_Min"',
        "timezone",
        ["unknown timezone 'Asia/Ho_Chi_Min'", "did you mean 'Asia/Ho_Chi_Minh'?"],
        id="unknown-timezone",
    ),
    pytest.param(
        'format = "datetime" }',
        'format = "datetime", timezone = "Mars/Olympus" }',
        "companies[0].worksheets[0].columns[2].timezone",
        ["unknown timezone 'Mars/Olympus'", "IANA name"],
        id="unknown-column-timezone",
    ),
    pytest.param(
        '{ header = "Seen"',
        '{ header = "Name"',
        "companies[0].worksheets[0].columns[2].header",
        ["header 'Name' is already used by columns[1]", "each column needs its own header"],
        id="duplicated-header",
    ),
    pytest.param(
        'title = "Orders"',
        'title = "customers"',
        "companies[0].worksheets[1].title",
        ["spreadsheet sheet-1 already has a worksheet titled 'customers'", "companies[0].worksheets[0]"],
        id="same-title-twice",
    ),
]


@pytest.mark.parametrize(("old", "new", "path", "words"), MISTAKES)
def test_mistake_names_file_path_and_reason(
    tmp_path: Path, old: str, new: str, path: str, words: list[str]
) -> None:
    error = mistake(tmp_path, old, new)
    assert error.path == path
    for word in words:
        assert word in error.reason


MORE_MISTAKES = [
    pytest.param(
        'key = "ID"', 'key = "Id"', "companies[0].worksheets[0].key", "not one of this worksheet's headers"
    ),
    pytest.param('key = "ID"', 'key = "Name"', "companies[0].worksheets[0].key", "must show customer.id"),
    pytest.param(
        'source = "customer.name"',
        'source = "order.payment_status"',
        "companies[0].worksheets[0].columns[1].source",
        "belongs to orders worksheets, not customers",
    ),
    pytest.param(
        'source = "customer.name"',
        'source = "customer.name", format = "datetime"',
        "companies[0].worksheets[0].columns[1].format",
        "format 'datetime' does not suit customer.name, which is text; use 'text'",
    ),
    pytest.param(
        'source = "customer.name"',
        'source = "customer.name", separator = ";"',
        "companies[0].worksheets[0].columns[1].separator",
        "`separator` applies only to format = 'list'",
    ),
    pytest.param(
        'format = "datetime" }',
        'format = "datetime", pattern = "YYYY-MM-DD" }',
        "companies[0].worksheets[0].columns[2].pattern",
        "has no strftime directive",
    ),
    pytest.param(
        'entity = "orders"',
        'entity = "order"',
        "companies[0].worksheets[1].entity",
        "use one of: customers, orders, events",
    ),
    pytest.param(
        'entity = "orders"',
        'entity = "orders"\nheader_row = 0',
        "companies[0].worksheets[1].header_row",
        ">= 1",
    ),
    pytest.param(
        'spreadsheet_id = "sheet-1"',
        'spreadsheet_id = "a/b"',
        "companies[0].spreadsheet_id",
        "the id in the spreadsheet's URL",
    ),
    pytest.param(
        'timezone = "Asia/Ho_Chi_Minh"',
        'timezone = "UTC"\n[[companies]]\ncompany_id = 1\nspreadsheet_id = "x"\n'
        '[[companies.worksheets]]\ntitle = "T"\nentity = "events"\nkey = "K"\n'
        'columns = [{ header = "K", source = "event.dedup_key" }]\n',
        "companies[1].company_id",
        "company 1 is already mapped by companies[0]",
    ),
]


@pytest.mark.parametrize(("old", "new", "path", "words"), MORE_MISTAKES)
def test_other_mistakes_name_their_path(tmp_path: Path, old: str, new: str, path: str, words: str) -> None:
    error = mistake(tmp_path, old, new)
    assert error.path == path
    assert words in error.reason


def test_the_default_mapping_is_valid_and_routes_company_1(default_mapping: SheetMapping) -> None:
    router = Router.from_mapping(default_mapping)
    company = router.route(1)
    assert company is not None
    assert [ws.title for ws in company.worksheets] == ["Customers", "Orders", "Events"]
    assert [ws.key_header for ws in company.worksheets] == ["Customer ID", "Order ID", "Event key"]
    assert router.route(2) is None
    assert router.company_ids == frozenset({1})
    assert router.spreadsheets() == {company.spreadsheet_id: [company]}


def settings_file(folder: Path, mapping: str) -> Path:
    return write(folder, "settings.toml", ENDPOINTS + mapping)


def test_settings_name_a_mapping_file_relative_to_themselves(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    write(tmp_path / "conf", "companies.toml", VALID)
    settings = load_settings(settings_file(tmp_path / "conf", '[mapping]\nfile = "companies.toml"\n'))
    mapping = load_mapping(settings)
    assert mapping.file == str(tmp_path / "conf" / "companies.toml")
    assert [c.company_id for c in mapping.companies] == [1]


def test_settings_can_name_the_shipped_example(tmp_path: Path) -> None:
    settings = load_settings(settings_file(tmp_path, f'[mapping]\nfile = "{EXAMPLE_MAPPING}"\n'))
    assert Router.from_mapping(load_mapping(settings)).route(1) is not None


def test_a_mistake_in_a_named_file_names_that_file(tmp_path: Path) -> None:
    write(tmp_path, "companies.toml", VALID.replace('"customer.name"', '"customer.nam"'))
    settings = load_settings(settings_file(tmp_path, '[mapping]\nfile = "companies.toml"\n'))
    with pytest.raises(ConfigError) as caught:
        load_mapping(settings)
    assert caught.value.file == str(tmp_path / "companies.toml")
    assert caught.value.path == "companies[0].worksheets[0].columns[1].source"


def test_a_missing_mapping_file_is_named(tmp_path: Path) -> None:
    settings = load_settings(settings_file(tmp_path, '[mapping]\nfile = "nowhere.toml"\n'))
    with pytest.raises(ConfigError) as caught:
        load_mapping(settings)
    assert (caught.value.path, caught.value.file) == ("mapping.file", settings.source)
    assert "nowhere.toml" in caught.value.reason


def test_inline_mapping_errors_carry_the_settings_path(tmp_path: Path) -> None:
    inline = VALID.replace("[[companies", "[[mapping.companies").replace(
        'timezone = "Asia/Ho_Chi_Minh"', '[mapping]\ntimezone = "Asia/Ho_Chi_Minh"'
    )
    settings = load_settings(settings_file(tmp_path, inline))
    assert load_mapping(settings).companies[0].spreadsheet_id == "sheet-1"

    settings = load_settings(settings_file(tmp_path, inline.replace('"order.id"', '"order.ids"')))
    with pytest.raises(ConfigError) as caught:
        load_mapping(settings)
    assert caught.value.path == "mapping.companies[0].worksheets[1].columns[0].source"
    assert "did you mean 'order.id'?" in caught.value.reason


def test_inline_misspelt_key_fails_when_settings_load(tmp_path: Path) -> None:
    path = settings_file(tmp_path, '[mapping]\nfiel = "x.toml"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert caught.value.path == "mapping"
    assert "unknown field `fiel`" in caught.value.reason


def test_a_file_and_an_inline_mapping_together_are_refused(tmp_path: Path) -> None:
    settings = load_settings(settings_file(tmp_path, '[mapping]\nfile = "m.toml"\ntimezone = "UTC"\n'))
    with pytest.raises(ConfigError, match="names a file, so it may not hold companies or a timezone too"):
        load_mapping(settings)


def test_no_mapping_means_no_routes(tmp_path: Path) -> None:
    mapping = load_mapping(load_settings(settings_file(tmp_path, "")))
    assert mapping.companies == ()
    assert Router.from_mapping(mapping).route(1) is None


def test_every_documented_source_is_in_the_example_comment() -> None:
    comment = EXAMPLE_MAPPING.read_text(encoding="utf-8")
    for line in describe_sources().splitlines():
        if line.startswith("  "):
            assert line.split()[0] in comment
