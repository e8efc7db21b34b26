"""Running things: the web service, the worker on its own, and the local Sheets server."""

from __future__ import annotations

import contextlib
import gc
import signal
import sys
from pathlib import Path
from types import FrameType

import click

from connector.commands.common import (
    config_option,
    exit_cleanly_after_shutdown,
    exit_on_config_error,
    exit_on_store_error,
    load_or_exit,
    setup_logging,
)
from connector.sheets.backend import sheets_backend


def tune_interpreter_for_serving() -> None:
    """Interpreter settings for the web service, measured with scripts/bench_ingest.py.

    * Every request waiting for its commit keeps its objects alive, so with the default gen-0 threshold
      (700) the cyclic garbage collector ran every ~75 requests and took about 3% of the service's CPU,
      though requests make no garbage cycles; at 10,000 it hardly runs. Start-up objects are frozen out
      of its scans altogether.

    The sheet worker and the local Sheets server run in a child process (connector.sync.supervisor), so
    no thread of this process competes with the event loop for the interpreter lock.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


@click.command()
@config_option
def serve(config_path: Path) -> None:
    """Run the webhook service (under uvicorn) until SIGINT or SIGTERM."""
    import uvicorn

    from connector.intake.app import create_app
    from connector.store import check_store

    settings = load_or_exit(config_path)
    setup_logging(settings)
    with exit_on_store_error():
        check_store(settings)
    with exit_on_config_error():
        app = create_app(settings)
    exit_cleanly_after_shutdown()
    tune_interpreter_for_serving()
    uvicorn.run(
        app,
        host=settings.server.host,
        port=settings.server.port,
        log_level=settings.server.log_level,
        # Request logs would put the path token, a secret, into the log.
        access_log=False,
        # X-Forwarded-For is judged by server.trusted_proxies (connector.intake.access), not by uvicorn.
        proxy_headers=False,
        log_config=None,
    )


@click.command()
@config_option
def worker(config_path: Path) -> None:
    """Run the sheet worker as a process of its own, until SIGINT or SIGTERM.

    Use it with `worker.embedded = false` so that `serve` only takes webhooks; running both is safe too
    (a spreadsheet is flushed from one place at a time), just not useful.
    """
    from connector.sync.worker import WorkerThread

    settings = load_or_exit(config_path)
    setup_logging(settings)
    resources = contextlib.ExitStack()
    with exit_on_config_error(), exit_on_store_error():
        settings = resources.enter_context(sheets_backend(settings))
        thread = WorkerThread(settings)

    def request_stop(signum: int, frame: FrameType | None) -> None:
        thread.stop_event.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    with resources:
        with exit_on_store_error():
            thread.start()
        while not thread.stop_event.wait(1.0):
            pass
        # The pass in flight finishes (or its events are left leased, to be claimed again after a restart).
        thread.stop()


@click.command("local-sheets")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", default=8765, show_default=True, type=click.IntRange(0, 65535), help="0: any free port."
)
@click.option(
    "--data",
    "data_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="JSON file the spreadsheets are loaded from and saved to (atomically); memory only without it.",
)
@click.option(
    "--seed", type=int, default=None, help="Seed for spreadsheet ids, sheet ids and injected faults."
)
@click.option("--log-level", default="info", show_default=True, help="uvicorn log level.")
def local_sheets(host: str, port: int, data_path: Path | None, seed: int | None, log_level: str) -> None:
    """Run the local Google Sheets API v4 server (for tests, the demo, and trying without Google)."""
    from connector.localsheets import LocalSheetsService, StoreError, bind_socket, make_server, server_url

    try:
        service = LocalSheetsService(data_path=data_path, seed=seed)
    except StoreError as exc:
        click.echo(f"local-sheets: {exc}", err=True)
        sys.exit(2)
    sock = bind_socket(host, port)
    # The first line is read by connector.localsheets.testing to learn the port when --port is 0.
    click.echo(f"local-sheets listening on {server_url(sock)}")
    sys.stdout.flush()
    make_server(service, log_level=log_level, access_log=log_level == "debug").run(sockets=[sock])
