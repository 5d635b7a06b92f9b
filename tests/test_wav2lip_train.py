"""Training Wav2Lip: the lip-sync expert and the generator as trainers of the generic loop
(resume after SIGKILL to bit-identical CPU weights, NaN guard, self-describing checkpoints,
the sync-loss switch, the HQ quality discriminator), the family registered globally with its
pruning operations, the config keys, and (slow) the learning check on the demo: a small
generator trained for minutes beats the untrained one.  How it compares with copying the
reference frame is a measurement, not a test: ``benchmarks/wav2lip_learning.py``.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from unetprune.checkpoint import generator_from_checkpoint, load_checkpoint
from unetprune.config import ConfigError, load_config, validate
from unetprune.errors import TrainingDiverged
from unetprune.layout import CHECKPOINT_NAME, RESUME_NAME, SAMPLES_NAME, TRAIN_LOG_NAME
from unetprune.family import family_names, family_of, get_family
from unetprune.families.wav2lip.syncnet import SyncNetColor
from unetprune.families.wav2lip.networks import Wav2LipGenerator
from unetprune.families.wav2lip.train import (
    Wav2LipTrainer,
    copy_reference_l1,
    generated_lower_half_l1,
    talking_dataset,
)
from unetprune.train import expert_config, train

from killresume import assert_equal_tensors, kill_and_resume

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def talking(tmp_path_factory):
    """A small talking-face demo (2 train, 2 val, 1 test clips: counts whose voices all exist here)."""
    from unetprune.families.wav2lip.demo import build_talking_demo

    root = tmp_path_factory.mktemp("talking")
    build_talking_demo(root, n_train=2, n_val=2, n_test=1, progress=False)
    return root


def w2l_cfg(root, **train_over) -> dict:
    t = {
        "n_epochs": 2,
        "n_epochs_decay": 0,
        "batch_size": 4,
        "lr": 1e-4,
        "beta1": 0.9,
        "save_every": 1,
        "log_every": 1,
        "eval_images": 2,
        "threads": 1,
        "expert": {"n_epochs": 2, "batch_size": 4},
        **train_over,
    }
    return {
        "experiment": "w2l-test",
        "seed": 3,
        "data": {"dataset": "demo", "root": str(root), "max_train_items": 8},
        "model": {"family": "wav2lip", "wav2lip": {"width_mult": 0.125, "expert_width_mult": 0.125}},
        "train": t,
        "evaluate": {"mode": "eval"},
    }


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
    g = fam.build(fam.spec_from_config({"model": {"wav2lip": {"width_mult": 0.125}}}))
    assert family_of(g) is fam and pruning_ops(g) is WAV2LIP_OPS
    assert family_of(SyncNetColor()).name == "wav2lip-expert"


def test_config_keys_and_semantic_checks(talking):
    for name in ("wav2lip_tiny", "wav2lip_demo"):
        cfg = load_config(os.path.join(REPO, "config", f"{name}.yaml"))
        assert cfg["model"]["family"] == "wav2lip" and cfg["model"]["wav2lip"]["width_mult"] <= 0.25
    cfg = load_config(None, w2l_cfg(talking))
    assert cfg["train"]["syncnet_wt"] == 0.03 and cfg["train"]["sync_threshold"] == 0.75
    assert (
        cfg["train"]["disc_wt"] == 0.07
        and cfg["model"]["wav2lip"]["hq"] is False
        and cfg["train"]["target"] == "generator"
    )
    e = validate(expert_config(cfg))
    assert e["train"]["target"] == "expert" and e["train"]["batch_size"] == 4 and e["train"]["lr"] == 1e-4
    with pytest.raises(ConfigError, match="train.target"):
        load_config(None, {"train": {"target": "expert"}})  # pix2pix has no expert
    with pytest.raises(ConfigError, match="data.dataset"):
        load_config(None, {"model": {"family": "wav2lip"}, "data": {"dataset": "facades"}})
    with pytest.raises(ConfigError, match="syncnet_wt"):
        load_config(
            None,
            {
                **w2l_cfg(talking, syncnet_wt=0.5, disc_wt=0.5),
                "model": {"family": "wav2lip", "wav2lip": {"hq": True}},
            },
        )
    with pytest.raises(ConfigError, match="model.wav2lip.width_mult"):
        load_config(None, {"model": {"family": "wav2lip", "wav2lip": {"width_mult": 0}}})


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
    assert list(log["epochs"][0])[4:] == ["sync", "acc"] and log["eval"]["split"] == "val"
    assert 0 < log["eval"]["l1_final"] < 10  # the check: sync BCE
    assert (expert_ckpt.parent / SAMPLES_NAME).is_file()


def test_generator_run_with_frozen_expert_and_hq(talking, expert_ckpt, tmp_path):
    cfg = load_config(
        None,
        {
            **w2l_cfg(talking, sync_threshold=10.0, expert_mode="eval"),
            "model": {
                "family": "wav2lip",
                "wav2lip": {"width_mult": 0.125, "hq": True, "expert_checkpoint": str(expert_ckpt)},
            },
        },
    )
    frozen = load_checkpoint(expert_ckpt)["generator"]["state_dict"]
    log = train(cfg, tmp_path, progress=False)
    e1, e2 = log["epochs"]
    # threshold 10: the validation sync loss is below it after epoch 1, so epoch 2 uses the sync loss
    assert e1["syncnet_wt"] == 0.03 and e1["val_sync"] > 0 and e1["sync"] == 0.0 and e2["sync"] > 0
    assert {"L1", "sync", "loss", "G_disc", "D_real", "D_fake"} <= set(e2)
    assert e2["loss"] == pytest.approx(0.03 * e2["sync"] + 0.07 * e2["G_disc"] + 0.9 * e2["L1"], rel=1e-5)
    ckpt = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)
    st = ckpt["wav2lip"]
    assert ckpt["family"] == "wav2lip" and (st["syncnet_wt"], st["sync_on_epoch"]) == (0.03, 1)
    assert "sync_on_step" not in st and st["global_step"] == len(log["steps"])  # log_every 1
    arch = ckpt["discriminator"]["arch"]
    assert arch["expert_source"]["kind"] == "wav2lip-expert" and arch["qual_widths"][0] == 4
    sd = ckpt["discriminator"]["state_dict"]
    assert all(torch.equal(sd[f"expert.{k}"], v) for k, v in frozen.items())  # frozen, BN stats included
    assert set(ckpt["optimizers"]) == {"G", "D"}
    G = generator_from_checkpoint(ckpt)
    assert isinstance(G, Wav2LipGenerator) and G.spec.fe_widths[0] == 2
    from PIL import Image

    assert Image.open(tmp_path / SAMPLES_NAME).size == (4 * 96, 2 * 96)  # ref | masked | generated | target
    D = get_family("wav2lip").discriminator_from_entry(ckpt["discriminator"])
    assert D.expert is not None and not any(p.requires_grad for p in D.expert.parameters())


def test_channels_last_steps_match_the_contiguous_ones(talking, expert_ckpt):
    """train.channels_last on the CPU (a speed option: benchmarks/wav2lip_step.py): the generator
    and the frozen expert run in channels-last memory and the same seeded steps give the same
    losses and weights as in contiguous memory (to float rounding)."""
    from unetprune.train import build_models

    over = {"width_mult": 0.125, "expert_checkpoint": str(expert_ckpt)}
    runs = {}
    for cl in (False, True):
        cfg = load_config(
            None,
            {
                **w2l_cfg(talking, channels_last=cl, expert_mode="eval"),
                "model": {"family": "wav2lip", "wav2lip": over},
            },
        )
        G, D, _ = build_models(cfg)
        tr = Wav2LipTrainer(G, D, cfg["train"], torch.device("cpu"))
        tr.syncnet_wt = 0.03  # the sync loss on: the expert's convolutions run too
        ds = talking_dataset(cfg, "train", "generator", 4)
        batch = default_collate([ds[i] for i in range(4)])
        losses = [tr.step(batch) for _ in range(3)]
        runs[cl] = (losses, {k: v.detach().clone() for k, v in tr.G.state_dict().items()}, tr)
    (l0, w0, _), (l1, w1, tr1) = runs[False], runs[True]
    conv = tr1.G.get_submodule("audio.1.conv").weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    # the first step starts from the same weights: equal to float rounding; Adam's early updates are
    # about lr * sign(gradient), so a gradient near 0 that rounds to the other sign moves a weight
    # up to 2 lr the other way: later steps agree to 1e-3, the weights to a few lr
    for i, (a, b) in enumerate(zip(l0, l1)):
        rel = 1e-5 if i == 0 else 1e-3
        assert float(a["L1"]) == pytest.approx(float(b["L1"]), rel=rel)
        assert float(a["sync"]) == pytest.approx(float(b["sync"]), rel=rel) and float(a["sync"]) > 0
    lr = w2l_cfg(talking)["train"]["lr"]
    params = {k for k, _ in tr1.G.named_parameters()}
    assert max(float((w0[k] - w1[k]).abs().max()) for k in params) <= 2 * 3 * lr
    # BatchNorm running statistics follow the batches' activations of those weights
    assert all(torch.allclose(w0[k].float(), w1[k].float(), atol=0.02) for k in set(w0) - params)


def test_expert_runs_in_train_mode_as_the_reference(talking, expert_ckpt, tmp_path):
    """train.expert_mode train (the default, as the reference): the frozen expert's weights do not
    move, its BatchNorm running statistics do (batch statistics in the loss); eval keeps both."""
    over = {"family": "wav2lip", "wav2lip": {"width_mult": 0.125, "expert_checkpoint": str(expert_ckpt)}}
    cfg = load_config(None, {**w2l_cfg(talking, sync_threshold=10.0, n_epochs=1), "model": over})
    assert cfg["train"]["expert_mode"] == "train"
    frozen = load_checkpoint(expert_ckpt)["generator"]["state_dict"]
    train(cfg, tmp_path / "train", progress=False)
    sd = load_checkpoint(tmp_path / "train" / CHECKPOINT_NAME)["discriminator"]["state_dict"]
    weights = [k for k in frozen if k.endswith(("conv.weight", "bn.weight", "bn.bias"))]
    stats = [k for k in frozen if k.endswith("running_mean")]
    assert weights and stats
    assert all(torch.equal(sd[f"expert.{k}"], frozen[k]) for k in weights)
    assert any(not torch.equal(sd[f"expert.{k}"], frozen[k]) for k in stats)  # the val check moved them

    from unetprune.families.wav2lip.train import Wav2LipCritics

    D = get_family("wav2lip").discriminator_from_entry(
        load_checkpoint(tmp_path / "train" / CHECKPOINT_NAME)["discriminator"]
    )
    assert isinstance(D, Wav2LipCritics)
    D.set_expert_mode("train")
    D.eval()
    assert D.expert.training  # whatever mode the critics are put in
    D.set_expert_mode("eval")
    D.train()
    assert not D.expert.training


def test_sync_switch_is_checked_every_n_steps_mid_epoch(talking, expert_ckpt):
    """train.sync_check_every: with the run's config bound, the validation sync loss is checked
    after every N-th step, so the sync loss switches on inside an epoch (the reference: every
    3000 steps); unbound, only epoch ends check it."""
    from torch.utils.data import DataLoader

    over = {"family": "wav2lip", "wav2lip": {"width_mult": 0.125, "expert_checkpoint": str(expert_ckpt)}}
    cfg = load_config(None, {**w2l_cfg(talking, sync_threshold=10.0, sync_check_every=2), "model": over})
    assert load_config(None, w2l_cfg(talking))["train"]["sync_check_every"] == 3000  # the reference's
    fam = get_family("wav2lip")
    batches = list(DataLoader(fam.train_dataset(cfg), batch_size=2, shuffle=False))
    assert len(batches) >= 4  # one epoch of at least 4 steps
    runs = {}
    for bound in (True, False):
        torch.manual_seed(0)
        G = fam.build(fam.spec_from_config(cfg))
        tr = fam.trainer(G, fam.build_discriminator(cfg, G), cfg["train"], torch.device("cpu"))
        if bound:
            tr.bind(cfg)
        runs[bound] = [float(tr.step(b)["sync"]) for b in batches[:4]]
        if bound:
            assert tr.sync_on_step == 2 and tr.syncnet_wt == 0.03 and tr.global_step == 4
            assert tr.extra_state()["wav2lip"]["sync_on_step"] == 2
        else:
            assert tr.sync_on_step is None and tr.syncnet_wt == 0.0
    assert runs[True][:2] == [0.0, 0.0] and all(v > 0 for v in runs[True][2:])  # on from step 3
    assert runs[False] == [0.0] * 4


def test_sync_boost_weighs_the_sync_loss_until_the_switch(talking, expert_ckpt):
    """train.sync_boost: the sync loss is on from the first step at the boost's weight (L1 at
    1 - boost) until the validation sync loss passes train.sync_threshold, then at syncnet_wt
    for the rest of the run; a threshold no sync loss passes (0) keeps the boost throughout, and
    the switch survives a resume (its step in the trainer state)."""
    from torch.utils.data import DataLoader

    over = {"family": "wav2lip", "wav2lip": {"width_mult": 0.125, "expert_checkpoint": str(expert_ckpt)}}
    fam = get_family("wav2lip")
    weights = {}
    for thr in (10.0, 0.0):
        cfg = load_config(
            None, {**w2l_cfg(talking, sync_threshold=thr, sync_check_every=2, sync_boost=0.2), "model": over}
        )
        batches = list(DataLoader(fam.train_dataset(cfg), batch_size=2, shuffle=False))[:4]
        torch.manual_seed(0)
        G = fam.build(fam.spec_from_config(cfg))
        tr = fam.trainer(G, fam.build_discriminator(cfg, G), cfg["train"], torch.device("cpu"))
        tr.bind(cfg)
        weights[thr] = []
        for b in batches:
            w = tr.syncnet_wt
            out = tr.step(b)
            assert float(out["sync"]) > 0
            assert float(out["loss"]) == pytest.approx(
                w * float(out["sync"]) + (1 - w) * float(out["L1"]), rel=1e-5
            )
            weights[thr].append(w)
        if thr:
            assert tr.switched and tr.sync_on_step == 2
            st = tr.extra_state()
            fresh = fam.trainer(G, fam.build_discriminator(cfg, G), cfg["train"], torch.device("cpu"))
            assert fresh.syncnet_wt == 0.2 and not fresh.switched
            fresh.after_load(st)
            assert fresh.switched and fresh.syncnet_wt == 0.03
        else:
            assert not tr.switched and tr.sync_on_step is None and tr.sync_on_epoch is None
            assert "sync_on_step" not in tr.extra_state()["wav2lip"]
    assert weights[10.0] == [0.2, 0.2, 0.03, 0.03]  # checked after step 2: below 10
    assert weights[0.0] == [0.2] * 4  # a BCE is never below 0
    with pytest.raises(ConfigError, match="train.sync_boost"):
        load_config(
            None,
            {**w2l_cfg(talking, sync_boost=0.95), "model": {"family": "wav2lip", "wav2lip": {"hq": True}}},
        )


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
    assert all(
        torch.equal(v, after["generator"]["state_dict"][k])
        for k, v in good["generator"]["state_dict"].items()
    )


def test_an_expert_run_is_not_resumed_as_a_generator_run(talking, tmp_path):
    from unetprune.errors import UserFacingError

    cfg = load_config(None, w2l_cfg(talking))
    train(validate(expert_config(cfg)), tmp_path, progress=False, stop_after_epochs=1)
    with pytest.raises(UserFacingError, match="wav2lip-expert"):
        train(cfg, tmp_path, resume=True, progress=False)


# ------------------------------------------------------------------------------------------
# kill -9 and resume: bit-identical CPU weights (expert, and generator with expert + HQ)
# ------------------------------------------------------------------------------------------


def test_in_clip_pair_loss_equals_the_pairwise_reference():
    """in_clip_pair_bce = half the mean BCE of the in-sync pairs' cosine similarity against 1, half
    that of the same group's pairs at least min_offset apart against 0 (computed pair by pair)."""
    import torch.nn.functional as F

    from unetprune.families.wav2lip.train import cosine_bce, in_clip_pair_bce

    g = torch.Generator().manual_seed(0)
    a, v = torch.rand(3, 5, 16, generator=g), torch.rand(3, 5, 16, generator=g)
    start = torch.tensor([[1, 2, 3, 7, 9], [4, 5, 6, 7, 8], [0, 10, 20, 30, 40]])
    loss, acc = in_clip_pair_bce(a, v, start, min_offset=2)
    pos, neg = [], []
    for b in range(3):
        for i in range(5):
            for j in range(5):
                c = float(F.cosine_similarity(a[b, i], v[b, j], dim=0).clamp(0, 1))
                if i == j:
                    pos.append(c)
                elif abs(int(start[b, i]) - int(start[b, j])) >= 2:
                    neg.append(c)
    # off-sync pairs (ordered): group 0 has 8 unordered pairs >= 2 apart, group 1 has 6, group 2 all 10
    assert len(pos) == 15 and len(neg) == 2 * (8 + 6 + 10)
    want = 0.5 * -np.mean(np.log(pos)) + 0.5 * -np.mean(np.log(1 - np.asarray(neg)))
    assert float(loss) == pytest.approx(want, rel=1e-5)
    want_acc = 0.5 * np.mean(np.asarray(pos) > 0.5) + 0.5 * np.mean(np.asarray(neg) <= 0.5)
    assert float(acc) == pytest.approx(want_acc)
    # its in-sync half is the reference cosine loss of the same pairs
    ref = cosine_bce(a.flatten(0, 1), v.flatten(0, 1), torch.ones(15, 1))
    assert float(ref) == pytest.approx(-np.mean(np.log(pos)), rel=1e-5)
    # separated embeddings (one-hot per window) score 0 with every pair right
    eye = torch.eye(5).expand(2, 5, 5)
    assert float(in_clip_pair_bce(eye, eye, start[:2])[0]) == pytest.approx(0.0, abs=1e-6)
    assert float(in_clip_pair_bce(eye, eye, start[:2])[1]) == 1.0


def test_expert_in_clip_pairs_trains_resumes_and_checks_its_config(talking, tmp_path):
    """train.expert.sampling in_clip_pairs: a killed run resumes bitwise; batch_size must be a
    multiple of windows_per_clip."""
    e = {"n_epochs": 4, "batch_size": 4, "sampling": "in_clip_pairs", "windows_per_clip": 2, "min_offset": 2}
    a, b = kill_and_resume(w2l_cfg(talking, expert=e), tmp_path, 4, "--expert")
    assert_equal_tensors(a["generator"]["state_dict"], b["generator"]["state_dict"], "expert")
    log = json.loads((tmp_path / "full" / TRAIN_LOG_NAME).read_text())
    assert log["global_step"] == 4 * 2  # max_train_items 8 = 4 groups of 2, 2 groups (4 windows) a step
    assert all(0 < ep["sync"] < 10 and 0 <= ep["acc"] <= 1 for ep in log["epochs"])
    assert log["eval"]["split"] == "val"
    with pytest.raises(
        ConfigError, match=r"train\.expert\.batch_size.*multiple of train\.expert\.windows_per_clip \(3\)"
    ):
        load_config(None, w2l_cfg(talking, expert={**e, "windows_per_clip": 3}))


def test_expert_sigkill_and_resume_gives_identical_weights(talking, tmp_path):
    cfg = w2l_cfg(talking, expert={"n_epochs": 4, "batch_size": 4})
    a, b = kill_and_resume(cfg, tmp_path, 4, "--expert")
    assert a["family"] == b["family"] == "wav2lip-expert"
    assert_equal_tensors(a["generator"]["state_dict"], b["generator"]["state_dict"], "expert")
    assert_equal_tensors(a["optimizers"], b["optimizers"], "optimizers")


def test_generator_sigkill_and_resume_gives_identical_weights(talking, expert_ckpt, tmp_path):
    cfg = {
        **w2l_cfg(talking, n_epochs=3, sync_threshold=10.0),
        "model": {
            "family": "wav2lip",
            "wav2lip": {"width_mult": 0.125, "hq": True, "expert_checkpoint": str(expert_ckpt)},
        },
    }
    a, b = kill_and_resume(cfg, tmp_path, 3)
    for part in ("generator", "discriminator"):
        assert_equal_tensors(a[part]["state_dict"], b[part]["state_dict"], part)
    assert_equal_tensors(a["optimizers"], b["optimizers"], "optimizers")
    assert a["wav2lip"] == b["wav2lip"] and b["wav2lip"]["syncnet_wt"] == 0.03


def test_generator_sigkill_mid_epoch_and_resume_gives_identical_weights(talking, expert_ckpt, tmp_path):
    """The LRS2 configs' checkpoints by steps (train.save_every_steps): killed after a state
    written inside an epoch, with the sync switch checked by steps too, the resumed generator
    run ends bitwise equal to an uninterrupted one."""
    cfg = {
        **w2l_cfg(
            talking,
            n_epochs=2,
            batch_size=2,  # 4 steps an epoch: the switch at step 3 falls inside the first
            save_every=100,
            save_every_steps=1,
            sync_check_every=3,
            sync_threshold=10.0,
        ),
        "model": {
            "family": "wav2lip",
            "wav2lip": {"width_mult": 0.125, "hq": True, "expert_checkpoint": str(expert_ckpt)},
        },
    }
    a, b = kill_and_resume(cfg, tmp_path, 2, mid_epoch=True)
    for part in ("generator", "discriminator"):
        assert_equal_tensors(a[part]["state_dict"], b[part]["state_dict"], part)
    assert_equal_tensors(a["optimizers"], b["optimizers"], "optimizers")
    assert a["wav2lip"] == b["wav2lip"] and b["wav2lip"]["sync_on_step"] == 3


# ------------------------------------------------------------------------------------------
# the learning check on the demo (minutes on 2 cores)
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """config/wav2lip_demo.yaml as the workflow runs it on the full talking demo: the lip-sync
    expert, then the generator with the expert frozen; then the pipeline's evaluation protocol
    (TalkingEvalSet: every frame of the test clips, identity reference half a clip away) for the
    trained generator, the untrained one and "copy the reference frame" (the very reference frame
    the generator gets): lower-half L1."""
    from unetprune.families.wav2lip.datasets import TalkingEvalSet
    from unetprune.families.wav2lip.demo import build_talking_demo
    from unetprune.train import build_models

    data = tmp_path_factory.mktemp("talking_demo")
    path = os.path.join(REPO, "config", "wav2lip_demo.yaml")
    cfg = load_config(path, {"data": {"root": str(data)}})
    t = cfg["demo"]["talking"]
    build_talking_demo(
        data,
        n_train=t["n_train"],
        n_val=t["n_val"],
        n_test=t["n_test"],
        side=t["side"],
        seed=t["seed"],
        progress=False,
    )
    expert = tmp_path_factory.mktemp("demo_expert")
    t0 = time.time()
    elog = train(validate(expert_config(cfg)), expert, progress=False)
    t1 = time.time()
    cfg = load_config(
        path,
        {
            "data": {"root": str(data)},
            "model": {"wav2lip": {"expert_checkpoint": str(expert / CHECKPOINT_NAME)}},
        },
    )
    out = tmp_path_factory.mktemp("demo_run")
    log = train(cfg, out, progress=False)
    t2 = time.time()
    # the learning check of train.json (its windows: TalkingFaceDataset's references)
    ds = talking_dataset(cfg, cfg["train"]["eval_split"], "generator", cfg["train"]["eval_images"])
    G = generator_from_checkpoint(out / CHECKPOINT_NAME)
    G0 = build_models(cfg)[0]  # the same seeded initialisation
    # the pipeline's evaluation protocol on every frame of the test clips
    es = TalkingEvalSet.load({**cfg, "evaluate": {**cfg["evaluate"], "max_images": None}}, "test", data)
    mode, seed = cfg["evaluate"]["mode"], cfg["seed"]
    frames = {
        "trained": es.generate(G, mode, seed),
        "untrained": es.generate(G0, mode, seed),
        "copy_reference": es.copied_references,
    }
    res = {
        "check": {
            "untrained": log["eval"]["l1_init"],
            "trained": log["eval"]["l1_final"],
            "copy_reference": copy_reference_l1(ds),
            "recomputed": generated_lower_half_l1(G, ds, mode, seed),
        },
        "l1": {k: es.region_l1(v) for k, v in frames.items()},
        "openness": {k: _mean_openness_r(v, es, data) for k, v in frames.items()},
        "expert_sync": {"before": elog["eval"]["l1_init"], "after": elog["eval"]["l1_final"]},
        "sync_on_epoch": torch.load(out / CHECKPOINT_NAME, weights_only=True)["wav2lip"]["sync_on_epoch"],
        "n_frames": es.n,
        "expert_s": t1 - t0,
        "generator_s": t2 - t1,
    }
    print(
        f"\nwav2lip demo learning check (expert {res['expert_s']:.0f} s, generator {res['generator_s']:.0f} s "
        f"of training): {json.dumps({k: v for k, v in res.items() if k not in ('expert_s', 'generator_s')})}"
    )
    return res


def _mean_openness_r(frames, es, data) -> float:
    """The openness metric: per test clip, the correlation of the frames' pixel-read mouth
    openness with the recorded track, averaged over clips."""
    from unetprune.families.wav2lip.openness import clip_correlations, recorded_tracks

    per = clip_correlations(frames.numpy(), es.clips, recorded_tracks(data))
    return float(np.mean([c["r"] for c in per if c["r"] is not None]))


@pytest.mark.slow
def test_demo_generator_moves_the_mouth_with_the_audio(demo_run):
    """The demo recipe's generator lip-syncs the unseen test faces: its mouths open with the
    recorded track, openness r at least 0.3 and 0.2 above copying the reference frame and the
    untrained generator, which ignore the audio (as does a generator whose decoder has learned to
    ignore it: 0.09 to 0.11).  (When the boosted sync loss switched to the reference weight,
    ``sync_on_epoch``, is printed with the scores.)"""
    o = demo_run["openness"]
    assert o["trained"] >= 0.3, o
    assert o["trained"] > max(o["copy_reference"], o["untrained"]) + 0.2, o


@pytest.mark.slow
def test_demo_expert_learns_to_tell_sync(demo_run):
    """The demo's expert (in-clip pairs) leaves the ln 2 plateau: its validation sync loss ends
    at most 0.6, below where it started."""
    e = demo_run["expert_sync"]
    assert e["after"] <= 0.6 < e["before"]


@pytest.mark.slow
def test_demo_generator_beats_the_untrained_generator(demo_run):
    c = demo_run["check"]
    assert c["recomputed"] == pytest.approx(c["trained"], rel=1e-5)
    assert c["trained"] < 0.9 * c["untrained"]
    assert demo_run["l1"]["trained"] < 0.9 * demo_run["l1"]["untrained"]


def test_generator_checks_every_n_steps_leave_the_training_unchanged(talking, expert_ckpt, tmp_path):
    """train.check_every_steps on the Wav2Lip generator (HQ, expert in train mode): the checks after
    every step, mid-epoch too, are recorded in eval.curve_steps and leave the weights as a run
    without them."""
    runs = {}
    for n in (0, 1):
        cfg = {
            **w2l_cfg(talking, n_epochs=2, check_every=0, check_every_steps=n, sync_threshold=10.0),
            "model": {
                "family": "wav2lip",
                "wav2lip": {"width_mult": 0.125, "hq": True, "expert_checkpoint": str(expert_ckpt)},
            },
        }
        runs[n] = train(load_config(None, cfg), tmp_path / str(n), progress=False)
    steps = runs[1]["eval"]["curve_steps"]
    total = runs[1]["global_step"]
    assert total == runs[0]["global_step"] >= 4 and runs[0]["eval"]["curve_steps"] == []
    assert [c["step"] for c in steps] == list(range(1, total + 1)) and all(c["score"] > 0 for c in steps)
    a = load_checkpoint(tmp_path / "0" / CHECKPOINT_NAME)
    b = load_checkpoint(tmp_path / "1" / CHECKPOINT_NAME)
    for part in ("generator", "discriminator"):
        assert_equal_tensors(a[part]["state_dict"], b[part]["state_dict"], part)
