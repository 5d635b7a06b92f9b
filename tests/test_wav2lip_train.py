"""Training Wav2Lip (issue 12 item 3): the lip-sync expert and the generator as trainers of the
generic loop (resume after SIGKILL to bit-identical CPU weights, NaN guard, self-describing
checkpoints, the sync-loss switch, the HQ quality discriminator), the family registered
globally with its pruning operations, the config keys, and (slow) the learning check on the
demo: a small generator trained for minutes beats the untrained one and "copy the reference".
"""

from __future__ import annotations

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
from unetprune.config import ConfigError, load_config, validate
from unetprune.errors import TrainingDiverged
from unetprune.layout import CHECKPOINT_NAME, RESUME_NAME, SAMPLES_NAME, TRAIN_LOG_NAME
from unetprune.family import family_names, family_of, get_family
from unetprune.families.wav2lip.syncnet import SyncNetColor
from unetprune.families.wav2lip.networks import Wav2LipGenerator
from unetprune.families.wav2lip.train import Wav2LipTrainer, copy_reference_l1, generated_lower_half_l1, talking_dataset
from unetprune.train import expert_config, train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Measured on the demo (v2) with config/wav2lip_demo.yaml on one CPU core; issue 12's open criteria.
XFAIL_COPY_L1 = (
    "not met on 2 CPU cores in minutes: after the demo config's 240 generator steps of 4 windows (144 s of epochs, "
    "0.60 s/step, on one core) the lower-half L1 on every test frame (reference half a clip away) is 0.082 vs 0.066 "
    "for copying that reference (untrained 0.225). The width-0.25 generator underfits: on its own training clips it "
    "is still 0.061 vs copy 0.052, the upper half it is given as input comes back at L1 0.031, and the test frames "
    "carry a per-channel colour offset of 0.03-0.06 whose sign changes from run to run (the 4-channel full-resolution "
    "stage has not learned to pass the reference through). Measured alternatives, same demo: 576 steps of 2 windows "
    "0.079 (curve flat at 0.078-0.082 from ~200 steps), the same at lr 5e-3 0.086, width 0.5 (over this test's "
    "width <= 0.25) 240 steps of 2: 0.076, 48 training identities 0.076 vs copy 0.063; recomputing the BatchNorm "
    "statistics after training moves it by +-0.006 in either direction. Full-resolution stages widened (the rest at "
    "0.25; 240 steps of 4): fe0/fd6/out at 1.0 0.0725 (4.6x the training time), fe0-1/fd5-6/out at 1.0 0.0711 "
    "(6.2x), at 0.5 0.0746, at 0.5 with 480 steps 0.0741, copy 0.0662; none beats copy on its own training clips "
    "either (0.043-0.047 vs 0.040) and the upper half still comes back at 0.029-0.039, so the narrow skip is not "
    "the whole cause. More training does not close the gap (benchmarks/wav2lip_learning.py): 3x the epochs "
    "(20+10, 347 s on 2 cores) 0.0746 vs copy 0.0668 (training clips 0.0485 vs 0.0472); on an H200, 16x "
    "(96+64 epochs) 0.0731, and width 0.5 with 4x the epochs 0.0675 on the learning check vs copy 0.0638")
XFAIL_COPY_LSE = (
    "not met: in that budget the generator learns no audio-driven mouth: stand-in LSE-C of the test clips "
    "trained 1.21, untrained 0.98, copy-the-reference 1.45, real 3.19 on one core (1.18-1.24 for every recipe "
    "above; with 2 threads: 1.14, 1.05, 1.64, 3.40). "
    "L1 alone teaches lip shapes slowly and the sync loss never switches on: the demo's lip-sync expert does "
    "not generalise (its check BCE goes from 0.77 to 0.82-0.91 while training; the validation sync loss of the "
    "generated frames stays at 1.26-1.28, over the 0.75 threshold, in every run)")


@pytest.fixture(scope="module")
def talking(tmp_path_factory):
    """A small talking-face demo (2 train, 2 val, 1 test clips: counts whose voices all exist here)."""
    from unetprune.families.wav2lip.demo import build_talking_demo

    root = tmp_path_factory.mktemp("talking")
    build_talking_demo(root, n_train=2, n_val=2, n_test=1, progress=False)
    return root


def w2l_cfg(root, **train_over) -> dict:
    t = {"n_epochs": 2, "n_epochs_decay": 0, "batch_size": 4, "lr": 1e-4, "beta1": 0.9, "save_every": 1,
         "log_every": 1, "eval_images": 2, "threads": 1,
         "expert": {"n_epochs": 2, "batch_size": 4}, **train_over}
    return {"experiment": "w2l-test", "seed": 3,
            "data": {"dataset": "demo", "root": str(root), "max_train_items": 8},
            "model": {"family": "wav2lip", "width_mult": 0.125, "expert_width_mult": 0.125},
            "train": t, "evaluate": {"mode": "eval"}}


@pytest.fixture(scope="module")
def expert_ckpt(talking, tmp_path_factory):
    out = tmp_path_factory.mktemp("expert")
    cfg = validate(expert_config(load_config(None, w2l_cfg(talking))))
    train(cfg, out, progress=False)
    return out / CHECKPOINT_NAME


# ------------------------------------------------------------------------------------------
# registration and config
# ------------------------------------------------------------------------------------------

def test_family_and_pruning_ops_registered_globally():
    from unetprune.pruning.ops import pruning_ops
    from unetprune.families.wav2lip.pruning import WAV2LIP_OPS

    assert {"pix2pix", "wav2lip", "wav2lip-expert"} <= set(family_names())
    fam = get_family("wav2lip")
    g = fam.build(fam.spec_from_config({"model": {"width_mult": 0.125}}))
    assert family_of(g) is fam and pruning_ops(g) is WAV2LIP_OPS
    assert family_of(SyncNetColor()).name == "wav2lip-expert"


def test_config_keys_and_semantic_checks(talking):
    for name in ("wav2lip_tiny", "wav2lip_demo"):
        cfg = load_config(os.path.join(REPO, "config", f"{name}.yaml"))
        assert cfg["model"]["family"] == "wav2lip" and cfg["model"]["width_mult"] <= 0.25
    cfg = load_config(None, w2l_cfg(talking))
    assert cfg["train"]["syncnet_wt"] == 0.03 and cfg["train"]["sync_threshold"] == 0.75
    assert cfg["train"]["disc_wt"] == 0.07 and cfg["model"]["hq"] is False and cfg["train"]["target"] == "generator"
    e = validate(expert_config(cfg))
    assert e["train"]["target"] == "expert" and e["train"]["batch_size"] == 4 and e["train"]["lr"] == 1e-4
    with pytest.raises(ConfigError, match="train.target"):
        load_config(None, {"train": {"target": "expert"}})                     # pix2pix has no expert
    with pytest.raises(ConfigError, match="data.dataset"):
        load_config(None, {"model": {"family": "wav2lip"}, "data": {"dataset": "facades"}})
    with pytest.raises(ConfigError, match="syncnet_wt"):
        load_config(None, {**w2l_cfg(talking, syncnet_wt=0.5, disc_wt=0.5), "model": {"family": "wav2lip", "hq": True}})
    with pytest.raises(ConfigError, match="model.width_mult"):
        load_config(None, {"model": {"family": "wav2lip", "width_mult": 0}})


# ------------------------------------------------------------------------------------------
# the expert, then the generator with the frozen expert and the quality discriminator
# ------------------------------------------------------------------------------------------

def test_expert_run_writes_a_self_describing_checkpoint(expert_ckpt):
    ckpt = torch.load(expert_ckpt, weights_only=True)
    assert ckpt["family"] == "wav2lip-expert" and ckpt["config"]["train"]["target"] == "expert"
    assert ckpt["epoch"] == 2 and "expert" in ckpt["optimizers"]
    net = generator_from_checkpoint(ckpt)
    assert isinstance(net, SyncNetColor) and net.spec.face_widths[0] == 4
    log = json.loads((expert_ckpt.parent / TRAIN_LOG_NAME).read_text())
    assert list(log["epochs"][0])[4:] == ["sync", "acc"] and log["eval"]["split"] == "test"
    assert 0 < log["eval"]["l1_final"] < 10                                   # the check: sync BCE
    assert (expert_ckpt.parent / SAMPLES_NAME).is_file()


def test_generator_run_with_frozen_expert_and_hq(talking, expert_ckpt, tmp_path):
    cfg = load_config(None, {**w2l_cfg(talking, sync_threshold=10.0),
                             "model": {"family": "wav2lip", "width_mult": 0.125, "hq": True,
                                       "expert_checkpoint": str(expert_ckpt)}})
    frozen = load_checkpoint(expert_ckpt)["generator"]["state_dict"]
    log = train(cfg, tmp_path, progress=False)
    e1, e2 = log["epochs"]
    # threshold 10: the validation sync loss is below it after epoch 1, so epoch 2 uses the sync loss
    assert e1["syncnet_wt"] == 0.03 and e1["val_sync"] > 0 and e1["sync"] == 0.0 and e2["sync"] > 0
    assert {"L1", "sync", "loss", "G_disc", "D_real", "D_fake"} <= set(e2)
    assert e2["loss"] == pytest.approx(0.03 * e2["sync"] + 0.07 * e2["G_disc"] + 0.9 * e2["L1"], rel=1e-5)
    ckpt = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)
    assert ckpt["family"] == "wav2lip" and ckpt["wav2lip"] == {"syncnet_wt": 0.03, "sync_on_epoch": 1}
    arch = ckpt["discriminator"]["arch"]
    assert arch["expert_source"]["kind"] == "wav2lip-expert" and arch["qual_widths"][0] == 4
    sd = ckpt["discriminator"]["state_dict"]
    assert all(torch.equal(sd[f"expert.{k}"], v) for k, v in frozen.items())   # frozen, BN stats included
    assert set(ckpt["optimizers"]) == {"G", "D"}
    G = generator_from_checkpoint(ckpt)
    assert isinstance(G, Wav2LipGenerator) and G.spec.fe_widths[0] == 2
    from PIL import Image

    assert Image.open(tmp_path / SAMPLES_NAME).size == (4 * 96, 2 * 96)   # ref | masked | generated | target
    D = get_family("wav2lip").discriminator_from_entry(ckpt["discriminator"])
    assert D.expert is not None and not any(p.requires_grad for p in D.expert.parameters())


def test_nan_loss_stops_and_keeps_last_good_checkpoint(talking, tmp_path, monkeypatch):
    cfg = load_config(None, w2l_cfg(talking, n_epochs=3))
    train(cfg, tmp_path, progress=False, stop_after_epochs=1)
    good = torch.load(tmp_path / RESUME_NAME, weights_only=True)
    real_step = Wav2LipTrainer.step

    def poisoned(self, batch):
        out = real_step(self, batch)
        out["L1"] = out["L1"] * float("nan")
        return out

    monkeypatch.setattr(Wav2LipTrainer, "step", poisoned)
    with pytest.raises(TrainingDiverged, match=r"L1 became non-finite at epoch 2"):
        train(cfg, tmp_path, resume=True, progress=False)
    after = torch.load(tmp_path / RESUME_NAME, weights_only=True)
    assert after["epoch"] == 1 and not (tmp_path / CHECKPOINT_NAME).exists()
    assert all(torch.equal(v, after["generator"]["state_dict"][k]) for k, v in good["generator"]["state_dict"].items())


def test_an_expert_run_is_not_resumed_as_a_generator_run(talking, tmp_path):
    from unetprune.errors import UserFacingError

    cfg = load_config(None, w2l_cfg(talking))
    train(validate(expert_config(cfg)), tmp_path, progress=False, stop_after_epochs=1)
    with pytest.raises(UserFacingError, match="wav2lip-expert"):
        train(cfg, tmp_path, resume=True, progress=False)


# ------------------------------------------------------------------------------------------
# kill -9 and resume: bit-identical CPU weights (expert, and generator with expert + HQ)
# ------------------------------------------------------------------------------------------

def _run_cli(cfg_path, out, *extra):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "unetprune.cli", "train", "--config", str(cfg_path),
                             "--out", str(out), "--quiet", *extra], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _kill_and_resume(cfg: dict, tmp_path, n_epochs: int, *extra) -> tuple[dict, dict]:
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    full, killed = tmp_path / "full", tmp_path / "killed"
    p = _run_cli(cfg_path, full, *extra)
    assert p.wait(timeout=600) == 0, p.stderr.read().decode()
    p = _run_cli(cfg_path, killed, *extra)
    ckpt = killed / RESUME_NAME
    deadline = time.time() + 600
    while not ckpt.exists() and time.time() < deadline and p.poll() is None:
        time.sleep(0.05)
    assert p.poll() is None, "run finished before it could be killed"
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    epoch_at_kill = load_checkpoint(ckpt)["epoch"]
    assert 1 <= epoch_at_kill < n_epochs
    p = _run_cli(cfg_path, killed, "--resume", *extra)
    assert p.wait(timeout=600) == 0, p.stderr.read().decode()
    assert not ckpt.exists() and not [f for f in killed.iterdir() if f.name.endswith(".tmp")]
    a, b = load_checkpoint(full / CHECKPOINT_NAME), load_checkpoint(killed / CHECKPOINT_NAME)
    assert b["epoch"] == n_epochs and json.loads(b["log"])["resumed_at_epoch"] == [epoch_at_kill]
    return a, b


def _assert_equal_tensors(x, y, where=""):
    if isinstance(x, torch.Tensor):
        assert torch.equal(x, y), f"{where} differs after resume"
    elif isinstance(x, dict):
        assert x.keys() == y.keys(), where
        for k in x:
            _assert_equal_tensors(x[k], y[k], f"{where}.{k}")
    elif isinstance(x, (list, tuple)):
        for i, (u, v) in enumerate(zip(x, y)):
            _assert_equal_tensors(u, v, f"{where}[{i}]")
    else:
        assert x == y, where


def test_expert_sigkill_and_resume_gives_identical_weights(talking, tmp_path):
    cfg = w2l_cfg(talking, expert={"n_epochs": 4, "batch_size": 4})
    a, b = _kill_and_resume(cfg, tmp_path, 4, "--expert")
    assert a["family"] == b["family"] == "wav2lip-expert"
    _assert_equal_tensors(a["generator"]["state_dict"], b["generator"]["state_dict"], "expert")
    _assert_equal_tensors(a["optimizers"], b["optimizers"], "optimizers")


def test_generator_sigkill_and_resume_gives_identical_weights(talking, expert_ckpt, tmp_path):
    cfg = {**w2l_cfg(talking, n_epochs=3, sync_threshold=10.0),
           "model": {"family": "wav2lip", "width_mult": 0.125, "hq": True, "expert_checkpoint": str(expert_ckpt)}}
    a, b = _kill_and_resume(cfg, tmp_path, 3)
    for part in ("generator", "discriminator"):
        _assert_equal_tensors(a[part]["state_dict"], b[part]["state_dict"], part)
    _assert_equal_tensors(a["optimizers"], b["optimizers"], "optimizers")
    assert a["wav2lip"] == b["wav2lip"] and b["wav2lip"]["syncnet_wt"] == 0.03


# ------------------------------------------------------------------------------------------
# the learning check on the demo (minutes on 2 cores)
# ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """config/wav2lip_demo.yaml as the workflow runs it on the full talking demo: the lip-sync
    expert, the generator with the expert frozen, the stand-in LSE network; then the pipeline's
    evaluation protocol (TalkingEvalSet: every frame of the test clips, identity reference half a
    clip away) for the trained generator, the untrained one and "copy the reference frame" (the
    very reference frame the generator gets): lower-half L1 and stand-in LSE-C."""
    from types import SimpleNamespace

    from unetprune.cli import main
    from unetprune.families.wav2lip.datasets import TalkingEvalSet
    from unetprune.families.wav2lip.demo import build_talking_demo
    from unetprune.families.wav2lip.lse import LSEMetric
    from unetprune.train import build_models

    data = tmp_path_factory.mktemp("talking_demo")
    path = os.path.join(REPO, "config", "wav2lip_demo.yaml")
    cfg = load_config(path, {"data": {"root": str(data)}})
    t = cfg["demo"]["talking"]
    build_talking_demo(data, n_train=t["n_train"], n_val=t["n_val"], n_test=t["n_test"], side=t["side"],
                       seed=t["seed"], progress=False)
    expert = tmp_path_factory.mktemp("demo_expert")
    t0 = time.time()
    elog = train(validate(expert_config(cfg)), expert, progress=False)
    t1 = time.time()
    cfg = load_config(path, {"data": {"root": str(data)}, "model": {"expert_checkpoint": str(expert / CHECKPOINT_NAME)}})
    out = tmp_path_factory.mktemp("demo_run")
    log = train(cfg, out, progress=False)
    t2 = time.time()
    standin = out / "standin.pt"
    assert main(["train-lse-standin", "--data", str(data), "--out", str(standin), "--no-progress",
                 "--steps", str(cfg["evaluate"]["lse_standin_steps"]), "--threads", str(cfg["train"]["threads"])]) == 0
    # the learning check of train.json (its windows: TalkingFaceDataset's references)
    ds = talking_dataset(cfg, cfg["train"]["eval_split"], "generator", cfg["train"]["eval_images"])
    G = generator_from_checkpoint(out / CHECKPOINT_NAME)
    G0 = build_models(cfg)[0]                                   # the same seeded initialisation
    # the pipeline's evaluation protocol on every frame of the test clips
    es = TalkingEvalSet.load({**cfg, "evaluate": {**cfg["evaluate"], "max_images": None}}, "test", data)
    mode, seed = cfg["evaluate"]["mode"], cfg["seed"]
    frames = {"trained": es.generate(G, mode, seed), "untrained": es.generate(G0, mode, seed),
              "copy_reference": es.copied_references, "real": es.targets}
    lse = LSEMetric()
    lse.setup(es, SimpleNamespace(ev={"lse_backend": "standin", "lse_weights": str(standin)}, device="cpu"))
    res = {"check": {"untrained": log["eval"]["l1_init"], "trained": log["eval"]["l1_final"],
                     "copy_reference": copy_reference_l1(ds),
                     "recomputed": generated_lower_half_l1(G, ds, mode, seed)},
           "l1": {k: es.region_l1(v) for k, v in frames.items() if k != "real"},
           "lse_c": {k: lse.score(v, None)["lse"]["lse_c"] for k, v in frames.items()},
           "expert_sync": {"before": elog["eval"]["l1_init"], "after": elog["eval"]["l1_final"]},
           "n_frames": es.n, "expert_s": t1 - t0, "generator_s": t2 - t1}
    print(f"\nwav2lip demo learning check (expert {res['expert_s']:.0f} s, generator {res['generator_s']:.0f} s "
          f"of training): {json.dumps({k: v for k, v in res.items() if k not in ('expert_s', 'generator_s')})}")
    return res


@pytest.mark.slow
def test_demo_generator_beats_the_untrained_generator(demo_run):
    c = demo_run["check"]
    assert c["recomputed"] == pytest.approx(c["trained"], rel=1e-5)
    assert c["trained"] < 0.9 * c["untrained"]
    assert demo_run["l1"]["trained"] < 0.9 * demo_run["l1"]["untrained"]


@pytest.mark.slow
@pytest.mark.xfail(strict=False, reason=XFAIL_COPY_L1)
def test_demo_generator_beats_copying_the_reference_frame(demo_run):
    # lower-half L1 on every test frame, the same reference (half a clip away) for both
    assert demo_run["l1"]["trained"] < demo_run["l1"]["copy_reference"]


@pytest.mark.slow
@pytest.mark.xfail(strict=False, reason=XFAIL_COPY_LSE)
def test_demo_generator_lip_sync_beats_copying_the_reference_frame(demo_run):
    # stand-in LSE-C of the generated test clips vs the same clips made of their reference frames
    assert demo_run["lse_c"]["trained"] > demo_run["lse_c"]["copy_reference"]
