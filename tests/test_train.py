import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from unetprune.checkpoint import generator_from_checkpoint, load_checkpoint
from unetprune.config import load_config
from unetprune.errors import TrainingDiverged, UserFacingError
from unetprune.train import lr_factor, train


def tiny_cfg(data_root, **train_over):
    t = {"n_epochs": 2, "n_epochs_decay": 2, "save_every": 1, "threads": 1, "log_every": 2,
         "eval_images": 2, **train_over}
    return {"experiment": "tiny", "seed": 7,
            "data": {"dataset": "folder", "root": str(data_root), "load_size": 36, "crop_size": 32},
            "demo": {"image_size": 32},
            "model": {"num_downs": 5, "ngf": 4, "ndf": 4},
            "train": t, "evaluate": {"fid_backend": "standin"}}


def test_lr_schedule_reference_lambda_rule():
    f = [lr_factor(e, 3, 3) for e in range(6)]
    assert f == [1.0, 1.0, 1.0, 0.75, 0.5, 0.25]


def test_train_writes_log_checkpoint_and_grid(tiny_demo, tmp_path):
    cfg = load_config(None, tiny_cfg(tiny_demo))
    log = train(cfg, tmp_path, progress=False)
    assert log["complete"] and len(log["epochs"]) == 4
    assert [e["lr"] for e in log["epochs"]] == pytest.approx([2e-4, 2e-4, 2e-4 * 2 / 3, 2e-4 / 3])
    on_disk = json.loads((tmp_path / "train.json").read_text())
    assert on_disk["epochs"][-1]["G_L1"] == pytest.approx(log["epochs"][-1]["G_L1"])
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)  # self-describing, safe load
    assert ckpt["epoch"] == 4 and ckpt["generator"]["arch"]["enc_widths"] == [4, 8, 16, 32, 32]
    assert ckpt["config"]["train"]["n_epochs"] == 2 and "torch" in ckpt["versions"]
    G = generator_from_checkpoint(ckpt)
    assert G(torch.zeros(1, 3, 32, 32)).shape == (1, 3, 32, 32)
    from PIL import Image

    grid = Image.open(tmp_path / "samples.png")
    assert grid.size == (3 * 32, 2 * 32)  # 2 rows of input | output | target


def test_existing_run_requires_resume(tiny_demo, tmp_path):
    cfg = load_config(None, tiny_cfg(tiny_demo, n_epochs=1, n_epochs_decay=0))
    train(cfg, tmp_path, progress=False)
    with pytest.raises(UserFacingError, match="pass --resume"):
        train(cfg, tmp_path, progress=False)
    log = train(cfg, tmp_path, resume=True, progress=False)  # finished run: nothing to do
    assert log["complete"]
    other = load_config(None, {**tiny_cfg(tiny_demo, n_epochs=1, n_epochs_decay=0), "seed": 8})
    with pytest.raises(UserFacingError, match="config 'seed' differs"):
        train(other, tmp_path, resume=True, progress=False)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tiny_demo, tmp_path, monkeypatch):
    cfg = load_config(None, tiny_cfg(tiny_demo))
    train(cfg, tmp_path, progress=False, stop_after_epochs=1)
    assert not (tmp_path / "checkpoint.pt").exists()  # only finished runs have one
    good = torch.load(tmp_path / "resume.pt", weights_only=True)
    from unetprune import train as train_mod

    real_step = train_mod.Pix2PixTrainer.train_step

    def poisoned(self, a, b):
        out = real_step(self, a, b)
        out["G_L1"] = out["G_L1"] * float("nan")
        return out

    monkeypatch.setattr(train_mod.Pix2PixTrainer, "train_step", poisoned)
    with pytest.raises(TrainingDiverged, match=r"G_L1 became non-finite at epoch 2"):
        train(cfg, tmp_path, resume=True, progress=False)
    after = torch.load(tmp_path / "resume.pt", weights_only=True)
    assert after["epoch"] == 1
    for k, v in good["generator"]["state_dict"].items():
        assert torch.equal(v, after["generator"]["state_dict"][k])


def _run_cli(cfg_path, out, *extra):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "unetprune.cli", "train", "--config", str(cfg_path),
                             "--out", str(out), "--quiet", *extra], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_sigkill_and_resume_gives_identical_weights(tiny_demo, tmp_path):
    """Kill a run with SIGKILL after its first checkpoint; resume; compare with an
    uninterrupted run: every tensor (G, D, optimiser states) must be bitwise equal."""
    cfg = tiny_cfg(tiny_demo, n_epochs=3, n_epochs_decay=3)
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    full, killed = tmp_path / "full", tmp_path / "killed"
    p = _run_cli(cfg_path, full)
    assert p.wait(timeout=300) == 0, p.stderr.read().decode()

    p = _run_cli(cfg_path, killed)
    ckpt = killed / "resume.pt"
    deadline = time.time() + 300
    while not ckpt.exists() and time.time() < deadline and p.poll() is None:
        time.sleep(0.05)
    assert p.poll() is None, "run finished before it could be killed"
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    epoch_at_kill = load_checkpoint(ckpt)["epoch"]
    assert 1 <= epoch_at_kill < 6

    p = _run_cli(cfg_path, killed, "--resume")
    assert p.wait(timeout=300) == 0, p.stderr.read().decode()
    assert not ckpt.exists()  # renamed to checkpoint.pt at the end
    a, b = load_checkpoint(full / "checkpoint.pt"), load_checkpoint(killed / "checkpoint.pt")
    assert b["epoch"] == 6 and json.loads(b["log"])["resumed_at_epoch"] == [epoch_at_kill]
    for part in ("generator", "discriminator"):
        sa, sb = a[part]["state_dict"], b[part]["state_dict"]
        assert sa.keys() == sb.keys()
        for k in sa:
            assert torch.equal(sa[k], sb[k]), f"{part}.{k} differs after resume"
    ga, gb = a["optimizers"]["G"]["state"], b["optimizers"]["G"]["state"]
    assert all(torch.equal(ga[i]["exp_avg"], gb[i]["exp_avg"]) for i in ga)
    # no temporary files left behind by the atomic writes
    assert not [f for f in killed.iterdir() if f.name.endswith(".tmp")]
