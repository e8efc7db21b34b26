"""`serve` refuses unusable Google credentials before it starts anything, with the file, path and reason."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from connector.threaded_server import free_port


def test_a_missing_service_account_file_stops_serve_before_it_listens(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "settings.toml"
    config.write_text(
        f'[server]\nport = {port}\ndata_dir = "data"\n[console]\nport = {free_port()}\n'
        '[sheets]\ncredentials_file = "missing.json"\n'
        '[[endpoints]]\nname = "shop"\ntoken = "shop-token-0123456789abcdef"\nvalidation_key = "k"\n',
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, "-m", "connector", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "configuration error:" in done.stderr
    assert "sheets.credentials_file" in done.stderr
    assert "missing.json" in done.stderr
    assert "Traceback" not in done.stderr
    assert "started" not in done.stderr  # neither the service nor its worker child
