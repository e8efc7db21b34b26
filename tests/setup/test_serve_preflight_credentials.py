"""`serve` refuses unusable Google credentials before it starts anything, with the file, path and reason."""

from __future__ import annotations

from pathlib import Path

from connector.threaded_server import free_port
from tests.webhook.test_startup import assert_refused_before_starting, serve


def test_a_missing_service_account_file_stops_serve_before_it_listens(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "settings.toml"
    config.write_text(
        f'[server]\nport = {port}\ndata_dir = "data"\n[console]\nport = {free_port()}\n'
        '[sheets]\ncredentials_file = "missing.json"\n'
        '[[endpoints]]\nname = "shop"\ntoken = "shop-token-0123456789abcdef"\nvalidation_key = "k"\n',
        encoding="utf-8",
    )
    done = serve(config)
    assert_refused_before_starting(done, "sheets.credentials_file")
    assert "missing.json" in done.stderr
    assert "started" not in done.stderr  # neither the service nor its worker child
