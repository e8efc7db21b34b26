"""Benchmark: durable webhook intake against a no-op endpoint, side by side in one run.

Starts two servers on this machine with the same uvicorn settings:
  * the real service (``doopage-sheets serve``): decode, store in the SQLite inbox (through its writer
    process), commit, answer;
  * a no-op Litestar endpoint that decodes the same body the same way and answers 200 without storing.
Then drives both with the same closed-loop load (``--connections`` keep-alive connections), alternating
between them in short rounds so that noise on this shared machine falls on both alike, and prints
acknowledged events per second, their ratio, acknowledgement latency percentiles, and the CPU time each
server used per acknowledgement (all its processes: the inbox writer counts).

    python scripts/bench_ingest.py                      # 32 connections, 10 s on each server
    python scripts/bench_ingest.py --seconds 4 --rounds 2
"""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import click
import uvicorn
from litestar import Litestar, MediaType, Request, get, post
from litestar.datastructures import State
from litestar.params import FromPath
from loadgen import LoadResult, customer_event, run_load, wait_answering

from connector.app import IntakeResult
from connector.commands.service import tune_interpreter_for_serving
from connector.events import decode_body
from connector.http_limits import uvicorn_limits
from connector.settings import ServerSettings
from connector.threaded_server import free_port

TOKEN = "bench-token-0123456789abcdef"
PATH = f"/webhooks/doopage/{TOKEN}"
BODY_LIMIT = 262144


@post("/webhooks/doopage/{token:str}", status_code=200)
async def noop_receive(token: FromPath[str], request: Request[None, None, State]) -> IntakeResult:
    """Read and decode the body like the real route, store nothing."""
    event = decode_body(await request.body()).event
    return IntakeResult("stored", event.event_type)


@get("/healthz", media_type=MediaType.TEXT, sync_to_thread=False)
def noop_health(request: Request[None, None, State]) -> str:
    """Up."""
    return "ok"


def write_config(folder: Path, port: int) -> Path:
    """Settings for the real service, its data in ``folder``.

    The worker is left out (`worker.embedded = false`): this measures intake; what the sheet worker
    costs, in its own process or inside `serve`, is scripts/bench_e2e.py's subject.
    """
    path = folder / "bench.toml"
    path.write_text(
        f'[server]\nport = {port}\ndata_dir = "data"\nbody_limit = {BODY_LIMIT}\nlog_level = "warning"\n'
        f"[worker]\nembedded = false\n"
        f'[[endpoints]]\nname = "bench"\ntoken = "{TOKEN}"\nvalidation_key = "bench-key"\n',
        encoding="utf-8",
    )
    return path


def report(name: str, result: LoadResult) -> str:
    """One line of the results table."""
    errors = sum(n for status, n in result.statuses.items() if status >= 300) + result.transport_errors
    return (
        f"{name:<22} {result.per_second:>10.0f} {result.percentile_ms(50):>9.2f} "
        f"{result.percentile_ms(99):>9.2f} {result.acknowledged:>9} {errors:>7}"
    )


@click.group(invoke_without_command=True)
@click.option("--connections", default=32, show_default=True, help="Concurrent keep-alive connections.")
@click.option("--seconds", default=10.0, show_default=True, help="Measured seconds on each server.")
@click.option(
    "--rounds",
    default=10,
    show_default=True,
    help="Alternations between the two servers (short rounds share the machine's moods more evenly).",
)
@click.option(
    "--instances",
    default=2,
    show_default=True,
    help="Fresh server processes of each kind, the time split between them: two processes of the same "
    "server differ by up to ~5% here (hash seeds, memory layout), so one pair alone can tilt the ratio.",
)
@click.pass_context
def main(ctx: click.Context, connections: int, seconds: float, rounds: int, instances: int) -> None:
    """Measure durable intake throughput against a no-op endpoint."""
    if ctx.invoked_subcommand is not None:
        return
    durable, durable_cpu = LoadResult(seconds=0.0), 0.0
    baseline, baseline_cpu = LoadResult(seconds=0.0), 0.0
    for _ in range(instances):
        (real, real_cpu), (noop, noop_cpu) = measure_pair(
            connections, seconds / instances, max(1, rounds // instances)
        )
        durable, durable_cpu = durable.merge(real), durable_cpu + real_cpu
        baseline, baseline_cpu = baseline.merge(noop), baseline_cpu + noop_cpu
    click.echo(
        f"\n{connections} connections, {seconds:.0f} s on each server in {rounds} alternating rounds, "
        f"over {instances} pairs of server processes"
    )
    header = f"{'server':<22} {'acks/s':>10} {'p50 ms':>9} {'p99 ms':>9} {'acks':>9} {'errors':>7}"
    click.echo(f"{header} {'cpu ms/ack':>11}")
    click.echo(
        f"{report('durable (SQLite inbox)', durable)} {1000 * durable_cpu / durable.acknowledged:>11.3f}"
    )
    click.echo(
        f"{report('no-op (decode only)', baseline)} {1000 * baseline_cpu / baseline.acknowledged:>11.3f}"
    )
    click.echo(f"ratio durable / no-op: {durable.per_second / baseline.per_second:.2f}x")
    # Server CPU per acknowledgement is far steadier than throughput on a shared machine.
    click.echo(
        f"server CPU per ack, durable / no-op: {durable_cpu / durable.acknowledged / (baseline_cpu / baseline.acknowledged):.2f}x"
    )


def measure_pair(
    connections: int, seconds: float, rounds: int
) -> tuple[tuple[LoadResult, float], tuple[LoadResult, float]]:
    """Start both servers, alternate load between them, stop them; each one's result and CPU seconds."""
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as folder:
        real_port, noop_port = free_port(), free_port()
        config = write_config(Path(folder), real_port)
        real = subprocess.Popen([sys.executable, "-m", "connector", "serve", "--config", str(config)])
        noop = subprocess.Popen([sys.executable, __file__, "serve-noop", "--port", str(noop_port)])
        try:
            wait_answering(real_port, real)
            wait_answering(noop_port, noop)
            servers = ((real_port, real.pid), (noop_port, noop.pid))
            return asyncio.run(alternate(servers, connections, seconds, rounds))
        finally:
            for process in (real, noop):
                process.terminate()
                process.wait(timeout=30)


def process_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by every thread of a process and of its running child
    processes, such as the inbox writer (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
        total += sum(process_cpu_seconds(int(child)) for child in (task / "children").read_text().split())
    return total


async def alternate(
    servers: tuple[tuple[int, int], tuple[int, int]], connections: int, seconds: float, rounds: int
) -> tuple[tuple[LoadResult, float], tuple[LoadResult, float]]:
    """Warm both servers ((port, pid) each, the durable one first) up, then alternate measured rounds
    (ABBA order) between them; each server's load result and the CPU seconds it used meanwhile."""
    counter = itertools.count()
    slice_seconds = seconds / rounds
    for port, _ in servers:
        await run_load("127.0.0.1", port, PATH, customer_event, counter, connections, 1.0)
    results = [LoadResult(seconds=0.0), LoadResult(seconds=0.0)]
    cpu = [0.0, 0.0]
    for i in range(rounds):
        for which in (0, 1) if i % 2 == 0 else (1, 0):
            port, pid = servers[which]
            before = process_cpu_seconds(pid)
            result = await run_load(
                "127.0.0.1", port, PATH, customer_event, counter, connections, slice_seconds
            )
            cpu[which] += process_cpu_seconds(pid) - before
            results[which] = results[which].merge(result)
    return (results[0], cpu[0]), (results[1], cpu[1])


@main.command("serve-noop")
@click.option("--port", type=int, required=True)
@click.option(
    "--plain-http",
    is_flag=True,
    help="uvicorn's own HTTP protocol, without the connection limits (for scripts/bench_limits.py).",
)
def serve_noop(port: int, plain_http: bool) -> None:
    """Run the no-op endpoint (used by the benchmarks themselves)."""
    app = Litestar([noop_receive, noop_health], request_max_body_size=BODY_LIMIT, openapi_config=None)
    # The settings `doopage-sheets serve` uses (interpreter and uvicorn), with log_level = "warning" as in
    # the bench config.
    tune_interpreter_for_serving()
    limits = {} if plain_http else uvicorn_limits(ServerSettings())
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        proxy_headers=False,
        log_config=None,
        **limits,
    )


if __name__ == "__main__":
    main()
