"""Budget matching: size a global baseline to another model's parameters or MACs.

Every comparison in the paper is at equal size, so a global baseline (uniform ratio or
one threshold) is searched until its budget (``params``, ``macs_physical`` or
``macs_output``) is within ``tol`` (default 1%) of a target — usually the parameter
count or MACs of the inner-pruned or cut model it is compared with.

The budget of a candidate is computed from its widths alone: one hooked pass of
:mod:`unetprune.metrics.complexity` over the original model gives each conv's MACs per
(input channel x output channel) — MACs of an ungrouped conv are bilinear in its widths —
and parameters follow from the conv/bias/BN layout, so a candidate costs microseconds.
Only the final choice is materialised, and its budget is re-counted on the real model.

* ``global-uniform``: the budget is non-increasing in the ratio; bisection on the ratio,
  then the closer of the two bracketing width settings is taken.
* ``global-threshold``: filters are removed in increasing score order, so the budget is
  non-increasing in the number removed; bisection on that integer count (one filter of
  granularity), reported back as a threshold.
"""

from __future__ import annotations

import torch
from torch import nn

from ..family import family_of
from ..metrics.complexity import count_all, count_parameters
from .importance import n_keep
from .ops import pruning_ops
from .strategies import (
    DEFAULT_MAX_LAYER_RATIO,
    global_candidates,
    prune_global_threshold,
    prune_global_uniform,
)
from .surgery import PruningError

METRICS = ("params", "macs_physical", "macs_output")


def spec_budget(spec, metric: str = "params", input_shape=(1, 3, 256, 256)) -> int:
    """Budget of the architecture ``spec`` of any family (built on ``meta``: cheap for any size)."""
    if metric not in METRICS:
        raise PruningError(f"unknown budget metric {metric!r}; choose one of {', '.join(METRICS)}")
    with torch.device("meta"):
        g = family_of(spec).build(spec, init=False)
    if metric == "params":
        return count_parameters(g)
    return count_all(g, input_shape)[metric]


def model_budget(model, metric: str = "params", input_shape=(1, 3, 256, 256)) -> int:
    if metric == "params":
        return count_parameters(model)
    return (
        spec_budget(model.spec, metric, input_shape)
        if hasattr(model, "spec")
        else count_all(model, input_shape)[metric]
    )


def match_budget(
    generator: nn.Module,
    strategy: str,
    target: int,
    metric: str = "params",
    input_shape=(1, 3, 256, 256),
    tol: float = 0.01,
    importance="l1",
    seed: int = 0,
    normalize: bool = True,
    strict: bool = True,
    max_iter: int = 60,
    max_layer_ratio: float | None = DEFAULT_MAX_LAYER_RATIO,
):
    """Prune ``generator`` with a global ``strategy`` so its ``metric`` is closest to ``target``.

    Returns ``(new_generator, info)``; ``info["budget"]`` holds the metric, target, achieved
    value, relative error and tolerance.  With ``strict`` a miss beyond ``tol`` raises
    :class:`PruningError` (e.g. the target is larger than the model, or the width
    granularity of a tiny model is too coarse).  ``normalize`` and ``max_layer_ratio``
    apply to ``global-threshold`` (see :func:`~unetprune.pruning.strategies.global_candidates`).
    """
    strategy = strategy.replace("_", "-")
    if strategy not in ("global-uniform", "global-threshold"):
        raise PruningError(f"budget matching applies to global-uniform or global-threshold, not {strategy!r}")
    if metric not in METRICS:
        raise PruningError(f"unknown budget metric {metric!r}; choose one of {', '.join(METRICS)}")
    target = int(target)
    fam = family_of(generator)
    width_cost = pruning_ops(generator).width_cost(generator, input_shape)
    full = width_cost({})[metric]
    if target <= 0:
        raise PruningError(f"budget target must be positive, got {target}")
    layers = fam.groups(generator)
    base = {nm: fam.layer_width(generator, nm) for nm in layers}

    if strategy == "global-uniform":

        def cost(r: float) -> int:
            return width_cost({nm: n_keep(w, r) for nm, w in base.items()})[metric]

        lo, hi = 0.0, 1.0 - 1e-9  # cost(lo) >= cost(hi)
        c_lo, c_hi = full, cost(hi)
        if target >= c_lo:
            best = lo
        elif target <= c_hi:
            best = hi
        else:
            for _ in range(max_iter):
                mid = 0.5 * (lo + hi)
                c = cost(mid)
                if c > target:
                    lo, c_lo = mid, c
                else:
                    hi, c_hi = mid, c
                if hi - lo < 1e-7:
                    break
            best = lo if abs(c_lo - target) < abs(c_hi - target) else hi
        new, info = prune_global_uniform(generator, best, importance, seed)
        info["search"] = "ratio"
    else:
        cands = global_candidates(generator, importance, seed, normalize, max_layer_ratio)
        order = cands[0]

        def cost_m(m: int) -> int:
            w = dict(base)
            for _, nm, _j in order[:m]:
                w[nm] -= 1
            return width_cost(w)[metric]

        lo, hi = 0, len(order)
        c_lo, c_hi = full, cost_m(hi)
        if target >= c_lo:
            best = lo
        elif target <= c_hi:
            best = hi
        else:
            while hi - lo > 1:
                mid = (lo + hi) // 2
                c = cost_m(mid)
                if c > target:
                    lo, c_lo = mid, c
                else:
                    hi, c_hi = mid, c
            best = lo if abs(c_lo - target) < abs(c_hi - target) else hi
        new, info = prune_global_threshold(
            generator,
            n_remove=best,
            normalize=normalize,
            importance=importance,
            seed=seed,
            max_layer_ratio=max_layer_ratio,
            _candidates=cands,
        )
        info["search"] = "n_removed"
    achieved = model_budget(new, metric, input_shape)
    err = (achieved - target) / target
    info["budget"] = {
        "metric": metric,
        "target": target,
        "achieved": int(achieved),
        "rel_error": err,
        "tol": tol,
        "input_shape": [int(s) for s in input_shape],
    }
    if strict and abs(err) > tol:
        raise PruningError(
            f"cannot match {metric}={target:,} within {tol:.1%} with {strategy}: "
            f"closest is {achieved:,} ({err:+.2%}); the model has {full:,} "
            f"(the target must be smaller, and the widths fine enough)"
        )
    return new, info


__all__ = ["METRICS", "match_budget", "model_budget", "spec_budget"]
