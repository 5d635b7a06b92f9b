"""`unetprune export`: a checkpoint's generator as an ONNX model (thin adapter).

    unetprune export --checkpoint results/demo/original/checkpoint.pt --out model.onnx
    unetprune export --checkpoint CKPT --out model.onnx --opset 18 --input-size 64

The model runs in eval mode (BatchNorm running statistics, no dropout), has one named input per
forward argument of the generator (``input``; Wav2Lip: ``face`` and ``mel``) and one output
``output``, all with a dynamic batch axis; the opset is recorded in the file's metadata and
printed.  Before writing, ONNX Runtime's output is checked against PyTorch's on seeded random
inputs (max abs difference at most ``--tolerance``); the file is written atomically and never
over the checkpoint.
"""

from __future__ import annotations

import json


def register(sub) -> None:
    from ..export import DEFAULT_OPSET, DEFAULT_TOLERANCE

    p = sub.add_parser(
        "export",
        help="export a generator checkpoint to ONNX (dynamic batch, named inputs)",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("--checkpoint", required=True, help="generator checkpoint (.pt)")
    p.add_argument("--out", required=True, help="ONNX file to write (.onnx)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    p.add_argument(
        "--input-size",
        type=int,
        help="image side of the exported model (default: the checkpoint config's data.crop_size; "
        "a Wav2Lip generator always takes 96x96 faces)",
    )
    p.add_argument(
        "--tolerance",
        type=float,
        default=DEFAULT_TOLERANCE,
        help=f"largest accepted max abs difference ONNX Runtime vs PyTorch (default {DEFAULT_TOLERANCE:g})",
    )
    p.add_argument("--json", help="also write the export summary to this JSON file")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..checkpoint import CheckpointError
    from ..export import export_checkpoint
    from ..fileio import atomic_write_text, clashing_input

    if args.json:
        clash = clashing_input([args.json], [args.checkpoint, args.out])
        if clash is not None:
            raise CheckpointError(f"--json {clash[0]} is the input {clash[1]}: choose another --json")
    info = export_checkpoint(
        args.checkpoint, args.out, args.input_size, opset=args.opset, tolerance=args.tolerance
    )
    ins = ", ".join(f"{n} {tuple(s)}" for n, s in info["inputs"])
    print(
        f"exported {info['family'] or 'generator'} to {info['out']}: opset {info['opset']}, "
        f"inputs {ins}, output {info['output']} (-1 = dynamic batch); ONNX Runtime vs PyTorch "
        f"max abs diff {info['max_abs_diff']:.2e} at batch {info['check_batch']}"
    )
    if args.json:
        atomic_write_text(args.json, json.dumps(info, indent=2) + "\n")
    return 0
