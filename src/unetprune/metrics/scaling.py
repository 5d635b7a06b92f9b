"""How the noise of a quality number scales with the number of evaluation images.

The ``noise`` block of an evaluation (:mod:`unetprune.metrics.noise`) measures the test-set
noise ``std_boot`` of every metric on the ``n`` images that were scored.  How many images would
resolve a difference that is within that noise depends on how the noise shrinks with more
images, which is measured here rather than assumed (FID carries a bias that also falls with
``n``, so its noise need not shrink like ``1/sqrt(n)``)::

    "noise": {..., "scaling": {"fid": {"sizes": [8, 16, 32], "std": [s8, s16, s32], "exponent": a}, ...}}

* ``sizes`` = resample sizes ``m`` (:data:`SCALING_FRACTIONS` of the ``n`` items, at least
  :data:`MIN_SIZE`, the largest = ``n``); ``std`` = the standard deviation (ddof 1) of the
  metric over bootstrap resamples of ``m`` items drawn with replacement from the ``n`` scored
  ones (an m-out-of-n bootstrap: the noise of the metric on ``m`` images of this test
  distribution); the ``n`` entry is the noise block's own ``std_boot``.
* ``exponent`` ``a`` = the least-squares slope of ``-log std`` against ``log m``: the noise at
  ``m`` images is ``std(n) · (n / m)^a`` (``a`` = 0.5 for a mean of independent values).  None
  when fewer than two sizes have a positive std.

:func:`images_for_noise` inverts that law: the number of images at which the noise falls to a
target.  Everything here is a pure function of its inputs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

#: resample sizes, as fractions of the scored items (the largest is the full set)
SCALING_FRACTIONS = (0.25, 0.5, 1.0)
#: the smallest resample size measured (FID/KID need at least 2 items)
MIN_SIZE = 4


def scaling_sizes(n: int, fractions: Sequence[float] = SCALING_FRACTIONS) -> list[int]:
    """The distinct resample sizes of ``n`` items (ascending, each in [min(MIN_SIZE, n), n])."""
    if n < 1:
        raise ValueError(f"cannot resample {n} items")
    lo = min(MIN_SIZE, n)
    return sorted({min(n, max(lo, int(round(float(f) * n)))) for f in fractions})


def resample_counts_of_size(n: int, m: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n) int64: how often each of ``n`` items occurs in each of ``n_boot`` resamples of
    ``m`` draws with replacement (each row sums to ``m``); a pure function of its arguments."""
    if n < 1 or m < 1:
        raise ValueError(f"cannot draw {m} of {n} items")
    if n_boot <= 0:
        return np.zeros((0, n), dtype=np.int64)
    idx = np.random.default_rng([int(seed), int(n), int(m)]).integers(0, n, size=(int(n_boot), int(m)))
    counts = np.zeros((int(n_boot), int(n)), dtype=np.int64)
    np.add.at(counts, (np.arange(int(n_boot))[:, None], idx), 1)
    return counts


def fit_exponent(sizes: Sequence[float], stds: Sequence[float | None]) -> float | None:
    """``a`` of ``std ∝ m^-a`` by least squares on the log-log points with a positive finite std
    (None for fewer than two such points)."""
    pts = [
        (math.log(float(m)), math.log(float(s)))
        for m, s in zip(sizes, stds)
        if s is not None and math.isfinite(float(s)) and float(s) > 0 and float(m) > 0
    ]
    if len(pts) < 2 or len({x for x, _ in pts}) < 2:
        return None
    x, y = np.array([p[0] for p in pts]), np.array([p[1] for p in pts])
    slope = float(np.polyfit(x, y, 1)[0])
    return -slope


def scaling_entry(sizes: Sequence[int], stds: Sequence[float | None]) -> dict:
    """One metric's scaling record ``{"sizes", "std", "exponent"}``."""
    return {
        "sizes": [int(m) for m in sizes],
        "std": [None if s is None or not math.isfinite(float(s)) else float(s) for s in stds],
        "exponent": fit_exponent(sizes, stds),
    }


def measure_scaling(
    n: int,
    n_boot: int,
    seed: int,
    replicate_fn,
    full_replicates: Mapping[str, np.ndarray],
    fractions: Sequence[float] = SCALING_FRACTIONS,
) -> dict[str, dict]:
    """The scaling records of the metrics of ``full_replicates`` (their bootstrap replicates at
    ``n`` items): ``replicate_fn(counts)`` returns ``{metric: replicates}`` for resamples of the
    given multiplicities (rows summing to the resample size)."""
    if n_boot < 2 or not full_replicates:
        return {}
    sizes = scaling_sizes(n, fractions)
    stds: dict[str, list] = {k: [] for k in full_replicates}
    for m in sizes:
        reps = full_replicates if m == n else replicate_fn(resample_counts_of_size(n, m, n_boot, seed))
        for k in stds:
            r = reps.get(k)
            r = None if r is None else np.asarray(r, dtype=np.float64)
            r = None if r is None else r[np.isfinite(r)]
            stds[k].append(float(r.std(ddof=1)) if r is not None and len(r) >= 2 else None)
    return {k: scaling_entry(sizes, s) for k, s in stds.items()}


def images_for_noise(std: float, n: int, exponent: float | None, target: float) -> int | None:
    """The number of images at which a noise of ``std`` at ``n`` images falls to ``target``
    under ``std(m) = std · (n / m)^exponent`` (None when the law is unknown or does not shrink)."""
    try:
        std, target, n = float(std), float(target), int(n)
    except (TypeError, ValueError):
        return None
    if exponent is None or not math.isfinite(float(exponent)) or float(exponent) <= 0:
        return None
    if not (math.isfinite(std) and math.isfinite(target)) or std <= 0 or target <= 0 or n < 1:
        return None
    if std <= target:
        return n
    return int(math.ceil(n * (std / target) ** (1.0 / float(exponent))))
