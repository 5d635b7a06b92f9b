"""Per-layer sensitivity sweep (docs/method.md protocol: one layer at a time, no fine-tuning).

One process loads the model once and evaluates every (layer, ratio) point, so model and
reference-statistics loading is paid once per job; a workflow can still run one job per
layer by passing a single layer.  Each layer's result is handed to ``on_layer(layer, result)``
as soon as its ratios are done (the CLI writes it where the results layout says)::

    {"layer": "down5", "ratios": [0.1, ...], "metrics": [{"fid": ...}, ...],
     "params": [...], "macs_physical": [...], "macs_output": [...], "widths": [...],
     "importance": "l1", "seed": 0, "input_shape": [1, 3, H, W],
     "params_full": ..., "metrics_full": {...} (only with include_full=True)}

Lists are aligned with ``ratios``.

:func:`load_sweep` reads those files back (a plan's input, :func:`.strategies.prune_plan`);
:func:`latency_table` measures, on one device at one thread count, the latency of the model
with each group alone at each swept width (NetAdapt's per-layer latency table), the cost
model of latency plans.
"""

from __future__ import annotations

from typing import Callable, Iterable

from ..family import family_of
from ..metrics.complexity import count_all, count_parameters
from .ops import pruning_ops
from .strategies import prune_single
from .surgery import check_ratio


def sensitivity_sweep(
    generator,
    layers: Iterable[str] | str | None,
    ratios: Iterable[float],
    metric: Callable[[object], dict],
    on_layer: Callable[[str, dict], None] | None = None,
    importance="l1",
    seed: int = 0,
    input_shape=None,
    include_full: bool = False,
) -> dict[str, dict]:
    """Evaluate ``metric(pruned)`` for every layer x ratio; returns ``{layer: result}``.

    ``layers``: names (``None`` = every prunable layer).  ``metric(generator) -> dict[str,
    float]`` receives a fresh pruned copy each time (in the generator's train/eval mode;
    the metric chooses the evaluation mode).  ``input_shape`` (default: the family's
    smallest input, ``(1, C, 2^N, 2^N)`` for pix2pix) is the shape used for MAC
    counting.  ``on_layer(name, result)`` is called as soon as a
    layer's ratios are done, so a caller that writes it there keeps finished layers when killed.
    """
    fam, ops = family_of(generator), pruning_ops(generator)
    if layers is None:
        layers = fam.groups(generator)
    elif isinstance(layers, str):
        layers = [layers]
    layers = list(layers)
    for name in layers:
        ops.check_layer(generator, name)
    ratios = [check_ratio(r) for r in ratios]
    if input_shape is None:
        input_shape = fam.input_shape(generator)
    input_shape = [int(s) for s in input_shape]
    full_metrics = _as_floats(metric(generator)) if include_full else None
    results: dict[str, dict] = {}
    for name in layers:
        res = {
            "layer": name,
            "ratios": ratios,
            "metrics": [],
            "params": [],
            "macs_physical": [],
            "macs_output": [],
            "widths": [],
            "importance": importance
            if isinstance(importance, str)
            else getattr(importance, "__name__", "custom"),
            "seed": seed,
            "input_shape": input_shape,
            "params_full": count_parameters(generator),
        }
        if full_metrics is not None:
            res["metrics_full"] = full_metrics
        for r in ratios:
            pruned, info = prune_single(generator, name, r, importance=importance, seed=seed)
            counts = count_all(pruned, input_shape)
            res["metrics"].append(_as_floats(metric(pruned)))
            res["params"].append(counts["params"])
            res["macs_physical"].append(counts["macs_physical"])
            res["macs_output"].append(counts["macs_output"])
            res["widths"].append(info["kept"][name]["n_kept"])
            del pruned
        results[name] = res
        if on_layer is not None:
            on_layer(name, res)
    return results


def load_sweep(folder, layers: Iterable[str]) -> dict[str, dict]:
    """The sweep's result of every layer in ``layers`` from ``folder/<layer>.json``; a missing or
    unreadable file is one :class:`PruningError` naming it."""
    import json
    from pathlib import Path

    from .surgery import PruningError

    out = {}
    for name in layers:
        path = Path(folder) / f"{name}.json"
        try:
            out[name] = json.loads(path.read_text())
        except FileNotFoundError:
            raise PruningError(
                f"missing sweep result {path}: run `unetprune sweep --layer {name}` first"
            ) from None
        except (OSError, json.JSONDecodeError) as e:
            raise PruningError(
                f"cannot read the sweep result {path} ({e}); rerun `unetprune sweep --layer {name}`"
            ) from e
        if out[name].get("layer") != name:
            raise PruningError(f"{path} holds the sweep of {out[name].get('layer')!r}, not {name!r}")
    return out


def latency_table(
    generator,
    layers: Iterable[str],
    ratios: Iterable[float],
    input_shape=None,
    device: str = "cpu",
    threads: int | None = 1,
    warmup: int = 3,
    iters: int = 20,
) -> dict:
    """Batch-1 latency of ``generator`` whole and with each group of ``layers`` alone at each
    width the ratios give (:func:`.importance.n_keep`), measured on ``device`` at ``threads`` CPU
    threads with :func:`unetprune.metrics.complexity.measure_latency`: the fastest of ``iters``
    runs (``min_ms``, the least disturbed by other load on the machine).  Latency depends on the
    widths only, so each group keeps its first filters.

    Returns ``{"device", "device_name", "threads", "input_shape", "warmup", "iters", "full_ms",
    "statistic": "min_ms", "groups": {group: {"width", "by_width": {str(width): ms}}}}``."""
    from ..metrics.complexity import measure_latency
    from .importance import n_keep

    fam, ops = family_of(generator), pruning_ops(generator)
    if input_shape is None:
        input_shape = fam.input_shape(generator)
    shape = [int(s) for s in input_shape]
    full = measure_latency(generator, shape, device, threads=threads, warmup=warmup, iters=iters)
    groups: dict[str, dict] = {}
    for name in layers:
        ops.check_layer(generator, name)
        n = fam.layer_width(generator, name)
        by_width: dict[str, float] = {}
        for r in ratios:
            w = n_keep(n, check_ratio(r))
            if str(w) in by_width or w == n:
                continue
            pruned = ops.prune_channels(generator, {name: list(range(w))})
            lat = measure_latency(pruned, shape, device, threads=threads, warmup=warmup, iters=iters)
            by_width[str(w)] = lat["min_ms"]
            del pruned
        groups[name] = {"width": n, "by_width": by_width}
    return {
        "device": full["device"],
        "device_name": full["device_name"],
        "threads": full["threads"],
        "input_shape": shape,
        "warmup": warmup,
        "iters": iters,
        "full_ms": full["min_ms"],
        "statistic": "min_ms",
        "groups": groups,
    }


def _as_floats(d) -> dict:
    if not isinstance(d, dict):
        raise TypeError(f"the sweep metric must return a dict of numbers, got {type(d).__name__}")
    return {str(k): float(v) for k, v in d.items()}
