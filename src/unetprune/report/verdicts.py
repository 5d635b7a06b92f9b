"""Verdict statistics of the report: which direction of each metric is better, the collapse
check, the noise of a difference and the outcomes of the two findings.

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
the outcome is ``not resolved`` (at this noise level); without any noise record the point
values decide and the report says the noise level is unknown.
"""

from __future__ import annotations

import math

import pandas as pd

#: metric -> (label, which direction is better)
METRICS: dict[str, tuple[str, str]] = {
    "fid": ("FID", "lower"),
    "kid": ("KID", "lower"),
    "miou": ("mIoU", "higher"),
    "l1": ("L1", "lower"),
    "psnr": ("PSNR (dB)", "higher"),
    "ssim": ("SSIM", "higher"),
    "lse_d": ("LSE-D", "lower"),  # Wav2Lip: lip-sync distance (syncnet_python protocol)
    "lse_c": ("LSE-C", "higher"),  # Wav2Lip: lip-sync confidence
}
QUALITY_COLUMNS = list(METRICS)
#: metrics of a family's plug-in that verdict checks (the sanity gate) compare but the tables do
#: not show as columns: metric -> (label, which direction is better)
EXTRA_METRICS: dict[str, tuple[str, str]] = {
    "openness": ("mouth-openness r", "higher"),  # Wav2Lip demo: families/wav2lip/openness.py
}
#: the noise of every quality column: standard deviation and 95% interval (NaN: not measured)
NOISE_SUFFIXES = ("std", "ci95_lo", "ci95_hi")
NOISE_COLUMNS = [f"{m}_{x}" for m in QUALITY_COLUMNS for x in NOISE_SUFFIXES]
#: a difference counts only beyond this many combined standard deviations (docs/method.md#verdicts)
SIGNIFICANCE_Z = 2.0
#: the outcome of a comparison whose difference is within that noise
NOT_RESOLVED = "not resolved"

#: the default collapse threshold (schema: evaluate.collapse_threshold)
COLLAPSE_THRESHOLD = 0.1
#: per-ratio outcomes of the sensitivity pattern
SUPPORT, AGAINST, NO_EFFECT = "support", "against", "no effect"


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


def better(metric: str) -> str:
    return (METRICS.get(metric) or EXTRA_METRICS[metric])[1]


def degradation(metric: str, value: float, reference: float) -> float:
    """How much worse ``value`` is than ``reference`` (positive = worse) on ``metric``."""
    return value - reference if better(metric) == "lower" else reference - value


def collapse_threshold(cfg: dict) -> float:
    return float((cfg.get("evaluate") or {}).get("collapse_threshold", COLLAPSE_THRESHOLD))


def pattern_finding(
    inner: float,
    outer: float,
    std_inner: float | None = None,
    std_outer: float | None = None,
    std_difference: float | None = None,
    z: float = SIGNIFICANCE_Z,
) -> str | None:
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


def favours(
    metric: str,
    variant_value: float,
    baseline_value: float,
    variant: str,
    baseline: str,
    variant_std: float | None = None,
    baseline_std: float | None = None,
    z: float = SIGNIFICANCE_Z,
) -> str | None:
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


def _mean_std(stds: pd.Series) -> float:
    """The standard deviation of the mean of independent values with these stds (NaN if any unknown)."""
    vals = [float(x) if _finite(x) else float("nan") for x in stds]
    if not vals or not all(math.isfinite(v) for v in vals):
        return float("nan")
    return math.sqrt(sum(v * v for v in vals)) / len(vals)


def group_outcome(
    metric: str,
    g: pd.DataFrame,
    values: pd.Series,
    full: pd.Series,
    stds: pd.Series,
    full_stds: pd.Series,
    z: float = SIGNIFICANCE_Z,
) -> dict:
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
    return {
        "inner": mi,
        "outer": mo,
        "std_inner": std_i,
        "std_outer": std_o,
        "std_difference": std_d,
        "point": point,
        "finding": finding,
    }


# ------------------------------------------------------------------------------------------
# statistical power and per-layer-position tests
# ------------------------------------------------------------------------------------------


def resolvable_difference(std: float | None, z: float = SIGNIFICANCE_Z) -> float:
    """The smallest difference resolvable at a noise of ``std``: ``z · std`` (NaN: unknown)."""
    return z * float(std) if _finite(std) else float("nan")


def power(
    difference: float | None,
    std: float | None,
    n: int | None,
    exponent: float | None,
    z: float = SIGNIFICANCE_Z,
) -> dict:
    """The power statement of one difference measured with noise ``std`` on ``n`` images:
    ``resolvable`` = :func:`resolvable_difference`; ``n_needed`` = the number of images at which
    ``|difference|`` would exceed ``z`` standard deviations, with the noise scaling as
    ``std · (n / m)^exponent`` (:mod:`unetprune.metrics.scaling`; None when the difference is
    zero or the scaling is unknown); ``resolved`` = :func:`beyond_noise`."""
    from ..metrics.scaling import images_for_noise

    res = resolvable_difference(std, z)
    needed = None
    if _finite(difference) and float(difference) != 0.0 and _finite(std) and n:
        needed = images_for_noise(float(std), int(n), exponent, abs(float(difference)) / z)
    return {
        "resolvable": res,
        "n_needed": needed,
        "resolved": beyond_noise(difference, std, z) if _finite(difference) else None,
        "n": n,
        "exponent": exponent,
    }


def position_outcome(
    degradation_layer: float,
    std_layer: float | None,
    degradation_inner: float,
    std_inner: float | None,
    std_difference: float | None,
    z: float = SIGNIFICANCE_Z,
) -> str | None:
    """Whether one outer layer position is more sensitive than the inner layers (their mean):
    :func:`pattern_finding` with that layer alone as the outer group."""
    return pattern_finding(degradation_inner, degradation_layer, std_inner, std_layer, std_difference, z)


def position_table(sens: pd.DataFrame, z: float = SIGNIFICANCE_Z) -> pd.DataFrame:
    """Per ratio and outer layer position: its degradation against the inner layers' mean one.

    The unpruned value is common to both, so it cancels in their difference, whose std is
    sqrt(std_layer² + std_inner_mean²) (std of the pruned scores only); each degradation
    itself carries the unpruned value's std.  ``finding`` as :func:`position_outcome`."""
    rows = []
    for r, g in sens.groupby("ratio", sort=True):
        inner = g[g.inner.astype(bool)]
        if not len(inner):
            continue
        qs = g["quality_std"] if "quality_std" in g.columns else pd.Series(float("nan"), index=g.index)
        fs = (
            g["quality_full_std"]
            if "quality_full_std" in g.columns
            else pd.Series(float("nan"), index=g.index)
        )
        full_std = float(fs.iloc[0]) if len(fs) and _finite(fs.iloc[0]) else float("nan")
        mi = float(inner.degradation.mean())
        si_mean = _mean_std(qs[inner.index])
        std_i = combined_std(si_mean, full_std)
        for idx, row in g[~g.inner.astype(bool)].iterrows():
            s_layer = float(qs[idx]) if _finite(qs[idx]) else float("nan")
            std_l = combined_std(s_layer, full_std)
            std_d = combined_std(s_layer, si_mean)
            rows.append(
                {
                    "ratio": float(r),
                    "layer": row.layer,
                    "position": int(row.position),
                    "degradation": float(row.degradation),
                    "std": std_l,
                    "inner_mean": mi,
                    "std_inner": std_i,
                    "difference": float(row.degradation) - mi,
                    "std_difference": std_d,
                    "finding": position_outcome(float(row.degradation), std_l, mi, std_i, std_d, z),
                }
            )
    cols = [
        "ratio",
        "layer",
        "position",
        "degradation",
        "std",
        "inner_mean",
        "std_inner",
        "difference",
        "std_difference",
        "finding",
    ]
    out = pd.DataFrame(rows, columns=cols)
    out.attrs.update(sens.attrs)
    out.attrs["z"] = z
    return out


def unresolved_parts(
    inner: float,
    outer: float,
    std_inner: float | None,
    std_outer: float | None,
    std_difference: float | None,
    z: float = SIGNIFICANCE_Z,
) -> dict[str, bool | None]:
    """Which parts of a :func:`pattern_finding` test are beyond the noise: ``{"inner", "outer",
    "difference"}`` → True (beyond ``z`` std) / False (within) / None (noise unknown)."""
    return {
        "inner": beyond_noise(inner, std_inner, z),
        "outer": beyond_noise(outer, std_outer, z),
        "difference": beyond_noise(outer - inner, std_difference, z),
    }


# ------------------------------------------------------------------------------------------
# the sanity gate
# ------------------------------------------------------------------------------------------


def sanity_gate(original_eval: dict, metrics, z: float = SIGNIFICANCE_Z) -> dict | None:
    """The sanity gate (:mod:`unetprune.sanity`): the outcome from the original's evaluation (None: it has no ``sanity`` block).

    ``{"passed": bool | None, "metrics": [...], "checks": [{"trivial", "metric", "original",
    "trivial_value", "advantage", "std", "beats"}], "failed": ["<trivial> on <metric>", ...],
    "not_compared": [{"trivial", "metric", "why"}]}``; ``advantage`` > 0 = the original is
    better; ``passed`` None when no metric could be checked.  A trivial generator's
    ``not_compared`` metrics (:func:`unetprune.sanity.score_trivial`) are left out of its checks."""
    from ..metrics.noise import scalar_metrics

    block = original_eval.get("sanity")
    if not isinstance(block, dict) or not block.get("generators"):
        return None
    orig = scalar_metrics(original_eval)
    orig_std = {
        m: e.get("std") for m, e in (((original_eval.get("noise") or {}).get("metrics")) or {}).items()
    }
    checks, skipped = [], []
    for name, t in block["generators"].items():
        exempt = t.get("not_compared") or {}
        for m in metrics:
            if (
                (m not in METRICS and m not in EXTRA_METRICS)
                or m not in orig
                or not _finite((t.get("metrics") or {}).get(m))
            ):
                continue
            if m in exempt:
                skipped.append({"trivial": name, "metric": m, "why": str(exempt[m])})
                continue
            tv = float(t["metrics"][m])
            adv = degradation(m, tv, orig[m])
            std = combined_std(orig_std.get(m), (t.get("std") or {}).get(m))
            beats = bool(adv > z * std) if _finite(std) else bool(adv > 0)
            checks.append(
                {
                    "trivial": name,
                    "metric": m,
                    "original": orig[m],
                    "trivial_value": tv,
                    "advantage": adv,
                    "std": std if _finite(std) else None,
                    "beats": beats,
                }
            )
    failed = [f"{c['trivial']} on {c['metric']}" for c in checks if not c["beats"]]
    return {
        "passed": (not failed) if checks else None,
        "metrics": [m for m in metrics if any(c["metric"] == m for c in checks)],
        "checks": checks,
        "failed": failed,
        "not_compared": skipped,
        "z": z,
    }
