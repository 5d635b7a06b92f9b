"""Filter importance and the keep-count rule.

A *filter* is one output channel of a prunable conv.  Scores (higher = more important):

* ``"l1"`` (default): ``sum |w|`` over the filter's weights.  For ``Conv2d`` the filter
  ``j`` is ``weight[j]``; for ``ConvTranspose2d`` (weight ``[C_in, C_out, k, k]``) it is
  ``weight[:, j]``.  The conv bias is not included (as Torch-Pruning's default).
* ``"l2"``: ``sqrt(sum w^2)`` over the same weights.
* ``"random"``: uniform scores from a generator seeded by ``(seed, layer name)``, so every
  layer gets its own reproducible draw whatever order layers are visited in.
* ``"bn"``: ``|gamma|`` of the BatchNorm that follows the conv (network slimming).  Layers
  without an affine BatchNorm (``down1``, the innermost ``downN``, InstanceNorm models)
  fall back to L1; :func:`filter_importance` reports the fallback.

Keep count (matches Torch-Pruning 1.6's local pruning, ``base_pruner.py``:
``n_pruned = n - int(n * (1 - ratio))``)::

    n_keep(n, ratio) = max(1, floor(n * (1 - ratio)))

i.e. the kept count is *floored*, so ``ratio`` is the minimum fraction removed; a layer
is never emptied (Torch-Pruning would empty it when ``int(n * (1 - ratio)) == 0``).
The floor is taken in exact arithmetic on the ratio *as written* (its shortest decimal
``repr``, see :func:`floor_fraction`), not on the rounded float product: ``int(20 * (1 - 0.9))``
is ``int(1.9999999999999996) == 1``, but 20 filters at ratio 0.9 keep 2.
The kept filters are the ``n_keep`` highest scores, ties broken towards the lower index,
returned in increasing index order.
"""

from __future__ import annotations

import math
import zlib
from fractions import Fraction
from typing import Callable

import torch
from torch import nn

IMPORTANCES = ("l1", "l2", "random", "bn")


def exact_ratio(ratio) -> Fraction:
    """``ratio`` as an exact fraction: the decimal it is written as (``0.9`` -> 9/10), not the
    binary float nearest to it."""
    if isinstance(ratio, Fraction):
        return ratio
    if isinstance(ratio, int):
        return Fraction(ratio)
    return Fraction(repr(float(ratio)))


def floor_fraction(n: int, ratio) -> int:
    """``floor(n * ratio)`` in exact arithmetic (``ratio`` read by :func:`exact_ratio`)."""
    return math.floor(int(n) * exact_ratio(ratio))


def n_keep(n: int, ratio: float) -> int:
    """Filters kept when pruning ``ratio`` of ``n``: ``max(1, floor(n * (1 - ratio)))``,
    floored exactly (see module doc)."""
    return max(1, floor_fraction(n, 1 - exact_ratio(ratio)))


def _filter_weights(conv: nn.Module) -> torch.Tensor:
    """``[C_out, fan]`` view of a conv's weights, one row per output filter."""
    w = conv.weight.detach()
    if isinstance(conv, nn.ConvTranspose2d):
        w = w.transpose(0, 1)
    return w.reshape(w.shape[0], -1)


def layer_seed(seed: int, layer: str) -> int:
    return (int(seed) * 1_000_003 + zlib.crc32(layer.encode())) % (2**63 - 1)


def filter_importance(
    generator: nn.Module, layer: str, method: str | Callable = "l1", seed: int = 0
) -> tuple[torch.Tensor, str]:
    """Scores of the output filters of ``layer`` (the conv its family names for it, e.g.
    ``generator.<layer>.conv`` for pix2pix) and the method actually used.

    ``method`` may also be a callable ``f(generator, layer) -> 1-D tensor``.
    Returns ``(scores as float64 CPU tensor, method used)``; the method differs from the
    request only for the ``"bn"`` fallback to ``"l1"``.
    """
    from ..family import family_of

    conv, norm = family_of(generator).layer_filters(generator, layer)
    if callable(method):
        scores = torch.as_tensor(method(generator, layer)).detach().double().cpu().flatten()
        used = getattr(method, "__name__", "custom")
    elif method == "l1":
        scores, used = _filter_weights(conv).abs().sum(1), "l1"
    elif method == "l2":
        scores, used = _filter_weights(conv).pow(2).sum(1).sqrt(), "l2"
    elif method == "random":
        gen = torch.Generator().manual_seed(layer_seed(seed, layer))
        scores, used = torch.rand(conv.out_channels, generator=gen, dtype=torch.float64), "random"
    elif method == "bn":
        if isinstance(norm, nn.BatchNorm2d) and norm.affine:
            scores, used = norm.weight.detach().abs(), "bn"
        else:
            scores, used = _filter_weights(conv).abs().sum(1), "l1"
    else:
        raise ValueError(f"unknown importance {method!r}; choose one of {IMPORTANCES}")
    scores = scores.detach().double().cpu()
    if scores.numel() != conv.out_channels:
        raise ValueError(f"importance for {layer} has {scores.numel()} entries, expected {conv.out_channels}")
    return scores, used


def top_k_indices(scores: torch.Tensor, k: int) -> list[int]:
    """Indices of the ``k`` highest scores (ties → lower index), sorted increasingly."""
    order = torch.argsort(-scores, stable=True)[:k]
    return sorted(int(i) for i in order)


def keep_by_ratio(scores: torch.Tensor, ratio: float) -> list[int]:
    return top_k_indices(scores, n_keep(scores.numel(), ratio))
