"""Reloading the settings file (and the mapping it names) while running, as on SIGHUP.

:meth:`Reloader.reload` reads the file again and, if it is valid, applies what can change without a
restart and logs each change:

* the **mapping**: the worker routes events with the new one from its next pass on (a pass in flight
  finishes with the old one), events of companies mapped now are queued again, and the writer forgets
  what it knew of the spreadsheets involved;
* **rate limits** (``sheets.rate_limit``): the writer's request budget, from the next request on;
* the **log level** (``server.log_level``).

Any other change is logged as taking effect after a restart. A file that no longer loads (bad TOML, an
unknown key, a broken mapping) is refused with its error, and the process keeps running exactly as
before. Reloads are serialised; each process reloads for itself: ``serve`` and ``worker`` call
:func:`reload_on_sighup` with a :class:`Reloader` for what they run (see the Reloader's docstring).
"""

from __future__ import annotations

import hashlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Final

import msgspec

from connector.errors import ConfigError
from connector.settings import Secret, Settings, load_settings
from connector.store import open_work_store
from connector.sync.mapping import CompanyMapping, SheetMapping, load_mapping
from connector.sync.routing import Router
from connector.sync.worker import requeue_mapped

if TYPE_CHECKING:
    from connector.runners import Registration
    from connector.sync.worker import WorkerThread

__all__ = ["ReloadReport", "Reloader", "mapping_fingerprint", "reload_on_sighup"]

log = logging.getLogger(__name__)

# Settings (paths as written in the file) that a reload applies; every other change waits for a restart.
RELOADED: Final = ("server.log_level", "sheets.rate_limit.")
LOGGERS: Final = ("", "uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")


# --- what changed ------------------------------------------------------------------------------------


def _company_outline(company: CompanyMapping) -> tuple[object, ...]:
    """What decides where and how a company's rows are written (the compiled renderers aside)."""
    worksheets = tuple(
        (
            sheet.title,
            str(sheet.entity),
            sheet.key_header,
            tuple((c.header, c.source.name, str(c.format), c.options) for c in sheet.columns),
        )
        for sheet in company.worksheets
    )
    return (company.company_id, company.name, company.spreadsheet_id, company.credential, worksheets)


def mapping_fingerprint(mapping: SheetMapping) -> str:
    """A short hash of what the mapping writes where; equal for two loads of equal mappings."""
    outline = sorted(_company_outline(company) for company in mapping.companies)
    return hashlib.sha256(repr(outline).encode()).hexdigest()[:16]


def mapping_changes(old: SheetMapping, new: SheetMapping) -> tuple[list[str], set[str]]:
    """For people: how each company's mapping changed; and the spreadsheets those changes touch."""
    before = {company.company_id: company for company in old.companies}
    after = {company.company_id: company for company in new.companies}
    lines: list[str] = []
    touched: set[str] = set()
    for company_id in sorted(before.keys() | after.keys()):
        was, now = before.get(company_id), after.get(company_id)
        if was is not None and now is not None and _company_outline(was) == _company_outline(now):
            continue
        if was is None:
            assert now is not None
            lines.append(f"company {company_id} is mapped now, to spreadsheet {now.spreadsheet_id}")
        elif now is None:
            lines.append(f"company {company_id} is no longer mapped: its new events are kept as unrouted")
        elif was.spreadsheet_id != now.spreadsheet_id:
            lines.append(
                f"company {company_id} now writes to spreadsheet {now.spreadsheet_id} (was {was.spreadsheet_id})"
            )
        elif was.credential != now.credential:
            lines.append(
                f"company {company_id}: its spreadsheet is now written with credential "
                f"{now.credential or 'chosen by the pool'} (was {was.credential or 'chosen by the pool'})"
            )
        else:
            lines.append(f"company {company_id}: its worksheets or columns changed")
        touched.update(company.spreadsheet_id for company in (was, now) if company is not None)
    return lines, touched


def _flatten(value: object, path: str) -> Iterator[tuple[str, object]]:
    if isinstance(value, msgspec.Struct):
        for name in value.__struct_fields__:
            yield from _flatten(getattr(value, name), f"{path}.{name}" if path else name)
    elif isinstance(value, list) and value and isinstance(value[0], msgspec.Struct):
        for index, item in enumerate(value):
            yield from _flatten(item, f"{path}[{index}]")
    elif isinstance(value, Secret):
        yield path, value.reveal()
    elif isinstance(value, list):
        yield path, tuple(value)
    else:
        yield path, value


def settings_changes(old: Settings, new: Settings) -> tuple[list[str], list[str]]:
    """The changed settings a reload applies (``path: old -> new``), and the paths of those it cannot
    (named only: they may be secrets). The mapping is compared by :func:`mapping_changes`."""
    skip = ("mapping", "mapping.", "source")
    before = {path: value for path, value in _flatten(old, "") if not path.startswith(skip)}
    after = {path: value for path, value in _flatten(new, "") if not path.startswith(skip)}
    applied, restart = [], []
    for path in sorted(before.keys() | after.keys()):
        if before.get(path) == after.get(path):
            continue
        if path.startswith(RELOADED):
            applied.append(f"{path}: {before.get(path)} -> {after.get(path)}")
        else:
            restart.append(path.split("[", 1)[0])
    return applied, sorted(set(restart))


# --- applying it -------------------------------------------------------------------------------------


@dataclass
class ReloadReport:
    """What one reload did."""

    applied: list[str] = field(default_factory=list)
    restart_needed: list[str] = field(default_factory=list)
    error: str | None = None  # the file was refused: nothing changed


class Reloader:
    """What a process runs with, and how to bring it in line with its settings file again.

    ``settings`` are as loaded from ``config`` (before anything, like the local Sheets backend, changed
    them). ``worker`` is the process's worker, if it runs one; ``registration`` its record for
    ``failed retry`` (connector.runners). A process without a worker (a ``serve`` whose worker runs as a
    process of its own) passes neither: it applies the log level, and the worker's process reloads the
    rest itself on its own SIGHUP.
    """

    def __init__(
        self,
        config: Path,
        settings: Settings,
        mapping: SheetMapping | None = None,
        *,
        worker: WorkerThread | None = None,
        registration: Registration | None = None,
    ) -> None:
        self.config = config
        self.settings = settings
        self.mapping = mapping
        self.worker = worker
        self.registration = registration
        self._lock = threading.Lock()

    def reload(self) -> ReloadReport:
        """Read the file again and apply it (see the module's docstring); logs and returns what it did."""
        with self._lock:
            try:
                settings = load_settings(self.config)
                # Only a process with a worker uses the mapping (and refuses a broken one).
                mapping = load_mapping(settings) if self.worker is not None else None
                if self.worker is not None and mapping is not None:
                    self.worker.writer.pool.check_pins(mapping)  # the pool is the one running
            except ConfigError as exc:
                log.error("reload refused, still running with the settings loaded before: %s", exc)
                return ReloadReport(error=str(exc))
            report = ReloadReport()
            report.applied, report.restart_needed = settings_changes(self.settings, settings)
            if self.worker is not None and self.mapping is not None and mapping is not None:
                mapped, touched = mapping_changes(self.mapping, mapping)
                report.applied += mapped
                self._apply_to_worker(self.worker, self.mapping, settings, mapping, touched)
            # Logged at the level in force until now, so that "log_level: info -> warning" shows.
            _log(report, self.config)
            _set_log_level(settings.server.log_level)
            self.settings, self.mapping = settings, mapping
            if self.registration is not None and mapping is not None:
                self.registration.update(mapping_fingerprint(mapping))
        return report

    def _apply_to_worker(
        self,
        thread: WorkerThread,
        old: SheetMapping,
        settings: Settings,
        mapping: SheetMapping,
        touched: set[str],
    ) -> None:
        thread.writer.set_rate_limit(settings.sheets.rate_limit)
        router = Router.from_mapping(mapping)
        thread.mapping = mapping
        if thread.worker is not None:
            thread.worker.router = router  # read once per pass: the next pass uses it
        for spreadsheet_id in touched:
            thread.writer.forget(spreadsheet_id)
        if router.company_ids - {company.company_id for company in old.companies}:
            queue = open_work_store(self.settings)  # the one running: data_dir changes need a restart
            try:
                requeue_mapped(queue, router)
            finally:
                queue.close()


def _log(report: ReloadReport, config: Path) -> None:
    for line in report.applied:
        log.info("reload: %s", line)
    if report.restart_needed:
        log.warning("reload: changed, takes effect after a restart: %s", ", ".join(report.restart_needed))
    if not report.applied and not report.restart_needed:
        log.info("reload: %s unchanged", config)


def _set_log_level(level: str) -> None:
    for name in LOGGERS:
        logging.getLogger(name).setLevel(level.upper())


def reload_on_sighup(reload: Callable[[], object]) -> None:
    """Make SIGHUP run ``reload`` (a Reloader's, or one that does more after it) in a thread of its own,
    off the signal handler and the event loop."""

    def handle(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=reload, name="settings-reload", daemon=True).start()

    signal.signal(signal.SIGHUP, handle)
