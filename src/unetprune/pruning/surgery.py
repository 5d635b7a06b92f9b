"""What every family's channel surgery shares: the error it raises, ratio and level checks, and
copying the kept entries of a normalisation layer."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..errors import UserFacingError


class PruningError(UserFacingError):
    """A pruning request that does not fit the model (unknown layer, bad ratio, bad level set...)."""


def check_ratio(ratio: float, what: str = "ratio") -> float:
    try:
        r = float(ratio)
    except (TypeError, ValueError):
        raise PruningError(f"{what} must be a number in [0, 1), got {ratio!r}") from None
    if not 0.0 <= r < 1.0:
        raise PruningError(f"{what} must be in [0, 1) (fraction of filters removed), got {ratio!r}")
    return r


def index_tensor(ix: Sequence[int], device) -> torch.Tensor:
    return torch.as_tensor(list(ix), dtype=torch.long, device=device)


def copy_norm(dst: nn.Module, src: nn.Module, keep: torch.Tensor) -> None:
    if isinstance(src, nn.BatchNorm2d):
        if src.affine:
            dst.weight.data.copy_(src.weight.data[keep])
            dst.bias.data.copy_(src.bias.data[keep])
        if src.track_running_stats:
            dst.running_mean.data.copy_(src.running_mean.data[keep])
            dst.running_var.data.copy_(src.running_var.data[keep])
            dst.num_batches_tracked.data.copy_(src.num_batches_tracked.data)


def parse_levels(levels) -> list[int]:
    """Sorted distinct integer levels, or :class:`PruningError` (not integers; empty)."""
    try:
        lv = sorted({int(x) for x in levels})
    except (TypeError, ValueError):
        raise PruningError(f"levels must be integers, got {levels!r}") from None
    if not lv:
        raise PruningError("the level set is empty")
    return lv
