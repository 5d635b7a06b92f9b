"""`unetprune sweep`: per-layer sensitivity (one layer at a time, every ratio, no fine-tuning).

One process loads the checkpoint, the evaluation split, the FID extractor and the cached
real statistics once, then scores every (layer, ratio) point it is given; the workflow runs
one such job per layer.  Writes one JSON per layer where the results layout says
(``results/<experiment>/sensitivity/<layer>.json``, or ``--out-dir``).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..fileio import atomic_write_text
from ..layout import Layout
from ._common import add_config_args, config_from_args


def register(sub) -> None:
    p = sub.add_parser("sweep", help="per-layer sensitivity sweep of a trained generator")
    add_config_args(p)
    p.add_argument("--checkpoint", required=True, help="the trained (unpruned) generator")
    p.add_argument("--layer", action="append", default=[],
                   help="layer to sweep (repeatable; default: sensitivity.layers of the config)")
    p.add_argument("--out-dir", default=None,
                   help="folder for <layer>.json (default: the experiment's sensitivity/ folder)")
    p.add_argument("--cache-dir", default=None, help="FID statistics cache (default: the experiment's fid_stats/)")
    p.set_defaults(func=run)


def sweep_metric(result: dict) -> dict[str, float]:
    """The numbers of an evaluation result that a sensitivity curve can plot."""
    seg = result.get("segmentation") or {}
    kid = result.get("kid") or {}
    out = {"fid": result["fid"]["value"], "l1": result["l1"], "psnr": result["psnr"], "ssim": result["ssim"]}
    if kid.get("mean") is not None:
        out["kid"] = kid["mean"]
    if seg.get("miou") is not None:
        out["miou"] = seg["miou"]
    return out


def run_sweep(cfg: dict, checkpoint: str, layers: list[str] | None, out_dir: str | None = None,
              cache_dir: str | None = None) -> dict:
    """Score every (layer, ratio) point and write one JSON per layer (as soon as it is done)."""
    from ..checkpoint import generator_from_checkpoint
    from ..config import deep_merge
    from ..evaluate import Evaluator
    from ..pipeline import sensitivity_layers
    from ..pruning import sensitivity_sweep

    s = cfg["sensitivity"]
    if s["max_images"]:
        cfg = deep_merge(cfg, {"evaluate": {"max_images": s["max_images"]}})
    G = generator_from_checkpoint(checkpoint)
    lay = Layout.from_config(cfg)
    ev = Evaluator(cfg, s["split"], cache_dir=cache_dir or lay.fid_cache, latency=False)
    if out_dir is not None:
        lay = Layout(root=lay.root, data_root=lay.data_root, sensitivity_root=Path(out_dir))
    side = cfg["data"]["crop_size"]
    # record how the points were scored next to the numbers (no table mixes FID backends)
    scoring = {"fid_backend": ev.metrics["fid"].extractor.backend, "split": s["split"], "n_images": ev.eval_set.n,
               "mode": ev.mode, "image_size": ev.eval_set.image_size}

    def write(layer: str, r: dict) -> None:
        r.update(scoring)
        atomic_write_text(lay.sensitivity_json(layer), json.dumps(r, indent=2) + "\n")

    return sensitivity_sweep(G, layers or sensitivity_layers(cfg), s["ratios"],
                             lambda g: sweep_metric(ev.score(g)), write, importance=s["importance"],
                             seed=cfg["seed"], input_shape=(1, G.spec.input_nc, side, side), include_full=True)


def run(args) -> int:
    cfg = config_from_args(args)
    res = run_sweep(cfg, args.checkpoint, args.layer or None, args.out_dir, args.cache_dir)
    for layer, r in res.items():
        q = ", ".join(f"r={ratio:g}: FID {m['fid']:.2f}" for ratio, m in zip(r["ratios"], r["metrics"]))
        print(f"{layer}: {q}")
    return 0
