"""`unetprune lipsync`: lip-sync a face video or image to an audio track with a Wav2Lip generator.

unetprune lipsync --checkpoint G.pt --face VIDEO_OR_IMAGE --audio AUDIO_OR_VIDEO --out OUT.mp4
                  [--batch-size 32] [--device cpu|cuda] [--detector haar|module:factory]
                  [--detector-weights FILE] [--pads T B L R] [--nosmooth] [--paste lower|face]
                  [--max-seconds 600] [--max-frames 30000] [--max-pixels 8294400]
                  [--onnx MODEL.onnx] [--stats]

Inputs over the media limits are refused before they are decoded, and before torch or a
model family is imported (the command is declared in the ``unetprune.commands`` entry
points); ``--out`` must not be one of the inputs (or a link to one).  ``--stats`` prints
frames/s per stage (decode, detect, mel, generate, paste, encode) and end to end.
"""

from __future__ import annotations

import json
import sys

from ....commands._common import add_media_limit_args, media_limits, positive_int


def register(sub) -> None:
    p = sub.add_parser(
        "lipsync", help="lip-sync a face video/image to speech with a Wav2Lip generator (mp4 out)"
    )
    p.add_argument(
        "--checkpoint",
        required=True,
        help="a Wav2Lip generator: a unetprune checkpoint, or a released wav2lip_gan.pth / wav2lip.pth "
        "(read with weights_only=True and converted on the fly, which is said on stderr)",
    )
    p.add_argument("--face", required=True, help="video or still image with a face")
    p.add_argument("--audio", required=True, help="WAV file, or any media file with an audio stream")
    p.add_argument("--out", required=True, help="output mp4 (H.264 + AAC; not one of the inputs)")
    p.add_argument("--batch-size", type=positive_int, default=32, help="frames per generator call (>= 1)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--detector", default="haar", help="'haar' (OpenCV, default) or module:factory")
    p.add_argument("--detector-weights", help="passed to the detector factory (e.g. s3fd.pth)")
    p.add_argument(
        "--pads",
        type=int,
        nargs=4,
        default=[0, 10, 0, 0],
        metavar=("TOP", "BOTTOM", "LEFT", "RIGHT"),
        help="box padding in pixels (reference default 0 10 0 0)",
    )
    p.add_argument("--nosmooth", action="store_true", help="no temporal smoothing of the face boxes")
    p.add_argument(
        "--paste",
        choices=["lower", "face"],
        default="lower",
        help="paste back the generated lower half (default) or the whole face box (reference)",
    )
    p.add_argument("--onnx", help="run the generator through ONNX Runtime from this export of the checkpoint")
    p.add_argument("--stats", action="store_true", help="print frames/s per stage and end to end")
    p.add_argument("--no-progress", action="store_true")
    add_media_limit_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    import tempfile

    from ..lipsync import check_inputs, format_stats, lipsync

    limits = media_limits(args)
    # refuse what the headers already refuse before torch and the detector are imported
    check_inputs(args.checkpoint, args.face, args.audio, args.out, batch_size=args.batch_size, limits=limits)
    from ..faces import load_detector

    from ..released import lipsync_checkpoint

    det = load_detector(args.detector, args.detector_weights)
    # a released wav2lip.pth / wav2lip_gan.pth is converted (into a folder removed on exit)
    workdir = tempfile.TemporaryDirectory(prefix="unetprune-lipsync-")
    checkpoint = lipsync_checkpoint(args.checkpoint, workdir.name, log=lambda m: print(m, file=sys.stderr))
    s = lipsync(
        checkpoint,
        args.face,
        args.audio,
        args.out,
        batch_size=args.batch_size,
        device=args.device,
        detector=det,
        pads=tuple(args.pads),
        smooth=not args.nosmooth,
        paste=args.paste,
        progress=not args.no_progress,
        limits=limits,
        onnx=args.onnx,
    )
    print(
        f"wrote {s['out']}: {s['frames']} frames at {s['fps']} fps ({s['mp4_seconds']:.2f} s; audio "
        f"{s['audio_seconds']:.2f} s) in {s['seconds']:.1f} s",
        file=sys.stderr,
    )
    if args.stats:
        print(format_stats({**s, "fps": s["frames_per_second"]}), file=sys.stderr)
    print(json.dumps(s))
    return 0
