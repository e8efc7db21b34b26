"""decode_stored (the worker's decoding of stored bodies) gives what decode_body gives, table-driven: the
same event for every body decode_body accepts, the same error for every body it refuses."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from connector.events import EventDecodeError, KnownEvent, UnknownEvent, decode_body, decode_stored
from connector.samples import sample_bodies
from tests.webhook.test_bad_bodies import BAD_BODIES

UPDATED = json.loads(sample_bodies()["customer_updated"])
DEEP = b"[" * 100_000 + b"]" * 100_000


def with_extra(extra: bytes) -> bytes:
    """A customer_updated body with an unknown field holding ``extra`` (raw JSON, or not JSON)."""
    return json.dumps(UPDATED).encode()[:-1] + b', "added_later": ' + extra + b"}"


CASES: list[tuple[str, bytes]] = [
    *[(f"sample {event_type}", body) for event_type, body in sample_bodies().items()],
    ("unknown event type", b'{"company_id": 1, "event_type": "deal_won", "data": {"amount": 5}}'),
    ("unknown fields of every kind", with_extra(b'{"a": [1, 2.5, null, true, "x\\u00e9"]}')),
    ("invalid UTF-8 in an unknown field", with_extra(b'"\xff\xfe"')),
    ("deep nesting in an unknown field", with_extra(DEEP)),
    ("malformed unknown field", with_extra(b"[1,]")),
    ("trailing bytes", json.dumps(UPDATED).encode() + b" x"),
    *[(case[0], case[1]) for case in BAD_BODIES if case[3] == 400],
]


def outcome(
    decode: Callable[[bytes], KnownEvent | UnknownEvent], body: bytes
) -> KnownEvent | UnknownEvent | str:
    """The event, or the error's message."""
    try:
        return decode(body)
    except EventDecodeError as exc:
        return f"error: {exc}"


@pytest.mark.parametrize("body", [case[1] for case in CASES], ids=[case[0] for case in CASES])
def test_a_stored_body_decodes_to_what_the_intake_decoded(body: bytes) -> None:
    assert outcome(decode_stored, body) == outcome(lambda b: decode_body(b).event, body)
