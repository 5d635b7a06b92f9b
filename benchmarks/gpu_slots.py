"""Several small training jobs on one GPU: aggregate throughput of K concurrent processes.

A batch-1 fine-tune is launch-bound and leaves most of an H100/H200 idle, so the GPU workflow
profile (profiles/gpu) runs several fine-tunes, sweeps and evaluations per GPU (`gpu_slot`
resources).  This measures what that buys: for each K (``--k 1 2 4``) it starts K worker
processes at once, each a batch-1 pix2pix trainer (``train.cuda_graph`` as given, the model of
``--num-downs/--ngf/--size``) on its own random batch; every worker warms up (and captures),
waits at a barrier until all K are ready, then runs ``--steps`` steps.  Aggregate throughput
= K x steps / (last worker's end - the common start); the gain is relative to K = 1.

    python benchmarks/gpu_slots.py --k 1 2 4 --json slots.json                  # unet_256, CUDA
    python benchmarks/gpu_slots.py --device cpu --num-downs 5 --ngf 8 --size 32 --k 1 2 --steps 5

The CPU run only checks the mechanics (two processes on shared cores are no faster).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def worker(args) -> int:
    import torch

    from unetprune.config import load_config
    from unetprune.family import family_for_config
    from unetprune.train import build_models

    torch.set_num_threads(args.threads)
    if args.device == "cuda":
        torch.backends.cudnn.benchmark = True
    cfg = load_config(
        None,
        {
            "model": {"pix2pix": {"num_downs": args.num_downs, "ngf": args.ngf}},
            "data": {"dataset": "folder", "crop_size": args.size, "load_size": args.size},
            "train": {
                "device": args.device,
                "amp": args.amp,
                "channels_last": False,
                "compile": False,
                "cuda_graph": args.cuda_graph,
            },
        },
    )
    device = torch.device(args.device)
    tr = family_for_config(cfg).trainer(*build_models(cfg)[:2], cfg["train"], device)
    g = torch.Generator().manual_seed(args.index)
    A = (torch.rand(1, 3, args.size, args.size, generator=g) * 2 - 1).to(device)
    B = (torch.rand(1, 3, args.size, args.size, generator=g) * 2 - 1).to(device)
    for _ in range(5):
        tr.train_step(A, B)
    if device.type == "cuda":
        torch.cuda.synchronize()
    barrier = Path(args.barrier)
    (barrier / f"ready{args.index}").touch()
    while not (barrier / "go").exists():
        time.sleep(0.005)
    t0 = time.time()
    for _ in range(args.steps):
        out = tr.train_step(A, B)
    float(out["G_L1"])
    if device.type == "cuda":
        torch.cuda.synchronize()
    t1 = time.time()
    print(
        json.dumps(
            {"index": args.index, "start": t0, "end": t1, "steps": args.steps, "step_mode": tr.step_mode.mode}
        ),
        flush=True,
    )
    return 0


def run_round(k: int, args) -> dict:
    barrier = Path(tempfile.mkdtemp(prefix="gpu-slots-"))
    base = [
        sys.executable,
        __file__,
        "--worker",
        "--barrier",
        str(barrier),
        "--device",
        args.device,
        "--num-downs",
        str(args.num_downs),
        "--ngf",
        str(args.ngf),
        "--size",
        str(args.size),
        "--steps",
        str(args.steps),
        "--amp",
        args.amp,
        "--cuda-graph",
        args.cuda_graph,
        "--threads",
        str(args.threads),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    procs = [
        subprocess.Popen(
            base + ["--index", str(i)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        for i in range(k)
    ]
    deadline = time.time() + args.ready_timeout
    while sum((barrier / f"ready{i}").exists() for i in range(k)) < k:
        if time.time() > deadline or any(p.poll() not in (None, 0) for p in procs):
            msgs = []
            for p in procs:
                p.kill()
                err = (p.communicate()[1] or "").strip()
                if err:
                    msgs.append(err.splitlines()[-1])
            raise RuntimeError(f"K={k}: workers not ready ({'; '.join(msgs) or 'timeout'})")
        time.sleep(0.01)
    go = time.time()
    (barrier / "go").touch()
    results = []
    for p in procs:
        out, err = p.communicate(timeout=args.ready_timeout)
        if p.returncode != 0:
            raise RuntimeError(
                f"K={k}: a worker failed: {err.strip().splitlines()[-1] if err.strip() else '?'}"
            )
        results.append(json.loads(out.strip().splitlines()[-1]))
    span = max(r["end"] for r in results) - go
    per_job = [r["steps"] / (r["end"] - r["start"]) for r in results]
    return {
        "k": k,
        "seconds": span,
        "aggregate_img_s": k * args.steps / span,
        "per_job_img_s": per_job,
        "step_mode": results[0]["step_mode"],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--k", type=int, nargs="+", default=[1, 2, 4], help="concurrent jobs per round")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--num-downs", type=int, default=8)
    ap.add_argument("--ngf", type=int, default=64)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=300, help="timed steps per job")
    ap.add_argument("--amp", default="off", choices=("off", "bf16"))
    ap.add_argument("--cuda-graph", default="auto", choices=("auto", "on", "off"))
    ap.add_argument("--threads", type=int, default=1, help="CPU threads per job")
    ap.add_argument("--ready-timeout", type=float, default=120.0)
    ap.add_argument("--json", help="write the table to this JSON file")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--barrier", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args)

    rows = []
    print(
        f"# {args.device}: K concurrent batch-1 pix2pix trainers (num_downs={args.num_downs} ngf={args.ngf} "
        f"size={args.size}, amp {args.amp}, cuda_graph {args.cuda_graph}), {args.steps} steps each"
    )
    print(f"{'K':>3}{'aggregate img/s':>18}{'per job img/s':>16}{'gain vs K=1':>14}")
    for k in args.k:
        r = run_round(k, args)
        rows.append(r)
        r["gain"] = r["aggregate_img_s"] / rows[0]["aggregate_img_s"]
        print(
            f"{k:>3}{r['aggregate_img_s']:>18.1f}{sum(r['per_job_img_s']) / k:>16.1f}{r['gain']:>13.2f}x"
            f"   ({r['step_mode']} steps)"
        )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"args": {k: v for k, v in vars(args).items() if k != "barrier"}, "rows": rows}, indent=2
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
