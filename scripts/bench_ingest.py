"""Benchmark: durable webhook intake against a no-op endpoint, side by side in one run.

Starts two servers on this machine with the same uvicorn settings:
  * the real service (``doopage-sheets serve``) with its default settings: decode, store in the SQLite
    inbox (through its writer process), commit, answer; its sheet worker runs meanwhile as a child
    process and flushes the events to the built-in local Sheets server (no Google credentials), the
    shipped mapping routing the posted company to a spreadsheet there;
  * a no-op Litestar endpoint that decodes the same body the same way and answers 200 without storing.
Then drives both with the same closed-loop load (``--connections`` keep-alive connections), alternating
between them in short rounds (ABBA) so that noise on this shared machine falls on both alike, and prints
acknowledged events per second, their ratio (target: at least 0.8x), acknowledgement latency percentiles
(target: p99 at most 25 ms), and the CPU time each server used per acknowledgement (all its processes:
the inbox writer and the sheet worker count).

The load comes from wrk (the Debian package) when it is on PATH, else from the Python generator
(scripts/loadgen.py); the output says which. Every request is a distinct customer_updated event (its own
timestamp) about one of 5,000 customers, so none is a duplicate of another.

    python scripts/bench_ingest.py                      # 32 connections, 10 s on each server
    python scripts/bench_ingest.py --seconds 4 --rounds 2
    python scripts/bench_ingest.py --generator python   # the Python generator even if wrk is there
"""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import click
import uvicorn
from litestar import Litestar, MediaType, Request, get, post
from litestar.datastructures import State
from litestar.params import FromPath
from loadgen import customer_event, run_load, wait_answering
from servicekit import PATH, inbox_counts, start_service, stop, write_settings
from wrkload import Numbering, Tally, have_wrk, run_wrk, tally_of

from connector.commands.service import tune_interpreter_for_serving
from connector.events import decode_body
from connector.intake.app import IntakeResult
from connector.localsheets.testing import LocalSheets
from connector.threaded_server import free_port

BODY_LIMIT = 262144
SPREADSHEET = "bench-ingest"
CUSTOMERS = 5000
TARGET_RATIO = 0.8
TARGET_P99_MS = 25.0

# One load slice against a server: (port, seconds) -> what it saw.
Slice = Callable[[int, float], Tally]


@post("/webhooks/doopage/{token:str}", status_code=200)
async def noop_receive(token: FromPath[str], request: Request[None, None, State]) -> IntakeResult:
    """Read and decode the body like the real route, store nothing."""
    event = decode_body(await request.body()).event
    return IntakeResult("stored", event.event_type)


@get("/healthz", media_type=MediaType.TEXT, sync_to_thread=False)
def noop_health(request: Request[None, None, State]) -> str:
    """Up."""
    return "ok"


def report(name: str, tally: Tally, cpu_seconds: float) -> str:
    """One line of the results table."""
    cpu_ms = 1000 * cpu_seconds / tally.acknowledged if tally.acknowledged else float("nan")
    return (
        f"{name:<24} {tally.per_second:>10.0f} {tally.percentile_ms(50):>9.2f} "
        f"{tally.percentile_ms(99):>9.2f} {tally.acknowledged:>9} {tally.errors:>7} {cpu_ms:>11.3f}"
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
@click.option(
    "--generator",
    type=click.Choice(["auto", "wrk", "python"]),
    default="auto",
    show_default=True,
    help="Load generator: wrk if it is on PATH (auto), or the Python one (scripts/loadgen.py).",
)
@click.option("--threads", default=2, show_default=True, help="wrk threads.")
@click.option(
    "--worker/--no-worker",
    default=True,
    show_default=True,
    help="Run the sheet worker inside `serve` (the default settings) or not (worker.embedded = false: "
    "intake alone).",
)
@click.pass_context
def main(
    ctx: click.Context,
    connections: int,
    seconds: float,
    rounds: int,
    instances: int,
    generator: str,
    threads: int,
    worker: bool,
) -> None:
    """Measure durable intake throughput (worker flushing meanwhile) against a no-op endpoint."""
    if ctx.invoked_subcommand is not None:
        return
    use_wrk = generator == "wrk" or (generator == "auto" and have_wrk())
    if use_wrk and not have_wrk():
        raise click.UsageError("wrk is not on PATH (apt-get install wrk)")
    rounds_each = max(1, rounds // instances)
    if use_wrk and seconds / instances / rounds_each < 1:
        raise click.UsageError("wrk runs whole seconds: give at least one second per round")
    numbering = Numbering()
    counter = itertools.count()

    def one_slice(port: int, slice_seconds: float) -> Tally:
        if use_wrk:
            return run_wrk(
                port,
                PATH,
                round(slice_seconds),
                numbering,
                customers=CUSTOMERS,
                connections=connections,
                threads=threads,
            )
        return tally_of(
            asyncio.run(
                run_load("127.0.0.1", port, PATH, customer_event, counter, connections, slice_seconds)
            )
        )

    durable, durable_cpu, baseline, baseline_cpu = Tally(), 0.0, Tally(), 0.0
    flushed: dict[str, int] = {}
    sheets_requests = 0
    for _ in range(instances):
        pair = measure_pair(one_slice, seconds / instances, rounds_each, worker)
        (real, real_cpu), (noop, noop_cpu), counts, requests = pair
        durable, durable_cpu = durable.merge(real), durable_cpu + real_cpu
        baseline, baseline_cpu = baseline.merge(noop), baseline_cpu + noop_cpu
        for status, n in counts.items():
            flushed[status] = flushed.get(status, 0) + n
        sheets_requests += requests
    load = f"wrk ({threads} threads)" if use_wrk else "the Python load generator (wrk not used)"
    click.echo(
        f"\nload: {load}; {connections} connections, {seconds:g} s on each server in {rounds} "
        f"alternating rounds, over {instances} pairs of server processes"
    )
    if worker:
        click.echo(
            "durable: `serve` with default settings, worker embedded, flushing to the built-in local "
            f"Sheets server meanwhile: inbox at stop {dict(sorted(flushed.items()))}, "
            f"{sheets_requests} Sheets API requests during the load"
        )
    else:
        click.echo("durable: `serve` with worker.embedded = false (intake alone, nothing flushed)")
    header = f"{'server':<24} {'acks/s':>10} {'p50 ms':>9} {'p99 ms':>9} {'acks':>9} {'errors':>7}"
    click.echo(f"{header} {'cpu ms/ack':>11}")
    click.echo(report("durable (SQLite inbox)", durable, durable_cpu))
    click.echo(report("no-op (decode only)", baseline, baseline_cpu))
    ratio = durable.per_second / baseline.per_second if baseline.per_second else float("nan")
    p99 = durable.percentile_ms(99)
    click.echo(
        f"ratio durable / no-op: {ratio:.2f}x (target >= {TARGET_RATIO}x: "
        f"{'met' if ratio >= TARGET_RATIO else 'NOT met'})"
    )
    click.echo(
        f"durable p99: {p99:.2f} ms (target <= {TARGET_P99_MS:g} ms: "
        f"{'met' if p99 <= TARGET_P99_MS else 'NOT met'})"
    )
    if durable.acknowledged and baseline.acknowledged:
        # Server CPU per acknowledgement is far steadier than throughput on a shared machine.
        per_ack = (durable_cpu / durable.acknowledged) / (baseline_cpu / baseline.acknowledged)
        click.echo(f"server CPU per ack, durable (all its processes) / no-op: {per_ack:.2f}x")


def measure_pair(
    one_slice: Slice, seconds: float, rounds: int, worker: bool
) -> tuple[tuple[Tally, float], tuple[Tally, float], dict[str, int], int]:
    """Start both servers, alternate load between them, stop them. Each one's tally and CPU seconds,
    the durable inbox's counts by status after the stop, and the Sheets requests its worker made
    (``worker``: `serve` runs its sheet worker, the default)."""
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as folder:
        real_port, noop_port, sheets_port = free_port(), free_port(), free_port()
        config = write_settings(
            Path(folder),
            real_port,
            SPREADSHEET,
            server={"body_limit": BODY_LIMIT},
            local_sheets={"port": sheets_port},
            **({} if worker else {"worker": {"embedded": False}}),
        )
        real = start_service(config, port=real_port)
        noop = subprocess.Popen([sys.executable, __file__, "serve-noop", "--port", str(noop_port)])
        sheets = LocalSheets(f"http://127.0.0.1:{sheets_port}")
        try:
            wait_answering(noop_port, noop)
            if worker:
                sheets.reset_counts()
            servers = ((real_port, real.pid), (noop_port, noop.pid))
            durable, baseline = alternate(one_slice, servers, seconds, rounds)
            requests = sheets.total_requests() if worker else 0
        finally:
            sheets.close()
            stop(real)
            stop(noop)
        counts = inbox_counts(Path(folder) / "data")
        if worker and not counts.get("done"):
            click.echo("warning: the worker flushed nothing during the run", err=True)
        return durable, baseline, counts, requests


def process_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by every thread of a process and of its running child
    processes, such as the inbox writer and the sheet worker (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
        total += sum(process_cpu_seconds(int(child)) for child in (task / "children").read_text().split())
    return total


def alternate(
    one_slice: Slice, servers: tuple[tuple[int, int], tuple[int, int]], seconds: float, rounds: int
) -> tuple[tuple[Tally, float], tuple[Tally, float]]:
    """Warm both servers ((port, pid) each, the durable one first) up, then alternate measured rounds
    (ABBA order) between them; each server's tally and the CPU seconds it used meanwhile."""
    for port, _ in servers:
        one_slice(port, 1.0)
    results = [Tally(), Tally()]
    cpu = [0.0, 0.0]
    for i in range(rounds):
        for which in (0, 1) if i % 2 == 0 else (1, 0):
            port, pid = servers[which]
            before = process_cpu_seconds(pid)
            result = one_slice(port, seconds / rounds)
            cpu[which] += process_cpu_seconds(pid) - before
            results[which] = results[which].merge(result)
    return (results[0], cpu[0]), (results[1], cpu[1])


@main.command("serve-noop")
@click.option("--port", type=int, required=True)
def serve_noop(port: int) -> None:
    """Run the no-op endpoint (used by the benchmark itself)."""
    app = Litestar([noop_receive, noop_health], request_max_body_size=BODY_LIMIT, openapi_config=None)
    # The settings `doopage-sheets serve` uses (interpreter and uvicorn), with log_level = "warning" as in
    # the bench config.
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
