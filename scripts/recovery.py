"""Recovery under load: kill -9 `serve` (or only its sheet worker child), restart, count what was lost.

Starts ``doopage-sheets serve`` with its default settings (worker embedded as a child process, the
built-in local Sheets server, default leases and quota; the shipped mapping routes the posted company)
and sends ``--rate`` customer_created events per second, each a new customer, from a Python sender that
delivers a refused or failed event again after half a second, as a retrying webhook sender does. After
``--kill-after`` seconds it kills, with SIGKILL:

* ``serve``: the whole service; it is started again ``--down-seconds`` later on the same settings and
  data directory (its orphaned children stop on their own once their input pipe closes);
* ``worker``: only the sheet worker child of ``serve`` (the child whose command line names
  ``connector.sync.supervisor``); ``serve`` starts another by itself.

Sending goes on to the end. Then the Customers worksheet is polled through the local Sheets server's
admin route until every acknowledged event's customer has its row, and the script prints, per
scenario: the acknowledged events, the events lost (acknowledged but not in the sheet at the end), the
duplicate rows (of Customers, keyed by customer, and of the Events log, keyed by event), and the seconds
from the last delivery until the sheet was exact (target: at most 10 s).

    python scripts/recovery.py                          # both scenarios, 200 events/s for 30 s
    python scripts/recovery.py --scenario worker --seconds 20 --kill-after 8
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import requests
from loadgen import SendResult, created_event, send_until_acknowledged
from servicekit import (
    PATH,
    column,
    inbox_counts,
    log_tail,
    start_service,
    stop,
    worker_child,
    write_settings,
)

from connector.localsheets.testing import LocalSheets, LocalSheetsAdminError
from connector.threaded_server import free_port

SPREADSHEET = "recovery"
TARGET_SECONDS = 10.0
POLL_SECONDS = 0.1


@dataclass
class Outcome:
    """What one scenario ended with."""

    scenario: str
    killed: str
    restart: str
    sent: SendResult
    lost: int
    customer_duplicates: int
    event_duplicates: int
    exact_after: float | None  # seconds from the last delivery; None: never within the timeout
    inbox: dict[str, int]
    intake_gap: float  # the longest time without an acknowledgement, in seconds
    behind_after_kill: float | None  # seconds from the kill until the sheet showed all acked before it


def sheet_ids(sheets: LocalSheets, title: str, header: str) -> list[Any] | None:
    """A column of the sheet, or None while the local Sheets server is not answering (it restarts with
    the worker)."""
    try:
        return column(sheets, SPREADSHEET, title, header)
    except (requests.RequestException, LocalSheetsAdminError):
        return None


def duplicates(values: list[Any]) -> int:
    """Rows beyond the first of each key (blank cells left out)."""
    return sum(n - 1 for value, n in Counter(values).items() if value != "")


def kill_worker(service: subprocess.Popen[bytes]) -> str:
    """kill -9 the sheet worker child of ``serve``; what was killed."""
    pid = worker_child(service.pid)
    if pid is None:
        raise SystemExit("serve has no worker child process (connector.sync.supervisor) to kill")
    os.kill(pid, signal.SIGKILL)
    return f"worker child {pid} of serve {service.pid}"


@dataclass(frozen=True)
class Plan:
    """How a scenario runs (the command's options)."""

    rate: float
    seconds: float
    kill_after: float
    down_seconds: float
    connections: int
    settle_timeout: float


def run_scenario(scenario: str, plan: Plan) -> Outcome:
    """Start serve, send with retries, kill at ``kill_after``, restart if needed, wait for the sheet."""
    rate, seconds, down_seconds, settle_timeout = (
        plan.rate,
        plan.seconds,
        plan.down_seconds,
        plan.settle_timeout,
    )
    bodies = [created_event(n) for n in range(round(rate * seconds))]
    with tempfile.TemporaryDirectory(prefix=f"recovery-{scenario}-") as folder:
        port, sheets_port = free_port(), free_port()
        config = write_settings(Path(folder), port, SPREADSHEET, local_sheets={"port": sheets_port})
        service = start_service(config, port=port)
        sheets = LocalSheets(f"http://127.0.0.1:{sheets_port}")
        results: list[SendResult] = []
        sender = threading.Thread(
            target=lambda: results.append(
                asyncio.run(
                    send_until_acknowledged(
                        "127.0.0.1",
                        port,
                        PATH,
                        bodies,
                        plan.connections,
                        rate,
                        stop_at=time.perf_counter() + seconds + settle_timeout,
                    )
                )
            ),
            name="sender",
            daemon=True,
        )
        watch = SheetWatch(sheets)
        try:
            sender.start()
            time.sleep(plan.kill_after)
            killed_at = time.perf_counter()
            watch.start()
            if scenario == "serve":
                os.kill(service.pid, signal.SIGKILL)
                service.wait()
                killed = f"serve {service.pid} (kill -9)"
                time.sleep(down_seconds)
                began = time.perf_counter()
                service = start_service(config, port=port)
                restart = f"serve started again after {down_seconds:g} s, ready {time.perf_counter() - began:.1f} s later"
            else:
                killed = kill_worker(service) + " (kill -9)"
                restart = "serve's supervisor starts the worker again by itself"
            sender.join()
            sent = results[0]
            acknowledged = {i + 1 for i in sent.acknowledged()}
            last = max((d.acked_at for d in sent.deliveries if d.acknowledged), default=time.perf_counter())
            exact_after, rows = wait_exact(sheets, acknowledged, last, settle_timeout)
            watch.stop.set()
            watch.join()
            events = sheet_ids(sheets, "Events", "Event key") or []
            inbox = inbox_counts(Path(folder) / "data")
            if service.poll() is not None:
                click.echo(f"serve exited with {service.returncode}:\n{log_tail(config)}", err=True)
        finally:
            watch.stop.set()
            sheets.close()
            stop(service)
        problems = log_tail(config)
    if problems.strip():
        click.echo(f"--- what serve logged ({scenario} scenario) ---\n{problems}", err=True)
    return Outcome(
        scenario=scenario,
        killed=killed,
        restart=restart,
        sent=sent,
        lost=len(acknowledged - set(rows)),
        customer_duplicates=duplicates(rows),
        event_duplicates=duplicates(events),
        exact_after=exact_after,
        inbox=inbox,
        intake_gap=longest_gap(sent),
        behind_after_kill=watch.caught_up(sent, killed_at),
    )


def longest_gap(sent: SendResult) -> float:
    """The longest time between two acknowledgements (the intake's outage, as the sender saw it)."""
    times = sorted(d.acked_at for d in sent.deliveries if d.acknowledged)
    return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


class SheetWatch(threading.Thread):
    """Reads the Customers worksheet's ids every quarter second from the kill on, until stopped."""

    def __init__(self, sheets: LocalSheets) -> None:
        super().__init__(name="sheet-watch", daemon=True)
        self.sheets = sheets
        self.snapshots: list[tuple[float, frozenset[Any]]] = []  # (perf_counter of the answer, ids)
        self.stop = threading.Event()

    def run(self) -> None:
        """Poll until stopped."""
        while not self.stop.wait(0.25):
            seen = sheet_ids(self.sheets, "Customers", "Customer ID")
            if seen is not None:
                self.snapshots.append((time.perf_counter(), frozenset(seen)))

    def caught_up(self, sent: SendResult, killed_at: float) -> float | None:
        """Seconds from the kill until a read showed every event acknowledged before the kill."""
        before = {d.index + 1 for d in sent.deliveries if d.acknowledged and d.acked_at < killed_at}
        return next((at - killed_at for at, ids in self.snapshots if before <= ids), None)


def wait_exact(
    sheets: LocalSheets, acknowledged: set[int], since: float, timeout: float
) -> tuple[float | None, list[Any]]:
    """Poll the Customers worksheet until every acknowledged customer has exactly one row; the seconds
    from ``since`` (perf_counter) to the poll that showed it (None: not within ``timeout``), and the
    customer ids last seen."""
    rows: list[Any] = []
    while time.perf_counter() < since + timeout:
        seen = sheet_ids(sheets, "Customers", "Customer ID")
        at = time.perf_counter()
        if seen is not None:
            rows = seen
            if acknowledged <= set(rows) and not duplicates(rows):
                return at - since, rows
        time.sleep(POLL_SECONDS)
    return None, rows


def report(outcome: Outcome, rate: float, kill_after: float) -> None:
    """Print one scenario's figures."""
    deliveries = outcome.sent.deliveries
    acknowledged = len(outcome.sent.acknowledged())
    retried = sum(1 for d in deliveries if d.attempts > 1)
    click.echo(
        f"\nscenario {outcome.scenario}: killed {outcome.killed} after {kill_after:g} s; {outcome.restart}"
    )
    click.echo(
        f"sent {len(deliveries)} customer_created events at {rate:g}/s: acknowledged {acknowledged}, "
        f"never acknowledged {len(deliveries) - acknowledged}; {retried} delivered more than once "
        f"({sum(d.attempts for d in deliveries)} sends in all)"
    )
    click.echo(
        f"intake: longest time without an acknowledgement {outcome.intake_gap:.1f} s; the sheet showed "
        "every event acknowledged before the kill "
        + (
            "never"
            if outcome.behind_after_kill is None
            else f"{outcome.behind_after_kill:.1f} s after the kill"
        )
    )
    click.echo(f"events lost (acknowledged, not in the sheet at the end): {outcome.lost}")
    click.echo(
        f"duplicate rows: Customers {outcome.customer_duplicates}, Events log {outcome.event_duplicates}"
    )
    if outcome.exact_after is None:
        click.echo("sheet exact: NOT within the settle timeout")
    else:
        verdict = "met" if outcome.exact_after <= TARGET_SECONDS else "NOT met"
        click.echo(
            f"sheet exact {outcome.exact_after:.1f} s after the last delivery "
            f"(target <= {TARGET_SECONDS:g} s: {verdict})"
        )
    click.echo(f"inbox at the end: {dict(sorted(outcome.inbox.items()))}")


@click.command()
@click.option(
    "--scenario",
    type=click.Choice(["serve", "worker", "both"]),
    default="both",
    show_default=True,
    help="Kill the whole `serve`, only its worker child, or each in its own run.",
)
@click.option("--rate", default=200.0, show_default=True, help="Events per second offered.")
@click.option("--seconds", default=30.0, show_default=True, help="Seconds of sending.")
@click.option("--kill-after", default=10.0, show_default=True, help="Seconds of sending before the kill.")
@click.option(
    "--down-seconds", default=1.0, show_default=True, help="Seconds `serve` stays down (serve scenario)."
)
@click.option("--connections", default=16, show_default=True, help="Sending connections.")
@click.option(
    "--settle-timeout", default=120.0, show_default=True, help="Seconds to wait for the sheet at the end."
)
def main(
    scenario: str,
    rate: float,
    seconds: float,
    kill_after: float,
    down_seconds: float,
    connections: int,
    settle_timeout: float,
) -> None:
    """Kill the service under load, restart it, and print what was lost, duplicated, and how fast."""
    if not 0 < kill_after < seconds:
        raise click.UsageError("--kill-after must fall within --seconds")
    scenarios = ["serve", "worker"] if scenario == "both" else [scenario]
    plan = Plan(rate, seconds, kill_after, down_seconds, connections, settle_timeout)
    outcomes = [run_scenario(name, plan) for name in scenarios]
    for outcome in outcomes:
        report(outcome, rate, kill_after)
    worst = max((o.exact_after if o.exact_after is not None else math.inf) for o in outcomes)
    click.echo(
        f"\nin all: {sum(o.lost for o in outcomes)} lost, "
        f"{sum(o.customer_duplicates + o.event_duplicates for o in outcomes)} duplicate rows, "
        f"slowest catch-up {worst:.1f} s"
    )


if __name__ == "__main__":
    main()
