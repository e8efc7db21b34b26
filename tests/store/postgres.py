"""A PostgreSQL for tests: the server ``scripts/test.sh`` started, one fresh schema per test.

``scripts/test.sh`` exports ``DOOPAGE_SHEETS_TEST_PG`` (a URL to a throwaway database) when the machine
has PostgreSQL, and ``DOOPAGE_SHEETS_TEST_PG_CLUSTER`` (``15 main``) for tests that restart it. Without
one, tests that need it skip with the reason, except under CI (``CI=true``), where that is a failure:
CI installs PostgreSQL, so a skip there means the tests did not run.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

import psycopg
import pytest

from connector.store.pg_schema import migrate

URL_ENV = "DOOPAGE_SHEETS_TEST_PG"
CLUSTER_ENV = "DOOPAGE_SHEETS_TEST_PG_CLUSTER"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI must run the PostgreSQL tests)")
    pytest.skip(reason)


def server_url() -> str:
    """The test server's URL, or skip (fail under CI) saying why there is none."""
    url = os.environ.get(URL_ENV)
    if not url:
        _unavailable(
            f"no PostgreSQL to test against: {URL_ENV} is not set (scripts/test.sh sets it when the"
            " machine has the postgresql package)"
        )
    assert url is not None
    return url


def in_schema(url: str, schema: str) -> str:
    """The URL with ``schema`` as the search path: every table the store makes or uses is in it."""
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options={quote(f'-c search_path={schema}')}"


@contextmanager
def fresh_schema(migrated: bool = True) -> Iterator[str]:
    """A URL whose tables live in a new, empty schema (migrated unless told not to), dropped afterwards."""
    url = server_url()
    schema = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        scoped = in_schema(url, schema)
        if migrated:
            migrate(scoped)
        yield scoped
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def restart_server() -> None:
    """Restart the test server (``pg_ctlcluster VERSION NAME restart``), or skip saying why not."""
    cluster = os.environ.get(CLUSTER_ENV)
    if not cluster:
        _unavailable(f"{CLUSTER_ENV} is not set: this test restarts the server scripts/test.sh started")
    assert cluster is not None
    version, name = cluster.split()
    subprocess.run(["pg_ctlcluster", version, name, "restart"], check=True, capture_output=True)
