"""Benchmark: the sheet worker's CPU per event, stage by stage, without HTTP or a spreadsheet.

Stores N distinct events made from DooPage's samples (connector/samples: every type, each about one of
``--customers`` customers or orders, each with its own timestamp) in a fresh SQLite store, then settles
them the way a flush does, ``--batch`` at a time, and prints the CPU microseconds per event of each stage:

* claim:   take the spreadsheet lock and claim the batch (SqliteStore.take_lock, claim);
* decode:  the fold inputs of the stored bodies (worker.envelope_of);
* load:    the touched entities' states (SqliteStore.load);
* fold:    fold the batch into them (state.fold_batch);
* rows:    the rows of every worksheet of the shipped mapping (worker.worksheet_batches);
* commit:  save the states, mark the events done (SqliteStore.commit_flush), drop the lock.

The interpreter is set up as in a worker process (worker.tune_interpreter_for_flushes). Writing the
rows (the sheet writer and the Sheets API) is not included: scripts/bench_sheets.py and
scripts/bench_ingest.py measure those. Run it before and after a change on the same machine:

    python scripts/bench_worker_cpu.py                     # 20,000 events, batches of 5,000, 3 runs
    python scripts/bench_worker_cpu.py --events 50000 --batch 2000
"""

from __future__ import annotations

import contextlib
import itertools
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import click
import msgspec
from servicekit import MAPPING

from connector.events import decode_body
from connector.samples import sample_bodies
from connector.store.sqlite_schema import connect
from connector.store.sqlite_store import SqliteStore
from connector.store.sqlite_writer import insert_all
from connector.sync.backfill import record_for
from connector.sync.mapping import parse_mapping
from connector.sync.state import entity_key, fold_batch
from connector.sync.worker import envelope_of, tune_interpreter_for_flushes, worksheet_batches

COMPANY = 1
OWNER = "bench-worker-cpu"
LEASE_MS = 60_000
STAGES = ("claim", "decode", "load", "fold", "rows", "commit")


def bodies(count: int, customers: int) -> Iterator[bytes]:
    """``count`` distinct event bodies: DooPage's samples in turn, each about one of ``customers``
    customers (or orders), each with a timestamp of its own."""
    samples = [json.loads(body) for body in sample_bodies().values()]
    for n, sample in zip(range(count), itertools.cycle(samples), strict=False):
        event = {**sample, "company_id": COMPANY, "timestamp": 1_700_000_000_000 + n}
        data = dict(event["data"])
        if "order_id" in data:
            data["order_id"] = n % customers + 1
        else:
            data["customer"] = {**data["customer"], "id": n % customers + 1, "name": f"Khách hàng {n}"}
        event["data"] = data
        yield json.dumps(event, ensure_ascii=False).encode()


def store_events(path: Path, count: int, customers: int) -> None:
    """Put the events in the inbox, pending, as the intake does."""
    records = []
    for n, body in enumerate(bodies(count, customers)):
        decoded = decode_body(body)
        stored = record_for(decoded.event, body, decoded.content_key, 1_700_000_000_000 + n, "bench")
        records.append(msgspec.structs.replace(stored, status="pending"))
    conn = connect(path)
    try:
        for start in range(0, len(records), 2_000):
            insert_all(conn, records[start : start + 2_000])
    finally:
        conn.close()


class Stopwatch:
    """CPU seconds of this process spent in each stage."""

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(STAGES, 0.0)

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        started = time.process_time()
        yield
        self.seconds[stage] += time.process_time() - started


def settle_all(store: SqliteStore, batch: int, watch: Stopwatch) -> int:
    """Flush every pending event as the worker does (without writing rows anywhere); how many."""
    mapping = parse_mapping(MAPPING.read_text(encoding="utf-8"), str(MAPPING))
    companies = [company for company in mapping.companies if company.company_id == COMPANY]
    settled = 0
    while True:
        with watch("claim"):
            fence = store.take_lock(companies[0].spreadsheet_id, OWNER, LEASE_MS)
            assert fence is not None
            claimed = store.claim(OWNER, [COMPANY], LEASE_MS, max_events=batch, max_bytes=2**40)
        if not claimed:
            store.drop_lock(fence)
            return settled
        with watch("decode"):
            envelopes = [envelope for envelope in map(envelope_of, claimed) if not isinstance(envelope, str)]
        assert len(envelopes) == len(claimed)
        keys = {entity_key(envelope.event) for envelope in envelopes}
        with watch("load"):
            states = store.load(keys)
        with watch("fold"):
            touched = fold_batch(states, envelopes)
        with watch("rows"):
            worksheet_batches(companies, touched, envelopes)
        with watch("commit"):
            store.commit_flush(fence, touched, [stored.id for stored in claimed], str(COMPANY))
            store.drop_lock(fence)
        settled += len(claimed)


@click.command()
@click.option("--events", default=20_000, show_default=True, help="Events to store and settle.")
@click.option("--customers", default=5_000, show_default=True, help="Distinct customers (and orders).")
@click.option("--batch", default=5_000, show_default=True, help="Events per flush.")
@click.option(
    "--repeat", default=3, show_default=True, help="Runs, each on a fresh store; the least of each."
)
def main(events: int, customers: int, batch: int, repeat: int) -> None:
    """Print the worker's CPU microseconds per event, by stage (the least over the runs: the machine's
    other load only ever adds)."""
    tune_interpreter_for_flushes()  # as the worker's processes do
    runs = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="bench-worker-cpu-") as folder:
            store = SqliteStore.open(Path(folder))
            try:
                store_events(store.path, events, customers)
                watch = Stopwatch()
                settled = settle_all(store, batch, watch)
            finally:
                store.close()
        if settled != events:
            sys.exit(f"settled {settled} of {events} events")
        runs.append(watch.seconds)
    click.echo(
        f"{events} events ({customers} customers/orders), flushes of {batch}, least of {repeat} runs;"
        " CPU µs per event:"
    )
    least = {stage: min(run[stage] for run in runs) for stage in STAGES}
    for stage in STAGES:
        click.echo(f"  {stage:<8} {least[stage] / events * 1e6:8.1f}")
    click.echo(f"  {'total':<8} {sum(least.values()) / events * 1e6:8.1f}")


if __name__ == "__main__":
    main()
