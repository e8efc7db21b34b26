"""Bad input gets a 4xx naming the problem, and nothing is stored."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.samples import sample_bodies
from tests.webhook.conftest import JSON, URL

CREATED = json.loads(sample_bodies()["customer_created"])


def with_data(data: object) -> bytes:
    return json.dumps({**CREATED, "data": data}).encode()


LIMIT = 262144

BAD_BODIES = [
    # (case, body, content type, status, words the message must contain)
    ("truncated JSON", sample_bodies()["customer_created"][:-3], JSON, 400, ["not valid JSON", "truncated"]),
    ("empty body", b"", JSON, 400, ["not valid JSON"]),
    ("not JSON at all", b"company_id=1&event_type=x", JSON, 400, ["not valid JSON"]),
    ("an array instead of an object", b"[]", JSON, 400, ["object", "array"]),
    ("a bare string", b'"customer_created"', JSON, 400, ["object", "str"]),
    ("data missing", json.dumps({**CREATED, "data": None} and {"company_id": 1, "event_type": "customer_created"}).encode(), JSON, 400, ["data"]),
    ("customer.id as a string", with_data({"customer": {"id": "1", "name": "x"}}), JSON, 400, ["$.data.customer.id", "int", "str"]),
    ("customer missing", with_data({}), JSON, 400, ["customer"]),
    ("company_id as a string", json.dumps({**CREATED, "company_id": "1"}).encode(), JSON, 400, ["$.company_id", "int"]),
    ("company_id beyond 64 bits", json.dumps({**CREATED, "company_id": 2**70}).encode(), JSON, 400, ["$.company_id", "<="]),
    ("timestamp before 1970", json.dumps({**CREATED, "timestamp": -1}).encode(), JSON, 400, ["$.timestamp", ">= 0"]),
    ("timestamp as a string", json.dumps({**CREATED, "timestamp": "yesterday"}).encode(), JSON, 400, ["$.timestamp"]),
    ("event_type missing", json.dumps({"company_id": 1, "data": {}}).encode(), JSON, 400, ["event_type"]),
    ("event_type not a string", json.dumps({**CREATED, "event_type": 5}).encode(), JSON, 400, ["$.event_type"]),
    ("event_type with a NUL character", json.dumps({**CREATED, "event_type": "deal\u0000won"}).encode(), JSON, 400, ["$.event_type"]),
    ("tags not a list", json.dumps({"company_id": 1, "event_type": "tag_set", "data": {"customer": {"id": 1}, "tags": "vip"}}).encode(), JSON, 400, ["$.data.tags", "array"]),
    ("invalid UTF-8", b'{"company_id": 1, "event_type": "customer_created", "data": {"customer": {"id": 1, "name": "\xff\xfe"}}}', JSON, 400, ["UTF-8"]),
    ("100k-deep nesting", b"[" * 100_000 + b"]" * 100_000, JSON, 400, ["nested too deeply"]),
    ("deep nesting inside data", b'{"company_id":1,"event_type":"new","data":' + b"[" * 100_000 + b"]" * 100_000 + b"}", JSON, 400, ["nested too deeply"]),
    ("a body just over the limit", b"{" + b" " * (LIMIT - 1) + b"}", JSON, 413, []),
    ("form content type", sample_bodies()["customer_created"], {"content-type": "application/x-www-form-urlencoded"}, 415, ["JSON"]),
    ("text content type", sample_bodies()["customer_created"], {"content-type": "text/plain"}, 415, ["JSON"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "headers", "status", "words"),
    [case[1:] for case in BAD_BODIES],
    ids=[case[0] for case in BAD_BODIES],
)
def test_bad_body_gets_a_clear_4xx_and_nothing_is_stored(client, body, headers, status, words):
    response = client.post(URL, content=body, headers=headers)
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    for word in words:
        assert word in detail
    assert client.app.state.inbox.counts() == []


def test_a_body_exactly_at_the_limit_is_read(client):
    body = sample_bodies()["customer_created"].rstrip()
    padded = body[:-1] + b" " * (LIMIT - len(body)) + b"}"
    assert len(padded) == LIMIT
    assert client.post(URL, content=padded, headers=JSON).status_code == 200


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
event_like = st.fixed_dictionaries(
    {},
    optional={
        "company_id": st.integers() | st.text(max_size=3) | st.none(),
        "event_type": st.sampled_from(sorted(sample_bodies())) | st.text(max_size=12),
        "timestamp": st.integers() | json_values,
        "data": json_values,
    },
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=300))
def test_arbitrary_bytes_never_cause_a_server_error(client, body):
    response = client.post(URL, content=body, headers=JSON)
    assert response.status_code in (200, 400), response.text


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=json_values | event_like)
def test_arbitrary_json_never_causes_a_server_error(client, document):
    response = client.post(URL, content=json.dumps(document).encode(), headers=JSON)
    assert response.status_code in (200, 400), response.text
    if response.status_code == 400:
        assert response.json()["detail"]


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content_type=st.text(max_size=40), body=st.binary(max_size=64))
def test_arbitrary_content_types_never_cause_a_server_error(client, content_type, body):
    try:
        response = client.post(URL, content=body, headers={"content-type": content_type})
    except UnicodeEncodeError:
        return  # not sendable as an HTTP header at all
    assert 200 <= response.status_code < 500, response.text
