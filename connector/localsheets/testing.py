"""Running the local Sheets server for tests, benchmarks and demos, and driving its admin routes.

Two ways to start it, both yielding a :class:`LocalSheets` handle whose ``url`` is the API root
(``http://127.0.0.1:PORT``, the value for ``sheets.api_root``):

- :func:`local_sheets_thread`: uvicorn in a background thread of this process (fast, for tests);
- :func:`local_sheets_process`: ``doopage-sheets local-sheets`` as a child process (for crash and
  restart tests, and to keep a benchmark's server off the measured process's interpreter lock).

The handle talks to the server over HTTP only, so it works the same for both.
:func:`write_service_account` makes a service-account key file that signs in at its token endpoint.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import msgspec
import requests

from ..threaded_server import serving
from .guard import ADMIN_SECRET_ENV, ADMIN_SECRET_HEADER, TOKEN_PATH, host_names
from .server import bind_socket, make_server, server_url
from .service import LocalSheetsService, SheetSpec, SpreadsheetSpec

__all__ = ["LocalSheets", "local_sheets_process", "local_sheets_thread", "write_service_account"]

_STARTUP_SECONDS = 20.0


class LocalSheetsAdminError(RuntimeError):
    """An admin request the server refused."""


class LocalSheets:
    """A running local Sheets server, seen through its admin routes (``admin_secret``: the server's)."""

    def __init__(self, url: str, admin_secret: str) -> None:
        self.url = url.rstrip("/")
        self.admin_secret = admin_secret
        self._http = requests.Session()
        self._http.headers[ADMIN_SECRET_HEADER] = admin_secret

    def close(self) -> None:
        """Release the admin HTTP session."""
        self._http.close()

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else msgspec.json.encode(body)
        response = self._http.request(
            method,
            f"{self.url}{path}",
            data=data,
            headers={"content-type": "application/json"},
            timeout=60,
        )
        if not response.ok:
            raise LocalSheetsAdminError(f"{method} {path}: {response.status_code} {response.text}")
        return response.json()

    # ---------------------------------------------------------------- counts

    def counts(self) -> dict[str, int]:
        """API requests received since the last reset, by kind (``values.batchGet``, ...)."""
        return dict(self._call("GET", "/_admin/counts")["counts"])

    def total_requests(self) -> int:
        """API requests received since the last reset, all kinds together."""
        return int(self._call("GET", "/_admin/counts")["total"])

    def injected_faults(self) -> dict[str, int]:
        """Faults injected since the last reset, by outcome (``429:before``, ``drop:after``, ...)."""
        return dict(self._call("GET", "/_admin/counts")["faults"])

    def reset_counts(self) -> None:
        """Zero the request and fault counters."""
        self._call("POST", "/_admin/counts/reset")

    # ---------------------------------------------------------------- faults

    def set_faults(self, **settings: Any) -> dict[str, Any]:
        """Replace the fault settings (see ``FaultSettings``: ``rate_429``, ``drop_rate``, ``timing``...)."""
        return dict(self._call("PUT", "/_admin/faults", settings))

    def clear_faults(self) -> None:
        """Turn every fault off."""
        self._call("DELETE", "/_admin/faults")

    # ---------------------------------------------------------------- spreadsheets

    def create_spreadsheet(
        self,
        spreadsheet_id: str,
        sheets: Sequence[SheetSpec | Mapping[str, Any]] | None = None,
        title: str = "Untitled spreadsheet",
    ) -> dict[str, Any]:
        """Create or replace a spreadsheet with this id (default: one empty 1000x26 "Sheet1")."""
        spec = (
            SpreadsheetSpec(title=title)
            if sheets is None
            else SpreadsheetSpec(
                title=title,
                sheets=[
                    s if isinstance(s, SheetSpec) else msgspec.convert(dict(s), SheetSpec) for s in sheets
                ],
            )
        )
        return dict(self._call("PUT", f"/_admin/spreadsheets/{quote(spreadsheet_id, safe='')}", spec))

    def new_spreadsheet(
        self,
        sheets: Sequence[SheetSpec | Mapping[str, Any]] | None = None,
        title: str = "Untitled spreadsheet",
    ) -> str:
        """Create a spreadsheet under a fresh unique id and return the id (for tests sharing a server)."""
        spreadsheet_id = f"test-{uuid.uuid4().hex}"
        self.create_spreadsheet(spreadsheet_id, sheets, title)
        return spreadsheet_id

    def delete_spreadsheet(self, spreadsheet_id: str) -> None:
        """Forget one spreadsheet."""
        self._call("DELETE", f"/_admin/spreadsheets/{quote(spreadsheet_id, safe='')}")

    def stats(self, spreadsheet_id: str) -> dict[str, Any]:
        """Sizes and formula-cell counts of a spreadsheet and its sheets."""
        return dict(self._call("GET", f"/_admin/spreadsheets/{quote(spreadsheet_id, safe='')}/stats"))

    def formula_cells(self, spreadsheet_id: str) -> int:
        """How many cells of the spreadsheet hold a formula."""
        return int(self.stats(spreadsheet_id)["formulaCells"])

    def sheet(self, spreadsheet_id: str, title: str) -> dict[str, Any]:
        """One sheet's grid size, formula count and every value (unformatted, formulas as text)."""
        path = f"/_admin/spreadsheets/{quote(spreadsheet_id, safe='')}/sheets/{quote(title, safe='')}"
        return dict(self._call("GET", path))

    def sheet_values(self, spreadsheet_id: str, title: str) -> list[list[Any]]:
        """Every value of one sheet, trimmed like a values read."""
        return list(self.sheet(spreadsheet_id, title)["values"])

    def reset(self) -> None:
        """Forget every spreadsheet, count, fault, quota and sign-in setting."""
        self._call("POST", "/_admin/reset")

    # ---------------------------------------------------------------- Google's checks

    def set_strict(self, strict: bool) -> None:
        """Turn strict mode (protected ranges, cell size) on or off."""
        self._call("PUT", "/_admin/strict", {"strict": strict})

    def strict(self) -> bool:
        """Whether strict mode is on."""
        return bool(self._call("GET", "/_admin/strict")["strict"])

    def set_quota(self, **settings: Any) -> None:
        """Per-window quotas: ``reads_per_window`` and ``writes_per_window`` per caller,
        ``project_reads_per_window`` and ``project_writes_per_window`` for all callers together,
        ``window_seconds``; none: off."""
        self._call("PUT", "/_admin/quota", settings)

    def quota(self) -> dict[str, Any]:
        """The quotas in force and the requests refused over them (``refused_by_caller``: per caller)."""
        return dict(self._call("GET", "/_admin/quota"))

    def set_auth(self, **settings: Any) -> None:
        """The token endpoint's knobs: ``revoked_key_ids``, ``clock_offset_seconds``."""
        self._call("PUT", "/_admin/auth", settings)

    @property
    def token_uri(self) -> str:
        """The address of the server's stand-in for Google's OAuth token endpoint."""
        return f"{self.url}{TOKEN_PATH}"

    def protect(self, spreadsheet_id: str, sheet: str, **bounds: Any) -> int:
        """Protect a range of a sheet as its owner (``start_row``, ``end_row``, ... ``editors``); its id."""
        path = f"/_admin/spreadsheets/{quote(spreadsheet_id, safe='')}/protections"
        return int(self._call("POST", path, {"sheet": sheet, **bounds})["protectedRangeId"])

    def unprotect(self, spreadsheet_id: str, protected_range_id: int) -> None:
        """Remove a protected range."""
        path = f"/_admin/spreadsheets/{quote(spreadsheet_id, safe='')}/protections/{protected_range_id}"
        self._call("DELETE", path)

    # ---------------------------------------------------------------- clients

    def gspread_client(self) -> Any:
        """An anonymous gspread client pointed at this server (through ``connector.sheets.connect``)."""
        from connector.sheets import SheetsSettings, connect

        return connect(SheetsSettings(api_root=self.url), environ={}).client


@functools.cache
def _private_key_pem() -> str:
    """An RSA key in PEM, made once per process (making one takes a while)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def write_service_account(path: Path, token_uri: str, *, client_email: str, key_id: str = "1") -> Path:
    """Write a well-formed service-account JSON file to ``path`` that signs in at ``token_uri`` (a local
    server's ``token_uri``) as ``client_email``. The key is one per process: the local token endpoint
    checks no signature and knows a key by ``key_id``, and the server counts requests per client_email."""
    info = {
        "type": "service_account",
        "project_id": "local",
        "private_key_id": key_id,
        "private_key": _private_key_pem(),
        "client_email": client_email,
        "client_id": "1",
        "token_uri": token_uri,
    }
    path.write_text(json.dumps(info), encoding="utf-8")
    return path


@contextmanager
def local_sheets_thread(
    data: Path | None = None, seed: int | None = None, host: str = "127.0.0.1", *, strict: bool = False
) -> Iterator[LocalSheets]:
    """Serve on a free port from a background thread of this process until the block ends."""
    service = LocalSheetsService(data_path=data, seed=seed, strict=strict)
    sock = bind_socket(host, 0)
    server = make_server(service, hosts=host_names(host))
    try:
        with serving(server, sock, name="local-sheets", startup_seconds=_STARTUP_SECONDS):
            handle = LocalSheets(server_url(sock), service.admin_secret)
            try:
                yield handle
            finally:
                handle.close()
        service.close()
    finally:
        sock.close()


@contextmanager
def local_sheets_process(
    data: Path | None = None,
    seed: int | None = None,
    port: int = 0,
    host: str = "127.0.0.1",
    *,
    strict: bool = False,
) -> Iterator[LocalSheets]:
    """Run ``doopage-sheets local-sheets`` as a child process until the block ends (then SIGTERM it)."""
    command = [sys.executable, "-m", "connector", "local-sheets", "--host", host, "--port", str(port)]
    if strict:
        command.append("--strict")
    if data is not None:
        command += ["--data", str(data)]
    if seed is not None:
        command += ["--seed", str(seed)]
    # The admin secret goes through the environment: a command line is visible to every user.
    admin_secret = secrets.token_urlsafe(32)
    env = {**os.environ, ADMIN_SECRET_ENV: admin_secret}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    try:
        url = _await_url(process)
        handle = LocalSheets(url, admin_secret)
        try:
            yield handle
        finally:
            handle.close()
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout is not None:
            process.stdout.close()


def _await_url(process: subprocess.Popen[str]) -> str:
    """Read the child's first line, ``local-sheets listening on http://...``, and return the URL."""
    assert process.stdout is not None
    line = process.stdout.readline()
    marker = "listening on "
    if marker not in line:
        process.kill()
        raise RuntimeError(f"the local Sheets server did not start (printed {line!r})")
    return line.split(marker, 1)[1].strip()
