"""The service as a real process beside a local Sheets server process, and an oracle for its sheets.

:class:`Service` writes a settings file (the shipped mapping, pointed at one spreadsheet of the local
server; a fast worker), starts ``doopage-sheets serve`` on it, and watches the inbox until the worker has
settled every event. :func:`history` makes a reproducible stream of DooPage events; :func:`expected_sheet`
folds the distinct events with the same pure fold and mapping the worker uses, giving the exact rows the
sheet must hold; :func:`sheet_rows` reads a worksheet back through the server's admin route.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from connector.events import CUSTOMER_EVENT_TYPES, ORDER_EVENT_TYPES, UnknownEvent, decode_body
from connector.localsheets.testing import LocalSheets
from connector.settings import Settings, load_settings
from connector.store.pg_store import PgStore
from connector.store.sqlite_schema import inbox_path
from connector.sync.mapping import load_mapping, rows_for
from connector.sync.state import EntityState, Envelope, fold_batch
from connector.sync.supervisor import STOP_TIMEOUT_S
from connector.threaded_server import free_port

TOKEN = "e2e-test-token-0123456789abcdef"
PATH = f"/webhooks/doopage/{TOKEN}"
MAPPING = Path(__file__).resolve().parents[2] / "config" / "mapping.example.toml"
COMPANY = 1
TITLES = ("Customers", "Orders", "Events")
# The Events log's receive time is the inbox's clock, which no oracle can know; every other cell is compared.
UNKNOWABLE = {"Events": {"Received"}}

Row = list[Any]


def write_settings(folder: Path, api_root: str, spreadsheet_id: str, port: int) -> Path:
    """Settings with the shipped mapping on ``spreadsheet_id``, a fast worker, quick Sheets retries and
    the console on a free port (not the default 8081, which other services on the machine may hold)."""
    mapping = MAPPING.read_text(encoding="utf-8").replace('"doopage-demo"', json.dumps(spreadsheet_id))
    (folder / "mapping.toml").write_text(mapping, encoding="utf-8")
    path = folder / "settings.toml"
    path.write_text(
        f"""
[server]
port = {port}
data_dir = "data"
log_level = "warning"

[[endpoints]]
name = "main"
token = "{TOKEN}"
validation_key = "e2e-validation-key"

[mapping]
file = "mapping.toml"

[sheets]
api_root = "{api_root}"
retry = {{ max_attempts = 30, max_seconds = 60, base_backoff = 0.005, max_backoff = 0.05 }}
rate_limit = {{ reads_per_minute = 100000, writes_per_minute = 100000, window_seconds = 0.2 }}

[worker]
max_delay_ms = 20
poll_ms = 10
# Shorter than the default (10 s), so that what a killed process held comes back quickly in the tests.
lease_ms = 3000
backoff_ms = 20
max_backoff_ms = 200

[console]
# A port of its own: another service on this machine may hold the default one.
port = {free_port()}
""",
        encoding="utf-8",
    )
    return path


@dataclass
class Service:
    """``doopage-sheets serve`` on a settings file, started and stopped as a real process."""

    config: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def settings(self) -> Settings:
        """The settings the service runs with."""
        return load_settings(self.config)

    @property
    def port(self) -> int:
        """The port the service listens on."""
        return self.settings.server.port

    @property
    def base(self) -> str:
        """The service's root URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the service and wait until it is ready."""
        log = (self.config.parent / "service.log").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "connector", "serve", "--config", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the service exited at start-up:\n{self.log()}")
            try:
                if httpx.get(f"{self.base}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"the service did not become ready:\n{self.log()}")

    def stop(self) -> int:
        """SIGTERM the service and return its exit status."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        # serve itself waits up to STOP_TIMEOUT_S for its worker child's flush: wait longer than that.
        status = self.process.wait(timeout=STOP_TIMEOUT_S + 30)
        self.process = None
        return status

    def kill(self) -> None:
        """kill -9 the service."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self.process = None

    def log(self) -> str:
        """What the service wrote to standard error."""
        path = self.config.parent / "service.log"
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""

    def inbox(self) -> dict[str, int]:
        """Stored events by status, read from the SQLite inbox directly (read-only), or from the
        PostgreSQL store when the settings have one."""
        if self.settings.store is not None:
            store = PgStore.open(self.settings.store.url.reveal())
            try:
                counts: dict[str, int] = {}
                for row in store.counts():
                    counts[row.status] = counts.get(row.status, 0) + row.count
                return counts
            finally:
                store.close()
        path = inbox_path(self.settings.data_dir)
        conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=10)
        try:
            return dict(conn.execute("SELECT status, COUNT(*) FROM events GROUP BY status").fetchall())
        finally:
            conn.close()

    def stored_bodies(self) -> list[bytes]:
        """Every stored body, in inbox order."""
        path = inbox_path(self.settings.data_dir)
        conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=10)
        try:
            return [bytes(body) for (body,) in conn.execute("SELECT body FROM events ORDER BY id")]
        finally:
            conn.close()

    def wait_settled(self, stored: int, timeout: float = 60.0) -> dict[str, int]:
        """Wait until the inbox holds ``stored`` events and none is pending; the counts by status.

        Polls the inbox, the source of `doopage-sheets status`: an event leaves ``pending`` only once its
        sheet write succeeded, so no pending event means the sheet shows everything stored.
        """
        deadline = time.monotonic() + timeout
        while True:
            counts = self.inbox()
            if sum(counts.values()) >= stored and not counts.get("pending"):
                return counts
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"the service died:\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"the inbox did not settle: {counts}\n{self.log()[-4000:]}")
            time.sleep(0.05)


# --- events ------------------------------------------------------------------------------------------

EVENT_TYPES = CUSTOMER_EVENT_TYPES + ORDER_EVENT_TYPES
BASE_MS = 1_700_000_000_000
STAFF = [{"id": i, "name": f"Nhân viên {i}"} for i in range(1, 6)]
TAGS = [
    {"id": i, "name": name} for i, name in enumerate(["vip", "new", "Hà Nội", "=SUM(A1)", "+84", "cold"], 1)
]
PIPELINES = [{"id": i, "name": name} for i, name in enumerate(["Lead", "Contacted", "Re-target", "Won"], 1)]
PICKING = ("pending", "picking", "packed", "shipped")
PAYMENT = ("unpaid", "partial", "paid", "refunded")


def event_body(rng: random.Random, event_type: str, entity_id: int, timestamp: int) -> bytes:
    """One DooPage webhook body of this type about customer or order ``entity_id``.

    Every type carries a distinct ``timestamp`` (DooPage leaves it off four of them; the decoder takes it
    on all), so the order of events is fixed by their content and the expected sheet is exact.
    """
    data: dict[str, Any]
    if event_type in ORDER_EVENT_TYPES:
        created = (BASE_MS - 86_400_000 * (entity_id % 30)) // 1000
        data = {"order_id": entity_id, "created_at": created}
        if event_type == "order_updated":
            data["modified_at"] = timestamp // 1000
            data["picking_status"] = rng.choice(PICKING)
            data["payment_status"] = rng.choice(PAYMENT)
    else:
        name = rng.choice([f"Khách {entity_id}", f"Customer {entity_id}", f"@user{entity_id}"])
        data = {"customer": {"id": entity_id, "name": name}}
        if event_type in ("customer_took", "customer_closed", "tag_set", "tag_unset"):
            data["staff"] = rng.choice(STAFF)
        if event_type == "customer_transferred":
            data["staff"], data["new_staff"] = rng.sample(STAFF, 2)
        if event_type in ("tag_set", "tag_unset"):
            data["tags"] = rng.sample(TAGS, rng.randint(1, 3))
        if event_type == "note_changed":
            data["note"] = rng.choice([None, f"gọi lại lúc {rng.randint(8, 18)}h", "-100", "=1+1"])
        if event_type == "customer_pipeline_updated":
            data["pipeline"] = rng.choice(PIPELINES)
    body = {"company_id": COMPANY, "event_type": event_type, "timestamp": timestamp, "data": data}
    return json.dumps(body, ensure_ascii=False).encode()


def history(seed: int, events: int, customers: int, orders: int) -> list[bytes]:
    """``events`` distinct events, in time order, over ``customers`` customers and ``orders`` orders.

    Every customer and order is touched, every one of the 11 types occurs, and no two events share a
    timestamp (they are 1 to 1000 ms apart).
    """
    rng = random.Random(seed)
    subjects = [("customer", i) for i in range(1, customers + 1)] + [
        ("order", i) for i in range(1, orders + 1)
    ]
    subjects += [rng.choice(subjects) for _ in range(events - len(subjects))]
    rng.shuffle(subjects)
    bodies: list[bytes] = []
    timestamp = BASE_MS
    for n, (kind, entity_id) in enumerate(subjects):
        timestamp += rng.randint(1, 1000)
        types = ORDER_EVENT_TYPES if kind == "order" else CUSTOMER_EVENT_TYPES
        # The first len(EVENT_TYPES) events cycle through every type, whatever their subject's kind.
        event_type = EVENT_TYPES[n] if n < len(EVENT_TYPES) else rng.choice(types)
        if event_type not in types:
            entity_id = rng.randint(1, orders if event_type in ORDER_EVENT_TYPES else customers)
        bodies.append(event_body(rng, event_type, entity_id, timestamp))
    return bodies


def deliveries(bodies: Sequence[bytes], seed: int, duplicate_rate: float) -> list[bytes]:
    """The bodies shuffled, with about ``duplicate_rate`` of them delivered again (re-encoded with other
    spacing now and then, as a different sender would), in the shuffled order too."""
    rng = random.Random(seed)
    sent = list(bodies)
    for body in rng.sample(list(bodies), int(len(bodies) * duplicate_rate)):
        sent.append(body if rng.random() < 0.5 else json.dumps(json.loads(body), indent=1).encode())
    rng.shuffle(sent)
    return sent


# --- the oracle --------------------------------------------------------------------------------------


def expected_sheet(settings: Settings, bodies: Iterable[bytes]) -> dict[str, dict[str, Row]]:
    """Per worksheet, ``{key: cells in header order}`` that folding these events (each distinct event
    once, whatever the repeats) and projecting them with the mapping must give."""
    envelopes: dict[str, Envelope] = {}
    for body in bodies:
        decoded = decode_body(body)
        event = decoded.event
        assert not isinstance(event, UnknownEvent)
        assert event.timestamp is not None, "the oracle needs timestamped events"
        envelopes.setdefault(
            decoded.content_key,
            Envelope(event=event, received_ms=event.timestamp, dedup_key=decoded.content_key),
        )
    ordered = sorted(envelopes.values(), key=lambda e: e.event.timestamp or 0)
    states: dict[Any, EntityState] = fold_batch({}, ordered)
    [company] = load_mapping(settings).companies
    expected: dict[str, dict[str, Row]] = {}
    for worksheet in company.worksheets:
        items: list[Any] = [*states.values(), *ordered]
        rows = rows_for(worksheet, items)
        expected[worksheet.title] = {key: [values[h] for h in worksheet.headers] for key, values in rows}
    return expected


def _cell(value: Any) -> Any:
    """A cell as the sheet gives it back: no value reads as an empty cell."""
    return "" if value is None else value


def sheet_rows(
    sheets: LocalSheets, spreadsheet_id: str, title: str, headers: Sequence[str], key_header: str
) -> dict[str, Row]:
    """A worksheet as ``{key: cells under ``headers``}``; asserts that the header row holds exactly
    ``headers`` and that no key occurs twice."""
    header, *rows = sheets.sheet_values(spreadsheet_id, title)
    assert header == list(headers), f"{title}: header row {header}"
    width = len(headers)
    padded = [[*row, *[""] * (width - len(row))][:width] for row in rows]
    column = headers.index(key_header)
    keys = Counter(str(row[column]) for row in padded)
    assert [key for key, n in keys.items() if n > 1] == [], f"{title}: duplicated keys"
    return {str(row[column]): row for row in padded}


def assert_sheet_is(
    sheets: LocalSheets, spreadsheet_id: str, settings: Settings, expected: dict[str, dict[str, Row]]
) -> None:
    """Every worksheet holds exactly the expected rows, cell by cell (the Events log's receive time aside)."""
    [company] = load_mapping(settings).companies
    for worksheet in company.worksheets:
        headers = worksheet.headers
        actual = sheet_rows(sheets, spreadsheet_id, worksheet.title, headers, worksheet.key_header)
        want = expected[worksheet.title]
        assert sorted(actual) == sorted(want), f"{worksheet.title}: the keys differ"
        skip = {headers.index(h) for h in UNKNOWABLE.get(worksheet.title, set())}
        for key, cells in want.items():
            got = [c for i, c in enumerate(actual[key]) if i not in skip]
            wanted = [_cell(c) for i, c in enumerate(cells) if i not in skip]
            assert got == wanted, f"{worksheet.title} row {key}"
