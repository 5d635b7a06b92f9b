"""Noise levels of quality numbers: the statistics helpers of metrics/noise.py and the
Evaluator's ``noise`` block (seed repeats, bootstrap over test images) and ``by_mode`` results."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from unetprune.config import load_config
from unetprune.evaluate import Evaluator
from unetprune.metrics import fid as F
from unetprune.metrics import noise as N
from unetprune.metrics.segmentation import summarize
from unetprune.families.pix2pix.unet import UNetSpec, build_generator

NOISE_KEYS = ["mean", "std_seed", "std_boot", "std", "ci95"]


# --------------------------------------------------------------------------------------
# pure helpers
# --------------------------------------------------------------------------------------


def test_resample_counts_deterministic_and_complete():
    a, b = N.resample_counts(10, 50, seed=3), N.resample_counts(10, 50, seed=3)
    assert a.shape == (50, 10) and a.dtype == np.int64
    assert np.array_equal(a, b)  # a pure function of (n, B, seed)
    assert not np.array_equal(a, N.resample_counts(10, 50, seed=4))
    assert (a.sum(1) == 10).all() and (a >= 0).all()
    assert N.resample_counts(10, 0, seed=3).shape == (0, 10)
    with pytest.raises(ValueError, match="cannot resample 0 items"):
        N.resample_counts(0, 5, 0)


def test_bootstrap_std_of_a_known_sample():
    # sample std (ddof 1) of [1, 2, 3, 4] = sqrt(5/3)
    assert N.bootstrap_std([1.0, 2.0, 3.0, 4.0]) == pytest.approx(math.sqrt(5 / 3), abs=1e-15)
    assert N.bootstrap_std([2.0]) is None and N.sample_std([]) is None
    # the bootstrap std of a mean is the plug-in standard error s_pop / sqrt(n)
    x = np.arange(20, dtype=np.float64)  # population std sqrt(399/12)
    reps = N.mean_replicates(x, N.resample_counts(20, 20000, seed=0))
    assert N.bootstrap_std(reps) == pytest.approx(math.sqrt(399 / 12) / math.sqrt(20), rel=0.03)
    assert N.mean_replicates(x, np.ones((1, 20), dtype=np.int64))[0] == pytest.approx(9.5, abs=1e-12)


def test_summarize_noise_combines_components_and_ci_contains_mean():
    s = N.summarize_noise([1.0, 2.0, 3.0], [0.0, 1.0, 2.0, 3.0], stochastic=True)
    assert list(s) == NOISE_KEYS
    assert s["mean"] == 2.0 and s["std_seed"] == pytest.approx(1.0, abs=1e-15)
    assert s["std_boot"] == pytest.approx(math.sqrt(5 / 3), abs=1e-15)
    assert s["std"] == pytest.approx(math.sqrt(1.0 + 5 / 3), abs=1e-15)
    lo, hi = s["ci95"]
    assert lo < s["mean"] < hi and hi - s["mean"] == pytest.approx(N.Z95 * s["std"], abs=1e-12)
    det = N.summarize_noise([5.0], [4.0, 6.0], stochastic=False)  # deterministic generation
    assert det["std_seed"] == 0.0 and det["std"] == det["std_boot"] == pytest.approx(
        math.sqrt(2.0), abs=1e-15
    )
    one = N.summarize_noise([5.0], [4.0, 6.0], stochastic=True)  # stochastic, not repeated
    assert one["std_seed"] is None and one["std"] == one["std_boot"]
    none = N.summarize_noise([5.0, 6.0], None, stochastic=True)  # no bootstrap: no std
    assert none["std_boot"] is None and none["std"] is None and none["ci95"] is None


def test_fid_and_kid_replicates_equal_recomputation_on_resampled_features():
    rng = np.random.default_rng(0)
    x = rng.random((12, 64)).astype(np.float32)
    y = (rng.random((12, 64)) * 1.2 + 0.1).astype(np.float32)
    counts = N.resample_counts(12, 4, seed=1)
    fid, kid = N.fid_replicates(x, y, counts), N.kid_replicates(x, y, counts)
    for b in range(4):
        idx = np.repeat(np.arange(12), counts[b])
        ref = F.fid_from_stats(F.FeatureStats.from_features(x[idx]), F.FeatureStats.from_features(y[idx]))
        assert fid[b] == pytest.approx(ref, rel=1e-9)
        assert kid[b] == pytest.approx(F.kid_from_features(x[idx], y[idx])["mean"], rel=1e-4)
    ident = np.ones((1, 12), dtype=np.int64)
    full = F.fid_from_stats(F.FeatureStats.from_features(x), F.FeatureStats.from_features(y))
    assert N.fid_replicates(x, y, ident)[0] == pytest.approx(full, rel=1e-9)
    with pytest.raises(ValueError, match="paired bootstrap"):
        N.fid_replicates(x, y[:5], counts)


def test_miou_replicates_equal_summarize():
    rng = np.random.default_rng(1)
    confs = rng.integers(0, 20, size=(6, 4, 4))
    confs[:, 3] = 0  # class 3 never in the target ...
    confs[:, :, 3] = 0  # ... nor predicted: no IoU, left out of the mean
    counts = np.vstack([np.ones(6, dtype=np.int64), N.resample_counts(6, 3, seed=0)])
    reps = N.miou_replicates(confs, counts)
    for b in range(len(counts)):
        assert reps[b] == pytest.approx(
            summarize(np.tensordot(counts[b], confs, axes=(0, 0)))["miou"], abs=1e-12
        )


def test_generation_is_stochastic_and_scalar_metrics():
    spec = UNetSpec.reference(num_downs=5, ngf=8)
    assert not N.generation_is_stochastic(build_generator(spec, seed=0), "train_bn")  # no dropout level
    spec.dropout_levels = [3, 4]
    g = build_generator(spec, seed=0)
    assert N.generation_is_stochastic(g, "train_bn") and not N.generation_is_stochastic(g, "eval")
    r = {
        "fid": {"value": 2.5},
        "kid": None,
        "segmentation": {"miou": 0.5},
        "l1": 0.1,
        "psnr": float("nan"),
        "ssim": 0.3,
        "lse": {"lse_d": 7.0, "lse_c": 2.0},
    }
    assert N.scalar_metrics(r) == {
        "fid": 2.5,
        "miou": 0.5,
        "l1": 0.1,
        "ssim": 0.3,
        "lse_d": 7.0,
        "lse_c": 2.0,
    }


def test_clip_replicates_resample_clips():
    lse = {"lse_d": 7.5, "lse_c": 2.0, "clips": [{"lse_d": 7.0, "lse_c": 1.0}, {"lse_d": 8.0, "lse_c": 3.0}]}
    reps = N.clip_replicates(lse, 300, seed=0)
    counts = N.resample_counts(2, 300, 0)
    assert np.allclose(reps["lse_d"], counts @ np.array([7.0, 8.0]) / 2)
    assert set(np.unique(reps["lse_c"])) <= {1.0, 2.0, 3.0}
    assert N.clip_replicates({"lse_d": 7.0}, 300, 0) == {} and N.clip_replicates(lse, 0, 0) == {}
    block = N.noise_block([0], 300, [{"lse": lse}], reps, stochastic=False)
    assert set(block["metrics"]) == {"lse_d", "lse_c"}
    assert block["metrics"]["lse_d"]["std_boot"] == pytest.approx(N.bootstrap_std(reps["lse_d"]))


# --------------------------------------------------------------------------------------
# the Evaluator's noise block and by_mode
# --------------------------------------------------------------------------------------


def _cfg(root, **evaluate):
    return load_config(
        None,
        {
            "data": {"root": str(root), "crop_size": 32, "load_size": 32},
            "demo": {"image_size": 32},
            "model": {"pix2pix": {"num_downs": 5, "ngf": 8}},
            "evaluate": {"fid_backend": "standin", "bootstrap": 50, **evaluate},
        },
    )


def _dropout_gen(seed=0):
    spec = UNetSpec.reference(num_downs=5, ngf=8)
    spec.dropout_levels = [3, 4]
    return build_generator(spec, seed=seed)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.getbasetemp() / "fid-cache"


def test_evaluator_noise_block(tiny_demo, cache):
    ev = Evaluator(_cfg(tiny_demo, extra_modes=["eval"]), "test", cache_dir=cache, latency=False)
    g = _dropout_gen()
    r = ev.score(g)
    noise = r["noise"]
    assert list(noise) == ["seeds", "bootstrap", "metrics", "scaling"]  # scaling: tests/test_power.py
    assert noise["seeds"] == [0, 1, 2] and noise["bootstrap"] == 50
    assert list(noise["metrics"]) == ["fid", "kid", "miou", "l1", "psnr", "ssim"]
    for name, m in noise["metrics"].items():
        assert list(m) == NOISE_KEYS
        assert m["std_seed"] >= 0 and m["std_boot"] > 0, name
        assert m["std_seed"] > 0 or name in ("miou", "kid"), (
            name
        )  # (the untrained model's relabelled maps agree)
        assert m["std"] == pytest.approx(math.hypot(m["std_seed"], m["std_boot"]), rel=1e-12)
        assert m["ci95"][0] < m["mean"] < m["ci95"][1]
    # the top-level numbers are the first seed's: the same as without repeats
    single = ev.score(g, noise_seeds=1, bootstrap=0)
    assert single["fid"]["value"] == r["fid"]["value"] and single["l1"] == r["l1"]
    assert single["noise"]["seeds"] == [0] and single["noise"]["metrics"]["l1"]["std_seed"] is None
    assert single["noise"]["metrics"]["l1"]["std"] is None
    # the mean is over the seed runs 0, 1, 2 (dropout masks differ), the first being the reported one
    runs = [r["l1"]]
    for seed in (1, 2):
        with ev._generation("train_bn", seed):
            runs.append(ev._rescore(ev.generate(g), g)["l1"])
    assert len(set(runs)) == 3
    assert noise["metrics"]["l1"]["mean"] == pytest.approx(np.mean(runs), rel=1e-12)
    assert noise["metrics"]["l1"]["std_seed"] == pytest.approx(np.std(runs, ddof=1), rel=1e-9)
    # repeatable: the same call gives the same noise block
    assert ev.score(g)["noise"] == noise
    # by_mode: the same metric keys in eval mode, deterministic there (one seed, std_seed 0)
    sub = r["by_mode"]["eval"]
    assert list(sub) == [
        "mode",
        "seed",
        "fid",
        "kid",
        "segmentation",
        "l1",
        "psnr",
        "ssim",
        "paired_definitions",
        "diversity",
        "noise",
    ]
    assert sub["mode"] == "eval" and sub["noise"]["seeds"] == [0]
    assert all(m["std_seed"] == 0.0 for m in sub["noise"]["metrics"].values())
    ev_eval = Evaluator(_cfg(tiny_demo, mode="eval"), "test", cache_dir=cache, latency=False)
    direct = ev_eval.score(g, noise_seeds=1, bootstrap=0)
    assert sub["fid"]["value"] == direct["fid"]["value"] and sub["l1"] == direct["l1"]
    assert sub["segmentation"]["miou"] == direct["segmentation"]["miou"]
    assert r["mode"] == "train_bn" and "by_mode" not in direct
    assert {"noise", "by_mode"} <= set(r["timing_s"])
    json.dumps(r, allow_nan=False)


def test_bootstrap_replicates_match_metrics_on_resampled_images(tiny_demo, cache):
    """The FID/KID/mIoU/L1 replicates the plug-ins give equal the metrics recomputed on the
    resampled images (paired: fake and real of one index together)."""
    ev = Evaluator(_cfg(tiny_demo), "test", cache_dir=cache, latency=False)
    g = build_generator(UNetSpec.reference(num_downs=5, ngf=8), seed=1)
    fakes = ev.generate(g)
    res = ev._rescore(fakes, g)
    counts = N.resample_counts(len(fakes), 3, seed=0)
    reps = {}
    for plugin in ev.metrics.values():
        reps.update(plugin.bootstrap(fakes, counts))
    assert set(reps) == {"fid", "kid", "miou", "l1", "psnr", "ssim"}
    fid = ev.metrics["fid"]
    f_fake, f_real = fid.features(fakes), fid.real.features
    for b in range(3):
        idx = np.repeat(np.arange(len(fakes)), counts[b])
        assert reps["fid"][b] == pytest.approx(
            F.fid_from_stats(
                F.FeatureStats.from_features(f_fake[idx]), F.FeatureStats.from_features(f_real[idx])
            ),
            rel=1e-9,
        )
        assert reps["l1"][b] == pytest.approx(
            float((fakes[idx].double() - ev.eval_set.targets[idx].double()).abs().flatten(1).mean(1).mean())
            / 127.5,
            rel=1e-12,
        )
        from unetprune.metrics.segmentation import demo_miou

        assert reps["miou"][b] == pytest.approx(
            demo_miou(fakes[idx], ev.eval_set.inputs[idx], 8)["miou"], abs=1e-12
        )
    ident = np.ones((1, len(fakes)), dtype=np.int64)
    for plugin in ev.metrics.values():
        for k, v in plugin.bootstrap(fakes, ident).items():
            ref = N.scalar_metrics(res)[k]
            assert v[0] == pytest.approx(ref, rel=1e-4 if k == "kid" else 1e-9), k


def test_feature_bootstrap_skipped_on_large_splits(tiny_demo, cache, monkeypatch):
    """FID/KID replicates cost O(n^3): above FEATURE_BOOTSTRAP_MAX images they are not computed
    (std_boot and std null), the cheap per-image metrics still are."""
    monkeypatch.setattr(N, "FEATURE_BOOTSTRAP_MAX", 3)
    ev = Evaluator(_cfg(tiny_demo), "test", cache_dir=cache, latency=False)
    m = ev.score(build_generator(UNetSpec.reference(num_downs=5, ngf=8), seed=1))["noise"]["metrics"]
    assert m["fid"]["std_boot"] is None and m["fid"]["std"] is None and m["kid"]["ci95"] is None
    assert m["fid"]["std_seed"] == 0.0 and m["l1"]["std_boot"] > 0
