"""A local Google Sheets API v4 server: the endpoints gspread uses, Google's shapes, faults on demand.

Start it with ``doopage-sheets local-sheets --port N [--data FILE]``, or from tests with
:func:`local_sheets_thread` / :func:`local_sheets_process` (in ``connector.localsheets.testing``).
Modules: ``a1`` (range notation), ``model`` (the grid and cell semantics), ``api`` (Google's operations
on the model), ``fieldmask`` (``fields=`` masks), ``faults`` (fault injection, request kinds),
``service`` (state, commit, persistence), ``store`` (the data file), ``server`` (HTTP), ``guard`` (what
requests it accepts), ``asgi`` (types), ``testing``, ``page`` and ``page_routes`` (the read-only viewer at
``/`` and ``/view/{id}``).
"""

from connector.localsheets.faults import FaultSettings, request_kind
from connector.localsheets.model import Formula, SheetsError
from connector.localsheets.server import (
    bind_socket,
    create_app,
    create_litestar,
    make_server,
    server_url,
    url_of,
)
from connector.localsheets.service import LocalSheetsService, SheetSpec, SpreadsheetSpec
from connector.localsheets.store import StoreError

__all__ = [
    "FaultSettings",
    "Formula",
    "LocalSheetsService",
    "SheetSpec",
    "SheetsError",
    "SpreadsheetSpec",
    "StoreError",
    "bind_socket",
    "create_app",
    "create_litestar",
    "make_server",
    "request_kind",
    "server_url",
    "url_of",
]
