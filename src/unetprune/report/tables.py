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
  after fine-tuning when there is one, on ``report.quality_metric``.

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


def eval_numbers(result: dict) -> dict:
    """The numbers of one evaluation JSON that the tables show (NaN where absent)."""
    c, seg, kid = result["complexity"], result.get("segmentation") or {}, result.get("kid") or {}
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
                }
            )
    df = pd.DataFrame(rows, columns=[*SENSITIVITY_COLUMNS, "full_source"])
    backends = sorted(set(df["fid_backend"]))
    if len(backends) > 1:
        raise ReportError(
            f"refusing to put FID values of different backends in the sensitivity table "
            f"({', '.join(backends)}); rerun the sweep with one evaluate.fid_backend"
        )
    df.attrs.update(metric=metric, better=better(metric), inner_layers=sorted(inner, key=order.get))
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
    """Per ratio: mean degradation of the inner layers vs the outer layers (positive = worse)."""
    rows = []
    for r, g in df.groupby("ratio", sort=True):
        gi, go = g[g.inner], g[~g.inner]
        mi = float(gi.degradation.mean()) if len(gi) else float("nan")
        mo = float(go.degradation.mean()) if len(go) else float("nan")
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
                "inner_less_sensitive": bool(mi < mo) if len(gi) and len(go) else None,
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
    orig = eval_numbers(evals[(ORIGINAL, ORIGINAL)])
    rows = []
    for v, s in pipeline.models(cfg):
        n = eval_numbers(evals[(v, s)])
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
                ref_n = eval_numbers(evals[(ref, s)])
                meta["budget_gap"] = (n[match] - ref_n[match]) / ref_n[match]
        rows.append({"variant": v, "stage": s, **meta, **n, "params_fraction": n["params"] / orig["params"]})
    df = pd.DataFrame(rows, columns=MAIN_COLUMNS)
    df.attrs.update(metric=_quality_metric(cfg), fid_backend=orig["fid_backend"])
    return df


def comparison_table(cfg: dict, main: pd.DataFrame) -> pd.DataFrame:
    """Each primary variant against each matched baseline at the final stage, on the quality metric."""
    metric = _quality_metric(cfg)
    stage = pipeline.final_stage(cfg)
    idx = main.set_index(["variant", "stage"])
    if idx[metric].isna().all():
        raise ReportError(
            f"report.quality_metric is '{metric}' but no evaluation recorded it "
            f"(e.g. evaluate.segmentation is 'none'); choose fid, l1, psnr or ssim"
        )
    match = cfg["baselines"]["match"]
    rows = []
    for name in pipeline.primary_variants(cfg):
        p = idx.loc[(name, stage)]
        for b, a in pipeline.baseline_variants(cfg).items():
            if a["reference"] != name:
                continue
            q = idx.loc[(b, stage)]
            adv = degradation(metric, float(q[metric]), float(p[metric]))  # >0: primary better
            winner = name if adv > 0 else b if adv < 0 else "tie"
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
                    "winner": winner,
                    "budget_metric": match,
                    "variant_budget": int(p[match]),
                    "baseline_budget": int(q[match]),
                    "budget_gap": float(q["budget_gap"]),
                }
            )
    out = pd.DataFrame(rows)
    out.attrs.update(metric=metric, stage=stage)
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
        md = df.drop(columns=["full_source"]) if name == "sensitivity" else None
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
    numeric = ["params", "macs_physical", "macs_output", "latency_ms", *QUALITY_COLUMNS]
    out = {}
    for row in jsonable_table(main).to_dict("records"):
        key = ORIGINAL if row["variant"] == ORIGINAL else f"{row['variant']}/{row['stage']}"
        out[key] = {k: row[k] for k in numeric if row.get(k) is not None}
    return out


def jsonable_table(df: pd.DataFrame) -> pd.DataFrame:
    """NaN → None and numpy scalars → Python (for JSON / MLflow tables)."""
    out = df.astype(object).where(pd.notna(df), None)
    return out.map(lambda x: x.item() if isinstance(x, np.generic) else x)
