"""Per-layer sensitivity sweep (PAPER.md protocol: one layer at a time, no fine-tuning).

One process loads the model once and evaluates every (layer, ratio) point, so model and
reference-statistics loading is paid once per job; a workflow can still run one job per
layer by passing a single layer.  Each layer's results go to ``<out_dir>/<layer>.json``::

    {"layer": "down5", "ratios": [0.1, ...], "metrics": [{"fid": ...}, ...],
     "params": [...], "macs_physical": [...], "macs_output": [...], "widths": [...],
     "importance": "l1", "seed": 0, "input_shape": [1, 3, H, W],
     "params_full": ..., "metrics_full": {...} (only with include_full=True)}

Lists are aligned with ``ratios``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Iterable

from ..checkpoint import atomic_write_text
from ..metrics.complexity import count_all
from .strategies import prune_single
from .surgery import check_layer, check_ratio


def sensitivity_sweep(generator, layers: Iterable[str] | str | None, ratios: Iterable[float],
                      metric: Callable[[object], dict], out_dir: str | Path | None = None,
                      importance="l1", seed: int = 0, input_shape=None,
                      include_full: bool = False) -> dict[str, dict]:
    """Evaluate ``metric(pruned)`` for every layer x ratio; returns ``{layer: result}``.

    ``layers``: names (``None`` = every prunable layer).  ``metric(generator) -> dict[str,
    float]`` receives a fresh pruned copy each time (in the generator's train/eval mode;
    the metric chooses the evaluation mode).  ``input_shape`` (default ``(1, C, 2^N, 2^N)``)
    is the shape used for MAC counting.  A layer's JSON is written as soon as its ratios are
    done (atomic write), so a killed job keeps finished layers.
    """
    from .surgery import prunable_layers

    if layers is None:
        layers = prunable_layers(generator)
    elif isinstance(layers, str):
        layers = [layers]
    layers = list(layers)
    for name in layers:
        check_layer(generator, name)
    ratios = [check_ratio(r) for r in ratios]
    if input_shape is None:
        side = 2 ** generator.num_downs
        input_shape = (1, generator.spec.input_nc, side, side)
    input_shape = [int(s) for s in input_shape]
    out = Path(out_dir) if out_dir is not None else None
    full_metrics = _as_floats(metric(generator)) if include_full else None
    results: dict[str, dict] = {}
    for name in layers:
        res = {"layer": name, "ratios": ratios, "metrics": [], "params": [], "macs_physical": [],
               "macs_output": [], "widths": [], "importance": importance if isinstance(importance, str)
               else getattr(importance, "__name__", "custom"), "seed": seed, "input_shape": input_shape,
               "params_full": int(sum(p.numel() for p in generator.parameters()))}
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
        if out is not None:
            atomic_write_text(out / f"{name}.json", json.dumps(res, indent=2) + "\n")
    return results


def _as_floats(d) -> dict:
    if not isinstance(d, dict):
        raise TypeError(f"the sweep metric must return a dict of numbers, got {type(d).__name__}")
    return {str(k): float(v) for k, v in d.items()}
