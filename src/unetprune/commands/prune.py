"""`unetprune prune`: prune a checkpoint's generator with one strategy (thin adapter).

    unetprune prune --checkpoint IN.pt --strategy inner --ratio 0.75 --levels 5 6 7 8 --out OUT.pt
    unetprune prune --checkpoint IN.pt --strategy cut --k 2 --out OUT.pt
    unetprune prune --checkpoint W2L.pt --strategy cut --unit residual --levels 5 6 --out OUT.pt
    unetprune prune --checkpoint IN.pt --strategy global-uniform --match-params CUT.pt --out OUT.pt

Writes an ordinary generator checkpoint (fine-tune it with ``unetprune train --init-from``)
whose ``meta.pruning`` records the strategy, its parameters and the kept indices, and a
JSON summary (``--json``, default ``OUT.json`` next to the checkpoint) with the strategy,
ratio, layers, params, MACs in both conventions and widths.
"""

from __future__ import annotations

import json
from pathlib import Path


def register(sub) -> None:
    from ..pruning import IMPORTANCES, STRATEGIES

    p = sub.add_parser(
        "prune",
        help="prune a generator (single layer, inner, cut, global baselines)",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("--checkpoint", required=True, help="trained generator checkpoint")
    p.add_argument("--strategy", required=True, choices=STRATEGIES)
    p.add_argument("--layer", help="single: the layer to prune (down1..downN, up2..upN)")
    p.add_argument(
        "--levels",
        type=int,
        nargs="+",
        help="inner: levels to prune (default: the widest levels, 5-8 for unet_256)",
    )
    p.add_argument("--ratio", type=float, help="fraction of filters removed, in [0, 1)")
    p.add_argument("--k", type=int, help="cut: number of innermost levels to remove")
    p.add_argument(
        "--unit",
        choices=["levels", "residual"],
        default="levels",
        help="cut: levels = cut-k (default); residual = cut-res, remove the residual blocks of "
        "--levels (default the inner levels; Wav2Lip)",
    )
    p.add_argument("--threshold", type=float, help="global-threshold: importance threshold")
    p.add_argument("--importance", choices=IMPORTANCES, default="l1", help="filter importance (default l1)")
    import argparse

    from ..pruning import DEFAULT_MAX_LAYER_RATIO

    p.add_argument(
        "--normalize",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="global-threshold: divide each layer's scores by their mean (default); "
        "--no-normalize = the raw-score threshold (not layer-normalised)",
    )
    p.add_argument(
        "--max-layer-ratio",
        type=float,
        default=DEFAULT_MAX_LAYER_RATIO,
        help="global-threshold: most of a layer's filters that may be removed "
        f"(default {DEFAULT_MAX_LAYER_RATIO}; 1 = all but its best filter)",
    )
    m = p.add_mutually_exclusive_group()
    m.add_argument("--match-params", metavar="REF.pt", help="global-*: match REF's parameter count")
    m.add_argument("--match-macs", metavar="REF.pt", help="global-*: match REF's MACs")
    p.add_argument(
        "--macs-convention",
        choices=["physical", "output"],
        default="physical",
        help="MAC convention for --match-macs (default physical)",
    )
    p.add_argument("--tol", type=float, default=0.01, help="budget tolerance (default 0.01 = 1%%)")
    p.add_argument(
        "--input-size",
        type=int,
        help="image side for MAC counting (default: the config's data.crop_size, else 256; "
        "a Wav2Lip generator is always counted per 96x96 frame)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed for --importance random")
    p.add_argument("--out", required=True, help="pruned checkpoint to write")
    p.add_argument("--json", help="summary JSON (default: OUT with .json suffix)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..fileio import atomic_write_text
    from ..checkpoint import generator_from_checkpoint, load_checkpoint, save_generator
    from ..metrics.complexity import count_all
    from ..family import family_of
    from ..checkpoint import CheckpointError
    from ..fileio import clashing_input
    from ..pruning import prune

    out_json = Path(args.json) if args.json else Path(args.out).with_suffix(".json")
    inputs = [p for p in (args.checkpoint, args.match_params, args.match_macs) if p]
    clash = clashing_input([args.out, out_json], inputs)
    if clash is not None:
        raise CheckpointError(
            f"{clash[0]} is the input {clash[1]} (the same file, or a link to it): it would be "
            f"replaced; choose another --out/--json"
        )
    ckpt = load_checkpoint(args.checkpoint)
    g = generator_from_checkpoint(ckpt)
    cfg = ckpt.get("config") or {}
    side = args.input_size or (cfg.get("data") or {}).get("crop_size") or 256
    shape = family_of(g).counting_shape(g, int(side))
    side = shape[-1]

    kw = dict(
        ratio=args.ratio,
        layer=args.layer,
        levels=args.levels,
        k=args.k,
        importance=args.importance,
        seed=args.seed,
        normalize=args.normalize,
        threshold=args.threshold,
        input_shape=shape,
        tol=args.tol,
        max_layer_ratio=args.max_layer_ratio,
        unit=args.unit,
    )
    ref = args.match_params or args.match_macs
    if ref:
        ref_g = generator_from_checkpoint(ref)
        kw["match_model"] = ref_g
        kw["match_metric"] = "params" if args.match_params else f"macs_{args.macs_convention}"
    new, info = prune(g, args.strategy, **kw)
    if ref:
        info["budget"]["reference"] = str(ref)

    counts = count_all(new, shape)
    before = count_all(g, shape)
    summary = {
        "strategy": args.strategy,
        "source": str(args.checkpoint),
        "out": str(args.out),
        "ratio": info.get("ratio"),
        "layers": info.get("layers", []),
        "params": counts["params"],
        "macs_physical": counts["macs_physical"],
        "macs_output": counts["macs_output"],
        "input_shape": list(shape),
        "params_before": before["params"],
        "macs_physical_before": before["macs_physical"],
        "macs_output_before": before["macs_output"],
        "widths": info["widths"],
        "widths_before": info["widths_before"],
        "info": {k: v for k, v in info.items() if k != "kept"},
    }
    if "kept" in info:
        summary["kept"] = {
            k: {"n_before": v["n_before"], "n_kept": v["n_kept"]} for k, v in info["kept"].items()
        }
    meta = dict(ckpt.get("meta") or {})
    if "pruning" in meta:  # pruning an already pruned model: keep the earlier step
        meta["pruning_history"] = list(meta.get("pruning_history", [])) + [meta["pruning"]]
    meta["pruning"] = {
        **info,
        "source": str(args.checkpoint),
        "input_shape": list(shape),
        "macs_physical": counts["macs_physical"],
        "macs_output": counts["macs_output"],
    }
    save_generator(args.out, new, config=cfg, meta=meta)
    atomic_write_text(out_json, json.dumps(summary, indent=2) + "\n")
    print(
        f"{args.strategy}: params {before['params']:,} -> {counts['params']:,}, "
        f"MACs physical {before['macs_physical'] / 1e9:.3f} G -> {counts['macs_physical'] / 1e9:.3f} G, "
        f"output-based {before['macs_output'] / 1e9:.3f} G -> {counts['macs_output'] / 1e9:.3f} G "
        f"at {side}x{side}; wrote {args.out} and {out_json}"
    )
    return 0
