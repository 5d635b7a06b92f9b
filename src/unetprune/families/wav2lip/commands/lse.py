"""LSE-D / LSE-C commands.

    unetprune train-lse-standin --data DIR --out FILE [--steps 600 --blur 4.7 --batch 16 --negatives 10 --lr 1e-3
                                --seed 0 --threads N]
    unetprune lse --backend standin|standard --weights FILE (--data DIR [--split test] | --video MP4 ...)
                  [--out RESULT.json] [--max-seconds 600] [--max-frames 30000] [--max-pixels 8294400]

``--data`` is a preprocessed talking-face folder (or the `unetprune demo-talking` folder);
``--video`` scores mp4 files (faces detected and cropped as the preprocessing does).  The
result (per clip and averaged, with the backend and the weights' sha256) is printed as JSON
and written to ``--out`` when given.  Each ``--video`` is probed against the media limits
(``--max-*``) before anything is decoded (or torch imported), and decoded within the same
limits (its frames resampled to 25 fps count against ``--max-frames``); an ``--out`` that is (or leads through a link
to) one of the command's inputs (the weights, a video, a file of ``--data``) is refused.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ....commands._common import add_media_limit_args, learning_rate, media_limits, positive_int


def register(sub) -> None:
    p = sub.add_parser(
        "train-lse-standin", help="train the offline stand-in LSE network S on a talking-face training split"
    )
    p.add_argument(
        "--data", required=True, help="preprocessed talking-face folder (or the demo-talking folder)"
    )
    p.add_argument("--out", required=True, help="checkpoint file to write")
    p.add_argument("--split", default="train")
    p.add_argument("--steps", type=positive_int, default=600)
    p.add_argument(
        "--blur",
        type=float,
        default=4.7,
        help="largest Gaussian blur sigma (pixels of the 224 px crop) of the blurred training copies; 0 = none",
    )
    p.add_argument("--batch", type=positive_int, default=16, help="windows per step (>= 1)")
    p.add_argument(
        "--negatives", type=positive_int, default=10, help="off-sync audio windows per video window"
    )
    p.add_argument("--lr", type=learning_rate, default=1e-3, help="Adam learning rate, in (0, 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run_train)

    q = sub.add_parser("lse", help="LSE-D / LSE-C / offset of talking-face clips (syncnet_python protocol)")
    q.add_argument(
        "--backend",
        choices=["standin", "standard"],
        default="standin",
        help="standin (train-lse-standin checkpoint) or standard (syncnet_v2.model)",
    )
    q.add_argument("--weights", required=True, help="stand-in checkpoint or syncnet_v2.model")
    src = q.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="preprocessed talking-face folder (clips of --split)")
    src.add_argument("--video", nargs="+", help="mp4 files to score (their own audio)")
    q.add_argument("--split", default="test")
    q.add_argument("--device", default="cpu")
    q.add_argument("--out", help="write the result JSON here (not one of the inputs)")
    add_media_limit_args(q)
    q.set_defaults(func=run_lse)


def refuse_replacing_inputs(out: str | None, files=(), folders=()) -> None:
    """Raise a one-line error when writing ``out`` would replace one of ``files`` or a file
    inside one of ``folders`` (the same file, through a link, or a hard link)."""
    from ....errors import UserFacingError
    from ....fileio import clashing_input

    if out is None:
        return
    inputs = [Path(f) for f in files]
    o = Path(out).resolve()
    for d in map(Path, folders):
        if d.is_dir() and (o == d.resolve() or d.resolve() in o.parents) and o.exists():
            inputs.append(o)  # an existing file of an input folder
    clash = clashing_input([Path(out)], inputs)
    if clash is not None:
        raise UserFacingError(
            f"--out {out} is the input {clash[1]} (the same file, or a link to it): it would be "
            f"replaced; choose another output file"
        )


def run_train(args) -> int:
    refuse_replacing_inputs(args.out, folders=[args.data])
    from ..lse import train_lse_standin

    info = train_lse_standin(
        args.data,
        args.out,
        steps=args.steps,
        batch=args.batch,
        negatives=args.negatives,
        lr=args.lr,
        seed=args.seed,
        threads=args.threads,
        split=args.split,
        blur=args.blur,
        progress=not args.no_progress,
        log=lambda m: print(m, file=sys.stderr, flush=True),
    )
    print(
        f"wrote {args.out}: stand-in S, {info['steps']} steps on {info['n_clips_used']} {info['split']} clips, "
        f"final accuracy {info['final_accuracy']:.2f} (chance {info['chance_accuracy']:.2f}), "
        f"{info['seconds']:.0f} s; sha256 {info['weights_sha256'][:12]}"
    )
    return 0


def run_lse(args) -> int:
    from ....data.media import probe

    refuse_replacing_inputs(
        args.out, files=[args.weights, *(args.video or [])], folders=[args.data] if args.data else []
    )
    limits = media_limits(args)
    for v in args.video or []:
        probe(v, require_video=True, require_audio=True, limits=limits)
    from ....fileio import atomic_write_text
    from ..lse import LSEScorer, aggregate, evaluate_clips, public, split_clips

    scorer = LSEScorer.load(args.backend, args.weights, device=args.device)
    if args.data:
        root, clips = split_clips(args.data, args.split)
        res = evaluate_clips(scorer, [root / c for c in clips], clips)
        res["split"] = args.split
    else:
        per = [public(scorer.score_video(v, limits=limits)) for v in args.video]
        res = {**aggregate(per), **scorer.describe(), "clips": per}
    text = json.dumps(res, indent=1)
    if args.out:
        atomic_write_text(Path(args.out), text)
    print(text)
    print(
        f"LSE-D {res['lse_d']:.3f}  LSE-C {res['lse_c']:.3f}  mean |offset| {res['abs_offset']:.2f}  "
        f"({res['n_clips']} clips, backend {res['backend']})",
        file=sys.stderr,
    )
    return 0
