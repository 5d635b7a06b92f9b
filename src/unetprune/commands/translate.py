"""`unetprune translate`: run a checkpoint's generator on a folder of images."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("translate", help="write generated images for a folder of inputs")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--input", required=True, help="folder of input images (plain or aligned A|B)")
    p.add_argument("--output", required=True, help="folder for the generated PNGs")
    p.add_argument(
        "--mode",
        choices=["train_bn", "eval"],
        default="train_bn",
        help="BatchNorm/dropout mode (train_bn = the pix2pix reference)",
    )
    p.add_argument("--direction", choices=["AtoB", "BtoA"], help="for aligned inputs (default: checkpoint's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..translate import translate_folder

    files = translate_folder(
        args.checkpoint,
        args.input,
        args.output,
        mode=args.mode,
        direction=args.direction,
        seed=args.seed,
        device=args.device,
    )
    print(f"wrote {len(files)} images to {args.output}")
    return 0
