"""The ``doopage-sheets`` command line."""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="doopage-sheets")
def main() -> None:
    """Keep a Google Sheet of customers and orders current from DooPage CRM webhooks."""
