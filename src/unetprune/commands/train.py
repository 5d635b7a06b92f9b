"""`unetprune train`: the trainer of the config's model family (baseline, or fine-tuning with
--init-from); `--expert` trains the model family's lip-sync expert instead (``train.target: expert``,
the family ``<model.family>-expert``)."""

from __future__ import annotations

from ._common import add_config_args, config_from_args


def register(sub) -> None:
    p = sub.add_parser(
        "train", help="train a generator (or fine-tune a pruned one; --expert: Wav2Lip's lip-sync expert)"
    )
    add_config_args(p)
    p.add_argument("--out", required=True, help="run folder: checkpoint.pt, train.json, samples.png")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt if present")
    p.add_argument(
        "--init-from", help="start G (and D, if present) from this checkpoint, e.g. a pruned model"
    )
    p.add_argument(
        "--init-discriminator-from", help="start D from this trainer checkpoint (e.g. the baseline's)"
    )
    p.add_argument(
        "--finetune",
        action="store_true",
        help="use the config's finetune section (epochs, lr) instead of train's schedule",
    )
    p.add_argument(
        "--expert",
        action="store_true",
        help="train the family's lip-sync expert (train.target=expert, train.expert's epochs, batch, "
        "lr; Wav2Lip: a generator config names its checkpoint as model.wav2lip.expert_checkpoint)",
    )
    p.add_argument(
        "--distill-from",
        help="distil from this teacher checkpoint (the unpruned original) with finetune.distill's "
        "weight and features: frozen teacher, learned 1x1 adapters where widths differ",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars (one line per epoch instead)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..config import validate
    from ..train import expert_config, finetune_config, train

    cfg = config_from_args(args)
    if args.finetune:
        cfg = validate(finetune_config(cfg))
    if args.expert:
        cfg = validate(expert_config(cfg))
    log = train(
        cfg,
        args.out,
        resume=args.resume,
        init_from=args.init_from,
        progress=not args.quiet,
        init_discriminator_from=args.init_discriminator_from,
        log_epochs=args.quiet,
        distill_from=args.distill_from,
    )
    ev = log.get("eval", {})
    if "l1_final" in ev:
        what = "sync loss" if cfg["train"]["target"] == "expert" else "L1"
        print(
            f"{args.out}: {ev['split']} {what} {ev['l1_init']:.4f} at start -> {ev['l1_final']:.4f} after training"
        )
    return 0
