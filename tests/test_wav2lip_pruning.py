"""Pruning the Wav2Lip generator: channel groups, dependency-aware surgery
(keep-all identity, masked equivalence), cut-k and cut-res, exact width cost, importance,
and the family-agnostic strategies end to end through a registered ``wav2lip`` family.

The ``registered`` fixture hands out the installed ``wav2lip`` family and its pruning ops.  Small models use
``width_mult=0.25``; the exact cut counts are checked at full width.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from nets import randomise_bn

from unetprune.checkpoint import generator_from_checkpoint, load_checkpoint, save_generator
from unetprune.metrics.complexity import count_parameters
from unetprune.family import family_names, family_of, get_family
from unetprune.families.wav2lip.family import Wav2LipFamily
from unetprune.families.wav2lip.networks import Wav2LipGenerator, Wav2LipSpec, count_complexity
from unetprune.families.wav2lip.structure import (
    conv_slots,
    default_inner_levels,
    group_widths,
    layers_of_levels,
    spec_with_widths,
    wav2lip_groups,
)
from unetprune.pruning import PruningError, filter_importance, prune
from unetprune.families.wav2lip.pruning import WAV2LIP_OPS, Wav2LipPruningOps

FACE, MEL = (1, 6, 96, 96), (1, 1, 80, 16)
REF_GROUPS = (
    ["audio0", "audio1", "audio2", "audio3", "audio4"]
    + [f"fe{i}" for i in range(7)]
    + [f"fd{i}" for i in range(7)]
    + ["out0"]
)


def _inputs(b=2, seed=3):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(b, 6, 96, 96, generator=gen), torch.randn(b, 1, 80, 16, generator=gen)


def _randomise(g: Wav2LipGenerator, seed=1) -> Wav2LipGenerator:
    """Calibrated, then perturbed BN statistics and affine parameters, non-zero conv biases
    (tests/nets.py): so a wrong channel mapping shows in the outputs."""
    return randomise_bn(g, lambda gen: _inputs(4, seed), seed).eval()


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    return _randomise(Wav2LipGenerator(Wav2LipSpec.reference(0.25)))


@pytest.fixture(scope="module")
def full():
    torch.manual_seed(0)
    return Wav2LipGenerator(Wav2LipSpec.reference()).eval()


@pytest.fixture
def registered():
    fam = get_family("wav2lip")
    assert "wav2lip" in family_names() and isinstance(fam, Wav2LipFamily)
    assert fam.pruning_ops() is WAV2LIP_OPS
    return fam, WAV2LIP_OPS


# ------------------------------------------------------------------------------------------
# structure
# ------------------------------------------------------------------------------------------


def test_groups_levels_and_conv_table(full):
    fam = Wav2LipFamily()
    assert fam.groups(full) == wav2lip_groups(full.spec) == REF_GROUPS
    assert group_widths(full)["fd3"] == 384 and group_widths(full)["out0"] == 32
    # every conv of the model is described once; only the RGB conv is in no group
    convs = {n for n, m in full.named_modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))}
    slots = conv_slots(full)
    assert {s.path for s in slots} == convs and len(slots) == len(convs) == 51
    assert [s.path for s in slots if not isinstance(s.out, str)] == ["out.1"]
    by = {s.path: s for s in slots}
    assert by["fe6.1.conv"].out == "fe6" and by["fe6.1.conv"].ins == ("fe6",)  # closing 1x1 in the group
    assert by["audio.12.conv"].out == "audio4"
    assert by["fd0.0.conv"].ins == ("audio4",) and by["fd1.0.conv"].ins == ("fd0", "fe6")
    assert by["fd2.2.conv"].ins == ("fd2",) and by["out.0.conv"].ins == ("fd6", "fe0")
    # inner levels: the 512-wide stages; level j = fe{j} + fd{7-j} (+fd0 at 6, out at 0)
    assert default_inner_levels(full) == fam.default_inner_levels(full.spec) == [5, 6]
    assert layers_of_levels(full, [5, 6]) == ["fe5", "fe6", "fd0", "fd1", "fd2"]
    assert layers_of_levels(full, [0, 4]) == ["fe0", "fe4", "fd3", "out0"]
    assert default_inner_levels(Wav2LipSpec.reference(0.25)) == [5, 6]
    assert default_inner_levels(Wav2LipSpec.reference(cut=1)) == [5]
    cut1 = Wav2LipSpec.reference(cut=1)
    assert wav2lip_groups(cut1) == [g for g in REF_GROUPS if g not in ("fe6", "fd0", "fd1")]
    # the scoring conv is the stage's first conv (a ConvTranspose2d for fd1..fd6)
    conv, bn = fam.layer_filters(full, "fd2")
    assert conv is full.fd2[0].conv and bn is full.fd2[0].bn and isinstance(conv, nn.ConvTranspose2d)
    assert fam.layer_filters(full, "audio2")[0] is full.audio[6].conv
    assert fam.layer_width(full, "fe6") == 512 and fam.input_shape(full) == FACE
    w = fam.widths(full)
    assert w["groups"]["fe5"] == 512 and w["residual"]["fd2"] == 2 and w["cut"] == 0
    assert callable(fam.trainer)  # the training step: tests/test_wav2lip_train.py


# ------------------------------------------------------------------------------------------
# surgery
# ------------------------------------------------------------------------------------------


def test_keep_all_is_the_identity(small):
    keep = {g: range(w) for g, w in group_widths(small).items()}
    new = WAV2LIP_OPS.prune_channels(small, keep)
    assert new is not small and new.spec == small.spec and not new.training
    for (k, a), (k2, b) in zip(small.state_dict().items(), new.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k
    face, mel = _inputs()
    with torch.no_grad():
        assert torch.equal(new(face, mel), small(face, mel))


def _masked(g: Wav2LipGenerator, drop: dict[str, list[int]]) -> Wav2LipGenerator:
    """A copy of ``g`` whose dropped channels are zero everywhere they are produced: the
    filters (weights, bias) and BN affine of every conv of the group's stage (its entry conv,
    the residual convs, FE6's and audio4's closing 1x1) — written out here by stage, not
    taken from the library's table."""
    m = copy.deepcopy(g)
    audio_blocks = {
        "audio0": [0, 1, 2],
        "audio1": [3, 4, 5],
        "audio2": [6, 7, 8],
        "audio3": [9, 10],
        "audio4": [11, 12],
    }
    with torch.no_grad():
        for group, ix in drop.items():
            if group.startswith("audio"):
                blocks = [m.audio[i] for i in audio_blocks[group]]
            elif group.startswith("out"):
                blocks = [m.out[int(group[3:])]]
            else:
                blocks = list(getattr(m, group))
            for blk in blocks:
                w = blk.conv.weight
                if isinstance(blk.conv, nn.ConvTranspose2d):
                    w[:, ix] = 0
                else:
                    w[ix] = 0
                blk.conv.bias[ix] = 0
                blk.bn.weight[ix] = 0
                blk.bn.bias[ix] = 0
    return m


@pytest.mark.parametrize("groups", [REF_GROUPS, ["fe6"], ["audio4", "fd0"], ["fe0", "fd6", "out0"]])
def test_pruned_equals_masked_original(small, groups):
    gen = torch.Generator().manual_seed(len(groups))
    widths = group_widths(small)
    keep, drop = {}, {}
    for g in groups:
        n = widths[g]
        perm = torch.randperm(n, generator=gen).tolist()
        k = max(1, n // 2)
        keep[g], drop[g] = sorted(perm[:k]), sorted(perm[k:])
    new = WAV2LIP_OPS.prune_channels(small, keep)
    assert all(group_widths(new)[g] == len(keep[g]) for g in groups)
    assert type(new) is Wav2LipGenerator and new.spec == spec_with_widths(
        small.spec, {g: len(v) for g, v in keep.items()}
    )
    # float64: the randomised BN statistics let activations reach ~1e3, where float32's
    # different summation order alone shows at ~5e-5; in float64 the two agree to ~1e-13
    face, mel = (t.double() for t in _inputs())
    masked, new64 = _masked(small, drop).double(), copy.deepcopy(new).double()
    with torch.no_grad():
        ref = masked(face, mel)
        torch.testing.assert_close(new64(face, mel), ref, atol=1e-5, rtol=0)
        assert not torch.allclose(copy.deepcopy(small).double()(face, mel), ref, atol=1e-4)  # masking matters
        # train-mode BN too (zeroed channels have zero batch statistics)
        torch.testing.assert_close(new64.train()(face, mel), masked.train()(face, mel), atol=1e-5, rtol=0)
    face, mel = _inputs()
    with torch.no_grad():  # and in float32 within its own precision
        torch.testing.assert_close(new(face, mel), _masked(small, drop)(face, mel), atol=5e-4, rtol=1e-4)


def test_surgery_refuses_bad_requests(small):
    with pytest.raises(PruningError, match="last conv.*never pruned"):
        WAV2LIP_OPS.check_layer(small, "out1")
    with pytest.raises(PruningError, match="unknown layer 'fd9'.*prunable layers: audio0"):
        WAV2LIP_OPS.check_layer(small, "fd9")
    cut1, _ = WAV2LIP_OPS.cut(small, 1)
    with pytest.raises(PruningError, match="'fd1' was removed by the cut"):
        WAV2LIP_OPS.check_layer(cut1, "fd1")
    with pytest.raises(PruningError, match="remove every filter of fe3"):
        WAV2LIP_OPS.prune_channels(small, {"fe3": []})
    with pytest.raises(PruningError, match=r"distinct and in \[0, 8\)"):
        WAV2LIP_OPS.prune_channels(small, {"fe1": [0, 8]})
    with pytest.raises(PruningError, match=r"level\(s\) \[7\] do not exist"):
        WAV2LIP_OPS.layers_of_levels(small, [7])
    assert WAV2LIP_OPS.layers_of_levels(small, None) == ([5, 6], ["fe5", "fe6", "fd0", "fd1", "fd2"])


# ------------------------------------------------------------------------------------------
# cut-k and cut-res
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "k,count,gone",
    [(1, 26_328_883, ["fe6", "fd0", "fd1"]), (2, 13_345_075, ["fe5", "fe6", "fd0", "fd1", "fd2"])],
)
def test_cut_k_exact_counts_and_copied_weights(full, k, count, gone):
    new, info = WAV2LIP_OPS.cut(full, k)
    assert count_parameters(new) == count and count_parameters(full) == 36_298_035
    assert type(new) is Wav2LipGenerator and new.spec == Wav2LipSpec.reference(cut=k)
    assert info["removed_stages"] == gone and info["audio_in_place_of"] == f"fd{k}"
    assert info["removed_levels"] == list(range(7 - k, 7))
    src = full.state_dict()
    for name, t in new.state_dict().items():  # every surviving weight copied unchanged
        assert torch.equal(t, src[name]), name
    assert not any(name.startswith(tuple(f"{s}." for s in gone)) for name in new.state_dict())
    with torch.no_grad():
        assert new(torch.rand(FACE), torch.randn(MEL)).shape == (1, 3, 96, 96)


def test_cut_k3_is_refused_with_the_reason(full):
    with pytest.raises(
        PruningError,
        match=r"k=3 is refused: the audio embedding \(512 channels\) would take "
        r"the place of fd3's output, but fd4 reads 384 channels.*k=1, k=2",
    ):
        WAV2LIP_OPS.cut(full, 3)
    with pytest.raises(PruningError, match="k must be in 1..5"):
        WAV2LIP_OPS.cut(full, 6)
    with pytest.raises(PruningError, match="must be an integer"):
        WAV2LIP_OPS.cut(full, True)


def test_cut_twice_equals_cut_k2_and_pruned_widths_must_fit(small):
    k1, _ = WAV2LIP_OPS.cut(small, 1)
    k11, info = WAV2LIP_OPS.cut(k1, 1)
    k2, _ = WAV2LIP_OPS.cut(small, 2)
    assert info["cut_before"] == 1 and info["removed_stages"] == ["fe5", "fd2"]
    assert k11.spec == k2.spec
    for (a, x), (b, y) in zip(k11.state_dict().items(), k2.state_dict().items()):
        assert a == b and torch.equal(x, y)
    # a model whose fd1 no longer matches the audio width cannot be cut at k=1
    pruned = WAV2LIP_OPS.prune_channels(small, {"fd1": range(64)})
    with pytest.raises(PruningError, match=r"audio embedding \(128 channels\).*fd2 reads 64.*k=2"):
        WAV2LIP_OPS.cut(pruned, 1)


def test_cut_res_removes_inner_residual_blocks(full, small):
    new, info = WAV2LIP_OPS.cut(full, None, unit="residual")
    assert info["removed_blocks"] == ["fe5.1", "fd1.1", "fd2.1", "fd2.2"] and info["levels"] == [5, 6]
    assert count_parameters(new) == 36_298_035 - 4 * (512 * 512 * 9 + 512 + 2 * 512) == 26_854_707
    assert new.spec.fe_residual[5] == 0 and new.spec.fd_residual[1:3] == [0, 0]
    src = full.state_dict()
    for name, t in new.state_dict().items():
        assert torch.equal(t, src[name]), name
    with torch.no_grad():
        assert new(torch.rand(FACE), torch.randn(MEL)).shape == (1, 3, 96, 96)
    # other levels; a level set without residual blocks is refused
    new4, info4 = WAV2LIP_OPS.cut_residual(small, [3, 4])
    assert info4["removed_blocks"] == ["fe3.1", "fe3.2", "fe4.1", "fe4.2", "fd3.1", "fd3.2", "fd4.1", "fd4.2"]
    with pytest.raises(PruningError, match="no residual blocks"):
        WAV2LIP_OPS.cut_residual(small, [0])  # fe0 and the output block have none
    with pytest.raises(PruningError, match="unknown cut unit"):
        WAV2LIP_OPS.cut(small, 1, unit="blocks")
    # a cut-res model prunes like any other
    pr = WAV2LIP_OPS.prune_channels(new4, {"fe4": range(10), "fd3": range(7)})
    with torch.no_grad():
        assert pr(*_inputs()).shape == (2, 3, 96, 96)


# ------------------------------------------------------------------------------------------
# exact width cost
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["plain", "cut1", "cut2", "res"])
def test_width_cost_is_exact(small, variant):
    g = {
        "plain": lambda: small,
        "cut1": lambda: WAV2LIP_OPS.cut(small, 1)[0],
        "cut2": lambda: WAV2LIP_OPS.cut(small, 2)[0],
        "res": lambda: WAV2LIP_OPS.cut_residual(small)[0],
    }[variant]()
    gen = torch.Generator().manual_seed(7)
    for shape in (None, (3, 6, 96, 96), [(2, 6, 96, 96), (2, 1, 80, 16)]):
        cost = WAV2LIP_OPS.width_cost(g, shape)
        batch = 1 if shape is None else (shape[0] if isinstance(shape[0], int) else shape[0][0])
        face, mel = (batch, 6, 96, 96), (batch, 1, 80, 16)
        assert cost({}) == count_complexity(g, face, mel)
        widths = {
            name: int(torch.randint(1, w + 1, (1,), generator=gen)) for name, w in group_widths(g).items()
        }
        with torch.device("meta"):
            built = Wav2LipGenerator(spec_with_widths(g.spec, widths))
        assert cost(widths) == count_complexity(built, face, mel), variant
    full_cost = WAV2LIP_OPS.width_cost(g)({})
    assert full_cost["macs_physical"] < full_cost["macs_output"]
    with pytest.raises(PruningError, match=r"counted on a face \(B, 6, 96, 96\)"):
        WAV2LIP_OPS.width_cost(g, (1, 3, 256, 256))


def test_width_cost_reference_numbers(full):
    cost = WAV2LIP_OPS.width_cost(full)
    c = cost({})
    assert c["params"] == 36_298_035 and round(c["macs_physical"] / 1e9, 2) == 3.97
    assert cost({"fe6": 1, "fd0": 1}) == count_complexity(
        Wav2LipGenerator(spec_with_widths(full.spec, {"fe6": 1, "fd0": 1})).to("meta")
    )


# ------------------------------------------------------------------------------------------
# importance
# ------------------------------------------------------------------------------------------


def test_importance_for_every_group(small, registered):
    fam, _ = registered
    for name in fam.groups(small):
        conv, bn = fam.layer_filters(small, name)
        w = conv.weight.detach()
        rows = (w.transpose(0, 1) if isinstance(conv, nn.ConvTranspose2d) else w).reshape(
            conv.out_channels, -1
        )
        l1, used = filter_importance(small, name, "l1")
        assert used == "l1" and torch.allclose(l1, rows.abs().sum(1).double())
        l2, _ = filter_importance(small, name, "l2")
        assert torch.allclose(l2, rows.pow(2).sum(1).sqrt().double())
        b, used = filter_importance(small, name, "bn")
        assert used == "bn" and torch.equal(b, bn.weight.detach().abs().double())
        r1, _ = filter_importance(small, name, "random", seed=4)
        r2, _ = filter_importance(small, name, "random", seed=4)
        assert torch.equal(r1, r2) and r1.numel() == fam.layer_width(small, name)


# ------------------------------------------------------------------------------------------
# the strategies end to end through the (test-registered) family
# ------------------------------------------------------------------------------------------


def _runs(g):
    face, mel = _inputs()
    with torch.no_grad():
        assert g(face, mel).shape == (2, 3, 96, 96)


def test_strategies_end_to_end(small, registered, tmp_path):
    fam, ops = registered
    assert family_of(small) is fam and isinstance(ops, Wav2LipPruningOps)
    shape = fam.input_shape(small)

    new, info = prune(small, "single", layer="fd3", ratio=0.5)
    assert info["layers"] == ["fd3"] and group_widths(new)["fd3"] == 48
    _runs(new)

    new, info = prune(small, "inner", ratio=0.75)
    assert info["levels"] == [5, 6] and info["layers"] == ["fe5", "fe6", "fd0", "fd1", "fd2"]
    assert all(info["widths"]["groups"][g] == 32 for g in info["layers"])
    assert info["widths"]["groups"]["fd3"] == 96 and info["widths"]["groups"]["audio4"] == 128
    _runs(new)
    inner = new

    cuts = {}
    for k in (1, 2):
        cuts[k], info = prune(small, "cut", k=k)
        assert info["strategy"] == "cut" and info["cut"] == k and info["params"] == count_parameters(cuts[k])
        _runs(cuts[k])
    assert info["widths"]["cut"] == 2 and "fe5" not in info["widths"]["groups"]
    with pytest.raises(PruningError, match="k=3 is refused"):
        prune(small, "cut", k=3)

    target = count_parameters(cuts[1])
    for strategy in ("global-uniform", "global-threshold"):
        new, info = prune(small, strategy, match_model=cuts[1], match_metric="params", input_shape=shape)
        assert abs(count_parameters(new) - target) <= 0.01 * target, strategy
        assert abs(info["budget"]["rel_error"]) <= 0.01
        assert set(info["layers"]) <= set(REF_GROUPS)
        _runs(new)
        if strategy == "global-threshold":
            assert len(info["layers"]) > 1  # one threshold across groups, not one group emptied

    # the inner variant's budget, matched too
    new, info = prune(small, "global-uniform", match_model=inner, input_shape=shape)
    assert abs(info["budget"]["rel_error"]) <= 0.01
    _runs(new)

    # checkpoints record the family and rebuild through it
    for g in (inner, cuts[2], new):
        path = tmp_path / "g.pt"
        save_generator(path, g, meta={"pruning": {"strategy": "test"}})
        assert load_checkpoint(path)["family"] == "wav2lip"
        back = generator_from_checkpoint(path).eval()
        assert type(back) is Wav2LipGenerator and back.spec == g.spec
        face, mel = _inputs()
        with torch.no_grad():
            assert torch.equal(back(face, mel), g(face, mel))


def test_strategies_on_a_cut_model(small, registered):
    cut1, _ = prune(small, "cut", k=1)
    new, info = prune(cut1, "inner", ratio=0.5)
    assert info["levels"] == [5] and info["layers"] == ["fe5", "fd2"]
    _runs(new)
    new, info = prune(cut1, "global-threshold", ratio=0.3)
    _runs(new)


# ------------------------------------------------------------------------------------------
# Torch-Pruning (DepGraph) cross-check, as tests/test_torch_pruning_crosscheck.py for pix2pix
# ------------------------------------------------------------------------------------------


def test_torch_pruning_crosscheck(small, registered):
    """Same per-group ratios, L1 of each group's first conv (``group_reduction="first"``):
    Torch-Pruning's dependency graph finds the same groups (residual convs coupled by their
    additions, the concatenated skips, the audio → fd0 edge), removes the same filters and
    gives the same parameter count and function.  FE6 and audio4 are left out: their closing
    1x1 conv is not residual, so Torch-Pruning makes its input an independent group, while
    the spec gives both convs one width (our group couples them)."""
    tp = pytest.importorskip("torch_pruning")
    from unetprune.pruning import prune_layers

    fam, _ = registered
    cycle = [0.3, 0.5, 0.25, 0.7, 0.6, 0.45, 0.1, 0.8, 0.35]
    groups = [n for n in fam.groups(small) if n not in ("fe6", "audio4")]
    ratios = {n: cycle[i % len(cycle)] for i, n in enumerate(groups)}
    model = copy.deepcopy(small)
    convs = {n: fam.layer_filters(model, n)[0] for n in ratios}
    imp = tp.importance.MagnitudeImportance(p=1, normalizer=None, group_reduction="first")
    pruner = tp.pruner.MetaPruner(
        model,
        _inputs(1),
        importance=imp,
        pruning_ratio=0.0,
        pruning_ratio_dict={convs[n]: r for n, r in ratios.items()},
        ignored_layers=[model.out[1]],
        global_pruning=False,
    )
    name_of = {id(m): n for n, m in convs.items()}
    removed = {}
    for group in pruner.step(interactive=True):
        dep, idxs = group[0]
        assert id(dep.target.module) in name_of, f"unexpected group root {dep.target.module}"
        removed[name_of[id(dep.target.module)]] = {int(i) for i in idxs}
        group.prune()
    ours, info = prune_layers(small, ratios, importance="l1")
    assert set(removed) == set(ratios)
    for n in ratios:
        kept = [j for j in range(fam.layer_width(small, n)) if j not in removed[n]]
        assert info["kept"][n]["indices"] == kept, n
    assert count_parameters(ours) == count_parameters(model)
    face, mel = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(ours(face, mel), model.eval()(face, mel), atol=1e-6, rtol=0)
