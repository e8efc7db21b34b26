"""Showing text that came from outside (webhook bodies, Sheets answers, CSV files) to an operator.

Such text may hold terminal escape sequences, carriage returns, or Unicode bidi controls that reorder what
is shown around them (``"abc\\u202egnp.exe"`` shows as ``abcexe.png``). :func:`printable` shows each of
those characters as an escape (``\\x1b``, ``\\u202e``) instead; newlines and tabs stay as they are. For
rich, whose strings are markup (``[/bold]`` in an event type would make it raise MarkupError):
:func:`as_text` makes a whole table cell or title that is never read as markup, and :func:`for_rich`
escapes text to put into a markup string.
"""

from __future__ import annotations

from typing import Final

from rich.markup import escape
from rich.text import Text

__all__ = ["as_text", "for_rich", "printable"]

# Arabic letter mark, LRM/RLM, the embeddings and overrides, the isolates, and the line/paragraph separators.
_BIDI_AND_BREAKS: Final = (
    0x061C,
    0x200E,
    0x200F,
    *range(0x202A, 0x202F),
    *range(0x2066, 0x206A),
    0x2028,
    0x2029,
)
_CONTROLS: Final = (*range(0x00, 0x20), *range(0x7F, 0xA0))
_KEPT: Final = frozenset({ord("\n"), ord("\t")})


def _escape_of(code: int) -> str:
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


_TABLE: Final = {code: _escape_of(code) for code in (*_CONTROLS, *_BIDI_AND_BREAKS) if code not in _KEPT}


def printable(value: object) -> str:
    """``str(value)`` with control characters and bidi controls shown as escapes (newline and tab kept)."""
    return str(value).translate(_TABLE)


def as_text(value: object) -> Text:
    """``printable(value)`` as a rich Text, shown exactly as it is (no markup is read in it)."""
    return Text(printable(value))


def for_rich(value: object) -> str:
    """``printable(value)`` escaped for a rich markup string, where it prints as the text it is. (rich
    doubles a trailing backslash, so that it cannot escape a tag that follows; at the very end of the
    markup it shows twice: use :func:`as_text` for a whole cell.)"""
    return escape(printable(value))
