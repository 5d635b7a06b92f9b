"""`unetprune demo-data`: build the offline demo dataset of the config's model family (idempotent):
the labels → photo pairs of pix2pix, or the talking-face clips of Wav2Lip (``demo.talking``)."""

from __future__ import annotations

import json
from pathlib import Path

from ..layout import Layout
from ..data.aligned import check_aligned_layout
from ._common import add_config_args, config_from_args


def register(sub) -> None:
    p = sub.add_parser("demo-data", help="build the offline demo dataset (pix2pix: scikit-image photos; "
                                          "wav2lip: talking-face clips)")
    add_config_args(p)
    p.add_argument("--out", help="output folder (default: the config's data root)")
    p.add_argument("--force", action="store_true", help="rebuild even if an identical build exists")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..data.demo import build_demo_dataset

    cfg = config_from_args(args)
    out = Path(args.out) if args.out else Layout.from_config(cfg).data_root
    if cfg["model"]["family"] == "wav2lip":
        return _talking(cfg, out, args.force)
    params = {k: cfg["demo"][k] for k in ("image_size", "n_train", "n_val", "n_test", "n_classes", "seed")}
    manifest = out / "demo.json"
    if manifest.exists() and not args.force:
        old = json.loads(manifest.read_text())
        if all(old.get(k) == v for k, v in params.items() if k not in ("n_train", "n_val", "n_test")) \
                and old.get("counts") == {"train": params["n_train"], "val": params["n_val"], "test": params["n_test"]}:
            print(f"demo dataset at {out} is up to date")
            return 0
    build_demo_dataset(out, **params)
    counts = check_aligned_layout(out, splits=("train", "test"))
    print(f"demo dataset written to {out}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


def _talking(cfg: dict, out: Path, force: bool) -> int:
    from ..families.wav2lip.demo import build_talking_demo

    t = cfg["demo"]["talking"]
    man = build_talking_demo(out, n_train=t["n_train"], n_val=t["n_val"], n_test=t["n_test"], side=t["side"],
                             seed=t["seed"], force=force, progress=False, log=print)
    counts = man["preprocess"]["counts"]
    print(f"talking-face demo at {out}: " + ", ".join(f"{k} {v}" for k, v in counts.items()) + " clips")
    return 0
