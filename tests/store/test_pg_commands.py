"""The command line with a PostgreSQL store: migrate, refusing another schema, status, store copy."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from click.testing import CliRunner

from connector.cli import main
from connector.store.pg_store import PgStore
from connector.store.sqlite_intake import SqliteInbox
from connector.threaded_server import free_port
from tests import settings_files
from tests.store.conftest import record
from tests.store.postgres import fresh_schema


def settings_file(folder: Path, url: str) -> Path:
    """Test settings using the PostgreSQL store at ``url``, read from an environment variable."""
    extra = f'\n[store]\nurl = "env:TEST_STORE_URL"\n\n[console]\nport = {free_port()}\n'
    return settings_files.write_settings(
        folder, "http://127.0.0.1:9", "sheet-1", "pg-commands-token-0123456789", extra
    )


def test_migrate_then_serve_and_worker_start_only_on_the_schema_they_know(tmp_path: Path) -> None:
    runner = CliRunner()
    with fresh_schema(migrated=False) as url:
        config = str(settings_file(tmp_path, url))
        env = {"TEST_STORE_URL": url}
        for command in ("serve", "worker"):
            refused = runner.invoke(main, [command, "--config", config], env=env)
            assert refused.exit_code == 2, refused.output
            assert f"run `doopage-sheets migrate --config {config}`" in refused.output
        migrated = runner.invoke(main, ["migrate", "--config", config], env=env)
        assert migrated.exit_code == 0, migrated.output
        assert "applied 0001_initial.sql" in migrated.output
        again = runner.invoke(main, ["migrate", "--config", config], env=env)
        assert "the schema is up to date" in again.output
        status = runner.invoke(main, ["status", "--config", config], env=env)
        assert status.exit_code == 0, status.output
        assert "No pending events." in status.output
        assert url.split("@")[0] not in status.output  # no user or password shown


def test_store_copy_moves_a_data_directory_into_postgres(tmp_path: Path) -> None:
    async def fill() -> None:
        inbox = SqliteInbox.open(tmp_path / "data")
        try:
            await inbox.put_many([record(n) for n in range(3)])
        finally:
            inbox.close()

    asyncio.run(fill())
    runner = CliRunner()
    with fresh_schema(migrated=False) as url:
        copied = runner.invoke(
            main,
            ["store", "copy", "--from", str(tmp_path / "data"), "--to", "env:TARGET"],
            env={"TARGET": url},
        )
        assert copied.exit_code == 0, copied.output
        assert "events: 3 rows" in copied.output
        store = PgStore.open(url)
        try:
            assert [json.dumps([c.status, c.count]) for c in store.counts()] == ['["pending", 3]']
        finally:
            store.close()
        refused = runner.invoke(main, ["store", "copy", "--from", str(tmp_path / "data"), "--to", url])
        assert refused.exit_code == 1
        assert "already holds events" in refused.output
        assert url not in refused.output
