"""Complexity accounting: parameters, MACs in both conventions, latency labels."""

import pytest
import torch
from torch import nn

from unetprune.metrics.complexity import (
    complexity_report,
    count_all,
    count_parameters,
    macs_by_layer,
    measure_latency,
)
from unetprune.families.pix2pix.unet import UNetGenerator, UNetSpec, build_generator
from unetprune.families.pix2pix.unet import layers_of_levels


def _meta(spec):
    with torch.device("meta"):
        return UNetGenerator(spec)


@pytest.fixture(scope="module")
def unet256():
    return _meta(UNetSpec.reference(8))


def test_unet256_params_and_macs(unet256):
    assert count_parameters(unet256) == 54_414_531
    c = count_all(unet256, (1, 3, 256, 256))
    phys, out = c["macs_physical"], c["macs_output"]
    assert phys == pytest.approx(6.05e9, rel=0.005)
    assert out == pytest.approx(18.14e9, rel=0.005)
    # exact analytic values (conv MACs only)
    assert (phys, out) == (6_048_186_368, 18_140_364_800)
    assert count_all(unet256, (1, 3, 256, 256)) == {
        "params": 54_414_531,
        "macs_physical": phys,
        "macs_output": out,
    }


@pytest.mark.parametrize(
    "num_downs,params,gmacs",
    [(7, 41_829_571, None), (6, 29_244_611, None), (5, 16_659_651, None), (4, 6_171_843, 4.45)],
)
def test_depth_cut_reference_figures(num_downs, params, gmacs):
    g = _meta(UNetSpec.reference(num_downs))
    assert count_parameters(g) == params
    if gmacs is not None:
        assert count_all(g, (1, 3, 256, 256))["macs_physical"] == pytest.approx(gmacs * 1e9, rel=0.005)


def test_inner_layers_hold_most_params_few_macs(unet256):
    """docs/method.md: the eight 512-wide inner layers hold ~85% of params but ~18% of MACs."""
    per = macs_by_layer(unet256, (1, 3, 256, 256))
    inner = [f"{layer}.conv" for layer in layers_of_levels(range(5, 9))]
    p_inner = sum(getattr(unet256, n.split(".")[0]).conv.weight.numel() for n in inner)
    assert p_inner / 54_414_531 == pytest.approx(0.85, abs=0.02)
    m_inner = sum(per[n]["physical"] for n in inner) / sum(v["physical"] for v in per.values())
    assert m_inner == pytest.approx(0.18, abs=0.03)


def test_conv_transpose_conventions_by_hand():
    m = nn.ConvTranspose2d(6, 4, kernel_size=4, stride=2, padding=1)
    c = nn.Conv2d(6, 4, kernel_size=4, stride=2, padding=1)
    # transposed: 5x5 input -> 10x10 output
    t = count_all(m, (2, 6, 5, 5))
    assert t["macs_physical"] == 2 * 25 * 6 * 4 * 16
    assert t["macs_output"] == 2 * 100 * 6 * 4 * 16
    assert t["params"] == 6 * 4 * 16 + 4
    # ordinary conv: both conventions count per output pixel: 10x10 -> 5x5
    expected = 25 * 6 * 4 * 16
    assert (
        count_all(c, (1, 6, 10, 10))["macs_physical"]
        == count_all(c, (1, 6, 10, 10))["macs_output"]
        == expected
    )


def test_counting_leaves_model_state_untouched():
    g = build_generator(UNetSpec.reference(5, 8), seed=0).train()
    before = {k: v.clone() for k, v in g.state_dict().items()}
    count_all(g, (1, 3, 32, 32))
    assert all(torch.equal(before[k], v) for k, v in g.state_dict().items())
    assert g.training


def test_latency_and_report_labels():
    g = build_generator(UNetSpec.reference(5, 8), seed=0)
    lat = measure_latency(g, (1, 3, 32, 32), "cpu", threads=1, warmup=1, iters=3)
    assert lat["device"] == "cpu" and lat["mode"] == "eager" and lat["threads"] == 1
    assert lat["batch"] == 1 and lat["iters"] == 3 and lat["median_ms"] > 0
    assert g.training  # mode restored
    rep = complexity_report(g, (1, 3, 32, 32), latency=True, threads=1, warmup=1, iters=2)
    assert rep["params"] == count_parameters(g)
    assert rep["macs_physical"] < rep["macs_output"]
    assert set(rep["mac_conventions"]) == {"physical", "output"}
    assert "Conv2d and ConvTranspose2d" in rep["macs_scope"]
    modes = {(e["device"], e["mode"]) for e in rep["latency"]}
    assert ("cpu", "eager") in modes
    if torch.cuda.is_available():
        assert {("cuda", "eager"), ("cuda", "cuda_graph")} <= modes
    assert complexity_report(g, (1, 3, 32, 32), latency=False)["latency"] == []


@pytest.mark.gpu
def test_cuda_latency_graph():
    g = build_generator(UNetSpec.reference(8), seed=0)
    e = measure_latency(g, (1, 3, 256, 256), "cuda", warmup=3, iters=10)
    cg = measure_latency(g, (1, 3, 256, 256), "cuda", warmup=3, iters=10, cuda_graph=True)
    assert e["mode"] == "eager" and cg["mode"] == "cuda_graph" and cg["median_ms"] > 0
