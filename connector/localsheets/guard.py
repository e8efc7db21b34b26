"""What the local Sheets server accepts: requests from this machine's own clients, never from web pages
of other origins, whatever the browser is tricked into sending.

Checked on every request, before the API, the admin routes or the viewer see it:

* **Host** must be one of the server's names (``127.0.0.1``, ``localhost``, ``::1``, the address it
  listens on, and any configured ``allowed_hosts``), so a page whose DNS name is rebound to this machine
  is refused (403);
* **cross-origin** requests are refused (403) when ``Sec-Fetch-Site`` says ``cross-site`` or
  ``same-site``, or an ``Origin`` header names another origin than the server's own; only the viewer's
  pages (``GET /`` and ``GET /view/...``) may be opened from a link elsewhere;
* **writes** (any method but GET, HEAD and OPTIONS) that carry a body must declare it as
  ``application/json`` (415 otherwise): a web page can send ``text/plain``, ``multipart/form-data`` or
  ``application/x-www-form-urlencoded`` to any address without asking, but never JSON;
* **admin routes** (``/_admin/...``) need the ``X-Admin-Secret`` header to hold the secret the server
  made at start-up (403 otherwise, compared in constant time); the process that starts the server hands
  it to its own clients, no web page can know it.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable
from typing import Any, Final

import msgspec

from .asgi import ASGIApp, Receive, Scope, Send
from .model import SheetsError

__all__ = [
    "ADMIN_SECRET_ENV",
    "ADMIN_SECRET_HEADER",
    "LOOPBACK_NAMES",
    "RequestGuard",
    "host_names",
    "send_error",
]

# The stand-in for Google's OAuth token endpoint (connector.localsheets.token).
TOKEN_PATH: Final = "/token"  # noqa: S105 - a path, not a secret
ADMIN_SECRET_HEADER: Final = "x-admin-secret"  # noqa: S105 - a header name, not a secret
# Where `doopage-sheets local-sheets` takes the secret from when its starter chose one.
ADMIN_SECRET_ENV: Final = "DOOPAGE_LOCAL_SHEETS_ADMIN_SECRET"  # noqa: S105 - a variable name
LOOPBACK_NAMES: Final = frozenset({"127.0.0.1", "localhost", "::1"})
_SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
_PAGE_PATHS: Final = ("/view/",)
_OTHER_SITES: Final = frozenset({b"cross-site", b"same-site"})
_JSON_TYPES: Final = frozenset({b"application/json"})


def host_names(bound_host: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """The names a Host header may carry: loopback names, the listening address unless it is a wildcard,
    and ``extra`` (lower-case, without port or brackets)."""
    names = set(LOOPBACK_NAMES)
    names.update(name.strip("[]").lower() for name in extra)
    if not _is_wildcard(bound_host):
        names.add(bound_host.strip("[]").lower())
    return frozenset(names)


def _is_wildcard(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return host == ""


def _host_name(host: str) -> str:
    """``name`` of a Host header ``name:port`` / ``[v6]:port``, lower-case."""
    if host.startswith("["):
        return host[1 : host.find("]")].lower() if "]" in host else ""
    return host.rsplit(":", 1)[0].lower() if host.count(":") == 1 else host.lower()


class RequestGuard:
    """ASGI wrapper applying the module's rules before passing a request on."""

    def __init__(self, app: ASGIApp, allowed_hosts: frozenset[str], admin_secret: str) -> None:
        self.app = app
        self.allowed_hosts = allowed_hosts
        self._secret = admin_secret.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse the request (403/415) or pass it on."""
        if scope["type"] == "http":
            refusal = self.refusal(scope)
            if refusal is not None:
                await send_error(send, refusal.code, refusal.body())
                return
        await self.app(scope, receive, send)

    def refusal(self, scope: Scope) -> SheetsError | None:
        """Why this request is refused, or None."""
        headers: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            headers.setdefault(name, value)
        host = headers.get(b"host", b"").decode("latin-1")
        if _host_name(host) not in self.allowed_hosts:
            return SheetsError(
                403, f"Host {host!r} is not a name of this server (see local_sheets.allowed_hosts)."
            )
        method, path = scope["method"], scope["path"]
        page = method in ("GET", "HEAD") and (path == "/" or path.startswith(_PAGE_PATHS))
        if not page:
            if headers.get(b"sec-fetch-site", b"").lower() in _OTHER_SITES:
                return SheetsError(403, "Requests from web pages of other origins are refused.")
            origin = headers.get(b"origin")
            if (
                origin is not None
                and origin.decode("latin-1").lower() != f"{scope['scheme']}://{host}".lower()
            ):
                return SheetsError(403, "Requests from web pages of other origins are refused.")
        # The stand-in token endpoint takes a form, as Google's does; it changes nothing.
        if method not in _SAFE_METHODS and _has_body(headers) and path != TOKEN_PATH:
            mime = headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()
            if mime not in _JSON_TYPES:
                return SheetsError(415, "A request body must be sent as Content-Type: application/json.")
        if path.startswith("/_admin") and not hmac.compare_digest(
            headers.get(ADMIN_SECRET_HEADER.encode(), b""), self._secret
        ):
            return SheetsError(
                403, f"Admin routes need the server's secret in the {ADMIN_SECRET_HEADER} header."
            )
        return None


def _has_body(headers: dict[bytes, bytes]) -> bool:
    length = headers.get(b"content-length")
    return b"transfer-encoding" in headers or (length is not None and length.strip() not in (b"", b"0"))


async def send_error(
    send: Send, status: int, content: dict[str, Any], *, retry_after: int | None = None
) -> None:
    """Answer a request with a JSON error body (and ``Retry-After`` when given), as the API does."""
    body = msgspec.json.encode(content)
    headers = [
        (b"content-type", b"application/json; charset=UTF-8"),
        (b"content-length", str(len(body)).encode()),
    ]
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
