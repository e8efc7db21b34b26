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
from typing import Final

import msgspec
from litestar import Litestar, MediaType, Request, Response, get, post
from litestar.datastructures import State
from litestar.exceptions import (
    ClientException,
    NotFoundException,
    PermissionDeniedException,
    ServiceUnavailableException,
)
from litestar.openapi import OpenAPIConfig
from litestar.params import FromPath, FromQuery
from litestar.status_codes import HTTP_415_UNSUPPORTED_MEDIA_TYPE

from connector import __version__
from connector.errors import StoreError
from connector.events import EventDecodeError, UnknownEvent, decode_body, subject_of
from connector.inbox import Inbox, InboxRecord, SqliteInbox, now_ms
from connector.settings import EndpointSettings, Settings
from connector.worker import WorkerThread

__all__ = ["IntakeResult", "create_app"]

log = logging.getLogger(__name__)

WEBHOOK_PATH: Final = "/webhooks/doopage/{token:str}"


class IntakeResult(msgspec.Struct, frozen=True):
    """What a POSTed event got: stored now, or already stored by an earlier delivery."""

    status: str  # "stored" | "duplicate"
    event_type: str


class Endpoints:
    """The configured webhook endpoints, found by path token in constant time."""

    def __init__(self, endpoints: list[EndpointSettings]) -> None:
        self._endpoints = [(e.token.reveal().encode(), e) for e in endpoints]

    def find(self, token: str) -> EndpointSettings:
        """The endpoint whose token this is; the same 404 as any unknown path otherwise.

        Every configured token is compared, with hmac.compare_digest, so the time taken says nothing
        about how much of a token was right or which endpoint matched.
        """
        candidate = token.encode()
        found: EndpointSettings | None = None
        for secret, endpoint in self._endpoints:
            if hmac.compare_digest(secret, candidate):
                found = endpoint
        if found is None:
            raise NotFoundException()
        return found


def _endpoints(request: Request[None, None, State]) -> Endpoints:
    endpoints: Endpoints = request.app.state.endpoints
    return endpoints


def _is_json(content_type: str) -> bool:
    # A missing Content-Type is taken as JSON: DooPage documents none, and the body is validated anyway.
    mime = content_type.split(";", 1)[0].strip().lower()
    return mime in ("", "application/json", "text/json") or mime.endswith("+json")


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
    endpoint = _endpoints(request).find(token)
    if validation_key is None:
        raise ClientException("missing query parameter: validation_key")
    if challenge_key is None:
        raise ClientException("missing query parameter: challenge_key")
    if not hmac.compare_digest(validation_key.encode(), endpoint.validation_key.reveal().encode()):
        log.warning("webhook verification refused: wrong validation_key (endpoint %s)", endpoint.name)
        raise PermissionDeniedException("validation_key does not match this endpoint's key")
    # The bare challenge as plain text; errors above stay JSON like every other error.
    return Response(challenge_key, media_type=MediaType.TEXT)


@post(WEBHOOK_PATH, operation_id="receiveEvent", status_code=200)
async def receive(token: FromPath[str], request: Request[None, None, State]) -> IntakeResult:
    """Decode one DooPage event and store it durably; answer only once it is committed."""
    endpoint = _endpoints(request).find(token)
    if not _is_json(request.headers.get("content-type", "")):
        raise UnsupportedMediaType("the body must be JSON (Content-Type: application/json)")
    body = await request.body()
    try:
        decoded = decode_body(body)
    except EventDecodeError as exc:
        raise ClientException(str(exc)) from None
    event = decoded.event
    if not endpoint.accepts(event.company_id):
        raise PermissionDeniedException(f"company_id {event.company_id} is not accepted on this endpoint")
    inbox: Inbox = request.app.state.inbox
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
        raise ServiceUnavailableException("the event could not be stored; retry later") from None
    return IntakeResult("stored" if stored else "duplicate", event.event_type)


@get("/healthz", media_type=MediaType.TEXT, operation_id="health", sync_to_thread=False)
def healthz() -> str:
    """The process is up."""
    return "ok"


@get("/readyz", media_type=MediaType.TEXT, operation_id="ready")
async def readyz(request: Request[None, None, State]) -> str:
    """The inbox can take a write now."""
    inbox: Inbox = request.app.state.inbox
    try:
        await inbox.check_writable()
    except StoreError as exc:
        raise ServiceUnavailableException(f"the inbox is not writable: {exc}") from None
    return "ok"


def create_app(settings: Settings, inbox: Inbox | None = None) -> Litestar:
    """Build the service for these settings; the inbox is opened on start-up unless one is given.

    With ``worker.embedded`` (the default) the sheet worker runs in a thread beside the web service; its
    mapping and Sheets connection are checked here, so a mistake stops start-up with a ConfigError.
    """
    worker = WorkerThread(settings) if settings.worker.embedded else None

    @asynccontextmanager
    async def open_inbox(app: Litestar) -> AsyncIterator[None]:
        owned = inbox is None
        app.state.inbox = SqliteInbox.open(settings.data_dir) if owned else inbox
        try:
            yield
        finally:
            if owned:
                app.state.inbox.close()

    @asynccontextmanager
    async def run_worker(app: Litestar) -> AsyncIterator[None]:
        if worker is None:
            yield
            return
        worker.start()
        try:
            yield
        finally:
            # Joining waits for the flush in flight: off the event loop.
            await asyncio.to_thread(worker.stop)

    return Litestar(
        route_handlers=[verify, receive, healthz, readyz],
        lifespan=[open_inbox, run_worker],
        state=State({"endpoints": Endpoints(settings.endpoints)}),
        request_max_body_size=settings.server.body_limit,
        openapi_config=OpenAPIConfig(title="doopage-sheets", version=__version__),
    )
