"""`unetprune prune`: prune a checkpoint's generator with one strategy (thin adapter).

    unetprune prune --checkpoint IN.pt --strategy inner --ratio 0.75 --levels 5 6 7 8 --out OUT.pt
    unetprune prune --checkpoint IN.pt --strategy cut --k 2 --out OUT.pt
    unetprune prune --checkpoint W2L.pt --strategy cut --unit residual --levels 5 6 --out OUT.pt
    unetprune prune --checkpoint IN.pt --strategy global-uniform --match-params CUT.pt --out OUT.pt
    unetprune prune --checkpoint IN.pt --strategy plan --sensitivity-dir SWEEP/ --target-params 0.5 --out OUT.pt
    unetprune prune --checkpoint IN.pt --strategy plan --sensitivity-dir SWEEP/ --match-macs CUT.pt --out OUT.pt
    unetprune prune --checkpoint IN.pt --strategy plan --sensitivity-dir SWEEP/ --target-latency-ms 20 \
        --latency-table SWEEP/latency-cpu-t1.json --out OUT.pt

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
    t = p.add_argument_group("plan (a budget instead of layers; docs/plan.md)")
    t.add_argument("--sensitivity-dir", help="plan: the folder of the sweep's <layer>.json results")
    t.add_argument(
        "--layers", nargs="+", help="plan: the swept layers to plan over (default: every <layer>.json there)"
    )
    t.add_argument(
        "--target-params", type=float, metavar="FRACTION", help="plan: parameters, a fraction of the original"
    )
    t.add_argument(
        "--target-macs",
        type=float,
        metavar="FRACTION",
        help="plan: MACs (--macs-convention), a fraction of the original",
    )
    t.add_argument(
        "--target-latency-ms",
        type=float,
        metavar="MS",
        help="plan: batch-1 latency in ms (needs --latency-table)",
    )
    t.add_argument("--latency-table", help="plan: the latency table of `unetprune sweep --latency DEVICE`")
    t.add_argument(
        "--verdict-metric",
        default="fid",
        help="plan: the metric whose summed degradation is minimised (default fid)",
    )
    t.add_argument(
        "--higher-is-better",
        action="store_true",
        help="plan: the verdict metric improves upwards (mIoU, PSNR, SSIM, LSE-C); default: lower is better",
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
    latency = None
    if args.strategy == "plan":
        latency = _plan_args(args, g, shape, kw)
    new, info = prune(g, args.strategy, **kw)
    if ref and "budget" in info:
        info["budget"]["reference"] = str(ref)
    if args.strategy == "plan":
        _record_plan(info, new, shape, latency, ref)

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


def _plan_args(args, g, shape, kw: dict) -> dict | None:
    """The plan's keyword arguments of :func:`unetprune.pruning.prune` from the flags: the sweep's
    results, the budget and, for a latency target, the latency table."""
    from ..pruning import PruningError, model_budget
    from ..pruning.sensitivity import load_sweep

    targets = [x for x in (args.target_params, args.target_macs, args.target_latency_ms) if x is not None]
    if len(targets) + bool(kw.get("match_model")) != 1:
        raise PruningError(
            "strategy plan needs exactly one budget: --target-params, --target-macs, --target-latency-ms, "
            "--match-params or --match-macs"
        )
    if not args.sensitivity_dir:
        raise PruningError("strategy plan needs --sensitivity-dir (the folder of the sweep's <layer>.json)")
    folder = Path(args.sensitivity_dir)
    layers = args.layers or sorted(p.stem for p in folder.glob("*.json") if not p.stem.startswith("latency-"))
    kw["sweep"] = load_sweep(folder, layers)
    kw["verdict_metric"] = args.verdict_metric
    kw["higher_is_better"] = args.higher_is_better
    for name, frac in (("--target-params", args.target_params), ("--target-macs", args.target_macs)):
        if frac is not None and not 0 < frac <= 1:
            raise PruningError(f"{name} is a fraction of the original in (0, 1], got {frac}")
    if args.target_params is not None:
        kw["match_metric"] = "params"
        kw["match_target"] = args.target_params * model_budget(g, "params", shape)
    elif args.target_macs is not None:
        kw["match_metric"] = f"macs_{args.macs_convention}"
        kw["match_target"] = args.target_macs * model_budget(g, kw["match_metric"], shape)
    elif args.target_latency_ms is not None:
        if not args.latency_table:
            raise PruningError(
                "--target-latency-ms needs --latency-table (made by `unetprune sweep --latency DEVICE`)"
            )
        try:
            table = json.loads(Path(args.latency_table).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise PruningError(f"cannot read the latency table {args.latency_table} ({e})") from e
        if [int(s) for s in table.get("input_shape", [])] != [int(s) for s in shape]:
            raise PruningError(
                f"the latency table {args.latency_table} was measured at input {table.get('input_shape')}, "
                f"this plan counts at {list(shape)}; rebuild it at the experiment's input size"
            )
        kw["match_metric"] = "latency_ms"
        kw["match_target"] = args.target_latency_ms
        kw["latency"] = table
        return table
    return None


def _record_plan(info: dict, new, shape, latency: dict | None, ref) -> None:
    """The plan's measured cost on the pruned model beside its prediction (for a latency plan:
    measured on the table's device at its threads)."""
    from ..pruning import model_budget

    plan = info["plan"]
    if ref:
        plan["reference"] = str(ref)
    if latency is None:
        achieved = model_budget(new, plan["metric"], shape)
        plan["achieved"] = int(achieved)
        plan["rel_error"] = (achieved - plan["target"]) / plan["target"]
        return
    from ..metrics.complexity import measure_latency

    lat = measure_latency(
        new, list(shape), latency["device"], threads=latency["threads"], iters=latency.get("iters", 20)
    )  # the table's statistic: the fastest run
    plan["latency"] = {
        "device": latency["device"],
        "device_name": latency["device_name"],
        "threads": latency["threads"],
        "predicted_ms": plan["measured"],
        "measured_ms": lat[latency.get("statistic", "min_ms")],
        "full_ms_table": latency["full_ms"],
    }
