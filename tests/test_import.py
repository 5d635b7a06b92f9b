"""`unetprune import`: released pix2pix weights (junyanz/pytorch-CycleGAN-and-pix2pix names) as a
unetprune checkpoint.  No download: the reference architecture is re-implemented below (its
nesting of UnetSkipConnectionBlock, in-place activations included) and its state dicts are
written by the tests."""

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from unetprune.checkpoint import generator_from_checkpoint, load_checkpoint
from unetprune.cli import main
from unetprune.fileio import sha256_file
from unetprune.layout import FINETUNED, ORIGINAL, Layout
from unetprune.metrics.complexity import count_parameters
from unetprune.families.pix2pix.reference import (
    from_reference,
    infer_generator,
    module_map,
    strip_module_prefix,
    to_reference,
)
from unetprune.families.pix2pix.unet import UNetSpec, build_generator
from unetprune.translate import generation_mode

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


# --- the reference architecture, re-implemented (its module nesting and forward) ------------


class RefBlock(nn.Module):
    """The reference UnetSkipConnectionBlock."""

    def __init__(
        self,
        outer_nc,
        inner_nc,
        input_nc=None,
        submodule=None,
        outermost=False,
        innermost=False,
        norm_layer=nn.BatchNorm2d,
        use_dropout=False,
    ):
        super().__init__()
        self.outermost = outermost
        use_bias = (
            norm_layer.func if isinstance(norm_layer, functools.partial) else norm_layer
        ) == nn.InstanceNorm2d
        input_nc = outer_nc if input_nc is None else input_nc
        downconv = nn.Conv2d(input_nc, inner_nc, 4, 2, 1, bias=use_bias)
        downrelu, downnorm = nn.LeakyReLU(0.2, True), norm_layer(inner_nc)
        uprelu, upnorm = nn.ReLU(True), norm_layer(outer_nc)
        if outermost:
            model = [
                downconv,
                submodule,
                uprelu,
                nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, 2, 1),
                nn.Tanh(),
            ]
        elif innermost:
            model = [
                downrelu,
                downconv,
                uprelu,
                nn.ConvTranspose2d(inner_nc, outer_nc, 4, 2, 1, bias=use_bias),
                upnorm,
            ]
        else:
            model = [
                downrelu,
                downconv,
                downnorm,
                submodule,
                uprelu,
                nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, 2, 1, bias=use_bias),
                upnorm,
            ]
            if use_dropout:
                model.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*model)

    def forward(self, x):
        return self.model(x) if self.outermost else torch.cat([x, self.model(x)], 1)


class RefUnet(nn.Module):
    """The reference UnetGenerator."""

    def __init__(self, input_nc, output_nc, num_downs, ngf=64, norm="batch", use_dropout=True):
        super().__init__()
        norm_layer = (
            nn.BatchNorm2d
            if norm == "batch"
            else functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
        )
        b = RefBlock(ngf * 8, ngf * 8, norm_layer=norm_layer, innermost=True)
        for _ in range(num_downs - 5):
            b = RefBlock(ngf * 8, ngf * 8, submodule=b, norm_layer=norm_layer, use_dropout=use_dropout)
        b = RefBlock(ngf * 4, ngf * 8, submodule=b, norm_layer=norm_layer)
        b = RefBlock(ngf * 2, ngf * 4, submodule=b, norm_layer=norm_layer)
        b = RefBlock(ngf, ngf * 2, submodule=b, norm_layer=norm_layer)
        self.model = RefBlock(
            output_nc, ngf, input_nc=input_nc, submodule=b, outermost=True, norm_layer=norm_layer
        )

    def forward(self, x):
        return self.model(x)


def ref_discriminator(input_nc, ndf=64, n_layers=3):
    """The reference NLayerDiscriminator (BatchNorm)."""
    seq = [nn.Conv2d(input_nc, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
    mult = 1
    for n in range(1, n_layers + 1):
        prev, mult = mult, min(2**n, 8)
        seq += [
            nn.Conv2d(ndf * prev, ndf * mult, 4, 2 if n < n_layers else 1, 1, bias=False),
            nn.BatchNorm2d(ndf * mult),
            nn.LeakyReLU(0.2, True),
        ]
    seq.append(nn.Conv2d(ndf * mult, 1, 4, 1, 1))
    d = nn.Module()
    d.model = nn.Sequential(*seq)
    return d


def randomise(model: nn.Module, seed: int) -> nn.Module:
    """Weights and BatchNorm statistics away from their init, so every tensor matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for k, v in model.state_dict().items():
            if k.endswith("running_var"):
                v.copy_(torch.rand(v.shape, generator=g) + 0.5)
            elif v.is_floating_point():
                is_bn_scale = v.dim() == 1 and k.endswith("weight")
                v.copy_(
                    torch.randn(v.shape, generator=g) * (0.05 if v.dim() > 1 else 0.2) + float(is_bn_scale)
                )
    return model


def run_cli(*args, capsys) -> tuple[int, str, str]:
    rc = main(["import", *map(str, args)])
    out, err = capsys.readouterr()
    return rc, out, err


def ref_outputs(ref: nn.Module, x: torch.Tensor, mode: str, seed: int = 3) -> torch.Tensor:
    ref.train(mode == "train_bn")
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(seed)
        return ref(x.clone())


def our_outputs(G: nn.Module, x: torch.Tensor, mode: str, seed: int = 3) -> torch.Tensor:
    # the plain module (statistics over the batch, the global dropout RNG), as the reference runs it
    with generation_mode(G, mode, seed, per_image_stats=False):
        return G(x)


# --- the key mapping ------------------------------------------------------------------------


@pytest.mark.parametrize("num_downs,norm", [(5, "batch"), (6, "instance"), (8, "batch")])
def test_mapping_matches_the_reference_nesting(num_downs, norm):
    ours = build_generator(UNetSpec.reference(num_downs, 4, norm=norm, bias_mode="reference"), seed=0)
    ref = RefUnet(3, 3, num_downs, 4, norm=norm)
    mapped = to_reference(ours.state_dict(), num_downs)
    assert {k: list(v.shape) for k, v in mapped.items()} == {
        k: list(v.shape) for k, v in ref.state_dict().items()
    }
    ref.load_state_dict(mapped, strict=True)
    back = from_reference(ref.state_dict(), num_downs)
    assert back.keys() == ours.state_dict().keys()
    assert all(torch.equal(back[k], v) for k, v in ours.state_dict().items())
    info = infer_generator(mapped)
    assert info == {"num_downs": num_downs, "ngf": 4, "input_nc": 3, "output_nc": 3, "norm": norm}


def test_module_map_names_the_innermost_and_outermost_blocks():
    m = module_map(8)
    assert m["down1.conv"] == "model.model.0" and m["up1.conv"] == "model.model.3"
    assert m["down2.norm"] == "model.model.1.model.2" and m["up2.conv"] == "model.model.1.model.5"
    inner = "model.model.1" + ".model.3" * 6 + ".model"
    assert m["down8.conv"] == f"{inner}.1" and m["up8.conv"] == f"{inner}.3" and m["up8.norm"] == f"{inner}.4"
    assert strip_module_prefix({"module.a": 1, "module.b": 2}) == {"a": 1, "b": 2}


# --- import: same outputs, same parameters --------------------------------------------------


def test_unet_256_import_equals_the_reference(tmp_path, capsys):
    """A reference unet_256 (the official biases) written under DataParallel's ``module.``
    names imports with its 54,413,955 parameters and the same outputs (eval and train_bn)."""
    torch.manual_seed(0)
    ref = randomise(RefUnet(3, 3, 8, 64), seed=1)
    src = tmp_path / "latest_net_G.pth"
    torch.save({f"module.{k}": v for k, v in ref.state_dict().items()}, src)
    out = tmp_path / "imported.pt"
    rc, stdout, err = run_cli("--from", src, "--out", out, "--num-downs", 8, "--ngf", 64, capsys=capsys)
    assert rc == 0, err
    assert "54,413,955 params" in stdout
    ckpt = load_checkpoint(out)
    G = generator_from_checkpoint(ckpt)
    assert count_parameters(G) == 54_413_955 == sum(p.numel() for p in ref.parameters())
    assert G.spec.bias_mode == "reference" and G.spec.dropout_levels == [5, 6, 7]
    assert ckpt["meta"]["sha256"] == sha256_file(src) and ckpt["meta"]["discriminator"]["fresh"] is True
    x = torch.rand(1, 3, 256, 256) * 2 - 1
    for mode in ("eval", "train_bn"):
        diff = (our_outputs(G, x, mode) - ref_outputs(ref, x, mode)).abs().max().item()
        assert diff < 1e-6, (mode, diff)


@pytest.mark.parametrize("norm,dropout", [("batch", False), ("instance", True)])
def test_small_imports_equal_the_reference(tmp_path, capsys, norm, dropout):
    torch.manual_seed(0)
    ref = randomise(RefUnet(3, 3, 6, 8, norm=norm, use_dropout=dropout), seed=2)
    src = tmp_path / "net_G.pth"
    torch.save(ref.state_dict(), src)
    out = tmp_path / "imported.pt"
    flags = [] if dropout else ["--no-dropout"]
    rc, _, err = run_cli("--from", src, "--out", out, *flags, capsys=capsys)
    assert rc == 0, err
    G = generator_from_checkpoint(out)
    assert G.spec.norm == norm and (G.spec.dropout_levels == [5]) == dropout
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    for mode in ("eval", "train_bn"):
        diff = (our_outputs(G, x, mode) - ref_outputs(ref, x, mode)).abs().max().item()
        assert diff < 1e-6, (mode, diff)


def test_our_model_written_in_reference_names_round_trips(tmp_path, capsys):
    ours = randomise(build_generator(UNetSpec.reference(6, 8, bias_mode="reference"), seed=0), seed=4)
    src = tmp_path / "ours_as_ref.pth"
    torch.save(to_reference(ours.state_dict(), 6), src)
    rc, _, err = run_cli("--from", src, "--out", tmp_path / "imported.pt", capsys=capsys)
    assert rc == 0, err
    G = generator_from_checkpoint(tmp_path / "imported.pt")
    assert G.spec == ours.spec
    assert all(torch.equal(G.state_dict()[k], v) for k, v in ours.state_dict().items())


def test_released_discriminator_is_mapped(tmp_path, capsys):
    torch.manual_seed(0)
    ref = RefUnet(3, 3, 5, 8)
    D_ref = randomise(ref_discriminator(6, ndf=8), seed=5)
    g, d = tmp_path / "latest_net_G.pth", tmp_path / "latest_net_D.pth"
    torch.save(ref.state_dict(), g)
    torch.save(D_ref.state_dict(), d)
    rc, stdout, err = run_cli(
        "--from", g, "--discriminator", d, "--out", tmp_path / "imported.pt", capsys=capsys
    )
    assert rc == 0, err
    ckpt = load_checkpoint(tmp_path / "imported.pt")
    assert ckpt["meta"]["discriminator"] == {
        "fresh": False,
        "source": str(d),
        "sha256": sha256_file(d),
        "arch": ckpt["discriminator"]["arch"],
    }
    from unetprune.families.pix2pix.patchgan import build_discriminator

    D = build_discriminator(ckpt["discriminator"]["arch"])
    D.load_state_dict(ckpt["discriminator"]["state_dict"])
    x = torch.randn(1, 6, 64, 64)
    D.eval(), D_ref.eval()
    with torch.no_grad():
        assert (D(x) - D_ref.model(x)).abs().max().item() < 1e-6


# --- refusals: one line naming the file and what was expected -------------------------------


class Payload:
    """A pickle that runs code when unpickled (here: makes a folder)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def _refused(capsys, *args) -> str:
    rc, _, err = run_cli(*args, capsys=capsys)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_pickle_with_code_is_refused_unexecuted(tmp_path, capsys):
    marker = tmp_path / "code-ran"
    bad = tmp_path / "evil.pth"
    torch.save({"model.model.0.weight": torch.zeros(8, 3, 4, 4), "x": Payload(marker)}, bad)
    line = _refused(capsys, "--from", bad, "--out", tmp_path / "o.pt")
    assert str(bad) in line and "weights-only" in line and "UnetGenerator" in line
    assert not marker.exists() and not (tmp_path / "o.pt").exists()


def test_state_dict_of_another_depth_is_refused(tmp_path, capsys):
    src = tmp_path / "unet128.pth"
    torch.save(RefUnet(3, 3, 7, 4).state_dict(), src)
    line = _refused(capsys, "--from", src, "--out", tmp_path / "o.pt", "--num-downs", 8)
    assert str(src) in line and "unet_256" in line and "num_downs 7" in line


@pytest.mark.parametrize("case", ["our_names", "shape", "missing", "checkpoint", "not_a_dict", "garbage"])
def test_wrong_files_are_refused(tmp_path, capsys, case):
    src = tmp_path / "bad.pth"
    ours = build_generator(UNetSpec.reference(5, 4, bias_mode="reference"), seed=0)
    ref_sd = to_reference(ours.state_dict(), 5)
    if case == "our_names":
        torch.save(ours.state_dict(), src)
    elif case == "shape":
        k = "model.model.1.model.5.weight"
        torch.save({**ref_sd, k: torch.zeros(3, 3, 4, 4)}, src)
    elif case == "missing":
        torch.save({k: v for k, v in ref_sd.items() if not k.endswith("model.6.running_var")}, src)
    elif case == "checkpoint":
        from unetprune.checkpoint import save_generator

        save_generator(src, ours)
    elif case == "not_a_dict":
        torch.save([torch.zeros(1)], src)
    else:
        src.write_bytes(b"not a torch file at all")
    line = _refused(capsys, "--from", src, "--out", tmp_path / "o.pt")
    assert str(src) in line and ("state dict" in line or "UnetGenerator" in line), line
    assert not (tmp_path / "o.pt").exists()


def test_config_must_describe_the_file(tmp_path, capsys):
    src = tmp_path / "net_G.pth"
    torch.save(RefUnet(3, 3, 5, 16).state_dict(), src)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"model": {"pix2pix": {"num_downs": 5, "ngf": 8}}}))
    line = _refused(capsys, "--config", cfg, "--from", src, "--out", tmp_path / "o.pt")
    assert "model.pix2pix.ngf is 8, the file has 16" in line
    line = _refused(
        capsys, "--config", cfg, "--set", "model.pix2pix.ngf=16", "--from", src, "--out", tmp_path / "o.pt"
    )
    assert "set model.pix2pix.bias_mode: reference" in line
    rc, _, err = run_cli(
        "--config",
        cfg,
        "--set",
        "model.pix2pix.ngf=16",
        "--set",
        "model.pix2pix.bias_mode=reference",
        "--from",
        src,
        "--out",
        tmp_path / "o.pt",
        capsys=capsys,
    )
    assert rc == 0, err


# --- the workflow: an experiment that starts from released weights --------------------------


def test_workflow_imports_instead_of_training_and_finetunes(tmp_path):
    """config ``model.pix2pix.init_weights``: train_original imports the file (train.json records it
    with the sha256 and the fresh PatchGAN), and a variant fine-tunes from it."""
    from test_workflow import copy_env, workflow_copy

    wf = workflow_copy(tmp_path / "wf")
    torch.manual_seed(0)
    weights = wf / "released" / "latest_net_G.pth"
    weights.parent.mkdir()
    torch.save(randomise(RefUnet(3, 3, 5, 16), seed=6).state_dict(), weights)
    cfg = yaml.safe_load((wf / "config" / "tiny.yaml").read_text())
    cfg["model"]["pix2pix"].update({"init_weights": "released/latest_net_G.pth", "bias_mode": "reference"})
    (wf / "config" / "imported.yaml").write_text(yaml.safe_dump(cfg))
    from unetprune.config import load_config

    lay = Layout.from_config(load_config(wf / "config" / "imported.yaml"), wf / "results")
    target = lay.checkpoint("cut-k1", FINETUNED).relative_to(wf)
    p = subprocess.run(
        [str(BIN / "snakemake"), str(target), "--cores", "1", "-p", "--configfile", "config/imported.yaml"],
        cwd=wf,
        env=copy_env(wf),
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    shown = p.stdout + p.stderr
    assert "unetprune import --config" in shown
    assert "rule train_original" in shown and "unetprune train --config" not in shown.split("rule prune")[0]
    log = json.loads(lay.train_log(ORIGINAL).read_text())
    assert log["imported"] is True and log["sha256"] == sha256_file(weights) and log["epochs"] == []
    assert log["discriminator"]["fresh"] is True
    G = generator_from_checkpoint(lay.checkpoint(ORIGINAL))
    assert G.spec.bias_mode == "reference" and count_parameters(G) == sum(
        v.numel()
        for k, v in torch.load(weights, weights_only=True).items()
        if "running" not in k and "num_batches" not in k
    )
    ft = load_checkpoint(lay.checkpoint("cut-k1", FINETUNED))
    assert ft["meta"]["discriminator_from"].endswith(str(lay.checkpoint(ORIGINAL).relative_to(wf)))
