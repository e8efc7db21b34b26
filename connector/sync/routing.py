"""Routing: which company's events go to which spreadsheet.

A company without a mapping has no route: the worker keeps its events (status ``unrouted``) and applies
them once a mapping for it exists.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from connector.sync.mapping import CompanyMapping, SheetMapping

__all__ = ["Router"]

T = TypeVar("T")


class Router:
    """company_id -> the company's mapping (its spreadsheet and worksheets)."""

    def __init__(self, companies: Iterable[CompanyMapping]) -> None:
        self._routes: dict[int, CompanyMapping] = {}
        self._pins: dict[str, str] = {}
        for company in companies:
            if company.company_id in self._routes:
                raise ValueError(f"company {company.company_id} is mapped twice")
            self._routes[company.company_id] = company
            if company.credential is not None:
                self._pins[company.spreadsheet_id] = company.credential

    @classmethod
    def from_mapping(cls, mapping: SheetMapping) -> Router:
        """The router of a validated mapping."""
        return cls(mapping.companies)

    def route(self, company_id: int) -> CompanyMapping | None:
        """The mapping for this company's events, or None when the company has none (unrouted)."""
        return self._routes.get(company_id)

    def pin(self, spreadsheet_id: str) -> str | None:
        """The credential the mapping pins for this spreadsheet, or None (the pool's own choice)."""
        return self._pins.get(spreadsheet_id)

    @property
    def company_ids(self) -> frozenset[int]:
        """Every company that has a route."""
        return frozenset(self._routes)

    def spreadsheets(self) -> dict[str, list[CompanyMapping]]:
        """Spreadsheet id -> the companies written to it (a spreadsheet is flushed from one place at once)."""
        sheets: dict[str, list[CompanyMapping]] = {}
        for company in self._routes.values():
            sheets.setdefault(company.spreadsheet_id, []).append(company)
        return sheets

    def split(self, items: Iterable[T], company_of: Callable[[T], int]) -> tuple[dict[str, list[T]], list[T]]:
        """Items by the spreadsheet their company is routed to (in order), and the unrouted ones."""
        routed: dict[str, list[T]] = {}
        unrouted: list[T] = []
        for item in items:
            company = self.route(company_of(item))
            if company is None:
                unrouted.append(item)
            else:
                routed.setdefault(company.spreadsheet_id, []).append(item)
        return routed, unrouted
