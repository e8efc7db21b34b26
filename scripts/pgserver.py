"""A PostgreSQL for the benchmarks: the one given, or the machine's own Debian cluster.

* :func:`bench_database`: the URL given (``env:NAME`` and ``file:PATH`` as in the settings), or else the
  first cluster of Debian's ``postgresql`` package, started if it is down (``pg_ctlcluster``, as
  scripts/test.sh does: PostgreSQL refuses to run as root, the Debian tools switch to the ``postgres``
  user), with a throwaway role and database dropped at the end;
* :func:`scratch_schema`: a migrated schema of its own in that database, dropped afterwards;
* :class:`DatabaseCpu`: the CPU time PostgreSQL's processes on this machine have used.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import click
import psycopg

from connector.settings import resolve_secret
from connector.store.pg_schema import migrate


def as_postgres(command: list[str]) -> list[str]:
    """A command run as the ``postgres`` user (root switches with runuser, others through sudo)."""
    if os.getuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return ["sudo", "-n", "-u", "postgres", "--", *command]


def local_cluster() -> tuple[str, str, int]:
    """The first Debian cluster (version, name, port), started if it was down; ClickException if none."""
    if shutil.which("pg_lsclusters") is None:
        raise click.ClickException(
            "no PostgreSQL URL given (--url or DOOPAGE_SHEETS_BENCH_PG) and no local PostgreSQL "
            "(Debian: apt-get install postgresql)"
        )
    listing = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True, check=True)
    if not listing.stdout.split():
        raise click.ClickException("PostgreSQL is installed but has no cluster (pg_createcluster makes one)")
    version, name, port, status = listing.stdout.split()[:4]
    if status != "online":
        start = ["pg_ctlcluster", version, name, "start"]
        subprocess.run(
            start if os.getuid() == 0 else ["sudo", "-n", *start], capture_output=True, check=False
        )
    return version, name, int(port)


def psql(port: int, script: str) -> None:
    """Run SQL as the postgres superuser on the local cluster."""
    done = subprocess.run(
        as_postgres(["psql", "-q", "-p", str(port), "-v", "ON_ERROR_STOP=1"]),
        input=script,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise click.ClickException(f"psql on the local cluster failed: {done.stderr.strip()}")


@contextmanager
def bench_database(url: str | None) -> Iterator[str]:
    """The database to measure on: ``url`` (resolved like a setting), or a throwaway database on the
    local cluster, dropped with its role afterwards."""
    if url:
        yield resolve_secret(url, os.environ, Path.cwd())
        return
    version, cluster, port = local_cluster()
    name = f"doopage_sheets_bench_{os.getpid()}"
    password = secrets.token_hex(16)
    psql(port, f"CREATE ROLE {name} LOGIN PASSWORD '{password}';\nCREATE DATABASE {name} OWNER {name};\n")
    click.echo(f"PostgreSQL {version}/{cluster} on port {port}: throwaway database {name}")
    try:
        yield f"postgresql://{name}:{password}@127.0.0.1:{port}/{name}"
    finally:
        psql(port, f"DROP DATABASE IF EXISTS {name} WITH (FORCE);\nDROP ROLE IF EXISTS {name};\n")


@contextmanager
def scratch_schema(database: str) -> Iterator[str]:
    """The database's URL scoped to a new migrated schema (its search path), dropped afterwards."""
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        scoped = f"{database}{'&' if '?' in database else '?'}options={quote(f'-c search_path={schema}')}"
        migrate(scoped)
        yield scoped
    finally:
        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def status_counts(url: str) -> dict[str, int]:
    """Stored events by status in the store at ``url``."""
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT status, COUNT(*) FROM events GROUP BY status").fetchall()
    return {status: count for status, count in rows}


class DatabaseCpu:
    """CPU seconds PostgreSQL's processes on this machine have used since this object was made (0 if the
    server runs elsewhere). Called again and again: a backend that ends between two calls loses only
    what it used since the last one, and one that starts counts whole."""

    def __init__(self) -> None:
        self._last = _postgres_cpu()
        self._total = 0.0

    def __call__(self) -> float:
        now = _postgres_cpu()
        self._total += sum(max(0.0, cpu - self._last.get(pid, 0.0)) for pid, cpu in now.items())
        self._last = now
        return self._total


def _postgres_cpu() -> dict[int, float]:
    """pid -> CPU time (user + system) of every process named ``postgres`` (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    found: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "comm").read_text().strip() == "postgres":
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                found[int(entry.name)] = (int(fields[11]) + int(fields[12])) / ticks
        except OSError:
            continue
    return found
