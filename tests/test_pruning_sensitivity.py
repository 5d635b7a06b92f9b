"""Sensitivity sweep primitive: every layer x ratio, one JSON per layer."""

import json

import pytest
import torch

from unetprune.metrics.complexity import count_parameters
from unetprune.families.pix2pix.unet import UNetSpec, build_generator
from unetprune.pruning import PruningError, prunable_layers, sensitivity_sweep


@pytest.fixture(scope="module")
def g():
    return build_generator(UNetSpec.reference(5, 8), seed=0).eval()


def test_sweep_all_layers_hands_over_one_result_each(g):
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = g(x)
    calls = []

    def metric(model):
        calls.append(model)
        with torch.no_grad():
            return {"l1": float((model(x) - ref).abs().mean())}

    ratios = [0.0, 0.5, 0.9]
    handed = {}
    res = sensitivity_sweep(g, None, ratios, metric, lambda name, r: handed.setdefault(name, json.dumps(r)))
    layers = prunable_layers(g)
    assert len(calls) == len(layers) * len(ratios)
    assert list(handed) == layers  # each layer handed over once, as soon as it is done
    for name in layers:
        d = json.loads(handed[name])
        assert d == res[name]
        assert d["layer"] == name and d["ratios"] == ratios and len(d["metrics"]) == 3
        assert d["metrics"][0]["l1"] == 0.0  # ratio 0 = the unpruned model
        assert d["params"][0] == d["params_full"] > d["params"][1] > d["params"][2]
        assert d["macs_physical"][0] >= d["macs_physical"][2] and len(d["macs_output"]) == 3
        n = getattr(g, name).conv.out_channels
        assert d["widths"] == [n, int(n * 0.5), max(1, int(n * 0.1))]
    # the metric sees a pruned copy; the original is untouched
    assert calls[1].down1.conv.out_channels == 4 and g.down1.conv.out_channels == 8


def test_sweep_single_layer_and_errors(g):
    handed = []
    res = sensitivity_sweep(
        g,
        "up3",
        [0.25],
        lambda m: {"p": count_parameters(m)},
        lambda name, r: handed.append(name),
        importance="random",
        seed=3,
        include_full=True,
    )
    assert list(res) == ["up3"] and handed == ["up3"]
    r = res["up3"]
    assert r["importance"] == "random" and r["metrics_full"]["p"] == r["params_full"]
    with pytest.raises(PruningError, match="unknown layer"):
        sensitivity_sweep(g, ["down7"], [0.5], lambda m: {}, None)
    with pytest.raises(PruningError, match=r"\[0, 1\)"):
        sensitivity_sweep(g, ["down2"], [1.0], lambda m: {}, None)
