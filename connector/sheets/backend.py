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

import msgspec

from connector.errors import ConfigError
from connector.settings import Settings
from connector.sheets.config import CREDENTIALS_ENV, GOOGLE_API_ROOT
from connector.sync.mapping import load_mapping
from connector.threaded_server import serving

__all__ = ["sheets_backend", "uses_local_sheets"]

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
    service = LocalSheetsService(data_path=settings.data_dir / local.data_file)
    for company in load_mapping(settings).companies:
        if company.spreadsheet_id not in service.spreadsheets:
            title = company.name or f"DooPage company {company.company_id}"
            service.put_spreadsheet(company.spreadsheet_id, SpreadsheetSpec(title=title))
    try:
        sock = bind_socket(local.host, local.port)
    except OSError as exc:
        raise ConfigError(
            settings.source,
            "local_sheets.port",
            f"cannot listen on {local.host}:{local.port} ({exc.strerror})",
        ) from None
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
