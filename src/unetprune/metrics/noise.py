"""Noise levels of quality numbers: generation-seed repeats and bootstrap over test images.

Every quality number of an evaluation (FID, KID, mIoU, L1/PSNR/SSIM, LSE-D/LSE-C) gets a
noise level in the eval JSON's ``noise`` block (built by :meth:`unetprune.evaluate.Evaluator.score`)::

    "noise": {
      "seeds": [0, 1, 2],     # generation seeds (one entry when generation is deterministic)
      "bootstrap": 200,       # bootstrap resamples over test images (0 = none)
      "metrics": {"fid": {"mean": m, "std_seed": s1, "std_boot": s2, "std": s, "ci95": [lo, hi]}, ...}
    }

* **seed noise** (``std_seed``): the generator is run again with the generation seeds
  ``seed, seed+1, ...`` (``evaluate.noise_seeds``), which changes its dropout masks; the sample
  standard deviation (ddof 1) of the metric over those runs.  Only stochastic generation is
  repeated (``train_bn`` mode with active dropout, :func:`generation_is_stochastic`): otherwise
  the images cannot change, ``seeds`` has one entry and ``std_seed`` is ``0.0``.  ``None`` means
  "stochastic but not measured" (one seed asked for).
* **test-set noise** (``std_boot``): ``evaluate.bootstrap`` resamples of the test images with
  replacement (seeded by the config's ``seed``: :func:`resample_counts`), each metric recomputed
  on each resample of the *first* seed's images; the sample standard deviation of the
  replicates.  FID and KID are recomputed from the resampled feature sets (features computed
  once; the fake and real images of an index are resampled together), mIoU from the summed
  per-image confusion matrices, L1/PSNR/SSIM and LSE from per-image / per-clip values (LSE:
  resampling clips).  ``None`` when ``bootstrap`` < 2, and for FID/KID when the split has more
  than :data:`FEATURE_BOOTSTRAP_MAX` images (a replicate costs O(n³): 200 replicates take ~3 s
  for 500 images on one CPU core, ~25 s for 1000).
* ``mean`` = the mean over the seed runs (the first seed's value when there is one run; the
  top-level numbers of the result stay those of the first seed); ``std`` =
  ``sqrt(std_seed² + std_boot²)`` (an unmeasured ``std_seed`` counts as 0, so ``std`` is then a
  lower bound: check ``std_seed``); ``None`` without bootstrap.  ``ci95`` = ``mean ± 1.96·std``
  (normal approximation).

Everything here is a pure function of its inputs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

#: the scalar quality metrics that get a noise level, in result order
NOISE_METRICS = ("fid", "kid", "miou", "l1", "psnr", "ssim", "lse_d", "lse_c", "openness")
Z95 = 1.959963984540054  # two-sided 95% quantile of the standard normal
FEATURE_BOOTSTRAP_MAX = 1000  # FID/KID are bootstrapped on splits of at most this many images


def _one_blas_thread():
    """Small matrices in a loop: one BLAS thread (several threads only spin on a shared machine;
    measured 20x slower on 2 busy cores).  A no-op without threadpoolctl."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn / scipy stacks
        from contextlib import nullcontext

        return nullcontext()
    return threadpool_limits(1)


# --------------------------------------------------------------------------------------
# what is noisy
# --------------------------------------------------------------------------------------


def generation_is_stochastic(generator, mode: str) -> bool:
    """Whether generating twice with different seeds can give different images: ``train_bn``
    mode (modules in training mode) with at least one dropout module of p > 0.  BatchNorm on
    batch statistics is deterministic for fixed batches."""
    from torch import nn

    if mode != "train_bn":
        return False
    return any(isinstance(m, nn.modules.dropout._DropoutNd) and float(m.p) > 0 for m in generator.modules())


def scalar_metrics(result: Mapping) -> dict[str, float]:
    """The scalar quality numbers of an evaluation result (keys of :data:`NOISE_METRICS` that are
    present and finite): ``fid.value``, ``kid.mean``, ``segmentation.miou``, ``l1``, ``psnr``,
    ``ssim``, ``lse.lse_d``, ``lse.lse_c``."""

    def num(x):
        return (
            float(x)
            if isinstance(x, (int, float, np.floating, np.integer)) and math.isfinite(float(x))
            else None
        )

    fid, kid = result.get("fid"), result.get("kid")
    seg, lse = result.get("segmentation"), result.get("lse")
    raw = {
        "fid": fid.get("value") if isinstance(fid, Mapping) else None,
        "kid": kid.get("mean") if isinstance(kid, Mapping) else None,
        "miou": seg.get("miou") if isinstance(seg, Mapping) else None,
        "l1": result.get("l1"),
        "psnr": result.get("psnr"),
        "ssim": result.get("ssim"),
        "lse_d": lse.get("lse_d") if isinstance(lse, Mapping) else None,
        "lse_c": lse.get("lse_c") if isinstance(lse, Mapping) else None,
        # Wav2Lip demo: the mean per-clip openness correlation (families/wav2lip/openness.py)
        "openness": (result.get("openness") or {}).get("r")
        if isinstance(result.get("openness"), Mapping)
        else None,
    }
    return {k: num(raw[k]) for k in NOISE_METRICS if num(raw[k]) is not None}


# --------------------------------------------------------------------------------------
# resampling
# --------------------------------------------------------------------------------------


def resample_counts(n: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n) int64: how often each of ``n`` items occurs in each bootstrap resample
    (``n`` draws with replacement); a pure function of ``(n, n_boot, seed)``.  Each row sums to n."""
    if n < 1:
        raise ValueError(f"cannot resample {n} items")
    if n_boot <= 0:
        return np.zeros((0, n), dtype=np.int64)
    idx = np.random.default_rng([int(seed), int(n)]).integers(0, n, size=(int(n_boot), int(n)))
    counts = np.zeros((int(n_boot), int(n)), dtype=np.int64)
    np.add.at(counts, (np.arange(int(n_boot))[:, None], idx), 1)
    return counts


def mean_replicates(values: Sequence[float] | np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Bootstrap replicates of a mean over items: ``counts @ values / counts.sum()`` per resample
    (a resample may draw fewer or more items than there are)."""
    v = np.asarray(values, dtype=np.float64)
    c = np.asarray(counts, dtype=np.float64)
    if c.shape[-1] != len(v):
        raise ValueError(f"{len(v)} values but resamples of {c.shape[-1]} items")
    return c @ v / np.maximum(c.sum(-1), 1.0)


def miou_replicates(confusions: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """mIoU of each resample from per-item confusion matrices (n, K, K): the resample's matrices
    summed, per-class IoU = TP / (TP + FP + FN), mean over classes with a defined IoU (as
    :func:`unetprune.metrics.segmentation.summarize`)."""
    h = np.tensordot(
        np.asarray(counts, dtype=np.float64), np.asarray(confusions, dtype=np.float64), axes=(1, 0)
    )
    tp = np.diagonal(h, axis1=1, axis2=2)
    union = h.sum(1) + h.sum(2) - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, tp / np.where(union > 0, union, 1), np.nan)
    valid = np.isfinite(iou)
    return np.where(
        valid.any(1), np.nansum(np.where(valid, iou, 0.0), 1) / np.maximum(valid.sum(1), 1), np.nan
    )


def _pair(fake: np.ndarray, real: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both feature sets as float64, checked to be paired (same shape)."""
    x, y = np.asarray(fake, dtype=np.float64), np.asarray(real, dtype=np.float64)
    if x.ndim != 2 or x.shape != y.shape:
        raise ValueError(f"paired bootstrap needs two feature sets of one shape, got {x.shape} and {y.shape}")
    return x, y


def fid_replicates(fake: np.ndarray, real: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """FID of each resample: rows ``i`` of the fake and real features (n, D) taken ``counts[b, i]``
    times together (the images of one test index).  Equal to
    ``fid_from_stats(FeatureStats.from_features(fake[idx]), FeatureStats.from_features(real[idx]))``
    for the resample's index list ``idx``, computed from n x n Gram matrices (the features are
    used once): ``tr sqrt(S1 S2)`` is the nuclear norm of ``F1 F2^T`` (``S = F^T F``), whose
    squared singular values are the eigenvalues of a symmetric k x k matrix (k = distinct items)."""
    x, y = _pair(fake, real)
    shift = 0.5 * (x.mean(0) + y.mean(0))  # one common shift changes no FID term; keeps the Grams small
    x, y = x - shift, y - shift
    gxx, gyy, gxy = x @ x.T, y @ y.T, x @ y.T
    out = np.empty(len(counts))
    with _one_blas_thread():
        for b, c_full in enumerate(np.asarray(counts)):
            out[b] = _fid_one(gxx, gyy, gxy, c_full)
    return out


def _fid_one(gxx: np.ndarray, gyy: np.ndarray, gxy: np.ndarray, c_full: np.ndarray) -> float:
    """FID of one resample (``c_full``: multiplicities of the n items) from the Gram matrices."""
    u = np.flatnonzero(c_full)
    c = c_full[u].astype(np.float64)
    m = c.sum()
    axx, ayy, axy = gxx[np.ix_(u, u)], gyy[np.ix_(u, u)], gxy[np.ix_(u, u)]
    sxx, syy, sxy = c @ axx @ c, c @ ayy @ c, c @ axy @ c
    mean_term = (sxx + syy - 2.0 * sxy) / m**2
    tr_x = (c @ np.diag(axx) - sxx / m) / (m - 1)
    tr_y = (c @ np.diag(ayy) - syy / m) / (m - 1)
    cxy = axy - np.outer(axy @ c, np.ones_like(c)) / m - np.outer(np.ones_like(c), c @ axy) / m + sxy / m**2
    w = np.sqrt(c)
    mat = (w[:, None] * cxy * w[None, :]) / (m - 1)
    ev = np.linalg.eigvalsh(mat @ mat.T)
    return float(mean_term + tr_x + tr_y - 2.0 * np.sqrt(np.clip(ev, 0.0, None)).sum())


def kid_replicates(
    fake: np.ndarray,
    real: np.ndarray,
    counts: np.ndarray,
    degree: int = 3,
    gamma: float | None = None,
    coef0: float = 1.0,
) -> np.ndarray:
    """KID of each resample (rows of both sets resampled together): torch-fidelity's unbiased
    MMD² with its polynomial kernel ``(x·y / D + 1)^3`` on the whole resample, from kernel
    matrices computed once.  This is what ``kid_from_features`` gives on the resampled
    features whenever the KID subset covers the whole set (n ≤ 1000: every subset is a
    permutation); for larger sets it is the full-set estimate of the same quantity."""
    x, y = _pair(fake, real)
    d = x.shape[1]
    g = 1.0 / d if gamma is None else float(gamma)
    kxx, kyy, kxy = (
        ((x @ x.T) * g + coef0) ** degree,
        ((y @ y.T) * g + coef0) ** degree,
        ((x @ y.T) * g + coef0) ** degree,
    )
    c = np.asarray(counts, dtype=np.float64)
    m = c.sum(1)

    def quad(k):
        return ((c @ k) * c).sum(1)

    off_xx = quad(kxx) - c @ np.diag(kxx)
    off_yy = quad(kyy) - c @ np.diag(kyy)
    return (off_xx + off_yy) / (m * (m - 1)) - 2.0 * quad(kxy) / (m * m)


# --------------------------------------------------------------------------------------
# summaries
# --------------------------------------------------------------------------------------


def sample_std(values: Sequence[float] | np.ndarray) -> float | None:
    """Sample standard deviation (ddof 1) of finite values; None for fewer than 2."""
    v = np.asarray([x for x in np.asarray(values, dtype=np.float64).ravel() if math.isfinite(x)])
    return float(v.std(ddof=1)) if len(v) >= 2 else None


def bootstrap_std(replicates: Sequence[float] | np.ndarray) -> float | None:
    """Standard deviation (ddof 1) of bootstrap replicates; None for fewer than 2 (no bootstrap)."""
    return sample_std(replicates)


def summarize_noise(
    seed_values: Sequence[float], replicates: Sequence[float] | np.ndarray | None, stochastic: bool
) -> dict:
    """One metric's noise entry ``{"mean", "std_seed", "std_boot", "std", "ci95"}`` (module docstring)."""
    vals = [float(v) for v in seed_values]
    if not vals:
        raise ValueError("no value to summarize")
    mean = float(np.mean(vals))
    std_seed = (sample_std(vals) if len(vals) >= 2 else None) if stochastic else 0.0
    std_boot = bootstrap_std(replicates) if replicates is not None else None
    if std_boot is None:
        std, ci = None, None
    else:
        std = math.sqrt(std_boot**2 + (std_seed or 0.0) ** 2)
        ci = [mean - Z95 * std, mean + Z95 * std]
    return {"mean": mean, "std_seed": std_seed, "std_boot": std_boot, "std": std, "ci95": ci}


def noise_block(
    seeds: Sequence[int],
    n_boot: int,
    seed_results: Sequence[Mapping],
    replicates: Mapping[str, np.ndarray],
    stochastic: bool,
) -> dict:
    """The ``noise`` block of an evaluation: ``seed_results`` = the results of the seed runs (first
    = the reported one), ``replicates`` = bootstrap replicates per metric of the first run."""
    first = scalar_metrics(seed_results[0])
    per_seed = [scalar_metrics(r) for r in seed_results]
    metrics = {}
    for name in first:
        vals = [m[name] for m in per_seed if name in m]
        metrics[name] = summarize_noise(vals, replicates.get(name) if n_boot >= 2 else None, stochastic)
    return {"seeds": [int(s) for s in seeds], "bootstrap": int(n_boot), "metrics": metrics}


def clip_replicates(lse: Mapping | None, n_boot: int, seed: int) -> dict[str, np.ndarray]:
    """LSE-D / LSE-C replicates from an ``lse`` result's per-clip values (``lse.clips``), resampling
    clips (the set values are means over clips); {} when there are no per-clip values."""
    clips = (lse or {}).get("clips") if isinstance(lse, Mapping) else None
    if not clips or n_boot < 2:
        return {}
    counts = resample_counts(len(clips), n_boot, seed)
    out = {}
    for key in ("lse_d", "lse_c"):
        vals = [c.get(key) for c in clips]
        if all(isinstance(v, (int, float)) for v in vals):
            out[key] = mean_replicates(vals, counts)
    return out


def openness_replicates(openness: Mapping | None, n_boot: int, seed: int) -> dict[str, np.ndarray]:
    """Replicates of the mean per-clip openness correlation (``openness.clips[*].r``, the Wav2Lip
    demo's lip-sync score), resampling clips; {} without per-clip values."""
    clips = (openness or {}).get("clips") if isinstance(openness, Mapping) else None
    rs = [c.get("r") for c in clips or [] if isinstance(c.get("r"), (int, float))]
    if not rs or n_boot < 2:
        return {}
    return {"openness": mean_replicates(rs, resample_counts(len(rs), n_boot, seed))}
