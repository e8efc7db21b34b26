"""The operator console: a web page and its JSON API, served by `serve` on a listener of its own.

``GET /`` is the page, ``GET /assets/...`` its script and style (shipped in the package: no CDN),
``GET /api/overview`` everything the page shows (see :mod:`connector.console.queries`), and
``POST /api/retry`` queues failed events again. Protections:

* bound to a loopback address by default, and then only ``Host: 127.0.0.1 / localhost / [::1]`` is served,
  so a web page cannot reach it by rebinding a DNS name to 127.0.0.1; bound elsewhere, HTTP basic auth is
  required (the settings refuse to start without it);
* the POST needs a CSRF token (Litestar's double-submit cookie, SameSite=Strict) sent back in a header,
  which another site can neither read nor set;
* the page's Content-Security-Policy allows only its own script, style and origin.
"""

from __future__ import annotations

import contextlib
import secrets
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import msgspec
from litestar import Litestar, MediaType, Request, Response, get, post
from litestar.config.csrf import CSRFConfig
from litestar.datastructures import State
from litestar.enums import ScopeType
from litestar.exceptions import ServiceUnavailableException
from litestar.middleware import DefineMiddleware
from litestar.params import JSONBody
from litestar.response.base import ASGIResponse
from litestar.static_files import create_static_files_router
from litestar.types import ASGIApp, Receive, Scope, Send

from connector.addresses import is_loopback
from connector.config_checks import assignment, credential_pool
from connector.console.page import CONTENT_SECURITY_POLICY, console_page
from connector.console.queries import Overview, Tally, overview, spreadsheet_link
from connector.errors import ConfigError, StoreError
from connector.intake.access import basic_auth_matches
from connector.journal import connect_journal
from connector.mapping_watch import MappingWatcher
from connector.settings import BasicAuth, Settings
from connector.sheets.backend import uses_local_sheets
from connector.sheets.config import GOOGLE_API_ROOT
from connector.sheets.errors import SheetsError
from connector.sheets.pool import CredentialPool
from connector.store import open_work_store
from connector.store.protocols import WorkStore
from connector.store.records import now_ms
from connector.sync.mapping import SheetMapping

__all__ = ["ConsoleData", "create_console_app"]

ASSETS: Final = Path(__file__).parent / "assets"
CSRF_COOKIE: Final = "doopage_console_csrf"
LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "localhost", "::1"})


class RetryRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Which failed events to queue again: one company's, or every one (no company)."""

    company_id: int | None = None


class RetryResult(msgspec.Struct):
    """How many events went back to pending."""

    queued: int


class ConsoleData:
    """The console's view of the store and of this host's journal: read-only queries, and the one
    action (retry)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.watcher = MappingWatcher(settings)
        self._lock = threading.Lock()
        self._store: WorkStore | None = None
        self._journal: sqlite3.Connection | None = None
        self._minutes: dict[int, int] = {}  # events received per minute, for minutes that are over
        self._tally = Tally()  # events per company, counted once
        self._pool: CredentialPool | None = None  # with sheets.credentials, loaded on first use

    def sheets_root(self) -> str:
        """The root of the Sheets API written to (the local server's when no credentials are set)."""
        if uses_local_sheets(self.settings):
            local = self.settings.local_sheets
            host = local.host if is_loopback(local.host) else "127.0.0.1"
            return f"http://{host}:{local.port}"
        return self.settings.sheets.root

    def overview(self) -> Overview:
        """Everything the page shows, now."""
        with self._lock:
            self.watcher.check()
            mapping = self.watcher.mapping
            root = self.sheets_root()
            links = {
                c.spreadsheet_id: spreadsheet_link(root, GOOGLE_API_ROOT, c.spreadsheet_id)
                for c in mapping.companies
            }
            limits = self.settings.sheets.rate_limit
            pooled = max(1, len(self.settings.sheets.credentials))  # each credential has the budget
            store, journal = self._connections()
            return overview(
                store,
                journal,
                mapping,
                now_ms=now_ms(),
                links=links,
                reads_limit=limits.reads_per_minute * pooled,
                writes_limit=limits.writes_per_minute * pooled,
                mapping_error=self.watcher.error,
                seen_minutes=self._minutes,
                tally=self._tally,
                credentials=self._written_as(mapping),
            )

    def _written_as(self, mapping: SheetMapping) -> dict[str, str]:
        """With a pool of credentials (sheets.credentials), which one writes each spreadsheet; empty
        without a pool, or when it cannot be loaded or the mapping pins one it lacks (check-config and
        the worker's log say why)."""
        if not self.settings.sheets.credentials:
            return {}
        try:
            if self._pool is None:
                self._pool = credential_pool(self.settings)  # reads the key files once
            return assignment(self._pool, mapping)
        except (ConfigError, SheetsError):
            return {}

    def retry(self, company_id: int | None) -> int:
        """Queue failed events again (one company's or all); how many."""
        with self._lock:
            store, _ = self._connections()
            return store.requeue("failed", company_id)

    def close(self) -> None:
        """Release the connections."""
        with self._lock:
            if self._store is not None:
                self._store.close()
            if self._journal is not None:
                self._journal.close()
            self._store = self._journal = None

    def _connections(self) -> tuple[WorkStore, sqlite3.Connection]:
        """The store (SQLite or PostgreSQL, as the settings say) and the journal, opened once."""
        if self._store is None:
            self._store = open_work_store(self.settings)
        if self._journal is None:
            self._journal = connect_journal(self.settings.data_dir)
        return self._store, self._journal


class ConsoleGate:
    """Refuses a request unless its Host is a loopback name (when the console listens on loopback only)
    and it carries the console's basic-auth credentials (when they are set; compared in constant time)."""

    def __init__(self, app: ASGIApp, credentials: BasicAuth | None, loopback_only: bool) -> None:
        self.app = app
        self.credentials = credentials
        self.loopback_only = loopback_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        refusal = None
        if (
            self.loopback_only
            and host_name(headers.get(b"host", b"").decode("latin-1")) not in LOOPBACK_HOSTS
        ):
            refusal = ASGIResponse(
                body=b"the console answers only to http://127.0.0.1 or http://localhost",
                status_code=421,
                media_type=MediaType.TEXT,
            )
        elif self.credentials is not None and not basic_auth_matches(
            self.credentials, headers.get(b"authorization", b"").decode("latin-1")
        ):
            refusal = ASGIResponse(
                body=b"the console requires HTTP basic auth",
                status_code=401,
                media_type=MediaType.TEXT,
                headers={"WWW-Authenticate": 'Basic realm="doopage-sheets console", charset="UTF-8"'},
            )
        await (refusal or self.app)(scope, receive, send)


def host_name(host: str) -> str:
    """A Host header without its port (``[::1]:8081`` -> ``::1``)."""
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _data(request: Request[Any, Any, State]) -> ConsoleData:
    data: ConsoleData = request.app.state["console"]
    return data


@get("/", media_type=MediaType.HTML, sync_to_thread=False)
def page(request: Request[Any, Any, State]) -> Response[str]:
    """The console page."""
    headers = {
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }
    return Response(console_page("doopage-sheets console"), headers=headers, media_type=MediaType.HTML)


@get("/api/overview", sync_to_thread=True)
def api_overview(request: Request[Any, Any, State]) -> Response[Overview]:
    """Everything the page shows, as JSON (503 while the store cannot be read)."""
    with store_unavailable():
        return Response(_data(request).overview(), headers={"Cache-Control": "no-store"})


@post("/api/retry", status_code=200, sync_to_thread=True)
def api_retry(request: Request[Any, Any, State], data: JSONBody[RetryRequest]) -> RetryResult:
    """Queue failed events again: the worker writes them with the mapping file as it is now."""
    with store_unavailable():
        return RetryResult(_data(request).retry(data.company_id))


@contextlib.contextmanager
def store_unavailable() -> Iterator[None]:
    """A store that cannot be reached now (a database restarting) answers 503, saying why."""
    try:
        yield
    except StoreError as exc:
        raise ServiceUnavailableException(f"the store cannot be read now: {exc}") from None


def create_console_app(settings: Settings) -> Litestar:
    """The console of these settings (its mapping is checked now: ConfigError if invalid)."""
    data = ConsoleData(settings)
    console = settings.console
    gate = DefineMiddleware(
        ConsoleGate, credentials=console.basic_auth, loopback_only=is_loopback(console.host)
    )

    async def close(app: Litestar) -> None:
        data.close()

    return Litestar(
        route_handlers=[
            page,
            api_overview,
            api_retry,
            create_static_files_router("/assets", directories=[ASSETS], send_as_attachment=False),
        ],
        state=State({"console": data}),
        middleware=[gate],
        csrf_config=CSRFConfig(
            secret=secrets.token_hex(32),
            cookie_name=CSRF_COOKIE,
            cookie_samesite="strict",
            header_name="x-csrftoken",
        ),
        on_shutdown=[close],
        logging_config=None,
        openapi_config=None,
        debug=False,
        request_max_body_size=4096,
    )
