"""Wav2Lip through the pipeline: variants named and validated from the
config, the prune command on a Wav2Lip checkpoint (cut-k exact counts, cut-res, budget-matched
global baselines in params and in MACs), MACs and latency of a two-input generator, the
evaluation set (every frame of the test clips, a reference that never shows the scored mouth,
the lower half scored), LSE wired into the Evaluator, the sample video, and dry runs of the
demo and LRS2 configs through the one Snakemake DAG (locally and with the SLURM profile)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from unetprune import pipeline
from unetprune.checkpoint import generator_from_checkpoint, load_checkpoint, save_generator
from unetprune.config import ConfigError, load_config
from unetprune.layout import Layout
from unetprune.metrics.complexity import count_all, input_shapes, measure_latency
from unetprune.family import get_family

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DEMO = REPO / "config" / "wav2lip_demo.yaml"
LRS2 = REPO / "config" / "experiments" / "wav2lip_lrs2.yaml"


def w2l_cfg(**over):
    items = [f"{k}={json.dumps(v)}" for k, v in over.items()]
    return load_config(DEMO, items)


# --------------------------------------------------------------------------------------
# variants from the config
# --------------------------------------------------------------------------------------


def test_demo_variants_and_prune_arguments():
    cfg = w2l_cfg()
    v = pipeline.all_variants(cfg)
    assert list(pipeline.primary_variants(cfg)) == [
        "inner-l5-6-r0.75",
        "cut-k2",
        "plan-match-cut-k2",
        "inner-l5-6-r0.75-kd",
    ]
    # 2 primaries with 2 matched baselines each; the plan shares cut-k2's budget (and baselines),
    # the distilled fine-tune its base variant's pruned model
    assert len(v) == 8
    lrs2 = load_config(LRS2)  # the residual cut runs in the paper configurations
    assert "cut-res-l5-6" in pipeline.primary_variants(lrs2)
    assert pipeline.prune_cli_args(lrs2, "cut-res-l5-6") == [
        "--strategy",
        "cut",
        "--unit",
        "residual",
        "--levels",
        "5",
        "6",
    ]
    assert pipeline.prune_cli_args(cfg, "inner-l5-6-r0.75")[:6] == [
        "--strategy",
        "inner",
        "--ratio",
        "0.75",
        "--levels",
        "5",
    ]
    assert pipeline.sensitivity_layers(cfg) == [f"fe{i}" for i in range(7)] + [f"fd{i}" for i in range(7)]


@pytest.mark.parametrize(
    "variants,message",
    [
        (
            [{"strategy": "cut", "k": 3}],
            "cut k=3 is refused for this wav2lip model: the audio embedding (512 channels) "
            "would replace fd3's output, which fd4 reads as 384 channels",
        ),
        (
            [{"strategy": "cut", "k": 6}],
            "config error at 'variants[0].k': k=6 must leave at least 2 levels (1..5",
        ),
        (
            [{"strategy": "inner", "ratio": 0.5, "levels": [7]}],
            "config error at 'variants[0].levels': level(s) [7]",
        ),
        ([{"strategy": "cut", "unit": "residual", "k": 1}], "a cut with unit residual takes levels, not k"),
        ([{"strategy": "inner", "ratio": 0.5, "unit": "residual"}], "config error at 'variants[0].unit'"),
    ],
)
def test_wav2lip_variants_are_validated(variants, message):
    with pytest.raises(ConfigError) as e:  # validation runs the variants' checks
        w2l_cfg(variants=variants, model={"family": "wav2lip", "wav2lip": {"width_mult": 1.0}})
    assert message in str(e.value)


def test_cut_res_is_refused_for_pix2pix():
    with pytest.raises(ConfigError, match=r"variants\[0\].unit': num_downs=6 has no residual blocks"):
        load_config(REPO / "config" / "config.yaml", ['variants=[{"strategy": "cut", "unit": "residual"}]'])


# --------------------------------------------------------------------------------------
# complexity of a two-input generator
# --------------------------------------------------------------------------------------


def test_macs_and_latency_of_the_reference_generator():
    fam = get_family("wav2lip")
    with torch.device("meta"):
        g = fam.build(fam.spec_from_config({"model": {"family": "wav2lip"}}))
    assert input_shapes(g, (2, 6, 96, 96)) == [(2, 6, 96, 96), (2, 1, 80, 16)]
    assert count_all(g, (1, 6, 96, 96)) == {
        "params": 36_298_035,
        "macs_physical": 3_966_984_192,
        "macs_output": 6_202_417_152,
    }
    assert fam.counting_shape(g, 256) == (1, 6, 96, 96)  # frames are 96 px whatever data.crop_size says
    small = fam.build(
        fam.spec_from_config({"model": {"family": "wav2lip", "wav2lip": {"width_mult": 0.125}}}), seed=0
    )
    lat = measure_latency(small, (2, 6, 96, 96), iters=1, warmup=0)
    assert lat["batch"] == 2 and lat["median_ms"] > 0


# --------------------------------------------------------------------------------------
# the prune command on Wav2Lip checkpoints
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def w2l_ckpts(tmp_path_factory):
    """A full-width (reference) and a quarter-width Wav2Lip checkpoint."""
    d = tmp_path_factory.mktemp("w2l_ckpt")
    fam = get_family("wav2lip")
    out = {}
    for name, wm in (("full", 1.0), ("small", 0.25)):
        cfg = w2l_cfg(model={"family": "wav2lip", "wav2lip": {"width_mult": wm}})
        g = fam.build(fam.spec_from_config(cfg), seed=0)
        save_generator(d / f"{name}.pt", g, config=cfg)
        out[name] = d / f"{name}.pt"
    return out


def _prune(src, out, *args):
    from unetprune.cli import main

    assert main(["prune", "--checkpoint", str(src), *args, "--out", str(out)]) == 0
    return json.loads(Path(out).with_suffix(".json").read_text())


def test_prune_cli_cut_k_counts_and_cut_res(w2l_ckpts, tmp_path):
    s1 = _prune(w2l_ckpts["full"], tmp_path / "k1.pt", "--strategy", "cut", "--k", "1")
    s2 = _prune(w2l_ckpts["full"], tmp_path / "k2.pt", "--strategy", "cut", "--k", "2")
    assert (s1["params"], s2["params"]) == (26_328_883, 13_345_075)
    assert s1["input_shape"] == [1, 6, 96, 96] and s1["params_before"] == 36_298_035
    assert s1["macs_physical"] < s1["macs_physical_before"]
    r = _prune(w2l_ckpts["full"], tmp_path / "res.pt", "--strategy", "cut", "--unit", "residual")
    assert r["info"]["removed_blocks"] == ["fe5.1", "fd1.1", "fd2.1", "fd2.2"]
    g = generator_from_checkpoint(tmp_path / "res.pt")
    assert g.spec.fe_residual[5] == 0 and g.spec.fd_residual[2] == 0
    assert load_checkpoint(tmp_path / "res.pt")["meta"]["pruning"]["unit"] == "residual"


@pytest.mark.parametrize("match", ["params", "macs"])
def test_global_baselines_match_the_variant_within_one_percent(w2l_ckpts, tmp_path, match):
    ref = _prune(w2l_ckpts["small"], tmp_path / "inner.pt", "--strategy", "inner", "--ratio", "0.75")
    key = "params" if match == "params" else "macs_physical"
    for strategy in ("global-uniform", "global-threshold"):
        flag = (
            ["--match-params", str(tmp_path / "inner.pt")]
            if match == "params"
            else ["--match-macs", str(tmp_path / "inner.pt"), "--macs-convention", "physical"]
        )
        s = _prune(w2l_ckpts["small"], tmp_path / f"{strategy}.pt", "--strategy", strategy, *flag)
        assert abs(s[key] - ref[key]) <= 0.01 * ref[key], (strategy, s[key], ref[key])
        if strategy == "global-threshold":  # the fair default: no group below 10% of its filters
            assert all(
                s["widths"][k] >= 0.1 * s["widths_before"][k]
                for k in s["widths"]
                if isinstance(s["widths"][k], int)
            )


# --------------------------------------------------------------------------------------
# evaluation: the talking-face evaluation set, LSE in the Evaluator
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def talking(tmp_path_factory):
    """A tiny talking-face demo as the workflow lays it out (results/<exp>/data)."""
    from unetprune.families.wav2lip.demo import build_talking_demo

    base = tmp_path_factory.mktemp("w2l_eval")
    cfg = w2l_cfg(experiment="w2l-test")
    lay = Layout.from_config(cfg, base / "results")
    build_talking_demo(lay.data_root, n_train=2, n_val=1, n_test=1, progress=False)
    return cfg, base, lay


def test_talking_eval_set(talking):
    from unetprune.families.wav2lip.datasets import TalkingEvalSet

    cfg, base, lay = talking
    es = TalkingEvalSet.load(
        load_config(None, {**cfg, "evaluate": {**cfg["evaluate"], "max_images": 30}}), "test", lay.data_root
    )
    clip = es.clips[0]
    assert es.n == 30 and clip["n_frames"] == 30 and len(es.clips) == 1
    n_clip = len(list((lay.talking_root / clip["name"]).glob("*.jpg")))
    # the reference of frame i is frame (i + n//2) mod n of the same clip: never the scored frame itself
    for i in range(es.n):
        r = es.refs[i]
        assert r != i
        want = (i + n_clip // 2) % n_clip
        if want < es.n:
            assert r == want
    assert tuple(es.targets.shape) == (30, 3, 96, 96) and es.targets.dtype == torch.uint8
    assert np.array_equal(es.targets[0].permute(1, 2, 0).numpy(), es.faces[0][..., ::-1])  # RGB of BGR
    face, mel = next(iter(es.batches(4)))
    assert tuple(face.shape) == (4, 6, 96, 96) and tuple(mel.shape) == (4, 1, 80, 16)
    assert float(face[:, :3, 48:].abs().max()) == 0.0  # the lower half is masked
    assert float(face[:, 3:, 48:].abs().max()) > 0.0  # the reference is whole
    assert es.paired_rows == slice(48, 96)
    y = torch.zeros(2, 3, 96, 96)
    y[:, 0] = 1.0  # BGR blue → RGB (0, 0, 255)
    assert es.quantize_outputs(y)[0, :, 0, 0].tolist() == [0, 0, 255]
    # the copy baseline is each frame's reference, as RGB; region L1 in [0, 1] units
    copy = es.copied_references
    assert tuple(copy.shape) == (30, 3, 96, 96)
    assert np.array_equal(copy[3].permute(1, 2, 0).numpy(), es.faces[es.refs[3]][..., ::-1])  # RGB of BGR
    assert torch.equal(
        face[2, 3:], torch.from_numpy(es.faces[es.refs[2]].transpose(2, 0, 1).astype(np.float32) / 255.0)
    )
    assert es.region_l1(es.targets) == 0.0
    lower = (copy[:, :, 48:].float() - es.targets[:, :, 48:].float()).abs().mean().item() / 255.0
    assert es.region_l1(copy) == pytest.approx(lower) and es.region_l1(copy) > 0.0
    assert es.region_l1(torch.full_like(copy, 255), slice(0, 48)) == pytest.approx(
        1.0 - es.targets[:, :, :48].float().mean().item() / 255.0
    )

    class Grey(torch.nn.Module):  # a generator of constant grey faces
        def __init__(self):
            super().__init__()
            self.level = torch.nn.Parameter(torch.tensor(0.5))

        def forward(self, face, mel):
            return self.level.expand(face.shape[0], 3, 96, 96)

    out = es.generate(Grey(), "eval", batch_size=7)
    assert tuple(out.shape) == (30, 3, 96, 96) and out.dtype == torch.uint8
    assert set(out.unique().tolist()) == {int(es.quantize_outputs(torch.full((1, 3, 1, 1), 0.5))[0, 0, 0, 0])}


def test_evaluator_scores_wav2lip_with_lse(talking):
    from unetprune.evaluate import Evaluator
    from unetprune.families.wav2lip.lse import LSEError, train_lse_standin

    cfg, base, lay = talking
    cfg = load_config(None, {**cfg, "evaluate": {**cfg["evaluate"], "max_images": 24}})
    import os

    old = os.getcwd()
    os.chdir(base)
    try:
        with pytest.raises(
            LSEError,
            match=r"standin.pt: no stand-in LSE network yet; train it with "
            r"`unetprune train-lse-standin",
        ):
            Evaluator(cfg, "test", latency=False)
        train_lse_standin(lay.talking_root, lay.lse_standin, steps=2, batch=4)
        fam = get_family("wav2lip")
        g = fam.build(fam.spec_from_config(cfg), seed=0)
        r = Evaluator(cfg, "test", latency=False).score(g)
    finally:
        os.chdir(old)
    assert r["n_images"] == 24 and r["image_size"] == 96
    assert r["complexity"]["input_shape"] == [1, 6, 96, 96]
    assert r["complexity"]["params"] == sum(p.numel() for p in g.parameters())
    assert r["lse"]["n_clips"] == 1 and r["lse"]["backend"] == "standin"
    assert np.isfinite(r["lse"]["lse_d"]) and np.isfinite(r["lse"]["lse_c"])
    assert "rows 48..95" in r["paired_definitions"]["region"]
    assert "segmentation" not in r and r["fid"]["backend"] == "standin"


# --------------------------------------------------------------------------------------
# the DAG: one Snakefile for both families
# --------------------------------------------------------------------------------------


def _dry(cwd, *args):
    from test_workflow import job_stats, smk

    return job_stats(smk(cwd, "-n", *args).stdout)


@pytest.fixture(scope="module")
def wf(tmp_path_factory):
    from test_workflow import workflow_copy

    return workflow_copy(tmp_path_factory.mktemp("wf_w2l"))


def test_wav2lip_demo_dry_run(wf):
    stats = _dry(wf, "--cores", "2", "--configfile", "config/wav2lip_demo.yaml")
    assert stats == {
        "resolve_config": 1,
        "demo_data": 1,
        "train_expert": 1,
        "train_original": 1,
        "lse_standin": 1,
        "evaluate_original": 1,
        "sensitivity_layer": 14,
        "prune_variant": 8,  # 2 variants + 2 baselines each, plan at cut-k2's budget, inner-kd
        "finetune_variant": 8,
        "evaluate_variant": 16,
        "export_original": 1,  # ONNX: the original and every variant at its final stage
        "export_variant": 8,
        "sample_video": 1,
        "report": 1,
        "track": 1,
        "all": 1,
    }


def test_wav2lip_lrs2_dry_runs_locally_and_with_slurm(wf):
    stats = _dry(wf, "--cores", "16", "--configfile", "config/experiments/wav2lip_lrs2.yaml")
    assert stats["preprocess_lrs2"] == 1 and stats["train_expert"] == 1 and "lse_standin" not in stats
    assert stats["prune_variant"] == 15 and stats["sensitivity_layer"] == 14
    from test_workflow import smk

    p = smk(wf, "-n", "--profile", "profiles/slurm", "--configfile", "config/experiments/wav2lip_lrs2.yaml")
    assert "gpu=1" in p.stdout and "rule train_expert" in p.stdout


def _placeholder_weights(wf, cfg_path):
    """Empty files where a config's released weights are expected (a dry run does not read them)."""
    m = yaml.safe_load((wf / cfg_path).read_text())["model"]["wav2lip"]
    for key in ("init_weights", "expert_init_weights", "disc_init_weights"):
        f = wf / m[key]
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"")


def test_wav2lip_lrs2_released_dry_runs_locally_and_with_slurm(wf):
    """The released generator and expert are imported (no training job), then the whole paper
    DAG: 14-layer sweep, 15 variants fine-tuned and evaluated."""
    from test_workflow import smk

    cfg = "config/experiments/wav2lip_lrs2_released.yaml"
    _placeholder_weights(wf, cfg)
    p = smk(wf, "-n", "--cores", "16", "--configfile", cfg)
    stats = _dry(wf, "--cores", "16", "--configfile", cfg)
    assert stats["train_original"] == 1 and stats["train_expert"] == 1 and "lse_standin" not in stats
    assert stats["sensitivity_layer"] == 14 and stats["prune_variant"] == stats["finetune_variant"] == 15
    trains = [line for line in p.stdout.splitlines() if "unetprune train " in line]
    assert len(trains) == 15 and all("--finetune" in line for line in trains)  # fine-tuning only
    assert "--family wav2lip-expert --from weights/lipsync_expert.pth" in p.stdout
    assert "--from weights/wav2lip_gan.pth" in p.stdout
    p = smk(wf, "-n", "--profile", "profiles/slurm", "--configfile", cfg)
    assert "gpu=1" in p.stdout and "rule train_original" in p.stdout and "unetprune import" in p.stdout


def test_lrs2_configs_keep_the_reference_recipe():
    """The released experiment fine-tunes with hq_wav2lip_train.py's values, the LRS2 experiment
    from scratch trains with wav2lip_train.py's."""
    cfg = load_config(REPO / "config" / "experiments" / "wav2lip_lrs2_released.yaml")
    t = cfg["train"]
    assert (t["syncnet_wt"], t["disc_wt"], t["beta1"], t["beta2"], t["lr"], t["batch_size"]) == (
        0.03,
        0.07,
        0.5,
        0.999,
        0.0001,
        16,
    )
    assert cfg["model"]["wav2lip"]["hq"] is True and t["sync_threshold"] == 0.75
    ev = cfg["evaluate"]
    assert (ev["lse_protocol"], ev["lse_backend"], ev["fid_backend"]) == (
        "published",
        "standard",
        "pytorch-fid-compat",
    )
    assert t["expert_mode"] == "train" and t["sync_check_every"] == 3000 == t["check_every_steps"]
    assert t["save_every_steps"] == 3000  # the reference's checkpoint_interval
    plain = load_config(LRS2)  # wav2lip_train.py: no quality discriminator
    t = plain["train"]
    assert plain["model"]["wav2lip"]["hq"] is False and t["expert_mode"] == "train"
    assert t["check_every_steps"] == 3000 == t["save_every_steps"]
    assert (t["syncnet_wt"], t["beta1"], t["beta2"], t["lr"], t["batch_size"]) == (
        0.01,
        0.9,
        0.999,
        0.0001,
        16,
    )


def test_lip_sync_verdict_metric_is_wav2lip_only():
    assert w2l_cfg(report={"quality_metric": "lse_c"})["report"]["quality_metric"] == "lse_c"
    with pytest.raises(
        ConfigError,
        match=r"'report.quality_metric': lse_d \(lip sync\) applies to model.family "
        r"wav2lip only",
    ):
        load_config(REPO / "config" / "config.yaml", ["report.quality_metric=lse_d"])


def test_lrs2_without_a_source_is_refused():
    with pytest.raises(ConfigError, match=r"'data.source': lrs2 is licence-gated and never downloaded"):
        load_config(LRS2, ["data.source=null"])
    with pytest.raises(
        ConfigError, match=r"'data.dataset': lrs2 is talking-face data for model.family wav2lip"
    ):
        load_config(REPO / "config" / "config.yaml", ["data.dataset=lrs2"])


@pytest.mark.slow
def test_wav2lip_tiny_end_to_end(tmp_path):
    """The whole Wav2Lip DAG on config/wav2lip_tiny.yaml: expert → generator → sweep → variants →
    fine-tuning → evaluation with LSE → report (LSE columns, noise) → sample video → MLflow;
    a second run has nothing to do."""
    import csv

    from test_workflow import copy_env, workflow_copy

    from unetprune.data.media import probe
    from unetprune.layout import FINETUNED, ORIGINAL

    wf = workflow_copy(tmp_path / "wf")
    env = copy_env(wf)

    def run(*args):
        p = subprocess.run([str(BIN / "snakemake"), *args], cwd=wf, env=env, capture_output=True, text=True)
        assert p.returncode == 0, (
            f"snakemake {' '.join(args)} failed:\n{p.stdout[-4000:]}\n{p.stderr[-4000:]}"
        )
        return p

    run("--cores", "2", "--configfile", "config/wav2lip_tiny.yaml")
    cfg = load_config(wf / "config" / "wav2lip_tiny.yaml")
    lay = Layout.from_config(cfg, wf / "results")
    with open(lay.table("main")) as f:
        rows = list(csv.DictReader(f))
    variants = list(pipeline.all_variants(cfg))
    assert {(r["variant"], r["stage"]) for r in rows} == {(ORIGINAL, ORIGINAL)} | {
        (v, s) for v in variants for s in ("pruned", "finetuned")
    }
    for r in rows:
        assert (
            np.isfinite(float(r["lse_d"]))
            and np.isfinite(float(r["lse_c"]))
            and r["lse_backend"] == "standin"
        )
        assert np.isfinite(float(r["fid"])) and float(r["params"]) > 0
    cut = next(r for r in rows if r["variant"] == "cut-k1" and r["stage"] == FINETUNED)
    assert int(cut["params"]) < int(next(r for r in rows if r["variant"] == ORIGINAL)["params"])
    report = lay.report_md.read_text()
    assert "LSE-D" in report and "Wav2Lip generator trained with its frozen lip-sync expert" in report
    assert "figures/samples.mp4" in report
    info = probe(lay.video("samples"), require_video=True, require_audio=True)
    assert info.video.width == 192 * (2 + len(variants)) and info.video.height == 192 + 28
    for f in (
        lay.expert_checkpoint,
        lay.lse_standin,
        lay.figure("samples_video"),
        lay.mlflow_json,
        *lay.report_outputs(),
    ):
        assert Path(f).stat().st_size > 0, f
    sens = json.loads(lay.sensitivity_json("fe5").read_text())
    assert "lse_d" in sens["metrics"][0] and sens["input_shape"] == [1, 6, 96, 96]
    assert (
        "Nothing to be done" in run("-n", "--cores", "2", "--configfile", "config/wav2lip_tiny.yaml").stdout
    )

    # MLflow: a run per model with LSE; the variant's logged generator (pyfunc, named face/mel inputs)
    # gives its checkpoint's outputs
    import mlflow

    from unetprune.tracking import local_artifact_root
    from unetprune.translate import generation_mode

    mlflow.set_tracking_uri(f"sqlite:///{wf / 'mlflow.db'}")
    exp = mlflow.get_experiment_by_name(cfg["experiment"])
    runs = {r.info.run_name: r for r in mlflow.search_runs([exp.experiment_id], output_format="list")}
    run_v = runs["cut-k1/finetuned"]
    assert np.isfinite(run_v.data.metrics["lse_d"]) and np.isfinite(run_v.data.metrics["lse_c"])
    client = mlflow.MlflowClient()
    version = next(
        v
        for v in client.search_model_versions(f"name='{cfg['experiment']}-generator'")
        if v.run_id == run_v.info.run_id
    )
    with local_artifact_root(wf / "mlartifacts"):
        model = mlflow.pyfunc.load_model(f"models:/{cfg['experiment']}-generator/{version.version}")
    gen = torch.Generator().manual_seed(0)
    face, mel = torch.rand(2, 6, 96, 96, generator=gen), torch.randn(2, 1, 80, 16, generator=gen)
    got = model.predict({"face": face.numpy(), "mel": mel.numpy()})
    G = generator_from_checkpoint(lay.checkpoint("cut-k1", FINETUNED))
    with generation_mode(G, cfg["evaluate"]["mode"], cfg["seed"]):
        want = G(face, mel).numpy()
    assert np.array_equal(np.asarray(got), want)


@pytest.mark.slow
@pytest.mark.timeout(1800)  # the whole tiny DAG (about 40 jobs); minutes on 2 shared cores
def test_wav2lip_tiny_dag_starts_from_released_files(tmp_path):
    """config/wav2lip_tiny.yaml with model.wav2lip.init_weights / expert_init_weights at files in the
    released layouts (seeded weights): no training job, the generator and expert are imported, and
    the sweep, variants, fine-tuning, evaluation, report and MLflow run from them."""
    import csv

    from released_wav2lip import RefWav2Lip, randomise, save_released, syncnet_reference_sd
    from test_workflow import copy_env, workflow_copy

    from unetprune.families.wav2lip.syncnet import SyncNetColor, SyncNetSpec
    from unetprune.fileio import sha256_file
    from unetprune.layout import FINETUNED, ORIGINAL

    wf = workflow_copy(tmp_path / "wf")
    (wf / "weights").mkdir()
    ref = randomise(RefWav2Lip(0.125), seed=1)
    g_file = save_released(wf / "weights" / "wav2lip_gan.pth", ref.state_dict())
    expert = randomise(SyncNetColor(SyncNetSpec.reference(0.125)), seed=2)
    e_file = save_released(wf / "weights" / "lipsync_expert.pth", syncnet_reference_sd(expert))
    cfg = yaml.safe_load((wf / "config" / "wav2lip_tiny.yaml").read_text())
    cfg["experiment"] = "wav2lip-tiny-released"
    cfg["model"]["wav2lip"].update(
        {"init_weights": "weights/wav2lip_gan.pth", "expert_init_weights": "weights/lipsync_expert.pth"}
    )
    (wf / "config" / "released.yaml").write_text(yaml.safe_dump(cfg))
    p = subprocess.run(
        [str(BIN / "snakemake"), "--cores", "2", "-p", "--configfile", "config/released.yaml"],
        cwd=wf,
        env=copy_env(wf),
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-4000:]
    shown = p.stdout + p.stderr
    assert "unetprune train --expert" not in shown and "--family wav2lip-expert --from" in shown
    before_prune = shown.split("rule prune")[0]
    assert "unetprune import --config" in before_prune and "unetprune train --config" not in before_prune
    c = load_config(wf / "config" / "released.yaml")
    lay = Layout.from_config(c, wf / "results")
    log = json.loads(lay.train_log(ORIGINAL).read_text())
    assert log["imported"] is True and log["sha256"] == sha256_file(g_file) and log["epochs"] == []
    assert Path(log["expert"]["path"]).parts[-2:] == lay.expert_checkpoint.parts[-2:]
    G = generator_from_checkpoint(lay.checkpoint(ORIGINAL))
    gen = torch.Generator().manual_seed(0)
    face, mel = torch.rand(2, 6, 96, 96, generator=gen), torch.randn(2, 1, 80, 16, generator=gen)
    with torch.no_grad():
        assert (G.eval()(face, mel) - ref(mel, face)).abs().max().item() <= 1e-6
    assert load_checkpoint(lay.expert_checkpoint)["meta"]["sha256"] == sha256_file(e_file)
    with open(lay.table("main")) as f:
        rows = list(csv.DictReader(f))
    variants = list(pipeline.all_variants(c))
    assert {(r["variant"], r["stage"]) for r in rows} == {(ORIGINAL, ORIGINAL)} | {
        (v, s) for v in variants for s in ("pruned", "finetuned")
    }
    assert all(np.isfinite(float(r["lse_d"])) and np.isfinite(float(r["fid"])) for r in rows)
    ft = load_checkpoint(lay.checkpoint("cut-k1", FINETUNED))
    assert ft["meta"]["discriminator_from"].endswith(str(lay.checkpoint(ORIGINAL).relative_to(wf)))
    for f in (lay.mlflow_json, lay.video("samples"), *lay.report_outputs()):
        assert Path(f).stat().st_size > 0, f


def test_sample_video_tiles_every_model_with_the_clip_audio(talking, tmp_path):
    """figures/samples.mp4: real | original | each variant, one tile per model, the first test clip
    with its own audio; figures/samples_video.png: the same tiles at 4 moments."""
    import cv2

    from unetprune.data.media import decode_frames, probe
    from unetprune.layout import FINETUNED, ORIGINAL
    from unetprune.families.wav2lip.video import LABEL_H, TILE, VideoError, sample_video

    cfg, base, _ = talking
    cfg = load_config(
        None,
        {
            **cfg,
            "model": {"family": "wav2lip", "wav2lip": {"width_mult": 0.125}},
            "variants": [{"strategy": "cut", "k": 1}],
            "baselines": {"strategies": ["global-uniform"]},
        },
    )
    lay = Layout.from_config(cfg, base / "results")
    with pytest.raises(VideoError, match=r"original/checkpoint.pt: run the workflow"):
        sample_video(cfg, FINETUNED, base / "results")
    fam = get_family("wav2lip")
    models = [(ORIGINAL, ORIGINAL)] + [(v, FINETUNED) for v in pipeline.all_variants(cfg)]
    for i, (m, s) in enumerate(models):
        save_generator(lay.checkpoint(m, s), fam.build(fam.spec_from_config(cfg), seed=i), config=cfg)
    out = sample_video(cfg, FINETUNED, base / "results", max_frames=20)
    assert out["frames"] == 20 and out["models"] == len(models) == 3
    info = probe(out["video"], require_video=True, require_audio=True)
    assert (info.video.width, info.video.height) == (TILE * 4, TILE + LABEL_H)
    frames, _ = decode_frames(out["video"])
    assert len(frames) == 20
    grid = cv2.imread(str(out["grid"]))
    assert grid.shape == (LABEL_H + 4 * TILE, TILE * 4, 3)
    # the real tile is the clip's real face (upscaled x2), up to video compression
    from unetprune.families.wav2lip.datasets import TalkingEvalSet

    es = TalkingEvalSet.load(
        load_config(None, {**cfg, "evaluate": {**cfg["evaluate"], "max_images": 20}}), "test", lay.data_root
    )
    real = cv2.resize(es.targets[0].permute(1, 2, 0).numpy(), (TILE, TILE), interpolation=cv2.INTER_NEAREST)
    assert np.abs(frames[0][LABEL_H:, :TILE].astype(int) - real.astype(int)).mean() < 8
