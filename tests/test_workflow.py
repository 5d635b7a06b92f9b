"""The Snakemake workflow: lint, dry runs of every paper config and the SLURM profile,
validation errors before any job runs, and (slow) a tiny end-to-end run with DVC and MLflow."""

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from unetprune.config import load_config
from unetprune.layout import FINETUNED, ORIGINAL, RESUME_NAME, Layout

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ENV = {
    **os.environ,
    "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    "OMP_NUM_THREADS": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
}
EXPERIMENTS = sorted(
    (REPO / "config" / "experiments").glob("pix2pix_*.yaml")
)  # wav2lip: test_wav2lip_pipeline


def workflow_copy(tmp: Path) -> Path:
    """The workflow files in a fresh folder (results and metadata stay out of the repo)."""
    tmp.mkdir(parents=True, exist_ok=True)
    for name in ("Snakefile", "dvc.yaml"):
        shutil.copy(REPO / name, tmp / name)
    for name in ("workflow", "config", "profiles", "src"):
        shutil.copytree(REPO / name, tmp / name, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp


def smk(cwd: Path, *args, check=True) -> subprocess.CompletedProcess:
    p = subprocess.run([str(BIN / "snakemake"), *args], cwd=cwd, env=ENV, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p


def job_stats(out: str) -> dict[str, int]:
    """Parse the 'Job stats' table of a dry run."""
    stats, on = {}, False
    for line in out.splitlines():
        if line.startswith("job ") and "count" in line:
            on = True
            continue
        if on:
            parts = line.split()
            if len(parts) == 2 and parts[1].isdigit():
                if parts[0] != "total":
                    stats[parts[0]] = int(parts[1])
            elif parts and not set(parts[0]) <= {"-"}:
                break
    return stats


@pytest.fixture(scope="module")
def wf(tmp_path_factory) -> Path:
    return workflow_copy(tmp_path_factory.mktemp("wf"))


def test_lint_is_clean(wf):
    p = smk(wf, "--lint")
    out = p.stdout + p.stderr
    assert "Lints for" not in out and "good condition" in out, out


def test_demo_dry_run_has_the_whole_dag(wf):
    stats = job_stats(smk(wf, "-n", "--cores", "2").stdout)
    assert stats == {
        "resolve_config": 1,
        "demo_data": 1,
        "train_original": 1,
        "evaluate_original": 1,
        "sensitivity_layer": 11,
        "prune_variant": 8,  # inner, cut, plan, inner-kd and 2 baselines of inner and of cut
        "finetune_variant": 8,
        "evaluate_variant": 16,
        "export_original": 1,  # ONNX: the original and every variant at its final stage
        "export_variant": 8,
        "report": 1,
        "track": 1,
        "all": 1,
    }


def dry_run_jobs(out: str) -> list[dict]:
    """The jobs of a ``-n -p`` dry run: rule, threads and shell command of each."""
    jobs = []
    for block in out.split("\n\n"):
        lines = block.splitlines()
        rule = next(
            (ln.split()[-1].rstrip(":") for ln in lines if ln.split()[:1] in (["rule"], ["localrule"])), None
        )
        if rule is None:
            continue
        threads = next((int(ln.split()[-1]) for ln in lines if ln.strip().startswith("threads:")), 1)
        shell = next((ln.split("Shell command: ", 1)[1] for ln in lines if "Shell command: " in ln), "")
        jobs.append({"rule": rule, "threads": threads, "shell": shell})
    return jobs


def test_demo_jobs_take_their_threads_and_time_latency_alike(wf):
    """The original's evaluation (every sweep and evaluation waits for it) runs on the training
    threads, fine-tunes on workflow.finetune_threads, the rest on eval_threads; every evaluation
    times its model's latency at eval_threads, so the latency tables compare like with like."""
    jobs = dry_run_jobs(smk(wf, "-n", "-p", "--cores", "2").stdout)
    by_rule: dict[str, list[dict]] = {}
    for j in jobs:
        by_rule.setdefault(j["rule"], []).append(j)
    assert [j["threads"] for j in by_rule["train_original"]] == [2]
    assert [j["threads"] for j in by_rule["evaluate_original"]] == [2]
    assert "OMP_NUM_THREADS=2 " in by_rule["evaluate_original"][0]["shell"]
    assert {j["threads"] for j in by_rule["finetune_variant"]} == {1}
    assert all("--set train.threads=1 " in j["shell"] for j in by_rule["finetune_variant"])
    assert {j["threads"] for j in by_rule["evaluate_variant"] + by_rule["sensitivity_layer"]} == {1}
    evaluations = by_rule["evaluate_original"] + by_rule["evaluate_variant"]
    assert len(evaluations) == 17
    assert all("--latency-threads 1 " in j["shell"] for j in evaluations)
    # without finetune_threads, fine-tunes take the training threads
    cfg = yaml.safe_load((wf / "config" / "config.yaml").read_text())
    del cfg["workflow"]["finetune_threads"]
    (wf / "config" / "no_finetune_threads.yaml").write_text(yaml.safe_dump(cfg))
    out = smk(wf, "-n", "-p", "--cores", "2", "--configfile", "config/no_finetune_threads.yaml").stdout
    assert {j["threads"] for j in dry_run_jobs(out) if j["rule"] == "finetune_variant"} == {2}


def test_dry_run_writes_nothing(tmp_path):
    """Nothing is written while the Snakefile is parsed: a dry run (or a run refused by the
    lock) leaves no results folder and no resolved config behind."""
    wf = workflow_copy(tmp_path / "wf")
    smk(wf, "-n", "--cores", "2", "--configfile", "config/tiny.yaml")
    assert not (wf / "results").exists()


def test_rules_carry_the_digest_of_the_code_they_run():
    """A rule's `code` param is the digest of its command's import closure: pruning code is
    in the closure of prune and sweep (which run it), not of data/train/evaluate/report/track
    (report and track rerun after a pruning edit only because their inputs change)."""
    from unetprune.provenance import code_modules

    def has_pruning(cmd):
        return any(m.startswith("unetprune.pruning") for m in code_modules(f"unetprune.commands.{cmd}"))

    assert {
        c: has_pruning(c)
        for c in ("demo", "data", "train", "evaluate", "export", "prune", "sweep", "report", "track")
    } == {
        "demo": False,
        "data": False,
        "train": False,
        "evaluate": False,
        "export": False,
        "prune": True,
        "sweep": True,
        "report": False,
        "track": False,
    }


@pytest.mark.parametrize("cfg", EXPERIMENTS, ids=[p.stem for p in EXPERIMENTS])
def test_paper_experiment_dry_runs(wf, cfg):
    stats = job_stats(smk(wf, "-n", "--cores", "16", "--configfile", str(cfg)).stdout)
    assert stats["train_original"] == 1 and stats["sensitivity_layer"] == 15  # 8 down + 7 up layers
    assert stats["prune_variant"] == 6 * 3  # 6 variants + 2 matched baselines each
    assert stats.get("fetch_data") == 1
    assert stats.get("verify_data") == 1  # the dataset is checked against its lock before training


@pytest.mark.parametrize("cfg", EXPERIMENTS, ids=[p.stem for p in EXPERIMENTS])
def test_slurm_profile_dry_run(wf, cfg):
    """The cluster profile plans every job; resources come from the rules (threads, the config's
    mem_mb, gpu), not from profile overrides; job states come from squeue, no account is guessed.
    tests/test_slurm.py runs the tiny config through it on a real SLURM."""
    profile = yaml.safe_load((wf / "profiles" / "slurm" / "config.yaml").read_text())
    assert profile["slurm-status-command"] == "squeue" and profile["slurm-no-account"] is True
    assert not any({"cpus_per_task", "mem_mb"} & set(r) for r in profile["set-resources"].values())
    p = smk(wf, "-n", "--profile", "profiles/slurm", "--configfile", str(cfg))
    assert job_stats(p.stdout)["finetune_variant"] == 18
    assert "gpu=1" in p.stdout  # training/evaluation jobs ask for a GPU
    mem = load_config(cfg)["workflow"]["mem_mb"]
    assert f"mem_mb={mem}," in p.stdout  # training/evaluation memory is the config's


@pytest.mark.parametrize(
    "override,message",
    [
        (
            {"variants": [{"strategy": "innr", "ratio": 0.5}]},
            "config error at 'variants[0].strategy': 'innr' is not one of",
        ),
        (
            {"sensitivity": {"layers": ["down9"]}},
            "config error at 'sensitivity.layers': unknown layer(s) down9",
        ),
        ({"data": {"dataset": "facade"}}, "config error at 'data.dataset': 'facade' is not one of"),
        ({"variants": [{"strategy": "cut", "k": 7}]}, "config error at 'variants[0].k'"),
        (
            {"variants": [{"strategy": "inner", "ratio": 0.5, "levels": [9]}]},
            "config error at 'variants[0].levels'",
        ),
        ({"trian": {}}, "config error at 'trian': unknown key"),
    ],
)
def test_bad_config_fails_before_any_job(wf, tmp_path, override, message):
    base = yaml.safe_load((wf / "config" / "config.yaml").read_text())
    base.update(override)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(base))
    p = smk(wf, "-n", "--cores", "1", "--configfile", str(bad), check=False)
    assert p.returncode != 0
    assert message in p.stdout + p.stderr
    assert "localrule" not in p.stdout and "rule train_original" not in p.stdout


def read_main_table(lay: Layout) -> list[dict]:
    with open(lay.table("main")) as f:
        return list(csv.DictReader(f))


def copy_env(wf: Path) -> dict:
    """The environment of a run in the copy: its src/ first on the path, so the Snakefile and
    every `unetprune` job run the copy's code (and a test may edit it)."""
    return {**ENV, "PYTHONPATH": str(wf / "src")}


@pytest.mark.slow
@pytest.mark.timeout(1800)  # the whole tiny DAG, twice, with dvc and MLflow; minutes on 2 cores
def test_tiny_end_to_end_dvc_and_mlflow(tmp_path):
    wf = workflow_copy(tmp_path / "wf")
    env = copy_env(wf)

    def run(*args, check=True):
        p = subprocess.run([str(BIN / "snakemake"), *args], cwd=wf, env=env, capture_output=True, text=True)
        if check and p.returncode != 0:
            raise AssertionError(
                f"snakemake {' '.join(args)} failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
            )
        return p

    run("--cores", "2", "--configfile", "config/tiny.yaml")
    cfg = load_config(wf / "config" / "tiny.yaml")
    lay = Layout.from_config(cfg, wf / "results")
    # every variant, before and after fine-tuning, plus the original, is in the main table
    rows = read_main_table(lay)
    names = {(r["variant"], r["stage"]) for r in rows}
    variants = [
        "inner-l5-r0.5",
        "cut-k1",
        "plan-match-inner-l5-r0.5",
        "inner-l5-r0.5-kd",
        "global-uniform-match-inner-l5-r0.5",
        "global-threshold-match-inner-l5-r0.5",
        "global-uniform-match-cut-k1",
        "global-threshold-match-cut-k1",
    ]
    assert {(v, s) for v in variants for s in ("pruned", "finetuned")} <= names
    assert (ORIGINAL, ORIGINAL) in names and len(rows) == 1 + 2 * len(variants)
    for r in rows:
        assert float(r["params"]) > 0 and float(r["macs_physical"]) > 0 and r["fid_backend"] == "standin"
    for f in (*lay.report_outputs(), lay.mlflow_json, lay.config_file, lay.checkpoint("cut-k1", FINETUNED)):
        assert f.stat().st_size > 0, f
    # the plan lands at (within 1% below) inner-l5-r0.5's parameters; the -kd fine-tune distilled
    plan = json.loads(lay.prune_json("plan-match-inner-l5-r0.5").read_text())["info"]["plan"]
    assert plan["metric"] == "params" and -0.01 <= plan["rel_error"] <= 0
    kd = json.loads(lay.train_log("inner-l5-r0.5-kd", FINETUNED).read_text())
    assert kd["distill"]["features"] == ["down5"] and all(e["KD"] > 0 for e in kd["epochs"])
    report = lay.report_md.read_text()
    assert "beat inner/cut/global pruning at the same budget" in report and "Did distillation help" in report
    # a second run has nothing to do
    assert "Nothing to be done" in run("-n", "--cores", "2", "--configfile", "config/tiny.yaml").stdout

    # editing pruning code reruns pruning and everything downstream of it, nothing upstream
    surgery = wf / "src" / "unetprune" / "pruning" / "surgery.py"
    original_code = surgery.read_text()
    surgery.write_text(original_code + "\n# an edit\n")
    stats = job_stats(run("-n", "--cores", "2", "--configfile", "config/tiny.yaml").stdout)
    assert stats == {
        "sensitivity_layer": 4,
        "prune_variant": 8,  # inner, cut, plan, inner-kd and 2 baselines of inner and of cut
        "finetune_variant": 8,
        "evaluate_variant": 16,
        "export_variant": 8,
        "report": 1,
        "track": 1,
        "all": 1,
    }
    surgery.write_text(original_code)
    assert "Nothing to be done" in run("-n", "--cores", "2", "--configfile", "config/tiny.yaml").stdout

    # changing the baselines' budget reruns only the baselines and the plan built to a variant's
    # budget (baselines.match is its budget too), and what reads them
    raw = yaml.safe_load((wf / "config" / "tiny.yaml").read_text())
    raw["baselines"] = {"match": "macs_physical"}
    (wf / "config" / "tiny2.yaml").write_text(yaml.safe_dump(raw))
    stats = job_stats(run("-n", "--cores", "2", "--configfile", "config/tiny2.yaml").stdout)
    assert stats == {
        "resolve_config": 1,
        "prune_variant": 5,
        "finetune_variant": 5,
        "evaluate_variant": 10,
        "export_variant": 5,
        "report": 1,
        "track": 1,
        "all": 1,
    }

    # MLflow: syncing again does not add runs
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{wf / 'mlflow.db'}")
    exp = mlflow.get_experiment_by_name("tiny")
    n1 = len(mlflow.search_runs([exp.experiment_id], output_format="list"))
    subprocess.run(
        [str(BIN / "unetprune"), "track", "--config", str(lay.config_file.relative_to(wf))],
        cwd=wf,
        env=env,
        check=True,
        capture_output=True,
    )
    n2 = len(mlflow.search_runs([exp.experiment_id], output_format="list"))
    assert n1 == n2 == 1 + 16 + 1 + 1 + 4  # original, 8x2 variants, report, sweep parent + 4 layers

    # DVC: one stage per registered experiment runs the Snakemake DAG; the tiny experiment is
    # registered next to the demo; Snakemake finds nothing to do, a second repro skips,
    # push/pull via a local remote restores the checkpoints byte for byte.
    reg = yaml.safe_load((wf / "config" / "dvc_experiments.yaml").read_text())
    reg["experiments"]["tiny"] = "config/tiny.yaml"
    (wf / "config" / "dvc_experiments.yaml").write_text(yaml.safe_dump(reg))

    def dvc(*args):
        p = subprocess.run([str(BIN / "dvc"), *args], cwd=wf, env=env, capture_output=True, text=True)
        assert p.returncode == 0, f"dvc {' '.join(args)}:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
        return p.stdout + p.stderr

    for cmd in (["git", "init", "-q"], [str(BIN / "dvc"), "init", "-q"]):
        subprocess.run(cmd, cwd=wf, env=env, check=True, capture_output=True)
    assert set(dvc("stage", "list", "--name-only").split()) == {
        "workflow@demo",
        "workflow@tiny",
        "talking@wav2lip-demo",
    }
    first = dvc("repro", "workflow@tiny")
    assert "Running stage 'workflow@tiny'" in first and "Nothing to be done" in first, first
    assert "Running stage" not in dvc("repro", "workflow@tiny")  # up to date
    assert lay.metrics_json.name in dvc("metrics", "show")
    dvc("remote", "add", "-d", "store", str(tmp_path / "remote"))
    dvc("push", "-q", "workflow@tiny")
    ckpts = [lay.checkpoint(ORIGINAL), lay.checkpoint("cut-k1", FINETUNED), lay.pruned_checkpoint("cut-k1")]
    before = [c.read_bytes() for c in ckpts]
    shutil.rmtree(lay.original_dir)
    shutil.rmtree(lay.variants_dir)
    shutil.rmtree(wf / ".dvc" / "cache")
    dvc("pull", "-q", "workflow@tiny")
    assert [c.read_bytes() for c in ckpts] == before


@pytest.mark.slow
def test_job_killed_mid_way_is_rerun_and_resumes(tmp_path):
    """SIGKILL the training job (as an OOM killer or a preempted node would) while the
    original model trains: Snakemake reports the failure, and the rerun resumes from resume.pt."""
    import signal
    import time

    def descendants(pid: int) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
        kids = [int(x) for x in out]
        return kids + [d for k in kids for d in descendants(k)]

    wf = workflow_copy(tmp_path / "wf")
    cfg = yaml.safe_load((wf / "config" / "tiny.yaml").read_text())
    cfg["train"].update({"n_epochs": 4, "n_epochs_decay": 4})
    (wf / "config" / "kill.yaml").write_text(yaml.safe_dump(cfg))
    lay = Layout.from_config(load_config(wf / "config" / "kill.yaml"), wf / "results")
    target = str(lay.checkpoint(ORIGINAL).relative_to(wf))
    args = [str(BIN / "snakemake"), target, "--cores", "1", "--configfile", "config/kill.yaml"]
    p = subprocess.Popen(args, cwd=wf, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = lay.original_dir
    deadline = time.time() + 300
    while not (base / RESUME_NAME).exists() and time.time() < deadline and p.poll() is None:
        time.sleep(0.1)
    assert p.poll() is None, "the workflow ended before the job could be killed"
    trainers = [
        pid
        for pid in descendants(p.pid)
        if b"unetprune" in Path(f"/proc/{pid}/cmdline").read_bytes()
        and b"train" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]
    assert trainers, "no training process found"
    for pid in trainers:
        os.kill(pid, signal.SIGKILL)
    assert p.wait(timeout=120) != 0  # the job failed; Snakemake stops and releases its lock
    assert not lay.checkpoint(ORIGINAL).exists() and (base / RESUME_NAME).exists()
    smk(wf, target, "--cores", "1", "--configfile", "config/kill.yaml")
    log = json.loads(lay.train_log(ORIGINAL).read_text())
    assert log["complete"] and len(log["epochs"]) == 8
    assert log["resumed_at_epoch"] and 1 <= log["resumed_at_epoch"][0] < 8
