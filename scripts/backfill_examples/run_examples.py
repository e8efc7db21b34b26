"""Run the three backfill examples against a local Sheets server and show the sheets they give.

    python scripts/backfill_examples/run_examples.py

Starts ``doopage-sheets local-sheets`` on a free port, writes settings (the shipped mapping,
config/mapping.example.toml) into a temporary folder, runs each backfill command of README.md twice (the
second run stores and writes nothing), and prints the Customers, Orders and Events worksheets.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from connector.localsheets.testing import LocalSheets, local_sheets_process

HERE = Path(__file__).resolve().parent
MAPPING = HERE.parents[1] / "config" / "mapping.example.toml"
SPREADSHEET = "backfill-examples"

COMMANDS = [
    ["events", str(HERE / "events.jsonl")],
    [
        "customers",
        str(HERE / "customers.csv"),
        "--column", "customer.id=ID",
        "--column", "customer.name=Full name",
        "--column", "tags=Tags",
        "--column", "note=Note",
        "--column", "pipeline.name=Stage",
        "--as-of", "2024-06-01T00:00:00+07:00",
    ],
    [
        "orders",
        str(HERE / "orders.csv"),
        "--column", "order.id=Order",
        "--column", "order.created_at=Created",
        "--column", "order.modified_at=Modified",
        "--column", "order.picking_status=Picking",
        "--column", "order.payment_status=Payment",
        "--timezone", "Asia/Ho_Chi_Minh",
        "--as-of", "2024-06-01T00:00:00+07:00",
    ],
]  # fmt: skip


def write_settings(folder: Path, api_root: str) -> Path:
    """Settings with the shipped mapping, writing to the local server's example spreadsheet."""
    mapping = MAPPING.read_text(encoding="utf-8").replace('"doopage-demo"', f'"{SPREADSHEET}"')
    (folder / "mapping.toml").write_text(mapping, encoding="utf-8")
    settings = folder / "settings.toml"
    settings.write_text(
        f"""[server]
data_dir = "data"

[[endpoints]]
name = "main"
token = "backfill-example-token-0123456789"
validation_key = "example"

[mapping]
file = "mapping.toml"

[sheets]
api_root = "{api_root}"

[worker]
embedded = false
""",
        encoding="utf-8",
    )
    return settings


def show(console: Console, sheets: LocalSheets, title: str) -> None:
    """Print one worksheet as a table."""
    header, *rows = sheets.sheet_values(SPREADSHEET, title)
    table = Table(title=title)
    for name in header:
        table.add_column(str(name))
    for row in rows:
        table.add_row(*(str(cell) for cell in row))
    console.print(table)


def main() -> None:
    """Run every example twice, then print the sheets."""
    console = Console()
    with tempfile.TemporaryDirectory() as folder, local_sheets_process() as sheets:
        sheets.create_spreadsheet(SPREADSHEET)
        settings = write_settings(Path(folder), sheets.url)
        for attempt in ("first run", "second run: nothing new"):
            console.rule(attempt)
            for args in COMMANDS:
                command = ["doopage-sheets", "backfill", args[0], "--config", str(settings), *args[1:]]
                console.print(f"$ {shlex.join(command)}", style="bold", highlight=False)
                subprocess.run([sys.executable, "-m", "connector", *command[1:]], check=True)
        for title in ("Customers", "Orders", "Events"):
            show(console, sheets, title)
        console.print(f"Sheets requests: {sheets.counts()}")


if __name__ == "__main__":
    main()
