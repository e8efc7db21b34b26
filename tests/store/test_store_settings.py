"""The [store] table of the settings: a PostgreSQL URL, checked at start-up, kept secret."""

from __future__ import annotations

import pytest

from connector.errors import ConfigError
from connector.settings import parse_settings

BASE = '[[endpoints]]\nname = "main"\ntoken = "store-settings-token-0123"\nvalidation_key = "key"\n'


def test_no_store_table_means_the_sqlite_file() -> None:
    assert parse_settings(BASE, "settings.toml").store is None


def test_the_url_is_a_secret_read_from_the_environment_and_redacted_from_logs() -> None:
    environ = {"STORE_URL": "postgresql://doopage:s3cret-pw@db.internal:5432/doopage"}
    settings = parse_settings(BASE + '[store]\nurl = "env:STORE_URL"\n', "settings.toml", environ)
    assert settings.store is not None
    assert settings.store.url.reveal() == environ["STORE_URL"]
    assert "s3cret-pw" not in repr(settings)
    assert {"s3cret-pw", environ["STORE_URL"]} <= set(settings.secret_values())


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("mysql://db/doopage", "not a PostgreSQL URL"),
        ("postgresql://db:port/doopage", "the port in the URL is not a number"),
        ("postgresql://db", "the URL names no database"),
    ],
)
def test_a_wrong_url_stops_start_up_with_the_path_and_the_reason_but_not_the_url(
    url: str, reason: str
) -> None:
    with pytest.raises(ConfigError, match=reason) as caught:
        parse_settings(BASE + f'[store]\nurl = "{url}"\n', "settings.toml")
    assert "store.url" in str(caught.value)
    assert url not in str(caught.value)
