"""Running things: the web service, the worker on its own, and the local Sheets server."""

from __future__ import annotations

import contextlib
import gc
import logging
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import click

from connector.commands.common import (
    config_option,
    exit_cleanly_after_shutdown,
    exit_on_config_error,
    exit_on_store_error,
    load_or_exit,
    setup_logging,
)
from connector.config_checks import check_credentials, config_warnings
from connector.sheets.backend import sheets_backend

log = logging.getLogger("connector.serve")

if TYPE_CHECKING:
    from litestar import Litestar

    from connector.settings import Settings
    from connector.sync.supervisor import WorkerSupervisor
    from connector.sync.worker import WorkerThread


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


@contextlib.contextmanager
def reloading_on_sighup(
    config_path: Path, loaded: Settings, worker: WorkerThread | None, command: str
) -> Iterator[None]:
    """Make SIGHUP reload the settings file for the block; a process with a worker also keeps its
    record for ``failed retry`` (connector.runners)."""
    from connector.reload import Reloader, mapping_fingerprint, reload_on_sighup
    from connector.runners import registered

    config = config_path.resolve()
    if worker is None:
        reload_on_sighup(Reloader(config, loaded).reload)
        yield
        return
    fingerprint = mapping_fingerprint(worker.mapping)
    with registered(loaded.data_dir, command, str(config), fingerprint) as registration:
        reloader = Reloader(config, loaded, worker.mapping, worker=worker, registration=registration)
        reload_on_sighup(reloader.reload)
        yield


def forward_reloads(config_path: Path, loaded: Settings, app: Litestar) -> None:
    """Make SIGHUP reload ``serve``'s own settings (its log level) and, once the file is found valid,
    pass it on to the worker child, which reloads the mapping and rate limits itself; a child started
    later gets the reloaded settings."""
    from connector.reload import Reloader, reload_on_sighup

    reloader = Reloader(config_path.resolve(), loaded)

    def reload() -> None:
        report = reloader.reload()
        supervisor: WorkerSupervisor | None = app.state.get("worker")
        if report.error is None and supervisor is not None:
            supervisor.reloaded(reloader.settings)

    reload_on_sighup(reload)


@click.command()
@config_option
@click.option(
    "--show-token", is_flag=True, help="Print the webhook URLs whole at start (the token masked otherwise)."
)
def serve(config_path: Path, show_token: bool) -> None:
    """Run the webhook service (under uvicorn) and the operator console until SIGINT or SIGTERM."""
    import uvicorn

    from connector.commands.startup import print_start_banner
    from connector.console.runner import running_console
    from connector.http_limits import uvicorn_limits
    from connector.intake.app import create_app
    from connector.preflight import check_data_dir, check_open_files, listening_socket
    from connector.store import check_store
    from connector.sync.mapping import load_mapping

    loaded = load_or_exit(config_path)
    setup_logging(loaded)
    for warning in config_warnings(loaded):
        log.warning(warning)
    with exit_on_store_error():
        check_store(loaded)
    resources = contextlib.ExitStack()
    with exit_on_config_error():
        # Before anything starts: a mistake here must not leave a half-started service behind.
        check_data_dir(loaded)
        check_open_files(loaded)
        if loaded.worker.embedded:
            # The worker child would refuse them too, but only after the service started listening.
            check_credentials(loaded, load_mapping(loaded))
        sock = resources.enter_context(listening_socket(loaded))
        settings = loaded
        app = create_app(settings)
        console = resources.enter_context(running_console(settings))
        if settings.alerts.enabled:
            from connector.alerts import Alerter

            alerter = Alerter(settings)
            alerter.start()
            resources.callback(alerter.stop)
    print_start_banner(settings, console, show_token=show_token)
    forward_reloads(config_path, loaded, app)
    exit_cleanly_after_shutdown()
    tune_interpreter_for_serving()
    config = uvicorn.Config(
        app,
        log_level=settings.server.log_level,
        # Request logs would put the path token, a secret, into the log.
        access_log=False,
        # X-Forwarded-For is judged by server.trusted_proxies (connector.intake.access), not by uvicorn.
        proxy_headers=False,
        log_config=None,
        **uvicorn_limits(settings.server),
    )
    server = uvicorn.Server(config)
    host, port = sock.getsockname()[:2]
    log.info("the service listens on %s port %d", host, port)
    with resources:
        server.run(sockets=[sock])
    if not server.started:
        sys.exit(3)  # uvicorn's start-up failure status; the reason is in the log


@click.command()
@config_option
def worker(config_path: Path) -> None:
    """Run the sheet worker as a process of its own, until SIGINT or SIGTERM.

    Use it with `worker.embedded = false` so that `serve` only takes webhooks; running both is safe too
    (a spreadsheet is flushed from one place at a time), just not useful.
    """
    from connector.preflight import check_data_dir
    from connector.sync.worker import WorkerThread, tune_interpreter_for_flushes

    loaded = load_or_exit(config_path)
    setup_logging(loaded)
    resources = contextlib.ExitStack()
    with exit_on_config_error(), exit_on_store_error():
        check_data_dir(loaded)
        settings = resources.enter_context(sheets_backend(loaded))
        thread = WorkerThread(settings)
    resources.enter_context(reloading_on_sighup(config_path, loaded, thread, "worker"))

    def request_stop(signum: int, frame: FrameType | None) -> None:
        thread.stop_event.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    with resources:
        tune_interpreter_for_flushes()
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
@click.option(
    "--allow-host",
    "allowed_hosts",
    multiple=True,
    help="A further name clients reach the server by (Host header); loopback names always work.",
)
@click.option(
    "--strict",
    is_flag=True,
    help="Refuse what Google refuses: edits of protected ranges, cells over 50,000 characters.",
)
def local_sheets(
    host: str,
    port: int,
    data_path: Path | None,
    seed: int | None,
    log_level: str,
    allowed_hosts: tuple[str, ...],
    strict: bool,
) -> None:
    """Run the local Google Sheets API v4 server (for tests, the demo, and trying without Google).

    Its admin routes (/_admin/...) need the X-Admin-Secret header to hold the secret in
    $DOOPAGE_LOCAL_SHEETS_ADMIN_SECRET; without that variable a random secret is made, and the admin
    routes are closed to everyone.
    """
    import os

    from connector.localsheets import LocalSheetsService, StoreError, bind_socket, make_server, server_url
    from connector.localsheets.guard import ADMIN_SECRET_ENV, host_names

    try:
        service = LocalSheetsService(
            data_path=data_path,
            seed=seed,
            strict=strict,
            admin_secret=os.environ.get(ADMIN_SECRET_ENV) or None,
        )
    except StoreError as exc:
        click.echo(f"local-sheets: {exc}", err=True)
        sys.exit(2)
    sock = bind_socket(host, port)
    # The first line is read by connector.localsheets.testing to learn the port when --port is 0.
    click.echo(f"local-sheets listening on {server_url(sock)}")
    sys.stdout.flush()
    hosts = host_names(host, allowed_hosts)
    make_server(service, log_level=log_level, access_log=log_level == "debug", hosts=hosts).run(
        sockets=[sock]
    )
    service.close()  # its journal compacted into the data file
