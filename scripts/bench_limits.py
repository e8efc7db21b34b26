"""Benchmark: what the connection limits (connector.http_limits) cost per request, side by side in one run.

Starts bench_ingest's no-op endpoint twice: under uvicorn's own httptools protocol, and under the limited
protocol `doopage-sheets serve` uses (header size limit, head and body deadlines); drives both with the
same closed-loop load in alternating rounds and prints requests per second, latency and the server CPU
per request, with their ratios.

    python scripts/bench_limits.py                      # 32 connections, 10 s on each server
    python scripts/bench_limits.py --seconds 4 --rounds 4
"""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
from pathlib import Path

import click
from bench_ingest import alternate, report
from loadgen import customer_event, run_load, wait_answering
from servicekit import PATH
from wrkload import Numbering, Tally, have_wrk, run_wrk, tally_of

from connector.threaded_server import free_port

BENCH_INGEST = str(Path(__file__).with_name("bench_ingest.py"))


@click.command()
@click.option("--connections", default=32, show_default=True, help="Concurrent keep-alive connections.")
@click.option("--seconds", default=10.0, show_default=True, help="Measured seconds on each server.")
@click.option("--rounds", default=10, show_default=True, help="Alternations between the two servers.")
def main(connections: int, seconds: float, rounds: int) -> None:
    """Measure the limited HTTP protocol against uvicorn's own (load from wrk when it is on PATH)."""
    use_wrk = have_wrk()
    if use_wrk and seconds / rounds < 1:
        raise click.UsageError("wrk runs whole seconds: give at least one second per round")
    numbering = Numbering()
    counter = itertools.count()

    def one_slice(port: int, slice_seconds: float) -> Tally:
        if use_wrk:
            return run_wrk(port, PATH, round(slice_seconds), numbering, connections=connections)
        return tally_of(
            asyncio.run(
                run_load("127.0.0.1", port, PATH, customer_event, counter, connections, slice_seconds)
            )
        )

    limited_port, plain_port = free_port(), free_port()
    command = [sys.executable, BENCH_INGEST, "serve-noop", "--port"]
    limited = subprocess.Popen([*command, str(limited_port)])
    plain = subprocess.Popen([*command, str(plain_port), "--plain-http"])
    try:
        wait_answering(limited_port, limited)
        wait_answering(plain_port, plain)
        servers = ((limited_port, limited.pid), (plain_port, plain.pid))
        (with_limits, limits_cpu), (without, plain_cpu) = alternate(one_slice, servers, seconds, rounds)
    finally:
        for process in (limited, plain):
            process.terminate()
            process.wait(timeout=30)
    load = "wrk" if use_wrk else "the Python load generator"
    click.echo(
        f"\nload: {load}; {connections} connections, {seconds:.0f} s on each server in {rounds} alternating"
        " rounds"
    )
    header = f"{'protocol':<24} {'req/s':>10} {'p50 ms':>9} {'p99 ms':>9} {'requests':>9} {'errors':>7}"
    click.echo(f"{header} {'cpu ms/req':>11}")
    limited_per = 1000 * limits_cpu / with_limits.acknowledged
    plain_per = 1000 * plain_cpu / without.acknowledged
    click.echo(report("limited (serve)", with_limits, limits_cpu))
    click.echo(report("uvicorn httptools", without, plain_cpu))
    click.echo(
        f"ratio limited / plain: {with_limits.per_second / without.per_second:.2f}x requests per second"
    )
    click.echo(f"server CPU per request, limited / plain: {limited_per / plain_per:.2f}x")


if __name__ == "__main__":
    main()
