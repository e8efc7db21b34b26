"""Scenarios for the webhook service: settings written to a real file, an app per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from litestar.testing import TestClient

from connector.intake.app import create_app
from connector.settings import Settings, load_settings

TOKEN = "test-token-0123456789abcdef"
OTHER_TOKEN = "other-token-0123456789abcdef"
VALIDATION_KEY = "s3cret-validation-key"
URL = f"/webhooks/doopage/{TOKEN}"
JSON = {"content-type": "application/json"}


def write_config(folder: Path, extra: str = "", companies: str = "") -> Path:
    """A settings file in ``folder`` with two endpoints; ``companies`` restricts the first."""
    path = folder / "settings.toml"
    path.write_text(
        f"""
[server]
data_dir = "data"
body_limit = 262144
{extra}

[worker]
embedded = false  # these tests are about intake alone

[[endpoints]]
name = "main"
token = "{TOKEN}"
validation_key = "{VALIDATION_KEY}"
{companies}

[[endpoints]]
name = "other"
token = "{OTHER_TOKEN}"
validation_key = "another-key"
""",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings with two endpoints accepting every company."""
    return load_settings(write_config(tmp_path))


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """The real app, started (lifespan run) and stopped around the test."""
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def client_for(tmp_path: Path) -> Iterator[Callable[[str], TestClient]]:
    """Build a started app from settings with the given ``companies = [...]`` line on the first endpoint."""
    clients: list[TestClient] = []

    def build(companies: str) -> TestClient:
        test_client = TestClient(create_app(load_settings(write_config(tmp_path, companies=companies))))
        test_client.__enter__()
        clients.append(test_client)
        return test_client

    yield build
    for test_client in clients:
        test_client.__exit__(None, None, None)
