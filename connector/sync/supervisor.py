"""The worker as a child process of ``serve``: both ends.

``serve`` runs the webhook intake; with ``worker.embedded`` (the default) it also starts the sheet worker
as a child process (:class:`WorkerSupervisor`), so that folding, planning and the Sheets client never take
the intake's interpreter lock or CPU time slices. The child (``python -m connector.sync.supervisor``):

* reads its settings as one JSON line on standard input (the parent's settings, secrets included: a pipe,
  never a log or a command line), then watches standard input: end of file means the parent is gone, and
  the child stops after its flush, so it never outlives ``serve``, even one killed with SIGKILL;
* starts the built-in local Sheets server when no Google credentials are configured (so that server's
  work stays off the intake too), takes over the leases of dead processes, and writes ``ready`` on
  standard output once it works;
* stops after the flush in flight on SIGTERM (it runs in a session of its own: a Ctrl-C in the terminal
  is for ``serve``, which then stops it).

The parent waits for ``ready`` at start-up, so a mistake in the settings stops ``serve`` with the child's
message. A child that dies later is started again after a back-off (1 s, doubling up to 30 s; back to
1 s once a child has run for a minute); its leases are taken over by the new one at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import IO, Any, Final

import msgspec

from connector.errors import ConfigError, StoreError
from connector.settings import Secret, Settings

__all__ = ["WorkerSupervisor", "decode_settings", "encode_settings", "main"]

log = logging.getLogger(__name__)

READY: Final = b"ready\n"
START_TIMEOUT_S: Final = 60.0
STOP_TIMEOUT_S: Final = 30.0
FIRST_BACKOFF_S: Final = 1.0
MAX_BACKOFF_S: Final = 30.0
STABLE_AFTER_S: Final = 60.0
# How much lower the worker child's CPU priority is than serve's (see main).
WORKER_NICENESS: Final = 10
# The exit status of a child that found its settings unusable: not restarted.
CONFIG_EXIT: Final = 2


def encode_settings(settings: Settings) -> bytes:
    """Settings as one JSON line, secrets revealed (only ever written to the child's pipe)."""

    def reveal(value: Any) -> Any:
        if isinstance(value, Secret):
            return value.reveal()
        raise NotImplementedError(type(value))

    return msgspec.json.encode(settings, enc_hook=reveal) + b"\n"


def decode_settings(line: bytes) -> Settings:
    """The settings of :func:`encode_settings`."""

    def secret(kind: type, value: Any) -> Any:
        if kind is Secret and isinstance(value, str):
            return Secret(value)
        raise NotImplementedError(kind)

    return msgspec.json.decode(line, type=Settings, dec_hook=secret)


class WorkerSupervisor:
    """Starts the worker child, restarts it when it dies, and stops it (after its flush) on request."""

    def __init__(self, settings: Settings, metrics_dir: Path | None = None) -> None:
        """``metrics_dir``: where the child keeps its Prometheus metrics (multiprocess mode)."""
        self._payload = encode_settings(settings)
        self._env = dict(os.environ)
        if metrics_dir is not None:
            self._env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        self._child: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        """The running child's pid."""
        return self._child.pid if self._child is not None else None

    def start(self) -> None:
        """Start the child and wait until it works; ConfigError with its message if it cannot start."""
        self._child = self._spawn()
        self._watcher = threading.Thread(target=self._watch, name="worker-supervisor", daemon=True)
        self._watcher.start()

    def reloaded(self, settings: Settings) -> None:
        """The settings file was reloaded: tell the running child (SIGHUP: it reloads for itself), and
        start any later child with these settings."""
        self._payload = encode_settings(settings)
        child = self._child
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        """Ask the child to stop after its flush (SIGTERM and end of its input); kill it after 30 s."""
        self._stopping.set()
        child = self._child
        if child is not None:
            _stop_child(child)
        if self._watcher is not None:
            self._watcher.join()

    def _spawn(self) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "connector.sync.supervisor"]
        child = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True, env=self._env
        )
        assert child.stdin is not None
        assert child.stdout is not None
        child.stdin.write(self._payload)
        child.stdin.flush()
        if not _wait_ready(child.stdout, START_TIMEOUT_S):
            code = child.poll()
            if code is None:
                _stop_child(child)
                raise ConfigError("", "worker", f"the worker did not start within {START_TIMEOUT_S:g} s")
            raise ConfigError("", "worker", f"the worker could not start (exit status {code}); see above")
        log.info("worker process %d started", child.pid)
        return child

    def _watch(self) -> None:
        """Restart the child whenever it dies, until stopped."""
        backoff = FIRST_BACKOFF_S
        started = time.monotonic()
        while True:
            child = self._child
            assert child is not None
            code = child.wait()
            if self._stopping.is_set():
                return
            ran = time.monotonic() - started
            if ran >= STABLE_AFTER_S:
                backoff = FIRST_BACKOFF_S
            log.error(
                "the worker process %d stopped (exit status %s); starting another in %.0f s",
                child.pid,
                code,
                backoff,
            )
            if self._stopping.wait(backoff):
                return
            backoff = min(backoff * 2, MAX_BACKOFF_S)
            try:
                self._child = self._spawn()
            except ConfigError as exc:
                log.error("%s", exc)
                continue
            finally:
                started = time.monotonic()
            self.restarts += 1


def _wait_ready(stdout: IO[bytes], timeout_s: float) -> bool:
    """Whether the child wrote ``ready`` within the time (False if it ended first)."""
    outcome: list[bytes] = []
    reader = threading.Thread(target=lambda: outcome.append(stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout_s)
    return outcome == [READY]


def _stop_child(child: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(OSError):
        if child.stdin is not None:
            child.stdin.close()
    with contextlib.suppress(ProcessLookupError):
        child.send_signal(signal.SIGTERM)
    try:
        child.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        log.error("the worker process %d did not stop within %.0f s; killed", child.pid, STOP_TIMEOUT_S)
        child.kill()
        child.wait()


# --- the child ------------------------------------------------------------------------------------------


def main() -> None:
    """Run a worker for the parent whose settings arrive on standard input, until told to stop."""
    from connector.logs import setup_logging
    from connector.reload import Reloader, mapping_fingerprint, reload_on_sighup
    from connector.runners import registered
    from connector.sheets.backend import sheets_backend
    from connector.sync.worker import WorkerThread, tune_interpreter_for_flushes

    settings = decode_settings(sys.stdin.buffer.readline())
    setup_logging(settings.server.log_level, settings.server.log_format, settings.secret_values())
    # Acknowledgements wait for the intake; rows can wait a moment. Where the CPU is short, the intake
    # and its inbox writer go first (measured with scripts/bench_ingest.py).
    os.nice(WORKER_NICENESS)
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    # End of input: the parent closed the pipe or died. Read from the descriptor, not sys.stdin: a daemon
    # thread blocked inside a buffered reader makes the interpreter abort at exit ("Fatal Python error:
    # _enter_buffered_busy") when the worker stops on its own, for instance on a configuration error.
    def watch_parent() -> None:
        while os.read(sys.stdin.fileno(), 4096):
            pass
        stop.set()

    threading.Thread(target=watch_parent, name="parent-watch", daemon=True).start()
    try:
        with sheets_backend(settings) as ready_settings:
            thread = WorkerThread(ready_settings)
            thread.stop_event = stop
            fingerprint = mapping_fingerprint(thread.mapping)
            # The record `failed retry` finds a running worker by: it names serve, which passes SIGHUP on.
            with registered(
                settings.data_dir, "serve", settings.source, fingerprint, pid=os.getppid()
            ) as registration:
                # The settings as loaded from the file, not as the local Sheets backend changed them.
                reloader = Reloader(
                    Path(settings.source), settings, thread.mapping, worker=thread, registration=registration
                )
                reload_on_sighup(reloader.reload)
                tune_interpreter_for_flushes()
                thread.start()
                sys.stdout.buffer.write(READY)
                sys.stdout.flush()
                while not stop.wait(1.0):
                    pass
                thread.stop()
    except (ConfigError, StoreError) as exc:
        log.error("worker: %s", exc)
        sys.exit(CONFIG_EXIT)


if __name__ == "__main__":
    main()
