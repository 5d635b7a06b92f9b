"""FID evaluation: the fast in-memory path against the straightforward folder path.

    python benchmarks/evaluate.py                          # demo data 64 px, 32 test images, 8 models, CPU
    python benchmarks/evaluate.py --models 8 --n 64 --threads 2
    python benchmarks/evaluate.py --backend inception-v3-compat --inception-weights W.pth --device cuda
    python benchmarks/evaluate.py --data-root results/demo/data --size 64 --json bench.json
    python benchmarks/evaluate.py --kernels --size 256 --n 64 --threads 2   # SSIM, KID, spread, generation: as built vs straightforward

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

``--kernels``: three per-point metric computations as built against a straightforward
version of each, on the same inputs, alternated, best of ``--reps``, with the ratio and
the largest difference of the results:

* SSIM (``metrics.paired.ssim``: the separable Gaussian as weighted sums of shifted float64
  views) vs the same filter as a grouped float64 ``conv2d``, ``--n`` random pairs of ``--size`` px;
* KID when the subset is the whole set (``metrics.fid.kid_from_features``: one MMD) vs
  torch-fidelity's 100 subsets, ``--kid-n`` random 2048-d features per set;
* the collapse check's spread (``metrics.plugins.output_spread``: exact integer sums) vs
  ``std`` of a float64 copy, ``--spread-n`` random images of ``--size`` px;
* ``train_bn`` generation (``translate.generate_batches``) of ``--gen-n`` images by a
  ``--num-downs`` / ``--ngf`` U-Net at its natural size: batches of 16 with per-image
  BatchNorm statistics and dropout streams (the evaluation default) vs one image per call
  (the reference's loop); the difference is the largest output difference (the same images).
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
    p.add_argument(
        "--data-root", default=None, help="aligned dataset (default: build the demo set in a temp dir)"
    )
    p.add_argument("--split", default="test")
    p.add_argument("--size", type=int, default=64, help="image side (demo build and crop size)")
    p.add_argument("--n", type=int, default=32, help="test images of the built demo set / max images")
    p.add_argument(
        "--models",
        type=int,
        default=8,
        help="generators scored by each path (a sweep scores ~9 ratios per layer)",
    )
    p.add_argument("--num-downs", type=int, default=6)
    p.add_argument("--ngf", type=int, default=16)
    p.add_argument("--backend", default="standin", choices=["standin", "inception-v3-compat"])
    p.add_argument("--inception-weights", default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (torch intra-op)")
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--kernels", action="store_true", help="time three metric computations only (see above)")
    p.add_argument("--reps", type=int, default=3, help="--kernels: timed repetitions of each")
    p.add_argument("--kid-n", type=int, default=500, help="--kernels: features per set for KID")
    p.add_argument("--spread-n", type=int, default=500, help="--kernels: images for the spread")
    p.add_argument("--gen-n", type=int, default=64, help="--kernels: images for the train_bn generation")
    return p.parse_args(argv)


def ssim_conv2d(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Reference: the SSIM of metrics.paired with its filter as a grouped float64 conv2d."""
    import torch.nn.functional as nnf

    from unetprune.metrics.paired import gaussian_window

    a, b = fake.double(), real.double()
    c, g = a.shape[1], gaussian_window().to(a.device)
    k = g.numel()
    wv, wh = g.view(1, 1, k, 1).expand(c, 1, k, 1), g.view(1, 1, 1, k).expand(c, 1, 1, k)

    def filt(x):
        return nnf.conv2d(nnf.conv2d(x, wv, groups=c), wh, groups=c)

    mu_a, mu_b = filt(a), filt(b)
    var_a, var_b, cov = filt(a * a) - mu_a**2, filt(b * b) - mu_b**2, filt(a * b) - mu_a * mu_b
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.flatten(1).mean(1)


def _race(fns: dict, reps: int, dev: torch.device) -> tuple[dict, dict]:
    """Best time (s) and last result of each callable, alternated; the first round untimed."""
    times, out = {k: [] for k in fns}, {}
    for _ in range(reps + 1):
        for name, fn in fns.items():
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            out[name] = fn()
            if dev.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t0)
    return {k: min(v[1:]) for k, v in times.items()}, out


def bench_kernels(args) -> dict:
    from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, kid_features_to_metric

    from unetprune.metrics.fid import kid_from_features
    from unetprune.metrics.paired import ssim
    from unetprune.metrics.plugins import output_spread

    dev = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 256, (args.n, 3, args.size, args.size), generator=g, dtype=torch.uint8)
    b = (a.int() + torch.randint(-30, 31, a.shape, generator=g)).clamp(0, 255).to(torch.uint8)
    a, b = a.to(dev), b.to(dev)
    f1 = torch.rand(args.kid_n, 2048, generator=g).numpy()
    f2 = (torch.rand(args.kid_n, 2048, generator=g) * 1.1).numpy()
    imgs = torch.randint(0, 256, (args.spread_n, 3, args.size, args.size), generator=g, dtype=torch.uint8).to(
        dev
    )
    cases = {
        "ssim": (
            {"as built": lambda: ssim(a, b), "before": lambda: ssim_conv2d(a, b)},
            lambda o: float((o["as built"] - o["before"]).abs().max()),
            f"{args.n} pairs of {args.size} px",
        ),
        "kid": (
            {
                "as built": lambda: kid_from_features(f1, f2)["mean"],
                "before": lambda: kid_features_to_metric(
                    torch.from_numpy(f1),
                    torch.from_numpy(f2),
                    kid_subsets=100,
                    kid_subset_size=args.kid_n,
                    rng_seed=0,
                    verbose=False,
                )[KEY_METRIC_KID_MEAN],
            },
            lambda o: abs(o["as built"] - o["before"]) / abs(o["before"]),
            f"2 x {args.kid_n} features",
        ),
        "spread": (
            {
                "as built": lambda: output_spread(imgs),
                "before": lambda: float((imgs.double() / 255.0).std(0, unbiased=False).mean()),
            },
            lambda o: abs(o["as built"] - o["before"]),
            f"{args.spread_n} images of {args.size} px",
        ),
    }
    from contextlib import closing

    from unetprune.families.pix2pix.unet import UNetSpec, build_generator
    from unetprune.translate import generate_batches

    gen = build_generator(UNetSpec.reference(num_downs=args.num_downs, ngf=args.ngf), seed=0).to(dev)
    side = 2**args.num_downs
    xs = (torch.rand(args.gen_n, 3, side, side, generator=g) * 2 - 1).to(dev)

    def generate(bs):
        with closing(
            generate_batches(gen, (xs[i : i + bs] for i in range(0, len(xs), bs)), "train_bn", 0)
        ) as ys:
            return torch.cat(list(ys))

    cases["generation"] = (
        {"as built": lambda: generate(16), "before": lambda: generate(1)},
        lambda o: float((o["as built"] - o["before"]).abs().max()),
        f"{args.gen_n} images, unet num_downs={args.num_downs} ngf={args.ngf} at {side} px",
    )
    res = {"device": str(dev), "threads": args.threads, "reps": args.reps, "cases": {}}
    print(f"metric computations on {dev} ({args.threads} threads), best of {args.reps}, as built vs before:")
    for name, (fns, diff, what) in cases.items():
        best, out = _race(fns, args.reps, dev)
        row = {
            "what": what,
            "seconds": best,
            "speedup": best["before"] / best["as built"],
            "difference": diff(out),
        }
        res["cases"][name] = row
        kind = "relative" if name == "kid" else "largest"
        print(
            f"  {name:10s} ({what}): {best['as built']:.3f} s vs {best['before']:.3f} s  "
            f"x{row['speedup']:.2f}  ({kind} difference {row['difference']:.1e})"
        )
    return res


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.kernels:
        res = bench_kernels(args)
        if args.json:
            Path(args.json).write_text(json.dumps(res, indent=2))
        return 0
    warnings.filterwarnings("ignore", message="This DataLoader will create")  # torch-fidelity's 4 workers
    import torch_fidelity

    from unetprune.config import load_config
    from unetprune.data.aligned import AlignedDataset, to_uint8
    from unetprune.data.demo import build_demo_dataset
    from unetprune.evaluate import Evaluator
    from unetprune.metrics import fid as F
    from unetprune.families.pix2pix.unet import UNetSpec, build_generator
    from unetprune.translate import generate_batches

    tmp = Path(tempfile.mkdtemp(prefix="unetprune-bench-eval-"))
    if args.data_root is None:
        root = tmp / "data"
        build_demo_dataset(root, image_size=args.size, n_train=2, n_val=1, n_test=args.n, progress=False)
    else:
        root = Path(args.data_root)
    cfg = load_config(
        None,
        {
            "data": {"root": str(root), "crop_size": args.size, "load_size": max(args.size, 286)},
            "demo": {"image_size": args.size},
            "model": {"pix2pix": {"num_downs": args.num_downs, "ngf": args.ngf}},
            "evaluate": {
                "fid_backend": args.backend,
                "inception_weights": args.inception_weights,
                "max_images": args.n,
                "kid": False,
                "segmentation": "none",
                "device": args.device,
            },
        },
    )
    spec = UNetSpec.reference(num_downs=args.num_downs, ngf=args.ngf)
    models = [build_generator(spec, seed=100 + i) for i in range(args.models)]
    seed = cfg["seed"]
    stats_dir = tmp / "stats"
    # the stand-in weight file is a one-off artefact of the offline backend, shared by both paths
    # (written before the clock starts; the real statistics in the same folder stay cold)
    F.get_extractor(
        args.backend, args.inception_weights, cfg["evaluate"]["standin_seed"], "cpu", cache_dir=stats_dir
    )

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
    ds = AlignedDataset(
        root,
        args.split,
        "AtoB",
        load_size=max(args.size, 286),
        crop_size=args.size,
        train=False,
        max_items=args.n,
    )
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
        "machine": {
            "device": args.device,
            "threads": args.threads,
            "cpu": platform.processor() or platform.machine(),
            "cuda": torch.cuda.get_device_name(0) if device.type == "cuda" else None,
        },
        "setup": {
            "images": len(ds),
            "size": args.size,
            "models": args.models,
            "backend": ex.backend,
            "unet": f"num_downs={args.num_downs} ngf={args.ngf}",
            "mode": cfg["evaluate"]["mode"],
        },
        "fast": {"total_s": fast_total, "setup_s": fast_setup, "per_model_s": fast_times, "fid": fast_vals},
        "straightforward": {"total_s": slow_total, "per_model_s": slow_times, "fid": slow_vals},
        "speedup": slow_total / fast_total,
        "speedup_per_model": float(np.median(slow_times) / np.median(fast_times)),
        "fid_max_rel_diff": max(rel),
    }
    print(
        f"FID evaluation benchmark: {len(ds)} images {args.size}px, {args.models} models, backend {ex.backend}, "
        f"{args.device} ({args.threads} thread(s)), torch-fidelity {torch_fidelity.__version__}"
    )
    print(
        f"{'model':>6} {'fast s':>8} {'straight s':>11} {'FID fast':>12} {'FID straight':>13} {'rel diff':>9}"
    )
    for k in range(args.models):
        print(
            f"{k:>6} {fast_times[k]:8.2f} {slow_times[k]:11.2f} {fast_vals[k]:12.5f} {slow_vals[k]:13.5f} "
            f"{rel[k]:9.1e}"
        )
    print(
        f"total: fast {fast_total:.2f} s (set-up incl. real stats {fast_setup:.2f} s), straightforward "
        f"{slow_total:.2f} s -> speed-up {res['speedup']:.1f}x (per model {res['speedup_per_model']:.1f}x); "
        f"max FID rel. difference {res['fid_max_rel_diff']:.1e}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
