"""The ``doopage-sheets`` command line: the group, and every command registered on it."""

from __future__ import annotations

import click

from connector.commands import backfill, demo, inspect, operate, service, setup, storage


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="doopage-sheets")
def main() -> None:
    """Keep a Google Sheet of customers and orders current from DooPage CRM webhooks."""


for command in (
    service.serve,
    demo.demo,
    service.worker,
    service.local_sheets,
    inspect.status,
    inspect.check_config,
    operate.failed,
    operate.replay,
    operate.send_samples,
    backfill.backfill,
    setup.init,
    setup.mapping,
    storage.migrate,
    storage.store,
):
    main.add_command(command)
