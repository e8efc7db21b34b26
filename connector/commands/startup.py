"""What `serve` prints when it starts: the URLs a person needs, with the path token masked by default.

Printed on standard output, not logged: the log filter would (rightly) blank the token out of a log
record, with ``--show-token`` the whole URL is what the operator asked for, and the logs on standard error
stay parseable when they are JSON lines.
"""

from __future__ import annotations

import click

from connector.addresses import local_url
from connector.settings import Settings

__all__ = ["mask", "print_start_banner", "webhook_urls"]

SHOWN_PREFIX = 4


def mask(token: str) -> str:
    """The first characters of a token and an ellipsis: enough to tell two endpoints apart."""
    return f"{token[:SHOWN_PREFIX]}…"


def webhook_urls(settings: Settings, *, show_token: bool) -> list[tuple[str, str]]:
    """(endpoint name, URL) of every endpoint, as reached on this machine."""
    server = settings.server
    base = local_url(server.host, server.port)
    urls = []
    for endpoint in settings.endpoints:
        token = endpoint.token.reveal()
        urls.append(
            (
                endpoint.name,
                f"{base}/webhooks/doopage/{token if show_token else mask(token)}",
            )
        )
    return urls


def print_start_banner(settings: Settings, console_url: str | None, *, show_token: bool) -> None:
    """The webhook URLs to paste into DooPage, and where the console is."""
    lines = ["", "doopage-sheets is starting."]
    for name, url in webhook_urls(settings, show_token=show_token):
        lines.append(f"  Webhook URL ({name}): {url}")
    lines.append(
        "    Paste it into DooPage (Integrations → Webhook) with the endpoint's validation key; DooPage needs"
    )
    lines.append(
        "    it over HTTPS, so publish it through your reverse proxy as https://<your host>/webhooks/..."
    )
    if not show_token:
        lines.append("    The token is masked here: run `serve --show-token` to print the URL whole.")
    if console_url is not None:
        lines.append(f"  Operator console: {console_url}")
    lines.append("")
    click.echo("\n".join(lines))
