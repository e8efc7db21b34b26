"""The HTTP service: DooPage's verification handshake, event intake, and health probes.

``create_app(settings)`` builds the Litestar app; the inbox is opened and closed by its lifespan, so a
test builds one app per case with its own settings and data directory.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final

import msgspec
from litestar import Litestar, MediaType, Request, Response, get, post
from litestar.datastructures import State
from litestar.exceptions import (
    ClientException,
    HTTPException,
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
    ServiceUnavailableException,
)
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema
from litestar.params import FromPath, FromQuery
from litestar.status_codes import HTTP_415_UNSUPPORTED_MEDIA_TYPE, HTTP_500_INTERNAL_SERVER_ERROR

from connector import __version__, metrics
from connector.errors import StoreError
from connector.events import KNOWN_EVENT_TYPES, EventDecodeError, UnknownEvent, decode_body, subject_of
from connector.intake.access import AddressRefused, Gate
from connector.settings import EndpointSettings, Settings
from connector.store import open_intake
from connector.store.protocols import Intake
from connector.store.records import STATUSES, InboxRecord, now_ms
from connector.sync.mapping import load_mapping
from connector.sync.supervisor import WorkerSupervisor

__all__ = ["IntakeResult", "create_app"]

log = logging.getLogger(__name__)

WEBHOOK_PATH: Final = "/webhooks/doopage/{token:str}"


class IntakeResult(msgspec.Struct, frozen=True):
    """What a POSTed event got: stored now, or already stored by an earlier delivery."""

    status: str  # "stored" | "duplicate"
    event_type: str


def _admit(token: str, request: Request[None, None, State]) -> EndpointSettings:
    """The endpoint this request may use, or the HTTP error refusing it (counted)."""
    # Subscripted: attribute access to app state goes through a failed lookup first, per request.
    gate: Gate = request.app.state["gate"]
    try:
        endpoint = gate.find(token)
        if gate.guarded(endpoint):  # the client's address and headers are read only when they matter
            client = request.client
            gate.check(
                endpoint,
                client.host if client else None,
                request.headers.get("x-forwarded-for"),
                request.headers.get("authorization"),
            )
    except AddressRefused:
        metrics.EVENTS_REJECTED.labels("address").inc()
        raise
    except NotAuthorizedException:
        metrics.EVENTS_REJECTED.labels("auth").inc()
        raise
    except NotFoundException:
        metrics.EVENTS_REJECTED.labels("unknown_token").inc()
        raise
    return endpoint


def _reject(reason: str, error: HTTPException) -> HTTPException:
    metrics.EVENTS_REJECTED.labels(reason).inc()
    return error


def _is_json(request: Request[None, None, State]) -> bool:
    # A missing Content-Type is taken as JSON: DooPage documents none, and the body is validated anyway.
    # Read from the ASGI scope, whose header names are lower-case: building request.headers (every
    # header) for this one was the dearest of this route's checks.
    raw = next((value for name, value in request.scope["headers"] if name == b"content-type"), b"")
    mime = raw.split(b";", 1)[0].strip().lower()
    return mime in (b"", b"application/json", b"text/json") or mime.endswith(b"+json")


class UnsupportedMediaType(ClientException):
    """415: the body is declared as something other than JSON."""

    status_code = HTTP_415_UNSUPPORTED_MEDIA_TYPE


@get(WEBHOOK_PATH, operation_id="verifyWebhook", sync_to_thread=False)
def verify(
    token: FromPath[str],
    request: Request[None, None, State],
    validation_key: FromQuery[str | None] = None,
    challenge_key: FromQuery[str | None] = None,
) -> Response[str]:
    """DooPage's verification request: echo ``challenge_key`` when ``validation_key`` is the right key."""
    endpoint = _admit(token, request)
    if validation_key is None:
        raise ClientException("missing query parameter: validation_key")
    if challenge_key is None:
        raise ClientException("missing query parameter: challenge_key")
    if not hmac.compare_digest(validation_key.encode(), endpoint.validation_key.reveal().encode()):
        log.warning("webhook verification refused: wrong validation_key (endpoint %s)", endpoint.name)
        raise PermissionDeniedException("validation_key does not match this endpoint's key")
    # The bare challenge as plain text; errors above stay JSON like every other error.
    return Response(challenge_key, media_type=MediaType.TEXT)


@dataclass
class EventBodyOperation(Operation):
    """The receive route reads its body itself, to store it byte for byte; this documents that body."""

    def __post_init__(self) -> None:
        event = Schema(
            type=OpenAPIType.OBJECT,
            required=["company_id", "event_type", "data"],
            properties={
                "company_id": Schema(type=OpenAPIType.INTEGER),
                "event_type": Schema(
                    type=OpenAPIType.STRING, description=f"one of {', '.join(sorted(KNOWN_EVENT_TYPES))}"
                ),
                "timestamp": Schema(type=OpenAPIType.INTEGER, description="milliseconds since the epoch"),
                "data": Schema(type=OpenAPIType.OBJECT, description="the event's content; see DooPage"),
            },
        )
        self.request_body = RequestBody(
            content={"application/json": OpenAPIMediaType(schema=event)},
            description="One DooPage webhook event, as DooPage sends it.",
            required=True,
        )


@post(
    WEBHOOK_PATH,
    operation_id="receiveEvent",
    status_code=200,
    operation_class=EventBodyOperation,
    responses={
        401: ResponseSpec(None, description="This endpoint requires HTTP basic auth."),
        403: ResponseSpec(None, description="The event's company is not accepted on this endpoint."),
        404: ResponseSpec(None, description="No such endpoint (unknown token, or an address not allowed)."),
        413: ResponseSpec(None, description="The body is over the configured limit."),
        415: ResponseSpec(None, description="The body is not declared as JSON."),
        503: ResponseSpec(None, description="The event could not be stored; retry later."),
    },
)
async def receive(token: FromPath[str], request: Request[None, None, State]) -> IntakeResult:
    """Decode one DooPage event and store it durably; answer only once it is committed."""
    endpoint = _admit(token, request)
    metrics.INTAKE.received[endpoint.name] += 1
    if not _is_json(request):
        raise _reject(
            "media_type", UnsupportedMediaType("the body must be JSON (Content-Type: application/json)")
        )
    try:
        body = await request.body()
    except HTTPException as exc:  # 413: over the body limit
        raise _reject("too_large", exc) from None
    try:
        decoded = decode_body(body)
    except EventDecodeError as exc:
        raise _reject("invalid", ClientException(str(exc))) from None
    event = decoded.event
    if not endpoint.accepts(event.company_id):
        refusal = PermissionDeniedException(f"company_id {event.company_id} is not accepted on this endpoint")
        raise _reject("company", refusal)
    inbox: Intake = request.app.state["inbox"]
    record = InboxRecord(
        received_ms=now_ms(),
        endpoint=endpoint.name,
        company_id=event.company_id,
        event_type=event.event_type,
        event_ms=event.timestamp,
        body=body,
        content_key=decoded.content_key,
        subject=subject_of(event),
        status="unknown" if isinstance(event, UnknownEvent) else "pending",
    )
    try:
        stored = await inbox.put(record)
    except StoreError as exc:
        log.error("could not store a %s event: %s", event.event_type, exc)
        raise _reject(
            "store", ServiceUnavailableException("the event could not be stored; retry later")
        ) from None
    outcome = "stored" if stored else "duplicate"
    metrics.INTAKE.accepted[event.event_type, outcome] += 1
    return IntakeResult(outcome, event.event_type)


@get("/metrics", operation_id="metrics", sync_to_thread=True)
def metrics_endpoint(request: Request[None, None, State]) -> Response[bytes]:
    """Prometheus metrics (the inbox depth is read now, off the event loop)."""
    inbox: Intake = request.app.state.inbox
    depth = dict.fromkeys(STATUSES, 0)
    for row in inbox.counts():
        depth[row.status] = depth.get(row.status, 0) + row.count
    for status, count in depth.items():
        metrics.INBOX_DEPTH.labels(status).set(count)
    return Response(metrics.render(request.app.state.get("worker_metrics")), media_type=metrics.CONTENT_TYPE)


def _internal_error(request: Request[None, None, State], exc: Exception) -> Response[dict[str, object]]:
    """An unexpected error: logged with its traceback, answered with a plain 500 that leaks nothing."""
    log.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return Response({"status_code": 500, "detail": "Internal Server Error"}, status_code=500)


@get("/healthz", media_type=MediaType.TEXT, operation_id="health", sync_to_thread=False)
def healthz() -> str:
    """The process is up."""
    return "ok"


@get("/readyz", media_type=MediaType.TEXT, operation_id="ready")
async def readyz(request: Request[None, None, State]) -> str:
    """The inbox can take a write now."""
    inbox: Intake = request.app.state.inbox
    try:
        await inbox.check_writable()
    except StoreError as exc:
        raise ServiceUnavailableException(f"the inbox is not writable: {exc}") from None
    return "ok"


def create_app(settings: Settings, inbox: Intake | None = None) -> Litestar:
    """Build the service for these settings; the inbox is opened on start-up unless one is given.

    With ``worker.embedded`` (the default) the sheet worker runs as a child process, started (and waited
    for) on start-up and stopped after its flush on shutdown; the mapping is checked here, so a mistake
    stops start-up with a ConfigError.
    """
    if settings.worker.embedded:
        load_mapping(settings)

    @asynccontextmanager
    async def open_inbox(app: Litestar) -> AsyncIterator[None]:
        owned = inbox is None
        app.state.inbox = open_intake(settings) if owned else inbox
        try:
            yield
        finally:
            if owned:
                app.state.inbox.close()

    @asynccontextmanager
    async def run_worker(app: Litestar) -> AsyncIterator[None]:
        if not settings.worker.embedded:
            yield
            return
        app.state["worker_metrics"] = metrics.worker_metrics_dir(settings.data_dir)
        supervisor = WorkerSupervisor(settings, app.state["worker_metrics"])
        await asyncio.to_thread(supervisor.start)
        app.state.worker = supervisor
        try:
            yield
        finally:
            # Waiting for the flush in flight: off the event loop.
            await asyncio.to_thread(supervisor.stop)

    return Litestar(
        route_handlers=[verify, receive, healthz, readyz, metrics_endpoint],
        lifespan=[open_inbox, run_worker],
        state=State({"gate": Gate(settings.endpoints, settings.server.trusted_proxies)}),
        # Logging is set up by the command (connector.logs), with secrets redacted; errors go through
        # the handler below so that they are logged there too.
        logging_config=None,
        exception_handlers={HTTP_500_INTERNAL_SERVER_ERROR: _internal_error},
        request_max_body_size=settings.server.body_limit,
        openapi_config=OpenAPIConfig(title="doopage-sheets", version=__version__),
    )
