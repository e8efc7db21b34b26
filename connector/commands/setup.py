"""A first hour without editing TOML: ``doopage-sheets init`` and ``doopage-sheets mapping suggest``.

``init`` asks for (or takes as options) the spreadsheet's URL, the DooPage company id and the
service-account key, reads the spreadsheet's header rows when it has some and proposes a source for each
header it recognises (:mod:`connector.mapping_suggest`), writes the settings and the mapping, and prints
what to paste into DooPage and whom to share the spreadsheet with. ``mapping suggest`` does the header
part alone, printing a mapping for an existing settings file's Sheets access.
"""

from __future__ import annotations

import json
import secrets
import sys
from pathlib import Path

import click

from connector.commands.common import config_option, exit_on_config_error, load_or_exit, setup_logging
from connector.errors import ConfigError
from connector.mapping_suggest import (
    DEFAULT_WORKSHEETS,
    CompanyPlan,
    ProposedWorksheet,
    mapping_toml,
    spreadsheet_id_from,
    suggest_worksheet,
)
from connector.settings import Settings, load_settings
from connector.sheets.backend import sheets_backend

__all__ = ["init", "mapping"]

DEFAULT_TIMEZONE = "Asia/Ho_Chi_Minh"


class HeaderReadError(Exception):
    """The spreadsheet's header rows could not be read (not shared, no such spreadsheet, ...)."""


def read_header_rows(settings: Settings, spreadsheet_id: str) -> list[tuple[str, list[str]]]:
    """Each worksheet's title and first row, in tab order, read with the settings' Sheets access."""
    import gspread
    import requests

    from connector.sheets import connect
    from connector.sheets.retry import classify_failure

    connection = connect(settings.sheets, source=settings.source)
    try:
        spreadsheet = connection.client.open_by_key(spreadsheet_id)
        titles = [worksheet.title for worksheet in spreadsheet.worksheets()]
        if not titles:
            return []
        ranges = [f"'{title.replace(chr(39), chr(39) * 2)}'!1:1" for title in titles]
        answer = spreadsheet.values_batch_get(ranges)
    except (gspread.exceptions.APIError, requests.RequestException) as exc:
        raise HeaderReadError(str(classify_failure(spreadsheet_id, exc))) from None
    rows = []
    for title, value_range in zip(titles, answer.get("valueRanges", []), strict=False):
        values = value_range.get("values") or [[]]
        rows.append((title, [str(cell) for cell in values[0]]))
    return rows


def propose(rows: list[tuple[str, list[str]]]) -> tuple[list[ProposedWorksheet], list[str]]:
    """The worksheets recognised from header rows, and what was left out (for people to read)."""
    proposals, notes = [], []
    for title, headers in rows:
        if not any(header.strip() for header in headers):
            continue
        proposal = suggest_worksheet(title, headers)
        if proposal is None:
            notes.append(f"worksheet {title!r} left out: no customer, order or event key among {headers}")
        else:
            proposals.append(proposal)
    return proposals, notes


def print_proposal(worksheets: list[ProposedWorksheet], notes: list[str]) -> None:
    """What was recognised, on standard error (standard output may be the mapping itself)."""
    for sheet in worksheets:
        click.echo(f"worksheet {sheet.title!r}: {sheet.entity}, one row per {sheet.key!r}", err=True)
        for column in sheet.columns:
            click.echo(f"  {column.header!r:<28} <- {column.source}", err=True)
        if sheet.unrecognised:
            click.echo(f"  not recognised (left alone): {', '.join(sheet.unrecognised)}", err=True)
    for note in notes:
        click.echo(note, err=True)


@click.group()
def mapping() -> None:
    """Column mappings: propose one from a spreadsheet's header rows."""


@mapping.command("suggest")
@config_option
@click.option("--spreadsheet", "spreadsheet", required=True, help="The spreadsheet's URL or id.")
@click.option("--company", "company_id", type=int, default=1, show_default=True, help="DooPage company id.")
@click.option("--timezone", default=DEFAULT_TIMEZONE, show_default=True, help="Timezone of datetime columns.")
def suggest(config_path: Path, spreadsheet: str, company_id: int, timezone: str) -> None:
    """Read a spreadsheet's header rows and print a mapping proposing a source for each header.

    Recognises English and Vietnamese headers ("Customer ID", "Tên khách hàng", "Mã đơn", ...); the
    proposal is printed on standard output (redirect it into a file), what was recognised on standard
    error. Exits 1 when no worksheet has a header this can map.
    """
    settings = load_or_exit(config_path)
    setup_logging(settings, "warning")
    try:
        spreadsheet_id = spreadsheet_id_from(spreadsheet)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--spreadsheet") from None
    with exit_on_config_error(), sheets_backend(settings) as backend:
        try:
            rows = read_header_rows(backend, spreadsheet_id)
        except HeaderReadError as exc:
            click.echo(f"cannot read the spreadsheet's headers: {exc}", err=True)
            sys.exit(1)
    worksheets, notes = propose(rows)
    print_proposal(worksheets, notes)
    if not worksheets:
        click.echo("no worksheet has headers to map; `doopage-sheets init` writes the default ones", err=True)
        sys.exit(1)
    with exit_on_config_error():
        text, _ = mapping_toml(
            [CompanyPlan(company_id, spreadsheet_id, tuple(worksheets))], timezone, "mapping (proposed)"
        )
    click.echo(text, nl=False)


def _settings_text(
    company_id: int, credentials: Path | None, token: str, key: str, port: int, local_port: int
) -> str:
    lines = [
        "# doopage-sheets settings, written by `doopage-sheets init`. All keys: see the README.",
        "[server]",
        'host = "127.0.0.1"   # put it behind an HTTPS reverse proxy for DooPage to reach it',
        f"port = {port}",
        'data_dir = "data"',
        "",
        "[[endpoints]]",
        'name = "main"',
        f'token = "{token}"               # part of the webhook URL: keep it secret',
        f'validation_key = "{key}"   # typed into DooPage as the Validation key',
        f"companies = [{company_id}]",
        "",
        "[mapping]",
        'file = "mapping.toml"',
        "",
        "[sheets]",
    ]
    if credentials is None:
        lines.append("# No credentials: writes go to the built-in local Sheets server until you set one:")
        lines.append('# credentials_file = "service-account.json"')
        lines += [
            "",
            "[local_sheets]",
            f"port = {local_port}   # open http://127.0.0.1:{local_port}/ to see the sheets",
        ]
    else:
        lines.append(f"credentials_file = {json.dumps(str(credentials))}")
    lines += ["", "[console]", 'host = "127.0.0.1"', "port = 8081", ""]
    return "\n".join(lines)


def _service_account_email(path: Path) -> str:
    """The key's client_email, or a ConfigError naming the file."""
    try:
        email = json.loads(path.read_text(encoding="utf-8"))["client_email"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            str(path), "client_email", f"not a service-account JSON key ({exc.__class__.__name__})"
        ) from None
    return str(email)


@click.command()
@click.option(
    "--dir",
    "folder",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("doopage"),
    show_default=True,
    help="Folder to write settings.toml and mapping.toml into.",
)
@click.option("--spreadsheet", default=None, help="The Google spreadsheet's URL (or id).")
@click.option("--company", "company_id", type=int, default=None, help="Your DooPage company id.")
@click.option(
    "--credentials",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The service account's JSON key; leave empty to try with the built-in local Sheets server.",
)
@click.option("--timezone", default=DEFAULT_TIMEZONE, show_default=True, help="Timezone of datetime columns.")
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True, help="Service port.")
@click.option(
    "--local-sheets-port",
    type=click.IntRange(1, 65535),
    default=8765,
    show_default=True,
    help="Port of the built-in local Sheets server (used without a key).",
)
@click.option("--force", is_flag=True, help="Overwrite settings.toml and mapping.toml if they exist.")
def init(
    folder: Path,
    spreadsheet: str | None,
    company_id: int | None,
    credentials: Path | None,
    timezone: str,
    port: int,
    local_sheets_port: int,
    force: bool,
) -> None:
    """Set up a connector: settings and mapping written for you, then what to paste into DooPage.

    Asks for what the options do not give. With a service-account key it reads the spreadsheet's header
    rows (when it has some) and maps each header it recognises (English or Vietnamese); otherwise it
    proposes Customers, Orders and Events worksheets, created on the first write.
    """
    settings_path, mapping_path = folder / "settings.toml", folder / "mapping.toml"
    existing = [str(p) for p in (settings_path, mapping_path) if p.exists()]
    if existing and not force:
        click.echo(f"init: {', '.join(existing)} exist already; use --force to overwrite", err=True)
        sys.exit(2)
    if spreadsheet is None:
        spreadsheet = click.prompt("Spreadsheet URL (https://docs.google.com/spreadsheets/d/...)")
    try:
        spreadsheet_id = spreadsheet_id_from(spreadsheet)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--spreadsheet") from None
    if company_id is None:
        company_id = click.prompt("DooPage company id", type=int)
    if credentials is None:
        answer = click.prompt(
            "Service-account JSON key (empty: try with the built-in local Sheets server)",
            default="",
            show_default=False,
        )
        credentials = Path(answer).expanduser() if answer.strip() else None
    email = None
    if credentials is not None:
        credentials = credentials.resolve()
        with exit_on_config_error():
            email = _service_account_email(credentials)

    folder.mkdir(parents=True, exist_ok=True)
    token, key = secrets.token_urlsafe(24), secrets.token_urlsafe(12)
    settings_text = _settings_text(company_id, credentials, token, key, port, local_sheets_port)
    settings_path.write_text(settings_text, encoding="utf-8")
    worksheets, notes = _worksheets_of(settings_path, spreadsheet_id, company_id, timezone, mapping_path)
    with exit_on_config_error():
        text, _ = mapping_toml(
            [CompanyPlan(company_id, spreadsheet_id, tuple(worksheets), notes=notes)],
            timezone,
            str(mapping_path),
        )
    mapping_path.write_text(text, encoding="utf-8")
    with exit_on_config_error():
        load_settings(settings_path)  # what serve will read: checked now

    click.echo(f"\nWrote {settings_path} and {mapping_path}.\n")
    click.echo("In DooPage (Integrations → Webhook):")
    click.echo(f"  URL:            https://<your host>/webhooks/doopage/{token}")
    click.echo(f"                  (this machine: http://127.0.0.1:{port}/webhooks/doopage/{token})")
    click.echo(f"  Validation key: {key}")
    if email is not None:
        click.echo(f"\nShare the spreadsheet with {email} as Editor.")
    else:
        click.echo(
            "\nNo Google key given: the rows go to the built-in local Sheets server "
            f"(http://127.0.0.1:{local_sheets_port}/); add sheets.credentials_file when you have one."
        )
    click.echo("\nThen:")
    click.echo(f"  doopage-sheets check-config --online --config {settings_path}")
    click.echo(f"  doopage-sheets serve --config {settings_path}     # console: http://127.0.0.1:8081/")


def _worksheets_of(
    settings_path: Path, spreadsheet_id: str, company_id: int, timezone: str, mapping_path: Path
) -> tuple[list[ProposedWorksheet], list[str]]:
    """The worksheets recognised in the spreadsheet's header rows, else the default ones."""
    text, _ = mapping_toml([CompanyPlan(company_id, spreadsheet_id, DEFAULT_WORKSHEETS)], timezone, "default")
    mapping_path.write_text(text, encoding="utf-8")
    with exit_on_config_error():
        settings = load_settings(settings_path)
    try:
        with sheets_backend(settings) as backend:
            rows = read_header_rows(backend, spreadsheet_id)
    except (HeaderReadError, ConfigError) as exc:
        click.echo(
            f"could not read the spreadsheet's headers ({exc}); proposing the default worksheets", err=True
        )
        return list(DEFAULT_WORKSHEETS), ["the spreadsheet could not be read: default worksheets"]
    worksheets, notes = propose(rows)
    print_proposal(worksheets, notes)
    if not worksheets:
        click.echo(
            "the spreadsheet has no headers to map yet: proposing Customers, Orders and Events", err=True
        )
        return list(DEFAULT_WORKSHEETS), notes
    return worksheets, notes
