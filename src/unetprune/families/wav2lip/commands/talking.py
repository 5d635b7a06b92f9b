"""Talking-face (Wav2Lip) data commands.

    unetprune demo-talking --out DIR [--train N --val N --test N --side PX --seed S --force]
    unetprune data preprocess-lrs2 --root RAW --out DIR [--detector haar|s3fd|module:factory] [--reference]
                                   [--detector-weights FILE] [--pads T B L R] [--smooth-t T | --nosmooth]
                                   [--max-seconds S --max-frames N --max-pixels P]

``preprocess-lrs2`` is attached to the ``data`` command's actions (registered by
``unetprune.commands.data``); if that command is absent it is registered as a top-level
``preprocess-lrs2``.  Both print a one-line summary; a clip that could not be processed is
named with the reason and skipped (exit status 0 while at least one clip was processed).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ....commands._common import add_media_limit_args, media_limits


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _data_actions(sub) -> argparse._SubParsersAction | None:
    data = sub.choices.get("data") if hasattr(sub, "choices") else None
    if data is None:
        return None
    for action in data._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def register(sub) -> None:
    p = sub.add_parser(
        "demo-talking",
        help="build the offline talking-face demo set (espeak-ng speech, animated face photos)",
    )
    p.add_argument(
        "--out", required=True, help="output folder (raw/ LRS2 layout, preprocessed/, demo_talking.json)"
    )
    p.add_argument("--train", type=int, default=12, help="training clips (default 12)")
    p.add_argument("--val", type=int, default=2, help="validation clips (default 2)")
    p.add_argument("--test", type=int, default=4, help="test clips (default 4)")
    p.add_argument("--side", type=int, default=160, help="frame side in pixels (even; default 160)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="rebuild even if an identical build exists")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_demo)

    actions = _data_actions(sub)
    if actions is not None:
        q = actions.add_parser(
            "preprocess-lrs2",
            help="face crops + 16 kHz audio from LRS2-layout videos "
            "(the reference Wav2Lip preprocessed layout; resumable)",
        )
    else:
        q = sub.add_parser("preprocess-lrs2", help="face crops + 16 kHz audio from LRS2-layout videos")
    q.add_argument(
        "--root", required=True, help="folder of <speaker>/<clip>.mp4 (+ train.txt/val.txt/test.txt)"
    )
    q.add_argument("--out", required=True, help="preprocessed folder to create or complete")
    q.add_argument(
        "--detector",
        default="haar",
        help="'haar' (OpenCV, default), 's3fd' (with --detector-weights s3fd.pth) or module:factory "
        "returning an object with detect(frames)",
    )
    q.add_argument("--detector-weights", help="passed to the detector factory (e.g. s3fd.pth)")
    q.add_argument(
        "--pads",
        type=int,
        nargs=4,
        default=[0, 10, 0, 0],
        metavar=("TOP", "BOTTOM", "LEFT", "RIGHT"),
        help="box padding in pixels (reference default 0 10 0 0)",
    )
    q.add_argument("--smooth-t", type=int, default=5, help="moving-average window of the boxes (default 5)")
    q.add_argument("--nosmooth", action="store_true", help="no temporal smoothing of the boxes")
    q.add_argument(
        "--min-face-fraction",
        type=float,
        default=0.5,
        help="skip a clip with faces in fewer of its frames (default 0.5)",
    )
    q.add_argument(
        "--reference",
        action="store_true",
        help="write what the reference preprocess.py writes: the detector's raw boxes (no padding or "
        "smoothing), no file for a frame without a face (use with --detector s3fd)",
    )
    q.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_media_limit_args(q)
    q.set_defaults(func=run_preprocess)


def run_demo(args) -> int:
    from ..demo import build_talking_demo

    man = build_talking_demo(
        Path(args.out),
        n_train=args.train,
        n_val=args.val,
        n_test=args.test,
        side=args.side,
        seed=args.seed,
        force=args.force,
        progress=not args.no_progress,
        log=_log,
    )
    counts = man["preprocess"]["counts"]
    secs = man["seconds"]
    print(
        f"talking-face demo at {args.out}: "
        + ", ".join(f"{k} {v}" for k, v in counts.items())
        + f" clips ({secs['synthesize_animate_encode']:.0f} s to make, {secs['preprocess']:.0f} s to preprocess)"
    )
    return 0


def run_preprocess(args) -> int:
    from ....data.aligned import DataError
    from ..faces import load_detector
    from ..lrs2 import preprocess_lrs2

    det = load_detector(args.detector, args.detector_weights)
    s = preprocess_lrs2(
        Path(args.root),
        Path(args.out),
        detector=det,
        pads=args.pads,
        smooth_T=1 if args.nosmooth else args.smooth_t,
        min_face_fraction=args.min_face_fraction,
        progress=not args.no_progress,
        log=_log,
        limits=media_limits(args),
        reference=args.reference,
    )
    done, old, failed = len(s["processed"]), len(s["already_done"]), s["failed"]
    print(
        f"preprocessed {done} clips into {args.out} ({old} already done, {len(failed)} skipped"
        + (": " + "; ".join(failed) if failed else "")
        + ")"
    )
    if done + old == 0:
        raise DataError(f"{args.root}: no clip could be preprocessed (see the reasons above)")
    return 0
