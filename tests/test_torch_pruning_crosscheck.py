"""Cross-check the surgery against Torch-Pruning (DepGraph) on the same U-Net.

Same network, same per-layer ratios, L1 importance of each filter's own weights
(``MagnitudeImportance(p=1, normalizer=None, group_reduction="first")``, the
"standard L1-norm of the first layer in a group" of Torch-Pruning's docs): both must
remove the same filters and give the same parameter count and the same function.
Torch-Pruning's local pruning keeps ``int(n * (1 - ratio))`` channels; so does
``unetprune.pruning.n_keep`` (the ratios below include cases where
``n - floor(n * ratio)`` would differ).
"""

import copy

import pytest
import torch
from torch import nn

from unetprune.metrics.complexity import count_parameters
from unetprune.families.pix2pix.unet import UNetSpec, build_generator
from unetprune.pruning import prunable_layers, prune_layers

tp = pytest.importorskip("torch_pruning")

RATIOS = [0.3, 0.5, 0.25, 0.7, 0.6, 0.45, 0.1, 0.8, 0.35]  # cycled over the prunable layers


@pytest.fixture(scope="module")
def setup():
    g = build_generator(UNetSpec.reference(5, 8), seed=0)  # widths 8-16-32-64-64, 32x32 input
    with torch.no_grad():  # non-trivial BN so the function check means something
        gen = torch.Generator().manual_seed(1)
        for m in g.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(1 + 0.3 * torch.randn(m.num_features, generator=gen))
                m.bias.copy_(0.2 * torch.randn(m.num_features, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=gen))
    g.eval()
    ratios = {name: RATIOS[i % len(RATIOS)] for i, name in enumerate(prunable_layers(g))}
    return g, ratios


def _torch_pruning(g, ratios):
    model = copy.deepcopy(g)
    convs = {name: getattr(model, name).conv for name in ratios}
    imp = tp.importance.MagnitudeImportance(p=1, normalizer=None, group_reduction="first")
    pruner = tp.pruner.MetaPruner(
        model,
        torch.randn(1, 3, 32, 32),
        importance=imp,
        pruning_ratio=0.0,
        pruning_ratio_dict={convs[n]: r for n, r in ratios.items()},
        ignored_layers=[model.up1.conv],
        global_pruning=False,
    )
    name_of = {id(m): n for n, m in convs.items()}
    removed = {}
    for group in pruner.step(interactive=True):
        dep, idxs = group[0]
        root = dep.target.module
        assert id(root) in name_of, f"unexpected group root {root}"
        removed[name_of[id(root)]] = sorted(int(i) for i in idxs)
        group.prune()
    return model, removed


def test_same_kept_indices_params_and_function(setup):
    g, ratios = setup
    tp_model, removed = _torch_pruning(g, ratios)
    ours, info = prune_layers(g, ratios, importance="l1")
    assert set(removed) == set(ratios)  # one independent group per prunable layer
    for name in ratios:
        n = getattr(g, name).conv.out_channels
        tp_kept = [j for j in range(n) if j not in set(removed[name])]
        assert info["kept"][name]["indices"] == tp_kept, name
    assert count_parameters(ours) == count_parameters(tp_model)
    for name in prunable_layers(g):
        a, b = getattr(ours, name).conv, getattr(tp_model, name).conv
        assert a.weight.shape == b.weight.shape and torch.equal(a.weight, b.weight), name
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), tp_model.eval()(x), atol=1e-6, rtol=0)


def test_rounding_matches_torch_pruning_where_floor_rule_differs(setup):
    g, _ = setup
    # down2 has 16 filters: 16 * 0.7 = 11.2 -> TP keeps 11; n - floor(n * 0.3) would keep 12
    ratios = {"down2": 0.3, "up3": 0.3}
    tp_model, removed = _torch_pruning(g, ratios)
    ours, info = prune_layers(g, ratios)
    assert info["kept"]["down2"]["n_kept"] == 11 == 16 - len(removed["down2"])
    assert count_parameters(ours) == count_parameters(tp_model)
