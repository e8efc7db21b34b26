"""Benchmark: what the connection limits (connector.http_limits) cost per request, side by side in one run.

Starts bench_ingest's no-op endpoint twice: under uvicorn's own httptools protocol, and under the limited
protocol `doopage-sheets serve` uses (header size limit, head and body deadlines); drives both with the
same closed-loop load in alternating rounds and prints requests per second, latency and the server CPU
per request, with their ratios.

    python scripts/bench_limits.py                      # 32 connections, 10 s on each server
    python scripts/bench_limits.py --seconds 4 --rounds 4
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
from bench_ingest import Server, alternate, make_slice, report
from loadgen import wait_answering
from wrkload import have_wrk

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
    one_slice = make_slice(use_wrk, threads=2)

    limited_port, plain_port = free_port(), free_port()
    command = [sys.executable, BENCH_INGEST, "serve-noop", "--port"]
    limited = subprocess.Popen([*command, str(limited_port)])
    plain = subprocess.Popen([*command, str(plain_port), "--plain-http"])
    try:
        wait_answering(limited_port, limited)
        wait_answering(plain_port, plain)
        servers = (
            Server("limited (serve)", (limited_port,), (limited.pid,)),
            Server("uvicorn httptools", (plain_port,), (plain.pid,)),
        )
        limited_run, plain_run = alternate(one_slice, servers, seconds, rounds, connections)
    finally:
        for process in (limited, plain):
            process.terminate()
            process.wait(timeout=30)
    load = "wrk" if use_wrk else "the Python load generator"
    click.echo(
        f"\nload: {load}; {connections} connections, {seconds:.0f} s on each server in {rounds} alternating"
        " rounds"
    )
    header = f"{'protocol':<26} {'req/s':>10} {'p50 ms':>9} {'p99 ms':>9} {'requests':>9} {'errors':>7}"
    click.echo(f"{header} {'cpu ms/req':>11}")
    with_limits, without = limited_run.tally, plain_run.tally
    limited_per = 1000 * limited_run.cpu / with_limits.acknowledged
    plain_per = 1000 * plain_run.cpu / without.acknowledged
    click.echo(report("limited (serve)", with_limits, limited_run.cpu))
    click.echo(report("uvicorn httptools", without, plain_run.cpu))
    click.echo(
        f"ratio limited / plain: {with_limits.per_second / without.per_second:.2f}x requests per second"
    )
    click.echo(f"server CPU per request, limited / plain: {limited_per / plain_per:.2f}x")


if __name__ == "__main__":
    main()
