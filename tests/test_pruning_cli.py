"""`unetprune prune`: files written, JSON fields, clear one-line errors."""

import json

import pytest
import torch

from unetprune.checkpoint import generator_from_checkpoint, load_checkpoint, save_generator
from unetprune.cli import main
from unetprune.metrics.complexity import count_all
from unetprune.families.pix2pix.unet import UNetSpec, build_generator


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    g = build_generator(UNetSpec.reference(6, 32), seed=0)
    path = d / "baseline.pt"
    save_generator(path, g, config={"data": {"crop_size": 64}}, meta={"stage": "baseline"})
    return path


def _run(*argv):
    return main(["prune", *map(str, argv)])


def test_inner_then_matched_global(ckpt, tmp_path):
    out = tmp_path / "inner.pt"
    assert (
        _run("--checkpoint", ckpt, "--strategy", "inner", "--levels", 5, 6, "--ratio", 0.75, "--out", out)
        == 0
    )
    s = json.loads(out.with_suffix(".json").read_text())
    g = generator_from_checkpoint(out)
    assert s["strategy"] == "inner" and s["ratio"] == 0.75
    assert s["layers"] == ["down5", "down6", "up6", "up5"]
    assert s["widths"] == {"enc": [32, 64, 128, 256, 64, 64], "dec": [3, 32, 64, 128, 64, 64]}
    assert s["input_shape"] == [1, 3, 64, 64]  # from the checkpoint config's crop size
    c = count_all(g, (1, 3, 64, 64))
    assert (s["params"], s["macs_physical"], s["macs_output"]) == (
        c["params"],
        c["macs_physical"],
        c["macs_output"],
    )
    meta = load_checkpoint(out)["meta"]
    assert meta["stage"] == "baseline" and meta["pruning"]["strategy"] == "inner"
    assert meta["pruning"]["kept"]["down5"]["n_kept"] == 64
    # a global baseline matched to the inner model's parameter count
    out2, js = tmp_path / "g.pt", tmp_path / "g_summary.json"
    assert (
        _run(
            "--checkpoint",
            ckpt,
            "--strategy",
            "global-uniform",
            "--match-params",
            out,
            "--out",
            out2,
            "--json",
            js,
        )
        == 0
    )
    s2 = json.loads(js.read_text())
    assert abs(s2["params"] / s["params"] - 1) <= 0.01
    assert s2["info"]["budget"]["metric"] == "params"
    # matched on output-based MACs with the normalised threshold
    out3 = tmp_path / "t.pt"
    assert (
        _run(
            "--checkpoint",
            ckpt,
            "--strategy",
            "global-threshold",
            "--normalize",
            "--match-macs",
            out,
            "--macs-convention",
            "output",
            "--out",
            out3,
        )
        == 0
    )
    s3 = json.loads(out3.with_suffix(".json").read_text())
    assert abs(s3["macs_output"] / s["macs_output"] - 1) <= 0.01


def test_global_threshold_defaults_are_fair_and_raw_is_explicit(ckpt, tmp_path):
    """By default the threshold is layer-normalised and capped at 90% per layer, recorded in the
    JSON; the raw threshold needs --no-normalize and says so."""
    ref = tmp_path / "cut.pt"
    assert _run("--checkpoint", ckpt, "--strategy", "cut", "--k", 2, "--out", ref) == 0
    out = tmp_path / "fair.pt"
    assert (
        _run("--checkpoint", ckpt, "--strategy", "global-threshold", "--match-params", ref, "--out", out) == 0
    )
    info = json.loads(out.with_suffix(".json").read_text())["info"]
    assert info["normalize"] is True and info["normalizer"] == "mean" and info["max_layer_ratio"] == 0.9
    assert "layer-normalised" in info["rule"] and "90%" in info["rule"]
    s = json.loads(out.with_suffix(".json").read_text())
    for name, k in s["kept"].items():
        assert k["n_kept"] >= 0.1 * k["n_before"], name
    raw = tmp_path / "raw.pt"
    assert (
        _run(
            "--checkpoint",
            ckpt,
            "--strategy",
            "global-threshold",
            "--no-normalize",
            "--max-layer-ratio",
            1,
            "--match-params",
            ref,
            "--out",
            raw,
        )
        == 0
    )
    info = json.loads(raw.with_suffix(".json").read_text())["info"]
    assert info["normalize"] is False and info["normalizer"] is None and info["max_layer_ratio"] == 1.0
    assert "not layer-normalised" in info["rule"]


def test_cut_and_single(ckpt, tmp_path):
    assert _run("--checkpoint", ckpt, "--strategy", "cut", "--k", 2, "--out", tmp_path / "c.pt") == 0
    g = generator_from_checkpoint(tmp_path / "c.pt")
    assert g.spec == UNetSpec.reference(4, 32)
    g(torch.randn(1, 3, 64, 64)).mean().backward()
    assert (
        _run(
            "--checkpoint",
            ckpt,
            "--strategy",
            "single",
            "--layer",
            "up4",
            "--ratio",
            0.5,
            "--importance",
            "l2",
            "--out",
            tmp_path / "s.pt",
        )
        == 0
    )
    assert generator_from_checkpoint(tmp_path / "s.pt").up4.conv.out_channels == 64


@pytest.mark.parametrize(
    "argv,msg",
    [
        (["--strategy", "single", "--layer", "down9", "--ratio", "0.5"], "unknown layer 'down9'"),
        (["--strategy", "single", "--layer", "up1", "--ratio", "0.5"], "RGB output"),
        (["--strategy", "global-uniform", "--ratio", "1.0"], "must be in [0, 1)"),
        (["--strategy", "inner", "--ratio", "-0.2"], "must be in [0, 1)"),
        (
            ["--strategy", "inner", "--ratio", "0.5", "--levels", "5", "6", "7", "8"],
            "level(s) [7, 8] do not exist",
        ),
        (["--strategy", "cut", "--k", "5"], "k must be in 1..4"),
        (["--strategy", "single", "--ratio", "0.5"], "needs a layer"),
    ],
)
def test_clear_errors(ckpt, tmp_path, capsys, argv, msg):
    out = tmp_path / "x.pt"
    assert _run("--checkpoint", ckpt, *argv, "--out", out) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("unetprune prune: error:") and msg in err and "\n" not in err
    assert not out.exists()


def test_prunes_a_checkpoint_written_before_families(tmp_path):
    """A checkpoint without the 'family' key prunes as the default family (pix2pix), and the pruned checkpoint records the family."""
    g = build_generator(UNetSpec.reference(4, 8), seed=0)
    old = {
        "format": "unetprune-checkpoint",
        "format_version": 1,
        "generator": {"arch": g.spec.to_dict(), "state_dict": g.state_dict()},
        "config": {"data": {"crop_size": 16}},
        "versions": {},
        "meta": {},
    }
    torch.save(old, tmp_path / "old.pt")
    assert (
        _run("--checkpoint", tmp_path / "old.pt", "--strategy", "cut", "--k", 1, "--out", tmp_path / "cut.pt")
        == 0
    )
    new = load_checkpoint(tmp_path / "cut.pt")
    assert new["family"] == "pix2pix" and new["generator"]["arch"]["enc_widths"] == [8, 16, 32]
    assert generator_from_checkpoint(new).spec == UNetSpec.reference(3, 8)
