"""Who may use a webhook URL: the path token, the endpoint's address allow-list and its basic auth.

Every check compares secrets in constant time. An unknown token and an address outside the endpoint's
allow-list get the same 404 as any unknown path, so that neither tells a stranger that the URL exists.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import logging
from collections.abc import Sequence
from typing import Final

from litestar.exceptions import NotAuthorizedException, NotFoundException

from connector.settings import EndpointSettings

__all__ = ["AddressRefused", "Gate", "client_address"]

log = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
REALM: Final = 'Basic realm="doopage-sheets", charset="UTF-8"'


class AddressRefused(NotFoundException):
    """The client's address is not in the endpoint's allow-list (answered as an unknown path)."""


class Gate:
    """Admits a request to an endpoint, or raises the HTTP error that refuses it."""

    def __init__(self, endpoints: Sequence[EndpointSettings], trusted_proxies: Sequence[str] = ()) -> None:
        self._endpoints = [(e.token.reveal().encode(), e) for e in endpoints]
        self._allowed = {
            e.name: [ipaddress.ip_network(c, strict=False) for c in e.allow_ips] for e in endpoints
        }
        self._proxies = [ipaddress.ip_network(c, strict=False) for c in trusted_proxies]

    def find(self, token: str) -> EndpointSettings:
        """The endpoint whose token this is; the same 404 as any unknown path otherwise.

        Every configured token is compared, with hmac.compare_digest, so the time taken says nothing
        about how much of a token was right or which endpoint matched.
        """
        candidate = token.encode()
        found: EndpointSettings | None = None
        for secret, endpoint in self._endpoints:
            if hmac.compare_digest(secret, candidate):
                found = endpoint
        if found is None:
            raise NotFoundException()
        return found

    def guarded(self, endpoint: EndpointSettings) -> bool:
        """Whether requests to this endpoint must also pass :meth:`check` (allow-list or basic auth)."""
        return bool(self._allowed[endpoint.name]) or endpoint.basic_auth is not None

    def check(
        self,
        endpoint: EndpointSettings,
        peer: str | None,
        forwarded_for: str | None,
        authorization: str | None,
    ) -> None:
        """Refuse the request unless the client's address and credentials are right for this endpoint."""
        allowed = self._allowed[endpoint.name]
        if allowed:
            address = client_address(peer, forwarded_for, self._proxies)
            if address is None or not any(address in network for network in allowed):
                log.warning("endpoint %s: request from %s refused by its allow_ips", endpoint.name, address)
                raise AddressRefused()
        if endpoint.basic_auth is not None and not _credentials_match(endpoint, authorization):
            raise NotAuthorizedException(
                "this endpoint requires HTTP basic auth", headers={"WWW-Authenticate": REALM}
            )


def client_address(
    peer: str | None, forwarded_for: str | None, trusted_proxies: Sequence[Network]
) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The client's address: the peer, or, behind trusted proxies, the last untrusted X-Forwarded-For hop."""
    address = _parse(peer)
    if address is None or not forwarded_for:
        return address
    hops = [hop.strip() for hop in forwarded_for.split(",")]
    # Walk back from the nearest hop while the hop we are at is one of our proxies.
    while hops and any(address in network for network in trusted_proxies):
        previous = _parse(hops.pop())
        if previous is None:
            return None
        address = previous
    return address


def _parse(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text) if text else None
    except ValueError:
        return None


def _credentials_match(endpoint: EndpointSettings, authorization: str | None) -> bool:
    assert endpoint.basic_auth is not None
    scheme, _, encoded = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    username, _, password = decoded.partition(b":")
    expected_user = endpoint.basic_auth.username.encode()
    expected_password = endpoint.basic_auth.password.reveal().encode()
    # Both compared whatever the first says, so the time does not tell which one was wrong.
    user_ok = hmac.compare_digest(username, expected_user)
    password_ok = hmac.compare_digest(password, expected_password)
    return user_ok and password_ok
