"""Checks of a valid settings file that decoding alone cannot make: credentials that must load (and the
mapping's pins naming one of them), and warnings about settings that work but are unsafe (printed by
`check-config`, logged by `serve`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from connector.addresses import is_loopback
from connector.errors import ConfigError
from connector.settings import Settings
from connector.sheets.backend import uses_local_sheets

if TYPE_CHECKING:
    from connector.sheets.pool import CredentialPool
    from connector.sync.mapping import SheetMapping

__all__ = ["EXAMPLE_SECRETS", "assignment", "check_credentials", "config_warnings", "credential_pool"]

# The token and validation key of the shipped config/example.toml: anyone who read the README knows them.
EXAMPLE_SECRETS: Final = frozenset({"demo-token-change-me-0123456789", "demo-validation-key"})


def check_credentials(settings: Settings, mapping: SheetMapping | None = None) -> str:
    """Where writes go, and with a pool of credentials which one writes each spreadsheet of the
    ``mapping``; ConfigError when a configured credential cannot be loaded or the mapping pins one that
    is not configured (no request sent)."""
    if uses_local_sheets(settings):
        local = settings.local_sheets
        if mapping is not None:
            _refuse_pins(mapping)
        return (
            f"no Google credentials: writes go to the built-in local Sheets server at "
            f"http://{local.host}:{local.port}/ (set sheets.credentials_file to write to Google Sheets)"
        )
    pool = credential_pool(settings, mapping)
    emails = [member.email for member in pool.members]
    root = pool.members[0].connection.api_root
    if len(emails) == 1:
        return f"Sheets API at {root} as {emails[0]}"
    lines = [f"Sheets API at {root} with a pool of {len(emails)} credentials, each with its own budget:"]
    lines += [f"  {member.email} ({member.connection.name})" for member in pool.members]
    if mapping is not None:
        lines += [f"spreadsheet {sid} is written as {how}" for sid, how in assignment(pool, mapping).items()]
    return "\n".join(lines)


def _refuse_pins(mapping: SheetMapping) -> None:
    """Without credentials there is nothing to pin to: ConfigError for the first company that pins."""
    for company in mapping.companies:
        if company.credential is not None:
            raise ConfigError(
                mapping.file,
                f"{company.where}.credential",
                f"pins credential {company.credential!r}, but no Google credentials are configured "
                "(set sheets.credentials, or remove the pin to write to the built-in local Sheets server)",
            )


def credential_pool(settings: Settings, mapping: SheetMapping | None = None) -> CredentialPool:
    """Every configured credential, loaded (ConfigError naming the file, the path and the reason for
    one that cannot be), with the ``mapping``'s pins checked against them; no request is sent."""
    from connector.sheets.client import connect_all
    from connector.sheets.pool import CredentialPool

    connections = connect_all(settings.sheets, source=settings.source)
    pool = CredentialPool.of(connections, settings.sheets.rate_limit)
    if mapping is not None:
        pool.check_pins(mapping)
    return pool


def assignment(pool: CredentialPool, mapping: SheetMapping) -> dict[str, str]:
    """Each mapped spreadsheet -> the credential that writes it, and why (pinned, or by hash)."""
    from connector.sync.routing import Router

    router = Router.from_mapping(mapping)
    return {sid: pool.describe(sid, router.pin(sid)) for sid in router.spreadsheets()}


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
