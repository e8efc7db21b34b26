"""Which processes run a worker on a data directory, and which mapping each of them runs with.

A process that runs a worker (``serve`` with the embedded worker, or ``worker``) keeps a small JSON
record in ``<data_dir>/running/<pid>.json`` for as long as it runs, holding a lock on it; it rewrites the
record when a settings reload changes its mapping. A record whose lock nobody holds is a leftover of a
process that died, and is removed when seen. ``failed retry`` reads the records to make sure no running
worker would park the retried events again with a mapping older than the one on disk.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec

from connector.store.records import now_ms

__all__ = ["Registration", "RunnerRecord", "live_runners", "registered"]


class RunnerRecord(msgspec.Struct, frozen=True):
    """One running process with a worker."""

    pid: int
    command: str  # "serve" or "worker"
    config: str  # the settings file it reloads from
    mapping: str  # the fingerprint of the mapping it runs with (connector.reload.mapping_fingerprint)
    loaded_ms: int  # when it loaded that mapping


def _folder(data_dir: Path) -> Path:
    return data_dir / "running"


class Registration:
    """This process's record, locked while it lives; :meth:`update` after a reload."""

    def __init__(self, path: Path, record: RunnerRecord) -> None:
        self.path = path
        self.record = record
        self._size = 0
        # Locked and written under another name first: a reader never sees it unlocked.
        making = path.with_suffix(".new")
        self._fd = os.open(making, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        self._write()
        making.rename(path)

    def update(self, mapping: str) -> None:
        """Record the mapping this process runs with now."""
        self.record = msgspec.structs.replace(self.record, mapping=mapping, loaded_ms=now_ms())
        self._write()

    def _write(self) -> None:
        # Padded over the previous record instead of truncating: a reader never sees an empty file.
        data = msgspec.json.encode(self.record)
        self._size = max(self._size, len(data))
        os.pwrite(self._fd, data.ljust(self._size), 0)

    def close(self) -> None:
        """Remove the record and release its lock."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.close(self._fd)


@contextlib.contextmanager
def registered(
    data_dir: Path, command: str, config: str, mapping: str, pid: int | None = None
) -> Iterator[Registration]:
    """Keep this process's record for the block; ``pid``: the process to send SIGHUP to, if not this
    one (a worker child names its ``serve``, which passes the signal on)."""
    folder = _folder(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    pid = os.getpid() if pid is None else pid
    registration = Registration(folder / f"{pid}.json", RunnerRecord(pid, command, config, mapping, now_ms()))
    try:
        yield registration
    finally:
        registration.close()


def live_runners(data_dir: Path) -> list[RunnerRecord]:
    """The records of the processes running now (leftovers of dead ones are removed)."""
    folder = _folder(data_dir)
    if not folder.is_dir():
        return []
    live = []
    for path in sorted(folder.glob("*.json")):
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:  # held: its process is running
                record = _read(fd)
                if record is not None:
                    live.append(record)
                continue
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        finally:
            os.close(fd)
    return live


def _read(fd: int) -> RunnerRecord | None:
    """The record in a file being kept by another process (None while it is being rewritten)."""
    for _ in range(10):
        try:
            return msgspec.json.decode(os.pread(fd, 4096, 0), type=RunnerRecord)
        except (msgspec.DecodeError, msgspec.ValidationError):
            time.sleep(0.01)
    return None
