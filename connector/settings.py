"""Settings: one TOML file decoded by msgspec into strict, typed structs.

Unknown keys are errors, and every mistake is reported as :class:`~connector.errors.ConfigError` with the
file, the path inside it (``endpoints[0].token``) and the reason. A secret may be written in the file as
it is, or as ``env:NAME`` (read from the environment variable NAME) or ``file:PATH`` (read from a file,
surrounding white space stripped); either way it is held as a :class:`Secret` that never prints itself.
Relative paths in the file are taken relative to the file's own folder.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import msgspec

from connector.addresses import is_loopback
from connector.errors import ConfigError, suggest_known_field
from connector.sheets.config import RateLimitSettings, RetrySettings, SheetsSettings
from connector.sync.mapping import MappingSettings

__all__ = [
    "AlertSettings",
    "BasicAuth",
    "ConsoleSettings",
    "EndpointSettings",
    "LocalSheetsSettings",
    "Secret",
    "ServerSettings",
    "Settings",
    "SmtpSettings",
    "StoreSettings",
    "WorkerSettings",
    "load_settings",
    "parse_settings",
]


class Secret:
    """A secret string; ``repr`` and ``str`` hide it, only :meth:`reveal` gives it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself, for comparing or sending; never for logging."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]

# A path token is part of the webhook URL, so it must be URL-safe, and long enough not to be guessed.
MIN_TOKEN_LENGTH = 16
_TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9_-]+$")


class ServerSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """Where the service listens and keeps its data."""

    host: str = "127.0.0.1"
    port: Port = 8080
    data_dir: str = "data"
    body_limit: Annotated[int, msgspec.Meta(ge=1024, le=16 * 1024 * 1024)] = 256 * 1024
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = "text"
    # How long a webhook waits for its commit before it is answered 503 (and /readyz with it).
    commit_timeout_ms: Annotated[int, msgspec.Meta(ge=100, le=600_000)] = 5_000
    # Reverse proxies (CIDRs) whose X-Forwarded-For is believed when checking an endpoint's allow_ips.
    trusted_proxies: list[str] = msgspec.field(default_factory=list)
    # Connection limits (connector.http_limits): a request's line and headers together, in bytes (431
    # beyond); seconds to receive them, and then the body (408 after); seconds an idle kept-alive
    # connection stays open; connections at once (requests beyond get 503).
    max_header_bytes: Annotated[int, msgspec.Meta(ge=1024, le=1024 * 1024)] = 16 * 1024
    header_timeout: Annotated[float, msgspec.Meta(gt=0, le=300)] = 10.0
    body_timeout: Annotated[float, msgspec.Meta(gt=0, le=600)] = 20.0
    keepalive_timeout: Annotated[int, msgspec.Meta(ge=1, le=300)] = 5
    max_connections: Annotated[int, msgspec.Meta(ge=8, le=100_000)] = 512


class BasicAuth(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """HTTP basic auth credentials an endpoint requires."""

    username: Annotated[str, msgspec.Meta(min_length=1, pattern=r"^[^:]+$")]
    password: Secret


class EndpointSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """One webhook URL given to DooPage: ``/webhooks/doopage/{token}``."""

    name: Name
    token: Secret
    validation_key: Secret
    companies: list[int] = msgspec.field(default_factory=list)
    # Client addresses (CIDRs) allowed to use this URL; empty allows every address.
    allow_ips: list[str] = msgspec.field(default_factory=list)
    # HTTP basic auth required on this URL, if set (put the user and password in the URL given to DooPage).
    basic_auth: BasicAuth | None = None

    def accepts(self, company_id: int) -> bool:
        """Whether events of this company are taken on this endpoint (an empty list takes all)."""
        return not self.companies or company_id in self.companies


class WorkerSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """When and how the worker flushes."""

    # Run the worker inside `serve`; false when a separate `doopage-sheets worker` process does the work.
    embedded: bool = True
    # Flush when this many events are pending...
    batch_size: PositiveInt = 500
    # ...or when the oldest pending event has waited this long (milliseconds); in either case only once
    # the Sheets request budget lets the flush start (one read and one write every 1.2 s by default).
    max_delay_ms: PositiveInt = 500
    # The most events one flush takes (bounds the worker's memory); a flush takes what is pending up to
    # this and about sheets.max_request_bytes of bodies.
    max_batch_events: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 50_000
    # How long a spreadsheet lock and a claim last unless renewed (milliseconds); a flush renews both
    # every third of it, so a dead worker's are taken over this long after it stopped renewing.
    lease_ms: Annotated[int, msgspec.Meta(ge=1_000)] = 10_000
    # How often an idle worker looks for work (milliseconds).
    poll_ms: PositiveInt = 100
    # Back-off after a transient failure of a spreadsheet: doubled each time, up to the maximum.
    backoff_ms: PositiveInt = 2_000
    max_backoff_ms: PositiveInt = 300_000


class StoreSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """A shared PostgreSQL store instead of the SQLite file in ``server.data_dir`` (see README, "When one
    machine is not enough"); the URL is a secret (it may hold a password): ``env:NAME`` or ``file:PATH``."""

    url: Secret  # postgresql://user:password@host:5432/database?sslmode=require
    # Connections each worker process keeps (a flush and its heartbeat run at once).
    worker_pool_size: Annotated[int, msgspec.Meta(ge=2, le=64)] = 2
    # Group commits the intake of one replica may have in flight at once.
    commit_concurrency: Annotated[int, msgspec.Meta(ge=1, le=64)] = 2


class LocalSheetsSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """The built-in local Sheets server, used when no Google credentials are configured."""

    host: str = "127.0.0.1"
    port: Port = 8765
    data_file: str = "local-sheets.json"  # in the data directory
    # Names besides the loopback ones (and host) that browsers may reach it by, e.g. this machine's LAN
    # name when host = "0.0.0.0"; any other Host header is refused (a defence against DNS rebinding).
    allowed_hosts: list[str] = msgspec.field(default_factory=list)


class ConsoleSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """The operator console, served by `serve` on a listener of its own."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: Port = 8081
    # Required when host is not a loopback address: the console shows the business's data and can retry.
    basic_auth: BasicAuth | None = None


class SmtpSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """Where alert e-mails go out."""

    host: str
    port: Port = 587
    starttls: bool = True
    username: str | None = None
    password: Secret | None = None
    sender: Annotated[str, msgspec.Meta(pattern=r"^[^@\s]+@[^@\s]+$")]
    to: Annotated[
        list[Annotated[str, msgspec.Meta(pattern=r"^[^@\s]+@[^@\s]+$")]], msgspec.Meta(min_length=1)
    ]


class AlertSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """Optional alerts when a spreadsheet's events are parked or its lag passes a threshold."""

    # A JSON webhook: {"text": ...} is POSTed (Slack, Google Chat; Discord at its .../slack URL).
    webhook_url: Secret | None = None
    smtp: SmtpSettings | None = None
    lag_minutes: PositiveInt = 10  # alert when the oldest pending event of a spreadsheet is older
    repeat_minutes: PositiveInt = 60  # the same alert at most this often while its condition lasts
    check_seconds: PositiveInt = 30

    @property
    def enabled(self) -> bool:
        """Whether any channel is configured."""
        return self.webhook_url is not None or self.smtp is not None


class Settings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """The whole configuration file."""

    endpoints: Annotated[list[EndpointSettings], msgspec.Meta(min_length=1)]
    server: ServerSettings = msgspec.field(default_factory=ServerSettings)
    mapping: MappingSettings = msgspec.field(default_factory=MappingSettings)  # see connector.sync.mapping
    sheets: SheetsSettings = msgspec.field(default_factory=SheetsSettings)  # see connector.sheets.config
    worker: WorkerSettings = msgspec.field(default_factory=WorkerSettings)
    local_sheets: LocalSheetsSettings = msgspec.field(default_factory=LocalSheetsSettings)
    console: ConsoleSettings = msgspec.field(default_factory=ConsoleSettings)
    alerts: AlertSettings = msgspec.field(default_factory=AlertSettings)
    store: StoreSettings | None = None  # None: the SQLite file in server.data_dir
    source: str = ""  # the file these settings came from; set by load_settings, not written in the file

    @property
    def data_dir(self) -> Path:
        """The data directory, absolute."""
        return Path(self.server.data_dir)

    def secret_values(self) -> list[str]:
        """Every secret these settings hold, for the log filter to take out."""
        secrets = []
        for endpoint in self.endpoints:
            secrets += [endpoint.token.reveal(), endpoint.validation_key.reveal()]
            if endpoint.basic_auth is not None:
                secrets.append(endpoint.basic_auth.password.reveal())
        if self.console.basic_auth is not None:
            secrets.append(self.console.basic_auth.password.reveal())
        if self.alerts.webhook_url is not None:
            secrets.append(self.alerts.webhook_url.reveal())
        if self.alerts.smtp is not None and self.alerts.smtp.password is not None:
            secrets.append(self.alerts.smtp.password.reveal())
        if self.store is not None:
            url = self.store.url.reveal()
            secrets.append(url)
            password = urlsplit(url).password
            if password:
                secrets.append(password)
        return secrets


_FIELD_NAMES = [
    name
    for struct in (
        Settings,
        ServerSettings,
        EndpointSettings,
        BasicAuth,
        WorkerSettings,
        LocalSheetsSettings,
        ConsoleSettings,
        AlertSettings,
        SmtpSettings,
        MappingSettings,
        SheetsSettings,
        RetrySettings,
        RateLimitSettings,
    )
    for name in struct.__struct_fields__
]


def load_settings(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate a settings file, or raise ConfigError naming the file, the path and the reason."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(file, "", f"cannot read the file ({exc})") from None
    return parse_settings(text, file, environ)


def parse_settings(text: str, file: str, environ: Mapping[str, str] | None = None) -> Settings:
    """Validate settings given as TOML text; ``file`` names it in errors and anchors relative paths."""
    env = os.environ if environ is None else environ
    base = Path(file).resolve().parent
    try:
        settings = msgspec.toml.decode(text, type=Settings, dec_hook=_secret_hook(env, base))
    except msgspec.ValidationError as exc:
        raise _located(file, str(exc)) from None
    except msgspec.DecodeError as exc:
        raise ConfigError(file, "", f"not valid TOML: {exc}") from None
    _check_endpoints(file, settings.endpoints)
    credentials_problem = settings.sheets.credentials_problem()
    if credentials_problem is not None:
        raise ConfigError(file, *credentials_problem)
    _check_console(file, settings.console)
    webhook = settings.alerts.webhook_url
    if webhook is not None and not webhook.reveal().startswith(("https://", "http://")):
        raise ConfigError(file, "alerts.webhook_url", "an http(s) URL is needed (the incoming webhook's URL)")
    for j, cidr in enumerate(settings.server.trusted_proxies):
        _check_network(file, f"server.trusted_proxies[{j}]", cidr)
    if settings.store is not None:
        _check_store_url(file, settings.store.url.reveal())
    server = msgspec.structs.replace(
        settings.server, data_dir=str((base / settings.server.data_dir).resolve())
    )
    return msgspec.structs.replace(settings, server=server, source=file)


def _secret_hook(env: Mapping[str, str], base: Path) -> Callable[[type, Any], Any]:
    """A msgspec dec_hook that builds Secrets; errors raised here come back with their path."""

    def hook(kind: type, value: Any) -> Any:
        if kind is not Secret:
            raise NotImplementedError(kind)
        if not isinstance(value, str):
            raise TypeError(f"Expected `str`, got `{type(value).__name__}`")
        return Secret(resolve_secret(value, env, base))

    return hook


def resolve_secret(value: str, env: Mapping[str, str], base: Path) -> str:
    """Resolve ``env:NAME`` and ``file:PATH`` references; a plain string is the secret itself."""
    if value.startswith("env:"):
        name = value[4:]
        if name not in env:
            raise ValueError(f"environment variable {name} is not set")
        resolved = env[name]
    elif value.startswith("file:"):
        secret_path = base / value[5:]
        try:
            resolved = secret_path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"cannot read secret file {secret_path} ({exc.__class__.__name__})") from None
    else:
        resolved = value
    if not resolved:
        raise ValueError("the secret is empty")
    return resolved


def _located(file: str, message: str) -> ConfigError:
    """Split msgspec's ``reason - at `$.a[0].b``` into a ConfigError; suggest the key a typo meant."""
    reason, sep, where = message.rpartition(" - at ")
    if not sep:
        return ConfigError(file, "", suggest_known_field(message, _FIELD_NAMES))
    path = where.strip("`").removeprefix("$").removeprefix(".")
    return ConfigError(file, path, suggest_known_field(reason, _FIELD_NAMES))


def _check_endpoints(file: str, endpoints: list[EndpointSettings]) -> None:
    """Checks that span fields: token shape and uniqueness of names and tokens."""
    names: set[str] = set()
    tokens: set[str] = set()
    for i, endpoint in enumerate(endpoints):
        token = endpoint.token.reveal()
        if len(token) < MIN_TOKEN_LENGTH or not _TOKEN_PATTERN.match(token):
            raise ConfigError(
                file,
                f"endpoints[{i}].token",
                f"a path token must be at least {MIN_TOKEN_LENGTH} characters of A-Z, a-z, 0-9, '-' or '_' "
                "(generate one with: python -c 'import secrets; print(secrets.token_urlsafe(24))')",
            )
        for j, cidr in enumerate(endpoint.allow_ips):
            _check_network(file, f"endpoints[{i}].allow_ips[{j}]", cidr)
        if endpoint.name in names:
            raise ConfigError(file, f"endpoints[{i}].name", f"endpoint name {endpoint.name!r} is used twice")
        if token in tokens:
            raise ConfigError(file, f"endpoints[{i}].token", "two endpoints have the same token")
        names.add(endpoint.name)
        tokens.add(token)


def _check_console(file: str, console: ConsoleSettings) -> None:
    if console.enabled and console.basic_auth is None and not is_loopback(console.host):
        raise ConfigError(
            file,
            "console.basic_auth",
            f"the console listens on {console.host}, not only on this machine, so it needs a password: "
            'set console.basic_auth = { username = "...", password = "env:NAME" } (or host = "127.0.0.1")',
        )


def _check_store_url(file: str, url: str) -> None:
    """A PostgreSQL connection URL (``postgresql://user@host/db``); its text is never put in the error."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigError(
            file,
            "store.url",
            "not a PostgreSQL URL: it must start with postgresql:// (postgresql://user@host/db)",
        )
    try:
        parts.port  # noqa: B018 (raises on a port that is not a number)
    except ValueError:
        raise ConfigError(file, "store.url", "the port in the URL is not a number") from None
    if not parts.path.strip("/") and "dbname=" not in parts.query:
        raise ConfigError(file, "store.url", "the URL names no database (postgresql://user@host/DATABASE)")


def _check_network(file: str, path: str, cidr: str) -> None:
    """An address or network in CIDR notation (``203.0.113.0/24``, ``2001:db8::/32``, ``10.0.0.1``)."""
    try:
        ipaddress.ip_network(cidr, strict=False)
    except ValueError as exc:
        raise ConfigError(file, path, f"not an IP address or network: {exc}") from None
