"""`demo` prints a worksheet as a table when it fits the terminal, and row by row when it does not."""

from __future__ import annotations

from rich.console import Console

from connector.commands.demo import _print_worksheet

ROWS: list[list[object]] = [
    ["Customer ID", "Name", "Status", "Assigned to", "Note", "Pipeline stage", "First seen", "Last activity"],
    [
        1,
        "DooPage customer",
        "closed",
        "Doopage staff 2",
        "Customer note",
        "Re-target",
        "2021-04-11 12:14:00",
        "2026-12-01 23:31:58",
    ],
]


def printed(width: int) -> str:
    console = Console(width=width, record=True, color_system=None)
    _print_worksheet(console, "doopage-demo / Customers", ROWS)
    return console.export_text()


def test_eighty_columns_get_whole_values_row_by_row():
    text = printed(80)
    assert "…" not in text
    assert all(len(line.rstrip()) <= 80 for line in text.splitlines())
    assert "Name:           DooPage customer" in text
    assert "Last activity:  2026-12-01 23:31:58" in text


def test_a_wide_terminal_gets_the_table():
    text = printed(200)
    assert "┃ Customer ID ┃ Name" in text
    assert "DooPage customer" in text
