"""Distillation while fine-tuning: frozen teacher, trained 1x1 adapters dropped from the exported
generator, the terms in train.json, kill -9 resume bit-identical, any family."""

from __future__ import annotations

import json

import pytest
import torch

from unetprune.checkpoint import generator_from_checkpoint, load_checkpoint, save_generator
from unetprune.config import load_config
from unetprune.errors import UserFacingError
from unetprune.family import family_of
from unetprune.layout import CHECKPOINT_NAME, ORIGINAL, TRAIN_LOG_NAME, Layout
from unetprune.pruning import prune
from unetprune.train import build_models, finetune_config, train
from unetprune.trainer import DISTILL_LOSSES, Distillation

from killresume import assert_equal_tensors, kill_and_resume


def p2p_cfg(data_root, **finetune):
    return {
        "experiment": "kd",
        "seed": 5,
        "data": {"dataset": "folder", "root": str(data_root), "load_size": 36, "crop_size": 32},
        "demo": {"image_size": 32},
        "model": {"pix2pix": {"num_downs": 5, "ngf": 8, "ndf": 4}},
        "train": {
            "n_epochs": 1,
            "n_epochs_decay": 0,
            "save_every": 1,
            "threads": 1,
            "log_every": 1,
            "eval_images": 2,
        },
        "finetune": {"n_epochs": 2, "n_epochs_decay": 0, **finetune},
        "evaluate": {"fid_backend": "standin"},
    }


@pytest.fixture(scope="module")
def teacher_and_student(tiny_demo, tmp_path_factory):
    """The original (one epoch) and its inner-pruned variant (levels 4-5 at 0.5)."""
    root = tmp_path_factory.mktemp("kd")
    cfg = load_config(None, p2p_cfg(tiny_demo))
    train(cfg, root / "original", progress=False)
    original = root / "original" / CHECKPOINT_NAME
    g = generator_from_checkpoint(original)
    new, info = prune(g, "inner", ratio=0.5, levels=[4, 5])
    pruned = root / "student.pt"
    save_generator(pruned, new, config=cfg, meta={"pruning": info})
    return original, pruned


def kd_cfg(tiny_demo, features=("down4", "up4")):
    cfg = load_config(None, p2p_cfg(tiny_demo, distill={"weight": 2.0, "features": list(features)}))
    return finetune_config(cfg)


def test_config_defaults_and_refusals(tiny_demo):
    cfg = load_config(None, p2p_cfg(tiny_demo))
    assert cfg["finetune"]["distill"] == {"weight": 1.0, "features": []}
    from unetprune.errors import ConfigError

    with pytest.raises(ConfigError, match="finetune.distill.weight"):
        load_config(None, p2p_cfg(tiny_demo, distill={"weight": 0}))
    with pytest.raises(ConfigError, match="finetune.distill.features"):
        load_config(None, p2p_cfg(tiny_demo, distill={"features": ["Down 4"]}))


def test_teacher_frozen_adapters_learn(tiny_demo, teacher_and_student):
    original, pruned = teacher_and_student
    cfg = kd_cfg(tiny_demo)
    G, D, _ = build_models(cfg, pruned, original)
    fam = family_of(G)
    trainer = fam.trainer(G, D, cfg["train"], torch.device("cpu"))
    teacher = generator_from_checkpoint(original)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    kd = Distillation(
        G, teacher, fam, 2.0, ["down4", "up4", "down1"], cfg["train"], torch.device("cpu"), "train_bn"
    )
    trainer.enable_distillation(kd)
    assert set(DISTILL_LOSSES) <= set(trainer.losses)
    # widths differ at the pruned levels (adapters), not at down1 (no adapter)
    assert sorted(kd.adapters) == ["down4", "up4"]
    assert (kd.adapters["down4"].in_channels, kd.adapters["down4"].out_channels) == (32, 64)
    adapters0 = {k: v.clone() for k, v in kd.adapters.state_dict().items()}
    batch = next(iter(torch.utils.data.DataLoader(fam.train_dataset(cfg), batch_size=2)))
    trainer.set_train_mode()
    for _ in range(2):
        kd.zero_grad()
        losses = trainer.step(batch)
        kd.step()
    assert {"KD", "KD_out", "KD_feat"} <= set(losses)
    assert float(losses["KD"]) == pytest.approx(
        2.0 * (float(losses["KD_out"]) + float(losses["KD_feat"])), rel=1e-5
    )
    assert float(losses["KD_feat"]) > 0
    assert all(not p.requires_grad and p.grad is None for p in teacher.parameters())
    assert_equal_tensors(before, teacher.state_dict(), "teacher")  # weights and BN buffers
    assert any(not torch.equal(adapters0[k], v) for k, v in kd.adapters.state_dict().items())


def test_distilled_finetune_logs_terms_and_exports_no_adapters(tiny_demo, teacher_and_student, tmp_path):
    original, pruned = teacher_and_student
    teacher_bytes = original.read_bytes()
    out = tmp_path / "ft"
    log = train(
        kd_cfg(tiny_demo),
        out,
        init_from=pruned,
        init_discriminator_from=original,
        progress=False,
        distill_from=original,
    )
    saved = json.loads((out / TRAIN_LOG_NAME).read_text())
    assert saved["distill"]["features"] == ["down4", "up4"] and saved["distill"]["weight"] == 2.0
    assert saved["distill"]["adapters"] == {"down4": [32, 64], "up4": [16, 32]}  # student -> teacher width
    for e in saved["epochs"]:
        assert {"KD", "KD_out", "KD_feat"} <= set(e) and e["KD"] > 0
    assert log["config"]["train"]["distill"] == {"weight": 2.0, "features": ["down4", "up4"]}
    ckpt = load_checkpoint(out / CHECKPOINT_NAME)
    student = generator_from_checkpoint(pruned)
    assert set(ckpt["generator"]["state_dict"]) == set(student.state_dict())  # no adapter in the generator
    assert set(ckpt["distill"]["adapters"]) == {"down4.weight", "up4.weight"}
    exported = generator_from_checkpoint(out / CHECKPOINT_NAME)
    assert family_of(exported).widths(exported) == family_of(student).widths(student)
    assert original.read_bytes() == teacher_bytes


def test_distillation_refuses_unknown_features(tiny_demo, teacher_and_student, tmp_path):
    original, pruned = teacher_and_student
    with pytest.raises(UserFacingError, match="finetune.distill.features.*down9"):
        train(
            kd_cfg(tiny_demo, features=["down9"]),
            tmp_path / "x",
            init_from=pruned,
            init_discriminator_from=original,
            progress=False,
            distill_from=original,
        )


def test_a_distilled_run_does_not_resume_a_plain_one(tiny_demo, teacher_and_student, tmp_path):
    original, pruned = teacher_and_student
    cfg = kd_cfg(tiny_demo)
    train(
        cfg,
        tmp_path / "ft",
        init_from=pruned,
        init_discriminator_from=original,
        progress=False,
        stop_after_epochs=1,
    )
    with pytest.raises(UserFacingError, match="train.distill"):
        train(
            cfg,
            tmp_path / "ft",
            resume=True,
            init_from=pruned,
            init_discriminator_from=original,
            progress=False,
            distill_from=original,
        )


def test_sigkill_and_resume_with_distillation_is_bit_identical(tiny_demo, teacher_and_student, tmp_path):
    original, pruned = teacher_and_student
    cfg = p2p_cfg(tiny_demo, distill={"weight": 1.0, "features": ["down4", "up5"]})
    cfg["finetune"].update(n_epochs=2, n_epochs_decay=1)
    extra = ("--finetune", "--init-from", str(pruned), "--init-discriminator-from", str(original))
    a, b = kill_and_resume(cfg, tmp_path, 3, *extra, "--distill-from", str(original), timeout=300)
    for part in ("generator", "discriminator"):
        assert_equal_tensors(a[part]["state_dict"], b[part]["state_dict"], part)
    assert_equal_tensors(a["optimizers"], b["optimizers"], "optimizers")
    assert_equal_tensors(a["distill"], b["distill"], "distill")
    assert set(a["distill"]["adapters"]) == {"down4.weight", "up5.weight"}


def test_wav2lip_student_distils_through_the_same_seam():
    from unetprune.families.wav2lip.networks import Wav2LipGenerator, Wav2LipSpec

    torch.manual_seed(0)
    teacher = Wav2LipGenerator(Wav2LipSpec.reference(0.125)).eval()
    student, _ = prune(teacher, "cut", k=1)
    student.train()
    fam = family_of(student)
    tcfg = {"lr": 1e-3, "beta1": 0.5, "beta2": 0.999}
    kd = Distillation(student, teacher, fam, 1.0, ["fe1", "fe6", "fd4"], tcfg, torch.device("cpu"), "eval")
    assert kd.features == ["fe1", "fd4"] and kd.skipped == ["fe6"]  # cut-k1 removed fe6
    assert len(kd.adapters) == 0  # a cut keeps the remaining widths
    face, audio = torch.rand(2, 6, 5, 96, 96), torch.randn(2, 5, 1, 80, 16)
    out = student(face, audio)
    terms = kd.terms((face, audio), out)
    terms["KD"].backward()
    assert terms["KD_feat"] > 0 and terms["KD_out"] > 0
    assert all(p.grad is None for p in teacher.parameters())
    assert any(p.grad is not None for p in student.parameters())


def test_distillation_findings_are_phrased_by_significance():
    import pandas as pd

    from unetprune.report.beyond import DISTILL_COLUMNS, distill_findings

    rows = [["cut-k2-kd", "cut-k2", "fid", 9.0, 0.2, 9.3, 0.2, "not resolved"]]
    comp = pd.DataFrame(rows, columns=DISTILL_COLUMNS)
    comp.attrs["metric"] = "fid"
    head, lines = distill_findings(comp)
    assert head == "Whether distillation helped is not resolved at this noise level (1 pair(s))."
    assert lines == [
        "cut-k2-kd vs cut-k2: FID 9 ± 0.2 vs 9.3 ± 0.2: not resolved at this noise level (FID differs by 0.3, within 2 std)."
    ]
    comp.loc[0, "winner"] = "cut-k2"
    assert (
        distill_findings(comp)[0] == "Distillation made fine-tuning worse beyond the noise in every pair (1)."
    )


def test_distilled_variants_in_the_config(tiny_demo):
    from unetprune import pipeline

    cfg = load_config(
        None,
        {
            **p2p_cfg(tiny_demo),
            "variants": [{"strategy": "cut", "k": 1}, {"strategy": "cut", "k": 1, "distill": True}],
        },
    )
    assert list(pipeline.primary_variants(cfg)) == ["cut-k1", "cut-k1-kd"]
    assert pipeline.distilled_pairs(cfg) == {"cut-k1-kd": "cut-k1"}
    assert {a["reference"] for a in pipeline.baseline_variants(cfg).values()} == {"cut-k1"}
    assert pipeline.prune_cli_args(cfg, "cut-k1-kd") == pipeline.prune_cli_args(cfg, "cut-k1")
    assert pipeline.finetune_cli_args(cfg, "cut-k1") == []
    assert pipeline.finetune_cli_args(cfg, "cut-k1-kd") == [
        "--distill-from",
        str(Layout.from_config(cfg).checkpoint(ORIGINAL)),
    ]


def test_wav2lip_trainer_step_adds_the_distillation_terms():
    from unetprune.family import get_family

    cfg = load_config(None, {"model": {"family": "wav2lip", "wav2lip": {"width_mult": 0.125, "hq": True}}})
    fam = get_family("wav2lip")
    torch.manual_seed(0)
    teacher = fam.build(fam.spec_from_config(cfg), init=True)
    student, _ = prune(teacher, "inner", ratio=0.5)
    trainer = fam.trainer(student, fam.build_discriminator(cfg, student), cfg["train"], torch.device("cpu"))
    kd = Distillation(student, teacher, fam, 0.5, ["fe5", "fd1"], cfg["train"], torch.device("cpu"), "eval")
    trainer.enable_distillation(kd)
    assert sorted(kd.adapters) == ["fd1", "fe5"]
    gen = torch.Generator().manual_seed(1)
    batch = {
        "face": torch.rand(2, 6, 5, 96, 96, generator=gen),
        "target": torch.rand(2, 3, 5, 96, 96, generator=gen),
        "indiv_mels": torch.randn(2, 5, 1, 80, 16, generator=gen),
        "mel": torch.randn(2, 1, 80, 16, generator=gen),
    }
    teacher_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    adapters_before = {k: v.clone() for k, v in kd.adapters.state_dict().items()}
    trainer.set_train_mode()
    kd.zero_grad()
    losses = trainer.step(batch)
    kd.step()
    assert {"L1", "loss", "KD", "KD_out", "KD_feat"} <= set(losses)
    assert float(losses["KD"]) == pytest.approx(
        0.5 * (float(losses["KD_out"]) + float(losses["KD_feat"])), rel=1e-5
    )
    assert_equal_tensors(teacher_before, teacher.state_dict(), "teacher")
    assert all(not torch.equal(adapters_before[k], v) for k, v in kd.adapters.state_dict().items())
    state = trainer.state()
    assert set(state["distill"]["adapters"]) == {"fe5.weight", "fd1.weight"}
