"""Limits on what one HTTP connection may hold: the size of a request's head, and how long it may take.

uvicorn (with httptools, its default parser) keeps every byte of a request line and headers until the
headers end, however many there are, and waits for them and for a body for ever; its settings cover only
the idle time between two requests (``timeout_keep_alive``) and the number of connections answered
(``limit_concurrency``, 503 beyond it). What no setting covers is done here, by a subclass of uvicorn's
httptools protocol given as uvicorn's ``http`` setting:

* **head size**: the request target and header fields together may hold ``max_header_bytes``; beyond
  it the request is refused with 431 (414 when the target alone is too long) as soon as that many bytes
  (and 1 KiB for the rest of the syntax) have arrived, so at most one network read past that is held;
* **head time**: a connection must deliver a complete request line and headers within ``header_timeout``
  seconds of opening, or of the first byte of a later request on a kept-alive connection; else 408 (or,
  for a connection that sent nothing, just closed);
* **body time**: once the headers are in, the whole body must arrive within ``body_timeout`` seconds;
  else 408, and the route reading it sees the client as gone;
* **connections over the cap** (uvicorn's ``limit_concurrency``, whose 503 comes only once a request
  does) are answered 503 and closed as soon as they open, so idle ones cannot use up the process's file
  descriptors.

A refused connection gets its answer with ``Connection: close``, then stops being read and is closed a
moment later (closing at once, with unread data, would make the client's system discard the answer).
Each refusal is counted in ``doopage_connections_refused_total{reason}``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from connector import metrics
from connector.settings import ServerSettings

__all__ = ["ConnectionLimits", "limited_protocol", "uvicorn_limits"]

log = logging.getLogger(__name__)

# How long a refused connection stays open, unread, after its answer (see the module's docstring).
LINGER_SECONDS: Final = 1.0
# The limit counts the request target and header fields as parsed (with ": " and CRLF); the raw bytes of an
# unfinished head are let this much further (request line, white space), so that where the network
# happens to split a request never decides its fate.
HEAD_SYNTAX_SLACK: Final = 1024


@dataclass(frozen=True)
class ConnectionLimits:
    """The limits of :class:`LimitedHttpProtocol` (see the module's docstring)."""

    max_header_bytes: int = 16 * 1024
    header_timeout: float = 10.0
    body_timeout: float = 20.0


def limited_protocol(limits: ConnectionLimits) -> type[asyncio.Protocol]:
    """The protocol class to give uvicorn as ``http=`` for these limits."""
    return type("LimitedHttpProtocol", (LimitedHttpProtocol,), {"limits": limits})


def uvicorn_limits(server: ServerSettings) -> dict[str, Any]:
    """The ``uvicorn.Config`` keyword arguments for the ``[server]`` limits: uvicorn's own settings for
    idle keep-alive time and the number of connections, this module's protocol for the rest."""
    limits = ConnectionLimits(server.max_header_bytes, server.header_timeout, server.body_timeout)
    return {
        "http": limited_protocol(limits),
        "timeout_keep_alive": server.keepalive_timeout,
        # uvicorn answers 503 while this many connections (or requests in progress) or more are open:
        # one more, so that max_connections are served.
        "limit_concurrency": server.max_connections + 1,
        # No route speaks WebSocket: an upgrade request is answered as the plain request it also is.
        "ws": "none",
    }


class LimitedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a head size limit and head and body deadlines."""

    limits: ClassVar[ConnectionLimits] = ConnectionLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._awaiting_head = True  # from the connection's start or a request's first byte to its headers
        self._in_body = False  # from a request's headers to its last body byte
        self._head_received = 0  # raw bytes received while awaiting this request's head
        self._head_parsed = 0  # its request target and header fields, as parsed
        self._refused = False

    # ------------------------------------------------------------ connection events

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Refuse a connection over the cap at once (503), else start the clock for the first head."""
        super().connection_made(transport)  # type: ignore[arg-type]
        if self.limit_concurrency is not None and len(self.connections) >= self.limit_concurrency:
            # The test uvicorn makes at each request (see uvicorn_limits), made when the connection opens:
            # waiting for a request would hold a file descriptor meanwhile, and idle connections could
            # use them all up.
            self._refused = True
            metrics.CONNECTIONS_REFUSED.labels("too_many_connections").inc()
            self.transport.write(self._answer(503, "too many connections; try again later"))
            self.transport.close()
            return
        self._arm(self.limits.header_timeout, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the clock."""
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Parse, then check the head's size and start whichever clock the request now runs on."""
        if self._refused:
            return
        super().data_received(data)
        if self._refused or self.transport.is_closing():
            return
        if self._awaiting_head:
            self._head_received += len(data)
            if self._head_received > self.limits.max_header_bytes + HEAD_SYNTAX_SLACK:
                self._refuse(431, "the request line and headers are too large", "header_too_large")
            elif self._deadline is None:
                self._arm(self.limits.header_timeout, self._head_timed_out)
        elif self._in_body and self._deadline is None:
            self._arm(self.limits.body_timeout, self._body_timed_out)

    # ------------------------------------------------------------ parser callbacks

    def on_message_begin(self) -> None:
        """A request starts: its head is awaited from now."""
        if self._refused:
            return
        self._awaiting_head = True
        self._head_received = self._head_parsed = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        """Refuse a request target longer than the whole head may be."""
        if self._refused:
            return
        super().on_url(url)
        self._head_parsed += len(url)
        if len(self.url) > self.limits.max_header_bytes:
            self._refuse(414, "the request target is too long", "header_too_large")

    def on_header(self, name: bytes, value: bytes) -> None:
        """Refuse headers that take the head over its limit (fields arrived in one read are seen here)."""
        if self._refused:
            return
        self._head_parsed += len(name) + len(value) + 4  # ": " and CRLF
        if self._head_parsed > self.limits.max_header_bytes:
            self._refuse(431, "the request line and headers are too large", "header_too_large")
            return
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        """The head is in: the body's clock (if any) replaces the head's."""
        if self._refused:
            return
        self._disarm()
        self._awaiting_head = False
        self._in_body = True
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        """Body bytes, unless the request was refused."""
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        """The whole request is in: no clock runs until the answer (then uvicorn's keep-alive one)."""
        if self._refused:
            return
        self._disarm()
        self._in_body = False
        super().on_message_complete()

    # ------------------------------------------------------------ deadlines and refusals

    def _arm(self, seconds: float, expired: Callable[[], None]) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _head_timed_out(self) -> None:
        self._deadline = None
        if self._awaiting_head and not self.transport.is_closing():
            # A connection that never sent a byte of a request gets no answer: there is none to answer.
            status = 408 if self._head_received > 0 else None
            self._refuse(status, "the request headers took too long", "header_timeout")

    def _body_timed_out(self) -> None:
        self._deadline = None
        if self._in_body and not self.transport.is_closing():
            self._refuse(408, "the request body took too long", "body_timeout")

    def _refuse(self, status: int | None, message: str, reason: str) -> None:
        """Answer ``status`` unless another answer is under way, stop reading, close shortly after."""
        self._refused = True
        self._disarm()
        metrics.CONNECTIONS_REFUSED.labels(reason).inc()
        log.debug("connection from %s refused: %s", self.client, message)
        cycle = self.cycle  # this request's while in its body, else the one before (if any)
        if cycle is not None and (cycle.response_started if self._in_body else not cycle.response_complete):
            status = None  # an answer is written or being written on this connection: no second one
        if cycle is not None and not cycle.response_complete:
            # The route, if it is still reading the body, sees the client as gone; its answer is dropped.
            cycle.disconnected = True
            cycle.message_event.set()
        if status is None:
            self.transport.close()
            return
        self.transport.write(self._answer(status, message))
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.transport.pause_reading()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)

    def _answer(self, status: int, message: str) -> bytes:
        """A whole plain-text response that closes the connection."""
        body = message.encode()
        head = [STATUS_LINE[status]]
        head += [name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers]
        head += [
            b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: " + str(len(body)).encode() + b"\r\n",
            b"connection: close\r\n\r\n",
        ]
        return b"".join(head) + body
