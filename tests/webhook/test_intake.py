"""POSTed events: decoded into the right Struct, stored once, durably."""

from __future__ import annotations

import json
import sqlite3

import msgspec
import pytest

from connector import events as ev
from connector.store.sqlite_schema import inbox_path
from tests.webhook.conftest import JSON, URL


def stored_rows(settings):
    conn = sqlite3.connect(inbox_path(settings.data_dir))
    try:
        return conn.execute(
            "SELECT endpoint, company_id, event_type, event_ms, body, content_key, status FROM events ORDER BY id"
        ).fetchall()
    finally:
        conn.close()


# What each of DooPage's samples must decode to: the Struct and a few field values from its data.
EXPECTED = {
    "customer_created": (ev.CustomerCreated, lambda d: (d.customer.id, d.customer.name) == (1, "DooPage")),
    "customer_updated": (ev.CustomerUpdated, lambda d: (d.customer.id, d.customer.name) == (1, "DooPage")),
    "customer_took": (ev.CustomerTook, lambda d: d.staff == ev.Staff(1, "Doopage staff")),
    "customer_transferred": (
        ev.CustomerTransferred,
        lambda d: d.staff == ev.Staff(1, "Doopage staff") and d.new_staff == ev.Staff(1, "Doopage staff 2"),
    ),
    "customer_closed": (ev.CustomerClosed, lambda d: d.staff == ev.Staff(1, "Doopage staff")),
    "order_created": (ev.OrderCreated, lambda d: (d.order_id, d.created_at) == (1, 1618118040)),
    "order_updated": (
        ev.OrderUpdated,
        lambda d: (
            (d.order_id, d.created_at, d.modified_at, d.picking_status, d.payment_status)
            == (1, 1618118040, 1618118041, "pending", "paid")
        ),
    ),
    "tag_set": (ev.TagSet, lambda d: d.tags == [ev.Tag(1, "tag_name"), ev.Tag(2, "tag 2")]),
    "tag_unset": (ev.TagUnset, lambda d: [t.id for t in d.tags] == [1, 2]),
    "note_changed": (ev.NoteChanged, lambda d: d.note == "Customer note"),
    "customer_pipeline_updated": (
        ev.CustomerPipelineUpdated,
        lambda d: d.pipeline == ev.Pipeline(1, "Re-target") and d.customer.name == "DooPage customer",
    ),
}
WITHOUT_TIMESTAMP = {"tag_set", "tag_unset", "note_changed", "customer_pipeline_updated"}


@pytest.mark.parametrize("event_type", sorted(EXPECTED))
def test_each_sample_is_accepted_and_decoded(client, settings, samples, event_type):
    body = samples[event_type]
    response = client.post(URL, content=body, headers=JSON)
    assert response.status_code == 200
    assert response.json() == {"status": "stored", "event_type": event_type}

    [(endpoint, company_id, stored_type, event_ms, stored_body, key, status)] = stored_rows(settings)
    assert (endpoint, company_id, stored_type, status) == ("main", 1, event_type, "pending")
    assert stored_body == body
    assert event_ms == (None if event_type in WITHOUT_TIMESTAMP else 1618118040123)

    decoded = ev.decode_body(stored_body)
    struct, check = EXPECTED[event_type]
    assert type(decoded.event) is struct
    assert decoded.event.company_id == 1
    assert check(decoded.event.data)
    assert decoded.content_key == key


def test_redelivery_is_stored_once(client, settings, samples):
    body = samples["customer_took"]
    first = client.post(URL, content=body, headers=JSON)
    again = client.post(URL, content=body, headers=JSON)
    assert (first.status_code, again.status_code) == (200, 200)
    assert first.json()["status"] == "stored"
    assert again.json()["status"] == "duplicate"
    assert len(stored_rows(settings)) == 1


def test_same_event_reformatted_is_still_a_duplicate(client, settings, samples):
    document = json.loads(samples["order_updated"])
    compact_reordered = json.dumps(dict(reversed(list(document.items()))), separators=(",", ":"))
    client.post(URL, content=samples["order_updated"], headers=JSON)
    response = client.post(URL, content=compact_reordered.encode(), headers=JSON)
    assert response.json()["status"] == "duplicate"
    assert len(stored_rows(settings)) == 1


def test_different_events_of_the_same_type_are_both_stored(client, settings, samples):
    document = json.loads(samples["customer_created"])
    client.post(URL, content=samples["customer_created"], headers=JSON)
    document["data"]["customer"]["id"] = 2
    client.post(URL, content=json.dumps(document).encode(), headers=JSON)
    assert [row[2] for row in stored_rows(settings)] == ["customer_created", "customer_created"]


def test_unknown_event_type_is_kept_not_lost(client, settings):
    body = b'{"company_id": 7, "event_type": "deal_won", "timestamp": 1700000000000, "data": {"deal": {"id": 3}}}'
    response = client.post(URL, content=body, headers=JSON)
    assert response.status_code == 200
    assert response.json() == {"status": "stored", "event_type": "deal_won"}
    [(_, company_id, event_type, event_ms, stored_body, _, status)] = stored_rows(settings)
    assert (company_id, event_type, event_ms, status) == (7, "deal_won", 1700000000000, "unknown")
    assert stored_body == body


def test_new_fields_from_doopage_are_ignored_but_kept(client, settings, samples):
    document = json.loads(samples["customer_created"])
    document["data"]["customer"]["phone"] = "+84 90 000 0000"
    document["source"] = "zalo"
    body = json.dumps(document).encode()
    assert client.post(URL, content=body, headers=JSON).status_code == 200
    assert stored_rows(settings)[0][4] == body


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json; charset=utf-8",
        "Application/JSON",
        "text/json",
        "application/vnd.doopage+json",
        None,
    ],
)
def test_any_json_content_type_or_none_is_fine(client, samples, content_type):
    headers = {"content-type": content_type} if content_type else {}
    response = client.post(URL, content=samples["customer_created"], headers=headers)
    assert response.status_code == 200
    assert response.json()["status"] == "stored"


def test_company_not_accepted_on_the_endpoint_is_refused_and_not_stored(client_for, samples):
    client = client_for("companies = [5, 6]")
    response = client.post(URL, content=samples["customer_created"], headers=JSON)
    assert response.status_code == 403
    assert "company_id 1" in response.json()["detail"]
    accepted = samples["customer_created"].replace(b'"company_id": 1', b'"company_id": 5')
    assert client.post(URL, content=accepted, headers=JSON).status_code == 200
    assert sum(row.count for row in client.app.state.inbox.counts()) == 1


def test_post_to_unknown_token_is_404_and_not_stored(client, samples):
    response = client.post(
        "/webhooks/doopage/wrong-token-0123456789", content=samples["tag_set"], headers=JSON
    )
    assert response.status_code == 404
    assert client.app.state.inbox.counts() == []


def test_a_tag_set_again_after_its_unset_is_a_new_event(client, settings, samples):
    # tag_set carries no timestamp: the same body can be a genuinely new action.
    for event_type in ("tag_set", "tag_unset", "tag_set"):
        assert client.post(URL, content=samples[event_type], headers=JSON).json()["status"] == "stored"
    assert [row[2] for row in stored_rows(settings)] == ["tag_set", "tag_unset", "tag_set"]


def test_an_untimed_event_repeated_back_to_back_is_a_redelivery(client, settings, samples):
    for body in (samples["note_changed"], samples["note_changed"]):
        client.post(URL, content=body, headers=JSON)
    response = client.post(URL, content=samples["note_changed"], headers=JSON)
    assert response.json()["status"] == "duplicate"
    assert len(stored_rows(settings)) == 1


def test_untimed_repeats_are_judged_per_customer(client, settings, samples):
    other_customer = samples["tag_set"].replace(b'"id": 1,\n      "name": "DooPage customer"', b'"id": 2')
    assert other_customer != samples["tag_set"]
    for body in (samples["tag_set"], other_customer, samples["tag_set"]):
        client.post(URL, content=body, headers=JSON)
    assert len(stored_rows(settings)) == 2  # customer 1's second tag_set repeats its latest


def test_content_key_ignores_spacing_and_key_order():
    a = ev.decode_body(b'{"company_id":1,"event_type":"x","data":{"a":1,"b":[1,2]}}')
    b = ev.decode_body(b'{ "data": {"b": [1, 2], "a": 1}, "event_type": "x", "company_id": 1 }')
    c = ev.decode_body(b'{"company_id":1,"event_type":"x","data":{"a":1,"b":[2,1]}}')
    assert a.content_key == b.content_key != c.content_key


def test_event_structs_round_trip(samples):
    for body in samples.values():
        event = ev.decode_body(body).event
        assert msgspec.json.decode(msgspec.json.encode(event)) == json.loads(body)
