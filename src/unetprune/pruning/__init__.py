"""Structured pruning of U-Net GAN generators of any model family (docs/method.md: inner pruning, cut inner layers, baselines).

Entry point::

    new_g, info = prune(g, "inner", ratio=0.75, levels=[5, 6, 7, 8])
    new_g, info = prune(g, "cut", k=2)
    new_g, info = prune(g, "global-uniform", match_model=cut_g, match_metric="params")

``prune`` never modifies ``g``; ``new_g`` is an ordinary generator of ``g``'s model family
with smaller widths (save it with
:func:`unetprune.checkpoint.save_generator`, meta = ``info``).  The engine reaches the
model only through its family (:mod:`unetprune.family`).
"""

from __future__ import annotations

from .budget import METRICS, match_budget, model_budget, spec_budget
from .importance import IMPORTANCES, filter_importance, keep_by_ratio, n_keep
from .sensitivity import sensitivity_sweep
from .strategies import (
    DEFAULT_MAX_LAYER_RATIO,
    STRATEGIES,
    check_layer,
    prunable_layers,
    prune_channels,
    prune_cut,
    prune_global_threshold,
    prune_global_uniform,
    prune_inner,
    prune_layers,
    prune_plan,
    prune_single,
)
from .surgery import PruningError, check_ratio


def prune(
    generator,
    strategy: str,
    *,
    ratio: float | None = None,
    layer: str | None = None,
    levels=None,
    k: int | None = None,
    importance="l1",
    seed: int = 0,
    normalize: bool = True,
    threshold: float | None = None,
    match_target: int | None = None,
    match_model=None,
    match_metric: str = "params",
    input_shape=(1, 3, 256, 256),
    tol: float = 0.01,
    strict: bool = True,
    max_layer_ratio: float | None = DEFAULT_MAX_LAYER_RATIO,
    unit: str = "levels",
    sweep: dict | None = None,
    verdict_metric: str = "fid",
    higher_is_better: bool = False,
    latency: dict | None = None,
):
    """Apply ``strategy`` (one of :data:`STRATEGIES`; ``_`` may replace ``-``).

    * ``single``: ``layer``, ``ratio``;  ``inner``: ``ratio``, ``levels`` (default
      the family's default inner levels);  ``cut``: ``k`` (``unit="levels"``, cut-k) or, for families
      with residual blocks, ``unit="residual"`` and ``levels`` (cut-res);
    * ``global-uniform``: ``ratio``, or a budget;  ``global-threshold``: ``threshold`` or
      ``ratio`` (global fraction of filters) or a budget; by default on layer-normalised
      scores (``normalize=False``: the raw-score threshold) with no layer losing more than
      ``max_layer_ratio`` of its filters (``None``: only its best filter is kept);
    * budget: ``match_target`` (a number) or ``match_model`` (a generator whose budget is
      used) with ``match_metric`` in :data:`METRICS` at ``input_shape``, within ``tol``.
    * ``plan``: a budget (``match_target``/``match_model`` with ``match_metric`` in
      :data:`METRICS` or ``"latency_ms"``, then ``match_target`` in ms and ``latency`` the
      latency table), the sweep's results ``sweep`` and the ``verdict_metric`` whose summed
      degradation is minimised (``higher_is_better``); see :func:`prune_plan`.

    ``importance`` is ``"l1"`` (default), ``"l2"``, ``"random"`` (seeded by ``seed``),
    ``"bn"`` or a callable ``f(generator, layer) -> scores``.
    Returns ``(new_generator, info)`` with a JSON-serialisable ``info``.
    """
    s = str(strategy).replace("_", "-")
    if s not in STRATEGIES:
        raise PruningError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    budget = match_target is not None or match_model is not None
    if s == "plan":
        if not budget:
            raise PruningError("strategy 'plan' needs a budget (a target or a model to match)")
        if sweep is None:
            raise PruningError("strategy 'plan' needs the sensitivity sweep's results")
        if match_metric == "latency_ms" and match_model is not None:
            raise PruningError("a latency plan takes a target in ms, not a model to match")
        target = (
            match_target if match_target is not None else model_budget(match_model, match_metric, input_shape)
        )
        return prune_plan(
            generator,
            sweep,
            verdict_metric,
            higher_is_better,
            target,
            match_metric,
            input_shape,
            tol,
            latency,
        )
    if budget:
        if s not in ("global-uniform", "global-threshold"):
            raise PruningError(f"budget matching applies to the global strategies, not {s!r}")
        if ratio is not None or threshold is not None:
            raise PruningError("give either a budget to match or a ratio/threshold, not both")
        target = (
            match_target if match_target is not None else model_budget(match_model, match_metric, input_shape)
        )
        return match_budget(
            generator,
            s,
            target,
            match_metric,
            input_shape,
            tol,
            importance,
            seed,
            normalize,
            strict,
            max_layer_ratio=max_layer_ratio,
        )
    if s == "single":
        if layer is None or ratio is None:
            raise PruningError("strategy 'single' needs a layer and a ratio")
        return prune_single(generator, layer, ratio, importance, seed)
    if s == "inner":
        if ratio is None:
            raise PruningError("strategy 'inner' needs a ratio")
        return prune_inner(generator, ratio, levels, importance, seed)
    if s == "cut":
        return prune_cut(generator, k, unit, levels)
    if s == "global-uniform":
        if ratio is None:
            raise PruningError("strategy 'global-uniform' needs a ratio or a budget to match")
        return prune_global_uniform(generator, ratio, importance, seed)
    if threshold is None and ratio is None:
        raise PruningError("strategy 'global-threshold' needs a threshold, a ratio or a budget to match")
    if threshold is not None and ratio is not None:
        raise PruningError("strategy 'global-threshold' takes a threshold or a ratio, not both")
    return prune_global_threshold(
        generator,
        threshold=threshold,
        ratio=ratio,
        normalize=normalize,
        importance=importance,
        seed=seed,
        max_layer_ratio=max_layer_ratio,
    )


__all__ = [
    "DEFAULT_MAX_LAYER_RATIO",
    "IMPORTANCES",
    "METRICS",
    "STRATEGIES",
    "PruningError",
    "check_layer",
    "check_ratio",
    "filter_importance",
    "keep_by_ratio",
    "match_budget",
    "model_budget",
    "n_keep",
    "prunable_layers",
    "prune",
    "prune_channels",
    "prune_cut",
    "prune_global_threshold",
    "prune_global_uniform",
    "prune_inner",
    "prune_layers",
    "prune_plan",
    "prune_single",
    "sensitivity_sweep",
    "spec_budget",
]
