"""Telling loopback addresses apart (what only this machine can reach), and the address to open a
server of this machine at."""

from __future__ import annotations

import ipaddress

__all__ = ["is_loopback", "local_url"]


def is_loopback(host: str) -> bool:
    """Whether a host name or address is this machine only (localhost, 127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def local_url(host: str, port: int) -> str:
    """``http://host:port`` to reach a server listening on ``host`` from this machine (a wildcard
    address shown as 127.0.0.1, an IPv6 address in brackets)."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104 - shown, not bound
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"
