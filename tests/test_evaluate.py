"""The Evaluator and `unetprune evaluate`: one JSON with every metric, repeatable, and
clear errors for missing weights and mismatched sizes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from unetprune.checkpoint import save_generator
from unetprune.cli import main
from unetprune.config import load_config
from unetprune.data.demo import build_demo_dataset
from unetprune.data.aligned import AlignedDataset, to_uint8
from unetprune.evaluate import EvaluationError, Evaluator, evaluate_checkpoint
from unetprune.metrics.complexity import count_parameters
from unetprune.metrics.plugins import DEFAULT_METRICS, METRICS, Metric, build_metrics
from unetprune.metrics.segmentation import SegmentationError
from unetprune.families.pix2pix.unet import UNetSpec, build_generator
from unetprune.translate import generate_split


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval")
    build_demo_dataset(tmp / "data", image_size=32, n_train=2, n_val=2, n_test=8, progress=False)
    cache = tmp_path_factory.getbasetemp() / "fid-cache"  # stand-in weights shared across modules
    return tmp, cache


def _cfg(root, **evaluate):
    return load_config(
        None,
        {
            "data": {"root": str(root), "crop_size": 32, "load_size": 32},
            "demo": {"image_size": 32},
            "model": {"pix2pix": {"num_downs": 5, "ngf": 8}},
            "evaluate": {"fid_backend": "standin", **evaluate},
        },
    )


def _gen(seed=0):
    return build_generator(UNetSpec.reference(num_downs=5, ngf=8), seed=seed)


@pytest.fixture(scope="module")
def evaluator(setup):
    tmp, cache = setup
    return Evaluator(_cfg(tmp / "data"), "test", cache_dir=cache, latency=False)


def test_score_has_every_field_and_is_repeatable(evaluator):
    g = _gen()
    before = {k: v.clone() for k, v in g.state_dict().items()}
    r1 = evaluator.score(g)
    r2 = evaluator.score(g)
    assert r1["fid"]["value"] == r2["fid"]["value"] and r1["ssim"] == r2["ssim"]  # seeded dropout
    assert all(torch.equal(before[k], v) for k, v in g.state_dict().items())  # BN stats restored
    assert r1["split"] == "test" and r1["n_images"] == 8 and r1["image_size"] == 32
    assert r1["mode"] == "train_bn" and r1["seed"] == 0 and r1["amp"] == "off"
    fid = r1["fid"]
    assert fid["backend"] == "standin" and fid["n_images"] == 8 and fid["image_size"] == 32
    assert fid["split"] == "test" and fid["value"] > 0 and fid["extractor"]["seed"] == 0
    assert r1["kid"]["subset_size"] == 8 and r1["kid"]["backend"] == "standin"
    assert r1["batch_size"] == 16 and r1["batch_stats"] == "per_image"  # schema defaults
    assert list(r1) == [
        "split",
        "n_images",
        "image_size",
        "mode",
        "seed",
        "quantize",
        "batch_size",
        "batch_stats",
        "amp",
        "device",
        "dataset",
        "fid",
        "kid",
        "segmentation",
        "l1",
        "psnr",
        "ssim",
        "paired_definitions",
        "diversity",
        "complexity",
        "noise",
        "checkpoint",
        "versions",
        "timing_s",
        "started_at",
        "finished_at",
    ]
    assert list(r1["timing_s"]) == [
        "setup",
        "generate",
        "fid",
        "kid",
        "segmentation",
        "paired",
        "diversity",
        "complexity",
        "noise",
    ]
    assert (
        r1["quantize"] == "round" and r1["noise"]["bootstrap"] == 200
    )  # schema defaults (tests/test_noise.py)
    seg = r1["segmentation"]
    assert seg["name"] == "demo" and 0 <= seg["miou"] < 0.5 and len(seg["per_class_iou"]) == 8
    assert 0 < r1["l1"] < 2 and 0 < r1["psnr"] < 40 and -1 < r1["ssim"] < 1
    assert r1["complexity"]["params"] == count_parameters(g)
    assert r1["complexity"]["macs_physical"] > 0 and r1["complexity"]["macs_output"] > 0
    assert "torch_fidelity" in r1["versions"]
    json.dumps(r1, allow_nan=False)  # strict JSON


def test_real_stats_loaded_once_and_cached(setup, evaluator):
    tmp, cache = setup
    first = evaluator.metrics["fid"].real_info
    again = Evaluator(_cfg(tmp / "data"), "test", cache_dir=cache, latency=False).metrics["fid"].real_info
    assert again["cache_hit"] and again["key"] == first["key"]
    assert again["files_sha256"] == evaluator.eval_set.files_sha256


def test_eval_mode_differs_and_is_recorded(setup, evaluator):
    """The same generator scored in eval mode gives other images and other numbers than in
    train_bn mode (running BN statistics, no dropout), and the mode is recorded."""
    tmp, cache = setup
    ev = Evaluator(
        _cfg(tmp / "data", mode="eval", kid=False, segmentation="none"),
        "test",
        cache_dir=cache,
        latency=False,
    )
    g = _gen()
    r_eval, r_bn = ev.score(g), evaluator.score(g)
    assert r_eval["mode"] == "eval" and r_bn["mode"] == "train_bn"
    assert r_eval["kid"] is None and r_eval["segmentation"] is None
    assert r_eval["fid"]["value"] != pytest.approx(r_bn["fid"]["value"], rel=1e-3)
    assert r_eval["l1"] != pytest.approx(r_bn["l1"], rel=1e-3)
    assert not torch.equal(ev.generate(g), evaluator.generate(g))
    assert g.training  # the caller's train/eval flag is restored
    # eval mode is deterministic without seeding: a generator in eval() gives the same images
    with torch.no_grad():
        direct = torch.cat([g.eval()(x[None].float() / 127.5 - 1) for x in ev.eval_set.inputs])
    g.train()
    assert torch.equal(
        ev.generate(g), torch.stack([torch.from_numpy(to_uint8(y)).permute(2, 0, 1) for y in direct])
    )


def test_generation_loop_matches_translate_split(setup, evaluator):
    """The Evaluator's images are the pixels `translate` / the sample grids make of the same
    inputs (one generation loop, batch 1, seeded dropout)."""
    tmp, _ = setup
    g = _gen(seed=3)
    ds = AlignedDataset(tmp / "data", "test", "AtoB", load_size=32, crop_size=32, train=False)
    ref = [to_uint8(o) for _, o, _ in generate_split(g, ds, "train_bn", seed=0)]
    fakes = evaluator.generate(g)
    assert fakes.dtype == torch.uint8 and fakes.shape == (8, 3, 32, 32)
    for i, r in enumerate(ref):
        assert np.array_equal(fakes[i].permute(1, 2, 0).numpy(), r)
    # and the evaluation set holds the dataset's pixels exactly
    assert all(
        torch.equal(evaluator.eval_set.targets[i], torch.from_numpy(to_uint8(ds[i]["B"])).permute(2, 0, 1))
        for i in range(len(ds))
    )


def test_train_bn_outputs_do_not_depend_on_the_batch_size():
    """train_bn with per-image statistics and dropout streams (the default): batches of 1, 5 and
    12 give the same outputs (the batch-1 reference's per-image BatchNorm, each image's own
    dropout masks), the model is left exactly as it was; whole-batch statistics differ."""
    from contextlib import closing

    from unetprune.translate import generate_batches

    g = build_generator(UNetSpec.reference(num_downs=6, ngf=4), seed=2)  # 6 levels: dropout in level 5
    assert any(isinstance(m, nn.Dropout) for m in g.modules())
    before = {k: v.clone() for k, v in g.state_dict().items()}
    x = torch.rand(12, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1

    def run(bs, per_image=True, seed=0):
        with closing(
            generate_batches(
                g, (x[i : i + bs] for i in range(0, 12, bs)), "train_bn", seed, per_image_stats=per_image
            )
        ) as ys:
            return torch.cat(list(ys))

    one = run(1)
    for bs in (5, 12):
        assert torch.allclose(run(bs), one, atol=1e-5), bs
    q = lambda y: torch.from_numpy(np.stack([to_uint8(t) for t in y])).int()  # noqa: E731
    assert int((q(run(12)) - q(one)).abs().max()) <= 1
    assert float((run(12, per_image=False) - one).abs().max()) > 0.05  # batch statistics: other images mix in
    assert float((run(1, seed=1) - one).abs().max()) > 0.05  # the seed moves the dropout masks
    assert all(torch.equal(before[k], v) for k, v in g.state_dict().items()) and g.training
    assert not any("forward" in vars(m) for m in g.modules())  # nothing left patched


def test_metric_plugins_registry_and_custom_plugin(setup):
    """Metrics are plug-ins: the default set fills the result in registry order, and a new
    plug-in (a stand-in for LSE) is set up once and scores the generated uint8 images."""
    assert DEFAULT_METRICS == ("fid", "kid", "segmentation", "paired", "diversity", "complexity")
    assert all(METRICS[n].name == n for n in DEFAULT_METRICS)
    with pytest.raises(ValueError, match="unknown metric.*nope"):
        build_metrics(["fid", "nope"])

    calls = []

    class MeanPixel(Metric):
        name, keys = "mean_pixel", ("mean_pixel",)

        def setup(self, eval_set, ctx):
            super().setup(eval_set, ctx)
            calls.append(eval_set.n)

        def score(self, fakes, generator):
            return {"mean_pixel": float(fakes.float().mean())}

    METRICS[MeanPixel.name] = MeanPixel
    try:
        tmp, cache = setup
        ev = Evaluator(
            _cfg(tmp / "data"), "test", cache_dir=cache, latency=False, metrics=("paired", "mean_pixel")
        )
        g = _gen()
        r = ev.score(g)
        r2 = ev.score(g)
    finally:
        del METRICS[MeanPixel.name]
    assert calls == [8]  # set up once
    assert r["mean_pixel"] == pytest.approx(float(ev.generate(g).float().mean())) == r2["mean_pixel"]
    assert (
        "fid" not in r
        and r["l1"] > 0
        and set(r["timing_s"]) == {"setup", "generate", "paired", "mean_pixel", "noise"}
    )
    with pytest.raises(ValueError, match="kid metric reuses the fid metric"):
        Evaluator(_cfg(tmp / "data"), "test", cache_dir=cache, latency=False, metrics=("kid",))


class _Upsample(nn.Module):
    def __init__(self, g):
        super().__init__()
        self.g = g

    def forward(self, x):
        return nn.functional.interpolate(self.g(x), scale_factor=2)


def test_mismatched_generated_size_names_key(evaluator):
    with pytest.raises(EvaluationError, match="data.crop_size"):
        evaluator.score(_Upsample(_gen()))


def test_cityscapes_without_drn_weights_fails_fast_naming_key(setup):
    tmp, cache = setup
    cfg = _cfg(tmp / "data", segmentation="cityscapes", drn_weights=str(tmp / "drn-d-105_ms_cityscapes.pth"))
    with pytest.raises(SegmentationError, match="evaluate.drn_weights") as e:
        Evaluator(cfg, "test", cache_dir=cache, latency=False)
    assert "drn-d-105_ms_cityscapes.pth" in str(e.value)


def test_cli_writes_json_from_checkpoint_config(setup, capsys):
    tmp, cache = setup
    cfg = _cfg(tmp / "data")
    ckpt = tmp / "g.pt"
    save_generator(ckpt, _gen(), config=cfg)
    out = tmp / "eval" / "g.json"
    rc = main(
        [
            "evaluate",
            "--checkpoint",
            str(ckpt),
            "--split",
            "test",
            "--out",
            str(out),
            "--cache-dir",
            str(cache),
            "--no-latency",
            "--set",
            "evaluate.max_images=6",
        ]
    )
    assert rc == 0
    r = json.loads(out.read_text())
    assert r["checkpoint"] == str(ckpt) and r["n_images"] == 6 and r["fid"]["n_images"] == 6
    assert r["fid"]["backend"] == "standin" and r["segmentation"]["name"] == "demo"
    assert {"l1", "psnr", "ssim", "complexity", "versions", "kid", "mode", "seed"} <= set(r)
    direct = evaluate_checkpoint(
        ckpt, None, "test", overrides=["evaluate.max_images=6"], cache_dir=cache, latency=False
    )
    assert direct["fid"]["value"] == r["fid"]["value"]


def test_cli_times_latency_at_latency_threads(setup, capsys):
    """--latency-threads: both latency timings run at N threads whatever the scoring runs on,
    and the process's thread setting is left as it was; a count below 1 is refused."""
    tmp, cache = setup
    ckpt = tmp / "g_threads.pt"
    save_generator(ckpt, _gen(), config=_cfg(tmp / "data"))
    out = tmp / "eval" / "g_threads.json"
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        args = [
            "evaluate",
            "--checkpoint",
            str(ckpt),
            "--cache-dir",
            str(cache),
            "--set",
            "evaluate.max_images=6",
        ]
        assert main([*args, "--latency-threads", "1", "--out", str(out)]) == 0
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    lat = json.loads(out.read_text())["complexity"]["latency"]
    assert [(e["mode"], e["threads"]) for e in lat] == [("eager", 1), ("onnxruntime", 1)]
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main([*args, "--latency-threads", "0"])
    assert exc.value.code == 2 and "--latency-threads" in capsys.readouterr().err


def test_cli_errors_are_one_line(setup, capsys):
    tmp, cache = setup
    rc = main(["evaluate", "--checkpoint", str(tmp / "missing.pt"), "--cache-dir", str(cache)])
    assert rc == 2 and "missing.pt" in capsys.readouterr().err
    ckpt = tmp / "g2.pt"
    save_generator(ckpt, _gen(), config=_cfg(tmp / "data"))
    rc = main(
        [
            "evaluate",
            "--checkpoint",
            str(ckpt),
            "--cache-dir",
            str(cache),
            "--no-latency",
            "--set",
            "evaluate.fid_backend=inception-v3-compat",
            "--set",
            f"evaluate.inception_weights={tmp / 'nope.pth'}",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "evaluate.inception_weights" in err and "nope.pth" in err
    (tmp / "data" / "empty").mkdir()
    rc = main(
        [
            "evaluate",
            "--checkpoint",
            str(ckpt),
            "--cache-dir",
            str(cache),
            "--no-latency",
            "--set",
            f"data.root={tmp / 'data' / 'empty'}",
        ]
    )
    assert rc == 2 and "does not exist" in capsys.readouterr().err
