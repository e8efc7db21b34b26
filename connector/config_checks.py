"""Checks of a valid settings file that decoding alone cannot make: credentials that must load, and
warnings about settings that work but are unsafe (printed by `check-config`, logged by `serve`)."""

from __future__ import annotations

from typing import Final

from connector.addresses import is_loopback
from connector.settings import Settings
from connector.sheets.backend import uses_local_sheets

__all__ = ["EXAMPLE_SECRETS", "check_credentials", "config_warnings"]

# The token and validation key of the shipped config/example.toml: anyone who read the README knows them.
EXAMPLE_SECRETS: Final = frozenset({"demo-token-change-me-0123456789", "demo-validation-key"})


def check_credentials(settings: Settings) -> str:
    """Where writes go; ConfigError when the configured credentials cannot be loaded (no request sent)."""
    if uses_local_sheets(settings):
        local = settings.local_sheets
        return (
            f"no Google credentials: writes go to the built-in local Sheets server at "
            f"http://{local.host}:{local.port}/ (set sheets.credentials_file to write to Google Sheets)"
        )
    from connector.sheets import connect

    connection = connect(settings.sheets, source=settings.source)
    return f"Sheets API at {connection.api_root} as {connection.credential_id}"


def config_warnings(settings: Settings) -> list[str]:
    """Settings that work but are unsafe: the example's secrets on a service reachable from elsewhere."""
    warnings = []
    exposed = not is_loopback(settings.server.host)
    for i, endpoint in enumerate(settings.endpoints):
        secrets = {endpoint.token.reveal(), endpoint.validation_key.reveal()}
        if exposed and secrets & EXAMPLE_SECRETS:
            warnings.append(
                f"{settings.source}: server.host = {settings.server.host!r} opens the service to the network, "
                f"but endpoints[{i}] still uses the example's token or validation key, which anyone can read; "
                "generate new ones with: python -c 'import secrets; print(secrets.token_urlsafe(24))'"
            )
    return warnings
