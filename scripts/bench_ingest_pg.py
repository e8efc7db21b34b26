"""Benchmark: durable intake on PostgreSQL against a no-op endpoint, and two replicas against one (wrk).

Starts, on this machine, the no-op endpoint of scripts/bench_ingest.py (decodes the body like the real
route, stores nothing), one ``doopage-sheets serve`` on a PostgreSQL store, and a pair of replicas on
the same store (the intake only: no worker); drives each with wrk (scripts/wrkload.py: a new event in
every request, so nothing is a duplicate) in alternating rounds, and prints acknowledged requests per
second, latency percentiles, the CPU each server and PostgreSQL used per acknowledgement, and the ratios
side by side. The two replicas are driven by two wrk processes at once, half the connections each. The
database is the one of ``--url`` (a fresh schema in it, dropped at the end).

    python scripts/bench_ingest_pg.py --url postgresql://user:password@127.0.0.1/db
    python scripts/bench_ingest_pg.py --url env:DATABASE_URL --seconds 5 --rounds 2
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import click
import psycopg
from bench_ingest import process_cpu_seconds
from loadgen import wait_answering
from wrkload import Numbering, Tally, have_wrk, run_wrk

from connector.settings import resolve_secret
from connector.store.pg_schema import migrate
from connector.threaded_server import free_port

TOKEN = "bench-token-0123456789abcdef"
PATH = f"/webhooks/doopage/{TOKEN}"
BENCH_INGEST = Path(__file__).with_name("bench_ingest.py")
NAMES = ("no-op (decode only)", "PostgreSQL, one replica", "PostgreSQL, two replicas")


def write_config(folder: Path, port: int, concurrency: int) -> Path:
    """Settings for one replica: the intake only (no worker), on the PostgreSQL store."""
    path = folder / f"bench-{port}.toml"
    path.write_text(
        f'[server]\nport = {port}\ndata_dir = "data-{port}"\nlog_level = "warning"\n'
        f"[worker]\nembedded = false\n"
        f'[store]\nurl = "env:BENCH_STORE_URL"\ncommit_concurrency = {concurrency}\n'
        f'[[endpoints]]\nname = "bench"\ntoken = "{TOKEN}"\nvalidation_key = "bench-key"\n',
        encoding="utf-8",
    )
    return path


def database_cpu_seconds() -> float:
    """CPU time used so far by the PostgreSQL server's processes on this machine (0 if elsewhere)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "comm").read_text().strip() == "postgres":
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / ticks
        except OSError:
            continue
    return total


def drive(ports: list[int], seconds: int, numberings: list[Numbering], connections: int) -> Tally:
    """wrk on these ports at once, the connections split between them; one tally of them all."""
    tallies: list[Tally] = [Tally() for _ in ports]

    def one(i: int) -> None:
        tallies[i] = run_wrk(ports[i], PATH, seconds, numberings[i], connections=connections // len(ports))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(ports))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    together = Tally(seconds=max(t.seconds for t in tallies))
    for tally in tallies:
        together.acknowledged += tally.acknowledged
        together.errors += tally.errors
        together.latency_us += tally.latency_us
    return together


@contextmanager
def scratch_schema(database: str) -> Iterator[str]:
    """A migrated schema of its own in the database (its URL), dropped afterwards."""
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


@click.command()
@click.option(
    "--url", default="env:DOOPAGE_SHEETS_TEST_PG", show_default=True, help="The database, or env:NAME."
)
@click.option("--connections", default=32, show_default=True, help="Concurrent keep-alive connections.")
@click.option("--seconds", default=5, show_default=True, help="Seconds of each round on each server.")
@click.option("--rounds", default=3, show_default=True, help="Alternating rounds over the three servers.")
@click.option(
    "--commit-concurrency", "concurrency", default=2, show_default=True, help="store.commit_concurrency."
)
def main(url: str, connections: int, seconds: int, rounds: int, concurrency: int) -> None:
    """Measure durable intake on PostgreSQL against a no-op endpoint, and two replicas against one."""
    if not have_wrk():
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    with scratch_schema(resolve_secret(url, os.environ, Path.cwd())) as scoped:
        results = measure(scoped, connections, seconds, rounds, concurrency)
    click.echo(
        f"\nwrk, {connections} connections, {rounds} rounds of {seconds} s on each server,"
        f" commit_concurrency = {concurrency}"
    )
    click.echo(
        f"{'server':<26} {'acks/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'errors':>7}"
        f" {'server cpu ms/ack':>18} {'postgres cpu ms/ack':>20}"
    )
    for name, (tally, server_cpu, database_cpu) in zip(NAMES, results, strict=True):
        acks = max(tally.acknowledged, 1)
        click.echo(
            f"{name:<26} {tally.per_second:>8.0f} {tally.percentile_ms(50):>7.2f} {tally.percentile_ms(99):>7.2f}"
            f" {tally.errors:>7} {1000 * server_cpu / acks:>18.3f} {1000 * database_cpu / acks:>20.3f}"
        )
    noop, one, two = (tally.per_second for tally, _, _ in results)
    click.echo(f"ratio one replica / no-op: {one / noop:.2f}x (target: at least 0.8x)")
    click.echo(f"ratio two replicas / one: {two / one:.2f}x")


def measure(
    url: str, connections: int, seconds: int, rounds: int, concurrency: int
) -> list[tuple[Tally, float, float]]:
    """Start the servers, alternate the rounds between them, stop them; per server: its tally, and the
    CPU seconds it and PostgreSQL used meanwhile."""
    env = {**os.environ, "BENCH_STORE_URL": url}
    with tempfile.TemporaryDirectory(prefix="bench-pg-") as folder:
        noop_port, ports = free_port(), [free_port(), free_port(), free_port()]
        processes = [
            subprocess.Popen([sys.executable, str(BENCH_INGEST), "serve-noop", "--port", str(noop_port)])
        ]
        for port in ports:
            config = write_config(Path(folder), port, concurrency)
            command = [sys.executable, "-m", "connector", "serve", "--config", str(config)]
            processes.append(subprocess.Popen(command, env=env))
        try:
            for port, process in zip([noop_port, *ports], processes, strict=True):
                wait_answering(port, process)
            servers = [([noop_port], processes[:1]), ([ports[0]], processes[1:2]), (ports[1:], processes[2:])]
            numberings = [Numbering(next=k * 1_000_000_000) for k in range(len(ports))]
            for server_ports, _ in servers:  # warm-up
                drive(server_ports, 1, numberings, connections)
            results = [(Tally(), 0.0, 0.0) for _ in servers]
            for i in range(rounds):
                for which in range(3) if i % 2 == 0 else reversed(range(3)):
                    server_ports, server_processes = servers[which]
                    before = [process_cpu_seconds(p.pid) for p in server_processes], database_cpu_seconds()
                    tally = drive(server_ports, seconds, numberings, connections)
                    server_cpu = sum(process_cpu_seconds(p.pid) for p in server_processes) - sum(before[0])
                    database_cpu = database_cpu_seconds() - before[1]
                    total, cpu, db = results[which]
                    results[which] = (total.merge(tally), cpu + server_cpu, db + database_cpu)
            return results
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(timeout=30)


if __name__ == "__main__":
    main()
