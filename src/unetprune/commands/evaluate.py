"""`unetprune evaluate`: score one checkpoint on one split and write one JSON."""

from __future__ import annotations

import json
import sys

from ._common import positive_int


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="FID/KID, segmentation mIoU, L1/PSNR/SSIM and params/MACs of a checkpoint",
        description="Score a generator checkpoint on one split and write everything to one JSON. "
        "Without --config the checkpoint's own config is used; --set overrides keys "
        "(e.g. --set evaluate.fid_backend=standin --set evaluate.max_images=16).",
    )
    p.add_argument("--checkpoint", required=True, help="generator checkpoint (.pt) to score")
    p.add_argument(
        "--split", default="test", choices=["train", "val", "test"], help="dataset split (default test)"
    )
    p.add_argument(
        "--config", default=None, help="experiment YAML (default: the config stored in the checkpoint)"
    )
    p.add_argument("--out", default=None, help="JSON file to write (default: print to stdout)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override, repeatable (evaluate.mode=eval, evaluate.device=cpu, ...)",
    )
    p.add_argument(
        "--cache-dir",
        default=None,
        help="folder of cached real-image FID statistics and stand-in weights "
        "(default: the experiment's fid_stats/)",
    )
    p.add_argument(
        "--data-root", default=None, help="dataset folder (default: data.root or the experiment's data/)"
    )
    p.add_argument("--no-latency", action="store_true", help="skip the latency measurement")
    p.add_argument(
        "--latency-threads",
        type=positive_int,
        default=None,
        metavar="N",
        help="CPU threads of the latency timings (default: the threads the scoring runs on, "
        "OMP_NUM_THREADS); the workflow times every model at workflow.eval_threads",
    )
    p.add_argument(
        "--onnx",
        default=None,
        metavar="FILE",
        help="time this ONNX file of the checkpoint (its `unetprune export`) in ONNX Runtime instead "
        "of exporting the generator again",
    )
    p.add_argument(
        "--no-ort", action="store_true", help="skip the ONNX Runtime latency (PyTorch's is still measured)"
    )
    p.add_argument(
        "--sanity",
        action="store_true",
        help="also score the family's trivial generators (copy the input, ...: the sanity gate)",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from ..evaluate import DEFAULT_CACHE_DIR, evaluate_checkpoint

    result = evaluate_checkpoint(
        args.checkpoint,
        args.config,
        args.split,
        args.out,
        overrides=args.overrides,
        cache_dir=args.cache_dir or DEFAULT_CACHE_DIR,
        data_root=args.data_root,
        latency=not args.no_latency,
        sanity=args.sanity,
        ort=not args.no_ort,
        onnx_file=args.onnx,
        latency_threads=args.latency_threads,
    )
    fid = result["fid"]
    seg = result.get("segmentation") or {}
    line = (
        f"{args.split}: FID {fid['value']:.3f} ({fid['backend']}, {fid['n_images']} images "
        f"{fid['image_size']}px), PSNR {result['psnr']:.2f} dB, SSIM {result['ssim']:.4f}"
    )
    if seg.get("miou") is not None:
        line += f", mIoU {seg['miou']:.4f} ({seg['name']})"
    if args.out is None:
        json.dump(result, sys.stdout, indent=2)
        print()
    else:
        print(f"{line} -> {args.out}", file=sys.stderr)
    return 0
