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
  after fine-tuning when there is one, on ``report.quality_metric`` (the verdict metric);
* :func:`learning_curve_table` — one row per epoch of the original's ``train.json``.

:func:`write_tables` writes them (CSV + markdown), the DVC metrics file and the sensitivity plot file.

Every verdict rests on :mod:`unetprune.report.verdicts` (metric directions, noise, collapse);
inputs are read by :mod:`unetprune.report.load`, cells formatted by :mod:`unetprune.report.format`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from .. import pipeline
from ..fileio import atomic_write_text
from ..layout import DEFAULT_BASE, ORIGINAL, Layout
from .format import sensitivity_pivot_markdown, to_markdown, with_noise_markdown
from .load import (
    ReportError,
    _cmd_hint,
    check_one_backend,
    eval_numbers,
    load_all_evals,
    load_eval,
    read_json,
)
from .verdicts import (
    METRICS,
    NOISE_COLUMNS,
    NOT_RESOLVED,
    QUALITY_COLUMNS,
    SIGNIFICANCE_Z,
    SUPPORT,
    _finite,
    _num,
    better,
    beyond_noise,
    collapse_threshold,
    combined_std,
    degradation,
    favours,
    flag,
    group_outcome,
    is_collapsed,
)

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
    "latency_ort_ms",
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


def _quality_metric(cfg: dict) -> str:
    return cfg["report"]["quality_metric"]


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
            collapsed = (
                is_collapsed(div, threshold)
                if _finite(div)
                else (None if i >= len(flags) or flags[i] is None else bool(flags[i]))
            )
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
    df.attrs.update(
        metric=metric,
        better=better(metric),
        inner_layers=sorted(inner, key=order.get),
        fid_backend=backends[0] if backends else None,
        collapse_threshold=threshold,
    )
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
    out["collapsed"] = [
        ", ".join(f"{r:g}" for r in ratios if (x, r) in cell and flag(cell[(x, r)].collapsed)) for x in order
    ]
    return out


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
        full_std = (
            g["quality_full_std"]
            if "quality_full_std" in g.columns
            else pd.Series(float("nan"), index=g.index)
        )
        main = group_outcome(metric, g, g["quality"], g["quality_full"], std_col, full_std, z)
        by_metric = {}
        for m in others:
            if m not in g.columns or f"full_{m}" not in g.columns or not (len(gi) and len(go)):
                continue
            nan = pd.Series(float("nan"), index=g.index)
            o = group_outcome(
                m, g, g[m], g[f"full_{m}"], g.get(f"{m}_std", nan), g.get(f"full_{m}_std", nan), z
            )
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
                "disagree": ", ".join(
                    m
                    for m, f in by_metric.items()
                    if finding not in (None, NOT_RESOLVED) and f not in (finding, NOT_RESOLVED)
                ),
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
            ref = a.get("reference") or a.get("match")  # a baseline's or a plan's equal-budget model
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
    # rows show the lower of the two medians (benchmarks/latency.py measures side by side); ONNX
    # Runtime (latency_ort_ms) times only the exported stage's file, whose value fills both rows
    for col in ("latency_ms", "latency_ort_ms"):
        df[col] = df.groupby("variant")[col].transform("min")
    df.attrs.update(
        metric=_quality_metric(cfg), fid_backend=orig["fid_backend"], collapse_threshold=threshold
    )
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
            prefs = {
                m: favours(m, float(p[m]), float(q[m]), name, b, p.get(f"{m}_std"), q.get(f"{m}_std"), z)
                for m in others
            }
            agree = [m for m, w in prefs.items() if w is not None and w == metric_winner]
            disagree = [
                m
                for m, w in prefs.items()
                if w not in (None, "tie", NOT_RESOLVED, metric_winner) and metric_winner != "tie"
            ]
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
    out.attrs.update(
        metric=metric,
        stage=stage,
        fid_backend=main.attrs.get("fid_backend"),
        collapse_threshold=main.attrs.get("collapse_threshold", collapse_threshold(cfg)),
        z=z,
    )
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
    losses = list(
        dict.fromkeys(
            k
            for e in epochs.values()
            for k, v in e.items()
            if k not in _EPOCH_META and isinstance(v, (int, float)) and not isinstance(v, bool)
        )
    )
    rows = []
    for ep in sorted(set(curve) | set(epochs) | ({0} if curve or epochs else set())):
        c, e = curve.get(ep) or {}, epochs.get(ep) or {}
        rows.append(
            {
                "epoch": ep,
                "check": _num(c.get("score")),
                "weights_rel_l2": _num(c.get("weights_rel_l2")),
                "lr": _num(e.get("lr")),
                **{f"train_{k}": _num(e.get(k)) for k in losses},
            }
        )
    return pd.DataFrame(
        rows, columns=["epoch", "check", "weights_rel_l2", "lr", *[f"train_{k}" for k in losses]]
    )


# ------------------------------------------------------------------------------------------
# writing
# ------------------------------------------------------------------------------------------


def markdown_view(name: str, df: pd.DataFrame) -> pd.DataFrame:
    """The frame ``tables/<name>.md`` shows: noise as "value ± std", hidden columns left out."""
    if name == "sensitivity":
        df = df.drop(columns=[c for c in HIDDEN_COLUMNS if c in df.columns])
        return with_noise_markdown(
            df,
            {"quality": "quality_std", "quality_full": "quality_full_std", "degradation": "degradation_std"},
        )
    if name == "sensitivity_matrix" and "collapsed" in df.columns:
        return sensitivity_pivot_markdown(df)
    if name == "sensitivity_summary":
        return with_noise_markdown(
            df,
            {
                "mean_degradation_inner": "std_inner",
                "mean_degradation_outer": "std_outer",
                "difference": "std_difference",
            },
        )
    if name == "comparison":
        return with_noise_markdown(
            df,
            {"variant_value": "variant_std", "baseline_value": "baseline_std", "advantage": "difference_std"},
        )
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
    numeric = [
        "params",
        "macs_physical",
        "macs_output",
        "latency_ms",
        "latency_ort_ms",
        *QUALITY_COLUMNS,
        *[f"{m}_std" for m in QUALITY_COLUMNS],
        "diversity",
    ]
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
