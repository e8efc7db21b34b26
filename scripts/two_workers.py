"""Two workers on one data directory: does any tag go missing?

Per run: a local Sheets server process (one for all runs, a fresh spreadsheet per run), then
``doopage-sheets serve`` (worker embedded, as a child process) and a separate ``doopage-sheets worker`` on
the same settings and data directory, with fast settings (sheets.rate_limit 60,000 reads and writes per
minute, worker.max_delay_ms = 20, worker.poll_ms = 5) so that the two compete for the spreadsheet's lock
flush after flush. Two concurrent senders post ``--events`` tag_set events (each its own tag id and name;
no timestamp, as DooPage sends them) over ``--customers`` customers. When the inbox has settled, it
counts the acknowledged tags missing from the Customers worksheet's Tags column and from the saved
entity state (``SqliteStore.load`` and ``visible_tags``), and prints them per run and in total
(target: 0).

    python scripts/two_workers.py                       # 10 runs of 2,000 events
    python scripts/two_workers.py --runs 3 --events 500
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import click
from loadgen import SendResult, send_each
from servicekit import (
    COMPANY,
    PATH,
    has_open,
    inbox_counts,
    lock_holders,
    log_tail,
    start_service,
    stop,
    worker_child,
    write_settings,
)

from connector.localsheets.testing import LocalSheets, LocalSheetsAdminError, local_sheets_process
from connector.store.sqlite_schema import inbox_path
from connector.store.sqlite_store import SqliteStore
from connector.sync.state import CUSTOMER, CustomerState, EntityKey, visible_tags
from connector.threaded_server import free_port

FAST_QUOTA: Final = {"reads_per_minute": 60_000, "writes_per_minute": 60_000}
FAST_WORKER: Final = {"max_delay_ms": 20, "poll_ms": 5}
SENDERS = 2
STABLE_SECONDS = 5.0  # a settled inbox with tags still missing this long: they stay missing


def tag_name(n: int) -> str:
    """The name of the n-th event's tag."""
    return f"tag-{n + 1:05d}"


def tag_event(n: int, customers: int) -> bytes:
    """The n-th tag_set event: tag n + 1 set on customer n % customers + 1, without a timestamp."""
    body = {
        "company_id": COMPANY,
        "event_type": "tag_set",
        "data": {
            "customer": {"id": n % customers + 1, "name": f"Customer {n % customers + 1}"},
            "staff": {"id": 1, "name": "Staff 1"},
            "tags": [{"id": n + 1, "name": tag_name(n)}],
        },
    }
    return json.dumps(body).encode()


@dataclass
class RunResult:
    """One run's counts."""

    acknowledged: int
    missing_sheet: int
    missing_state: int
    settle_seconds: float
    inbox: dict[str, int]
    holders: str  # which of the two workers held the spreadsheet lock or leases at some poll


def sheet_tags(sheets: LocalSheets, spreadsheet: str) -> dict[int, set[str]]:
    """Each customer's tags as the Customers worksheet shows them."""
    try:
        values = sheets.sheet_values(spreadsheet, "Customers")
    except LocalSheetsAdminError:  # not created yet
        return {}
    if not values:
        return {}
    key, tags = values[0].index("Customer ID"), values[0].index("Tags")
    shown: dict[int, set[str]] = {}
    for row in values[1:]:
        cell = row[tags] if tags < len(row) else ""
        shown[int(row[key])] = set(str(cell).split(", ")) - {""}
    return shown


def state_tags(data_dir: Path, customers: int) -> dict[int, set[str]]:
    """Each customer's visible tags in the saved entity state."""
    store = SqliteStore.open(data_dir)
    try:
        keys = [EntityKey(CUSTOMER, COMPANY, c) for c in range(1, customers + 1)]
        states = store.load(keys)
    finally:
        store.close()
    return {
        key.entity_id: set(visible_tags(state))
        for key, state in states.items()
        if isinstance(state, CustomerState)
    }


def missing(expected: dict[int, set[str]], shown: dict[int, set[str]]) -> int:
    """Expected tags not shown."""
    return sum(len(names - shown.get(customer, set())) for customer, names in expected.items())


async def send_concurrently(port: int, bodies: list[bytes], connections: int) -> list[SendResult]:
    """The bodies split between two senders (alternately), sending at the same time."""
    shares = [bodies[i::SENDERS] for i in range(SENDERS)]
    return list(
        await asyncio.gather(*(send_each("127.0.0.1", port, PATH, share, connections) for share in shares))
    )


def one_run(
    sheets: LocalSheets, run: int, events: int, customers: int, connections: int, timeout: float
) -> RunResult:
    """Both workers, the load, the wait, the counts."""
    spreadsheet = f"two-workers-{run}"
    sheets.create_spreadsheet(spreadsheet)
    bodies = [tag_event(n, customers) for n in range(events)]
    with tempfile.TemporaryDirectory(prefix="two-workers-") as folder:
        port = free_port()
        config = write_settings(
            Path(folder),
            port,
            spreadsheet,
            sheets={"api_root": sheets.url, "rate_limit": FAST_QUOTA},
            worker=FAST_WORKER,
        )
        data_dir = Path(folder) / "data"
        service = start_service(config, port=port)
        worker = start_service(config, "worker")
        watcher = HolderWatch(data_dir)
        try:
            wait_open(worker.pid, inbox_path(data_dir), config)
            embedded = worker_child(service.pid)
            watcher.start()
            results = asyncio.run(send_concurrently(port, bodies, connections))
            sent = time.perf_counter()
            # Sender s sent bodies s, s + SENDERS, ...: body n is share n % SENDERS, index n // SENDERS.
            acked = [
                index * SENDERS + share
                for share, result in enumerate(results)
                for index in result.acknowledged()
            ]
            expected: dict[int, set[str]] = {}
            for n in acked:
                expected.setdefault(n % customers + 1, set()).add(tag_name(n))
            settled_at: float | None = None
            while True:
                inbox = inbox_counts(data_dir)
                now = time.perf_counter()
                if not inbox.get("pending"):
                    settled_at = settled_at or now
                    in_sheet = missing(expected, sheet_tags(sheets, spreadsheet))
                    if not in_sheet or now - settled_at > STABLE_SECONDS:
                        break
                if now - sent > timeout:
                    in_sheet = missing(expected, sheet_tags(sheets, spreadsheet))
                    break
                time.sleep(0.1)
            settle = time.perf_counter() - sent
            in_state = missing(expected, state_tags(data_dir, customers))
        finally:
            watcher.stop.set()
            if watcher.is_alive():
                watcher.join()
            stop(worker)
            stop(service)
        for command, process in (("serve", service), ("worker", worker)):
            if process.returncode:
                click.echo(
                    f"{command} exited with {process.returncode}:\n{log_tail(config, command)}", err=True
                )
    names = {embedded: "serve's worker", worker.pid: "worker process"}
    holders = ", ".join(sorted(names.get(pid, f"pid {pid}") for pid in watcher.seen)) or "none seen"
    return RunResult(len(acked), in_sheet, in_state, settle, inbox, holders)


class HolderWatch(threading.Thread):
    """Notes, every few milliseconds, which processes hold the lock or leases."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__(name="holder-watch", daemon=True)
        self.data_dir = data_dir
        self.seen: set[int] = set()
        self.stop = threading.Event()

    def run(self) -> None:
        """Poll until stopped."""
        while not self.stop.wait(0.005):
            self.seen |= lock_holders(self.data_dir)


def wait_open(pid: int, store: Path, config: Path) -> None:
    """Wait until the separate worker has opened the store (it works from then on)."""
    deadline = time.monotonic() + 30
    while not has_open(pid, store):
        if time.monotonic() > deadline:
            raise SystemExit(f"the worker did not open its store within 30 s:\n{log_tail(config, 'worker')}")
        time.sleep(0.05)
    time.sleep(0.2)


@click.command()
@click.option("--runs", default=10, show_default=True, help="Runs, each on a fresh data directory.")
@click.option("--events", default=2000, show_default=True, help="tag_set events per run.")
@click.option("--customers", default=5, show_default=True, help="Customers the tags are spread over.")
@click.option("--connections", default=2, show_default=True, help="Connections of each of the two senders.")
@click.option("--settle-timeout", default=120.0, show_default=True, help="Seconds to wait per run.")
def main(runs: int, events: int, customers: int, connections: int, settle_timeout: float) -> None:
    """Run `serve` and a separate worker on one data directory and count lost tags."""
    total_sheet = total_state = 0
    click.echo(
        f"{runs} runs: serve (worker embedded) + `doopage-sheets worker` on one data directory; "
        f"{events} tag_set events over {customers} customers from {SENDERS} senders x {connections} "
        "connections; sheets.rate_limit 60000/min, worker.max_delay_ms 20, worker.poll_ms 5"
    )
    click.echo(
        f"{'run':>4} {'acked':>6} {'missing in sheet':>17} {'missing in state':>17} {'settle s':>9}  "
        "inbox; lock and lease holders seen"
    )
    with local_sheets_process() as sheets:
        for run in range(1, runs + 1):
            result = one_run(sheets, run, events, customers, connections, settle_timeout)
            total_sheet += result.missing_sheet
            total_state += result.missing_state
            click.echo(
                f"{run:>4} {result.acknowledged:>6} {result.missing_sheet:>17} {result.missing_state:>17} "
                f"{result.settle_seconds:>9.1f}  {dict(sorted(result.inbox.items()))}; {result.holders}"
            )
    click.echo(f"total missing: {total_sheet} in the sheet, {total_state} in the saved state (target: 0)")


if __name__ == "__main__":
    main()
