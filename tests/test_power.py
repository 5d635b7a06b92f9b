"""Statistical power of the findings: how the noise scales with the number of images (measured
by an m-out-of-n bootstrap), the smallest resolvable difference and the number of images that
would resolve an observed one, the per-layer-position inner-vs-outer test, and the sentences
that say which part of a test decided it.  Synthetic noise of known law throughout."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from unetprune import pipeline
from unetprune.config import load_config
from unetprune.layout import Layout
from unetprune.metrics.noise import mean_replicates
from unetprune.metrics.scaling import (
    fit_exponent,
    images_for_noise,
    measure_scaling,
    resample_counts_of_size,
    scaling_sizes,
)


def test_resamples_of_another_size_and_their_means():
    c = resample_counts_of_size(20, 5, 300, seed=0)
    assert c.shape == (300, 20) and (c.sum(1) == 5).all()
    assert (resample_counts_of_size(20, 5, 300, seed=0) == c).all()  # a pure function
    x = np.arange(20.0)
    reps = mean_replicates(x, c)
    manual = [float((row * x).sum() / 5) for row in c[:3]]
    assert reps[:3].tolist() == pytest.approx(manual)
    assert scaling_sizes(32) == [8, 16, 32] and scaling_sizes(6) == [4, 6] and scaling_sizes(2) == [2]


def test_measured_exponent_of_a_mean_is_one_half_and_of_a_fixed_law_exact():
    assert fit_exponent([8, 16, 32], [0.4, 0.2, 0.1]) == pytest.approx(1.0)
    assert fit_exponent([8, 32], [0.2, 0.1]) == pytest.approx(0.5)
    assert fit_exponent([8], [0.2]) is None and fit_exponent([8, 16], [0.0, None]) is None
    rng = np.random.default_rng(0)
    values = rng.normal(size=400)

    def fn(counts):
        return {"mean": mean_replicates(values, counts)}

    full = fn(resample_counts_of_size(400, 400, 2000, seed=1))
    sc = measure_scaling(400, 2000, 1, fn, full)["mean"]
    assert sc["sizes"] == [100, 200, 400]
    assert sc["exponent"] == pytest.approx(0.5, abs=0.05)
    assert sc["std"][0] == pytest.approx(1 / math.sqrt(100), rel=0.1)


def test_images_needed_follow_the_measured_law_on_synthetic_noise():
    # std 0.5 at 32 images, exponent 0.5: the noise falls to 0.25 at 128 images
    assert images_for_noise(0.5, 32, 0.5, 0.25) == 128
    assert images_for_noise(0.5, 32, 1.0, 0.25) == 64
    assert images_for_noise(0.2, 32, 0.5, 0.25) == 32  # already there
    assert images_for_noise(0.5, 32, None, 0.25) is None and images_for_noise(0.5, 32, -0.1, 0.25) is None
    # a simulated metric (mean of n draws, sd 1) with a true difference 0.3 between two models:
    # measured noise at n = 20, its law from resampling, then the predicted n checked by simulation
    from unetprune.report.verdicts import power

    rng = np.random.default_rng(3)
    n, d = 20, 0.3
    a_vals, b_vals = rng.normal(0.0, 1.0, n), rng.normal(d, 1.0, n)

    def fn(counts):
        return {"diff": mean_replicates(b_vals, counts) - mean_replicates(a_vals, counts)}

    full = fn(resample_counts_of_size(n, n, 4000, seed=4))
    sc = measure_scaling(n, 4000, 4, fn, full)["diff"]
    std = float(np.std(full["diff"], ddof=1))
    p = power(d, std, n, sc["exponent"])
    assert p["resolved"] is False and p["resolvable"] == pytest.approx(2 * std)
    need = p["n_needed"]
    assert need > n
    # at the predicted size, the simulated noise of the difference is |d| / 2 within 20%
    sims = [rng.normal(d, 1.0, need).mean() - rng.normal(0.0, 1.0, need).mean() for _ in range(3000)]
    assert float(np.std(sims)) == pytest.approx(d / 2, rel=0.2)


def test_evaluator_records_the_scaling_of_every_metric(tmp_path):
    from unetprune.data.demo import build_demo_dataset
    from unetprune.evaluate import Evaluator

    root = tmp_path / "demo"
    build_demo_dataset(root, image_size=32, n_train=2, n_val=2, n_test=16, progress=False)

    cfg = load_config(
        None,
        {
            "experiment": "pw",
            "data": {"dataset": "demo", "crop_size": 32, "load_size": 32, "root": str(root)},
            "demo": {"image_size": 32},
            "model": {"pix2pix": {"num_downs": 5, "ngf": 8, "ndf": 8}},
            "evaluate": {"fid_backend": "standin", "mode": "eval", "bootstrap": 100},
        },
    )
    from unetprune.families.pix2pix.unet import UNetSpec, build_generator

    ev = Evaluator(cfg, "test", cache_dir=tmp_path, latency=False)
    r = ev.score(build_generator(UNetSpec.reference(num_downs=5, ngf=8), seed=0))
    n = r["n_images"]
    assert n == 16
    sc = r["noise"]["scaling"]
    assert set(sc) == set(r["noise"]["metrics"])
    for name, entry in sc.items():
        assert entry["sizes"] == scaling_sizes(n), name
        # the full-size entry is the noise block's own bootstrap noise
        assert entry["std"][-1] == pytest.approx(r["noise"]["metrics"][name]["std_boot"], rel=1e-12), name
    # a mean over images: the noise shrinks with more of them
    assert sc["l1"]["std"][0] > sc["l1"]["std"][-1] and 0.2 < sc["l1"]["exponent"] < 1.0
    assert (
        "scaling"
        not in ev.score(build_generator(UNetSpec.reference(num_downs=5, ngf=8)), bootstrap=0)["noise"]
    )


# ------------------------------------------------------------------------------------------
# the report's sentences
# ------------------------------------------------------------------------------------------


def _cfg(root):
    return load_config(
        None,
        {
            "experiment": "power",
            "data": {"dataset": "folder", "root": str(root / "data"), "crop_size": 32, "load_size": 32},
            "model": {"pix2pix": {"num_downs": 5, "ngf": 16, "ndf": 8}},
            "variants": [{"strategy": "cut", "k": 1}],
            "baselines": {"strategies": ["global-uniform"]},
            "sensitivity": {"ratios": [0.9]},
            "evaluate": {"fid_backend": "standin"},
        },
    )


def _sweep(cfg, base, fid_of, std, full=(10.0, 0.1)):
    """Sensitivity JSONs whose point at ratio 0.9 has FID ``fid_of(layer)`` ± ``std``."""
    lay = Layout.from_config(cfg, base)
    lay.sensitivity_dir.mkdir(parents=True, exist_ok=True)

    def point(fid, s):
        return {"fid": fid, "fid_std": s, "fid_ci95_lo": fid - 1.96 * s, "fid_ci95_hi": fid + 1.96 * s}

    for layer in pipeline.sensitivity_layers(cfg):
        d = {
            "layer": layer,
            "ratios": [0.9],
            "metrics": [{**point(fid_of(layer), std), "diversity": 0.8}],
            "params": [100],
            "macs_physical": [10],
            "macs_output": [20],
            "widths": [8],
            "metrics_full": point(*full),
            "fid_backend": "standin",
            "n_images": 16,
        }
        lay.sensitivity_json(layer).write_text(json.dumps(d))


def test_one_outer_position_resolves_what_the_average_dilutes(tmp_path):
    from unetprune.report import sensitivity_findings, sensitivity_summary, sensitivity_table
    from unetprune.report.markdown import position_findings
    from unetprune.report.verdicts import position_table

    cfg = _cfg(tmp_path)
    # down1 degrades by +3 ± 0.3, up2 by +0.2; every other layer (inner down5/up5 too) by 0
    _sweep(cfg, tmp_path, lambda layer: {"down1": 13.0, "up2": 10.2}.get(layer, 10.0), 0.3)
    sens = sensitivity_table(cfg, tmp_path)
    s = sensitivity_summary(sens)
    assert s.finding.tolist() == ["not resolved"]  # the mean of 7 outer layers: +3.2/7 = 0.457
    attrs = {"n_images": 16, "scaling_exponent": 0.5, "scaling_sizes": [4, 8, 16]}
    s.attrs.update(attrs)
    _, lines = sensitivity_findings(s)
    std_o = math.hypot(0.3 / math.sqrt(7), 0.1)
    std_d = math.hypot(0.3 / math.sqrt(2), 0.3 / math.sqrt(7))
    outer = 3.2 / 7
    assert f"the difference outer − inner +0.457 ± {std_d:.2g} is within 2σ = {2 * std_d:.3g}" in lines[0]
    assert "Decided by: the outer layers' degradation is beyond 2σ; the difference is within 2σ." in lines[0]
    need = math.ceil(16 * (std_d / (outer / 2)) ** 2)
    assert (
        f"about {need:,} images (now 16) would resolve it (noise ∝ n^-0.50, measured by resampling 4–16 images)"
        in lines[0]
    )
    assert outer > 2 * std_o and "the outer layers' degradation +0.457" not in lines[0]  # beyond: no power

    pos = position_table(sens)
    assert pos.layer.tolist() == ["down1", "down2", "down3", "down4", "up4", "up3", "up2"]
    d1 = pos.iloc[0]
    assert d1.degradation == pytest.approx(3.0) and d1.difference == pytest.approx(3.0)
    assert d1.std_difference == pytest.approx(math.hypot(0.3, 0.3 / math.sqrt(2)))
    assert pos.finding.tolist() == ["support"] + ["no effect"] * 5 + ["not resolved"]
    verdict, plines = position_findings(pos, attrs)
    assert verdict.startswith("**Yes, per layer position**") and "down1 at 0.9" in verdict
    assert "(1 of 7 position tests not resolved)" in verdict
    assert plines[0].startswith("At ratio 0.9, against the inner layers' mean degradation +0")
    assert (
        "down1 +3 ± 0.32: support (difference +3 ± 0.37, beyond 2σ = 0.735); down2 +0 ± 0.32: no effect;"
        in plines[0]
    )
    # up2: +0.2 against 0 with a difference std of 0.367 -> (0.367 / 0.1)^2 * 16 images
    std_up2 = math.hypot(0.3, 0.3 / math.sqrt(2))
    need_up2 = math.ceil(16 * (std_up2 / (pos.iloc[-1].difference / 2)) ** 2)  # 0.2 in float: 217
    assert (
        f"up2 +0.2 ± 0.32: not resolved at this noise level (difference +0.2 ± 0.37, within 2σ = 0.735; "
        f"the difference and the outer layers' degradation are within 2σ; the difference +0.2 ± 0.37 is "
        f"within 2σ = 0.735, the smallest difference resolvable at this noise; about {need_up2:,} images"
    ) in plines[0]


def test_the_decided_part_is_named_when_the_difference_is_resolved_but_a_degradation_is_not(tmp_path):
    from unetprune.report import sensitivity_findings, sensitivity_summary, sensitivity_table

    cfg = _cfg(tmp_path)
    # inner layers improve by 0.5, outer ones degrade by 0.2: difference +0.7 beyond the noise,
    # the outer degradation +0.2 within it
    _sweep(cfg, tmp_path, lambda layer: 9.5 if layer in ("down5", "up5") else 10.2, 0.1, full=(10.0, 0.15))
    s = sensitivity_summary(sensitivity_table(cfg, tmp_path))
    assert s.finding.tolist() == ["not resolved"]
    _, lines = sensitivity_findings(s)
    assert "Decided by: the difference is beyond 2σ; the outer layers' degradation is within 2σ." in lines[0]
    # without a measured scaling the number of images is not guessed
    assert "how many images would resolve it is unknown (no measured scaling of the noise with n)" in lines[0]
