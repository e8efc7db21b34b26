"""Which Sheets API the connector writes to.

With Google credentials configured (``sheets.credentials_file`` or ``$GOOGLE_APPLICATION_CREDENTIALS``),
or with an explicit ``sheets.api_root``, it is that API. With neither, the connector starts the built-in
local Sheets server in its own process (``[local_sheets]``: 127.0.0.1:8765 by default, its data kept in
the data directory) and writes there, so a first run works on any machine; every spreadsheet the mapping
names is created there. Open http://127.0.0.1:8765/ in a browser to look at the sheets.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
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
        running = _running_local_server(local.host, local.port, wanted)
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
    service = LocalSheetsService(data_path=settings.data_dir / local.data_file)
    for spreadsheet_id, title in wanted.items():
        if spreadsheet_id not in service.spreadsheets:
            service.put_spreadsheet(spreadsheet_id, SpreadsheetSpec(title=title))
    url = server_url(sock)
    try:
        with serving(make_server(service, own_logging=False), sock, name="local Sheets server"):
            log.warning(
                "no Google credentials configured: writing to the built-in local Sheets server at %s "
                "(open it in a browser); set sheets.credentials_file to write to Google Sheets",
                url,
            )
            sheets = msgspec.structs.replace(settings.sheets, api_root=url)
            yield msgspec.structs.replace(settings, sheets=sheets)
    finally:
        sock.close()


def _running_local_server(host: str, port: int, wanted: Mapping[str, str]) -> str | None:
    """The URL of a local Sheets server answering at host:port, with the ``wanted`` spreadsheets (id ->
    title) created there if missing; None when what listens there is not one."""
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}"
    try:
        with httpx.Client(base_url=url, timeout=PROBE_TIMEOUT_S) as http:
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
