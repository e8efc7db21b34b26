"""Settings of the Sheets connection: the ``[sheets]`` table of the configuration file.

Example::

    [sheets]
    api_root = "https://sheets.googleapis.com"   # or the local server, e.g. "http://127.0.0.1:8765"
    credentials_file = "service-account.json"      # empty: $GOOGLE_APPLICATION_CREDENTIALS
    # or, for many spreadsheets, a pool of service accounts, each with its own request budget:
    # credentials = ["sa-1.json", "sa-2.json", "sa-3.json", "sa-4.json"]
    connect_timeout = 10.0
    read_timeout = 60.0
    max_request_bytes = 2000000

    [sheets.retry]
    max_attempts = 8
    max_seconds = 120.0
    base_backoff = 1.0
    max_backoff = 32.0

    [sheets.rate_limit]
    reads_per_minute = 50       # ceilings: a 429 cuts the budget, accepted requests grow it back
    writes_per_minute = 50
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

import msgspec

__all__ = [
    "CREDENTIALS_ENV",
    "GOOGLE_API_ROOT",
    "RateLimitSettings",
    "RetrySettings",
    "SheetsSettings",
]

GOOGLE_API_ROOT = "https://sheets.googleapis.com"
# The variable Google's own libraries read; used when credentials_file is left empty.
CREDENTIALS_ENV = "GOOGLE_APPLICATION_CREDENTIALS"

PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]


class RetrySettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """How long a flush keeps retrying transient failures (429, 5xx, timeouts, dropped connections)."""

    max_attempts: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 8
    max_seconds: PositiveFloat = 120.0
    base_backoff: PositiveFloat = 1.0
    max_backoff: PositiveFloat = 32.0


class RateLimitSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """Request budget per credential; Google allows 60 reads and 60 writes per minute per user.

    The budgets are ceilings: a 429 from Google (the credential is shared with other tools) cuts them,
    and they grow back while requests are accepted (see ``connector.sheets.ratelimit``).
    """

    reads_per_minute: Annotated[int, msgspec.Meta(ge=1)] = 50
    writes_per_minute: Annotated[int, msgspec.Meta(ge=1)] = 50
    # Space requests evenly (60 s / budget apart) instead of allowing the whole budget in a burst.
    smooth: bool = True
    # With smooth: up to this many requests may go back to back (a flush's writes), so long as every
    # run of that many averages the spacing; 1 spaces every request.
    burst: Annotated[int, msgspec.Meta(ge=1, le=60)] = 4
    # The length of Google's quota window; only a simulation (a benchmark with a faster minute) changes it.
    window_seconds: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 60.0


class SheetsSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """Where the Sheets API is, who we are to it, and how patiently we talk to it."""

    api_root: str = GOOGLE_API_ROOT
    credentials_file: str = ""
    # A pool of service-account files (instead of credentials_file): each spreadsheet is written with one
    # of them, chosen by a stable hash of its id or pinned by the mapping (connector.sheets.pool).
    credentials: list[str] = msgspec.field(default_factory=list)
    connect_timeout: PositiveFloat = 10.0
    read_timeout: PositiveFloat = 60.0
    # Google advises keeping a request body under 2 MB; bigger writes are split into several requests.
    max_request_bytes: Annotated[int, msgspec.Meta(ge=10_000)] = 2_000_000
    retry: RetrySettings = msgspec.field(default_factory=RetrySettings)
    rate_limit: RateLimitSettings = msgspec.field(default_factory=RateLimitSettings)

    def __post_init__(self) -> None:
        parts = urlsplit(self.api_root)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"api_root must be an http(s) URL such as {GOOGLE_API_ROOT}, got {self.api_root!r}"
            )
        if parts.path.strip("/") or parts.query or parts.fragment:
            raise ValueError(f"api_root is the server's root only (no path), got {self.api_root!r}")

    def credentials_problem(self) -> tuple[str, str] | None:
        """What is wrong with the credential settings as written, as (path, reason); None if nothing.

        Whether each file can be used is checked when connecting (``connector.sheets.pool``)."""
        if self.credentials and self.credentials_file:
            return (
                "sheets.credentials",
                "set either credentials_file (one service account) or credentials (a pool of them), "
                "not both; move the file of credentials_file into the credentials list",
            )
        seen: dict[str, int] = {}
        for i, name in enumerate(self.credentials):
            if not name.strip():
                return f"sheets.credentials[{i}]", "an empty file name; give a service-account JSON file"
            if name in seen:
                return (
                    f"sheets.credentials[{i}]",
                    f"{name!r} is already credentials[{seen[name]}]; list each service account once "
                    "(the same one twice would count its quota twice)",
                )
            seen[name] = i
        return None

    @property
    def root(self) -> str:
        """The API root without a trailing slash."""
        return self.api_root.rstrip("/")
