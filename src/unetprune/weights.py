"""Reading weights files safely, and comparing a file's state dict with the one a network
expects: the one owner of the "what is wrong with this file" lines of every weights loader.

Every torch file the package reads (checkpoints, released weights, evaluation networks,
cached features) goes through :func:`load_weights`: ``torch.load(weights_only=True)`` only, so
a file that would build other objects (run code) is refused, and every failure is one line
naming the file.  Callers keep their own error class and wording through its arguments.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from .errors import UserFacingError

UNREADABLE = "{path}: cannot be read as {what} (torch.load weights_only=True): {first}"
MISSING = "{path}: no such weights file"


class WeightsFileError(UserFacingError, ValueError):
    """A weights file is unreadable or holds another architecture (the message names the file)."""


def first_line(e: BaseException, limit: int | None = None) -> str:
    """The first non-empty line of ``e``'s message (its type name when it has none), cut at ``limit``."""
    text = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return text[:limit] if limit is not None else text


def is_state_dict(obj) -> bool:
    """Whether ``obj`` is a plain state dict: a dict of name → tensor."""
    return isinstance(obj, dict) and all(isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items())


def load_weights(
    path: Path | str,
    what: str = "a torch weights file",
    *,
    error: Callable[[str], Exception] = WeightsFileError,
    map_location="cpu",
    missing: str | None = MISSING,
    unreadable: str = UNREADABLE,
    not_state_dict: str | None = None,
) -> Any:
    """The object in the torch file ``path``, read with ``torch.load(weights_only=True)``.

    Failures raise ``error(message)``, one line naming the file; the messages are templates
    formatted with ``path``, ``what``, ``first`` (the first line of torch's message, as
    :func:`first_line`) and ``kind`` (its exception type):

    * ``missing``: ``path`` is not a file (None: no check, ``unreadable`` reports it);
    * ``unreadable``: ``torch.load`` refused the file (pickled code, truncated, not a torch file);
    * ``not_state_dict``: given, the object must be a plain state dict (:func:`is_state_dict`).
    """
    path = Path(path)
    if missing is not None and not path.is_file():
        raise error(missing.format(path=path, what=what))
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 — unpickling, truncated and missing files raise many types
        raise error(
            unreadable.format(path=path, what=what, first=first_line(e), kind=type(e).__name__)
        ) from e
    if not_state_dict is not None and not is_state_dict(obj):
        raise error(not_state_dict.format(path=path, what=what))
    return obj


def shape_mismatch(
    want: Mapping[str, tuple], have: Mapping[str, tuple], optional: Callable[[str], bool] = lambda k: False
) -> list[str]:
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
