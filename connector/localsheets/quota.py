"""Per-minute request quotas, as Google counts them: per user and per project, reads and writes separately,
refilled each window.

Google's Sheets quotas are requests per minute per user (60 reads and 60 writes; each service account is
a user) and per project (300 and 300), separately for reads and writes; a request over a quota is answered
429 RESOURCE_EXHAUSTED, with no ``Retry-After`` header, and the quota refills when the minute is over.
Here the caller is told apart by its access token (the token endpoint, ``token``, names the service
account in the tokens it gives; every request without such a token is one anonymous caller), the whole
server is one project, and a window is a fixed interval (``window_seconds``, 60 by default; shorter in
benchmarks that simulate many minutes). A refused request does not count against any quota.
Set with ``PUT /_admin/quota``; no limit (the default) means no quota.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Literal

import msgspec

__all__ = ["ANONYMOUS", "QuotaSettings", "QuotaState", "quota_body", "quota_class"]

QuotaClass = Literal["read", "write"]
QuotaScope = Literal["user", "project"]
_READ_KINDS: Final = frozenset({"spreadsheets.get", "values.get", "values.batchGet", "drive.files.get"})
# The caller of requests that carry no token of this server's token endpoint.
ANONYMOUS: Final = "anonymous"


def quota_class(kind: str) -> QuotaClass:
    """Which quota a request kind (``spreadsheets.get``, ``values.update``...) is counted against."""
    return "read" if kind in _READ_KINDS else "write"


class QuotaSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Requests allowed per window, per caller and for the whole server; None means unlimited."""

    reads_per_window: int | None = None  # per caller (Google: per user)
    writes_per_window: int | None = None
    project_reads_per_window: int | None = None  # all callers together (Google: per project)
    project_writes_per_window: int | None = None
    window_seconds: float = 60.0

    def __post_init__(self) -> None:
        """Reject limits below 1 and windows that are not positive."""
        limits = (
            self.reads_per_window,
            self.writes_per_window,
            self.project_reads_per_window,
            self.project_writes_per_window,
        )
        if any(limit is not None and limit < 1 for limit in limits):
            raise ValueError("a quota must allow at least one request per window")
        if not (self.window_seconds > 0 and math.isfinite(self.window_seconds)):
            raise ValueError("window_seconds must be a positive number")

    def limits(self, klass: QuotaClass) -> tuple[int | None, int | None]:
        """The per-caller and the whole-server limit of a class of requests."""
        if klass == "read":
            return self.reads_per_window, self.project_reads_per_window
        return self.writes_per_window, self.project_writes_per_window


@dataclass(slots=True)
class QuotaState:
    """The settings and the requests counted in the current window, per caller and class."""

    settings: QuotaSettings = field(default_factory=QuotaSettings)
    clock: Callable[[], float] = time.monotonic
    window: int = -1
    used: dict[tuple[str, str], int] = field(default_factory=dict)  # (caller, class) -> requests
    project_used: dict[str, int] = field(default_factory=dict)  # class -> requests of every caller
    refused: dict[str, int] = field(default_factory=dict)  # class -> requests refused
    refused_by_caller: dict[str, dict[str, int]] = field(default_factory=dict)

    def configure(self, settings: QuotaSettings) -> None:
        """Replace the settings and start counting afresh."""
        self.settings = settings
        self.window = -1
        self.used = {}
        self.project_used = {}
        self.refused = {}
        self.refused_by_caller = {}

    def admit(self, kind: str, caller: str = ANONYMOUS) -> bool:
        """Count one request of this kind from this caller; False (and not counted) when its quota, or
        the server's, is used up."""
        return self.take(kind, caller) is None

    def take(self, kind: str, caller: str = ANONYMOUS) -> QuotaScope | None:
        """Count one request of this kind from this caller and return None; or, when a quota is used up,
        count nothing and return which: the caller's (``user``) or the server's (``project``)."""
        klass = quota_class(kind)
        per_caller, per_project = self.settings.limits(klass)
        if per_caller is None and per_project is None:
            return None
        window = int(self.clock() // self.settings.window_seconds)
        if window != self.window:
            self.window, self.used, self.project_used = window, {}, {}
        mine = self.used.get((caller, klass), 0)
        everyone = self.project_used.get(klass, 0)
        scope: QuotaScope | None = None
        if per_caller is not None and mine >= per_caller:
            scope = "user"
        elif per_project is not None and everyone >= per_project:
            scope = "project"
        if scope is not None:
            self.refused[klass] = self.refused.get(klass, 0) + 1
            by_class = self.refused_by_caller.setdefault(caller, {})
            by_class[klass] = by_class.get(klass, 0) + 1
            return scope
        self.used[(caller, klass)] = mine + 1
        self.project_used[klass] = everyone + 1
        return None


def quota_body(kind: str, scope: QuotaScope = "user") -> dict[str, dict[str, object]]:
    """Google's 429 body for a request over the per-minute quota of a user or of the project."""
    name = "Read requests" if quota_class(kind) == "read" else "Write requests"
    limit = f"{name} per minute per user" if scope == "user" else f"{name} per minute"
    message = (
        f"Quota exceeded for quota metric '{name}' and limit '{limit}' of service "
        "'sheets.googleapis.com' for consumer 'project_number:0'."
    )
    return {"error": {"code": 429, "message": message, "status": "RESOURCE_EXHAUSTED"}}
