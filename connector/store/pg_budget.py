"""The Sheets request budget of a credential, shared by every worker on every host through the database.

Google counts requests per minute per credential, so workers on several hosts must draw on one budget
(one per credential of a pool, ``connector.sheets.pool``):
:class:`PgBudget` keeps the send times of the last minute in the table ``sheets_requests`` and admits a
request only while no 60-second window holds more than the budget (and, with ``smooth``, no ``burst``
requests in a row span less than ``burst`` times ``60 s / budget``), exactly as the in-process :class:`~connector.sheets.ratelimit.SlidingWindow`
does. Each admission is one transaction holding an advisory lock on ``(credential, kind)``, so
concurrent workers take turns; the times are the database's clock, the same for every host.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from connector.sheets.config import RateLimitSettings
from connector.sheets.ratelimit import WINDOW_SECONDS, RateLimiter, RequestKind
from connector.store.pg_store import open_pool, store_errors

if TYPE_CHECKING:
    from connector.settings import Settings
    from connector.sheets.writer import SheetWriter

__all__ = ["PgBudget", "window_delay", "writer_for"]

DB_NOW: Final = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint"

WINDOW_MS: Final = int(WINDOW_SECONDS * 1000)


def window_delay(
    now_ms: int, sent: int, oldest_ms: int | None, spaced_from_ms: int | None, limit: int, spacing_ms: int
) -> int:
    """Milliseconds until one more request fits (0: now), given the requests of the last window: both
    ``spacing_ms`` after ``spaced_from_ms`` (the newest request, or the burst-th newest with the
    burst's spacings) and, with the window full, until its oldest leaves it."""
    delay = 0
    if spaced_from_ms is not None:
        delay = spaced_from_ms + spacing_ms - now_ms
    if sent >= limit and oldest_ms is not None:
        delay = max(delay, oldest_ms + WINDOW_MS - now_ms)
    return max(delay, 1) if delay > 0 or sent >= limit else 0


class PgBudget(RateLimiter):
    """One credential's read and write budgets, kept in the database (see the module docstring)."""

    def __init__(
        self,
        conninfo: str,
        credential: str,
        settings: RateLimitSettings,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(settings, credential=credential)
        self._pool = open_pool(conninfo, 1, "doopage-sheets-budget")
        self._credential = credential
        self._limits: dict[RequestKind, int] = {
            "read": settings.reads_per_minute,
            "write": settings.writes_per_minute,
        }
        self._smooth = settings.smooth
        self._burst = settings.burst
        self._sleep = sleep
        self._lock = threading.Lock()

    def close(self) -> None:
        """Release the connection."""
        self._pool.close()

    def acquire(self, kind: RequestKind) -> float:
        """Wait for budget for one request of this kind and take it; the seconds waited."""
        waited = 0.0
        while (delay := self.try_acquire(kind)) > 0.0:
            self._sleep(delay)
            waited += delay
        return waited

    def try_acquire(self, kind: RequestKind) -> float:
        """Take budget for one request and return 0.0, or take nothing and return the seconds to wait."""
        return self._look(kind, take=True)

    def ready_in(self, kind: RequestKind) -> float:
        """Seconds until a request of this kind would go without waiting (0.0: now), taking nothing."""
        return self._look(kind, take=False)

    def _look(self, kind: RequestKind, *, take: bool) -> float:
        limit = self._limits[kind]
        spacing_ms = self._burst * (WINDOW_MS // limit) if self._smooth else 0
        key = f"{self._credential}:{kind}"
        with self._lock, store_errors("request budget"), self._pool.connection() as conn, conn.transaction():
            if take:
                conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (key,))
            row = conn.execute(f"SELECT {DB_NOW}").fetchone()
            assert row is not None
            now = int(row[0])
            if take:
                conn.execute(
                    "DELETE FROM sheets_requests WHERE credential = %s AND kind = %s AND sent_ms <= %s",
                    (self._credential, kind, now - WINDOW_MS),
                )
            stats: Any = conn.execute(
                "SELECT COUNT(*), MIN(sent_ms) FROM sheets_requests"
                " WHERE credential = %s AND kind = %s AND sent_ms > %s",
                (self._credential, kind, now - WINDOW_MS),
            ).fetchone()
            # The burst-th newest request: the next may go once the burst's spacings have passed since.
            spaced_from: Any = conn.execute(
                "SELECT sent_ms FROM sheets_requests WHERE credential = %s AND kind = %s AND sent_ms > %s"
                " ORDER BY sent_ms DESC OFFSET %s LIMIT 1",
                (self._credential, kind, now - WINDOW_MS, self._burst - 1),
            ).fetchone()
            anchor = spaced_from[0] if spaced_from is not None else None
            delay = window_delay(now, int(stats[0]), stats[1], anchor, limit, spacing_ms)
            if take and delay == 0:
                conn.execute(
                    "INSERT INTO sheets_requests (credential, kind, sent_ms) VALUES (%s, %s, %s)",
                    (self._credential, kind, now),
                )
        return delay / 1000


def writer_for(settings: Settings) -> SheetWriter:
    """A worker's sheet writer, with every credential of the pool: with a PostgreSQL store, each
    credential's request budget is the one in the database, shared with every other worker of that
    credential; otherwise the process's own."""
    from connector.sheets.client import SheetsConnection, connect_all
    from connector.sheets.pool import CredentialPool
    from connector.sheets.writer import SheetWriter

    connections = connect_all(settings.sheets, source=settings.source)
    limits = settings.sheets.rate_limit
    store = settings.store
    if store is None:
        return SheetWriter(CredentialPool.of(connections, limits), settings.sheets)

    def budget(connection: SheetsConnection) -> RateLimiter:
        return PgBudget(store.url.reveal(), connection.credential_id, limits)

    return SheetWriter(CredentialPool.of(connections, limits, budget), settings.sheets)
