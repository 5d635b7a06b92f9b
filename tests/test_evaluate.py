"""The Evaluator and `unetprune evaluate`: one JSON with every metric, repeatable, and
clear errors for missing weights and mismatched sizes."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from unetprune.checkpoint import save_generator
from unetprune.cli import main
from unetprune.config import load_config
from unetprune.data.demo import build_demo_dataset
from unetprune.evaluate import EvaluationError, Evaluator, evaluate_checkpoint
from unetprune.models.unet import UNetSpec, build_generator, count_parameters


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval")
    build_demo_dataset(tmp / "data", image_size=32, n_train=2, n_val=2, n_test=8, progress=False)
    cache = tmp_path_factory.getbasetemp() / "fid-cache"  # stand-in weights shared across modules
    return tmp, cache


def _cfg(root, **evaluate):
    return load_config(None, {"data": {"root": str(root), "crop_size": 32, "load_size": 32},
                              "demo": {"image_size": 32}, "model": {"num_downs": 5, "ngf": 8},
                              "evaluate": {"fid_backend": "standin", **evaluate}})


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
    seg = r1["segmentation"]
    assert seg["name"] == "demo" and 0 <= seg["miou"] < 0.5 and len(seg["per_class_iou"]) == 8
    assert 0 < r1["l1"] < 2 and 0 < r1["psnr"] < 40 and -1 < r1["ssim"] < 1
    assert r1["complexity"]["params"] == count_parameters(g)
    assert r1["complexity"]["macs_physical"] > 0 and r1["complexity"]["macs_output"] > 0
    assert "torch_fidelity" in r1["versions"]
    json.dumps(r1, allow_nan=False)  # strict JSON


def test_real_stats_loaded_once_and_cached(setup, evaluator):
    tmp, cache = setup
    again = Evaluator(_cfg(tmp / "data"), "test", cache_dir=cache, latency=False)
    assert again.real_info["cache_hit"] and again.real_info["key"] == evaluator.real_info["key"]


def test_eval_mode_differs_and_is_recorded(setup):
    tmp, cache = setup
    ev = Evaluator(_cfg(tmp / "data", mode="eval", kid=False, segmentation="none"), "test",
                   cache_dir=cache, latency=False)
    r = ev.score(_gen())
    assert r["mode"] == "eval" and r["kid"] is None and r["segmentation"] is None
    g = _gen()
    ev.score(g)
    assert g.training  # the caller's train/eval flag is restored


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
    with pytest.raises(Exception, match="evaluate.drn_weights") as e:
        Evaluator(cfg, "test", cache_dir=cache, latency=False)
    assert "drn-d-105_ms_cityscapes.pth" in str(e.value)


def test_cli_writes_json_from_checkpoint_config(setup, capsys):
    tmp, cache = setup
    cfg = _cfg(tmp / "data")
    ckpt = tmp / "g.pt"
    save_generator(ckpt, _gen(), config=cfg)
    out = tmp / "eval" / "g.json"
    rc = main(["evaluate", "--checkpoint", str(ckpt), "--split", "test", "--out", str(out),
               "--cache-dir", str(cache), "--no-latency", "--set", "evaluate.max_images=6"])
    assert rc == 0
    r = json.loads(out.read_text())
    assert r["checkpoint"] == str(ckpt) and r["n_images"] == 6 and r["fid"]["n_images"] == 6
    assert r["fid"]["backend"] == "standin" and r["segmentation"]["name"] == "demo"
    assert {"l1", "psnr", "ssim", "complexity", "versions", "kid", "mode", "seed"} <= set(r)
    direct = evaluate_checkpoint(ckpt, None, "test", overrides=["evaluate.max_images=6"], cache_dir=cache,
                                 latency=False)
    assert direct["fid"]["value"] == r["fid"]["value"]


def test_cli_errors_are_one_line(setup, capsys):
    tmp, cache = setup
    rc = main(["evaluate", "--checkpoint", str(tmp / "missing.pt"), "--cache-dir", str(cache)])
    assert rc == 2 and "missing.pt" in capsys.readouterr().err
    ckpt = tmp / "g2.pt"
    save_generator(ckpt, _gen(), config=_cfg(tmp / "data"))
    rc = main(["evaluate", "--checkpoint", str(ckpt), "--cache-dir", str(cache), "--no-latency",
               "--set", "evaluate.fid_backend=inception-v3-compat",
               "--set", f"evaluate.inception_weights={tmp / 'nope.pth'}"])
    err = capsys.readouterr().err
    assert rc == 2 and "evaluate.inception_weights" in err and "nope.pth" in err
    (tmp / "data" / "empty").mkdir()
    rc = main(["evaluate", "--checkpoint", str(ckpt), "--cache-dir", str(cache), "--no-latency",
               "--set", f"data.root={tmp / 'data' / 'empty'}"])
    assert rc == 2 and "does not exist" in capsys.readouterr().err
