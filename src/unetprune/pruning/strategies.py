"""Pruning strategies: each returns ``(new_generator, info)``; the input is never modified.

* :func:`prune_single` — one named layer at ratio ``r`` (the sensitivity primitive).
* :func:`prune_inner` — encoder and decoder layers of a set of levels at ratio ``r``
  (default: :func:`default_inner_levels`, levels 5–8 for ``unet_256``).
* :func:`prune_cut` — remove the innermost ``k`` levels (a ``num_downs = N - k`` U-Net).
* :func:`prune_global_uniform` — the same ratio in every prunable layer (baseline G1).
* :func:`prune_global_threshold` — one importance threshold across all prunable layers,
  raw or layer-normalised (baseline G2); a layer always keeps at least its best filter.

``info`` is JSON-serialisable: strategy, parameters, importance, the per-layer kept
indices of pruned layers, widths and parameter counts before/after.
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

import torch

from ..models.unet import UNetGenerator
from .importance import IMPORTANCES, filter_importance, keep_by_ratio
from .surgery import (PruningError, check_layer, check_ratio, cut_inner_levels, layer_width,
                      prunable_layers, prune_channels, widths)

STRATEGIES = ("single", "inner", "cut", "global-uniform", "global-threshold")


def _params(g) -> int:
    return int(sum(p.numel() for p in g.parameters()))


def default_inner_levels(spec_or_generator) -> list[int]:
    """The levels whose encoder *and* decoder outputs have the network's largest width
    (the 8·ngf levels of the reference layout): 5–8 for ``unet_256`` (PAPER.md), 5–6 for
    a ``num_downs=6`` model.  Level 1 never qualifies (``up1`` is the RGB output)."""
    spec = getattr(spec_or_generator, "spec", spec_or_generator)
    n, enc, dec = spec.num_downs, spec.enc_widths, spec.dec_widths
    wmax = max(enc)
    levels = [i for i in range(2, n + 1) if enc[i - 1] == wmax and dec[i - 1] == wmax]
    return levels or [n]


def check_levels(generator: UNetGenerator, levels: Iterable[int]) -> list[int]:
    n = generator.num_downs
    try:
        lv = sorted({int(x) for x in levels})
    except (TypeError, ValueError):
        raise PruningError(f"levels must be integers, got {levels!r}") from None
    if not lv:
        raise PruningError("the level set is empty")
    bad = [x for x in lv if not 1 <= x <= n]
    if bad:
        raise PruningError(f"level(s) {bad} do not exist in this num_downs={n} U-Net "
                           f"(levels are 1..{n}, 1 = outermost)")
    return lv


def layers_of_levels(levels: Sequence[int]) -> list[str]:
    """``down{l}`` and ``up{l}`` of each level (``up1`` excluded: the RGB output)."""
    out = [f"down{lv}" for lv in levels]
    out += [f"up{lv}" for lv in sorted(levels, reverse=True) if lv != 1]
    return out


def _importances(generator, layers, importance, seed):
    scores, used = {}, {}
    for name in layers:
        scores[name], used[name] = filter_importance(generator, name, importance, seed)
    return scores, used


def _importance_label(importance) -> str:
    return importance if isinstance(importance, str) else getattr(importance, "__name__", "custom")


def _finish(generator, new, strategy, keep: dict[str, list[int]], used: dict[str, str],
            importance, **fields) -> tuple[UNetGenerator, dict]:
    req = _importance_label(importance)
    fallback = sorted(k for k, v in used.items() if v != req)
    info = {"strategy": strategy, **fields,
            "importance": req,
            "importance_fallback": {k: used[k] for k in fallback},
            "layers": sorted(keep, key=prunable_layers(generator).index),
            "kept": {k: {"n_before": layer_width(generator, k), "n_kept": len(v), "indices": list(v)}
                     for k, v in keep.items()},
            "widths_before": widths(generator), "widths": widths(new),
            "params_before": _params(generator), "params": _params(new)}
    return new, info


def prune_layers(generator: UNetGenerator, ratios: dict[str, float], importance: str | Callable = "l1",
                 seed: int = 0, strategy: str = "layers", **fields) -> tuple[UNetGenerator, dict]:
    """Prune each layer of ``ratios`` at its own ratio (the common primitive)."""
    for name, r in ratios.items():
        check_layer(generator, name)
        check_ratio(r, f"ratio for {name}")
    if isinstance(importance, str) and importance not in IMPORTANCES:
        raise PruningError(f"unknown importance {importance!r}; choose one of {', '.join(IMPORTANCES)}")
    scores, used = _importances(generator, list(ratios), importance, seed)
    keep = {name: keep_by_ratio(scores[name], r) for name, r in ratios.items()}
    new = prune_channels(generator, keep)
    return _finish(generator, new, strategy, keep, used, importance, seed=seed, **fields)


def prune_single(generator: UNetGenerator, layer: str, ratio: float, importance="l1", seed: int = 0):
    check_layer(generator, layer)
    r = check_ratio(ratio)
    return prune_layers(generator, {layer: r}, importance, seed, strategy="single", layer=layer, ratio=r)


def prune_inner(generator: UNetGenerator, ratio: float, levels: Iterable[int] | None = None,
                importance="l1", seed: int = 0):
    r = check_ratio(ratio)
    lv = check_levels(generator, levels) if levels is not None else default_inner_levels(generator)
    layers = layers_of_levels(lv)
    return prune_layers(generator, {name: r for name in layers}, importance, seed,
                        strategy="inner", levels=lv, ratio=r)


def prune_cut(generator: UNetGenerator, k: int):
    new = cut_inner_levels(generator, k)
    n = generator.num_downs
    return new, {"strategy": "cut", "k": k, "num_downs_before": n, "num_downs": n - k,
                 "removed_levels": list(range(n - k + 1, n + 1)),
                 "bn_to_bias": "eval-mode BatchNorm of the new innermost encoder level folded into "
                               "its conv (scale into weights, shift into bias where one exists)",
                 "layers": [f"down{i}" for i in range(n - k + 1, n + 1)]
                           + [f"up{i}" for i in range(n, n - k, -1)],
                 "dropout_levels": list(new.spec.dropout_levels),
                 "widths_before": widths(generator), "widths": widths(new),
                 "params_before": _params(generator), "params": _params(new)}


def prune_global_uniform(generator: UNetGenerator, ratio: float, importance="l1", seed: int = 0):
    r = check_ratio(ratio)
    return prune_layers(generator, {name: r for name in prunable_layers(generator)}, importance, seed,
                        strategy="global-uniform", ratio=r)


def global_candidates(generator: UNetGenerator, importance="l1", seed: int = 0, normalize: bool = False):
    """Removal order for global thresholding.

    Returns ``(order, scores, used)``: ``order`` lists ``(score, layer, index)`` of every
    filter that *may* be removed (each layer's single best filter is excluded, so no layer
    is ever emptied), sorted by increasing score, ties by layer order then index.  With
    ``normalize`` each layer's scores are divided by their mean (Torch-Pruning's "mean"
    normaliser), which makes layers of different fan-in comparable.
    """
    layers = prunable_layers(generator)
    scores, used = _importances(generator, layers, importance, seed)
    order = []
    for li, name in enumerate(layers):
        s = scores[name]
        if normalize:
            s = s / s.mean().clamp_min(torch.finfo(s.dtype).tiny)
        scores[name] = s
        best = int(torch.argsort(-s, stable=True)[0])
        order += [(float(s[j]), li, j) for j in range(s.numel()) if j != best]
    order.sort()
    return [(sc, layers[li], j) for sc, li, j in order], scores, used


def keep_from_removed(generator: UNetGenerator, removed: Iterable[tuple[str, int]]) -> dict[str, list[int]]:
    drop: dict[str, set[int]] = {}
    for name, j in removed:
        drop.setdefault(name, set()).add(j)
    return {name: [j for j in range(layer_width(generator, name)) if j not in drop.get(name, ())]
            for name in prunable_layers(generator)}


def prune_global_threshold(generator: UNetGenerator, threshold: float | None = None,
                           ratio: float | None = None, normalize: bool = False, importance="l1",
                           seed: int = 0, n_remove: int | None = None, _candidates=None):
    """Remove every filter whose (optionally layer-normalised) score is below ``threshold``.

    Give exactly one of ``threshold``, ``ratio`` (fraction of *all* prunable filters
    removed, ``int(total * ratio)``, capped so no layer empties) or ``n_remove`` (a
    count).  The reported ``threshold`` is always one that reproduces the removed set
    (midpoint between the last removed and the first kept candidate score).
    """
    given = [x is not None for x in (threshold, ratio, n_remove)]
    if sum(given) != 1:
        raise PruningError("global-threshold needs exactly one of threshold, ratio or n_remove")
    order, scores, used = _candidates or global_candidates(generator, importance, seed, normalize)
    total = sum(layer_width(generator, n) for n in prunable_layers(generator))
    if threshold is not None:
        m = sum(1 for sc, _, _ in order if sc < float(threshold))
    elif ratio is not None:
        r = check_ratio(ratio)
        m = min(int(total * r), len(order))
    else:
        m = max(0, min(int(n_remove), len(order)))
    if threshold is None:
        lo = order[m - 1][0] if m > 0 else float("-inf")
        hi = order[m][0] if m < len(order) else float("inf")
        if m == 0:
            threshold = hi if hi != float("inf") else 0.0
        elif hi == float("inf"):
            threshold = lo * 2 if lo > 0 else lo + 1.0
        else:
            threshold = 0.5 * (lo + hi)
    keep = keep_from_removed(generator, ((name, j) for _, name, j in order[:m]))
    pruned_keep = {k: v for k, v in keep.items() if len(v) < layer_width(generator, k)}
    new = prune_channels(generator, keep)
    return _finish(generator, new, "global-threshold", pruned_keep, {k: used[k] for k in pruned_keep},
                   importance, seed=seed, normalize=bool(normalize), threshold=float(threshold),
                   n_removed=m, fraction_removed=m / total)
