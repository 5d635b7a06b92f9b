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
}
QUALITY_COLUMNS = list(METRICS)
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
    "diversity",
    "collapsed",
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
    "quality_full",
    "degradation",
    "degradation_pct",
]
#: columns of the sensitivity table kept in the CSV but left out of its markdown version:
#: where the unpruned values come from, and the unpruned value of every metric
FULL_COLUMNS = [f"full_{m}" for m in QUALITY_COLUMNS]
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
        "diversity": _num(ratio),
        "collapsed": None if flag is None else bool(flag),
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


def pattern_finding(inner: float, outer: float) -> str | None:
    """Whether mean degradations (positive = worse) of the inner and outer layers support the
    inner-layers-are-prunable pattern.  A negative degradation (pruning improved the score)
    counts as no effect (0), never as support: ``support`` when the outer layers' effect is
    larger than the inner layers', ``no effect`` when neither has one, else ``against``."""
    if inner is None or outer is None or not (math.isfinite(inner) and math.isfinite(outer)):
        return None
    i, o = max(float(inner), 0.0), max(float(outer), 0.0)
    if o > i:
        return SUPPORT
    return NO_EFFECT if o == i == 0.0 else AGAINST


def favours(metric: str, variant_value: float, baseline_value: float, variant: str, baseline: str) -> str | None:
    """Which of two models ``metric`` prefers: a name, ``tie``, or None when it was not recorded."""
    if not (math.isfinite(variant_value) and math.isfinite(baseline_value)):
        return None
    adv = degradation(metric, baseline_value, variant_value)  # >0: the variant is better
    return variant if adv > 0 else baseline if adv < 0 else "tie"


# ------------------------------------------------------------------------------------------
# sensitivity
# ------------------------------------------------------------------------------------------


def inner_layers(cfg: dict) -> list[str]:
    """Prunable layers of the levels of :func:`pipeline.default_inner_levels` (encoder and decoder)."""
    levels = set(pipeline.default_inner_levels(cfg))
    return [
        x for x in pipeline.config_layers(cfg) if int(x[4:] if x.startswith("down") else x[2:]) in levels
    ]


def sensitivity_table(cfg: dict, base: Path | str = DEFAULT_BASE) -> pd.DataFrame:
    """One row per (layer, ratio) of the sweep, layers ordered outer → inner → outer."""
    metric = _quality_metric(cfg)
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
        part = "encoder" if layer.startswith("down") else "decoder"
        level = int(layer[4:] if part == "encoder" else layer[2:])
        for i, r in enumerate(d["ratios"]):
            m = d["metrics"][i]
            if metric not in m or m[metric] is None:
                raise ReportError(
                    f"{path} has no '{metric}' (report.quality_metric) at ratio {r}; "
                    f"choose a metric the sweep recorded ({', '.join(sorted(m))})"
                )
            q, qf = float(m[metric]), _num(full.get(metric))
            deg = degradation(metric, q, qf)
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
                    "quality_full": qf,
                    "degradation": deg,
                    "degradation_pct": 100.0 * deg / abs(qf)
                    if qf not in (0.0,) and math.isfinite(qf)
                    else float("nan"),
                    "full_source": full_source,
                    **{f"full_{k}": _num(full.get(k)) for k in QUALITY_COLUMNS},
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
                    fid_backend=backends[0] if backends else None)
    return df.sort_values(["position", "ratio"], kind="stable").reset_index(drop=True)


def sensitivity_pivot(df: pd.DataFrame) -> pd.DataFrame:
    """Layers × ratios of the quality metric (the figure as a table), plus the unpruned value."""
    p = df.pivot_table(index="layer", columns="ratio", values="quality", aggfunc="first")
    p = p.loc[sorted(p.index, key=lambda x: int(df.loc[df.layer == x, "position"].iloc[0]))]
    p.columns = [f"r={c:g}" for c in p.columns]
    full = df.groupby("layer")["quality_full"].first()
    inner = df.groupby("layer")["inner"].first()
    p.insert(0, "inner", inner.loc[p.index].map({True: "yes", False: ""}))
    p["unpruned"] = full.loc[p.index]
    p.index.name = "layer"
    return p.reset_index()


def sensitivity_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per ratio: mean degradation of the inner layers vs the outer layers (positive = worse).

    ``finding`` is the verdict metric's outcome (:func:`pattern_finding`: a negative
    degradation counts as no effect); ``inner_less_sensitive`` is True only for ``support``.
    ``findings_by_metric`` gives the outcome on every other recorded metric and ``disagree``
    the metrics whose outcome differs from the verdict metric's."""
    metric = df.attrs.get("metric", "fid")
    others = [m for m in QUALITY_COLUMNS if m != metric]
    rows = []
    for r, g in df.groupby("ratio", sort=True):
        gi, go = g[g.inner], g[~g.inner]
        mi = float(gi.degradation.mean()) if len(gi) else float("nan")
        mo = float(go.degradation.mean()) if len(go) else float("nan")
        finding = pattern_finding(mi, mo) if len(gi) and len(go) else None
        by_metric = {}
        for m in others:
            if m not in g.columns or f"full_{m}" not in g.columns or not (len(gi) and len(go)):
                continue
            deg = [degradation(m, float(x), float(f)) for x, f in zip(g[m], g[f"full_{m}"])]
            deg = pd.Series(deg, index=g.index)
            f = pattern_finding(float(deg[gi.index].mean()), float(deg[go.index].mean()))
            if f is not None:
                by_metric[m] = f
        rows.append(
            {
                "ratio": float(r),
                "inner_layers": ", ".join(gi.layer),
                "outer_layers": ", ".join(go.layer),
                "n_inner": len(gi),
                "n_outer": len(go),
                "mean_degradation_inner": mi,
                "mean_degradation_outer": mo,
                "difference": mo - mi,
                "mean_degradation_pct_inner": float(gi.degradation_pct.mean()) if len(gi) else float("nan"),
                "mean_degradation_pct_outer": float(go.degradation_pct.mean()) if len(go) else float("nan"),
                "finding": finding,
                "inner_less_sensitive": (finding == SUPPORT) if finding is not None else None,
                "findings_by_metric": "; ".join(f"{m}: {f}" for m, f in by_metric.items()),
                "disagree": ", ".join(m for m, f in by_metric.items() if finding is not None and f != finding),
            }
        )
    out = pd.DataFrame(rows)
    out.attrs.update(df.attrs)
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
    df.attrs.update(metric=_quality_metric(cfg), fid_backend=orig["fid_backend"], collapse_threshold=threshold)
    return df


def comparison_table(cfg: dict, main: pd.DataFrame) -> pd.DataFrame:
    """Each primary variant against each matched baseline at the final stage.

    ``metric_winner`` is the model the verdict metric (``report.quality_metric``) prefers;
    ``winner`` is the verdict: the same, except that a collapsed model never wins (the other
    model wins, ``decided_by`` = ``collapse``; both collapsed: ``none``).  ``agree`` and
    ``disagree`` list the other metrics that prefer the same / the other model."""
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
            pc, bc = flag(p["collapsed"]), flag(q["collapsed"])
            if pc and bc:
                winner, decided_by = "none", "collapse"
            elif pc or bc:
                winner = b if pc else name
                decided_by = "collapse" if winner != metric_winner else metric
            else:
                winner, decided_by = metric_winner, metric
            prefs = {m: favours(m, float(p[m]), float(q[m]), name, b) for m in others}
            agree = [m for m, w in prefs.items() if w is not None and w == metric_winner]
            disagree = [m for m, w in prefs.items()
                        if w not in (None, "tie", metric_winner) and metric_winner != "tie"]
            rows.append(
                {
                    "variant": name,
                    "baseline": b,
                    "stage": stage,
                    "metric": metric,
                    "better": better(metric),
                    "variant_value": float(p[metric]),
                    "baseline_value": float(q[metric]),
                    "advantage": adv,
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
                    "budget_metric": match,
                    "variant_budget": int(p[match]),
                    "baseline_budget": int(q[match]),
                    "budget_gap": float(q["budget_gap"]),
                }
            )
    out = pd.DataFrame(rows)
    out.attrs.update(metric=metric, stage=stage, fid_backend=main.attrs.get("fid_backend"),
                     collapse_threshold=main.attrs.get("collapse_threshold", collapse_threshold(cfg)))
    return out


# ------------------------------------------------------------------------------------------
# writing
# ------------------------------------------------------------------------------------------


def _fmt_int(x) -> str:
    return "" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{int(x):,}"


def _fmt_float(x, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.{digits}g}" if abs(x) < 1e4 else f"{x:,.0f}"


def _fmt_pct(x) -> str:
    return "" if x is None or not math.isfinite(x) else f"{100 * x:+.2f}%"


def _fmt_flag(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else "**yes**" if x else "no"


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


def write_table(df: pd.DataFrame, lay: Layout, name: str, md: pd.DataFrame | None = None) -> dict:
    """``tables/<name>.csv`` (full precision) and ``tables/<name>.md`` (formatted)."""
    csv, mdp = lay.table(name, "csv"), lay.table(name, "md")
    atomic_write_text(csv, df.to_csv(index=False))
    atomic_write_text(mdp, to_markdown(md if md is not None else df))
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
        md = df.drop(columns=[c for c in HIDDEN_COLUMNS if c in df.columns]) if name == "sensitivity" else None
        written.update(write_table(df, lay, name, md))
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
    numeric = ["params", "macs_physical", "macs_output", "latency_ms", *QUALITY_COLUMNS, "diversity"]
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
