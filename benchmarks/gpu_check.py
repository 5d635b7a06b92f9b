"""Every CUDA figure of docs/gpu.md in one call (run by benchmarks/gpu_check.sh; < 8 minutes on
one H100/H200 with 16 cores), written to one JSON (``--out DIR`` → ``DIR/gpu_check.json``).

Steps, in order (``--steps`` picks some; each is a subprocess with its own time limit, and
the whole call keeps to ``--budget`` seconds: a step that no longer fits is recorded as
skipped).  A step that fails is recorded with its error and the output's tail, and the next
one runs (fail soft):

* ``env`` — GPU, driver, torch/CUDA versions, which of the project's dependencies import;
* ``pytest_gpu`` — ``pytest -m gpu`` on the test files that hold GPU tests (junit counts,
  each failure's message);
* ``train_step`` — benchmarks/train_step.py: the trainer's eager vs whole-step-graph step at
  batch 1, unet_256 at 256 px, fp32 / bf16 / bf16 channels-last, with ratios (the acceptance
  bar: >= 5x for fp32);
* ``latency`` — benchmarks/latency.py ``--device cuda --cuda-graph``: eager and graph latency
  of every pix2pix variant (unet_256, batch 1) and Wav2Lip variant (width 1; batch 1 and 16),
  with speed-ups;
* ``dag`` — the tiny end-to-end DAG (config/tiny.yaml with ``workflow.gpus_per_job: 1``,
  tracking off) with ``--resources gpu=1``: wall time, jobs, where the jobs ran;
* ``sweep`` — the sensitivity sweep of a random-weight unet_256: 15 layers x 9 ratios on 500
  synthetic 256-px test images, the facades evaluation settings (stand-in Inception: no
  weights offline): wall time, or after a timeout the layers done and an extrapolation;
* ``slots`` — benchmarks/gpu_slots.py: aggregate throughput of 1, 2 and 4 concurrent batch-1
  unet_256 trainers on the one GPU (what profiles/gpu's gpu_slot resources buy);
* ``train_loop`` — ``train()`` itself for one epoch of 400 synthetic 256-px pairs (facades'
  size), unet_256 batch 1: eager + DataLoader, graph + DataLoader, graph + GPU-resident data
  (images/s as train.json records them);
* ``dag_slots`` — the tiny DAG again with the GPU-slot workflow profile (profiles/gpu), for
  the wall-time comparison;
* ``kernels`` — benchmarks/evaluate.py ``--kernels``: the paired SSIM's filter (shifted float64
  sums) against a grouped float64 conv2d on 64 pairs of 256 px, KID and the collapse check's
  spread against what they replaced.

``--steps`` runs the named steps in the order given; ``--quick`` trims train_step to fp32
(5 repetitions); ``--sweep-procs N`` runs the sweep as N concurrent processes over the layers
(as the workflow's per-layer jobs run in N GPU slots).

    bash benchmarks/gpu_check.sh                      # OUT=... or ./gpu_check_out
    python benchmarks/gpu_check.py --out /tmp/o --steps env latency --device cpu --tiny   # CPU check of the mechanics

``--device cpu --tiny`` runs the same steps on a CPU with tiny models (tests use it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STEPS = (
    "env",
    "pytest_gpu",
    "train_step",
    "latency",
    "dag",
    "sweep",
    "slots",
    "train_loop",
    "dag_slots",
    "kernels",
)
# (time limit s, least time worth starting it with) on an H100/H200
LIMITS = {
    "env": (60, 5),
    "pytest_gpu": (150, 30),
    "train_step": (100, 30),
    "latency": (120, 30),
    "dag": (240, 60),
    "sweep": (150, 40),
    "slots": (100, 30),
    "train_loop": (100, 30),
    "dag_slots": (200, 60),
    "kernels": (60, 15),
}
# the whole call: under 8 minutes with the wheel install (~20 s) and the device tool's start
DEFAULT_BUDGET = 440.0
DEPENDENCIES = (
    "numpy",
    "PIL",
    "yaml",
    "jsonschema",
    "tqdm",
    "pandas",
    "matplotlib",
    "skimage",
    "scipy",
    "torch_fidelity",
    "tabulate",
    "snakemake",
    "pytest",
)


def tail(text: str, n: int = 3000) -> str:
    return (text or "")[-n:]


def run(
    cmd: list[str], timeout: float, cwd: Path = REPO, env: dict | None = None, full: bool = False
) -> dict:
    """Run ``cmd``; returns rc, seconds, the output's tail (``full``: also ``output``, all of
    stdout and stderr, for the caller to parse and drop); rc 124 on timeout."""
    t0 = time.perf_counter()
    try:
        p = subprocess.run(
            cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
        )
        rc, out, err = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as e:
        rc = 124
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        err = (
            e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
        ) + f"\ntimed out after {timeout:.0f} s"
    r = {
        "cmd": " ".join(cmd),
        "rc": rc,
        "seconds": round(time.perf_counter() - t0, 2),
        "stdout_tail": tail(out),
        "stderr_tail": tail(err, 2000),
    }
    if full:
        r["output"] = (out or "") + "\n" + (err or "")
    return r


def py(*args: str) -> list[str]:
    return [sys.executable, *args]


def read_json(path: Path):
    return json.loads(path.read_text()) if path.exists() else None


# ------------------------------------------------------------------------------------------
# synthetic data (no network): smooth random colour fields, aligned A|B JPEGs
# ------------------------------------------------------------------------------------------


def synthetic_aligned(root: Path, split: str, n: int, side: int, seed: int = 0) -> Path:
    import numpy as np
    from PIL import Image

    folder = root / split
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        low = (rng.random((6, 12, 3)) * 255).astype(np.uint8)
        Image.fromarray(low).resize((2 * side, side), Image.BILINEAR).save(
            folder / f"{i:04d}.jpg", quality=92
        )
    return folder


# ------------------------------------------------------------------------------------------
# the steps
# ------------------------------------------------------------------------------------------


def step_env(args, tmp: Path, timeout: float) -> dict:
    code = (
        "import json, sys, torch, importlib\n"
        "d = {'python': sys.version.split()[0], 'torch': torch.__version__, 'cuda': torch.version.cuda,\n"
        "     'cudnn': torch.backends.cudnn.version(), 'cuda_available': torch.cuda.is_available()}\n"
        "if torch.cuda.is_available():\n"
        "    p = torch.cuda.get_device_properties(0)\n"
        "    d.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1), sm_count=p.multi_processor_count,\n"
        "             capability=f'{p.major}.{p.minor}')\n"
        "deps = {}\n"
        f"for m in {DEPENDENCIES!r}:\n"
        "    try:\n"
        "        mod = importlib.import_module(m); deps[m] = getattr(mod, '__version__', 'ok')\n"
        "    except Exception as e:\n"
        "        deps[m] = 'MISSING: ' + type(e).__name__ + ': ' + str(e)[:120]\n"
        "d['dependencies'] = deps\n"
        "import unetprune; d['unetprune'] = unetprune.__file__\n"
        "print(json.dumps(d))\n"
    )
    r = run(py("-c", code), timeout)
    if r["rc"] == 0:
        r["result"] = json.loads(r["stdout_tail"].strip().splitlines()[-1])
    smi = shutil.which("nvidia-smi")
    if smi:
        s = run(
            [smi, "--query-gpu=name,driver_version,memory.total,clocks.max.sm", "--format=csv,noheader"], 20
        )
        r["nvidia_smi"] = s["stdout_tail"].strip()
    r["host"] = {"cpus": os.cpu_count(), "machine": platform.machine()}
    return r


def step_pytest_gpu(args, tmp: Path, timeout: float) -> dict:
    files = sorted(
        str(p.relative_to(REPO)) for p in (REPO / "tests").glob("test_*.py") if "mark.gpu" in p.read_text()
    )
    xml = tmp / "junit.xml"
    r = run(
        py(
            "-m",
            "pytest",
            "-m",
            "gpu",
            "-q",
            "-rA",
            "-p",
            "no:cacheprovider",
            "--continue-on-collection-errors",
            f"--junitxml={xml}",
            *files,
        ),
        timeout,
    )
    r["files"] = files
    if xml.exists():
        import xml.etree.ElementTree as ET

        root = ET.parse(xml).getroot()
        suite = root if root.tag == "testsuite" else root.find("testsuite")
        cases = []
        for tc in suite.iter("testcase"):
            state, msg = "passed", None
            for tag in ("failure", "error", "skipped"):
                el = tc.find(tag)
                if el is not None:
                    state, msg = ("failed" if tag == "failure" else tag), (el.get("message") or "")[:800]
            cases.append(
                {
                    "test": f"{tc.get('classname')}::{tc.get('name')}",
                    "state": state,
                    "seconds": float(tc.get("time") or 0),
                    "message": msg,
                }
            )
        r["result"] = {
            "counts": {
                s: sum(c["state"] == s for c in cases) for s in ("passed", "failed", "error", "skipped")
            },
            "cases": cases,
        }
    return r


def step_train_step(args, tmp: Path, timeout: float) -> dict:
    out = tmp / "train_step.json"
    size = (
        ["--size", "32", "--num-downs", "5", "--ngf", "8", "--steps", "2", "--reps", "2"]
        if args.tiny
        else [
            "--size",
            "256",
            "--num-downs",
            "8",
            "--ngf",
            "64",
            "--steps",
            "20",
            "--reps",
            "5" if args.quick else "7",
        ]
    )
    r = run(
        py(
            "benchmarks/train_step.py",
            "--device",
            args.device,
            "--graph",
            "--only-graph",
            "--threads",
            "2",
            *size,
            *(["--fp32-only"] if args.quick else []),
            "--profile",
            "2" if args.tiny else "10",
            "--json",
            str(out),
        ),
        timeout,
    )
    res = read_json(out)
    if res:
        rows = res["graph"].get(args.device, [])
        r["result"] = {
            "device": res["graph"].get("cuda_device", args.device),
            "rows": rows,
            "fp32_ratio": next(
                (x["ratio"] for x in rows if x["amp"] == "fp32" and not x["channels_last"]), None
            ),
        }
        # per setting, graph vs eager at the same numerics (the comparison); the trainer's
        # CUDA defaults are channels-last with bf16 (amp auto) or fp32 (amp off)
        r["result"]["meets_5x"] = {
            f"{x['amp']}{'-cl' if x['channels_last'] else ''}": x["ratio"] >= 5.0 for x in rows
        }
        r["result"]["eager_kernel_ms"] = {
            f"{x['amp']}{'-cl' if x['channels_last'] else ''}": x["eager_kernels"]["kernel_ms_per_step"]
            for x in rows
            if "eager_kernels" in x
        }
    return r


def step_latency(args, tmp: Path, timeout: float) -> dict:
    out = tmp / "latency.json"
    size = (
        [
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
            "2",
        ]
        if args.tiny
        else ["--reps", "9", "--warmup", "3", "--threads", "8"]
    )
    r = run(
        py(
            "benchmarks/latency.py",
            "--family",
            "all",
            "--device",
            args.device,
            "--cuda-graph",
            *size,
            "--json",
            str(out),
        ),
        timeout,
    )
    r["result"] = read_json(out)
    return r


def _dag_config(tmp: Path, gpus: int) -> Path:
    import yaml

    cfg = yaml.safe_load((REPO / "config" / "tiny.yaml").read_text())
    cfg.setdefault("workflow", {})["gpus_per_job"] = gpus
    cfg.setdefault("tracking", {})["enabled"] = False
    path = tmp / "tiny_gpu.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _workflow_copy(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("Snakefile",):
        shutil.copy(REPO / name, dest / name)
    for name in ("workflow", "config", "profiles"):
        shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def _dag(args, tmp: Path, timeout: float, name: str, extra: list[str]) -> dict:
    wf = _workflow_copy(tmp / name)
    cfg = _dag_config(wf, 0 if args.device == "cpu" else 1)
    snakemake = shutil.which("snakemake") or "snakemake"
    cmd = [
        snakemake,
        "--snakefile",
        "Snakefile",
        "--configfile",
        str(cfg),
        *extra,
        *(["--dry-run"] if args.dag_dry_run else []),
    ]
    r = run(cmd, timeout, cwd=wf, env={"MLFLOW_DISABLE_TELEMETRY": "true"}, full=True)
    res = {"workdir": str(wf)}
    out = r.pop("output")
    done = [line for line in out.splitlines() if "steps (100%) done" in line]
    res["complete"] = bool(done) and r["rc"] == 0
    res["jobs_planned"] = (
        sum(1 for line in out.splitlines() if line.startswith("rule ")) if args.dag_dry_run else None
    )
    from unetprune.config import load_config
    from unetprune.layout import ORIGINAL, Layout

    lay = Layout.from_config(load_config(cfg), wf / "results")  # where the jobs wrote (unetprune.layout)
    ev, tr = read_json(lay.eval_json(ORIGINAL)), read_json(lay.train_log(ORIGINAL))
    res["eval_device"] = (ev or {}).get("device")
    res["train_device"] = (tr or {}).get("device")
    res["train_step_mode"] = (tr or {}).get("step_mode")
    res["report_md"] = lay.report_md.exists()
    logs = sorted(lay.logs_dir.glob("*.log")) if lay.logs_dir.exists() else []
    res["jobs_logged"] = len(logs)
    if r["rc"] != 0 and logs:  # the last few job logs, for the error
        res["log_tails"] = {p.name: tail(p.read_text(errors="replace"), 600) for p in logs[-3:]}
    r["result"] = res
    return r


def step_dag(args, tmp: Path, timeout: float) -> dict:
    return _dag(args, tmp, timeout, "dag", ["--cores", str(os.cpu_count() or 2), "--resources", "gpu=1"])


def step_dag_slots(args, tmp: Path, timeout: float) -> dict:
    return _dag(
        args,
        tmp,
        timeout,
        "dag_slots",
        ["--workflow-profile", "profiles/gpu", "--cores", str(os.cpu_count() or 2)],
    )


def step_sweep(args, tmp: Path, timeout: float) -> dict:
    import yaml

    n_test, side, nd, ngf = (8, 32, 5, 8) if args.tiny else (500, 256, 8, 64)
    data = tmp / "sweep_data"
    t0 = time.perf_counter()
    synthetic_aligned(data, "test", n_test, side, seed=1)
    (data / "train").mkdir(exist_ok=True)
    gen = time.perf_counter() - t0
    cfg = {
        "experiment": "sweep-bench",
        "data": {
            "dataset": "folder",
            "root": str(data),
            "direction": "BtoA",
            "load_size": side,
            "crop_size": side,
        },
        "model": {"pix2pix": {"num_downs": nd, "ngf": ngf}},
        "evaluate": {
            "fid_backend": "standin",
            "mode": "train_bn",
            "quantize": "truncate",
            "segmentation": "none",
            "device": args.device,
        },
        "sensitivity": {"ratios": [round(0.1 * i, 1) for i in range(1, 10)]},
    }
    cfg_path = tmp / "sweep.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    ckpt = tmp / "sweep_g.pt"
    mk = (
        "import sys; from unetprune.checkpoint import save_generator; from unetprune.config import load_config; "
        "from unetprune.family import family_for_config; c = load_config(sys.argv[1]); f = family_for_config(c); "
        "save_generator(sys.argv[2], f.build(f.spec_from_config(c), seed=0), c)"
    )
    prep = run(py("-c", mk, str(cfg_path), str(ckpt)), 120)
    if prep["rc"] != 0:
        prep["error"] = "could not write the random-weight checkpoint"
        return prep
    out = tmp / "sweep_out"
    base = py(
        "-m",
        "unetprune.cli",
        "sweep",
        "--config",
        str(cfg_path),
        "--checkpoint",
        str(ckpt),
        "--out-dir",
        str(out),
        "--cache-dir",
        str(tmp / "sweep_cache"),
    )
    procs = max(1, int(args.sweep_procs))
    if procs == 1:
        r = run(base, timeout)
    else:  # the workflow's per-layer jobs in GPU slots: layers dealt round-robin to N processes
        r = _sweep_concurrent(base, cfg_path, procs, timeout)
    done = sorted(p.stem for p in out.glob("*.json")) if out.exists() else []
    n_layers = 15 if not args.tiny else 9
    res = {
        "layers_done": len(done),
        "layers": n_layers,
        "ratios": 9,
        "images": n_test,
        "image_size": side,
        "seconds": r["seconds"],
        "data_seconds": round(gen, 1),
        "complete": r["rc"] == 0,
        "processes": procs,
    }
    if done and r["rc"] != 0:
        res["extrapolated_seconds"] = round(r["seconds"] * n_layers / len(done), 1)
    if done:
        first = read_json(out / f"{done[0]}.json")
        res["scoring"] = {k: first.get(k) for k in ("fid_backend", "split", "n_images", "mode", "image_size")}
    res["under_2_minutes"] = bool(res["complete"] and r["seconds"] < 120)
    r["result"] = res
    return r


def _sweep_concurrent(base: list[str], cfg_path: Path, procs: int, timeout: float) -> dict:
    """``base`` (a ``unetprune sweep`` command) as ``procs`` concurrent processes, each given
    every ``procs``-th layer and ``cpus / procs`` threads; rc 124 if any outlives ``timeout``.
    All start at once: each reads the real-image statistics from the shared cache or computes
    them itself (the cache's writes are atomic, so concurrent writers are safe)."""
    from unetprune.config import load_config
    from unetprune.pipeline import sensitivity_layers

    layers = list(sensitivity_layers(load_config(str(cfg_path))))
    groups = [layers[i::procs] for i in range(procs) if layers[i::procs]]
    threads = str(max(1, (os.cpu_count() or 2) // len(groups)))
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    t0 = time.perf_counter()
    outs, rc = [], 0
    ps = [
        subprocess.Popen(
            base + [a for layer in g for a in ("--layer", layer)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for g in groups
    ]
    for p in ps:
        try:
            o, _ = p.communicate(timeout=max(1.0, timeout - (time.perf_counter() - t0)))
        except subprocess.TimeoutExpired:
            p.kill()
            o, _ = p.communicate()
            rc = 124
        outs.append(o or "")
        rc = rc or p.returncode
    return {
        "cmd": " ".join(base) + f" (x{len(groups)} processes)",
        "rc": rc,
        "seconds": round(time.perf_counter() - t0, 2),
        "stdout_tail": tail("\n".join(outs)),
        "stderr_tail": "",
    }


def step_kernels(args, tmp: Path, timeout: float) -> dict:
    out = tmp / "kernels.json"
    size = (
        ["--size", "32", "--n", "4", "--reps", "1", "--kid-n", "20", "--spread-n", "8"]
        if args.tiny
        else ["--size", "256", "--n", "64", "--reps", "3"]
    )
    r = run(
        py(
            "benchmarks/evaluate.py",
            "--kernels",
            "--device",
            args.device,
            "--threads",
            "4",
            *size,
            "--json",
            str(out),
        ),
        timeout,
    )
    r["result"] = read_json(out)
    return r


def step_slots(args, tmp: Path, timeout: float) -> dict:
    out = tmp / "slots.json"
    size = (
        ["--num-downs", "5", "--ngf", "8", "--size", "32", "--steps", "3", "--k", "1", "2"]
        if args.tiny
        else ["--steps", "300", "--k", "1", "2", "4"]
    )
    r = run(py("benchmarks/gpu_slots.py", "--device", args.device, *size, "--json", str(out)), timeout)
    r["result"] = read_json(out)
    return r


def step_train_loop(args, tmp: Path, timeout: float) -> dict:
    out = tmp / "train_loop.json"
    r = run(
        py(
            __file__,
            "--task",
            "train_loop",
            "--out",
            str(tmp),
            "--device",
            args.device,
            *(["--tiny"] if args.tiny else []),
        ),
        timeout,
    )
    r["result"] = read_json(out)
    return r


def task_train_loop(args) -> int:
    """In a child process: train() for one epoch, three ways; images/s from train.json."""
    from unetprune.config import load_config
    from unetprune.train import train

    tmp = Path(args.out)
    n, side, nd, ngf = (6, 32, 5, 8) if args.tiny else (400, 256, 8, 64)
    data = tmp / "loop_data"
    synthetic_aligned(data, "train", n, side, seed=2)
    rows = []
    for label, graph, on_device, workers in (
        ("eager, DataLoader", "off", False, 4),
        ("graph, DataLoader", "auto", False, 4),
        ("graph, GPU-resident data", "auto", "auto", 0),
    ):
        cfg = load_config(
            None,
            {
                "data": {
                    "dataset": "folder",
                    "root": str(data),
                    "load_size": side + (30 if side == 256 else 4),
                    "crop_size": side,
                    "num_workers": workers,
                    "on_device": on_device,
                },
                "model": {"pix2pix": {"num_downs": nd, "ngf": ngf}},
                "train": {
                    "device": args.device,
                    "amp": "off",
                    "channels_last": False,
                    "cuda_graph": graph,
                    "n_epochs": 1,
                    "n_epochs_decay": 0,
                    "batch_size": 1,
                    "eval_images": 0,
                    "save_every": 1,
                },
            },
        )
        run_dir = tmp / f"loop_{len(rows)}"
        t0 = time.perf_counter()
        log = train(cfg, run_dir, progress=False)
        ep = log["epochs"][-1]
        rows.append(
            {
                "run": label,
                "images_per_s": ep["images_per_s"],
                "epoch_seconds": ep["seconds"],
                "wall_seconds": time.perf_counter() - t0,
                "step_mode": log.get("step_mode"),
                "G_L1": ep.get("G_L1"),
            }
        )
        shutil.rmtree(run_dir, ignore_errors=True)
    (tmp / "train_loop.json").write_text(json.dumps({"images": n, "size": side, "rows": rows}, indent=2))
    return 0


STEP_FUNCS = {
    "env": step_env,
    "pytest_gpu": step_pytest_gpu,
    "train_step": step_train_step,
    "latency": step_latency,
    "dag": step_dag,
    "sweep": step_sweep,
    "slots": step_slots,
    "train_loop": step_train_loop,
    "dag_slots": step_dag_slots,
    "kernels": step_kernels,
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.environ.get("OUT") or "gpu_check_out")
    ap.add_argument("--steps", nargs="+", choices=STEPS, default=list(STEPS))
    ap.add_argument("--budget", type=float, default=DEFAULT_BUDGET, help="seconds for the whole call")
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    ap.add_argument("--tiny", action="store_true", help="tiny models and data (CPU check of the mechanics)")
    ap.add_argument(
        "--dag-dry-run", action="store_true", help="plan the DAG steps only (snakemake -n): tests"
    )
    ap.add_argument("--quick", action="store_true", help="train_step: fp32 only, 5 repetitions")
    ap.add_argument("--sweep-procs", type=int, default=1, help="sweep: concurrent processes over the layers")
    ap.add_argument(
        "--limits",
        nargs="+",
        default=[],
        metavar="STEP=S",
        help="time limits (s) of some steps instead of the defaults, e.g. dag_slots=140",
    )
    ap.add_argument("--task", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.task == "train_loop":
        return task_train_loop(args)

    t_start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    report = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "device": args.device,
        "tiny": args.tiny,
        "budget_s": args.budget,
        "steps": {},
    }
    path = out / "gpu_check.json"

    def save():
        report["elapsed_s"] = round(time.perf_counter() - t_start, 1)
        path.write_text(json.dumps(report, indent=2, default=str))

    limits = dict(LIMITS)
    for item in args.limits:
        name, _, sec = item.partition("=")
        if name not in LIMITS or not sec.replace(".", "", 1).isdigit():
            ap.error(f"--limits: expected STEP=SECONDS with STEP one of {', '.join(STEPS)}, got {item!r}")
        limits[name] = (float(sec), min(LIMITS[name][1], float(sec)))
    for name in dict.fromkeys(args.steps):  # in the order given
        limit, least = limits[name]
        left = args.budget - (time.perf_counter() - t_start)
        if left < least:
            report["steps"][name] = {
                "status": "skipped",
                "why": f"out of time ({left:.0f} s left of {args.budget:.0f})",
            }
            print(f"[gpu_check] {name}: skipped (out of time)", flush=True)
            save()
            continue
        print(f"[gpu_check] {name} (limit {min(limit, left):.0f} s) ...", flush=True)
        step_dir = tmp / name
        step_dir.mkdir()
        try:
            r = STEP_FUNCS[name](args, step_dir, min(limit, left))
            r["status"] = (
                "ok"
                if r.get("rc", 0) == 0 and "error" not in r
                else ("timeout" if r.get("rc") == 124 else "failed")
            )
        except Exception as e:  # noqa: BLE001 - fail soft: record and go on
            r = {
                "status": "failed",
                "error": f"{type(e).__name__}: {e}",
                "traceback": tail(traceback.format_exc()),
            }
        report["steps"][name] = r
        print(f"[gpu_check] {name}: {r['status']} ({r.get('seconds', '?')} s)", flush=True)
        save()
    report["summary"] = summary(report)
    save()
    print(json.dumps(report["summary"], indent=2))
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


def summary(report: dict) -> dict:
    """The headline figures (everything else is in the steps); a figure that cannot be read
    is left out with the reason, never an exception."""
    s, st = {}, report["steps"]

    def res(name):
        return (st.get(name) or {}).get("result") or {}

    def put(key, fn):
        try:
            value = fn()
        except Exception as e:  # noqa: BLE001 - fail soft here too
            s.setdefault("unreadable", {})[key] = f"{type(e).__name__}: {e}"
            return
        if value not in (None, {}, []):
            s[key] = value

    s["status"] = {k: v.get("status") for k, v in st.items()}
    put("gpu", lambda: res("env").get("gpu"))
    put("pytest_gpu", lambda: res("pytest_gpu").get("counts"))
    put(
        "train_step_ms",
        lambda: {
            f"{r['amp']}{'-cl' if r['channels_last'] else ''}": {
                "eager": round(r["eager_ms"], 3),
                "graph": round(r["graph_ms"], 3),
                "ratio": round(r["ratio"], 2),
            }
            for r in res("train_step").get("rows", [])
        },
    )
    put("train_step_meets_5x", lambda: res("train_step").get("meets_5x"))
    put(
        "train_step_eager_kernel_ms",
        lambda: {k: round(v, 3) for k, v in res("train_step").get("eager_kernel_ms", {}).items()},
    )
    put(
        "latency_ms",
        lambda: {
            f"{t['family']}-b{t['batch']}": {
                r["variant"]: [round(r["eager_ms"], 3), r["graph_ms"] and round(r["graph_ms"], 3)]
                for r in t["rows"]
            }
            for t in res("latency").get("tables", [])
        },
    )
    for name in ("dag", "dag_slots"):
        put(
            name,
            lambda name=name: (
                {"complete": res(name).get("complete"), "seconds": st[name]["seconds"]}
                if st.get(name, {}).get("seconds") is not None
                else None
            ),
        )
    put(
        "sweep",
        lambda: (
            {
                k: res("sweep").get(k)
                for k in (
                    "seconds",
                    "layers_done",
                    "complete",
                    "under_2_minutes",
                    "extrapolated_seconds",
                    "processes",
                )
            }
            if res("sweep")
            else None
        ),
    )
    put(
        "slots",
        lambda: {
            r["k"]: {"aggregate_img_s": round(r["aggregate_img_s"], 1), "gain": round(r["gain"], 2)}
            for r in res("slots").get("rows", [])
        },
    )
    put(
        "kernels",
        lambda: {k: round(v["speedup"], 2) for k, v in res("kernels").get("cases", {}).items()} or None,
    )
    put(
        "train_loop_img_s",
        lambda: {r["run"]: round(r["images_per_s"], 1) for r in res("train_loop").get("rows", [])},
    )
    return s


if __name__ == "__main__":
    sys.exit(main())
