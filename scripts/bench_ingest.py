"""Benchmark: durable webhook intake against a no-op endpoint, side by side in one run.

Starts servers on this machine with the same uvicorn settings:
  * the real service (``doopage-sheets serve``) on the store chosen with ``--store``:
      - ``sqlite`` (the default): `serve` with its default settings: decode, store in the SQLite inbox
        (through its writer process), commit, answer; its sheet worker runs meanwhile as a child process
        (``--no-worker``: not) and flushes the events to the built-in local Sheets server (no Google
        credentials), the shipped mapping routing the posted company to a spreadsheet there;
      - ``postgres``: `serve` on a PostgreSQL store (group commit, ``synchronous_commit`` on), as the
        replicas of deploy/compose.yaml run: intake only (``worker.embedded = false``, the workers run
        elsewhere); one replica, and a pair of replicas on the same database driven at once (half the
        connections each). The database is ``--url`` (or $DOOPAGE_SHEETS_BENCH_PG); without one, the
        machine's Debian cluster is started if needed and a throwaway database made on it, dropped at
        the end. Each pair of server processes gets a fresh migrated schema;
  * a no-op Litestar endpoint that decodes the same body the same way and answers 200 without storing.
Then drives them with the same closed-loop load (``--connections`` keep-alive connections), alternating
between them in short rounds (ABBA) so that noise on this shared machine falls on all alike, and prints
acknowledged events per second, their ratio (target: at least 0.8x), acknowledgement latency percentiles
(target: p99 at most 25 ms), the CPU time each server used per acknowledgement (all its processes: the
inbox writer and the sheet worker count), and PostgreSQL's when it runs on this machine.

The load comes from wrk (the Debian package) when it is on PATH, else from the Python generator
(scripts/loadgen.py); the output says which. Every request is a distinct customer_updated event (its own
timestamp) about one of 5,000 customers, so none is a duplicate of another.

    python scripts/bench_ingest.py                      # 32 connections, 10 s on each server
    python scripts/bench_ingest.py --seconds 4 --rounds 2
    python scripts/bench_ingest.py --generator python   # the Python generator even if wrk is there
    python scripts/bench_ingest.py --store postgres     # the local cluster, a throwaway database
    python scripts/bench_ingest.py --store postgres --url postgresql://user:password@host/db
"""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import click
import uvicorn
from litestar import Litestar, MediaType, Request, get, post
from litestar.datastructures import State
from litestar.params import FromPath
from loadgen import customer_event, run_load, wait_answering
from pgserver import DatabaseCpu, bench_database, scratch_schema, status_counts
from servicekit import PATH, inbox_counts, local_sheets, start_service, stop, write_settings
from wrkload import Numbering, Tally, have_wrk, run_wrk, tally_of

from connector.commands.service import tune_interpreter_for_serving
from connector.events import decode_body
from connector.http_limits import uvicorn_limits
from connector.intake.app import IntakeResult
from connector.settings import ServerSettings
from connector.threaded_server import free_port

BODY_LIMIT = 262144
SPREADSHEET = "bench-ingest"
CUSTOMERS = 5000
TARGET_RATIO = 0.8
TARGET_P99_MS = 25.0
URL_ENV = "DOOPAGE_SHEETS_BENCH_PG"
STORE_URL_ENV = "BENCH_STORE_URL"  # how the replicas' settings get the database URL (env:...)

# One load slice against one port: (port, seconds, connections) -> what it saw.
Slice = Callable[[int, float, int], Tally]


@post("/webhooks/doopage/{token:str}", status_code=200)
async def noop_receive(token: FromPath[str], request: Request[None, None, State]) -> IntakeResult:
    """Read and decode the body like the real route, store nothing."""
    event = decode_body(await request.body()).event
    return IntakeResult("stored", event.event_type)


@get("/healthz", media_type=MediaType.TEXT, sync_to_thread=False)
def noop_health(request: Request[None, None, State]) -> str:
    """Up."""
    return "ok"


@dataclass(frozen=True)
class Server:
    """One server under load: the ports driven at once (a replica each) and its processes' pids."""

    name: str
    ports: tuple[int, ...]
    pids: tuple[int, ...]


@dataclass
class Measured:
    """What a server saw over the rounds, and the CPU seconds it and the database used meanwhile."""

    tally: Tally = field(default_factory=Tally)
    cpu: float = 0.0
    database_cpu: float = 0.0

    def add(self, other: Measured) -> None:
        """Add another run's figures."""
        self.tally = self.tally.merge(other.tally)
        self.cpu += other.cpu
        self.database_cpu += other.database_cpu


def report(name: str, tally: Tally, cpu_seconds: float, database_cpu: float | None = None) -> str:
    """One line of the results table (with the database's CPU per ack when given)."""
    acks = tally.acknowledged

    def per_ack(seconds: float) -> float:
        return 1000 * seconds / acks if acks else float("nan")

    line = (
        f"{name:<26} {tally.per_second:>10.0f} {tally.percentile_ms(50):>9.2f} "
        f"{tally.percentile_ms(99):>9.2f} {acks:>9} {tally.errors:>7} {per_ack(cpu_seconds):>11.3f}"
    )
    return line if database_cpu is None else f"{line} {per_ack(database_cpu):>13.3f}"


def make_slice(use_wrk: bool, threads: int) -> Slice:
    """A load slice from wrk or the Python generator; each port gets request numbers of its own, so no
    two requests ever carry the same event, even when several ports are driven at once."""
    numberings: dict[int, Numbering] = {}
    counter = itertools.count()
    lock = threading.Lock()

    def one_slice(port: int, seconds: float, connections: int) -> Tally:
        if not use_wrk:
            load = run_load("127.0.0.1", port, PATH, customer_event, counter, connections, seconds)
            return tally_of(asyncio.run(load))
        with lock:
            numbering = numberings.setdefault(port, Numbering(next=len(numberings) * 1_000_000_000))
        return run_wrk(
            port,
            PATH,
            round(seconds),
            numbering,
            customers=CUSTOMERS,
            connections=connections,
            threads=threads,
        )

    return one_slice


def drive(one_slice: Slice, ports: Sequence[int], seconds: float, connections: int) -> Tally:
    """Load on these ports at once, the connections split between them; one tally of them all."""
    if len(ports) == 1:
        return one_slice(ports[0], seconds, connections)
    tallies = [Tally() for _ in ports]

    def one(i: int) -> None:
        tallies[i] = one_slice(ports[i], seconds, connections // len(ports))

    workers = [threading.Thread(target=one, args=(i,)) for i in range(len(ports))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    together = Tally(seconds=max(t.seconds for t in tallies))
    for tally in tallies:
        together.acknowledged += tally.acknowledged
        together.errors += tally.errors
        together.latency_us += tally.latency_us
    return together


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
    one_slice: Slice,
    servers: Sequence[Server],
    seconds: float,
    rounds: int,
    connections: int,
    database_cpu: Callable[[], float] | None = None,
) -> list[Measured]:
    """Warm every server up, then alternate measured rounds between them (A B C, C B A, ...); each
    server's tally and the CPU seconds it (and the database, with ``database_cpu``) used meanwhile."""
    for server in servers:
        drive(one_slice, server.ports, 1.0, connections)
    results = [Measured() for _ in servers]
    for i in range(rounds):
        for which in range(len(servers)) if i % 2 == 0 else reversed(range(len(servers))):
            server = servers[which]
            before = sum(process_cpu_seconds(pid) for pid in server.pids)
            database_before = database_cpu() if database_cpu else 0.0
            tally = drive(one_slice, server.ports, seconds / rounds, connections)
            cpu = sum(process_cpu_seconds(pid) for pid in server.pids) - before
            database = database_cpu() - database_before if database_cpu else 0.0
            results[which].add(Measured(tally, cpu, database))
    return results


@contextmanager
def noop_server() -> Iterator[Server]:
    """The no-op endpoint in a process of its own, answering."""
    port = free_port()
    process = subprocess.Popen([sys.executable, __file__, "serve-noop", "--port", str(port)])
    try:
        wait_answering(port, process)
        yield Server("no-op (decode only)", (port,), (process.pid,))
    finally:
        stop(process)


@dataclass
class Options:
    """What every run shares."""

    one_slice: Slice
    seconds: float  # per server, for one pair of server processes
    rounds: int
    connections: int
    worker: bool


def measure_sqlite(options: Options) -> tuple[list[Measured], dict[str, int], int]:
    """`serve` on the SQLite store against the no-op endpoint: each one's figures, the inbox's counts by
    status after the stop, and the Sheets requests its worker made (when it ran)."""
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as folder, ExitStack() as running:
        real_port, sheets_port = free_port(), free_port()
        config = write_settings(
            Path(folder),
            real_port,
            SPREADSHEET,
            server={"body_limit": BODY_LIMIT},
            local_sheets={"port": sheets_port},
            **({} if options.worker else {"worker": {"embedded": False}}),
        )
        real = start_service(config, port=real_port)
        running.callback(stop, real)
        noop = running.enter_context(noop_server())
        sheets = local_sheets(sheets_port)
        running.callback(sheets.close)
        if options.worker:
            sheets.reset_counts()
        durable = Server("durable (SQLite inbox)", (real_port,), (real.pid,))
        results = alternate(
            options.one_slice, (durable, noop), options.seconds, options.rounds, options.connections
        )
        requests = sheets.total_requests() if options.worker else 0
        running.close()
        counts = inbox_counts(Path(folder) / "data")
    if options.worker and not counts.get("done"):
        click.echo("warning: the worker flushed nothing during the run", err=True)
    return results, counts, requests


def measure_postgres(options: Options, url: str, concurrency: int) -> tuple[list[Measured], dict[str, int]]:
    """One `serve` replica and a pair of replicas on the database at ``url`` (a migrated schema),
    against the no-op endpoint: each one's figures, and the events stored by status afterwards."""
    env_url = {STORE_URL_ENV: url}
    with tempfile.TemporaryDirectory(prefix="bench-ingest-pg-") as folder, ExitStack() as running:
        replicas = []
        for i in range(3):
            port = free_port()
            home = Path(folder) / f"replica-{i}"
            home.mkdir()
            config = write_settings(
                home,
                port,
                SPREADSHEET,
                server={"body_limit": BODY_LIMIT},
                worker={"embedded": False},
                store={"url": f"env:{STORE_URL_ENV}", "commit_concurrency": concurrency},
            )
            process = start_service(config, port=port, env=env_url)
            running.callback(stop, process)
            replicas.append((port, process.pid))
        noop = running.enter_context(noop_server())
        one = Server("PostgreSQL, one replica", (replicas[0][0],), (replicas[0][1],))
        two = Server(
            "PostgreSQL, two replicas", tuple(p for p, _ in replicas[1:]), tuple(p for _, p in replicas[1:])
        )
        results = alternate(
            options.one_slice,
            (one, two, noop),
            options.seconds,
            options.rounds,
            options.connections,
            DatabaseCpu(),
        )
    return results, status_counts(url)


@click.group(invoke_without_command=True)
@click.option(
    "--store",
    type=click.Choice(["sqlite", "postgres"]),
    default="sqlite",
    show_default=True,
    help="The store `serve` writes to: the SQLite inbox, or a PostgreSQL database (then one replica "
    "and two replicas are measured).",
)
@click.option(
    "--url",
    envvar=URL_ENV,
    show_envvar=True,
    help="The PostgreSQL database for --store postgres (or env:NAME, file:PATH); without it, the "
    "machine's Debian cluster, a throwaway database.",
)
@click.option(
    "--commit-concurrency",
    "concurrency",
    default=2,
    show_default=True,
    help="store.commit_concurrency of the PostgreSQL replicas.",
)
@click.option("--connections", default=32, show_default=True, help="Concurrent keep-alive connections.")
@click.option("--seconds", default=10.0, show_default=True, help="Measured seconds on each server.")
@click.option(
    "--rounds",
    default=10,
    show_default=True,
    help="Alternations between the servers (short rounds share the machine's moods more evenly).",
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
    default=None,
    help="SQLite: run the sheet worker inside `serve` (the default settings) or not (worker.embedded = "
    "false: intake alone). PostgreSQL replicas always run the intake alone, as in deploy/compose.yaml.",
)
@click.pass_context
def main(
    ctx: click.Context,
    store: str,
    url: str | None,
    concurrency: int,
    connections: int,
    seconds: float,
    rounds: int,
    instances: int,
    generator: str,
    threads: int,
    worker: bool | None,
) -> None:
    """Measure durable intake throughput against a no-op endpoint (SQLite: its worker flushing
    meanwhile; PostgreSQL: one replica and two)."""
    if ctx.invoked_subcommand is not None:
        return
    if store == "postgres" and worker:
        raise click.UsageError("--worker: the PostgreSQL replicas run the intake alone (workers run apart)")
    use_wrk = generator == "wrk" or (generator == "auto" and have_wrk())
    if use_wrk and not have_wrk():
        raise click.UsageError("wrk is not on PATH (apt-get install wrk)")
    rounds_each = max(1, rounds // instances)
    if use_wrk and seconds / instances / rounds_each < 1:
        raise click.UsageError("wrk runs whole seconds: give at least one second per round")
    options = Options(
        make_slice(use_wrk, threads),
        seconds / instances,
        rounds_each,
        connections,
        store == "sqlite" and worker is not False,
    )
    load = f"wrk ({threads} threads)" if use_wrk else "the Python load generator (wrk not used)"
    summary = (
        f"\nload: {load}; {connections} connections, {seconds:g} s on each server in {rounds} "
        f"alternating rounds, over {instances} sets of server processes"
    )
    if store == "sqlite":
        run_sqlite(options, instances, summary)
    else:
        run_postgres(options, instances, summary, url, concurrency)


HEADER = (
    f"{'server':<26} {'acks/s':>10} {'p50 ms':>9} {'p99 ms':>9} {'acks':>9} {'errors':>7} {'cpu ms/ack':>11}"
)


def run_sqlite(options: Options, instances: int, summary: str) -> None:
    """Measure and print the SQLite store against the no-op endpoint."""
    durable, baseline = Measured(), Measured()
    flushed: dict[str, int] = {}
    sheets_requests = 0
    for _ in range(instances):
        (real, noop), counts, requests = measure_sqlite(options)
        durable.add(real)
        baseline.add(noop)
        for status, n in counts.items():
            flushed[status] = flushed.get(status, 0) + n
        sheets_requests += requests
    click.echo(summary)
    if options.worker:
        click.echo(
            "durable: `serve` with default settings, worker embedded, flushing to the built-in local "
            f"Sheets server meanwhile: inbox at stop {dict(sorted(flushed.items()))}, "
            f"{sheets_requests} Sheets API requests during the load"
        )
    else:
        click.echo("durable: `serve` with worker.embedded = false (intake alone, nothing flushed)")
    click.echo(HEADER)
    click.echo(report("durable (SQLite inbox)", durable.tally, durable.cpu))
    click.echo(report("no-op (decode only)", baseline.tally, baseline.cpu))
    print_targets(durable, baseline)


def run_postgres(options: Options, instances: int, summary: str, url: str | None, concurrency: int) -> None:
    """Measure and print the PostgreSQL store (one replica, two) against the no-op endpoint."""
    one, two, baseline = Measured(), Measured(), Measured()
    stored: dict[str, int] = {}
    with bench_database(url) as database:
        for _ in range(instances):
            with scratch_schema(database) as scoped:
                (a, b, noop), counts = measure_postgres(options, scoped, concurrency)
            one.add(a)
            two.add(b)
            baseline.add(noop)
            for status, n in counts.items():
                stored[status] = stored.get(status, 0) + n
    click.echo(summary)
    click.echo(
        "durable: `serve` on PostgreSQL (group commit, synchronous_commit on), intake alone "
        f"(worker.embedded = false), store.commit_concurrency = {concurrency}; stored {stored}"
    )
    click.echo(f"{HEADER} {'db ms/ack':>13}")
    click.echo(report("PostgreSQL, one replica", one.tally, one.cpu, one.database_cpu))
    click.echo(report("PostgreSQL, two replicas", two.tally, two.cpu, two.database_cpu))
    click.echo(report("no-op (decode only)", baseline.tally, baseline.cpu))
    print_targets(one, baseline)
    ratio = two.tally.per_second / one.tally.per_second if one.tally.per_second else float("nan")
    click.echo(f"two replicas / one: {ratio:.2f}x acks/s (both on this machine's cores)")


def print_targets(durable: Measured, baseline: Measured) -> None:
    """The ratio and the p99 against their targets, and the CPU per acknowledgement."""
    ratio = (
        durable.tally.per_second / baseline.tally.per_second if baseline.tally.per_second else float("nan")
    )
    p99 = durable.tally.percentile_ms(99)
    click.echo(
        f"ratio durable / no-op: {ratio:.2f}x (target >= {TARGET_RATIO}x: "
        f"{'met' if ratio >= TARGET_RATIO else 'NOT met'})"
    )
    click.echo(
        f"durable p99: {p99:.2f} ms (target <= {TARGET_P99_MS:g} ms: "
        f"{'met' if p99 <= TARGET_P99_MS else 'NOT met'})"
    )
    if durable.tally.acknowledged and baseline.tally.acknowledged:
        # Server CPU per acknowledgement is far steadier than throughput on a shared machine.
        per_ack = (durable.cpu / durable.tally.acknowledged) / (baseline.cpu / baseline.tally.acknowledged)
        click.echo(f"server CPU per ack, durable (all its processes) / no-op: {per_ack:.2f}x")


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
