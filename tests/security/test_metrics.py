"""Prometheus metrics at /metrics reflect what the service did."""

from __future__ import annotations

import re

import httpx

from connector.samples import sample_bodies
from tests.security.conftest import TOKEN, settings_text


def sample_value(text: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_metrics_count_received_accepted_and_rejected_events(serve_app):
    base = serve_app(settings_text())
    url = f"{base}/webhooks/doopage/{TOKEN}"
    before = httpx.get(f"{base}/metrics").text
    httpx.post(url, content=sample_bodies()["tag_set"])
    httpx.post(url, content=sample_bodies()["tag_set"])  # redelivery
    httpx.post(url, content=b"{nope")
    httpx.post(url, content=b"{}", headers={"content-type": "text/plain"})
    response = httpx.get(f"{base}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    after = response.text

    def delta(name: str, labels: str = "") -> float:
        return sample_value(after, name, labels) - sample_value(before, name, labels)

    assert delta("doopage_events_received_total", '{endpoint="main"}') == 4
    assert delta("doopage_events_accepted_total", '{event_type="tag_set",outcome="stored"}') == 1
    assert delta("doopage_events_accepted_total", '{event_type="tag_set",outcome="duplicate"}') == 1
    assert delta("doopage_events_rejected_total", '{reason="invalid"}') == 1
    assert delta("doopage_events_rejected_total", '{reason="media_type"}') == 1
    assert sample_value(after, "doopage_inbox_events", '{status="pending"}') == 1
    for family in (
        "doopage_flush_seconds",
        "doopage_webhook_to_sheet_seconds",
        "doopage_sheets_requests_total",
    ):
        assert f"# TYPE {family.removesuffix('_total')}" in after
    assert TOKEN not in after
