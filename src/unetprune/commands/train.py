"""`unetprune train`: the pix2pix trainer (baseline, or fine-tuning with --init-from)."""

from __future__ import annotations

from ._common import add_config_args, config_from_args


def register(sub) -> None:
    p = sub.add_parser("train", help="train a pix2pix generator (or fine-tune a pruned one)")
    add_config_args(p)
    p.add_argument("--out", required=True, help="run folder: checkpoint.pt, train.json, samples.png")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt if present")
    p.add_argument("--init-from", help="start G (and D, if present) from this checkpoint, e.g. a pruned model")
    p.add_argument("--init-discriminator-from", help="start D from this trainer checkpoint (e.g. the baseline's)")
    p.add_argument("--finetune", action="store_true",
                   help="use the config's finetune section (epochs, lr) instead of train's schedule")
    p.add_argument("--quiet", action="store_true", help="no progress bars (one line per epoch instead)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..train import finetune_config, train

    cfg = config_from_args(args)
    if args.finetune:
        cfg = finetune_config(cfg)
    log = train(cfg, args.out, resume=args.resume, init_from=args.init_from, progress=not args.quiet,
                init_discriminator_from=args.init_discriminator_from, log_epochs=args.quiet)
    ev = log.get("eval", {})
    if "l1_final" in ev:
        print(f"{args.out}: {ev['split']} L1 {ev['l1_init']:.4f} at start -> {ev['l1_final']:.4f} after training")
    return 0
