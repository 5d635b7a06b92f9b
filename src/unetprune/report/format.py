"""Formatting of the report's tables: readable numbers, "value ± std" cells and metric labels."""

from __future__ import annotations

import math

import pandas as pd

from .verdicts import METRICS, NOISE_COLUMNS, QUALITY_COLUMNS, _finite


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
    "latency_ort_ms": lambda x: _fmt_float(x, 3),
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
    drop = [
        c
        for c in out.columns
        if c in NOISE_COLUMNS
        or c in ("noise_seeds", "noise_bootstrap")
        or c in pairs.values()
        or c.endswith(("_ci95_lo", "_ci95_hi"))
    ]
    return out.drop(columns=drop)


def metric_label(metric: str, backend: str | None = None) -> str:
    """``FID (`standin` backend)``: a distribution metric always named with its backend."""
    label = METRICS[metric][0]
    return f"{label} (`{backend}` backend)" if metric in ("fid", "kid") and backend else label


def sensitivity_pivot_markdown(matrix: pd.DataFrame) -> pd.DataFrame:
    """The matrix as report.md shows it: "value ± std" per cell ("± n/a" where the noise was not
    measured), "(collapsed)" after a collapsed point."""
    ratios = [c for c in matrix.columns if c.startswith("r=") and not c.endswith(" std")]
    out = matrix[["layer", "inner"]].copy()
    for c in [*ratios, "unpruned"]:
        marks = [
            (c[2:] in [x.strip() for x in str(col).split(",")]) if c != "unpruned" else False
            for col in matrix["collapsed"]
        ]
        out[c] = [
            fmt_noisy(v, s) + (" (collapsed)" if m else "")
            for v, s, m in zip(matrix[c], matrix[f"{c} std"], marks)
        ]
    return out
