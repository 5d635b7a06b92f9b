"""`unetprune sample-video`: one test clip through every model of a Wav2Lip experiment, side by side.

    unetprune sample-video --config results/wav2lip-demo/config.yaml [--stage finetuned] [--results DIR]

Writes ``figures/samples.mp4`` (with the clip's audio) and ``figures/samples_video.png``
(:mod:`unetprune.families.wav2lip.video`).
"""

from __future__ import annotations

from ....layout import DEFAULT_BASE
from ....commands._common import add_config_args, config_from_args, positive_int


def register(sub) -> None:
    p = sub.add_parser(
        "sample-video",
        help="Wav2Lip: a test clip through every model, side by side (mp4 + PNG)",
        description=__doc__.split("\n\n")[0],
    )
    add_config_args(p)
    p.add_argument(
        "--stage",
        choices=["pruned", "finetuned"],
        default=None,
        help="the variants' stage (default: the last stage of the experiment)",
    )
    p.add_argument("--results", default=str(DEFAULT_BASE), help=f"results folder (default {DEFAULT_BASE})")
    p.add_argument(
        "--max-frames",
        type=positive_int,
        default=125,
        help="at most this many frames of the clip (default 125)",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from ....pipeline import final_stage
    from ..video import sample_video

    cfg = config_from_args(args)
    out = sample_video(cfg, args.stage or final_stage(cfg), args.results, max_frames=args.max_frames)
    print(
        f"{out['video']} and {out['grid']}: clip {out['clip']}, {out['frames']} frames, {out['models']} models"
    )
    return 0
