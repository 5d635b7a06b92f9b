"""FID evaluation: the fast in-memory path against the straightforward folder path.

    python benchmarks/evaluate.py                          # demo data 64 px, 32 test images, 8 models, CPU
    python benchmarks/evaluate.py --models 8 --n 64 --threads 2
    python benchmarks/evaluate.py --backend inception-v3-compat --inception-weights W.pth --device cuda
    python benchmarks/evaluate.py --data-root results/demo/data --size 64 --json bench.json

Both paths score the same K generators (same architecture, different random weights: a
stand-in for the K pruned variants a sensitivity sweep scores) on the same split, with
the same feature extractor weights, mode (``train_bn``: BatchNorm on batch statistics,
dropout on) and seed:

* **straightforward** - per model: run the generator image by image (the project's one
  generation loop, ``translate.generate_batches``), quantise each output with ``to_uint8``
  and write it as PNG, then ``torch_fidelity.calculate_metrics`` on the fake folder and the
  real-photo folder (``metrics.fid.fidelity_folder_metrics`` with torch-fidelity's default
  batch size and workers, ``cache=False``), so the extractor is rebuilt and the real
  statistics are recomputed for every model.  The real PNGs are written once (counted in
  the first model's time).
* **fast** - one :class:`unetprune.evaluate.Evaluator` (extractor built and real statistics
  computed *once*; with a cold cache, counted in the total), then per model: its generation
  loop (generator → uint8 in memory) and its FID plug-in (batched features → FID, exact
  trace via a nuclear norm).

Reported: total wall time of each path including set-up, the speed-up, per-model times, and
the agreement of the two FID values of every model (max relative difference).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-root", default=None, help="aligned dataset (default: build the demo set in a temp dir)")
    p.add_argument("--split", default="test")
    p.add_argument("--size", type=int, default=64, help="image side (demo build and crop size)")
    p.add_argument("--n", type=int, default=32, help="test images of the built demo set / max images")
    p.add_argument("--models", type=int, default=8,
                   help="generators scored by each path (a sweep scores ~9 ratios per layer)")
    p.add_argument("--num-downs", type=int, default=6)
    p.add_argument("--ngf", type=int, default=16)
    p.add_argument("--backend", default="standin", choices=["standin", "inception-v3-compat"])
    p.add_argument("--inception-weights", default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (torch intra-op)")
    p.add_argument("--json", default=None, help="also write the results here")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="This DataLoader will create")  # torch-fidelity's 4 workers
    import torch_fidelity

    from unetprune.config import load_config
    from unetprune.data.aligned import AlignedDataset, to_uint8
    from unetprune.data.demo import build_demo_dataset
    from unetprune.evaluate import Evaluator
    from unetprune.metrics import fid as F
    from unetprune.models.unet import UNetSpec, build_generator
    from unetprune.translate import generate_batches

    tmp = Path(tempfile.mkdtemp(prefix="unetprune-bench-eval-"))
    if args.data_root is None:
        root = tmp / "data"
        build_demo_dataset(root, image_size=args.size, n_train=2, n_val=1, n_test=args.n, progress=False)
    else:
        root = Path(args.data_root)
    cfg = load_config(None, {
        "data": {"root": str(root), "crop_size": args.size, "load_size": max(args.size, 286)},
        "demo": {"image_size": args.size}, "model": {"num_downs": args.num_downs, "ngf": args.ngf},
        "evaluate": {"fid_backend": args.backend, "inception_weights": args.inception_weights,
                     "max_images": args.n, "kid": False, "segmentation": "none", "device": args.device}})
    spec = UNetSpec.reference(num_downs=args.num_downs, ngf=args.ngf)
    models = [build_generator(spec, seed=100 + i) for i in range(args.models)]
    seed = cfg["seed"]
    stats_dir = tmp / "stats"
    # the stand-in weight file is a one-off artefact of the offline backend, shared by both paths
    # (written before the clock starts; the real statistics in the same folder stay cold)
    F.get_extractor(args.backend, args.inception_weights, cfg["evaluate"]["standin_seed"], "cpu",
                    cache_dir=stats_dir)

    # ---------------- fast path ----------------
    t0 = time.perf_counter()
    ev = Evaluator(cfg, args.split, cache_dir=stats_dir, device=args.device, latency=False, metrics=("fid",))
    fast_setup = time.perf_counter() - t0
    fid_metric = ev.metrics["fid"]
    fast_vals, fast_times = [], []
    for g in models:
        t = time.perf_counter()
        fast_vals.append(fid_metric.score(ev.generate(g), g)["fid"]["value"])
        fast_times.append(time.perf_counter() - t)
    fast_total = time.perf_counter() - t0

    # ---------------- straightforward path ----------------
    ex = fid_metric.extractor
    ds = AlignedDataset(root, args.split, "AtoB", load_size=max(args.size, 286), crop_size=args.size,
                        train=False, max_items=args.n)
    device = torch.device(args.device)
    slow_vals, slow_times = [], []
    t0 = time.perf_counter()
    real_dir = tmp / "real"
    real_dir.mkdir()
    for i in range(len(ds)):
        Image.fromarray(ds.pair_uint8(i)[1].permute(1, 2, 0).numpy()).save(real_dir / f"{i:05d}.png")
    for k, g in enumerate(models):
        t = time.perf_counter()
        fake_dir = tmp / f"fake{k}"
        fake_dir.mkdir()
        g = g.to(device)
        inputs = (ds[i]["A"][None] for i in range(len(ds)))
        for i, y in enumerate(generate_batches(g, inputs, cfg["evaluate"]["mode"], seed, device=device)):
            Image.fromarray(to_uint8(y[0])).save(fake_dir / f"{i:05d}.png")
        # torch-fidelity's defaults (batch 64, its data-loader workers)
        ref = F.fidelity_folder_metrics(fake_dir, real_dir, ex, seed=seed, batch_size=64, save_cpu_ram=False)
        slow_vals.append(ref["frechet_inception_distance"])
        slow_times.append(time.perf_counter() - t)
    slow_total = time.perf_counter() - t0

    rel = [abs(a - b) / max(abs(b), 1e-12) for a, b in zip(fast_vals, slow_vals)]
    res = {
        "machine": {"device": args.device, "threads": args.threads, "cpu": platform.processor() or platform.machine(),
                    "cuda": torch.cuda.get_device_name(0) if device.type == "cuda" else None},
        "setup": {"images": len(ds), "size": args.size, "models": args.models, "backend": ex.backend,
                  "unet": f"num_downs={args.num_downs} ngf={args.ngf}", "mode": cfg["evaluate"]["mode"]},
        "fast": {"total_s": fast_total, "setup_s": fast_setup, "per_model_s": fast_times, "fid": fast_vals},
        "straightforward": {"total_s": slow_total, "per_model_s": slow_times, "fid": slow_vals},
        "speedup": slow_total / fast_total,
        "speedup_per_model": float(np.median(slow_times) / np.median(fast_times)),
        "fid_max_rel_diff": max(rel),
    }
    print(f"FID evaluation benchmark: {len(ds)} images {args.size}px, {args.models} models, backend {ex.backend}, "
          f"{args.device} ({args.threads} thread(s)), torch-fidelity {torch_fidelity.__version__}")
    print(f"{'model':>6} {'fast s':>8} {'straight s':>11} {'FID fast':>12} {'FID straight':>13} {'rel diff':>9}")
    for k in range(args.models):
        print(f"{k:>6} {fast_times[k]:8.2f} {slow_times[k]:11.2f} {fast_vals[k]:12.5f} {slow_vals[k]:13.5f} "
              f"{rel[k]:9.1e}")
    print(f"total: fast {fast_total:.2f} s (set-up incl. real stats {fast_setup:.2f} s), straightforward "
          f"{slow_total:.2f} s -> speed-up {res['speedup']:.1f}x (per model {res['speedup_per_model']:.1f}x); "
          f"max FID rel. difference {res['fid_max_rel_diff']:.1e}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
