"""The prepared GPU check (benchmarks/gpu_check.sh + gpu_check.py) and the benchmarks it runs,
checked on the CPU with tiny sizes: latency.py covers the Wav2Lip variants, train_step.py's
eager-vs-graph section, gpu_slots.py's concurrent workers, gpu_check's fail-soft steps, time
budget and JSON, the tiny DAG planned through `--resources gpu=1` and through the GPU-slot
workflow profile (profiles/gpu), and the wheel list for the GPU image."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"
BIN = Path(sys.executable).parent
ENV = {
    **os.environ,
    "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    "OMP_NUM_THREADS": "1",
    "PYTHONUNBUFFERED": "1",
}


def load_bench(name):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_gpu_check_sh_is_valid_bash():
    p = subprocess.run(["bash", "-n", str(BENCH / "gpu_check.sh")], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    text = (BENCH / "gpu_check.sh").read_text()
    assert "gpu_check.py" in text and ".whl" in text and "$OUT" in text


def test_latency_covers_wav2lip_variants_with_speedups(tmp_path, capsys):
    """On the CPU: every Wav2Lip variant at batch 1 and 16 (here 2), with its speed-up over the
    full generator; the pix2pix variants likewise."""
    lat = load_bench("latency")
    out = tmp_path / "lat.json"
    assert (
        lat.main(
            [
                "--family",
                "all",
                "--num-downs",
                "5",
                "--ngf",
                "8",
                "--size",
                "32",
                "--width-mult",
                "0.125",
                "--wav2lip-batches",
                "1",
                "2",
                "--reps",
                "1",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    rep = json.loads(out.read_text())
    tables = {(t["family"], t["batch"]): t for t in rep["tables"]}
    assert set(tables) == {("pix2pix", 1), ("wav2lip", 1), ("wav2lip", 2)}
    w = [r["variant"] for r in tables[("wav2lip", 1)]["rows"]]
    assert w == [
        "full",
        "cut-k1",
        "cut-k2",
        "cut-res",
        "inner-r0.75",
        "global-uniform=cut-k2",
        "global-thr-norm=inner",
    ]
    for t in rep["tables"]:
        full = t["rows"][0]
        assert full["variant"] == "full" and full["eager_speedup"] == pytest.approx(1.0)
        for r in t["rows"]:
            assert r["eager_ms"] > 0 and r["eager_speedup"] == pytest.approx(full["eager_ms"] / r["eager_ms"])
            assert r["graph_ms"] is None  # no CUDA here
    params = {r["variant"]: r["params"] for r in tables[("wav2lip", 1)]["rows"]}
    assert params["cut-k2"] < params["cut-k1"] < params["full"]
    assert "## Wav2Lip width 0.125" in printed and "speed-up" in printed
    assert "eager only" in lat_main_cuda_graph_note(lat, tmp_path)


def lat_main_cuda_graph_note(lat, tmp_path):
    """--cuda-graph on a CPU says it times eager only (and still runs)."""
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        lat.main(
            [
                "--family",
                "pix2pix",
                "--num-downs",
                "5",
                "--ngf",
                "4",
                "--size",
                "32",
                "--reps",
                "1",
                "--cuda-graph",
            ]
        )
    return buf.getvalue()


def test_train_step_graph_section_on_cpu(tmp_path):
    out = tmp_path / "ts.json"
    p = subprocess.run(
        [
            sys.executable,
            str(BENCH / "train_step.py"),
            "--device",
            "cpu",
            "--graph",
            "--only-graph",
            "--size",
            "32",
            "--num-downs",
            "5",
            "--ngf",
            "4",
            "--steps",
            "2",
            "--reps",
            "1",
            "--threads",
            "1",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=REPO,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    rows = json.loads(out.read_text())["graph"]["cpu"]
    assert len(rows) == 1 and rows[0]["graph_mode"] == "static" and rows[0]["amp"] == "fp32"
    assert rows[0]["eager_ms"] > 0 and rows[0]["ratio"] == pytest.approx(
        rows[0]["eager_ms"] / rows[0]["graph_ms"]
    )
    assert "static-buffer step (CPU stand-in, no CUDA)" in p.stdout


def test_gpu_slots_runs_concurrent_workers_on_cpu(tmp_path):
    out = tmp_path / "slots.json"
    p = subprocess.run(
        [
            sys.executable,
            str(BENCH / "gpu_slots.py"),
            "--device",
            "cpu",
            "--num-downs",
            "5",
            "--ngf",
            "4",
            "--size",
            "32",
            "--k",
            "1",
            "2",
            "--steps",
            "2",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=REPO,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert [r["k"] for r in rows] == [1, 2] and len(rows[1]["per_job_img_s"]) == 2
    assert rows[0]["gain"] == 1.0 and all(r["aggregate_img_s"] > 0 for r in rows)
    assert rows[0]["step_mode"] == "eager"  # cuda_graph auto on a CPU


def test_gpu_check_is_fail_soft_and_keeps_its_budget(tmp_path, monkeypatch):
    gc = load_bench("gpu_check")
    calls = []

    def boom(args, tmp, timeout):
        calls.append("boom")
        raise RuntimeError("no GPU here")

    def fine(args, tmp, timeout):
        calls.append("fine")
        return {"rc": 0, "seconds": 0.1, "result": {"ok": True}}

    monkeypatch.setattr(gc, "STEP_FUNCS", {**gc.STEP_FUNCS, "env": boom, "latency": fine})
    assert (
        gc.main(["--out", str(tmp_path), "--steps", "env", "latency", "--device", "cpu", "--budget", "100"])
        == 0
    )
    rep = json.loads((tmp_path / "gpu_check.json").read_text())
    assert calls == ["boom", "fine"]  # the failure did not stop the next step
    assert rep["steps"]["env"]["status"] == "failed" and "no GPU here" in rep["steps"]["env"]["error"]
    assert rep["steps"]["latency"]["status"] == "ok" and rep["summary"]["status"] == {
        "env": "failed",
        "latency": "ok",
    }
    # out of time: every step is recorded as skipped, none runs
    calls.clear()
    gc.main(["--out", str(tmp_path), "--steps", "env", "latency", "--device", "cpu", "--budget", "1"])
    rep = json.loads((tmp_path / "gpu_check.json").read_text())
    assert calls == [] and {v["status"] for v in rep["steps"].values()} == {"skipped"}
    # the limits fit the 8-minute call: budget + the wheel install + the device tool's margin
    assert gc.DEFAULT_BUDGET + 30 < 8 * 60 and max(lim for lim, _ in gc.LIMITS.values()) <= 240


def test_gpu_check_cpu_run_plans_the_dags(tmp_path):
    """gpu_check.py end to end on the CPU (tiny): env, and the tiny DAG planned both ways —
    `--resources gpu=1` with workflow.gpus_per_job 1, and the GPU-slot profile."""
    p = subprocess.run(
        [
            sys.executable,
            str(BENCH / "gpu_check.py"),
            "--out",
            str(tmp_path),
            "--device",
            "cpu",
            "--tiny",
            "--dag-dry-run",
            "--steps",
            "env",
            "dag",
            "dag_slots",
        ],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=REPO,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    rep = json.loads((tmp_path / "gpu_check.json").read_text())
    assert {k: v["status"] for k, v in rep["steps"].items()} == {"env": "ok", "dag": "ok", "dag_slots": "ok"}
    deps = rep["steps"]["env"]["result"]["dependencies"]
    assert not [m for m, v in deps.items() if str(v).startswith("MISSING")]
    for name in ("dag", "dag_slots"):
        assert rep["steps"][name]["result"]["jobs_planned"] == 51, rep["steps"][name]  # 50 jobs + all
    assert "--resources gpu=1" in rep["steps"]["dag"]["cmd"]
    assert "--workflow-profile profiles/gpu" in rep["steps"]["dag_slots"]["cmd"]


def test_gpu_slot_profile():
    """profiles/gpu: a gpu_slot pool; training the original holds all of it, the small GPU jobs
    one slot each with their `gpu` set to 0 (the slots replace it)."""
    prof = yaml.safe_load((REPO / "profiles" / "gpu" / "config.yaml").read_text())
    pool = int(dict(r.split("=") for r in prof["resources"])["gpu_slot"])
    sr = prof["set-resources"]
    assert pool >= 2 and sr["train_original"] == sr["train_expert"] == {"gpu": 0, "gpu_slot": pool}
    for rule in ("finetune_variant", "sensitivity_layer", "evaluate_original", "evaluate_variant"):
        assert sr[rule] == {"gpu": 0, "gpu_slot": 1}
    smk = [
        *(REPO / "workflow" / "rules").glob("*.smk"),
        *(REPO / "src" / "unetprune" / "families").glob("*/*.smk"),
    ]
    rules = "".join(p.read_text() for p in smk)
    for rule in sr:  # a rule of the core or of a family, written out or derived (`use rule ... as <rule>`)
        assert f"rule {rule}:" in rules or f" as {rule} with:" in rules, rule


def test_gpu_wheels_list():
    gw = load_bench("gpu_wheels")
    need = gw.closure()
    assert {"snakemake", "jsonschema", "torch-fidelity"} <= set(need)
    assert not {"torch", "numpy", "pyyaml", "pandas", "matplotlib", "scikit-image"} & set(
        need
    )  # on the image
    assert not set(need) & gw.ON_IMAGE
