"""Which Sheets API the connector writes to.

With Google credentials configured (``sheets.credentials_file``, ``sheets.credentials`` or
``$GOOGLE_APPLICATION_CREDENTIALS``), or with an explicit ``sheets.api_root``, it is that API. With
neither, the connector starts the built-in local Sheets server in its own process (``[local_sheets]``:
127.0.0.1:8765 by default, its data kept in the data directory) and writes there, so a first run works on
any machine; every spreadsheet the mapping names is created there. Open http://127.0.0.1:8765/ in a
browser to look at the sheets.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import quote

import httpx
import msgspec

from connector.errors import ConfigError
from connector.settings import Settings
from connector.sheets.config import CREDENTIALS_ENV, GOOGLE_API_ROOT
from connector.sync.mapping import load_mapping
from connector.threaded_server import serving

__all__ = ["sheets_backend", "uses_local_sheets"]

PROBE_TIMEOUT_S = 5.0

log = logging.getLogger(__name__)


def uses_local_sheets(settings: Settings, environ: Mapping[str, str] | None = None) -> bool:
    """True when no Google credentials and no other API root are configured."""
    env = os.environ if environ is None else environ
    sheets = settings.sheets
    return (
        sheets.root == GOOGLE_API_ROOT.rstrip("/")
        and not sheets.credentials_file
        and not sheets.credentials
        and not env.get(CREDENTIALS_ENV)
    )


@contextlib.contextmanager
def sheets_backend(settings: Settings, environ: Mapping[str, str] | None = None) -> Iterator[Settings]:
    """The settings to run with: as given, or pointed at a local Sheets server started for the block."""
    if not uses_local_sheets(settings, environ):
        yield settings
        return
    from connector.localsheets import (
        LocalSheetsService,
        SpreadsheetSpec,
        bind_socket,
        make_server,
        server_url,
    )
    from connector.localsheets.guard import ADMIN_SECRET_ENV, host_names

    env = os.environ if environ is None else environ
    local = settings.local_sheets
    wanted = {
        company.spreadsheet_id: company.name or f"DooPage company {company.company_id}"
        for company in load_mapping(settings).companies
    }
    try:
        sock = bind_socket(local.host, local.port)
    except OSError as exc:
        # Most often `serve` is running and holds the port (and the data file): its server is the one
        # to write to.
        secret = env.get(ADMIN_SECRET_ENV) or _read_secret(settings.data_dir)
        running = _running_local_server(local.host, local.port, wanted, secret)
        if running is None:
            raise ConfigError(
                settings.source,
                "local_sheets.port",
                f"cannot listen on {local.host}:{local.port} ({exc.strerror})",
            ) from None
        log.info("using the local Sheets server already running at %s (started by another command)", running)
        yield msgspec.structs.replace(
            settings, sheets=msgspec.structs.replace(settings.sheets, api_root=running)
        )
        return
    # Its admin secret is made at start-up, or given (to tools that drive it) in the environment; other
    # commands on this data directory find it in a file only this user can read.
    service = LocalSheetsService(
        data_path=settings.data_dir / local.data_file, admin_secret=env.get(ADMIN_SECRET_ENV) or None
    )
    _write_secret(settings.data_dir, service.admin_secret)
    for spreadsheet_id, title in wanted.items():
        if spreadsheet_id not in service.spreadsheets:
            service.put_spreadsheet(spreadsheet_id, SpreadsheetSpec(title=title))
    url = server_url(sock)
    try:
        hosts = host_names(local.host, local.allowed_hosts)
        server = make_server(service, own_logging=False, hosts=hosts)
        with serving(server, sock, name="local Sheets server"):
            log.warning(
                "no Google credentials configured: writing to the built-in local Sheets server at %s "
                "(open it in a browser); set sheets.credentials_file to write to Google Sheets",
                url,
            )
            sheets = msgspec.structs.replace(settings.sheets, api_root=url)
            yield msgspec.structs.replace(settings, sheets=sheets)
        service.close()  # the server has stopped: its journal is compacted into the data file
    finally:
        sock.close()


def _secret_path(data_dir: Path) -> Path:
    return data_dir / "local-sheets.secret"


def _write_secret(data_dir: Path, secret: str) -> None:
    """Keep the local server's admin secret where this user's other commands find it (mode 0600)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = _secret_path(data_dir)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secret)


def _read_secret(data_dir: Path) -> str:
    try:
        return _secret_path(data_dir).read_text().strip()
    except OSError:
        return ""


def _running_local_server(host: str, port: int, wanted: Mapping[str, str], secret: str) -> str | None:
    """The URL of a local Sheets server answering at host:port, with the ``wanted`` spreadsheets (id ->
    title) created there if missing; None when what listens there is not one (or not ours: its admin
    secret is not the one in the data directory)."""
    from connector.localsheets import url_of
    from connector.localsheets.guard import ADMIN_SECRET_HEADER

    url = url_of(host, port)
    try:
        with httpx.Client(
            base_url=url, timeout=PROBE_TIMEOUT_S, headers={ADMIN_SECRET_HEADER: secret}
        ) as http:
            listed = http.get("/_admin/spreadsheets")
            if listed.status_code != 200:
                return None
            present = {entry["spreadsheetId"] for entry in listed.json()["spreadsheets"]}
            for spreadsheet_id, title in wanted.items():
                if spreadsheet_id not in present:
                    path = f"/_admin/spreadsheets/{quote(spreadsheet_id, safe='')}"
                    http.put(path, json={"title": title}).raise_for_status()
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return None
    return url
