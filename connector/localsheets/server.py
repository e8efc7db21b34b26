"""The local Sheets API v4 server: a Litestar app for the API and admin routes, behind a fault injector.

API routes mirror ``https://sheets.googleapis.com/v4/spreadsheets...`` (and the Drive ``files.create``
call gspread's ``Client.create`` makes); admin routes live under ``/_admin`` and are neither counted nor
faulted. ``create_app`` returns a plain ASGI callable: the fault injector wraps Litestar because a dropped
connection has to close the socket before any response byte is written, which no response object can do.
In front of both, the request guard (``guard``) refuses other Host names, other origins, non-JSON write
bodies and admin calls without the server's secret.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any, Final, cast

import msgspec
import uvicorn
from litestar import Litestar, MediaType, Request, Response, delete, get, post, put, route
from litestar.di import NamedDependency, Provide
from litestar.exceptions import HTTPException
from litestar.params import FromPath
from uvicorn.config import LOGGING_CONFIG

from . import api
from .asgi import ASGIApp, Message, Receive, Scope, Send
from .faults import Fault, FaultSettings, error_body, request_kind
from .fieldmask import ROW_PATH, FieldMaskError, Mask, apply_mask, parse_mask, split_at
from .guard import LOOPBACK_NAMES, TOKEN_PATH, RequestGuard, send_error
from .model import SheetsError
from .page_routes import PAGE_ROUTES
from .quota import QuotaSettings, quota_body
from .service import LocalSheetsService, ProtectSpec, SpreadsheetSpec
from .token import AuthSettings, caller_of, token_answer

API_PREFIXES: Final = ("/v4/", "/drive/v3/")
# Big enough for an admin upload of a 100,000-row sheet; the writer itself keeps requests near 2 MB.
MAX_BODY_BYTES: Final = 256 * 1024 * 1024

Service = NamedDependency[LocalSheetsService]

_JSON_DECODER: Final = msgspec.json.Decoder()
_SPEC_DECODER: Final = msgspec.json.Decoder(SpreadsheetSpec)
_FAULTS_DECODER: Final = msgspec.json.Decoder(FaultSettings)
_QUOTA_DECODER: Final = msgspec.json.Decoder(QuotaSettings)
_AUTH_DECODER: Final = msgspec.json.Decoder(AuthSettings)
_PROTECT_DECODER: Final = msgspec.json.Decoder(ProtectSpec)


class StrictSetting(msgspec.Struct, forbid_unknown_fields=True):
    """The body of ``PUT /_admin/strict``."""

    strict: bool


_STRICT_DECODER: Final = msgspec.json.Decoder(StrictSetting)


log = logging.getLogger(__name__)


def _json(content: Any, status: int = 200) -> Response[Any]:
    return Response(content=content, status_code=status, media_type=MediaType.JSON)


async def _body(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """The request's JSON object (an empty body is ``{}``)."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        decoded = _JSON_DECODER.decode(raw)
    except msgspec.DecodeError as exc:
        raise SheetsError(400, f"Invalid JSON payload received. {exc}") from None
    if not isinstance(decoded, dict):
        raise SheetsError(400, "Invalid JSON payload received. Expected an object.")
    return decoded


def _params(request: Request[Any, Any, Any]) -> dict[str, Any]:
    return {key: request.query_params.get(key) for key in request.query_params}


def _mask(request: Request[Any, Any, Any]) -> Mask | None:
    """The request's ``fields`` mask (None: every field)."""
    fields = request.query_params.get("fields")
    if not fields:
        return None
    try:
        return parse_mask(fields)
    except FieldMaskError:
        raise SheetsError(400, f"Request contains an invalid argument: fields={fields!r}") from None


def _masked(request: Request[Any, Any, Any], content: dict[str, Any]) -> dict[str, Any]:
    mask = _mask(request)
    return content if mask is None else dict(apply_mask(content, mask))


# ---------------------------------------------------------------- Sheets API routes


@post("/v4/spreadsheets", status_code=200, operation_id="spreadsheets.create")
async def create_spreadsheet(request: Request[Any, Any, Any], service: Service) -> Response[Any]:
    """Create a spreadsheet (``spreadsheets.create``)."""
    spreadsheet = service.create(await _body(request))
    return _json(_masked(request, api.spreadsheet_json(spreadsheet)))


@get("/v4/spreadsheets/{target:str}", operation_id="spreadsheets.get")
async def get_spreadsheet(
    target: FromPath[str], request: Request[Any, Any, Any], service: Service
) -> Response[Any]:
    """Spreadsheet metadata, with grid data when ``includeGridData=true`` (``spreadsheets.get``)."""
    spreadsheet = service.get(target)
    include = (request.query_params.get("includeGridData") or "").lower() == "true"
    ranges = request.query_params.getall("ranges", [])
    # The rows are built with only the fields asked for; the mask is applied to the rest.
    mask, row_mask = split_at(_mask(request), ROW_PATH)
    content = api.spreadsheet_json(spreadsheet, include, ranges, service.caller, row_mask)
    return _json(content if mask is None else dict(apply_mask(content, mask)))


@post("/v4/spreadsheets/{target:str}", status_code=200, operation_id="spreadsheets.batchUpdate")
async def batch_update(
    target: FromPath[str], request: Request[Any, Any, Any], service: Service
) -> Response[Any]:
    """Apply structural and cell requests atomically (``spreadsheets.batchUpdate``)."""
    spreadsheet_id, _, method = target.rpartition(":")
    if method != "batchUpdate" or not spreadsheet_id:
        raise SheetsError(404, f"Method not found: {target}")
    body = await _body(request)
    return _json(service.mutate(spreadsheet_id, lambda s: api.batch_update(s, body, service.rng)))


@get("/v4/spreadsheets/{spreadsheet_id:str}/values:batchGet", operation_id="values.batchGet")
async def values_batch_get(
    spreadsheet_id: FromPath[str], request: Request[Any, Any, Any], service: Service
) -> Response[Any]:
    """Read several ranges (``spreadsheets.values.batchGet``)."""
    spreadsheet = service.get(spreadsheet_id)
    params = request.query_params
    return _json(
        api.batch_get(
            spreadsheet,
            params.getall("ranges", []),
            api.dimension(params.get("majorDimension")),
            api.render_option(params.get("valueRenderOption")),
        )
    )


@post(
    "/v4/spreadsheets/{spreadsheet_id:str}/values:batchUpdate",
    status_code=200,
    operation_id="values.batchUpdate",
)
async def values_batch_update(
    spreadsheet_id: FromPath[str], request: Request[Any, Any, Any], service: Service
) -> Response[Any]:
    """Write several ranges atomically (``spreadsheets.values.batchUpdate``)."""
    body = await _body(request)
    return _json(service.mutate(spreadsheet_id, lambda s: api.batch_update_values(s, body)))


@post(
    "/v4/spreadsheets/{spreadsheet_id:str}/values:batchClear",
    status_code=200,
    operation_id="values.batchClear",
)
async def values_batch_clear(
    spreadsheet_id: FromPath[str], request: Request[Any, Any, Any], service: Service
) -> Response[Any]:
    """Clear several ranges (``spreadsheets.values.batchClear``)."""
    body = await _body(request)
    return _json(service.mutate(spreadsheet_id, lambda s: api.batch_clear(s, body)))


@route(
    "/v4/spreadsheets/{spreadsheet_id:str}/values/{target:path}",
    http_method=["GET", "PUT", "POST"],
    status_code=200,
    operation_id="values",
)
async def values(
    spreadsheet_id: FromPath[str], target: FromPath[str], request: Request[Any, Any, Any], service: Service
) -> Response[Any]:
    """``values.get`` (GET), ``values.update`` (PUT), ``values.append`` / ``values.clear`` (POST ``:verb``)."""
    text = target.lstrip("/")
    params = _params(request)
    if request.method == "GET":
        spreadsheet = service.get(spreadsheet_id)
        return _json(
            api.value_range(
                spreadsheet,
                text,
                api.dimension(params.get("majorDimension")),
                api.render_option(params.get("valueRenderOption")),
            )
        )
    body = await _body(request)
    if request.method == "PUT":
        return _json(service.mutate(spreadsheet_id, lambda s: api.update_values(s, text, body, params)))
    range_text, _, verb = text.rpartition(":")
    if verb == "append" and range_text:
        return _json(service.mutate(spreadsheet_id, lambda s: api.append_values(s, range_text, body, params)))
    if verb == "clear" and range_text:
        return _json(service.mutate(spreadsheet_id, lambda s: api.clear_values(s, range_text)))
    raise SheetsError(404, f"Method not found: POST values/{text}")


@post("/drive/v3/files", status_code=200, operation_id="drive.files.create")
async def drive_create(request: Request[Any, Any, Any], service: Service) -> Response[Any]:
    """The Drive call behind gspread's ``Client.create``: a new spreadsheet named ``name``."""
    body = await _body(request)
    mime = body.get("mimeType", "application/vnd.google-apps.spreadsheet")
    if mime != "application/vnd.google-apps.spreadsheet":
        raise SheetsError(400, f"Only spreadsheets can be created here, not {mime!r}.")
    spreadsheet = service.create({"properties": {"title": body.get("name") or "Untitled spreadsheet"}})
    return _json(
        {"kind": "drive#file", "id": spreadsheet.spreadsheet_id, "name": spreadsheet.title, "mimeType": mime}
    )


@post(TOKEN_PATH, status_code=200, operation_id="oauth2.token")
async def oauth_token(request: Request[Any, Any, Any], service: Service) -> Response[Any]:
    """Google's OAuth 2.0 token endpoint for service accounts (see :mod:`connector.localsheets.token`)."""
    status, content = token_answer(await request.body(), service.auth)
    return _json(content, status)


# ---------------------------------------------------------------- admin routes


def _decode_admin(decoder: msgspec.json.Decoder[Any], raw: bytes, what: str) -> Any:
    try:
        return decoder.decode(raw or b"{}")
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
        raise SheetsError(400, f"Invalid {what}: {exc}") from None


@get("/_admin/strict", operation_id="admin.strict")
async def admin_get_strict(service: Service) -> Response[Any]:
    """Whether strict mode (Google's protection and cell-size checks) is on."""
    return _json({"strict": service.strict})


@put("/_admin/strict", operation_id="admin.setStrict")
async def admin_set_strict(request: Request[Any, Any, Any], service: Service) -> Response[Any]:
    """Turn strict mode on or off."""
    setting = _decode_admin(_STRICT_DECODER, await request.body(), "strict setting")
    service.strict = setting.strict
    return _json({"strict": service.strict})


@put("/_admin/quota", operation_id="admin.setQuota")
async def admin_set_quota(request: Request[Any, Any, Any], service: Service) -> Response[Any]:
    """Replace the per-window request quotas (fields left out: unlimited, 60-second windows)."""
    settings = _decode_admin(_QUOTA_DECODER, await request.body(), "quota settings")
    service.quota.configure(settings)
    return _json(msgspec.to_builtins(settings))


@get("/_admin/quota", operation_id="admin.quota")
async def admin_get_quota(service: Service) -> Response[Any]:
    """The quotas in force and the requests refused over them, by class and by caller."""
    quota = service.quota
    return _json(
        {
            **msgspec.to_builtins(quota.settings),
            "refused": dict(quota.refused),
            "refused_by_caller": {caller: dict(by) for caller, by in quota.refused_by_caller.items()},
        }
    )


@put("/_admin/auth", operation_id="admin.setAuth")
async def admin_set_auth(request: Request[Any, Any, Any], service: Service) -> Response[Any]:
    """Replace the token endpoint's knobs (revoked key ids, clock offset)."""
    service.auth = _decode_admin(_AUTH_DECODER, await request.body(), "auth settings")
    return _json(msgspec.to_builtins(service.auth))


@post(
    "/_admin/spreadsheets/{spreadsheet_id:str}/protections",
    status_code=200,
    operation_id="admin.protect",
)
async def admin_protect(
    spreadsheet_id: FromPath[str], request: Request[Any, Any, Any], service: Service
) -> Response[Any]:
    """Protect a range as the owner (enforced against API callers that are not its editors, in strict mode)."""
    spec = _decode_admin(_PROTECT_DECODER, await request.body(), "protected range")
    protection = service.protect(spreadsheet_id, spec)
    return _json({"protectedRangeId": protection.protected_range_id})


@delete(
    "/_admin/spreadsheets/{spreadsheet_id:str}/protections/{protected_range_id:int}",
    status_code=200,
    operation_id="admin.unprotect",
)
async def admin_unprotect(
    spreadsheet_id: FromPath[str], protected_range_id: FromPath[int], service: Service
) -> Response[Any]:
    """Remove a protected range."""
    service.unprotect(spreadsheet_id, protected_range_id)
    return _json({})


@get("/_admin/counts", operation_id="admin.counts")
async def admin_counts(service: Service) -> Response[Any]:
    """API requests received, by kind, with injected faults by outcome."""
    return _json(
        {
            "counts": dict(service.counts),
            "total": sum(service.counts.values()),
            "faults": dict(service.faults.injected),
        }
    )


@post("/_admin/counts/reset", status_code=200, operation_id="admin.resetCounts")
async def admin_reset_counts(service: Service) -> Response[Any]:
    """Zero the request and fault counters."""
    service.counts.clear()
    service.faults.injected.clear()
    return _json({"counts": {}, "total": 0, "faults": {}})


@get("/_admin/faults", operation_id="admin.faults")
async def admin_get_faults(service: Service) -> Response[Any]:
    """The fault settings in force, with the script steps still to come."""
    settings = msgspec.to_builtins(service.faults.settings)
    settings["script"] = list(service.faults.script)
    return _json(settings)


@put("/_admin/faults", operation_id="admin.setFaults")
async def admin_set_faults(request: Request[Any, Any, Any], service: Service) -> Response[Any]:
    """Replace the fault settings (any field left out takes its default: no fault)."""
    raw = await request.body()
    try:
        settings = _FAULTS_DECODER.decode(raw or b"{}")
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
        raise SheetsError(400, f"Invalid fault settings: {exc}") from None
    service.set_faults(settings)
    return _json(msgspec.to_builtins(settings))


@delete("/_admin/faults", status_code=200, operation_id="admin.clearFaults")
async def admin_clear_faults(service: Service) -> Response[Any]:
    """Turn every fault off."""
    service.set_faults(FaultSettings())
    return _json(msgspec.to_builtins(FaultSettings()))


@post("/_admin/reset", status_code=200, operation_id="admin.reset")
async def admin_reset(service: Service) -> Response[Any]:
    """Forget every spreadsheet, count and fault setting."""
    service.reset()
    return _json({})


@get("/_admin/spreadsheets", operation_id="admin.listSpreadsheets")
async def admin_list(service: Service) -> Response[Any]:
    """Every spreadsheet with its sheets' sizes and formula counts."""
    return _json({"spreadsheets": [service.stats(key) for key in service.spreadsheets]})


@put("/_admin/spreadsheets/{spreadsheet_id:str}", operation_id="admin.putSpreadsheet")
async def admin_put_spreadsheet(
    spreadsheet_id: FromPath[str], request: Request[Any, Any, Any], service: Service
) -> Response[Any]:
    """Create or replace a spreadsheet with this id, its sheets and their starting values."""
    raw = await request.body()
    try:
        spec = _SPEC_DECODER.decode(raw or b"{}")
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise SheetsError(400, f"Invalid spreadsheet spec: {exc}") from None
    spreadsheet = service.put_spreadsheet(spreadsheet_id, spec)
    return _json(api.spreadsheet_json(spreadsheet))


@delete("/_admin/spreadsheets/{spreadsheet_id:str}", status_code=200, operation_id="admin.deleteSpreadsheet")
async def admin_delete_spreadsheet(spreadsheet_id: FromPath[str], service: Service) -> Response[Any]:
    """Forget one spreadsheet."""
    service.delete_spreadsheet(spreadsheet_id)
    return _json({})


@get("/_admin/spreadsheets/{spreadsheet_id:str}/stats", operation_id="admin.stats")
async def admin_stats(spreadsheet_id: FromPath[str], service: Service) -> Response[Any]:
    """Formula-cell counts and sizes of one spreadsheet."""
    return _json(service.stats(spreadsheet_id))


@get("/_admin/spreadsheets/{spreadsheet_id:str}/sheets/{title:str}", operation_id="admin.sheet")
async def admin_sheet(spreadsheet_id: FromPath[str], title: FromPath[str], service: Service) -> Response[Any]:
    """Every value of one sheet, unformatted, formulas as text."""
    return _json(service.sheet_dump(spreadsheet_id, title))


# ---------------------------------------------------------------- errors


def _sheets_error(_: Request[Any, Any, Any], exc: SheetsError) -> Response[Any]:
    return _json(exc.body(), exc.code)


def _http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    return _json(SheetsError(exc.status_code, str(exc.detail)).body(), exc.status_code)


def _internal_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.error("local Sheets server error on %s %s", request.method, request.url.path, exc_info=exc)
    return _json(SheetsError(500, f"Internal error encountered: {type(exc).__name__}: {exc}").body(), 500)


_ROUTES: Final = [
    create_spreadsheet,
    get_spreadsheet,
    batch_update,
    values_batch_get,
    values_batch_update,
    values_batch_clear,
    values,
    drive_create,
    oauth_token,
    admin_get_strict,
    admin_set_strict,
    admin_set_quota,
    admin_get_quota,
    admin_set_auth,
    admin_protect,
    admin_unprotect,
    admin_counts,
    admin_reset_counts,
    admin_get_faults,
    admin_set_faults,
    admin_clear_faults,
    admin_reset,
    admin_list,
    admin_put_spreadsheet,
    admin_delete_spreadsheet,
    admin_stats,
    admin_sheet,
    *PAGE_ROUTES,
]


def create_litestar(service: LocalSheetsService) -> Litestar:
    """The Litestar app alone (no fault injection), for Litestar's test client."""
    return Litestar(
        route_handlers=_ROUTES,
        dependencies={"service": Provide(lambda: service, sync_to_thread=False)},
        exception_handlers={
            SheetsError: _sheets_error,
            HTTPException: _http_error,
            Exception: _internal_error,
        },
        request_max_body_size=MAX_BODY_BYTES,
        openapi_config=None,
        # Leave logging to whoever runs the server (the connector redacts secrets in its own set-up).
        logging_config=None,
    )


def create_app(service: LocalSheetsService, hosts: frozenset[str] = LOOPBACK_NAMES) -> ASGIApp:
    """The full server: the API behind request counting and fault injection, all behind the request
    guard (``hosts``: the names a Host header may carry; see ``guard``)."""
    injector = FaultInjector(cast(ASGIApp, create_litestar(service)), service)
    return RequestGuard(injector, hosts, service.admin_secret)


# ---------------------------------------------------------------- fault injection


class FaultInjector:
    """ASGI wrapper that counts API requests and injects the configured faults."""

    def __init__(self, app: ASGIApp, service: LocalSheetsService) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Count the request, add latency, then answer, fail or drop it as the settings decide."""
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(API_PREFIXES):
            await self.app(scope, receive, send)
            return
        kind = request_kind(scope["method"], path)
        self.service.counts[kind] += 1
        scope_over = self.service.quota.take(kind, _caller(scope))
        if scope_over is not None:
            await send_error(send, 429, quota_body(kind, scope_over))
            return
        fault = self.service.faults.decide(kind)
        latency = self.service.faults.settings.latency_ms
        if latency:
            await asyncio.sleep(latency / 1000)
        if fault is None:
            await self.app(scope, receive, send)
            return
        if fault.after:
            await self.app(scope, receive, _discard)
        if fault.kind == "drop":
            await _drop_connection(receive)
            return
        await _send_fault(send, fault, self.service.faults.settings.retry_after)


def _caller(scope: Scope) -> str:
    """Who sent the request, told apart by its access token (``token.caller_of``)."""
    authorization = next((value for name, value in scope["headers"] if name == b"authorization"), b"")
    return caller_of(authorization)


async def _discard(message: Message) -> None:
    """A send that loses the answer: the request was applied, the client never hears of it."""


async def _drop_connection(receive: Receive) -> None:
    """Close the client's socket without a byte of answer, as a dying server or proxy would."""
    # uvicorn's receive is a bound method of its request cycle, which holds the connection's transport.
    cycle = getattr(receive, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:
        raise ConnectionAbortedError("connection dropped by fault injection")
    transport.close()
    # Let the protocol see the closed connection, so the server does not try to answer it.
    await asyncio.sleep(0)


async def _send_fault(send: Send, fault: Fault, retry_after: int | None) -> None:
    after = retry_after if fault.status in (429, 503) else None
    await send_error(send, fault.status, error_body(fault.status), retry_after=after)


# ---------------------------------------------------------------- running


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket (``port=0``: any free port), so the address is known before serving."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


def make_server(
    service: LocalSheetsService,
    log_level: str = "warning",
    access_log: bool = False,
    *,
    own_logging: bool = True,
    hosts: frozenset[str] = LOOPBACK_NAMES,
) -> uvicorn.Server:
    """A uvicorn server for the app; call ``run(sockets=[...])`` on it.

    ``own_logging=False`` leaves uvicorn's loggers to the host process's logging set-up (the connector
    runs this server inside its own process when no Google credentials are configured). ``hosts``: the
    names clients may reach it by (``guard.host_names``).
    """
    config = uvicorn.Config(
        create_app(service, hosts),
        log_level=log_level,
        access_log=access_log,
        log_config=LOGGING_CONFIG if own_logging else None,
        lifespan="off",
        # Keep idle client connections around so clients reuse them, as with Google's front ends.
        timeout_keep_alive=30,
    )
    return uvicorn.Server(config)


def url_of(host: str, port: int) -> str:
    """The API root (``http://host:port``, an IPv6 address in brackets) of a server at host:port."""
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def server_url(sock: socket.socket) -> str:
    """The API root (``http://host:port``) a bound socket serves."""
    host, port = sock.getsockname()[:2]
    return url_of(host, port)
