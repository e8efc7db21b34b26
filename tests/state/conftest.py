"""Helpers for the state, mapping and routing tests: events built from DooPage's samples or from dicts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

from connector.events import UnknownEvent, decode_body
from connector.samples import sample_bodies
from connector.sync.mapping import SheetMapping, parse_mapping
from connector.sync.state import Envelope

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_MAPPING = REPO / "config" / "mapping.example.toml"

# 2021-04-11 05:14:00.123 UTC, the timestamp of every timestamped DooPage sample; 12:14:00 in Ho Chi Minh City.
SAMPLE_MS = 1618118040123


def envelope_of(body: bytes, received_ms: int) -> Envelope:
    """What the inbox hands the fold for this body, received at ``received_ms``."""
    decoded = decode_body(body)
    assert not isinstance(decoded.event, UnknownEvent), decoded.event.event_type
    return Envelope(event=decoded.event, received_ms=received_ms, dedup_key=decoded.content_key)


def envelope(received_ms: int, **body: Any) -> Envelope:
    """An envelope of an event written as keyword arguments (``company_id`` defaults to 1)."""
    body.setdefault("company_id", 1)
    return envelope_of(msgspec.json.encode(body), received_ms)


def sample(event_type: str, received_ms: int) -> Envelope:
    """DooPage's sample of this event type, received at ``received_ms``."""
    return envelope_of(sample_bodies()[event_type], received_ms)


@pytest.fixture(scope="session")
def default_mapping() -> SheetMapping:
    """The mapping a new user gets: config/mapping.example.toml."""
    return parse_mapping(EXAMPLE_MAPPING.read_text(encoding="utf-8"), str(EXAMPLE_MAPPING))
