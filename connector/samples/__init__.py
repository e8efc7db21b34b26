"""DooPage's documented sample body for each of the 11 event types, shipped with the package."""

from __future__ import annotations

from importlib import resources


def sample_bodies() -> dict[str, bytes]:
    """event_type -> the sample body DooPage documents for it, byte for byte."""
    folder = resources.files(__name__)
    return {
        entry.name.removesuffix(".json"): entry.read_bytes()
        for entry in sorted(folder.iterdir(), key=lambda e: e.name)
        if entry.name.endswith(".json")
    }
