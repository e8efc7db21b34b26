"""DooPage's GET verification request."""

from __future__ import annotations

import pytest

from tests.webhook.conftest import OTHER_TOKEN, URL, VALIDATION_KEY


def test_matching_key_gets_the_bare_challenge_back(client):
    response = client.get(URL, params={"validation_key": VALIDATION_KEY, "challenge_key": "abc-123_XYZ"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text == "abc-123_XYZ"


def test_each_endpoint_checks_its_own_key(client):
    url = f"/webhooks/doopage/{OTHER_TOKEN}"
    assert client.get(url, params={"validation_key": "another-key", "challenge_key": "c"}).text == "c"
    refused = client.get(url, params={"validation_key": VALIDATION_KEY, "challenge_key": "c"})
    assert refused.status_code == 403


@pytest.mark.parametrize("wrong", ["", "s3cret", VALIDATION_KEY + "x", VALIDATION_KEY.upper()])
def test_wrong_key_is_refused_without_echoing_the_challenge(client, wrong):
    response = client.get(URL, params={"validation_key": wrong, "challenge_key": "challenge"})
    assert response.status_code == 403
    assert "validation_key" in response.json()["detail"]
    assert "challenge" not in response.text.replace("validation_key", "")


@pytest.mark.parametrize(
    ("params", "missing"),
    [
        ({"challenge_key": "c"}, "validation_key"),
        ({"validation_key": VALIDATION_KEY}, "challenge_key"),
        ({}, "validation_key"),
    ],
)
def test_missing_parameter_is_named(client, params, missing):
    response = client.get(URL, params=params)
    assert response.status_code == 400
    assert missing in response.json()["detail"]


def test_unknown_token_looks_like_any_unknown_path(client):
    params = {"validation_key": VALIDATION_KEY, "challenge_key": "c"}
    unknown_token = client.get("/webhooks/doopage/not-a-configured-token-123", params=params)
    unknown_path = client.get("/no/such/path", params=params)
    assert unknown_token.status_code == unknown_path.status_code == 404
    assert unknown_token.content == unknown_path.content
    assert unknown_token.headers["content-type"] == unknown_path.headers["content-type"]


def test_token_prefix_is_not_enough(client):
    response = client.get(URL[:-1], params={"validation_key": VALIDATION_KEY, "challenge_key": "c"})
    assert response.status_code == 404


def test_health_and_readiness(client):
    assert client.get("/healthz").text == "ok"
    assert client.get("/readyz").status_code == 200
