"""Who holds a lease: owner ids that let a starting process tell that a holder on its host is gone.

An owner id is ``<host>/<pid>/<process start time>/<name>``. The start time (clock ticks since boot, from
``/proc/<pid>/stat``) tells a recycled pid from the process that held the lease. A holder is *provably
gone* only when it ran on this host and no process with that pid and start time exists; a holder on
another host, or an id of another form, is never taken for gone (its lease has to expire).
"""

from __future__ import annotations

import functools
import os
import socket
from pathlib import Path

__all__ = ["is_gone", "owner_id", "this_process"]


def _start_time(pid: int) -> str | None:
    """The start time of a running process, or None if there is none with this pid (or no /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces; fields after it are plain.
    fields = stat.rsplit(")", 1)[1].split()
    return fields[19]  # field 22 of the whole line: starttime


@functools.cache
def _host() -> str:
    return socket.gethostname()


def this_process() -> str:
    """``<host>/<pid>/<start time>`` of the calling process."""
    pid = os.getpid()
    return f"{_host()}/{pid}/{_start_time(pid) or '0'}"


def owner_id(name: str) -> str:
    """An owner id for a lease holder (a worker thread, a backfill) of this process."""
    return f"{this_process()}/{name}"


def is_gone(owner: str) -> bool:
    """Whether the process behind an owner id is known to have ended (see the module docstring)."""
    parts = owner.split("/", 3)
    if len(parts) < 3 or parts[0] != _host() or not parts[1].isdigit():
        return False
    if not Path("/proc/self/stat").exists():  # no way to tell here
        return False
    return _start_time(int(parts[1])) != parts[2]
