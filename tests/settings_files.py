"""Settings files for tests that run the connector against a local Sheets server."""

from __future__ import annotations

from pathlib import Path

MAPPING = Path(__file__).resolve().parents[1] / "config" / "mapping.example.toml"


def write_settings(
    folder: Path, api_root: str | None, spreadsheet_id: str, token: str, worker: str = "", extra: str = ""
) -> Path:
    """Settings using the shipped default mapping, pointed at ``spreadsheet_id`` on ``api_root`` (None:
    no API root, so the built-in local Sheets server), with a fast retry policy, a budget no test waits
    on, no embedded worker, ``worker`` lines added to it, and ``extra`` TOML at the end."""
    mapping = MAPPING.read_text(encoding="utf-8").replace('"doopage-demo"', f'"{spreadsheet_id}"')
    (folder / "mapping.toml").write_text(mapping, encoding="utf-8")
    path = folder / "settings.toml"
    path.write_text(
        f"""
[server]
data_dir = "data"

[[endpoints]]
name = "main"
token = "{token}"
validation_key = "key"

[mapping]
file = "mapping.toml"

[sheets]
{"" if api_root is None else f'api_root = "{api_root}"'}
retry = {{ max_attempts = 12, max_seconds = 60, base_backoff = 0.01, max_backoff = 0.05 }}
rate_limit = {{ reads_per_minute = 100000, writes_per_minute = 100000, window_seconds = 0.2 }}

[worker]
embedded = false
{worker}
{extra}
""",
        encoding="utf-8",
    )
    return path
