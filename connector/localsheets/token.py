"""A stand-in for Google's OAuth 2.0 token endpoint (``POST /token``), for service-account sign-in.

A service account signs in by posting a self-signed JWT (``grant_type`` =
``urn:ietf:params:oauth:grant-type:jwt-bearer``, ``assertion`` = the JWT) to the ``token_uri`` of its key
file. Google answers an access token, or 400 ``invalid_grant`` when the key was deleted or revoked
("Invalid JWT Signature.") or when the JWT's ``iat``/``exp`` are not within an hour of Google's clock (a
machine whose clock is wrong). This endpoint does the same with its own knobs (``PUT /_admin/auth``):
key ids taken as revoked, and an offset added to its clock to play a skewed machine. The signature itself
is not checked (the server holds no public keys); a key is identified by the ``kid`` of the JWT header.

Google's access tokens are opaque; this endpoint's name the service account they were given to (the JWT's
``iss``, its client_email), so the server can count requests per caller as Google counts its quotas per
user (:func:`caller_of`, used by ``quota``).
"""

from __future__ import annotations

import base64
import binascii
import secrets
import time
from typing import Any, Final
from urllib.parse import parse_qs

import msgspec

from .quota import ANONYMOUS

__all__ = ["AuthSettings", "caller_of", "token_answer"]

JWT_BEARER: Final = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_TIME_MESSAGE: Final = (
    "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. "
    "Check your iat and exp values in the JWT claim."
)
# How far ahead of the server's clock an ``iat`` may be (Google tolerates a little skew).
_SKEW_SECONDS: Final = 300
_TOKEN_SECONDS: Final = 3600
_TOKEN_PREFIX: Final = "local-"  # noqa: S105 - the start of every token given, not a secret


class AuthSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The token endpoint's knobs."""

    revoked_key_ids: list[str] = msgspec.field(default_factory=list)
    clock_offset_seconds: float = 0.0


def _segment(text: str) -> Any:
    padded = text + "=" * (-len(text) % 4)
    return msgspec.json.decode(base64.urlsafe_b64decode(padded))


def _grant_error(description: str) -> tuple[int, dict[str, Any]]:
    return 400, {"error": "invalid_grant", "error_description": description}


def token_answer(body: bytes, settings: AuthSettings, now: float | None = None) -> tuple[int, dict[str, Any]]:
    """The status and JSON body the token endpoint answers a form-encoded token request with."""
    form = parse_qs(body.decode("utf-8", "replace"))
    if form.get("grant_type", [""])[0] != JWT_BEARER:
        return 400, {"error": "unsupported_grant_type", "error_description": "Invalid grant_type."}
    parts = form.get("assertion", [""])[0].split(".")
    try:
        if len(parts) != 3:
            raise ValueError("not a JWT")
        header, claims = _segment(parts[0]), _segment(parts[1])
        issued, expires = int(claims["iat"]), int(claims["exp"])
    except (ValueError, KeyError, TypeError, binascii.Error, msgspec.DecodeError):
        return _grant_error("Invalid JWT: not a signed token.")
    if header.get("kid") in settings.revoked_key_ids:
        return _grant_error("Invalid JWT Signature.")
    clock = (time.time() if now is None else now) + settings.clock_offset_seconds
    if expires - issued > _TOKEN_SECONDS or issued > clock + _SKEW_SECONDS or expires < clock:
        return _grant_error(_TIME_MESSAGE)
    issuer = claims.get("iss")
    named = _b64(issuer) + "." if isinstance(issuer, str) and issuer else ""
    token = _TOKEN_PREFIX + named + secrets.token_urlsafe(24)
    return 200, {"access_token": token, "expires_in": _TOKEN_SECONDS, "token_type": "Bearer"}


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def caller_of(authorization: bytes) -> str:
    """Who sent a request, from its ``Authorization`` header: the service account named by a token of
    this endpoint, else the anonymous caller (no token, or one from elsewhere)."""
    scheme, _, token = authorization.decode("latin-1").partition(" ")
    if scheme.lower() != "bearer" or not token.startswith(_TOKEN_PREFIX):
        return ANONYMOUS
    named, dot, _ = token[len(_TOKEN_PREFIX) :].partition(".")
    if not dot:
        return ANONYMOUS
    try:
        return base64.urlsafe_b64decode(named + "=" * (-len(named) % 4)).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return ANONYMOUS
