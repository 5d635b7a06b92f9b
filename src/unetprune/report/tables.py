"""The paper's tables, computed from the JSON files of one experiment (pandas).

Every number comes from a file under ``results/<experiment>/`` (where: :mod:`unetprune.layout`;
which models and stages: :mod:`unetprune.pipeline`):

* :func:`sensitivity_table` — one row per (layer, ratio) of the per-layer sweep
  (``sensitivity/<layer>.json``), with the quality *degradation* against the unpruned model;
* :func:`sensitivity_summary` — per ratio, the mean degradation of the inner layers
  (the levels of :func:`unetprune.pipeline.default_inner_levels`) against the outer ones;
* :func:`main_table` — one row per (model, stage): the original, every inner/cut variant and
  every matched global baseline, pruned and fine-tuned (``eval/*.json``);
* :func:`comparison_table` — every primary variant against each of its matched baselines,
  after fine-tuning when there is one, on ``report.quality_metric`` (the verdict metric).

Verdicts (docs/method.md#verdicts): the verdict metric is a distribution metric by default
(FID, named with its backend); every other metric is compared alongside and the tables list
the metrics that disagree with it.  Every evaluated model carries a collapse check
(``diversity``: the spread of its outputs across the split relative to the real images',
``collapsed`` when below ``evaluate.collapse_threshold``); a collapsed model never wins a
comparison, whatever the verdict metric says.  In the sensitivity summary a negative
degradation (pruning improved the score) counts as *no effect*, never as support.

Noise (docs/method.md#verdicts): an evaluation JSON may carry a ``noise`` block (generation
repeated over dropout/BatchNorm seeds and bootstrapped over the test images; per metric its
``std`` and ``ci95``).  Every quality column gets ``<metric>_std`` and ``<metric>_ci95_lo/hi``
(NaN = not measured: an old JSON, or one seed without bootstrap), shown as "value ± std" in
the markdown.  A difference between two numbers counts only when it exceeds
``SIGNIFICANCE_Z`` (2) times their combined standard deviation sqrt(std_a^2 + std_b^2)
(independent errors assumed: two numbers scored on the same test images have positively
correlated errors, so this overstates the noise of their difference: conservative).  Otherwise
the outcome is
``not resolved`` (at this noise level); without any noise record the point values decide,
as before, and the report says the noise level is unknown.

A missing input raises :class:`ReportError` naming the file and the command that makes it;
FID values of different backends (or stand-in weights, or image sizes) in one table are refused.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from .. import pipeline
from ..fileio import atomic_write_text
from ..errors import UserFacingError
from ..layout import DEFAULT_BASE, FINETUNED, ORIGINAL, Layout

#: metric -> (label, which direction is better)
METRICS: dict[str, tuple[str, str]] = {
    "fid": ("FID", "lower"),
    "kid": ("KID", "lower"),
    "miou": ("mIoU", "higher"),
    "l1": ("L1", "lower"),
    "psnr": ("PSNR (dB)", "higher"),
    "ssim": ("SSIM", "higher"),
    "lse_d": ("LSE-D", "lower"),     # Wav2Lip: lip-sync distance (syncnet_python protocol)
    "lse_c": ("LSE-C", "higher"),    # Wav2Lip: lip-sync confidence
}
QUALITY_COLUMNS = list(METRICS)
#: the noise of every quality column: standard deviation and 95% interval (NaN: not measured)
NOISE_SUFFIXES = ("std", "ci95_lo", "ci95_hi")
NOISE_COLUMNS = [f"{m}_{x}" for m in QUALITY_COLUMNS for x in NOISE_SUFFIXES]
#: a difference counts only beyond this many combined standard deviations (docs/method.md#verdicts)
SIGNIFICANCE_Z = 2.0
#: the outcome of a comparison whose difference is within that noise
NOT_RESOLVED = "not resolved"
MAIN_COLUMNS = [
    "variant",
    "stage",
    "group",
    "strategy",
    "matched_to",
    "params",
    "params_fraction",
    "macs_physical",
    "macs_output",
    "latency_ms",
    "fid",
    "fid_backend",
    "kid",
    "miou",
    "l1",
    "psnr",
    "ssim",
    "lse_d",
    "lse_c",
    "lse_backend",
    *NOISE_COLUMNS,
    "diversity",
    "collapsed",
    "noise_seeds",
    "noise_bootstrap",
    "budget_metric",
    "budget_gap",
]
SENSITIVITY_COLUMNS = [
    "layer",
    "position",
    "part",
    "level",
    "inner",
    "ratio",
    "width",
    "params",
    "macs_physical",
    "macs_output",
    *QUALITY_COLUMNS,
    "fid_backend",
    "quality",
    "quality_std",
    "quality_ci95_lo",
    "quality_ci95_hi",
    "quality_full",
    "quality_full_std",
    "degradation",
    "degradation_std",
    "degradation_pct",
    "diversity",
    "collapsed",
    *NOISE_COLUMNS,
]
#: columns of the sensitivity table kept in the CSV but left out of its markdown version:
#: where the unpruned values come from, and the unpruned value of every metric
FULL_COLUMNS = [f"full_{m}" for m in QUALITY_COLUMNS] + [f"full_{m}_std" for m in QUALITY_COLUMNS]
HIDDEN_COLUMNS = ["full_source", *FULL_COLUMNS]
#: the default collapse threshold (schema: evaluate.collapse_threshold)
COLLAPSE_THRESHOLD = 0.1
#: per-ratio outcomes of the sensitivity pattern
SUPPORT, AGAINST, NO_EFFECT = "support", "against", "no effect"


class ReportError(UserFacingError):
    """An input of the report is missing or inconsistent; the message says which and why."""


# ------------------------------------------------------------------------------------------
# inputs
# ------------------------------------------------------------------------------------------


def _cmd_hint(cfg: dict, base, what: str, name: str | None = None, stage: str | None = None) -> str:
    lay = Layout.from_config(cfg, base)
    original = lay.checkpoint(ORIGINAL)
    if what == "eval":
        ckpt = lay.checkpoint(name, stage)
        out = lay.eval_json(name, stage)
        rule = "evaluate_original" if name == ORIGINAL else "evaluate_variant"
        return f"made by the {rule} rule: `unetprune evaluate --checkpoint {ckpt} --config <CFG> --out {out}`"
    if what == "sensitivity":
        return (
            f"made by the sensitivity_layer rule: `unetprune sweep --config <CFG> --checkpoint "
            f"{original} --layer {name}`"
        )
    if what == "prune":
        return (
            f"made by the prune_variant rule: `unetprune prune --checkpoint {original} "
            f"--out {lay.pruned_checkpoint(name)} ...`"
        )
    if what == "checkpoint":
        if name == ORIGINAL:
            return (
                f"made by the train_original rule: `unetprune train --config <CFG> --out {lay.original_dir}`"
            )
        if stage == FINETUNED:
            return (
                f"made by the finetune_variant rule: `unetprune train --config <CFG> --finetune --init-from "
                f"{lay.pruned_checkpoint(name)} --out {lay.finetuned_dir(name)}`"
            )
        return _cmd_hint(cfg, base, "prune", name)
    return ""


def read_json(path: Path, hint: str = "") -> dict:
    path = Path(path)
    if not path.is_file():
        raise ReportError(f"missing {path}: {hint}" if hint else f"missing {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ReportError(
            f"{path} is not valid JSON ({e}); rerun the command that writes it"
            + (f" ({hint})" if hint else "")
        ) from e


def load_eval(cfg: dict, base, variant: str, stage: str) -> dict:
    path = Layout.from_config(cfg, base).eval_json(variant, stage)
    r = read_json(path, _cmd_hint(cfg, base, "eval", variant, stage))
    for key in ("fid", "l1", "psnr", "ssim", "complexity"):
        if key not in r:
            raise ReportError(
                f"{path} is not an evaluation result (no '{key}'); rerun "
                + _cmd_hint(cfg, base, "eval", variant, stage)
            )
    return r


def load_prune(cfg: dict, base, variant: str) -> dict:
    path = Layout.from_config(cfg, base).prune_json(variant)
    return read_json(path, _cmd_hint(cfg, base, "prune", variant))


def cpu_latency_ms(result: dict) -> float:
    """Median batch-1 CPU eager latency of an evaluation result (NaN when not measured)."""
    for e in (result.get("complexity") or {}).get("latency") or []:
        if e.get("device") == "cpu" and e.get("mode", "eager") == "eager":
            return float(e["median_ms"])
    return float("nan")


def _num(x) -> float:
    return float("nan") if x is None else float(x)


def is_collapsed(ratio: float | None, threshold: float = COLLAPSE_THRESHOLD) -> bool | None:
    """The collapse flag of a diversity ratio (None: not measured)."""
    if ratio is None or not math.isfinite(float(ratio)):
        return None
    return bool(float(ratio) < threshold)


def flag(x, missing=False):
    """A table cell's collapse flag as a Python bool (``missing`` where it was not measured)."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return missing
    return bool(x)


def _finite(x) -> bool:
    try:
        return x is not None and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def noise_setup(result: dict) -> dict | None:
    """``{"seeds": n, "bootstrap": b}`` of an evaluation's noise block, or None when it has none
    or measured nothing (one generation seed and no bootstrap)."""
    noise = result.get("noise")
    if not isinstance(noise, dict):
        return None
    seeds = noise.get("seeds") or []
    n_seeds = len(seeds) if isinstance(seeds, (list, tuple)) else int(seeds or 0)
    boot = int(noise.get("bootstrap") or 0)
    if n_seeds <= 1 and boot <= 0:
        return None
    return {"seeds": n_seeds, "bootstrap": boot}


def eval_noise(result: dict) -> dict[str, dict[str, float]]:
    """``{metric: {"std": s, "ci95_lo": lo, "ci95_hi": hi}}`` from an evaluation's noise block
    (the quality metrics of :data:`METRICS`; NaN where a value is missing); ``{}`` when the
    evaluation recorded no noise (:func:`noise_setup`)."""
    if noise_setup(result) is None:
        return {}
    out = {}
    for m, entry in ((result.get("noise") or {}).get("metrics") or {}).items():
        if m not in METRICS or not isinstance(entry, dict):
            continue
        std = entry.get("std")
        if not _finite(std) and (_finite(entry.get("std_seed")) or _finite(entry.get("std_boot"))):
            std = math.hypot(_num(entry.get("std_seed") or 0.0), _num(entry.get("std_boot") or 0.0))
        ci = entry.get("ci95") or [None, None]
        out[m] = {"std": _num(std), "ci95_lo": _num(ci[0] if len(ci) > 0 else None),
                  "ci95_hi": _num(ci[1] if len(ci) > 1 else None)}
    return out


def noise_columns(noise: dict[str, dict[str, float]], metrics=QUALITY_COLUMNS) -> dict[str, float]:
    """The ``<metric>_std`` / ``<metric>_ci95_lo`` / ``<metric>_ci95_hi`` cells of :func:`eval_noise`."""
    return {f"{m}_{x}": _num((noise.get(m) or {}).get(x)) for m in metrics for x in NOISE_SUFFIXES}


def combined_std(*stds) -> float:
    """sqrt(sum of squares): the standard deviation of a sum or difference of independent values
    (NaN when any is unknown)."""
    vals = [float(x) if _finite(x) else float("nan") for x in stds]
    return math.sqrt(sum(v * v for v in vals)) if all(math.isfinite(v) for v in vals) else float("nan")


def beyond_noise(difference: float, std: float, z: float = SIGNIFICANCE_Z) -> bool | None:
    """Whether ``|difference|`` exceeds ``z`` standard deviations (None: the noise is unknown)."""
    if not (_finite(std) and _finite(difference)):
        return None
    return abs(float(difference)) > z * float(std)


def eval_numbers(result: dict, collapse_threshold: float | None = None) -> dict:
    """The numbers of one evaluation JSON that the tables show (NaN where absent).

    ``collapsed`` is recomputed from the recorded diversity ratio with ``collapse_threshold``
    when given (the config's ``evaluate.collapse_threshold``), else the flag the evaluation
    recorded; None for an evaluation without the collapse check."""
    c, seg, kid = result["complexity"], result.get("segmentation") or {}, result.get("kid") or {}
    div = result.get("diversity") or {}
    ratio = div.get("ratio")
    flag = div.get("collapsed") if collapse_threshold is None else is_collapsed(ratio, collapse_threshold)
    return {
        "params": int(c["params"]),
        "macs_physical": int(c["macs_physical"]),
        "macs_output": int(c["macs_output"]),
        "latency_ms": cpu_latency_ms(result),
        "fid": _num(result["fid"]["value"]),
        "fid_backend": result["fid"].get("backend", "unknown"),
        "kid": _num(kid.get("mean")),
        "miou": _num(seg.get("miou")),
        "l1": _num(result["l1"]),
        "psnr": _num(result["psnr"]),
        "ssim": _num(result["ssim"]),
        "lse_d": _num((result.get("lse") or {}).get("lse_d")),
        "lse_c": _num((result.get("lse") or {}).get("lse_c")),
        "lse_backend": (result.get("lse") or {}).get("backend"),
        **noise_columns(eval_noise(result)),
        "diversity": _num(ratio),
        "collapsed": None if flag is None else bool(flag),
        "noise_seeds": _num((noise_setup(result) or {}).get("seeds")),
        "noise_bootstrap": _num((noise_setup(result) or {}).get("bootstrap")),
    }


def _fid_identity(fid: dict) -> tuple:
    return (fid.get("backend"), (fid.get("extractor") or {}).get("weights_sha256"), fid.get("image_size"))


def check_one_backend(results: dict[str, dict], what: str = "the main table") -> str:
    """Refuse FID values of different backends / weights / image sizes in one table."""
    ids: dict[tuple, list[str]] = {}
    for name, r in results.items():
        fid = r.get("fid") or {}
        ids.setdefault(_fid_identity(fid), []).append(name)
    if len(ids) > 1:
        parts = "; ".join(
            f"backend={b} weights={str(w)[:12]} size={s}: {', '.join(sorted(n))}"
            for (b, w, s), n in ids.items()
        )
        raise ReportError(
            f"refusing to put FID values of different backends in {what} ({parts}); "
            f"re-evaluate every model with one evaluate.fid_backend"
        )
    return next(iter(ids))[0] if ids else "unknown"


def better(metric: str) -> str:
    return METRICS[metric][1]


def degradation(metric: str, value: float, reference: float) -> float:
    """How much worse ``value`` is than ``reference`` (positive = worse) on ``metric``."""
    return value - reference if better(metric) == "lower" else reference - value


def _quality_metric(cfg: dict) -> str:
    return cfg["report"]["quality_metric"]


def collapse_threshold(cfg: dict) -> float:
    return float((cfg.get("evaluate") or {}).get("collapse_threshold", COLLAPSE_THRESHOLD))


def metric_label(metric: str, backend: str | None = None) -> str:
    """``FID (`standin` backend)``: a distribution metric always named with its backend."""
    label = METRICS[metric][0]
    return f"{label} (`{backend}` backend)" if metric in ("fid", "kid") and backend else label


def pattern_finding(inner: float, outer: float, std_inner: float | None = None, std_outer: float | None = None,
                    std_difference: float | None = None, z: float = SIGNIFICANCE_Z) -> str | None:
    """Whether mean degradations (positive = worse) of the inner and outer layers support the
    inner-layers-are-prunable pattern.

    On the point values: a negative degradation (pruning improved the score) counts as no
    effect (0), never as support: ``support`` when the outer layers' effect is larger than the
    inner layers', ``no effect`` when neither has one, else ``against``.

    With the noise (the standard deviations of the two mean degradations and of their
    difference; any of them None/NaN = unknown: the point values decide): ``no effect`` when
    both degradations are <= 0 (as above); ``support`` only when the outer layers' degradation
    exceeds ``z`` std AND exceeds the inner layers' by more than ``z`` std of the difference;
    ``against`` only when the inner layers' degradation exceeds ``z`` std and the outer layers'
    by more than ``z`` std of the difference; otherwise ``not resolved``."""
    if inner is None or outer is None or not (math.isfinite(inner) and math.isfinite(outer)):
        return None
    i, o = max(float(inner), 0.0), max(float(outer), 0.0)
    point = SUPPORT if o > i else NO_EFFECT if o == i == 0.0 else AGAINST
    if point == NO_EFFECT or not all(_finite(x) for x in (std_inner, std_outer, std_difference)):
        return point
    inner, outer = float(inner), float(outer)
    if outer > z * float(std_outer) and outer - inner > z * float(std_difference):
        return SUPPORT
    if inner > z * float(std_inner) and inner - outer > z * float(std_difference):
        return AGAINST
    return NOT_RESOLVED


def favours(metric: str, variant_value: float, baseline_value: float, variant: str, baseline: str,
            variant_std: float | None = None, baseline_std: float | None = None,
            z: float = SIGNIFICANCE_Z) -> str | None:
    """Which of two models ``metric`` prefers: a name, ``tie``, or None when it was not recorded.

    With both standard deviations known, a difference within ``z`` times their combined std
    gives ``not resolved``."""
    if not (math.isfinite(variant_value) and math.isfinite(baseline_value)):
        return None
    adv = degradation(metric, baseline_value, variant_value)  # >0: the variant is better
    if adv == 0:
        return "tie"
    if beyond_noise(adv, combined_std(variant_std, baseline_std), z) is False:
        return NOT_RESOLVED
    return variant if adv > 0 else baseline


# ------------------------------------------------------------------------------------------
# sensitivity
# ------------------------------------------------------------------------------------------


def inner_layers(cfg: dict) -> list[str]:
    """Prunable layers of the levels of :func:`pipeline.default_inner_levels` (encoder and decoder)."""
    levels = set(pipeline.default_inner_levels(cfg))
    return [x for x in pipeline.config_layers(cfg) if layer_position(cfg, x)[1] in levels]


def layer_position(cfg: dict, layer: str) -> tuple[str, int | None]:
    """``(part, level)`` of a prunable layer of the configured model family."""
    from ..family import family_for_config

    fam = family_for_config(cfg)
    return fam.layer_position(fam.spec_from_config(cfg), layer)


def sensitivity_table(cfg: dict, base: Path | str = DEFAULT_BASE) -> pd.DataFrame:
    """One row per (layer, ratio) of the sweep, layers ordered outer → inner → outer."""
    metric = _quality_metric(cfg)
    threshold = collapse_threshold(cfg)
    lay = Layout.from_config(cfg, base)
    layers = pipeline.sensitivity_layers(cfg)
    order = {x: i for i, x in enumerate(pipeline.config_layers(cfg))}
    inner = set(inner_layers(cfg))
    original = None
    rows = []
    for layer in layers:
        path = lay.sensitivity_json(layer)
        d = read_json(path, _cmd_hint(cfg, base, "sensitivity", layer))
        for key in ("ratios", "metrics", "params", "macs_physical", "macs_output", "widths"):
            if key not in d:
                raise ReportError(
                    f"{path} is not a sensitivity result (no '{key}'); rerun "
                    + _cmd_hint(cfg, base, "sensitivity", layer)
                )
        want = [float(r) for r in cfg["sensitivity"]["ratios"]]
        if [float(r) for r in d["ratios"]] != want:
            raise ReportError(
                f"{path} has ratios {d['ratios']} but the config asks for {want}; rerun "
                + _cmd_hint(cfg, base, "sensitivity", layer)
            )
        full = d.get("metrics_full")
        full_source = f"{path.relative_to(lay.root)} metrics_full"
        if not full or metric not in full:
            if original is None:
                original = eval_numbers(load_eval(cfg, base, ORIGINAL, ORIGINAL))
            full, full_source = original, str(lay.eval_json(ORIGINAL).relative_to(lay.root))
        backend = (
            d.get("fid_backend") or (d.get("fid") or {}).get("backend") or cfg["evaluate"]["fid_backend"]
        )
        part, level = layer_position(cfg, layer)
        flags = d.get("collapsed") or [None] * len(d["ratios"])
        for i, r in enumerate(d["ratios"]):
            m = d["metrics"][i]
            if metric not in m or m[metric] is None:
                raise ReportError(
                    f"{path} has no '{metric}' (report.quality_metric) at ratio {r}; "
                    f"choose a metric the sweep recorded "
                    f"({', '.join(sorted(k for k in m if k in METRICS))})"
                )
            q, qf = float(m[metric]), _num(full.get(metric))
            deg = degradation(metric, q, qf)
            noise = {k: _num(m.get(k)) for k in NOISE_COLUMNS}
            q_std, qf_std = noise[f"{metric}_std"], _num(full.get(f"{metric}_std"))
            div = m.get("diversity")
            collapsed = is_collapsed(div, threshold) if _finite(div) else (
                None if i >= len(flags) or flags[i] is None else bool(flags[i]))
            rows.append(
                {
                    "layer": layer,
                    "position": order[layer],
                    "part": part,
                    "level": level,
                    "inner": layer in inner,
                    "ratio": float(r),
                    "width": int(d["widths"][i]),
                    "params": int(d["params"][i]),
                    "macs_physical": int(d["macs_physical"][i]),
                    "macs_output": int(d["macs_output"][i]),
                    **{k: _num(m.get(k)) for k in QUALITY_COLUMNS},
                    "fid_backend": backend,
                    "quality": q,
                    "quality_std": q_std,
                    "quality_ci95_lo": noise[f"{metric}_ci95_lo"],
                    "quality_ci95_hi": noise[f"{metric}_ci95_hi"],
                    "quality_full": qf,
                    "quality_full_std": qf_std,
                    "degradation": deg,
                    "degradation_std": combined_std(q_std, qf_std),
                    "degradation_pct": 100.0 * deg / abs(qf)
                    if qf not in (0.0,) and math.isfinite(qf)
                    else float("nan"),
                    "diversity": _num(div),
                    "collapsed": collapsed,
                    **noise,
                    "full_source": full_source,
                    **{f"full_{k}": _num(full.get(k)) for k in QUALITY_COLUMNS},
                    **{f"full_{k}_std": _num(full.get(f"{k}_std")) for k in QUALITY_COLUMNS},
                }
            )
    df = pd.DataFrame(rows, columns=[*SENSITIVITY_COLUMNS, *HIDDEN_COLUMNS])
    backends = sorted(set(df["fid_backend"]))
    if len(backends) > 1:
        raise ReportError(
            f"refusing to put FID values of different backends in the sensitivity table "
            f"({', '.join(backends)}); rerun the sweep with one evaluate.fid_backend"
        )
    df.attrs.update(metric=metric, better=better(metric), inner_layers=sorted(inner, key=order.get),
                    fid_backend=backends[0] if backends else None, collapse_threshold=threshold)
    return df.sort_values(["position", "ratio"], kind="stable").reset_index(drop=True)


def sensitivity_pivot(df: pd.DataFrame) -> pd.DataFrame:
    """Layers × ratios of the quality metric (the figure as a table), plus the unpruned value.

    ``r=<ratio>`` = the value, ``r=<ratio> std`` its noise (NaN: not measured), ``collapsed`` =
    the ratios at which the pruned model is flagged collapsed (e.g. ``0.9``)."""
    order = sorted(df.layer.unique(), key=lambda x: int(df.loc[df.layer == x, "position"].iloc[0]))
    ratios = sorted(df.ratio.unique())
    first = df.groupby("layer").first()
    out = pd.DataFrame({"layer": order})
    out["inner"] = [("yes" if bool(first.loc[x, "inner"]) else "") for x in order]
    cell = {(r.layer, r.ratio): r for r in df.itertuples()}
    for r in ratios:
        out[f"r={r:g}"] = [cell[(x, r)].quality if (x, r) in cell else float("nan") for x in order]
    out["unpruned"] = [float(first.loc[x, "quality_full"]) for x in order]
    for r in ratios:
        out[f"r={r:g} std"] = [cell[(x, r)].quality_std if (x, r) in cell else float("nan") for x in order]
    out["unpruned std"] = [float(first.loc[x, "quality_full_std"]) for x in order]
    out["collapsed"] = [", ".join(f"{r:g}" for r in ratios if (x, r) in cell and flag(cell[(x, r)].collapsed))
                        for x in order]
    return out


def sensitivity_pivot_markdown(matrix: pd.DataFrame) -> pd.DataFrame:
    """The matrix as report.md shows it: "value ± std" per cell ("± n/a" where the noise was not
    measured), "(collapsed)" after a collapsed point."""
    ratios = [c for c in matrix.columns if c.startswith("r=") and not c.endswith(" std")]
    out = matrix[["layer", "inner"]].copy()
    for c in [*ratios, "unpruned"]:
        marks = [(c[2:] in [x.strip() for x in str(col).split(",")]) if c != "unpruned" else False
                 for col in matrix["collapsed"]]
        out[c] = [fmt_noisy(v, s) + (" (collapsed)" if m else "")
                  for v, s, m in zip(matrix[c], matrix[f"{c} std"], marks)]
    return out


def _mean_std(stds: pd.Series) -> float:
    """The standard deviation of the mean of independent values with these stds (NaN if any unknown)."""
    vals = [float(x) if _finite(x) else float("nan") for x in stds]
    if not vals or not all(math.isfinite(v) for v in vals):
        return float("nan")
    return math.sqrt(sum(v * v for v in vals)) / len(vals)


def group_outcome(metric: str, g: pd.DataFrame, values: pd.Series, full: pd.Series, stds: pd.Series,
                  full_stds: pd.Series, z: float = SIGNIFICANCE_Z) -> dict:
    """Mean degradation of the inner and outer points of one ratio on ``metric``, their noise and
    the outcome (:func:`pattern_finding`).

    The unpruned value is the same for every point, so it cancels in the difference (outer −
    inner), whose std is that of the two means; each group's own degradation also carries the
    unpruned value's std."""
    deg = pd.Series([degradation(metric, float(x), float(f)) for x, f in zip(values, full)], index=g.index)
    gi, go = g.index[g.inner.astype(bool)], g.index[~g.inner.astype(bool)]
    mi = float(deg[gi].mean()) if len(gi) else float("nan")
    mo = float(deg[go].mean()) if len(go) else float("nan")
    si_mean, so_mean = _mean_std(stds[gi]), _mean_std(stds[go])
    fs = float(full_stds.iloc[0]) if len(full_stds) and _finite(full_stds.iloc[0]) else float("nan")
    std_i, std_o = combined_std(si_mean, fs), combined_std(so_mean, fs)
    std_d = combined_std(si_mean, so_mean)
    point = pattern_finding(mi, mo) if len(gi) and len(go) else None
    finding = pattern_finding(mi, mo, std_i, std_o, std_d, z) if len(gi) and len(go) else None
    return {"inner": mi, "outer": mo, "std_inner": std_i, "std_outer": std_o, "std_difference": std_d,
            "point": point, "finding": finding}


def sensitivity_summary(df: pd.DataFrame, z: float = SIGNIFICANCE_Z) -> pd.DataFrame:
    """Per ratio: mean degradation of the inner layers vs the outer layers (positive = worse).

    ``finding`` is the verdict metric's outcome (:func:`pattern_finding`: a negative
    degradation counts as no effect; with the noise recorded, a difference within ``z``
    standard deviations is ``not resolved``); ``finding_point`` the outcome on the point values
    alone; ``noise_known`` whether every point had its noise; ``inner_less_sensitive`` is True
    for ``support``, False for ``against``/``no effect`` and None when not resolved.
    ``findings_by_metric`` gives the outcome on every other recorded metric (with its noise the
    same way) and ``disagree`` the metrics whose resolved outcome differs from the verdict
    metric's; ``collapsed_points`` lists the collapsed (layer, ratio) points."""
    metric = df.attrs.get("metric", "fid")
    others = [m for m in QUALITY_COLUMNS if m != metric]
    rows = []
    for r, g in df.groupby("ratio", sort=True):
        gi, go = g[g.inner.astype(bool)], g[~g.inner.astype(bool)]
        std_col = g["quality_std"] if "quality_std" in g.columns else pd.Series(float("nan"), index=g.index)
        full_std = g["quality_full_std"] if "quality_full_std" in g.columns else pd.Series(float("nan"),
                                                                                           index=g.index)
        main = group_outcome(metric, g, g["quality"], g["quality_full"], std_col, full_std, z)
        by_metric = {}
        for m in others:
            if m not in g.columns or f"full_{m}" not in g.columns or not (len(gi) and len(go)):
                continue
            nan = pd.Series(float("nan"), index=g.index)
            o = group_outcome(m, g, g[m], g[f"full_{m}"], g.get(f"{m}_std", nan), g.get(f"full_{m}_std", nan), z)
            if o["finding"] is not None:
                by_metric[m] = o["finding"]
        finding = main["finding"]
        collapsed = [f"{x}@{r:g}" for x, c in zip(g.layer, g.get("collapsed", [None] * len(g))) if flag(c)]
        rows.append(
            {
                "ratio": float(r),
                "inner_layers": ", ".join(gi.layer),
                "outer_layers": ", ".join(go.layer),
                "n_inner": len(gi),
                "n_outer": len(go),
                "mean_degradation_inner": main["inner"],
                "mean_degradation_outer": main["outer"],
                "difference": main["outer"] - main["inner"],
                "std_inner": main["std_inner"],
                "std_outer": main["std_outer"],
                "std_difference": main["std_difference"],
                "mean_degradation_pct_inner": float(gi.degradation_pct.mean()) if len(gi) else float("nan"),
                "mean_degradation_pct_outer": float(go.degradation_pct.mean()) if len(go) else float("nan"),
                "finding": finding,
                "finding_point": main["point"],
                "noise_known": bool(_finite(main["std_difference"])),
                "inner_less_sensitive": None if finding in (None, NOT_RESOLVED) else finding == SUPPORT,
                "findings_by_metric": "; ".join(f"{m}: {f}" for m, f in by_metric.items()),
                "disagree": ", ".join(m for m, f in by_metric.items()
                                      if finding not in (None, NOT_RESOLVED) and f not in (finding, NOT_RESOLVED)),
                "collapsed_points": ", ".join(collapsed),
            }
        )
    out = pd.DataFrame(rows)
    out.attrs.update(df.attrs)
    out.attrs["z"] = z
    return out


# ------------------------------------------------------------------------------------------
# main comparison
# ------------------------------------------------------------------------------------------


def load_all_evals(cfg: dict, base: Path | str = DEFAULT_BASE) -> dict[tuple[str, str], dict]:
    return {(v, s): load_eval(cfg, base, v, s) for v, s in pipeline.models(cfg)}


def main_table(cfg: dict, base: Path | str = DEFAULT_BASE, evals: dict | None = None) -> pd.DataFrame:
    """Original, inner/cut variants and matched global baselines, before and after fine-tuning."""
    evals = evals if evals is not None else load_all_evals(cfg, base)
    check_one_backend({Layout.eval_name(v, s) + ".json": r for (v, s), r in evals.items()})
    prim, allv = pipeline.primary_variants(cfg), pipeline.all_variants(cfg)
    match = cfg["baselines"]["match"]
    threshold = collapse_threshold(cfg)
    orig = eval_numbers(evals[(ORIGINAL, ORIGINAL)], threshold)
    rows = []
    for v, s in pipeline.models(cfg):
        n = eval_numbers(evals[(v, s)], threshold)
        if v == ORIGINAL:
            meta = {
                "group": "original",
                "strategy": "none",
                "matched_to": "",
                "budget_metric": "",
                "budget_gap": float("nan"),
            }
        else:
            a = allv[v]
            ref = a.get("reference")
            meta = {
                "group": "primary" if v in prim else "baseline",
                "strategy": a["strategy"],
                "matched_to": ref or "",
                "budget_metric": match if ref else "",
                "budget_gap": float("nan"),
            }
            if ref:
                ref_n = eval_numbers(evals[(ref, s)], threshold)
                meta["budget_gap"] = (n[match] - ref_n[match]) / ref_n[match]
        rows.append({"variant": v, "stage": s, **meta, **n, "params_fraction": n["params"] / orig["params"]})
    df = pd.DataFrame(rows, columns=MAIN_COLUMNS)
    # one latency per architecture: a variant's pruned and fine-tuned models share theirs, and the
    # evaluation jobs that measured them ran beside other jobs, whose load only adds time; so both
    # rows show the lower of the two medians (benchmarks/latency.py measures side by side)
    df["latency_ms"] = df.groupby("variant")["latency_ms"].transform("min")
    df.attrs.update(metric=_quality_metric(cfg), fid_backend=orig["fid_backend"], collapse_threshold=threshold)
    return df


def comparison_table(cfg: dict, main: pd.DataFrame, z: float = SIGNIFICANCE_Z) -> pd.DataFrame:
    """Each primary variant against each matched baseline at the final stage.

    ``metric_winner`` is the model the verdict metric (``report.quality_metric``) prefers on
    the point values; ``difference_std`` = sqrt(variant_std^2 + baseline_std^2) and
    ``resolved`` whether |advantage| > ``z`` x that (None: the noise is unknown).  ``winner``
    is the verdict: ``metric_winner`` when resolved or the noise is unknown, ``not resolved``
    otherwise, except that a collapsed model never wins (the other model wins, ``decided_by`` =
    ``collapse``, whatever the noise; both collapsed: ``none``).  ``agree`` and ``disagree`` list
    the other metrics that prefer the same / the other model beyond their noise (on the point
    values where their noise is unknown); ``unresolved`` those whose difference is within it."""
    metric = _quality_metric(cfg)
    stage = pipeline.final_stage(cfg)
    idx = main.set_index(["variant", "stage"])
    if idx[metric].isna().all():
        raise ReportError(
            f"report.quality_metric is '{metric}' but no evaluation recorded it "
            f"(e.g. evaluate.segmentation is 'none' or evaluate.kid is false); choose fid, kid, l1, psnr or ssim"
        )
    match = cfg["baselines"]["match"]
    others = [m for m in QUALITY_COLUMNS if m != metric]
    rows = []
    for name in pipeline.primary_variants(cfg):
        p = idx.loc[(name, stage)]
        for b, a in pipeline.baseline_variants(cfg).items():
            if a["reference"] != name:
                continue
            q = idx.loc[(b, stage)]
            adv = degradation(metric, float(q[metric]), float(p[metric]))  # >0: primary better
            metric_winner = name if adv > 0 else b if adv < 0 else "tie"
            std = {k: float(r.get(f"{metric}_std", float("nan"))) for k, r in (("v", p), ("b", q))}
            diff_std = combined_std(std["v"], std["b"])
            resolved = beyond_noise(adv, diff_std, z) if metric_winner != "tie" else None
            pc, bc = flag(p["collapsed"]), flag(q["collapsed"])
            if pc and bc:
                winner, decided_by = "none", "collapse"
            elif pc or bc:
                winner = b if pc else name
                decided_by = "collapse" if winner != metric_winner or resolved is False else metric
            else:
                winner = NOT_RESOLVED if resolved is False else metric_winner
                decided_by = metric
            prefs = {m: favours(m, float(p[m]), float(q[m]), name, b, p.get(f"{m}_std"), q.get(f"{m}_std"), z)
                     for m in others}
            agree = [m for m, w in prefs.items() if w is not None and w == metric_winner]
            disagree = [m for m, w in prefs.items()
                        if w not in (None, "tie", NOT_RESOLVED, metric_winner) and metric_winner != "tie"]
            unresolved = [m for m, w in prefs.items() if w == NOT_RESOLVED]
            rows.append(
                {
                    "variant": name,
                    "baseline": b,
                    "stage": stage,
                    "metric": metric,
                    "better": better(metric),
                    "variant_value": float(p[metric]),
                    "variant_std": std["v"],
                    "baseline_value": float(q[metric]),
                    "baseline_std": std["b"],
                    "advantage": adv,
                    "difference_std": diff_std,
                    "resolved": resolved,
                    "advantage_pct": 100.0 * adv / abs(float(q[metric]))
                    if float(q[metric])
                    else float("nan"),
                    "metric_winner": metric_winner,
                    "variant_collapsed": flag(p["collapsed"], None),
                    "baseline_collapsed": flag(q["collapsed"], None),
                    "winner": winner,
                    "decided_by": decided_by,
                    "agree": ", ".join(agree),
                    "disagree": ", ".join(disagree),
                    "unresolved": ", ".join(unresolved),
                    "budget_metric": match,
                    "variant_budget": int(p[match]),
                    "baseline_budget": int(q[match]),
                    "budget_gap": float(q["budget_gap"]),
                }
            )
    out = pd.DataFrame(rows)
    out.attrs.update(metric=metric, stage=stage, fid_backend=main.attrs.get("fid_backend"),
                     collapse_threshold=main.attrs.get("collapse_threshold", collapse_threshold(cfg)), z=z)
    return out


# ------------------------------------------------------------------------------------------
# learning curve
# ------------------------------------------------------------------------------------------

#: per-epoch entries of train.json that are not training losses
_EPOCH_META = ("epoch", "lr", "seconds", "images_per_s")


def learning_curve_table(train_log: dict) -> pd.DataFrame:
    """One row per epoch of a ``train.json`` (epoch 0 = before training): ``check`` = the
    trainer's check score (``eval.curve``; NaN where it was not checked), ``weights_rel_l2`` =
    the generator's relative L2 distance from its initial weights, ``lr`` and the epoch's mean
    training losses (``train_<loss>``)."""
    curve = {int(c["epoch"]): c for c in (train_log.get("eval") or {}).get("curve") or []}
    epochs = {int(e["epoch"]): e for e in train_log.get("epochs") or []}
    losses = list(dict.fromkeys(k for e in epochs.values() for k, v in e.items()
                                if k not in _EPOCH_META and isinstance(v, (int, float)) and not isinstance(v, bool)))
    rows = []
    for ep in sorted(set(curve) | set(epochs) | ({0} if curve or epochs else set())):
        c, e = curve.get(ep) or {}, epochs.get(ep) or {}
        rows.append({"epoch": ep, "check": _num(c.get("score")), "weights_rel_l2": _num(c.get("weights_rel_l2")),
                     "lr": _num(e.get("lr")), **{f"train_{k}": _num(e.get(k)) for k in losses}})
    return pd.DataFrame(rows, columns=["epoch", "check", "weights_rel_l2", "lr", *[f"train_{k}" for k in losses]])


# ------------------------------------------------------------------------------------------
# writing
# ------------------------------------------------------------------------------------------


def _fmt_int(x) -> str:
    return "" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{int(x):,}"


def _fmt_float(x, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.{digits}g}" if abs(x) < 1e4 else f"{x:,.0f}"


def fmt_noisy(value, std, digits: int = 4) -> str:
    """``0.4093 ± 0.012``: a value with its noise (``± n/a`` where the noise was not measured;
    ``–`` for a missing value)."""
    v = _fmt_float(value, digits)
    if v == "–":
        return v
    return f"{v} ± {_fmt_float(std, 2) if _finite(std) else 'n/a'}"


def _fmt_pct(x) -> str:
    return "" if x is None or not math.isfinite(x) else f"{100 * x:+.2f}%"


def _fmt_flag(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else "**yes**" if x else "no"


def _fmt_yesno(x) -> str:
    """yes / no / n/a (None or NaN: not decided or not measured)."""
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else "yes" if x else "no"


def _fmt_macs(x) -> str:
    return "" if x is None or not math.isfinite(x) else f"{x / 1e6:,.2f} M"


FORMATS = {
    "params": _fmt_int,
    "width": _fmt_int,
    "n_inner": _fmt_int,
    "n_outer": _fmt_int,
    "variant_budget": _fmt_int,
    "baseline_budget": _fmt_int,
    "position": _fmt_int,
    "level": _fmt_int,
    "macs_physical": _fmt_macs,
    "macs_output": _fmt_macs,
    "budget_gap": _fmt_pct,
    "params_fraction": lambda x: f"{100 * x:.1f}%",
    "latency_ms": lambda x: _fmt_float(x, 3),
    "collapsed": _fmt_flag,
    "variant_collapsed": _fmt_flag,
    "baseline_collapsed": _fmt_flag,
    "resolved": _fmt_yesno,
    "noise_known": _fmt_yesno,
    "inner_less_sensitive": _fmt_yesno,
    "epoch": _fmt_int,
}


def to_markdown(df: pd.DataFrame) -> str:
    """GitHub markdown with readable numbers (thousands separators, MACs in M, 4 significant digits)."""
    out = df.copy()
    for c in out.columns:
        f = FORMATS.get(c)
        if f is not None:
            out[c] = [f(x) for x in out[c]]
        elif pd.api.types.is_bool_dtype(out[c]):
            out[c] = out[c].map({True: "yes", False: "no"})
        elif pd.api.types.is_float_dtype(out[c]):
            out[c] = [_fmt_float(x) for x in out[c]]
    out = out.astype(object).where(pd.notna(out), "")
    return out.to_markdown(index=False, disable_numparse=True) + "\n"


def with_noise_markdown(df: pd.DataFrame, pairs: dict[str, str] | None = None) -> pd.DataFrame:
    """``df`` as the markdown tables show it: every quality column (and each ``pairs`` value
    column -> its std column) as "value ± std", the noise columns themselves left out."""
    pairs = dict(pairs or {})
    pairs.update({m: f"{m}_std" for m in QUALITY_COLUMNS if m in df.columns})
    out = df.copy()
    for col, std in pairs.items():
        if col in out.columns:
            stds = out[std] if std in out.columns else [float("nan")] * len(out)
            out[col] = [fmt_noisy(v, s) for v, s in zip(out[col], stds)]
    drop = [c for c in out.columns
            if c in NOISE_COLUMNS or c in ("noise_seeds", "noise_bootstrap") or c in pairs.values()
            or c.endswith(("_ci95_lo", "_ci95_hi"))]
    return out.drop(columns=drop)


def markdown_view(name: str, df: pd.DataFrame) -> pd.DataFrame:
    """The frame ``tables/<name>.md`` shows: noise as "value ± std", hidden columns left out."""
    if name == "sensitivity":
        df = df.drop(columns=[c for c in HIDDEN_COLUMNS if c in df.columns])
        return with_noise_markdown(df, {"quality": "quality_std", "quality_full": "quality_full_std",
                                        "degradation": "degradation_std"})
    if name == "sensitivity_matrix" and "collapsed" in df.columns:
        return sensitivity_pivot_markdown(df)
    if name == "sensitivity_summary":
        return with_noise_markdown(df, {"mean_degradation_inner": "std_inner",
                                        "mean_degradation_outer": "std_outer",
                                        "difference": "std_difference"})
    if name == "comparison":
        return with_noise_markdown(df, {"variant_value": "variant_std", "baseline_value": "baseline_std",
                                        "advantage": "difference_std"})
    return with_noise_markdown(df)


def write_table(df: pd.DataFrame, lay: Layout, name: str, md: pd.DataFrame | None = None) -> dict:
    """``tables/<name>.csv`` (full precision) and ``tables/<name>.md`` (formatted)."""
    csv, mdp = lay.table(name, "csv"), lay.table(name, "md")
    atomic_write_text(csv, df.to_csv(index=False))
    atomic_write_text(mdp, to_markdown(md if md is not None else markdown_view(name, df)))
    return {f"{name}_csv": csv, f"{name}_md": mdp}


def all_tables(cfg: dict, base: Path | str = DEFAULT_BASE) -> dict[str, pd.DataFrame]:
    """Every table of the report, computed from the results (nothing written)."""
    sens = sensitivity_table(cfg, base)
    main = main_table(cfg, base)
    return {
        "main": main,
        "comparison": comparison_table(cfg, main),
        "sensitivity": sens,
        "sensitivity_matrix": sensitivity_pivot(sens),
        "sensitivity_summary": sensitivity_summary(sens),
    }


def write_tables(cfg: dict, base: Path | str = DEFAULT_BASE, tables: dict | None = None) -> dict[str, Path]:
    tables = tables if tables is not None else all_tables(cfg, base)
    lay = Layout.from_config(cfg, base)
    written: dict[str, Path] = {}
    for name, df in tables.items():
        written.update(write_table(df, lay, name))
    path = lay.metrics_json  # the DVC metrics file: {"original"|"<variant>/<stage>": {metric: value}}
    atomic_write_text(path, json.dumps(main_metrics(tables["main"]), indent=2, allow_nan=False) + "\n")
    written["metrics_json"] = path
    plot = lay.plot("sensitivity")  # the DVC plots file: one row per (layer, ratio)
    sens = tables["sensitivity"]
    points = sens[["layer", "ratio", "quality"]].assign(ratio=sens.ratio.map(lambda r: f"r{r:g}"))
    atomic_write_text(plot, points.to_csv(index=False))
    written["sensitivity_plot"] = plot
    return written


def main_metrics(main: pd.DataFrame) -> dict:
    """The main table's numbers keyed like the MLflow runs (``original``, ``<variant>/<stage>``),
    for `dvc metrics show/diff`."""
    numeric = ["params", "macs_physical", "macs_output", "latency_ms", *QUALITY_COLUMNS,
               *[f"{m}_std" for m in QUALITY_COLUMNS], "diversity"]
    out = {}
    for row in jsonable_table(main).to_dict("records"):
        key = ORIGINAL if row["variant"] == ORIGINAL else f"{row['variant']}/{row['stage']}"
        out[key] = {k: row[k] for k in numeric if row.get(k) is not None and math.isfinite(row[k])}
        if row.get("collapsed") is not None:  # the collapse check (evaluate.collapse_threshold)
            out[key]["collapsed"] = bool(row["collapsed"])
    return out


def jsonable_table(df: pd.DataFrame) -> pd.DataFrame:
    """NaN → None and numpy scalars → Python (for JSON / MLflow tables)."""
    out = df.astype(object).where(pd.notna(df), None)
    return out.map(lambda x: x.item() if isinstance(x, np.generic) else x)
