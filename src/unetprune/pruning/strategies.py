"""Pruning strategies: each returns ``(new_generator, info)``; the input is never modified.

* :func:`prune_single` — one named layer at ratio ``r`` (the sensitivity primitive).
* :func:`prune_inner` — encoder and decoder layers of a set of levels at ratio ``r``
  (default: :func:`default_inner_levels`, levels 5–8 for ``unet_256``).
* :func:`prune_cut` — remove the innermost ``k`` levels (a ``num_downs = N - k`` U-Net).
* :func:`prune_global_uniform` — the same ratio in every prunable layer (baseline G1).
* :func:`prune_plan` — one ratio per prunable group, chosen from the sensitivity sweep so
  that the model fits a budget with the least summed degradation (:mod:`.plan`).
* :func:`prune_global_threshold` — one importance threshold across all prunable layers
  (baseline G2).  By default the scores are layer-normalised (each divided by its layer's
  mean, Torch-Pruning's default normaliser) and no layer loses more than
  ``max_layer_ratio`` (default 0.9) of its filters; a layer always keeps at least its best
  filter.  The raw-score threshold (``normalize=False``) is the labelled alternative.

``info`` is JSON-serialisable: strategy, parameters, importance, the per-layer kept
indices of pruned layers, widths and parameter counts before/after.

The strategies are family-agnostic: the prunable groups (names, widths, the filters that
score them) and the default inner levels come from the generator's model family
(:func:`unetprune.family.family_of`); the dependency-aware surgery, the cut and the
exact cost model from that family's pruning operations (:func:`.families.pruning_ops`).
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import nn

from ..family import family_of
from ..metrics.complexity import count_parameters
from .importance import IMPORTANCES, filter_importance, floor_fraction, keep_by_ratio
from .ops import pruning_ops
from .surgery import PruningError, check_ratio

STRATEGIES = ("single", "inner", "cut", "global-uniform", "global-threshold", "plan")

#: default per-layer cap of global-threshold: no layer loses more than this fraction of its filters
DEFAULT_MAX_LAYER_RATIO = 0.9

# the pix2pix level helpers above are re-exported for existing callers; the strategies
# below reach the model only through its family


def check_layer(generator: nn.Module, layer: str) -> None:
    pruning_ops(generator).check_layer(generator, layer)


def prunable_layers(spec_or_generator) -> list[str]:
    """The prunable groups of a generator (or spec) of any family, outer → inner → outer."""
    return family_of(spec_or_generator).groups(spec_or_generator)


def layer_width(generator: nn.Module, layer: str) -> int:
    return family_of(generator).layer_width(generator, layer)


def prune_channels(generator: nn.Module, keep) -> nn.Module:
    """A new generator keeping the filters ``keep[layer]`` of each listed layer (see the
    family's surgery, e.g. :func:`unetprune.pruning.surgery.prune_channels`)."""
    return pruning_ops(generator).prune_channels(generator, keep)


def _importances(generator, layers, importance, seed):
    scores, used = {}, {}
    for name in layers:
        scores[name], used[name] = filter_importance(generator, name, importance, seed)
    return scores, used


def _importance_label(importance) -> str:
    return importance if isinstance(importance, str) else getattr(importance, "__name__", "custom")


def _finish(
    generator, new, strategy, keep: dict[str, list[int]], used: dict[str, str], importance, **fields
) -> tuple[nn.Module, dict]:
    fam = family_of(generator)
    req = _importance_label(importance)
    fallback = sorted(k for k, v in used.items() if v != req)
    info = {
        "strategy": strategy,
        **fields,
        "importance": req,
        "importance_fallback": {k: used[k] for k in fallback},
        "layers": sorted(keep, key=fam.groups(generator).index),
        "kept": {
            k: {"n_before": fam.layer_width(generator, k), "n_kept": len(v), "indices": list(v)}
            for k, v in keep.items()
        },
        "widths_before": fam.widths(generator),
        "widths": fam.widths(new),
        "params_before": count_parameters(generator),
        "params": count_parameters(new),
    }
    return new, info


def prune_layers(
    generator: nn.Module,
    ratios: dict[str, float],
    importance: str | Callable = "l1",
    seed: int = 0,
    strategy: str = "layers",
    **fields,
) -> tuple[nn.Module, dict]:
    """Prune each layer of ``ratios`` at its own ratio (the common primitive)."""
    ops = pruning_ops(generator)
    for name, r in ratios.items():
        ops.check_layer(generator, name)
        check_ratio(r, f"ratio for {name}")
    if isinstance(importance, str) and importance not in IMPORTANCES:
        raise PruningError(f"unknown importance {importance!r}; choose one of {', '.join(IMPORTANCES)}")
    scores, used = _importances(generator, list(ratios), importance, seed)
    keep = {name: keep_by_ratio(scores[name], r) for name, r in ratios.items()}
    new = pruning_ops(generator).prune_channels(generator, keep)
    return _finish(generator, new, strategy, keep, used, importance, seed=seed, **fields)


def prune_single(generator: nn.Module, layer: str, ratio: float, importance="l1", seed: int = 0):
    check_layer(generator, layer)
    r = check_ratio(ratio)
    return prune_layers(generator, {layer: r}, importance, seed, strategy="single", layer=layer, ratio=r)


def prune_inner(
    generator: nn.Module, ratio: float, levels: Iterable[int] | None = None, importance="l1", seed: int = 0
):
    r = check_ratio(ratio)
    lv, layers = pruning_ops(generator).layers_of_levels(generator, levels)
    return prune_layers(
        generator, {name: r for name in layers}, importance, seed, strategy="inner", levels=lv, ratio=r
    )


CUT_UNITS = ("levels", "residual")


def prune_cut(generator: nn.Module, k: int | None, unit: str = "levels", levels=None):
    """cut-k (``unit="levels"``: the ``k`` innermost levels) or cut-res (``unit="residual"``:
    the residual blocks of ``levels``, default the inner levels; families with residual
    blocks only, e.g. Wav2Lip)."""
    fam = family_of(generator)
    ops = pruning_ops(generator)
    if unit == "levels":
        if k is None:
            raise PruningError("strategy 'cut' needs k (the number of innermost levels to remove)")
        new, removed = ops.cut(generator, k)
    elif unit == "residual":
        if k is not None:
            raise PruningError(
                "cut unit 'residual' removes the residual blocks of --levels; k applies to unit 'levels' only"
            )
        if not hasattr(ops, "cut_residual"):
            raise PruningError(
                f"cut unit 'residual' needs residual blocks; a {fam.name} generator has none "
                f"(use unit 'levels')"
            )
        new, removed = ops.cut_residual(generator, levels)
    else:
        raise PruningError(f"unknown cut unit {unit!r}; choose one of {', '.join(CUT_UNITS)}")
    return new, {
        "strategy": "cut",
        **removed,
        "widths_before": fam.widths(generator),
        "widths": fam.widths(new),
        "params_before": count_parameters(generator),
        "params": count_parameters(new),
    }


def prune_global_uniform(generator: nn.Module, ratio: float, importance="l1", seed: int = 0):
    r = check_ratio(ratio)
    return prune_layers(
        generator,
        {name: r for name in prunable_layers(generator)},
        importance,
        seed,
        strategy="global-uniform",
        ratio=r,
    )


def check_max_layer_ratio(max_layer_ratio) -> float | None:
    if max_layer_ratio is None:
        return None
    r = float(max_layer_ratio)
    if not 0.0 <= r <= 1.0:
        raise PruningError(f"max_layer_ratio must be in [0, 1], got {max_layer_ratio!r}")
    return r


def layer_removal_cap(n: int, max_layer_ratio: float | None) -> int:
    """Most filters global thresholding may remove from a layer of ``n``:
    ``floor(n * max_layer_ratio)`` (exactly), and never all of them."""
    cap = n - 1
    if max_layer_ratio is not None:
        cap = min(cap, floor_fraction(n, max_layer_ratio))
    return max(0, cap)


def global_candidates(
    generator: nn.Module,
    importance="l1",
    seed: int = 0,
    normalize: bool = True,
    max_layer_ratio: float | None = DEFAULT_MAX_LAYER_RATIO,
):
    """Removal order for global thresholding.

    Returns ``(order, scores, used)``: ``order`` lists ``(score, layer, index)`` of every
    filter that *may* be removed, sorted by increasing score, ties by layer order then
    index.  Of each layer of ``n`` filters only its ``floor(n * max_layer_ratio)`` lowest
    scoring ones are candidates (``None``: no cap), and never its best one, so no layer
    is emptied nor loses more than ``max_layer_ratio`` of its filters.  With ``normalize``
    (default) each layer's scores are divided by their mean (Torch-Pruning's "mean"
    normaliser), which makes layers of different fan-in comparable; without it raw scores
    grow with fan-in and the threshold strips the low-fan-in layers first.
    """
    max_layer_ratio = check_max_layer_ratio(max_layer_ratio)
    layers = prunable_layers(generator)
    scores, used = _importances(generator, layers, importance, seed)
    order = []
    for li, name in enumerate(layers):
        s = scores[name]
        if normalize:
            s = s / s.mean().clamp_min(torch.finfo(s.dtype).tiny)
        scores[name] = s
        cap = layer_removal_cap(s.numel(), max_layer_ratio)
        lowest = torch.argsort(s, stable=True)[:cap].tolist()
        order += [(float(s[j]), li, j) for j in lowest]
    order.sort()
    return [(sc, layers[li], j) for sc, li, j in order], scores, used


def threshold_rule(normalize: bool, max_layer_ratio: float | None) -> str:
    """A one-line description of a global-threshold baseline's rule (for reports)."""
    score = (
        "layer-normalised importance (score / layer mean)"
        if normalize
        else "raw importance (not layer-normalised)"
    )
    cap = (
        f"no layer loses more than {100 * max_layer_ratio:g}% of its filters"
        if max_layer_ratio is not None
        else "each layer keeps at least its best filter"
    )
    return f"one threshold on {score}; {cap}"


def keep_from_removed(generator: nn.Module, removed: Iterable[tuple[str, int]]) -> dict[str, list[int]]:
    drop: dict[str, set[int]] = {}
    for name, j in removed:
        drop.setdefault(name, set()).add(j)
    return {
        name: [j for j in range(layer_width(generator, name)) if j not in drop.get(name, ())]
        for name in prunable_layers(generator)
    }


def prune_global_threshold(
    generator: nn.Module,
    threshold: float | None = None,
    ratio: float | None = None,
    normalize: bool = True,
    importance="l1",
    seed: int = 0,
    n_remove: int | None = None,
    max_layer_ratio: float | None = DEFAULT_MAX_LAYER_RATIO,
    _candidates=None,
):
    """Remove every candidate filter whose (by default layer-normalised) score is below
    ``threshold``; candidates respect the per-layer cap ``max_layer_ratio`` (see
    :func:`global_candidates`).

    Give exactly one of ``threshold``, ``ratio`` (fraction of *all* prunable filters
    removed, ``floor(total * ratio)``, limited by the per-layer cap) or ``n_remove`` (a
    count).  The reported ``threshold`` is always one that reproduces the removed set
    (midpoint between the last removed and the first kept candidate score).
    """
    max_layer_ratio = check_max_layer_ratio(max_layer_ratio)
    given = [x is not None for x in (threshold, ratio, n_remove)]
    if sum(given) != 1:
        raise PruningError("global-threshold needs exactly one of threshold, ratio or n_remove")
    order, scores, used = _candidates or global_candidates(
        generator, importance, seed, normalize, max_layer_ratio
    )
    total = sum(layer_width(generator, n) for n in prunable_layers(generator))
    if threshold is not None:
        m = sum(1 for sc, _, _ in order if sc < float(threshold))
    elif ratio is not None:
        r = check_ratio(ratio)
        m = min(floor_fraction(total, r), len(order))
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
    new = pruning_ops(generator).prune_channels(generator, keep)
    return _finish(
        generator,
        new,
        "global-threshold",
        pruned_keep,
        {k: used[k] for k in pruned_keep},
        importance,
        seed=seed,
        normalize=bool(normalize),
        normalizer="mean" if normalize else None,
        max_layer_ratio=max_layer_ratio,
        rule=threshold_rule(normalize, max_layer_ratio),
        threshold=float(threshold),
        n_removed=m,
        fraction_removed=m / total,
    )


def prune_plan(
    generator: nn.Module,
    sweep: dict[str, dict],
    metric: str,
    higher_is_better: bool,
    target: float,
    budget: str = "params",
    input_shape=None,
    tol: float = 0.01,
    latency: dict | None = None,
):
    """Prune to a budget with the sensitivity-guided plan of :func:`.plan.plan_widths`.

    ``sweep``: the sweep's result per group (``{group: result}``, as :func:`.sensitivity_sweep`
    writes them); ``metric`` the verdict metric whose degradation is minimised
    (``higher_is_better`` gives its direction); ``target`` the absolute budget of ``budget``
    (``params``, ``macs_physical``, ``macs_output``: counts at ``input_shape``; ``latency_ms``:
    milliseconds, predicted from the latency table ``latency`` of
    :func:`.sensitivity.latency_table`).  Filters are ranked by the importance and seed the sweep
    used, so each group's kept filters are the ones the sweep scored.  ``info["plan"]`` records
    the chosen ratios and widths, the predicted and the measured cost and the knapsack's grid."""
    from .importance import top_k_indices
    from .plan import TARGETS, degradations, plan_widths

    if budget not in TARGETS:
        raise PruningError(f"unknown plan target {budget!r}; choose one of {', '.join(TARGETS)}")
    if not sweep:
        raise PruningError("a plan needs the sensitivity sweep's results of at least one layer")
    fam, ops = family_of(generator), pruning_ops(generator)
    groups = fam.groups(generator)
    for name in sweep:
        ops.check_layer(generator, name)
    names = [g for g in groups if g in sweep]
    imps = {sweep[g].get("importance", "l1") for g in names}
    seeds = {int(sweep[g].get("seed", 0)) for g in names}
    if len(imps) != 1 or len(seeds) != 1:
        raise PruningError(
            f"the sweep's layers were scored with different importances/seeds ({sorted(imps)}, "
            f"{sorted(seeds)}); rerun the sweep with one sensitivity.importance"
        )
    importance, seed = imps.pop(), seeds.pop()
    if input_shape is None:
        input_shape = fam.input_shape(generator)
    options = {g: degradations(sweep[g], metric, higher_is_better) for g in names}
    base = {g: fam.layer_width(generator, g) for g in names}
    if budget == "latency_ms":
        if latency is None:
            raise PruningError(
                "a latency plan needs a latency table (unetprune.pruning.sensitivity.latency_table)"
            )
        full_ms = float(latency["full_ms"])

        def group_cost(g: str, w: int) -> float:
            if w == base[g]:
                return full_ms
            entry = (latency["groups"].get(g) or {}).get("by_width") or {}
            if str(w) not in entry:
                raise PruningError(
                    f"the latency table has no entry for {g} at width {w}; rebuild it for the sweep's ratios"
                )
            return float(entry[str(w)])

        def cost(widths) -> float:
            return full_ms - sum(full_ms - group_cost(g, w) for g, w in widths.items())

        plan = plan_widths(options, base, cost, float(target), budget, tol, fill=False, group_cost=group_cost)
    else:
        width_cost = ops.width_cost(generator, input_shape)

        def cost(widths) -> float:
            return width_cost(dict(widths))[budget]

        plan = plan_widths(options, base, cost, float(target), budget, tol)
    keep, used = {}, {}
    for g, w in plan.widths.items():
        scores, used[g] = filter_importance(generator, g, importance, seed)
        keep[g] = top_k_indices(scores, w)
    new = ops.prune_channels(generator, keep) if keep else ops.prune_channels(generator, {})
    return _finish(
        generator,
        new,
        "plan",
        keep,
        used,
        importance,
        seed=seed,
        plan={**plan.as_dict(), "verdict_metric": metric, "input_shape": [int(s) for s in input_shape]},
    )
