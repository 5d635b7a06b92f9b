"""`unetprune sweep`: per-layer sensitivity (one layer at a time, every ratio, no fine-tuning).

One process loads the checkpoint, the evaluation split, the FID extractor and the cached
real statistics once, then scores every (layer, ratio) point it is given; the workflow runs
one such job per layer.  Writes one JSON per layer where the results layout says
(``results/<experiment>/sensitivity/<layer>.json``, or ``--out-dir``).

Each point (``metrics[i]``, and ``metrics_full`` for the unpruned model) holds the quality
metrics, the collapse check's ``diversity`` ratio and, when the evaluation recorded its noise
block, ``<metric>_std`` / ``<metric>_ci95_lo`` / ``<metric>_ci95_hi``; the layer's JSON adds
``collapsed`` (one flag per ratio: diversity < ``evaluate.collapse_threshold``),
``collapsed_full``, ``collapse_threshold`` and ``noise`` (seeds and bootstrap resamples of the
points, or null when they were scored once).
"""

from __future__ import annotations

import json

from ..fileio import atomic_write_text
from ..layout import Layout
from ._common import add_config_args, config_from_args


def register(sub) -> None:
    p = sub.add_parser("sweep", help="per-layer sensitivity sweep of a trained generator")
    add_config_args(p)
    p.add_argument("--checkpoint", required=True, help="the trained (unpruned) generator")
    p.add_argument(
        "--layer",
        action="append",
        default=[],
        help="layer to sweep (repeatable; default: sensitivity.layers of the config)",
    )
    p.add_argument(
        "--out-dir",
        default=None,
        help="folder for <layer>.json (default: the experiment's sensitivity/ folder)",
    )
    p.add_argument(
        "--cache-dir", default=None, help="FID statistics cache (default: the experiment's fid_stats/)"
    )
    p.add_argument(
        "--latency",
        choices=["cpu", "cuda"],
        help="instead of scoring: measure the plan's latency table on this device (each swept layer "
        "alone at each ratio's width) and write it to --latency-out",
    )
    p.add_argument("--latency-threads", type=int, default=1, help="CPU threads of --latency (default 1)")
    p.add_argument(
        "--latency-out",
        help="the latency table (default: <sensitivity dir>/latency-<device>-t<threads>.json)",
    )
    p.set_defaults(func=run)


#: the scalar quality metrics a sweep point records (with their noise, when measured)
SWEEP_METRICS = ("fid", "kid", "miou", "l1", "psnr", "ssim", "lse_d", "lse_c")


def sweep_metric(result: dict) -> dict[str, float]:
    """The numbers of an evaluation result that a sensitivity curve can plot: the quality
    metrics, the collapse check's ``diversity`` ratio and, from the noise block when there is
    one, each metric's ``<metric>_std``, ``<metric>_ci95_lo`` and ``<metric>_ci95_hi``."""
    seg = result.get("segmentation") or {}
    kid = result.get("kid") or {}
    out = {"fid": result["fid"]["value"], "l1": result["l1"], "psnr": result["psnr"], "ssim": result["ssim"]}
    if kid.get("mean") is not None:
        out["kid"] = kid["mean"]
    if seg.get("miou") is not None:
        out["miou"] = seg["miou"]
    lse = result.get("lse") or {}
    for k in ("lse_d", "lse_c"):  # Wav2Lip: lip sync (families/wav2lip/lse.py)
        if lse.get(k) is not None:
            out[k] = lse[k]
    ratio = (result.get("diversity") or {}).get("ratio")
    if ratio is not None:
        out["diversity"] = ratio
    noise = (result.get("noise") or {}).get("metrics") or {}
    for m in SWEEP_METRICS:
        entry = noise.get(m)
        if m not in out or not isinstance(entry, dict):
            continue
        if entry.get("std") is not None:
            out[f"{m}_std"] = entry["std"]
        ci = entry.get("ci95") or []
        if len(ci) == 2 and None not in ci:
            out[f"{m}_ci95_lo"], out[f"{m}_ci95_hi"] = ci
    return out


def noise_record(result: dict) -> dict | None:
    """How a point's noise was measured (``{"seeds": [...], "bootstrap": n}``), or None."""
    noise = result.get("noise")
    if not isinstance(noise, dict):
        return None
    return {"seeds": list(noise.get("seeds") or []), "bootstrap": int(noise.get("bootstrap") or 0)}


def collapse_flags(r: dict, threshold: float) -> dict:
    """The collapse check of a layer's result: one flag per ratio (None: diversity not recorded)."""
    from ..metrics.plugins import collapsed

    def one(m: dict):
        return collapsed(m.get("diversity"), threshold)

    out = {"collapse_threshold": threshold, "collapsed": [one(m) for m in r["metrics"]]}
    if "metrics_full" in r:
        out["collapsed_full"] = one(r["metrics_full"])
    return out


def run_sweep(
    cfg: dict,
    checkpoint: str,
    layers: list[str] | None,
    out_dir: str | None = None,
    cache_dir: str | None = None,
) -> dict:
    """Score every (layer, ratio) point and write one JSON per layer (as soon as it is done)."""
    from ..checkpoint import generator_from_checkpoint
    from ..config import deep_merge
    from ..evaluate import Evaluator
    from ..family import family_of
    from ..pipeline import sensitivity_layers
    from ..pruning import sensitivity_sweep

    s = cfg["sensitivity"]
    if s["max_images"]:
        cfg = deep_merge(cfg, {"evaluate": {"max_images": s["max_images"]}})
    G = generator_from_checkpoint(checkpoint)
    lay = Layout.from_config(cfg)
    ev = Evaluator(cfg, s["split"], cache_dir=cache_dir or lay.fid_cache, latency=False)
    if out_dir is not None:
        lay = lay.redirect_sensitivity(out_dir)
    side = cfg["data"]["crop_size"]
    threshold = float(cfg["evaluate"].get("collapse_threshold", 0.1))
    # record how the points were scored next to the numbers (no table mixes FID backends)
    scoring = {
        "fid_backend": ev.metrics["fid"].extractor.backend,
        "split": s["split"],
        "n_images": ev.eval_set.n,
        "mode": ev.mode,
        "image_size": ev.eval_set.image_size,
    }
    noise: list[dict | None] = []  # how each scored point's noise was measured, in scoring order

    def metric(g) -> dict:
        result = ev.score(g, noise_seeds=1)
        noise.append(noise_record(result))
        return sweep_metric(result)

    def write(layer: str, r: dict) -> None:
        r.update(scoring)
        r.update(collapse_flags(r, threshold))
        r["noise"] = noise[-1] if noise else None
        atomic_write_text(lay.sensitivity_json(layer), json.dumps(r, indent=2) + "\n")

    return sensitivity_sweep(
        G,
        layers or sensitivity_layers(cfg),
        s["ratios"],
        metric,
        write,
        importance=s["importance"],
        seed=cfg["seed"],
        input_shape=family_of(G).counting_shape(G, side),
        include_full=True,
    )


def run_latency(cfg: dict, checkpoint: str, device: str, threads: int, out: str | None) -> dict:
    """Measure and write the latency table of the configured sweep's layers and ratios at the
    experiment's input size (:func:`unetprune.pruning.sensitivity.latency_table`)."""
    from ..checkpoint import generator_from_checkpoint
    from ..family import family_of
    from ..pipeline import sensitivity_layers
    from ..pruning.sensitivity import latency_table

    G = generator_from_checkpoint(checkpoint)
    shape = family_of(G).counting_shape(G, cfg["data"]["crop_size"])
    table = latency_table(
        G,
        sensitivity_layers(cfg),
        cfg["sensitivity"]["ratios"],
        shape,
        device,
        threads if device == "cpu" else None,
    )
    path = out or Layout.from_config(cfg).latency_table(device, table["threads"])
    atomic_write_text(path, json.dumps(table, indent=2) + "\n")
    print(
        f"latency table on {table['device_name']} ({device}, threads {table['threads']}): "
        f"full {table['full_ms']:.2f} ms; wrote {path}"
    )
    return table


def run(args) -> int:
    cfg = config_from_args(args)
    if args.latency:
        run_latency(cfg, args.checkpoint, args.latency, args.latency_threads, args.latency_out)
        return 0
    res = run_sweep(cfg, args.checkpoint, args.layer or None, args.out_dir, args.cache_dir)
    for layer, r in res.items():
        q = ", ".join(
            f"r={ratio:g}: FID {m['fid']:.2f}"
            + (f" ± {m['fid_std']:.2f}" if "fid_std" in m else "")
            + (" (collapsed)" if c else "")
            for ratio, m, c in zip(r["ratios"], r["metrics"], r.get("collapsed") or [None] * len(r["ratios"]))
        )
        print(f"{layer}: {q}")
    return 0
