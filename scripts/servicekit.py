"""What the service benchmarks share: a settings file, ``serve`` as a process, the inbox and the sheet.

* :func:`write_settings`: settings with one endpoint and the shipped mapping pointed at one spreadsheet,
  everything else the service's defaults unless a table is given (``sheets={...}``, ``worker={...}``);
* :func:`start_service`: ``doopage-sheets serve`` (or ``worker``) as a process, its log in a file,
  waited for until ``/readyz`` answers;
* :func:`inbox_counts`, :func:`any_pending` and :func:`stored_bodies`: the SQLite inbox, read-only;
* :func:`column`: one column of a worksheet, through the local Sheets server's admin route;
* :func:`worker_child`: the sheet worker child process of a ``serve`` (Linux /proc).

Use them only with servers on this machine (loopback).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from loadgen import wait_answering

from connector.localsheets.guard import ADMIN_SECRET_ENV
from connector.localsheets.testing import LocalSheets, LocalSheetsAdminError
from connector.store.sqlite_schema import inbox_path
from connector.threaded_server import free_port

TOKEN = "bench-service-token-0123456789abcdef"
PATH = f"/webhooks/doopage/{TOKEN}"
MAPPING = Path(__file__).resolve().parents[1] / "config" / "mapping.example.toml"
COMPANY = 1
SUPERVISOR_MODULE = "connector.sync.supervisor"
# The built-in local Sheets server's admin routes need its secret: the services started here get this one.
ADMIN_SECRET = secrets.token_urlsafe(24)

TomlValue = bool | int | float | str | Mapping[str, Any]


def toml_value(value: TomlValue) -> str:
    """A value as TOML: numbers and booleans as they are, strings quoted, mappings as inline tables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    return "{ " + ", ".join(f"{key} = {toml_value(item)}" for key, item in value.items()) + " }"


def table_toml(name: str, table: Mapping[str, TomlValue]) -> str:
    """One TOML table."""
    return f"[{name}]\n" + "".join(f"{key} = {toml_value(value)}\n" for key, value in table.items())


def write_settings(folder: Path, port: int, spreadsheet: str, **tables: Mapping[str, TomlValue]) -> Path:
    """Write ``folder/bench.toml``: the service on ``port``, its data in ``folder/data``, one endpoint
    (:data:`TOKEN`), the shipped mapping with company 1 on ``spreadsheet``, and the given tables
    (``worker={"max_delay_ms": 20}``, ``sheets={...}``, ``local_sheets={"port": ...}``; ``server``
    adds to its table); the console on a free port unless ``console`` is given; the service's defaults
    for everything else."""
    mapping = MAPPING.read_text(encoding="utf-8").replace('"doopage-demo"', json.dumps(spreadsheet))
    (folder / "mapping.toml").write_text(mapping, encoding="utf-8")
    server = {"port": port, "data_dir": "data", "log_level": "warning", **tables.pop("server", {})}
    tables.setdefault("console", {"port": free_port()})  # another service here may hold the default port
    text = (
        table_toml("server", server)
        + f'[[endpoints]]\nname = "bench"\ntoken = "{TOKEN}"\nvalidation_key = "bench-key"\n'
        + '[mapping]\nfile = "mapping.toml"\n'
        + "".join(table_toml(name, table) for name, table in tables.items())
    )
    path = folder / "bench.toml"
    path.write_text(text, encoding="utf-8")
    return path


def start_service(
    config: Path, command: str = "serve", port: int | None = None, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``doopage-sheets <command> --config <config>`` (``env`` added to its environment), its
    standard error appended to ``<command>.log`` beside the config; with ``port``, wait until ``/readyz``
    answers there."""
    with (config.parent / f"{command}.log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "connector", command, "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=log,
            env={**os.environ, ADMIN_SECRET_ENV: ADMIN_SECRET, **(env or {})},
        )
    if port is not None:
        try:
            wait_answering(port, process, "/readyz")
        except SystemExit:
            stop(process)
            sys.stderr.write(log_tail(config, command))
            raise
    return process


def local_sheets(port: int) -> LocalSheets:
    """The admin handle of the built-in local Sheets server a service of :func:`start_service` runs."""
    return LocalSheets(f"http://127.0.0.1:{port}", ADMIN_SECRET)


def log_tail(config: Path, command: str = "serve", chars: int = 4000) -> str:
    """The end of what a process of :func:`start_service` wrote to standard error."""
    path = config.parent / f"{command}.log"
    return path.read_text(encoding="utf-8", errors="replace")[-chars:] if path.exists() else ""


def stop(process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """SIGTERM a process (it stops after its flush) and wait; SIGKILL it if it takes longer."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _read_only(data_dir: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{inbox_path(data_dir).as_uri()}?mode=ro", uri=True, timeout=10)


def inbox_counts(data_dir: Path) -> dict[str, int]:
    """Stored events by status (pending, done, failed, unrouted), read from the inbox directly."""
    conn = _read_only(data_dir)
    try:
        return dict(conn.execute("SELECT status, COUNT(*) FROM events GROUP BY status").fetchall())
    finally:
        conn.close()


def any_pending(data_dir: Path) -> bool:
    """Whether a stored event still waits for the worker: one index lookup, cheap however many events
    the inbox holds (counting them all, as inbox_counts does, takes a while in a large inbox)."""
    conn = _read_only(data_dir)
    try:
        (found,) = conn.execute("SELECT EXISTS (SELECT 1 FROM events WHERE status = 'pending')").fetchone()
        return bool(found)
    finally:
        conn.close()


def stored_bodies(data_dir: Path) -> list[bytes]:
    """Every stored body, in inbox order."""
    conn = _read_only(data_dir)
    try:
        return [bytes(body) for (body,) in conn.execute("SELECT body FROM events ORDER BY id")]
    finally:
        conn.close()


def lock_holders(data_dir: Path) -> set[int]:
    """The pids of the processes holding a spreadsheet lock or an event lease right now (owner ids are
    ``<host>/<pid>/...``, see connector.store.owners)."""
    conn = _read_only(data_dir)
    try:
        owners = conn.execute(
            "SELECT owner FROM locks UNION SELECT lease_owner FROM events WHERE lease_owner IS NOT NULL"
        ).fetchall()
    finally:
        conn.close()
    return {int(parts[1]) for (owner,) in owners if len(parts := owner.split("/")) > 1 and parts[1].isdigit()}


def has_open(pid: int, path: Path) -> bool:
    """Whether a process has ``path`` open (Linux /proc): a worker has opened its store."""
    try:
        return any(Path(fd).resolve() == path.resolve() for fd in Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False


def column(sheets: LocalSheets, spreadsheet: str, title: str, header: str) -> list[Any]:
    """The values under ``header`` in a worksheet (the rows below the header row, blanks as ""); empty
    if the worksheet or the column does not exist yet."""
    try:
        values = sheets.sheet_values(spreadsheet, title)
    except LocalSheetsAdminError:  # before the first flush creates the worksheet
        return []
    if not values or header not in values[0]:
        return []
    i = values[0].index(header)
    return [row[i] if i < len(row) else "" for row in values[1:]]


def children(pid: int) -> list[int]:
    """The child processes of a process (Linux /proc)."""
    found: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(child) for child in (task / "children").read_text().split()]
    except OSError:  # the process ended
        return []
    return found


def worker_child(pid: int) -> int | None:
    """The sheet worker child process of a ``serve`` (its command line names the supervisor module)."""
    for child in children(pid):
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if SUPERVISOR_MODULE.encode() in command:
            return child
    return None
