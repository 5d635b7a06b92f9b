"""`unetprune import --family wav2lip` / `--family wav2lip-expert` and `lipsync` on released files.

The released files are built here with seeded weights in the reference layouts (the reference
scripts' ``{"state_dict", "optimizer", "global_step", "global_epoch"}`` with ``module.`` keys,
bare state dicts with and without the prefix); the imported generator must compute what the
reference module structure (:class:`released_wav2lip.RefWav2Lip`) computes.
"""

import os

import pytest
import torch
from released_wav2lip import (
    RefWav2Lip,
    disc_reference_sd,
    randomise,
    save_released,
    syncnet_reference_sd,
)

from unetprune.checkpoint import generator_from_checkpoint, load_checkpoint
from unetprune.cli import main
from unetprune.fileio import sha256_file
from unetprune.layout import TRAIN_LOG_NAME
from unetprune.families.wav2lip.syncnet import SyncNetColor, SyncNetSpec, Wav2LipDiscQual
from unetprune.families.wav2lip.train import load_expert

MULT = 0.125


def run_cli(capsys, *args) -> tuple[int, str, str]:
    rc = main(["import", *map(str, args)])
    out, err = capsys.readouterr()
    return rc, out, err


def _compare(G, ref, seed: int = 0) -> float:
    g = torch.Generator().manual_seed(seed)
    face = torch.rand(2, 6, 5, 96, 96, generator=g)
    mel = torch.randn(2, 5, 1, 80, 16, generator=g)
    with torch.no_grad():
        five = (G.eval()(face, mel) - ref.eval()(mel, face)).abs().max().item()
        four = (G(face[:, :, 0], mel[:, 0]) - ref(mel[:, 0], face[:, :, 0])).abs().max().item()
    return max(five, four)


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """A small released generator, expert and quality discriminator (reference layouts)."""
    d = tmp_path_factory.mktemp("released")
    ref = randomise(RefWav2Lip(MULT), seed=1)
    expert = randomise(SyncNetColor(SyncNetSpec.reference(MULT)), seed=2)
    qual = randomise(Wav2LipDiscQual([4, 8, 16, 32, 64, 64, 64]), seed=3)
    return {
        "dir": d,
        "ref": ref,
        "expert": expert,
        "qual": qual,
        "G": save_released(d / "wav2lip_gan.pth", ref.state_dict()),
        "E": save_released(d / "lipsync_expert.pth", syncnet_reference_sd(expert)),
        "D": save_released(d / "visual_quality_disc.pth", disc_reference_sd(qual)),
    }


@pytest.mark.parametrize("wrapper", ["checkpoint", "module", "bare"])
def test_released_generator_imports_with_the_reference_forward(tmp_path, capsys, released, wrapper):
    src = save_released(tmp_path / "wav2lip.pth", released["ref"].state_dict(), wrapper)
    out = tmp_path / "G.pt"
    rc, stdout, err = run_cli(capsys, "--family", "wav2lip", "--from", src, "--out", out)
    assert rc == 0, err
    assert "571,449 params" in stdout and "expert: none" in stdout
    ckpt = load_checkpoint(out)
    assert ckpt["family"] == "wav2lip" and ckpt["meta"]["sha256"] == sha256_file(src)
    assert ckpt["discriminator"]["arch"]["expert"] is None
    G = generator_from_checkpoint(ckpt)
    assert sum(p.numel() for p in G.parameters()) == sum(p.numel() for p in released["ref"].parameters())
    assert _compare(G, released["ref"]) <= 1e-6


def test_the_full_size_release_imports_exactly(tmp_path, capsys):
    ref = randomise(RefWav2Lip(1.0), seed=4)
    src = save_released(tmp_path / "wav2lip_gan.pth", ref.state_dict())
    rc, stdout, err = run_cli(capsys, "--family", "wav2lip", "--from", src, "--out", tmp_path / "G.pt")
    assert rc == 0, err
    assert "36,298,035 params" in stdout
    G = generator_from_checkpoint(tmp_path / "G.pt")
    assert G.spec.fe_widths == [16, 32, 64, 128, 256, 512, 512]
    assert _compare(G, ref) <= 1e-6


def test_expert_and_discriminator_travel_in_the_checkpoint(tmp_path, capsys, released):
    out = tmp_path / "G.pt"
    rc, stdout, err = run_cli(
        capsys,
        "--family",
        "wav2lip",
        "--from",
        released["G"],
        "--expert",
        released["E"],
        "--discriminator",
        released["D"],
        "--out",
        out,
        "--record",
        tmp_path / TRAIN_LOG_NAME,
    )
    assert rc == 0, err
    assert str(released["E"]) in stdout and str(released["D"]) in stdout
    from unetprune.family import get_family

    ckpt = load_checkpoint(out)
    critics = get_family("wav2lip").discriminator_from_entry(ckpt["discriminator"])
    for ours, theirs in ((critics.expert, released["expert"]), (critics.qual, released["qual"])):
        assert ours.state_dict().keys() == theirs.state_dict().keys()
        assert all(torch.equal(v, theirs.state_dict()[k]) for k, v in ours.state_dict().items())
    assert critics.config["qual_widths"] == [4, 8, 16, 32, 64, 64, 64]
    assert ckpt["meta"]["expert"]["sha256"] == sha256_file(released["E"])
    import json

    log = json.loads((tmp_path / TRAIN_LOG_NAME).read_text())
    assert log["imported"] is True and log["sha256"] == sha256_file(released["G"]) and log["epochs"] == []


def test_the_expert_imports_as_an_expert_checkpoint(tmp_path, capsys, released):
    out = tmp_path / "expert.pt"
    rc, stdout, err = run_cli(capsys, "--family", "wav2lip-expert", "--from", released["E"], "--out", out)
    assert rc == 0, err
    assert "wav2lip-expert" in stdout
    assert load_checkpoint(out)["family"] == "wav2lip-expert"
    model, source = load_expert(out)
    assert source["kind"] == "wav2lip-expert"
    g = torch.Generator().manual_seed(0)
    mel, face = torch.randn(3, 1, 80, 16, generator=g), torch.rand(3, 15, 48, 96, generator=g)
    with torch.no_grad():
        a, b = model.eval()(mel, face), released["expert"].eval()(mel, face)
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_config_width_must_describe_the_file(tmp_path, capsys, released):
    import yaml

    cfg = yaml.safe_load(open("config/wav2lip_tiny.yaml"))
    cfg["model"]["wav2lip"]["width_mult"] = 0.25
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    rc, _, err = run_cli(
        capsys, "--config", tmp_path / "c.yaml", "--from", released["G"], "--out", tmp_path / "o"
    )
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert "model.wav2lip.width_mult is 0.25, the file has 0.125" in err


# --- refusals: one line naming the file ---------------------------------------------------------


class Payload:
    """A pickle that runs code when unpickled (here: makes a folder)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def _refused(capsys, *args) -> str:
    rc, _, err = run_cli(capsys, *args)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_crafted_pickle_is_refused_unexecuted(tmp_path, capsys, released):
    marker = tmp_path / "code-ran"
    bad = tmp_path / "wav2lip_gan.pth"
    sd = {f"module.{k}": v for k, v in released["ref"].state_dict().items()}
    torch.save({"state_dict": sd, "optimizer": Payload(marker)}, bad)
    line = _refused(capsys, "--family", "wav2lip", "--from", bad, "--out", tmp_path / "o.pt")
    assert str(bad) in line and "weights-only" in line and "Wav2Lip generator" in line
    assert not marker.exists() and not (tmp_path / "o.pt").exists()


@pytest.mark.parametrize("case", ["expert", "pix2pix", "shape", "checkpoint", "list"])
def test_files_of_other_models_are_refused(tmp_path, capsys, released, case):
    src = tmp_path / "other.pth"
    if case == "expert":
        src = released["E"]
    elif case == "pix2pix":
        torch.save(
            {"model.model.0.weight": torch.zeros(8, 3, 4, 4), "model.model.0.bias": torch.zeros(8)}, src
        )
    elif case == "shape":
        sd = dict(released["ref"].state_dict())
        sd["output_block.1.weight"] = torch.zeros(3, 7, 1, 1)
        save_released(src, sd)
    elif case == "checkpoint":
        src = tmp_path / "G.pt"
        assert run_cli(capsys, "--family", "wav2lip", "--from", released["G"], "--out", src)[0] == 0
    else:
        torch.save([torch.zeros(1)], src)
    line = _refused(capsys, "--family", "wav2lip", "--from", src, "--out", tmp_path / "o.pt")
    assert str(src) in line and "Wav2Lip generator" in line, line
    if case == "expert":
        assert "lip-sync expert" in line
    if case in ("pix2pix", "expert"):
        assert "keys of another model" in line
    assert not (tmp_path / "o.pt").exists()


def test_expert_file_refuses_a_generator_and_pix2pix_options(tmp_path, capsys, released):
    line = _refused(capsys, "--family", "wav2lip-expert", "--from", released["G"], "--out", tmp_path / "o.pt")
    assert str(released["G"]) in line and "lip-sync expert" in line and "Wav2Lip generator" in line
    line = _refused(
        capsys, "--family", "wav2lip", "--from", released["G"], "--num-downs", 8, "--out", tmp_path / "o"
    )
    assert "--num-downs" in line
    line = _refused(capsys, "--family", "tinyfam", "--from", released["G"], "--out", tmp_path / "o")
    assert "cannot import released weights" in line


def test_lipsync_accepts_a_released_file(tmp_path, capsys, released):
    import numpy as np

    from unetprune.data import media as M

    from test_lipsync import _check_output

    import cv2
    from skimage import data as skdata

    face = cv2.resize(skdata.astronaut()[:300, 100:400], (150, 150), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(tmp_path / "face.png"), face[..., ::-1])
    t = np.arange(int(0.6 * 16000)) / 16000
    M.write_wav(tmp_path / "speech.wav", (0.3 * np.sin(2 * np.pi * 180 * t)).astype(np.float32), 16000)
    out = tmp_path / "out.mp4"
    rc = main(
        [
            "lipsync",
            "--checkpoint",
            str(released["G"]),
            "--face",
            str(tmp_path / "face.png"),
            "--audio",
            str(tmp_path / "speech.wav"),
            "--out",
            str(out),
            "--no-progress",
            "--device",
            "cpu",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "a released Wav2Lip generator, converted" in err
    _check_output(out, 0.6)
