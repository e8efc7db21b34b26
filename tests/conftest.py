"""Fixtures shared by every test folder."""

from __future__ import annotations

import pytest

from connector.samples import sample_bodies


@pytest.fixture(scope="session")
def samples() -> dict[str, bytes]:
    """DooPage's 11 sample webhook bodies (copied verbatim from its webhook page), keyed by event type."""
    bodies = sample_bodies()
    assert len(bodies) == 11
    return bodies
