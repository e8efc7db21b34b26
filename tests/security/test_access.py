"""Address allow-lists, trusted proxies and basic auth on the webhook routes."""

from __future__ import annotations

import ipaddress

import httpx
import pytest

from connector.intake.access import client_address
from connector.samples import sample_bodies
from tests.security.conftest import KEY, PASSWORD, TOKEN, settings_text

PATH = f"/webhooks/doopage/{TOKEN}"
BODY = sample_bodies()["customer_created"]
JSON = {"content-type": "application/json"}


def test_an_allowed_address_gets_through(serve_app):
    base = serve_app(settings_text('allow_ips = ["127.0.0.0/8"]'))
    assert httpx.post(base + PATH, content=BODY, headers=JSON).status_code == 200
    challenge = httpx.get(base + PATH, params={"validation_key": KEY, "challenge_key": "c"})
    assert challenge.text == "c"


def test_an_address_outside_the_allow_list_sees_an_unknown_path(serve_app):
    base = serve_app(settings_text('allow_ips = ["203.0.113.0/24", "2001:db8::/32"]'))
    refused = httpx.post(base + PATH, content=BODY, headers=JSON)
    unknown = httpx.post(base + "/webhooks/doopage/not-a-token-0123456789", content=BODY, headers=JSON)
    assert refused.status_code == unknown.status_code == 404
    assert refused.content == unknown.content


def test_forwarded_for_is_believed_only_from_a_trusted_proxy(serve_app):
    allow = 'allow_ips = ["203.0.113.7"]'
    untrusted = serve_app(settings_text(allow))
    spoofed = httpx.post(untrusted + PATH, content=BODY, headers={**JSON, "x-forwarded-for": "203.0.113.7"})
    assert spoofed.status_code == 404

    trusted = serve_app(settings_text(allow, 'trusted_proxies = ["127.0.0.1"]'))
    headers = {**JSON, "x-forwarded-for": "198.51.100.1, 203.0.113.7"}
    assert httpx.post(trusted + PATH, content=BODY, headers=headers).status_code == 200


@pytest.mark.parametrize(
    ("peer", "forwarded", "proxies", "expected"),
    [
        ("10.0.0.1", None, [], "10.0.0.1"),
        ("10.0.0.1", "1.2.3.4", [], "10.0.0.1"),  # not a trusted proxy: the header is ignored
        ("10.0.0.1", "1.2.3.4", ["10.0.0.0/8"], "1.2.3.4"),
        ("10.0.0.1", "1.2.3.4, 10.0.0.2", ["10.0.0.0/8"], "1.2.3.4"),  # a chain of our own proxies
        ("10.0.0.1", "9.9.9.9, 1.2.3.4", ["10.0.0.0/8"], "1.2.3.4"),  # the client cannot prepend hops
        ("10.0.0.1", "garbage", ["10.0.0.0/8"], None),
        ("testclient", None, [], None),
    ],
)
def test_client_address(peer, forwarded, proxies, expected):
    networks = [ipaddress.ip_network(p) for p in proxies]
    address = client_address(peer, forwarded, networks)
    assert (str(address) if address else None) == expected


def test_basic_auth_is_required_when_configured(serve_app):
    base = serve_app(settings_text(f'basic_auth = {{ username = "doopage", password = "{PASSWORD}" }}'))
    missing = httpx.post(base + PATH, content=BODY, headers=JSON)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Basic")
    wrong = httpx.post(base + PATH, content=BODY, headers=JSON, auth=("doopage", "nope"))
    assert wrong.status_code == 401
    wrong_user = httpx.post(base + PATH, content=BODY, headers=JSON, auth=("admin", PASSWORD))
    assert wrong_user.status_code == 401
    ok = httpx.post(base + PATH, content=BODY, headers=JSON, auth=("doopage", PASSWORD))
    assert ok.status_code == 200
    # DooPage can carry the credentials in the URL it is given.
    url = base.replace("http://", f"http://doopage:{PASSWORD}@") + PATH
    assert httpx.get(url, params={"validation_key": KEY, "challenge_key": "c"}).text == "c"


def test_basic_auth_does_not_reveal_the_token_to_strangers(serve_app):
    base = serve_app(settings_text(f'basic_auth = {{ username = "doopage", password = "{PASSWORD}" }}'))
    assert (
        httpx.post(base + "/webhooks/doopage/wrong-token-000000000", content=BODY, headers=JSON).status_code
        == 404
    )
