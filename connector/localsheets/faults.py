"""Fault injection and request accounting for the local Sheets server.

Faults imitate what a client of the real API meets: quota answers (429), server errors (500, 503), slow
answers and connections that drop without an answer. A fault strikes either *before* the request is
applied (nothing changed) or *after* it (the change is made but the answer is lost: the "unknown outcome"
a writer must survive without duplicating rows). Decisions come from a seeded generator, so a test that
sets ``seed`` sees the same sequence every run; ``script`` lists exact outcomes for the next requests.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Final, Literal

import msgspec

Timing = Literal["before", "after", "random"]

FAULT_STATUSES: Final = (429, 500, 503)

# A scripted outcome: "ok", "429", "500", "503" or "drop", optionally followed by ":before" or ":after".
_SCRIPT_RE: Final = re.compile(r"(ok|429|500|503|drop)(?::(before|after))?")


class FaultSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """What to inject, set through ``PUT /_admin/faults``; every rate is a probability per request."""

    rate_429: float = 0.0
    rate_500: float = 0.0
    rate_503: float = 0.0
    drop_rate: float = 0.0
    # Whole seconds sent in a Retry-After header with 429 and 503 answers; None sends no header.
    retry_after: int | None = None
    latency_ms: float = 0.0
    timing: Timing = "before"
    # Request kinds faults apply to (for example ["spreadsheets.batchUpdate"]); empty means every kind.
    kinds: list[str] = msgspec.field(default_factory=list)
    script: list[str] = msgspec.field(default_factory=list)
    seed: int | None = None

    def __post_init__(self) -> None:
        """Reject rates outside [0, 1], totals over 1 and unknown script steps."""
        rates = (self.rate_429, self.rate_500, self.rate_503, self.drop_rate)
        if any(r < 0 or r > 1 for r in rates) or sum(rates) > 1:
            raise ValueError("fault rates must lie in [0, 1] and add up to at most 1")
        if self.latency_ms < 0 or (self.retry_after is not None and self.retry_after < 0):
            raise ValueError("latency_ms and retry_after must not be negative")
        bad = [step for step in self.script if not _SCRIPT_RE.fullmatch(step)]
        if bad:
            raise ValueError(
                f"unknown script step {bad[0]!r}; use ok, 429, 500, 503 or drop [:before|:after]"
            )


@dataclass(frozen=True, slots=True)
class Fault:
    """One decided fault: an error status or a dropped connection, before or after applying."""

    kind: Literal["status", "drop"]
    status: int
    after: bool


@dataclass(slots=True)
class FaultState:
    """The live settings, their random generator, the script position and counters."""

    settings: FaultSettings = field(default_factory=FaultSettings)
    rng: random.Random = field(default_factory=random.Random)
    script: list[str] = field(default_factory=list)
    injected: Counter[str] = field(default_factory=Counter)

    def configure(self, settings: FaultSettings) -> None:
        """Replace the settings; a seed restarts the generator so runs repeat exactly."""
        self.settings = settings
        self.script = list(settings.script)
        self.rng = random.Random(settings.seed)  # noqa: S311 - reproducible test faults, not secrets

    def decide(self, kind: str) -> Fault | None:
        """Decide the fault (if any) for one API request of the given kind."""
        if self.settings.kinds and kind not in self.settings.kinds:
            return None
        if self.script:
            return self._scripted(self.script.pop(0))
        s = self.settings
        roll = self.rng.random()
        after = s.timing == "after" or (s.timing == "random" and self.rng.random() < 0.5)
        for status, rate in ((429, s.rate_429), (500, s.rate_500), (503, s.rate_503)):
            if roll < rate:
                return self._count(Fault("status", status, after))
            roll -= rate
        if roll < s.drop_rate:
            return self._count(Fault("drop", 0, after))
        return None

    def _scripted(self, step: str) -> Fault | None:
        match = _SCRIPT_RE.fullmatch(step)
        assert match is not None
        what, when = match.group(1), match.group(2) or self.settings.timing
        if what == "ok":
            return None
        after = when == "after" or (when == "random" and self.rng.random() < 0.5)
        if what == "drop":
            return self._count(Fault("drop", 0, after))
        return self._count(Fault("status", int(what), after))

    def _count(self, fault: Fault) -> Fault:
        name = "drop" if fault.kind == "drop" else str(fault.status)
        self.injected[f"{name}:{'after' if fault.after else 'before'}"] += 1
        return fault


# The range may hold "/" (a sheet title) once the path is decoded, so it runs to the end of the path.
_VALUES_ROUTE: Final = re.compile(r"/v4/spreadsheets/[^/]+/values/.+?(:append|:clear)?")


def request_kind(method: str, path: str) -> str:
    """Name an API request the way Google's method ids do (``values.batchGet``, ``spreadsheets.get``)."""
    method = method.upper()
    if path.startswith("/drive/v3/files"):
        return "drive.files.create" if method == "POST" else "drive.files.get"
    if path == "/v4/spreadsheets":
        return "spreadsheets.create"
    for suffix, name in (
        ("/values:batchGet", "values.batchGet"),
        ("/values:batchUpdate", "values.batchUpdate"),
        ("/values:batchClear", "values.batchClear"),
        (":batchUpdate", "spreadsheets.batchUpdate"),
    ):
        if path.endswith(suffix):
            return name
    match = _VALUES_ROUTE.fullmatch(path)
    if match:
        action = match.group(1)
        if action == ":append":
            return "values.append"
        if action == ":clear":
            return "values.clear"
        return "values.update" if method == "PUT" else "values.get"
    if path.startswith("/v4/spreadsheets/"):
        return "spreadsheets.get"
    return "other"


def error_body(status: int) -> dict[str, dict[str, object]]:
    """The body Google sends with an injected status."""
    messages = {
        429: (
            "Quota exceeded for quota metric 'Write requests' and limit 'Write requests per minute per user' "
            "of service 'sheets.googleapis.com'.",
            "RESOURCE_EXHAUSTED",
        ),
        500: ("Internal error encountered.", "INTERNAL"),
        503: ("The service is currently unavailable.", "UNAVAILABLE"),
    }
    message, status_name = messages[status]
    return {"error": {"code": status, "message": message, "status": status_name}}
