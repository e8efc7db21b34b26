"""The Sheets request budget as the worker last saw it, kept in the data directory for ``status``.

The worker's budgets live in its process (they adapt to 429s, see ``connector.sheets.ratelimit``);
after each pass the worker writes them to ``sheets-budget.json`` (replaced atomically), and
``doopage-sheets status``, another process, reads them from there.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import msgspec

from connector.sheets.ratelimit import BudgetState

__all__ = ["BUDGET_FILE", "load_budget", "save_budget"]

BUDGET_FILE = "sheets-budget.json"


class _Saved(msgspec.Struct):
    saved_unix: float
    budgets: list[BudgetState]


def save_budget(data_dir: Path, budgets: Sequence[BudgetState], now: float) -> None:
    """Replace the budget file with these budgets (write a temporary file, then rename it)."""
    data = msgspec.json.encode(_Saved(saved_unix=now, budgets=list(budgets)))
    fd, tmp = tempfile.mkstemp(prefix=f".{BUDGET_FILE}.", dir=data_dir)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, data_dir / BUDGET_FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_budget(data_dir: Path) -> tuple[float, list[BudgetState]] | None:
    """When the budgets were saved and what they were; None without a readable file."""
    try:
        saved = msgspec.json.decode((data_dir / BUDGET_FILE).read_bytes(), type=_Saved)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        return None
    return saved.saved_unix, saved.budgets
