"""Per-minute request quotas, as Google counts them: reads and writes separately, refilled each window.

Google's Sheets quotas are requests per minute per user, separately for reads and writes; a request over
the quota is answered 429 RESOURCE_EXHAUSTED, with no ``Retry-After`` header, and the quota refills when
the minute is over. Here a window is a fixed interval (``window_seconds``, 60 by default; shorter in
benchmarks that simulate many minutes) and a refused request does not count against it.
Set with ``PUT /_admin/quota``; no limit (the default) means no quota.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Literal

import msgspec

__all__ = ["QuotaSettings", "QuotaState", "quota_body", "quota_class"]

QuotaClass = Literal["read", "write"]
_READ_KINDS: Final = frozenset({"spreadsheets.get", "values.get", "values.batchGet", "drive.files.get"})


def quota_class(kind: str) -> QuotaClass:
    """Which quota a request kind (``spreadsheets.get``, ``values.update``...) is counted against."""
    return "read" if kind in _READ_KINDS else "write"


class QuotaSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Requests allowed per window; None means unlimited."""

    reads_per_window: int | None = None
    writes_per_window: int | None = None
    window_seconds: float = 60.0

    def __post_init__(self) -> None:
        """Reject limits below 1 and windows that are not positive."""
        limits = (self.reads_per_window, self.writes_per_window)
        if any(limit is not None and limit < 1 for limit in limits):
            raise ValueError("a quota must allow at least one request per window")
        if not (self.window_seconds > 0 and math.isfinite(self.window_seconds)):
            raise ValueError("window_seconds must be a positive number")


@dataclass(slots=True)
class QuotaState:
    """The settings and the requests counted in the current window of each class."""

    settings: QuotaSettings = field(default_factory=QuotaSettings)
    clock: Callable[[], float] = time.monotonic
    window: int = -1
    used: dict[str, int] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)

    def configure(self, settings: QuotaSettings) -> None:
        """Replace the settings and start counting afresh."""
        self.settings = settings
        self.window = -1
        self.used = {}
        self.refused = {}

    def admit(self, kind: str) -> bool:
        """Count one request of this kind; False (and not counted) when its quota is used up."""
        klass = quota_class(kind)
        limit = self.settings.reads_per_window if klass == "read" else self.settings.writes_per_window
        if limit is None:
            return True
        window = int(self.clock() // self.settings.window_seconds)
        if window != self.window:
            self.window, self.used = window, {}
        if self.used.get(klass, 0) >= limit:
            self.refused[klass] = self.refused.get(klass, 0) + 1
            return False
        self.used[klass] = self.used.get(klass, 0) + 1
        return True


def quota_body(kind: str) -> dict[str, dict[str, object]]:
    """Google's 429 body for a request over the per-minute quota."""
    name = "Read requests" if quota_class(kind) == "read" else "Write requests"
    message = (
        f"Quota exceeded for quota metric '{name}' and limit '{name} per minute per user' of service "
        "'sheets.googleapis.com' for consumer 'project_number:0'."
    )
    return {"error": {"code": 429, "message": message, "status": "RESOURCE_EXHAUSTED"}}
