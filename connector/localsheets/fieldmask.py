"""Google's ``fields`` partial-response masks: ``sheets.properties``, ``sheets/properties``, ``sheets(properties(title))``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

# A parsed mask: field name -> sub-mask, where None selects the whole value.
Mask = dict[str, "Mask | None"]


# Where a spreadsheets.get answer holds its rows (RowData objects): built already masked, see split_at.
ROW_PATH: Final = ("sheets", "data", "rowData")


class FieldMaskError(ValueError):
    """A ``fields`` value that is not a valid mask."""


def parse_mask(text: str) -> Mask:
    """Parse a comma-separated mask with dotted paths and parenthesised sub-selections."""
    mask, end = _parse_list(text.replace(" ", ""), 0)
    if end != len(text.replace(" ", "")):
        raise FieldMaskError(text)
    return mask


def _parse_list(text: str, pos: int) -> tuple[Mask, int]:
    mask: Mask = {}
    while True:
        path: list[str] = []
        while True:
            start = pos
            while pos < len(text) and (text[pos].isalnum() or text[pos] in "_*"):
                pos += 1
            if pos == start:
                raise FieldMaskError(text)
            path.append(text[start:pos])
            if pos < len(text) and text[pos] in "./":
                pos += 1
                continue
            break
        sub: Mask | None = None
        if pos < len(text) and text[pos] == "(":
            sub, pos = _parse_list(text, pos + 1)
            if pos >= len(text) or text[pos] != ")":
                raise FieldMaskError(text)
            pos += 1
        _insert(mask, path, sub)
        if pos < len(text) and text[pos] == ",":
            pos += 1
            continue
        return mask, pos


def _insert(mask: Mask, path: list[str], sub: Mask | None) -> None:
    head, rest = path[0], path[1:]
    if rest:
        child = mask.get(head, {})
        if child is None:
            return  # the whole field is already selected
        _insert(child, rest, sub)
        mask[head] = child
    elif sub is None or mask.get(head, {}) is None:
        mask[head] = None
    else:
        existing = mask.get(head) or {}
        existing.update(sub)
        mask[head] = existing


def apply_mask(value: Any, mask: Mask | None) -> Any:
    """Keep only the selected fields of a JSON value (lists are filtered element by element)."""
    if mask is None or "*" in mask:
        return value
    if isinstance(value, list):
        return [apply_mask(item, mask) for item in value]
    if isinstance(value, dict):
        return {key: apply_mask(value[key], sub) for key, sub in mask.items() if key in value}
    return value


def split_at(mask: Mask | None, path: Sequence[str]) -> tuple[Mask | None, Mask | None]:
    """Split ``mask`` at ``path``: the mask with everything under ``path`` kept whole, and the mask for
    each value found there (None: all of it). For answers whose values at ``path`` (a great many cells)
    are built already masked, so that the mask is not walked over every one of them again."""
    if mask is None or "*" in mask or path[0] not in mask:
        return mask, None
    head, rest = path[0], path[1:]
    if not rest:
        return {**mask, head: None}, mask[head]
    outer, inner = split_at(mask[head], rest)
    return {**mask, head: outer}, inner
