"""A pool of credentials: which service account writes which spreadsheet, each with its own budget.

Google counts Sheets requests per minute per user, and each service account is a user: with one
credential every spreadsheet draws on one budget (about 50 reads + 50 writes a minute, so 50 flushes a
minute at most, a read and a write each), and the wait for a flush grows with the number of
spreadsheets. With ``sheets.credentials = ["sa-1.json", "sa-2.json", ...]`` each spreadsheet is written
with one service account of the list, and each service account has a request budget of its own
(``sheets.rate_limit`` applies to each; with a PostgreSQL store the budget of each lives in the database,
keyed by its ``client_email``, and is shared by every worker on every host).

**Which one.** A company of the mapping may pin its spreadsheet to a credential (``credential =`` its
``client_email``, or its file as listed). Otherwise the choice is rendezvous hashing (highest random
weight): each service account scores ``sha256(client_email + NUL + spreadsheet id)`` and the highest
score wins. That depends only on the spreadsheet id and the set of service accounts: not on the order of
the list, the process or the host, so every worker everywhere picks the same one after any restart.
When the list changes, only the spreadsheets that must move do: a service account added takes over about
``1 / (n + 1)`` of the spreadsheets (those it now scores highest on) and the others stay; one removed
gives only its own spreadsheets to the others; reordering the list moves none. A spreadsheet that moves is
simply written with its new credential from the next flush on (each service account must be an editor
of every spreadsheet it may be given: share the spreadsheets with all of them, or pin).

Google also counts requests per project (300 reads + 300 writes a minute by default): service accounts
of one Google Cloud project share that, so past six accounts of 50 a minute, use accounts of other
projects.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from connector.errors import ConfigError
from connector.sheets.client import SheetsConnection
from connector.sheets.config import RateLimitSettings
from connector.sheets.errors import PermanentSheetsError
from connector.sheets.ratelimit import RateLimiter, shared_limiter

if TYPE_CHECKING:
    from connector.sync.mapping import SheetMapping

__all__ = ["CredentialPool", "PoolMember", "choose"]


def _score(key: str, spreadsheet_id: str) -> bytes:
    return hashlib.sha256(f"{key}\0{spreadsheet_id}".encode()).digest()


def choose(spreadsheet_id: str, keys: Sequence[str]) -> int:
    """The index of the key (a service account's client_email) that scores highest for this
    spreadsheet: the rendezvous hash of the module's docstring."""
    if not keys:
        raise ValueError("no credential to choose from")
    return max(range(len(keys)), key=lambda i: _score(keys[i], spreadsheet_id))


@dataclass(frozen=True, slots=True)
class PoolMember:
    """One credential of the pool: its connection and its request budget."""

    connection: SheetsConnection
    limiter: RateLimiter

    @property
    def email(self) -> str:
        """The service account's client_email (``anonymous@<root>`` without credentials)."""
        return self.connection.credential_id

    def answers_to(self, pin: str) -> bool:
        """Whether a mapping's ``credential = pin`` names this credential."""
        return pin in (self.connection.credential_id, self.connection.name)


class CredentialPool:
    """The credentials writes may use, and which one writes a given spreadsheet."""

    def __init__(self, members: Sequence[PoolMember]) -> None:
        if not members:
            raise ValueError("a credential pool needs at least one credential")
        self.members = tuple(members)
        self._keys = [member.email for member in self.members]
        self._chosen: dict[str, int] = {}  # spreadsheet -> member index: the hash, computed once

    @classmethod
    def of(
        cls,
        connections: Sequence[SheetsConnection],
        settings: RateLimitSettings,
        budget: Callable[[SheetsConnection], RateLimiter] | None = None,
    ) -> CredentialPool:
        """A pool of these connections, each with ``budget(connection)``, by default its process-wide
        limiter (``shared_limiter``: writers of one credential in a process share one budget)."""

        def limiter(connection: SheetsConnection) -> RateLimiter:
            if budget is not None:
                return budget(connection)
            return shared_limiter(connection.credential_id, settings)

        return cls([PoolMember(connection, limiter(connection)) for connection in connections])

    def find(self, pin: str) -> PoolMember | None:
        """The credential a mapping's ``credential = pin`` names, or None."""
        return next((member for member in self.members if member.answers_to(pin)), None)

    def member_for(self, spreadsheet_id: str, pin: str | None = None) -> PoolMember:
        """The credential that writes this spreadsheet: the pinned one, else the rendezvous choice.

        A pin naming no credential of the pool (the mapping is checked against the pool when loaded, so
        only a mapping changed meanwhile can) is a PermanentSheetsError: the events are parked with the
        reason, and come back with a retry once the mapping or the settings are fixed."""
        if pin is not None:
            member = self.find(pin)
            if member is None:
                raise PermanentSheetsError(spreadsheet_id, self._unknown(pin))
            return member
        index = self._chosen.get(spreadsheet_id)
        if index is None:
            index = self._chosen[spreadsheet_id] = choose(spreadsheet_id, self._keys)
        return self.members[index]

    def describe(self, spreadsheet_id: str, pin: str | None = None) -> str:
        """Which credential writes this spreadsheet, and why, for people."""
        member = self.member_for(spreadsheet_id, pin)
        if len(self.members) == 1 and pin is None:
            return member.email
        return f"{member.email} ({'pinned by the mapping' if pin is not None else 'by hash'})"

    def check_pins(self, mapping: SheetMapping) -> None:
        """ConfigError (the mapping's file, the company's path, the reason) for a company pinning a
        credential that is not in the pool."""
        for company in mapping.companies:
            if company.credential is not None and self.find(company.credential) is None:
                raise ConfigError(
                    mapping.file, f"{company.where}.credential", self._unknown(company.credential)
                )

    def _unknown(self, pin: str) -> str:
        listed = ", ".join(
            f"{member.email}" + (f" ({member.connection.name})" if member.connection.name else "")
            for member in self.members
        )
        return (
            f"credential {pin!r} is not one of sheets.credentials; name one by its client_email or its "
            f"file as listed there: {listed}"
        )
