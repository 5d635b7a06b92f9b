"""Sensitivity sweep as built vs naive, same points, one run.

* as built: one ``unetprune sweep --layer L`` process per layer (what the workflow runs);
  each loads the model, the split and the FID extractor once, reads the real-image
  statistics from the shared cache, and scores every ratio;
* naive: one process per (layer, ratio) point, each starting from nothing (its own cache
  folder, so it also recomputes the real statistics), as a one-job-per-number workflow
  would.

Both run on the same offline demo data and the same generator checkpoint; the per-point
FID values of the two are compared (they must agree: same extractor, same images).

    python benchmarks/sweep.py                     # 3 layers x 9 ratios (docs/method.md protocol)
    python benchmarks/sweep.py --layers down1 down6 up2 --ratios 0.5 0.9
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

import yaml


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layers", nargs="+", default=["down1", "down4", "up5"])
    ap.add_argument("--ratios", nargs="+", type=float, default=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    ap.add_argument("--n-test", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    from unetprune.checkpoint import save_generator
    from unetprune.config import load_config
    from unetprune.data.demo import build_demo_dataset
    from unetprune.family import family_for_config

    tmp = Path(tempfile.mkdtemp(prefix="unetprune-sweep-bench-"))
    data = tmp / "data"
    build_demo_dataset(data, image_size=64, n_train=2, n_val=1, n_test=args.n_test, progress=False)
    cfg_dict = {
        "experiment": "bench",
        "data": {"dataset": "folder", "root": str(data), "load_size": 64, "crop_size": 64},
        "model": {"pix2pix": {"num_downs": 6, "ngf": 32}},
        "evaluate": {"fid_backend": "standin", "segmentation": "demo", "kid": False},
        "sensitivity": {"ratios": args.ratios},
    }
    cfg_path = tmp / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg_dict))
    cfg = load_config(cfg_path)
    ckpt = tmp / "g.pt"
    fam = family_for_config(cfg)
    save_generator(ckpt, fam.build(fam.spec_from_config(cfg), seed=0), cfg)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}

    def sweep(layer: str, out: Path, cache: Path, ratios: list[float] | None = None) -> None:
        cmd = [
            sys.executable,
            "-m",
            "unetprune.cli",
            "sweep",
            "--config",
            str(cfg_path),
            "--checkpoint",
            str(ckpt),
            "--layer",
            layer,
            "--out-dir",
            str(out),
            "--cache-dir",
            str(cache),
        ]
        if ratios is not None:
            cmd += ["--set", f"sensitivity.ratios={json.dumps(ratios)}"]
        subprocess.run(cmd, check=True, env=env, capture_output=True)

    # the shared cache is filled once, as the workflow's evaluate_original job does
    shared = tmp / "cache"
    t = time.perf_counter()
    sweep(args.layers[0], tmp / "warm", shared, [args.ratios[0]])
    warm = time.perf_counter() - t

    t = time.perf_counter()
    for layer in args.layers:
        sweep(layer, tmp / "built", shared)
    built = time.perf_counter() - t

    t = time.perf_counter()
    for layer in args.layers:
        for i, r in enumerate(args.ratios):
            sweep(layer, tmp / f"naive-{layer}-{i}", tmp / f"cache-{layer}-{i}", [r])
    naive = time.perf_counter() - t

    worst = 0.0
    for layer in args.layers:
        a = json.loads((tmp / "built" / f"{layer}.json").read_text())
        for i, r in enumerate(args.ratios):
            b = json.loads((tmp / f"naive-{layer}-{i}" / f"{layer}.json").read_text())
            fa, fb = a["metrics"][i]["fid"], b["metrics"][0]["fid"]
            worst = max(worst, abs(fa - fb) / max(abs(fb), 1e-12))
    n = len(args.layers) * len(args.ratios)
    print(
        f"{len(args.layers)} layers x {len(args.ratios)} ratios = {n} points, {args.n_test} test images "
        f"at 64 px, CPU, OMP_NUM_THREADS={args.threads}"
    )
    print(f"  (filling the shared statistics cache once: {warm:.1f} s, not counted)")
    print(f"  as built  (1 process per layer, cached stats): {built:7.1f} s  ({built / n:.2f} s/point)")
    print(f"  naive     (1 process per point, no cache)    : {naive:7.1f} s  ({naive / n:.2f} s/point)")
    print(f"  speed-up: x{naive / built:.2f}   max relative FID difference between the two: {worst:.2e}")


if __name__ == "__main__":
    main()
