"""Which claimed events must wait because a worksheet their rows go to was held back by the writer.

The writer holds back a worksheet it must not write now (its key header is missing from row 1, or a
protected range covers what it would write) and writes the others. An event waits, released with a
back-off and the reason, when any worksheet its rows go to was held back; the other events of the flush
are done. Folding is idempotent, so an event that waits is folded again, to the same state, when it
comes back, and its rows are written once the worksheet can be written again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from connector.sheets.blocking import BlockedWorksheet
from connector.sheets.snapshot import title_key
from connector.store.records import StoredEvent
from connector.sync.mapping import CompanyMapping, rows_for
from connector.sync.state import EntityKey, EntityState, Envelope, entity_key

__all__ = ["held_events", "held_message"]


def held_events(
    companies: Sequence[CompanyMapping],
    touched: Mapping[EntityKey, EntityState],
    items: Iterable[tuple[StoredEvent, Envelope]],
    logged: Sequence[Envelope],
    blocked: Sequence[BlockedWorksheet],
) -> dict[int, str]:
    """Event id -> why it waits, for every event with rows in a held-back worksheet.

    ``logged`` are the envelopes that go to event-log worksheets (a CSV import's events do not).
    """
    reasons = {title_key(b.title): b.reason for b in blocked}
    worksheets = [w for company in companies for w in company.worksheets if title_key(w.title) in reasons]
    in_log = {id(envelope) for envelope in logged}
    held: dict[int, str] = {}
    for stored, envelope in items:
        own: list[EntityState | Envelope] = [touched[entity_key(envelope.event)]]
        if id(envelope) in in_log:
            own.append(envelope)
        for worksheet in worksheets:
            if rows_for(worksheet, own):
                held[stored.id] = reasons[title_key(worksheet.title)]
                break
    return held


def held_message(blocked: Sequence[BlockedWorksheet]) -> str:
    """One line naming every held-back worksheet and why, for the spreadsheet's last flush error."""
    return "; ".join(b.reason for b in blocked)
