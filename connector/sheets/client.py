"""Connecting gspread to the configured Sheets API root with the configured credentials.

gspread builds every URL on Google's root (``gspread.urls``). To reach another root (the local server,
a gateway) we use its documented ``Client(auth, session=...)`` with a requests session on which a
transport adapter is mounted for ``https://sheets.googleapis.com/``; the adapter rewrites each request
to the configured root just before sending. Nothing in gspread is patched.

Credentials are a service-account JSON file (``sheets.credentials_file``, or the file named by
``$GOOGLE_APPLICATION_CREDENTIALS`` when that is empty), or several (``sheets.credentials``, a pool:
:func:`connect_all` gives one connection each, see ``connector.sheets.pool``). Without one the client is
anonymous, which is allowed only for a loopback root (127.0.0.0/8, ::1, localhost): anonymous requests to
anything else would fail one by one at run time, so they are refused at start-up with a ConfigError.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import gspread
import msgspec
import requests
from google.auth.credentials import AnonymousCredentials, Credentials
from google.auth.transport.requests import AuthorizedSession
from google.oauth2 import service_account
from requests.adapters import HTTPAdapter

from connector.addresses import is_loopback
from connector.errors import ConfigError
from connector.sheets.config import CREDENTIALS_ENV, GOOGLE_API_ROOT, SheetsSettings

__all__ = [
    "SCOPES",
    "ApiRootAdapter",
    "SheetsConnection",
    "connect",
    "connect_all",
    "is_loopback_root",
    "resolve_credentials_file",
]

SCOPES = ("https://www.googleapis.com/auth/spreadsheets",)
_GOOGLE_PREFIX = GOOGLE_API_ROOT + "/"


class SheetsConnection(msgspec.Struct, frozen=True):
    """A gspread client plus the identity its requests are counted against (for rate limiting)."""

    client: gspread.Client
    credential_id: str  # the service account's client_email (``anonymous@<root>`` without one)
    api_root: str
    name: str = ""  # how the settings name it: the file as listed in sheets.credentials


def is_loopback_root(api_root: str) -> bool:
    """Whether the root's host is localhost or a loopback address (127.0.0.0/8, ::1)."""
    return is_loopback(urlsplit(api_root).hostname or "")


class ApiRootAdapter(HTTPAdapter):
    """Sends requests addressed to Google's Sheets root to another root, with a default timeout."""

    def __init__(self, api_root: str, timeout: tuple[float, float]) -> None:
        # No retries here: tenacity, one level up, is the only retry layer.
        super().__init__(max_retries=0)
        self._root = api_root.rstrip("/") + "/"
        self._loopback = is_loopback_root(api_root)
        self._timeout = timeout

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float, float] | tuple[float, None] | None = None,
        verify: bool | str = True,
        cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """Rewrite the URL onto the configured root, then send as usual."""
        url = request.url or ""
        if url.startswith(_GOOGLE_PREFIX):
            request.url = self._root + url[len(_GOOGLE_PREFIX) :]
            # Proxies were chosen for Google's host; a loopback server is never reached through one, and
            # another host gets the environment's proxies for its own name (honouring NO_PROXY).
            proxies = {} if self._loopback else requests.utils.get_environ_proxies(request.url)
        return super().send(
            request,
            stream=stream,
            timeout=self._timeout if timeout is None else timeout,
            verify=verify,
            cert=cert,
            proxies=proxies,
        )


def resolve_credentials_file(
    settings: SheetsSettings, environ: Mapping[str, str] | None = None, base: Path | None = None
) -> Path | None:
    """The service-account file to use: the setting, else $GOOGLE_APPLICATION_CREDENTIALS, else None."""
    env = os.environ if environ is None else environ
    name = settings.credentials_file or env.get(CREDENTIALS_ENV, "")
    if not name:
        return None
    path = Path(name).expanduser()
    if not path.is_absolute() and settings.credentials_file and base is not None:
        path = base / path
    return path


def connect(
    settings: SheetsSettings,
    *,
    source: str = "",
    environ: Mapping[str, str] | None = None,
) -> SheetsConnection:
    """The gspread client for these settings (with a pool, its first credential's), or ConfigError.

    ``source`` is the settings file (for error messages and to anchor a relative credentials path).
    """
    return connect_all(settings, source=source, environ=environ)[0]


def connect_all(
    settings: SheetsSettings,
    *,
    source: str = "",
    environ: Mapping[str, str] | None = None,
) -> list[SheetsConnection]:
    """One connection per configured credential: each file of ``sheets.credentials``, else the single
    one of :func:`connect`; ConfigError naming the file, the path and the reason for any that cannot be
    used, and for two files of the same service account."""
    base = Path(source).resolve().parent if source else None
    if not settings.credentials:
        path = resolve_credentials_file(settings, environ, base)
        where = "sheets.credentials_file"
        return [_connection(settings, path, source, where, name=settings.credentials_file)]
    connections: list[SheetsConnection] = []
    emails: dict[str, int] = {}
    for i, name in enumerate(settings.credentials):
        path = Path(name).expanduser()
        if not path.is_absolute() and base is not None:
            path = base / path
        where = f"sheets.credentials[{i}]"
        connection = _connection(settings, path, source, where, name=name)
        first = emails.setdefault(connection.credential_id, i)
        if first != i:
            raise ConfigError(
                source,
                where,
                f"{path} is the service account {connection.credential_id}, already credentials[{first}]; "
                "each service account has one quota, so list it once",
            )
        connections.append(connection)
    return connections


def _connection(
    settings: SheetsSettings, credentials_path: Path | None, source: str, where: str, *, name: str
) -> SheetsConnection:
    """The gspread client of one service-account file (None: anonymous, for a loopback root only)."""
    root = settings.root
    timeout = (settings.connect_timeout, settings.read_timeout)
    session: requests.Session
    if credentials_path is None:
        if not is_loopback_root(root):
            raise ConfigError(
                source,
                where,
                f"no Google credentials: set sheets.credentials_file or ${CREDENTIALS_ENV} to a "
                f"service-account JSON file (anonymous access is allowed only for a loopback api_root, "
                f"not {root})",
            )
        session = requests.Session()
        credential_id = f"anonymous@{root}"
        auth: Credentials = AnonymousCredentials()  # type: ignore[no-untyped-call]
    else:
        try:
            credentials = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
                str(credentials_path), scopes=list(SCOPES)
            )
        except (OSError, ValueError) as exc:
            raise ConfigError(
                source,
                where,
                f"cannot use service-account file {credentials_path}: {exc.__class__.__name__}: {exc}",
            ) from None
        session = AuthorizedSession(credentials)  # type: ignore[no-untyped-call]
        credential_id = str(credentials.service_account_email)
        auth = credentials
    if root != GOOGLE_API_ROOT:
        session.mount(_GOOGLE_PREFIX, ApiRootAdapter(root, timeout))
    client = gspread.Client(auth, session=session)
    client.set_timeout(timeout)
    return SheetsConnection(client=client, credential_id=credential_id, api_root=root, name=name)
