"""Pruning engine: surgery, strategies, cut, budget matching, checkpoints, errors."""

import copy
from dataclasses import asdict, dataclass

import pytest
import torch
from torch import nn
from nets import randomise_bn

from unetprune.checkpoint import generator_from_checkpoint, load_checkpoint, save_generator
from unetprune.metrics.complexity import count_all, count_parameters
from unetprune.errors import UserFacingError
from unetprune.family import ModelFamily, family_of, get_family, register_family, unregister_family
from unetprune.families.pix2pix.family import Pix2PixFamily
from unetprune.families.pix2pix.pruning import UNetPruningOps
from unetprune.families.pix2pix.unet import UNetGenerator, UNetSpec, build_generator, default_inner_levels
from unetprune.pruning import (
    PruningError,
    filter_importance,
    match_budget,
    n_keep,
    prunable_layers,
    prune,
    prune_channels,
)

X64 = (2, 3, 64, 64)


def _randomise_bn(g, seed=1):
    """Non-trivial BN affine parameters and running statistics (calibrated on a random batch,
    then perturbed: tests/nets.py), so masking tests can fail."""
    side = 2**g.num_downs
    return randomise_bn(g, lambda gen: (torch.randn(4, g.spec.input_nc, side, side, generator=gen),), seed)


@pytest.fixture(scope="module")
def small():
    """num_downs=6, ngf=8 (widths 8-16-32-64-64-64), BN, dropout on level 5, eval mode."""
    g = build_generator(UNetSpec.reference(6, 8), seed=0)
    return _randomise_bn(g).eval()


@pytest.fixture(scope="module")
def x64():
    return torch.randn(X64, generator=torch.Generator().manual_seed(3))


def masked_forward(g, kept: dict, x):
    """Full model with removed channels zeroed where consumers read them (block outputs)."""
    hooks = []
    for name, v in kept.items():
        mask = torch.zeros(getattr(g, name).conv.out_channels)
        mask[v["indices"]] = 1.0
        hooks.append(
            getattr(g, name).register_forward_hook(lambda mod, inp, out, m=mask: out * m.view(1, -1, 1, 1))
        )
    try:
        with torch.no_grad():
            return g(x)
    finally:
        for h in hooks:
            h.remove()


def expected_widths(g, kept):
    s = g.spec
    enc = [kept[f"down{i}"]["n_kept"] if f"down{i}" in kept else w for i, w in enumerate(s.enc_widths, 1)]
    dec = [kept[f"up{i}"]["n_kept"] if f"up{i}" in kept else w for i, w in enumerate(s.dec_widths, 1)]
    return enc, dec


def check_pruned_model(g, new, info, x):
    """Channel counts as expected, consistent convs, forward and backward run."""
    enc, dec = expected_widths(g, info.get("kept", {}))
    assert new.spec.enc_widths == enc and new.spec.dec_widths == dec
    for i in range(1, new.num_downs + 1):
        d, u = getattr(new, f"down{i}"), getattr(new, f"up{i}")
        assert d.conv.out_channels == enc[i - 1]
        assert d.conv.in_channels == (3 if i == 1 else enc[i - 2])
        if isinstance(d.norm, nn.BatchNorm2d):
            assert d.norm.num_features == enc[i - 1]
        assert u.conv.out_channels == dec[i - 1]
        assert (u.skip_ch, u.up_ch) == (enc[i - 1], 0 if i == new.num_downs else dec[i])
        assert u.conv.in_channels == u.skip_ch + u.up_ch
    assert type(new) is UNetGenerator
    assert info["params"] == count_parameters(new)
    t = copy.deepcopy(new).train()
    y = t(x)
    assert y.shape == (x.shape[0], 3, x.shape[2], x.shape[3])
    y.abs().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in t.parameters())


STRATEGY_CASES = [
    ("single-down1", "single", dict(layer="down1", ratio=0.5)),
    ("single-down3", "single", dict(layer="down3", ratio=0.6)),
    ("single-down6", "single", dict(layer="down6", ratio=0.7)),  # innermost encoder (no BN)
    ("single-up6", "single", dict(layer="up6", ratio=0.5)),  # innermost decoder
    ("single-up2", "single", dict(layer="up2", ratio=0.4)),  # feeds the RGB conv
    ("inner", "inner", dict(ratio=0.75)),
    ("inner-3-4", "inner", dict(ratio=0.5, levels=[3, 4])),
    ("inner-l1", "inner", dict(ratio=0.5, levels=[1, 2])),
    ("uniform", "global-uniform", dict(ratio=0.5)),
    ("uniform-l2", "global-uniform", dict(ratio=0.3, importance="l2")),
    ("uniform-random", "global-uniform", dict(ratio=0.3, importance="random", seed=5)),
    ("uniform-bn", "global-uniform", dict(ratio=0.3, importance="bn")),
    ("threshold-raw", "global-threshold", dict(ratio=0.4)),
    ("threshold-norm", "global-threshold", dict(ratio=0.4, normalize=True)),
]


@pytest.mark.parametrize("case,strategy,kw", STRATEGY_CASES, ids=[c[0] for c in STRATEGY_CASES])
def test_pruned_equals_masked_full_model(small, x64, case, strategy, kw):
    new, info = prune(small, strategy, **kw)
    assert info["kept"], "something must have been pruned"
    assert any(v["n_kept"] < v["n_before"] for v in info["kept"].values())
    check_pruned_model(small, new, info, x64)
    assert not new.training
    with torch.no_grad():
        y_pruned = new(x64)
    y_masked = masked_forward(small, info["kept"], x64)
    torch.testing.assert_close(y_pruned, y_masked, atol=1e-5, rtol=0)
    # the unmasked full model differs: the test can fail
    with torch.no_grad():
        assert (small(x64) - y_pruned).abs().max() > 1e-3


def test_masking_covers_both_concat_halves(small, x64):
    """Pruning down3 touches down4's input and up3's skip half; pruning up4 touches up3's up half."""
    new, info = prune(small, "single", layer="down3", ratio=0.5)
    assert new.down4.conv.in_channels == 16 and new.up3.skip_ch == 16 and new.up3.up_ch == 32
    new, info = prune(small, "single", layer="up4", ratio=0.5)
    assert new.up3.skip_ch == 32 and new.up3.up_ch == 16 and new.up4.conv.out_channels == 16
    kept = info["kept"]["up4"]["indices"]
    torch.testing.assert_close(new.up3.conv.weight[32:], small.up3.conv.weight[32:][kept])
    torch.testing.assert_close(new.up3.conv.weight[:32], small.up3.conv.weight[:32])
    torch.testing.assert_close(new.up4.norm.running_var, small.up4.norm.running_var[kept])


@pytest.mark.parametrize(
    "strategy,kw",
    [
        ("single", dict(layer="down4", ratio=0.0)),
        ("inner", dict(ratio=0.0)),
        ("global-uniform", dict(ratio=0.0)),
        ("global-threshold", dict(ratio=0.0)),
    ],
)
def test_ratio_zero_is_identity(small, x64, strategy, kw):
    new, info = prune(small, strategy, **kw)
    assert new.spec == small.spec
    sd, sd0 = new.state_dict(), small.state_dict()
    assert sd.keys() == sd0.keys() and all(torch.equal(sd[k], sd0[k]) for k in sd)
    with torch.no_grad():
        assert torch.equal(new(x64), small(x64))


def test_original_model_untouched(small):
    before = {k: v.clone() for k, v in small.state_dict().items()}
    prune(small, "global-uniform", ratio=0.5)
    prune(small, "cut", k=2)
    assert all(torch.equal(before[k], v) for k, v in small.state_dict().items())


def test_importance_definitions(small):
    s, used = filter_importance(small, "up4", "l1")
    w = small.up4.conv.weight  # ConvTranspose2d: [C_in, C_out, k, k]; filter j = weight[:, j]
    assert used == "l1" and s.shape == (32,)
    torch.testing.assert_close(s, w.abs().sum((0, 2, 3)).double(), rtol=1e-6, atol=0)
    s, _ = filter_importance(small, "down3", "l2")
    torch.testing.assert_close(
        s, small.down3.conv.weight.pow(2).sum((1, 2, 3)).sqrt().double(), rtol=1e-6, atol=0
    )
    s, used = filter_importance(small, "down3", "bn")
    assert used == "bn"
    torch.testing.assert_close(s, small.down3.norm.weight.abs().double())
    _, used = filter_importance(small, "down6", "bn")  # innermost: no BN -> L1 fallback
    assert used == "l1"
    a, _ = filter_importance(small, "down3", "random", seed=1)
    b, _ = filter_importance(small, "down3", "random", seed=1)
    c, _ = filter_importance(small, "down3", "random", seed=2)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_l1_keeps_the_largest_filters(small):
    new, info = prune(small, "single", layer="down4", ratio=0.25)
    s, _ = filter_importance(small, "down4", "l1")
    kept = info["kept"]["down4"]["indices"]
    assert len(kept) == 48
    assert set(kept) == set(torch.topk(s, 48).indices.tolist())
    torch.testing.assert_close(new.down4.conv.weight, small.down4.conv.weight[kept][:, :])


def test_keep_count_rule():
    # Torch-Pruning's rule: keep int(n * (1 - r)), never fewer than 1
    assert n_keep(8, 0.3) == 5 and n_keep(512, 0.75) == 128 and n_keep(10, 0.7) == 3
    assert n_keep(64, 0.0) == 64 and n_keep(3, 0.9) == 1 and n_keep(1, 0.5) == 1


def test_default_inner_levels():
    assert default_inner_levels(UNetSpec.reference(8)) == [5, 6, 7, 8]
    assert default_inner_levels(UNetSpec.reference(6, 32)) == [5, 6]


def test_inner_prunes_encoder_and_decoder_of_levels(small):
    new, info = prune(small, "inner", ratio=0.75, levels=[4, 5, 6])
    assert info["layers"] == ["down4", "down5", "down6", "up6", "up5", "up4"]
    assert new.spec.enc_widths == [8, 16, 32, 16, 16, 16]
    assert new.spec.dec_widths == [3, 8, 16, 8, 16, 16]


def test_global_threshold_semantics(small):
    """The raw, uncapped threshold (explicitly asked for; the default is normalised and capped,
    see tests/test_baselines.py)."""
    raw = dict(normalize=False, max_layer_ratio=None)
    new, info = prune(small, "global-threshold", ratio=0.5, **raw)
    assert info["normalize"] is False and info["max_layer_ratio"] is None
    total = sum(getattr(small, n).conv.out_channels for n in prunable_layers(small))
    assert info["n_removed"] == int(total * 0.5)
    thr = info["threshold"]
    # the same set from the reported threshold
    new2, info2 = prune(small, "global-threshold", threshold=thr, **raw)
    assert new2.spec == new.spec and info2["kept"] == info["kept"]
    # every removed filter scores below the threshold, every kept one (but the guaranteed best) above
    for name in prunable_layers(small):
        s, _ = filter_importance(small, name, "l1")
        kept = set(info["kept"].get(name, {"indices": range(s.numel())})["indices"])
        best = int(torch.argmax(s))
        for j in range(s.numel()):
            if j not in kept:
                assert s[j] < thr
            elif j != best:
                assert s[j] > thr
    # never empties a layer, even at a huge threshold
    new3, info3 = prune(small, "global-threshold", threshold=1e9, **raw)
    assert min(new3.spec.enc_widths + new3.spec.dec_widths[1:]) == 1
    check_pruned_model(small, new3, info3, torch.randn(1, 3, 64, 64))


# ---------------------------------------------------------------------------------- cut

CUT_PARAMS = {1: 41_829_571, 2: 29_244_611, 3: 16_659_651, 4: 6_171_843}


@pytest.fixture(scope="module")
def unet256_meta():
    with torch.device("meta"):
        return UNetGenerator(UNetSpec.reference(8))


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_cut_unet256_equals_fresh_shallower_model(unet256_meta, k):
    new, info = prune(unet256_meta, "cut", k=k)
    assert count_parameters(new) == CUT_PARAMS[k] == info["params"]
    assert round(count_parameters(new) / 1e6, 2) == {1: 41.83, 2: 29.24, 3: 16.66, 4: 6.17}[k]
    fresh_spec = UNetSpec.reference(8 - k)
    assert new.spec == fresh_spec  # widths, dropout levels, bias mode
    with torch.device("meta"):
        fresh = UNetGenerator(fresh_spec)
    assert {n: tuple(v.shape) for n, v in new.state_dict().items()} == {
        n: tuple(v.shape) for n, v in fresh.state_dict().items()
    }
    assert [type(m) for m in new.modules()] == [type(m) for m in fresh.modules()]
    assert str(new) == str(fresh)


@pytest.mark.parametrize("bias_mode", ["paper", "reference"])
def test_cut_copies_weights_and_folds_bn(x64, bias_mode):
    g = _randomise_bn(build_generator(UNetSpec.reference(6, 8, bias_mode=bias_mode), seed=0)).eval()
    new, info = prune(g, "cut", k=2)
    assert new.spec == UNetSpec.reference(4, 8, bias_mode=bias_mode)
    assert info["removed_levels"] == [5, 6] and info["dropout_levels"] == []
    for i in range(1, 4):
        for part in ("down", "up"):
            a, b = getattr(new, f"{part}{i}").state_dict(), getattr(g, f"{part}{i}").state_dict()
            assert all(torch.equal(a[key], b[key]) for key in a)
    assert isinstance(new.down4.norm, nn.Identity)
    # new innermost decoder conv: the skip slice of the old one
    assert torch.equal(new.up4.conv.weight, g.up4.conv.weight[: g.up4.skip_ch])
    assert torch.equal(new.up4.norm.running_mean, g.up4.norm.running_mean)
    # encoder features (every skip) are unchanged in eval mode (paper mode: exact BN fold)
    feats = {}
    for m, key in ((g.down4, "old"), (new.down4, "new")):
        m.register_forward_hook(lambda mod, inp, out, key=key: feats.__setitem__(key, out))
    with torch.no_grad():
        g(x64), new(x64)
    if bias_mode == "paper":
        torch.testing.assert_close(feats["new"], feats["old"], atol=1e-5, rtol=1e-5)
    else:  # no bias to hold the BN shift: scale folded, shift dropped
        bn = g.down4.norm
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        shift = (bn.bias - bn.running_mean * scale).view(1, -1, 1, 1)
        torch.testing.assert_close(feats["new"] + shift, feats["old"], atol=1e-5, rtol=1e-5)
    y = new.train()(x64)
    y.mean().backward()


def test_cut_keeps_reference_dropout_layout():
    g = build_generator(UNetSpec.reference(8, 4), seed=0)
    for k, drop in [(1, [5, 6]), (2, [5]), (3, [])]:
        new, _ = prune(g, "cut", k=k)
        assert new.spec.dropout_levels == drop == UNetSpec.reference(8 - k, 4).dropout_levels


def test_cut_after_inner_pruning(small, x64):
    pruned, _ = prune(small, "inner", ratio=0.5)
    new, info = prune(pruned, "cut", k=1)
    assert new.spec.enc_widths == pruned.spec.enc_widths[:5]
    assert new.up5.conv.in_channels == pruned.spec.enc_widths[4]
    new(x64)


# ------------------------------------------------------------------------- budget matching


@pytest.fixture(scope="module")
def medium():
    """num_downs=6, ngf=32 (widths up to 256): width granularity fine enough for 1% matching."""
    return build_generator(UNetSpec.reference(6, 32), seed=0).eval()


@pytest.mark.parametrize("strategy", ["global-uniform", "global-threshold"])
@pytest.mark.parametrize("metric", ["params", "macs_physical", "macs_output"])
def test_budget_matching_within_one_percent(medium, strategy, metric):
    shape = (1, 3, 64, 64)
    ref, _ = prune(medium, "cut", k=1)
    target = count_all(ref, shape)[metric]
    new, info = prune(medium, strategy, match_model=ref, match_metric=metric, input_shape=shape)
    achieved = count_all(new, shape)[metric]
    assert abs(achieved - target) / target <= 0.01
    assert info["budget"]["achieved"] == achieved and info["budget"]["target"] == target
    assert info["strategy"] == strategy


def test_budget_matching_normalized_threshold_and_inner_target(medium):
    shape = (1, 3, 64, 64)
    ref, _ = prune(medium, "inner", ratio=0.75)
    new, info = prune(medium, "global-threshold", normalize=True, match_model=ref, input_shape=shape)
    assert abs(count_parameters(new) / count_parameters(ref) - 1) <= 0.01
    assert info["normalize"] is True


def test_budget_matching_unreachable_target(small):
    with pytest.raises(PruningError, match="cannot match"):
        match_budget(small, "global-uniform", 10, "params", (1, 3, 64, 64))
    new, info = match_budget(
        small, "global-uniform", count_parameters(small) * 2, "params", (1, 3, 64, 64), strict=False
    )
    assert info["budget"]["achieved"] == count_parameters(small)


# ------------------------------------------------------------------------ save and reload


@pytest.mark.parametrize(
    "strategy,kw",
    [("inner", dict(ratio=0.5)), ("cut", dict(k=2)), ("global-threshold", dict(ratio=0.3, normalize=True))],
)
def test_pruned_checkpoint_roundtrip(small, x64, tmp_path, strategy, kw):
    new, info = prune(small, strategy, **kw)
    path = tmp_path / "after_pruning.pt"
    save_generator(path, new, config={"model": {"pix2pix": {"ngf": 8}}}, meta={"pruning": info})
    ckpt = load_checkpoint(path)  # weights_only load: meta must be plain data
    assert ckpt["meta"]["pruning"]["strategy"] == strategy
    g2 = generator_from_checkpoint(path).eval()
    assert g2.spec == new.spec
    with torch.no_grad():
        assert torch.equal(g2(x64), new(x64))


# ---------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "strategy,kw,match",
    [
        ("single", dict(layer="down9", ratio=0.5), "unknown layer 'down9'"),
        ("single", dict(layer="conv3", ratio=0.5), "unknown layer"),
        ("single", dict(layer="up1", ratio=0.5), "RGB output"),
        ("single", dict(layer="down2", ratio=1.0), r"\[0, 1\)"),
        ("single", dict(layer="down2", ratio=-0.1), r"\[0, 1\)"),
        ("inner", dict(ratio=0.5, levels=[5, 6, 7, 8]), r"level\(s\) \[7, 8\] do not exist"),
        ("inner", dict(ratio=0.5, levels=[0]), "do not exist"),
        ("cut", dict(k=5), "k must be in 1..4"),
        ("cut", dict(k=0), "k must be in 1..4"),
        ("bogus", dict(), "unknown strategy"),
        ("global-uniform", dict(), "needs a ratio"),
        ("global-uniform", dict(ratio=0.5, importance="l3"), "unknown importance"),
    ],
)
def test_clear_errors(small, strategy, kw, match):
    with pytest.raises(PruningError, match=match):
        prune(small, strategy, **kw)


def test_prune_channels_rejects_empty_layer(small):
    with pytest.raises(PruningError, match="every filter"):
        prune_channels(small, {"down3": []})


def test_width_cost_model_is_exact(medium):
    from unetprune.families.pix2pix.pruning import WidthCost

    shape = (1, 3, 64, 64)
    wc = WidthCost(medium, shape)
    for strategy, kw in [
        ("global-uniform", dict(ratio=0.37)),
        ("inner", dict(ratio=0.6)),
        ("global-threshold", dict(ratio=0.5, normalize=True)),
    ]:
        new, _ = prune(medium, strategy, **kw)
        assert wc(new.spec.enc_widths, new.spec.dec_widths) == count_all(new, shape)


# --- the engine reaches the model through its family -----------------------------------------


def _old_format_checkpoint(g):
    """A format-1 checkpoint without the ``family`` key (read as the default family)."""
    return {
        "format": "unetprune-checkpoint",
        "format_version": 1,
        "generator": {
            "arch": g.spec.to_dict(),
            "state_dict": {k: v.detach().clone() for k, v in g.state_dict().items()},
        },
        "config": {},
        "versions": {"torch": str(torch.__version__)},
        "meta": {},
    }


def test_checkpoint_records_family_and_old_checkpoints_load_as_pix2pix(small, x64, tmp_path):
    save_generator(tmp_path / "new.pt", small)
    assert torch.load(tmp_path / "new.pt", weights_only=True)["family"] == "pix2pix"
    old = _old_format_checkpoint(small)
    assert "family" not in old
    torch.save(old, tmp_path / "old.pt")
    ckpt = load_checkpoint(tmp_path / "old.pt")  # torch.load(weights_only=True) inside
    assert family_of(ckpt) is get_family("pix2pix")
    g = generator_from_checkpoint(tmp_path / "old.pt").eval()
    assert isinstance(g, UNetGenerator) and g.spec == small.spec
    assert g.state_dict().keys() == small.state_dict().keys()
    assert all(torch.equal(v, small.state_dict()[k]) for k, v in g.state_dict().items())
    with torch.no_grad():
        assert torch.equal(g(x64), small(x64))
    # and the file without a family prunes like one with it
    new, info = prune(g, "cut", k=1)
    assert info["params"] == count_parameters(new) and new.num_downs == 5


def test_checkpoint_of_unknown_family_is_refused(small, tmp_path):
    bad = {**_old_format_checkpoint(small), "family": "no-such-family"}
    torch.save(bad, tmp_path / "w.pt")
    with pytest.raises(UserFacingError, match="unknown model family 'no-such-family'"):
        generator_from_checkpoint(tmp_path / "w.pt")


@dataclass
class EncoderOnlySpec(UNetSpec):
    """A U-Net spec of another (test) family."""


class EncoderOnlyFamily(Pix2PixFamily):
    """pix2pix, except that only the encoder layers form prunable groups."""

    name = "test-encoder-only"
    spec_type = EncoderOnlySpec

    def pruning_ops(self):
        return EncoderOnlyOps()

    def groups(self, spec_or_generator):
        return [n for n in super().groups(spec_or_generator) if n.startswith("down")]


class EncoderOnlyOps(UNetPruningOps):
    """Its pruning operations: the U-Net's, refusing the decoder layers."""

    family = EncoderOnlyFamily.name

    def check_layer(self, generator, layer):
        if layer not in EncoderOnlyFamily().groups(generator):
            raise PruningError(f"{layer} is not prunable in {self.family}")


@pytest.fixture
def encoder_only():
    fam = register_family(EncoderOnlyFamily())
    g = build_generator(EncoderOnlySpec(**asdict(UNetSpec.reference(6, 8))), seed=0).eval()
    yield fam, g
    unregister_family(fam.name)


def test_a_family_without_pruning_ops_is_refused(tmp_path):
    class Bare(EncoderOnlyFamily):
        name = "test-bare"

        def pruning_ops(self):  # the protocol's default: no pruning support
            return ModelFamily.pruning_ops(self)

        class spec_type(UNetSpec):  # noqa: N801 (a spec class of its own)
            pass

    fam = register_family(Bare())
    try:
        g = build_generator(Bare.spec_type(**asdict(UNetSpec.reference(5, 8))), seed=0)
        assert family_of(g) is fam
        with pytest.raises(PruningError, match="model family 'test-bare' has no pruning support"):
            prune(g, "cut", k=1)
    finally:
        unregister_family(fam.name)


def test_strategies_go_through_the_family(encoder_only, small, tmp_path):
    fam, g = encoder_only
    assert family_of(g) is fam and family_of(small) is get_family("pix2pix")
    new, info = prune(g, "global-uniform", ratio=0.5)
    assert info["layers"] == ["down1", "down2", "down3", "down4", "down5", "down6"]
    assert info["widths"] == {"enc": [4, 8, 16, 32, 32, 32], "dec": [3, 8, 16, 32, 64, 64]}
    assert family_of(new) is fam  # surgery keeps the spec class
    # the same model in the pix2pix family prunes its decoder too
    _, info_p = prune(small, "global-uniform", ratio=0.5)
    assert info_p["widths"]["dec"] == [3, 4, 8, 16, 32, 32]
    with pytest.raises(PruningError, match="up3 is not prunable in test-encoder-only"):
        prune(g, "single", layer="up3", ratio=0.5)
    # budget matching searches over the family's groups only
    target = count_parameters(g) * 3 // 4
    new, info = prune(g, "global-threshold", match_target=target, tol=0.02)
    assert abs(info["budget"]["rel_error"]) <= 0.02
    assert new.spec.dec_widths == g.spec.dec_widths and new.spec.enc_widths != g.spec.enc_widths
    # checkpoints name the family and reload through it
    save_generator(tmp_path / "e.pt", new)
    assert load_checkpoint(tmp_path / "e.pt")["family"] == "test-encoder-only"
    back = generator_from_checkpoint(tmp_path / "e.pt")
    assert type(back.spec) is EncoderOnlySpec and back.spec == new.spec
