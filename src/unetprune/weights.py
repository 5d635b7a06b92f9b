"""Comparing a weights file's state dict with the one a network expects (one owner for the
"what is wrong with this file" lines of every weights loader)."""

from __future__ import annotations

from collections.abc import Callable, Mapping


def shape_mismatch(want: Mapping[str, tuple], have: Mapping[str, tuple],
                   optional: Callable[[str], bool] = lambda k: False) -> list[str]:
    """Short descriptions of how the shapes ``have`` (key → shape) differ from ``want``: missing
    keys (except ``optional`` ones), unexpected keys and wrong shapes, each with an example;
    an empty list when they fit."""
    missing = [k for k in want if k not in have and not optional(k)]
    extra = [k for k in have if k not in want]
    shapes = [k for k in want if k in have and tuple(have[k]) != tuple(want[k])]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys (e.g. {missing[0]})")
    if extra:
        parts.append(f"{len(extra)} unexpected keys (e.g. {extra[0]})")
    if shapes:
        k = shapes[0]
        parts.append(f"{len(shapes)} wrong shapes (e.g. {k}: {tuple(have[k])}, expected {tuple(want[k])})")
    return parts
