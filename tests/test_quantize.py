"""evaluate.quantize: ``truncate`` equals the reference ``tensor2im`` of pix2pix / GAN
Compression, ``translate`` writes exactly those pixels, and FID/KID/mIoU/L1 computed in memory
equal the same metrics computed from the written PNGs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from unetprune.checkpoint import save_generator
from unetprune.config import load_config
from unetprune.data.aligned import DataError, from_uint8, quantize_uint8, to_uint8
from unetprune.evaluate import Evaluator
from unetprune.metrics import fid as F
from unetprune.metrics.paired import l1 as paired_l1
from unetprune.metrics.segmentation import demo_miou
from unetprune.families.pix2pix.unet import UNetSpec, build_generator
from unetprune.translate import _folder_input, generate_batches, translate_folder


def tensor2im_pix2pix(image_tensor: torch.Tensor) -> np.ndarray:
    """junyanz/pytorch-CycleGAN-and-pix2pix util.tensor2im, written out for one (1, 3, H, W) batch:
    float32 numpy, ``(x + 1) / 2.0 * 255.0``, then ``astype(uint8)`` (no clipping)."""
    a = image_tensor[0].cpu().float().numpy()
    a = (np.transpose(a, (1, 2, 0)) + 1) / 2.0 * 255.0
    return a.astype(np.uint8)


def tensor2im_gan_compression(image_tensor: torch.Tensor) -> np.ndarray:
    """mit-han-lab/gan-compression utils.util.tensor2im (normalize=True): the same, clipped to
    [0, 255] before the cast."""
    a = image_tensor[0].cpu().float().numpy()
    a = (np.transpose(a, (1, 2, 0)) + 1) / 2.0 * 255.0
    return np.clip(a, 0, 255).astype(np.uint8)


def _tensors():
    g = torch.Generator().manual_seed(0)
    inside = torch.tanh(torch.randn(6, 3, 16, 16, generator=g) * 2)  # generator outputs
    levels = (torch.arange(256, dtype=torch.float32) / 127.5 - 1).view(1, 1, 16, 16).expand(1, 3, 16, 16)
    return torch.cat([inside, levels, torch.ones(1, 3, 16, 16), -torch.ones(1, 3, 16, 16)])


def test_truncate_equals_reference_tensor2im():
    x = _tensors()
    q = quantize_uint8(x, "truncate")
    for i in range(len(x)):
        ref = tensor2im_pix2pix(x[i : i + 1])
        assert np.array_equal(q[i].permute(1, 2, 0).numpy(), ref)
        assert np.array_equal(ref, tensor2im_gan_compression(x[i : i + 1]))  # in range: the two agree
        assert np.array_equal(to_uint8(x[i], "truncate"), ref)  # the single-image entry point
    # out of range: GAN Compression's clip
    wild = torch.linspace(-1.5, 1.5, 3 * 8 * 8).view(1, 3, 8, 8)
    assert np.array_equal(
        quantize_uint8(wild, "truncate")[0].permute(1, 2, 0).numpy(), tensor2im_gan_compression(wild)
    )
    # truncation is never above rounding and at most one level below
    r = quantize_uint8(x, "round").int()
    d = r - q.int()
    assert int(d.min()) == 0 and int(d.max()) == 1
    assert torch.equal(quantize_uint8(x), quantize_uint8(x, "round"))  # default unchanged
    with pytest.raises(ValueError, match="evaluate.quantize must be one of"):
        quantize_uint8(x, "floor")


@pytest.fixture(scope="module")
def setup(tiny_demo, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("quantize")
    cfg = load_config(
        None,
        {
            "data": {"root": str(tiny_demo), "crop_size": 32, "load_size": 32},
            "demo": {"image_size": 32},
            "model": {"pix2pix": {"num_downs": 5, "ngf": 8}},
            "evaluate": {"fid_backend": "standin", "quantize": "truncate", "noise_seeds": 1, "bootstrap": 0},
        },
    )
    spec = UNetSpec.reference(num_downs=5, ngf=8)
    spec.dropout_levels = [3, 4]  # stochastic generation: the seeds must line up too
    g = build_generator(spec, seed=2)
    ckpt = tmp / "g.pt"
    save_generator(ckpt, g, config=cfg)
    return cfg, g, ckpt, tmp


def test_translate_pngs_equal_tensor2im_and_evaluator_pixels(setup, tiny_demo):
    cfg, g, ckpt, tmp = setup
    out = tmp / "translated"
    files = translate_folder(ckpt, tiny_demo / "test", out, mode="train_bn", seed=cfg["seed"], progress=False)
    assert [f.name for f in files] == [p.stem + ".png" for p in sorted((tiny_demo / "test").iterdir())]
    # the reference: the raw generator outputs of the same inputs through tensor2im
    inputs = [_folder_input(p, 32, "AtoB") for p in sorted((tiny_demo / "test").iterdir())]
    g2 = build_generator(g.spec, init=False)
    g2.load_state_dict(g.state_dict())
    raw = list(generate_batches(g2, iter(inputs), "train_bn", cfg["seed"]))
    pngs = [np.asarray(Image.open(f)) for f in files]
    for png, y in zip(pngs, raw):
        assert np.array_equal(png, tensor2im_pix2pix(y))
    # the Evaluator's in-memory images are those pixels exactly
    ev = Evaluator(cfg, "test", cache_dir=tmp / "cache", latency=False)
    fakes = ev.generate(g)
    assert np.array_equal(fakes.permute(0, 2, 3, 1).numpy(), np.stack(pngs))
    # and differ from the rounding the default writes
    rounded = translate_folder(ckpt, tiny_demo / "test", tmp / "rounded", quantize="round", progress=False)
    diff = np.stack([np.asarray(Image.open(f)) for f in rounded]).astype(int) - np.stack(pngs).astype(int)
    assert diff.min() == 0 and diff.max() == 1 and 0.2 < (diff == 1).mean() < 0.8
    with pytest.raises(DataError, match="quantize must be one of round, truncate"):
        translate_folder(ckpt, tiny_demo / "test", tmp / "bad", quantize="floor", progress=False)


def test_metrics_in_memory_equal_metrics_from_written_pngs(setup, tiny_demo):
    cfg, g, ckpt, tmp = setup
    ev = Evaluator(cfg, "test", cache_dir=tmp / "cache", latency=False)
    r = ev.score(g)
    assert r["quantize"] == "truncate"
    files = translate_folder(ckpt, tiny_demo / "test", tmp / "fake", seed=cfg["seed"], progress=False)
    fake_png = torch.from_numpy(np.stack([np.asarray(Image.open(f)) for f in files])).permute(0, 3, 1, 2)
    (tmp / "real").mkdir(exist_ok=True)
    for i, t in enumerate(ev.eval_set.targets):
        Image.fromarray(t.permute(1, 2, 0).numpy()).save(tmp / "real" / f"{i:03d}.png")
    ref = F.fidelity_folder_metrics(
        tmp / "fake", tmp / "real", ev.metrics["fid"].extractor, kid=True, seed=cfg["seed"]
    )
    assert r["fid"]["value"] == pytest.approx(ref["frechet_inception_distance"], rel=1e-5)
    assert r["kid"]["mean"] == pytest.approx(ref["kernel_inception_distance_mean"], rel=1e-5)
    assert r["segmentation"]["miou"] == demo_miou(fake_png, ev.eval_set.inputs, 8)["miou"]
    assert r["l1"] == pytest.approx(float(paired_l1(fake_png, ev.eval_set.targets).mean()), rel=1e-12)


def test_sample_grid_follows_the_config_and_roundtrip(setup, tiny_demo, tmp_path):
    from unetprune.data.aligned import AlignedDataset
    from unetprune.translate import generate_split, save_sample_grid

    cfg, g, _, _ = setup
    ds = AlignedDataset(tiny_demo, "test", "AtoB", load_size=32, crop_size=32, train=False)
    grid = np.asarray(Image.open(save_sample_grid(g, ds, tmp_path / "s.png", cfg=cfg, n=2)))
    outs = [o for _, o, _ in generate_split(g, [ds[0], ds[1]], cfg["evaluate"]["mode"], cfg["seed"])]
    for i, o in enumerate(outs):
        assert np.array_equal(grid[32 * i : 32 * (i + 1), 32:64], to_uint8(o, "truncate"))
    # rounding stays the exact inverse of from_uint8; truncation is not (the reference's bias)
    u8 = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16).expand(1, 3, 16, 16)
    assert torch.equal(quantize_uint8(from_uint8(u8), "round"), u8)
    t = quantize_uint8(from_uint8(u8), "truncate")
    assert int((u8.int() - t.int()).max()) == 1 and int((u8.int() - t.int()).min()) == 0
