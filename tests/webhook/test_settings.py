"""Settings mistakes stop start-up with the file, the path inside it and the reason."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from connector.cli import main
from connector.errors import ConfigError
from connector.settings import load_settings, parse_settings

ENDPOINT = """
[[endpoints]]
name = "main"
token = "abcdefghijklmnopqrstuvwx"
validation_key = "key"
"""


def test_example_config_is_valid():
    settings = load_settings("config/example.toml")
    assert settings.endpoints[0].name == "main"
    assert settings.server.body_limit == 256 * 1024


@pytest.mark.parametrize(
    ("text", "path", "reason"),
    [
        ("[server]\nprot = 8080\n" + ENDPOINT, "server", "unknown field `prot`"),
        ("[server]\nport = 70000\n" + ENDPOINT, "server.port", "<= 65535"),
        ("[server]\nport = '8080'\n" + ENDPOINT, "server.port", "Expected `int`, got `str`"),
        (ENDPOINT.replace('name = "main"', 'name = "main"\ncompany = [1]'), "endpoints[0]", "unknown field `company`"),
        (ENDPOINT.replace("abcdefghijklmnopqrstuvwx", "short"), "endpoints[0].token", "at least 16 characters"),
        (ENDPOINT.replace("abcdefghijklmnopqrstuvwx", "has spaces in it, 1234"), "endpoints[0].token", "A-Z"),
        (ENDPOINT.replace('"key"', '""'), "endpoints[0].validation_key", "empty"),
        (ENDPOINT.replace('"key"', "42"), "endpoints[0].validation_key", "Expected `str`, got `int`"),
        (ENDPOINT.replace('"key"', '"env:NOT_SET_ANYWHERE"'), "endpoints[0].validation_key", "NOT_SET_ANYWHERE is not set"),
        (ENDPOINT + ENDPOINT.replace('"main"', '"b"'), "endpoints[1].token", "same token"),
        (ENDPOINT + ENDPOINT.replace("abcdefghijklmnopqrstuvwx", "zyxwvutsrqponmlkjihgfedcba"), "endpoints[1].name", "used twice"),
        ("[server]\nport = 8080\n", "", "missing required field `endpoints`"),
        ("endpoints = []", "endpoints", "length >= 1"),
        ("[server\n", "", "not valid TOML"),
    ],
)  # fmt: skip
def test_config_mistake_names_file_path_and_reason(text, path, reason):
    with pytest.raises(ConfigError) as caught:
        parse_settings(text, "/etc/doopage/settings.toml", environ={})
    error = caught.value
    assert (error.file, error.path) == ("/etc/doopage/settings.toml", path)
    assert reason in error.reason
    assert str(error).startswith(
        f"/etc/doopage/settings.toml: {path}" if path else "/etc/doopage/settings.toml"
    )


def test_secrets_from_environment_and_file(tmp_path):
    (tmp_path / "key.txt").write_text("from-a-file\n")
    text = ENDPOINT.replace('"abcdefghijklmnopqrstuvwx"', '"env:DOOPAGE_TOKEN"').replace(
        '"key"', '"file:key.txt"'
    )
    settings = parse_settings(text, str(tmp_path / "s.toml"), environ={"DOOPAGE_TOKEN": "t" * 20})
    endpoint = settings.endpoints[0]
    assert endpoint.token.reveal() == "t" * 20
    assert endpoint.validation_key.reveal() == "from-a-file"
    assert "from-a-file" not in repr(settings)
    assert "t" * 20 not in repr(settings)


def test_data_dir_is_relative_to_the_config_file(tmp_path):
    settings = parse_settings('[server]\ndata_dir = "state"\n' + ENDPOINT, str(tmp_path / "s.toml"))
    assert settings.data_dir == tmp_path / "state"


def test_cli_reports_a_config_mistake_and_exits_2(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[server]\nport = 'x'\n" + ENDPOINT)
    result = CliRunner().invoke(main, ["status", "--config", str(path)])
    assert result.exit_code == 2
    assert f"{path}: server.port: Expected `int`, got `str`" in result.output


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_settings(tmp_path / "nope.toml")


@pytest.mark.parametrize(
    ("text", "suggestion"),
    [
        ("[server]\nprot = 8080\n" + ENDPOINT, "did you mean `port`?"),
        ("[workr]\n" + ENDPOINT, "did you mean `worker`?"),
        ("[sheets]\nrate_limit = { reads_per_minut = 3 }\n" + ENDPOINT, "did you mean `reads_per_minute`?"),
    ],
)
def test_a_misspelt_key_gets_a_suggestion_as_in_the_mapping(text, suggestion):
    with pytest.raises(ConfigError) as error:
        parse_settings(text, "settings.toml")
    assert str(error.value).endswith(suggestion)
