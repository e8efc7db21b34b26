"""Prometheus metrics at /metrics reflect what the service did."""

from __future__ import annotations

import json
import logging
import re
import socket
import time

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


def test_unknown_event_types_share_one_label_so_metrics_stay_small(serve_app):
    base = serve_app(settings_text())
    url = f"{base}/webhooks/doopage/{TOKEN}"
    before = httpx.get(f"{base}/metrics").text
    with httpx.Client() as http:
        for n in range(60):
            body = json.dumps({"company_id": 1, "event_type": f"made_up_{n}", "data": {}})
            assert http.post(url, content=body).json()["status"] == "stored"
    after = httpx.get(f"{base}/metrics").text
    labels = '{event_type="unknown",outcome="stored"}'
    assert (
        sample_value(after, "doopage_events_accepted_total", labels)
        - sample_value(before, "doopage_events_accepted_total", labels)
        == 60
    )
    assert "made_up_" not in after
    assert len(after) < len(before) + 200


def test_a_client_gone_mid_body_is_counted_as_client_disconnect_and_not_logged_as_an_error(serve_app, caplog):
    base = serve_app(settings_text())
    host, port = base.removeprefix("http://").split(":")
    before = httpx.get(f"{base}/metrics").text
    with caplog.at_level(logging.DEBUG), socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            f"POST /webhooks/doopage/{TOKEN} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            'Content-Length: 1000\r\n\r\n{"company_id": 1,'.encode()
        )
        time.sleep(0.2)  # the route is reading the body when the client goes
    deadline = time.monotonic() + 10
    while True:
        after = httpx.get(f"{base}/metrics").text
        if sample_value(after, "doopage_events_rejected_total", '{reason="client_disconnect"}') or (
            time.monotonic() > deadline
        ):
            break
        time.sleep(0.05)

    def delta(reason: str) -> float:
        labels = f'{{reason="{reason}"}}'
        return sample_value(after, "doopage_events_rejected_total", labels) - sample_value(
            before, "doopage_events_rejected_total", labels
        )

    assert delta("client_disconnect") == 1
    assert delta("too_large") == 0
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
