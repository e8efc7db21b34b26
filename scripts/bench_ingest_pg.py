"""Benchmark: durable intake on PostgreSQL against a no-op endpoint, and two replicas against one (wrk).

Starts, on this machine, a no-op Litestar endpoint (decodes the body like the real route, stores
nothing), one ``doopage-sheets serve`` on a PostgreSQL store, and a pair of replicas on the same store;
drives each with wrk (a new event in every request, so nothing is a duplicate) in alternating rounds, and
prints acknowledged requests per second, latency percentiles and the ratios side by side. The two
replicas are driven by two wrk processes at once, half the connections each; their p99 is the worse of
the two. The database is the one of ``--url`` (a fresh schema, dropped at the end).

    python scripts/bench_ingest_pg.py --url postgresql://user:password@127.0.0.1/db
    python scripts/bench_ingest_pg.py --url env:DATABASE_URL --seconds 5 --rounds 2
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import click
import psycopg
import uvicorn
from litestar import Litestar, MediaType, Request, get, post
from litestar.datastructures import State
from litestar.params import FromPath
from loadgen import wait_answering

from connector.commands.service import tune_interpreter_for_serving
from connector.events import decode_body
from connector.intake.app import IntakeResult
from connector.settings import resolve_secret
from connector.store.pg_schema import migrate
from connector.threaded_server import free_port

TOKEN = "bench-token-0123456789abcdef"
PATH = f"/webhooks/doopage/{TOKEN}"
BODY_LIMIT = 262144

# wrk's request generator: a distinct customer_updated event per request (thread id and a counter make
# the timestamp unique; the base, passed after `--`, keeps runs apart).
WRK_SCRIPT = """
local counter = 0
local threads = 0
local base = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end
function init(args)
  base = tonumber(args[1])
end
function request()
  counter = counter + 1
  local n = counter * 64 + tid
  local body = string.format(
    '{"company_id":1,"event_type":"customer_updated","timestamp":%d,'
    .. '"data":{"customer":{"id":%d,"name":"Customer %d"}}}', base + n, n % 5000 + 1, n)
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
"""


@post("/webhooks/doopage/{token:str}", status_code=200)
async def noop_receive(token: FromPath[str], request: Request[None, None, State]) -> IntakeResult:
    """Read and decode the body like the real route, store nothing."""
    event = decode_body(await request.body()).event
    return IntakeResult("stored", event.event_type)


@get("/healthz", media_type=MediaType.TEXT, sync_to_thread=False)
def noop_health(request: Request[None, None, State]) -> str:
    """Up."""
    return "ok"


@dataclass
class Run:
    """What wrk measured on one server (or the sum over replicas), and the CPU seconds used meanwhile by
    the servers and by PostgreSQL."""

    requests: int = 0
    seconds: float = 0.0
    errors: int = 0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    server_cpu: float = 0.0
    database_cpu: float = 0.0

    @property
    def per_second(self) -> float:
        return (self.requests - self.errors) / self.seconds if self.seconds else 0.0


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def parse_wrk(output: str, seconds: float) -> Run:
    """Requests, non-2xx answers and latency percentiles from wrk --latency output."""

    def percentile(p: str) -> float:
        match = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
        return float(match.group(1)) * _UNITS[match.group(2)] if match else float("nan")

    total = re.search(r"(\d+) requests in", output)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    failed = int(errors.group(1)) if errors else 0
    if socket_errors:
        failed += sum(int(n) for n in socket_errors.groups())
    return Run(int(total.group(1)) if total else 0, seconds, failed, percentile("50"), percentile("99"))


def wrk(ports: list[int], connections: int, seconds: float, script: Path, base: int) -> Run:
    """Drive these ports at once (the connections split between them); the summed result."""
    per_port = max(1, connections // len(ports))
    processes = [
        subprocess.Popen(
            [
                "wrk",
                "-t1",
                f"-c{per_port}",
                f"-d{seconds:.0f}s",
                "--latency",
                "-s",
                str(script),
                f"http://127.0.0.1:{port}{PATH}",
                "--",
                str(base + i * 100_000_000),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for i, port in enumerate(ports)
    ]
    runs = [parse_wrk(process.communicate()[0], seconds) for process in processes]
    return Run(
        sum(r.requests for r in runs),
        seconds,
        sum(r.errors for r in runs),
        max(r.p50_ms for r in runs),
        max(r.p99_ms for r in runs),
    )


def merge(a: Run, b: Run) -> Run:
    """Two rounds of one server as one (percentiles: the worse round's)."""
    return Run(
        a.requests + b.requests,
        a.seconds + b.seconds,
        a.errors + b.errors,
        max(a.p50_ms, b.p50_ms),
        max(a.p99_ms, b.p99_ms),
        a.server_cpu + b.server_cpu,
        a.database_cpu + b.database_cpu,
    )


def cpu_seconds(pids: list[int]) -> float:
    """CPU time (user + system) used so far by these processes (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def database_pids() -> list[int]:
    """The PostgreSQL server's processes on this machine (none if it runs elsewhere)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def measured(
    ports: list[int], pids: list[int], connections: int, seconds: float, script: Path, base: int
) -> Run:
    """One wrk round on these servers, with the CPU they and PostgreSQL used during it."""
    database = database_pids()
    before = cpu_seconds(pids), cpu_seconds(database)
    run = wrk(ports, connections, seconds, script, base)
    run.server_cpu = cpu_seconds(pids) - before[0]
    run.database_cpu = cpu_seconds(database) - before[1]
    return run


def write_config(folder: Path, port: int, concurrency: int) -> Path:
    """Settings for one replica: the intake only (no worker), on the PostgreSQL store."""
    path = folder / f"bench-{port}.toml"
    path.write_text(
        f'[server]\nport = {port}\ndata_dir = "data-{port}"\nbody_limit = {BODY_LIMIT}\nlog_level = "warning"\n'
        f"[worker]\nembedded = false\n"
        f'[store]\nurl = "env:BENCH_STORE_URL"\ncommit_concurrency = {concurrency}\n'
        f'[[endpoints]]\nname = "bench"\ntoken = "{TOKEN}"\nvalidation_key = "bench-key"\n',
        encoding="utf-8",
    )
    return path


@click.group(invoke_without_command=True)
@click.option(
    "--url",
    default="env:DOOPAGE_SHEETS_TEST_PG",
    show_default=True,
    help="The PostgreSQL database (or env:NAME).",
)
@click.option("--connections", default=32, show_default=True, help="Concurrent keep-alive connections.")
@click.option("--seconds", default=5.0, show_default=True, help="Seconds of each round on each server.")
@click.option("--rounds", default=3, show_default=True, help="Alternating rounds over the three servers.")
@click.option(
    "--commit-concurrency", "concurrency", default=2, show_default=True, help="store.commit_concurrency."
)
@click.pass_context
def main(
    ctx: click.Context, url: str, connections: int, seconds: float, rounds: int, concurrency: int
) -> None:
    """Measure durable intake on PostgreSQL against a no-op endpoint, and two replicas against one."""
    if ctx.invoked_subcommand is not None:
        return
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    database = resolve_secret(url, os.environ, Path.cwd())
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    scoped = f"{database}{'&' if '?' in database else '?'}options={quote(f'-c search_path={schema}')}"
    try:
        migrate(scoped)
        results = measure(scoped, connections, seconds, rounds, concurrency)
    finally:
        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
    noop, one, two = results
    click.echo(
        f"\nwrk, {connections} connections, {rounds} rounds of {seconds:.0f} s on each server,"
        f" commit_concurrency = {concurrency}"
    )
    click.echo(
        f"{'server':<26} {'acks/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'errors':>7}"
        f" {'server cpu ms/ack':>18} {'postgres cpu ms/ack':>20}"
    )
    for name, run in (
        ("no-op (decode only)", noop),
        ("PostgreSQL, one replica", one),
        ("PostgreSQL, two replicas", two),
    ):
        acks = max(run.requests - run.errors, 1)
        click.echo(
            f"{name:<26} {run.per_second:>8.0f} {run.p50_ms:>7.2f} {run.p99_ms:>7.2f} {run.errors:>7}"
            f" {1000 * run.server_cpu / acks:>18.3f} {1000 * run.database_cpu / acks:>20.3f}"
        )
    click.echo(f"ratio one replica / no-op: {one.per_second / noop.per_second:.2f}x")
    click.echo(f"ratio two replicas / one: {two.per_second / one.per_second:.2f}x")


def measure(
    url: str, connections: int, seconds: float, rounds: int, concurrency: int
) -> tuple[Run, Run, Run]:
    """Start the servers, alternate the rounds between them, stop them."""
    env = {**os.environ, "BENCH_STORE_URL": url}
    with tempfile.TemporaryDirectory(prefix="bench-pg-") as folder:
        script = Path(folder) / "events.lua"
        script.write_text(WRK_SCRIPT, encoding="utf-8")
        noop_port, ports = free_port(), [free_port(), free_port(), free_port()]
        processes = [subprocess.Popen([sys.executable, __file__, "serve-noop", "--port", str(noop_port)])]
        for port in ports:
            config = write_config(Path(folder), port, concurrency)
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "connector", "serve", "--config", str(config)], env=env
                )
            )
        try:
            wait_answering(noop_port, processes[0])
            for port, process in zip(ports, processes[1:], strict=True):
                wait_answering(port, process)
            servers = [[noop_port], [ports[0]], ports[1:]]
            pids = [[processes[0].pid], [processes[1].pid], [processes[2].pid, processes[3].pid]]
            base = 1_700_000_000_000 + int(time.time()) % 1000 * 1_000_000_000
            for port_group in servers:  # warm-up
                wrk(port_group, connections, 1, script, base)
                base += 500_000_000
            runs = [Run(), Run(), Run()]
            for i in range(rounds):
                order = range(3) if i % 2 == 0 else reversed(range(3))
                for which in order:
                    round_run = measured(servers[which], pids[which], connections, seconds, script, base)
                    runs[which] = merge(runs[which], round_run)
                    base += 500_000_000
            return runs[0], runs[1], runs[2]
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(timeout=30)


@main.command("serve-noop")
@click.option("--port", type=int, required=True)
def serve_noop(port: int) -> None:
    """Run the no-op endpoint (used by the benchmark itself)."""
    app = Litestar([noop_receive, noop_health], request_max_body_size=BODY_LIMIT, openapi_config=None)
    tune_interpreter_for_serving()
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        proxy_headers=False,
        log_config=None,
    )


if __name__ == "__main__":
    main()
