"""Fair global baselines: layer-normalised, per-layer capped global
threshold by default; the raw threshold only under an explicit name; exact keep-count rounding."""

from pathlib import Path

import pytest
import torch

from unetprune import pipeline
from unetprune.config import load_config
from unetprune.families.pix2pix.unet import UNetSpec, build_generator
from unetprune.pruning import DEFAULT_MAX_LAYER_RATIO, keep_by_ratio, n_keep, prunable_layers, prune
from unetprune.pruning.importance import floor_fraction
from unetprune.pruning.strategies import global_candidates, layer_removal_cap

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted([ROOT / "config" / "config.yaml", *(ROOT / "config" / "experiments").glob("*.yaml")])


# ------------------------------------------------------------------------------ rounding


def test_n_keep_twenty_at_ninety_percent_keeps_two():
    assert n_keep(20, 0.9) == 2  # int(20 * (1 - 0.9)) == int(1.9999999999999996) == 1
    assert len(keep_by_ratio(torch.arange(20, dtype=torch.float64), 0.9)) == 2
    assert n_keep(10, 0.7) == 3 and n_keep(100, 0.29) == 71


@pytest.mark.parametrize("den", [10, 100, 1000])
def test_n_keep_matches_exact_fraction_arithmetic(den):
    bad = []
    for n in range(1, 601):
        for k in range(den):
            want = max(1, (n * (den - k)) // den)  # floor(n * (1 - r)) in exact arithmetic
            got = n_keep(n, k / den)
            if got != want:
                bad.append((n, k / den, got, want))
            if den == 100:
                assert floor_fraction(n, k / den) == (n * k) // den
    assert not bad, f"{len(bad)} wrong pairs, e.g. {bad[:5]}"


def test_old_rounding_was_wrong_on_many_pairs():
    """On the pairs where float rounding makes ``int(n * (1 - r))`` wrong, the keep count is exact."""
    wrong = [
        (n, k)
        for n in range(1, 513)
        for k in range(1, 100)
        if max(1, int(n * (1 - k / 100))) != max(1, n * (100 - k) // 100)
    ]
    assert len(wrong) > 100
    assert all(n_keep(n, k / 100) == max(1, n * (100 - k) // 100) for n, k in wrong)


def test_layer_removal_cap():
    assert layer_removal_cap(20, 0.9) == 18 and layer_removal_cap(25, 0.9) == 22
    assert layer_removal_cap(3, 0.9) == 2 and layer_removal_cap(1, 0.9) == 0
    assert layer_removal_cap(64, None) == 63 and layer_removal_cap(64, 1.0) == 63
    assert all(n - layer_removal_cap(n, 0.9) >= 0.1 * n for n in range(1, 1025))


# ------------------------------------------------------------------------- fair baselines


@pytest.fixture(scope="module")
def demo():
    """The demo architecture: num_downs 6, ngf 32, 64 px (random init, fixed seed)."""
    return build_generator(UNetSpec.reference(6, 32), seed=0)


def _check_fair(g, new, info, target_params):
    assert info["strategy"] == "global-threshold"
    assert info["normalize"] is True and info["normalizer"] == "mean"
    assert info["max_layer_ratio"] == DEFAULT_MAX_LAYER_RATIO == 0.9
    assert abs(info["budget"]["rel_error"]) <= 0.01
    assert abs(info["budget"]["achieved"] / target_params - 1) <= 0.01
    fam_w = {name: getattr(g, name).conv.out_channels for name in prunable_layers(g)}
    for name, n in fam_w.items():
        kept = getattr(new, name).conv.out_channels
        assert kept >= 0.1 * n, f"{name} keeps {kept} of {n}"
        if name in info["kept"]:
            assert info["kept"][name]["n_kept"] == kept


@pytest.mark.parametrize("ref", ["cut-k2", "inner-l5-6-r0.75"])
def test_default_threshold_matched_on_demo_keeps_ten_percent_everywhere(demo, ref):
    shape = (1, 3, 64, 64)
    ref_g, _ = prune(demo, "cut", k=2) if ref == "cut-k2" else prune(demo, "inner", ratio=0.75, levels=[5, 6])
    target = sum(p.numel() for p in ref_g.parameters())
    new, info = prune(demo, "global-threshold", match_model=ref_g, input_shape=shape)
    _check_fair(demo, new, info, target)
    new(torch.randn(1, 3, 64, 64))
    # the raw, uncapped threshold is the strawman the default avoids: it strips the
    # low-fan-in encoder layers to (almost) nothing
    raw, rinfo = prune(
        demo, "global-threshold", match_model=ref_g, input_shape=shape, normalize=False, max_layer_ratio=None
    )
    assert rinfo["normalize"] is False and "not layer-normalised" in rinfo["rule"]
    if ref == "cut-k2":
        assert min(raw.spec.enc_widths[:4]) < 0.1 * 32


def test_default_threshold_matched_to_cut_k4_on_unet_256():
    g = build_generator(UNetSpec.reference(8, 64), seed=0)
    ref_g, _ = prune(g, "cut", k=4)
    target = sum(p.numel() for p in ref_g.parameters())
    assert target == 6_171_843
    new, info = prune(g, "global-threshold", match_model=ref_g)
    _check_fair(g, new, info, target)


def test_cap_bounds_every_layer(demo):
    order, _, _ = global_candidates(demo)  # the defaults: normalised, 90% cap
    per = {}
    for _, name, _j in order:
        per[name] = per.get(name, 0) + 1
    for name in prunable_layers(demo):
        n = getattr(demo, name).conv.out_channels
        assert per.get(name, 0) == layer_removal_cap(n, 0.9)
    # removing every candidate leaves exactly ceil-10% widths
    new, info = prune(demo, "global-threshold", threshold=1e9)
    assert info["n_removed"] == len(order)
    for name in prunable_layers(demo):
        n = getattr(demo, name).conv.out_channels
        assert getattr(new, name).conv.out_channels == n - layer_removal_cap(n, 0.9)
    half, hinfo = prune(demo, "global-threshold", threshold=1e9, max_layer_ratio=0.5)
    assert hinfo["max_layer_ratio"] == 0.5
    for name in prunable_layers(demo):
        assert getattr(half, name).conv.out_channels == getattr(demo, name).conv.out_channels // 2


# ------------------------------------------------------------------- configs and naming


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_configs_use_the_fair_threshold(path):
    cfg = load_config(path)
    assert cfg["baselines"]["normalize"] is True and cfg["baselines"]["max_layer_ratio"] == 0.9
    thr = {k: v for k, v in pipeline.baseline_variants(cfg).items() if v["strategy"] == "global-threshold"}
    assert thr
    for name, v in thr.items():
        assert name.startswith("global-threshold-match-") and "-raw-" not in name
        assert v["normalize"] is True and v["max_layer_ratio"] == 0.9
        args = pipeline.prune_cli_args(cfg, name)
        assert "--normalize" in args and "--no-normalize" not in args
        assert args[args.index("--max-layer-ratio") + 1] == "0.9"


def test_raw_threshold_only_under_an_explicit_name():
    cfg = load_config(ROOT / "config" / "config.yaml", {"baselines": {"normalize": False}})
    names = list(pipeline.baseline_variants(cfg))
    raw = [n for n in names if n.startswith("global-threshold")]
    assert raw and all(n.startswith("global-threshold-raw-match-") for n in raw)
    assert "--no-normalize" in pipeline.prune_cli_args(cfg, raw[0])
    assert load_config(None)["baselines"]["normalize"] is True  # the schema default
