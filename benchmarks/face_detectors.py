"""Face detectors side by side on real faces: detection rate, false detections and frames/s.

    python benchmarks/face_detectors.py [--s3fd-weights s3fd.pth] [--repeat 3]

The frames (all offline, from packages' sample data):

* ``lfw-faces``: the 100 face images of scikit-image's ``lfw_subset`` (Labeled Faces in the Wild,
  25 x 25 grey), upscaled 6x (150 px, bilinear) and placed at a seeded position in a 320 x 240
  frame of seeded grey noise; a detection counts when its box contains the face's centre;
* ``lfw-nonfaces``: the subset's 100 non-face patches, framed the same way; any box counts as a
  false detection;
* ``photos``: scikit-image's ``astronaut`` and matplotlib's ``grace_hopper`` (colour portraits),
  each at 5 scales (face height 60 to 200 px) and 4 brightness levels in a 480 x 360 frame.

Detectors: OpenCV's Haar cascade (the default), the built-in S3FD with ``--s3fd-weights``
(the reference ``s3fd.pth``), and MediaPipe's BlazeFace (``mp.solutions``, whose model older
``mediapipe`` wheels shipped) when that is importable.  ``--s3fd-weights seeded`` times S3FD's
network forward alone with seeded random weights (``s3fd-net-seeded``; the same convolutions
as with the reference weights, but random weights find no faces, so its detection columns are
``n/a``, and the decoding is left out because random scores would flood the non-maximum
suppression with candidates the real weights never give).  Frames/s are on this machine's CPU
with the thread count given (``--threads``), every detector in this one run, timed on the same
frames (``--speed-frames N``: N evenly spaced frames of all sets, default all).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def _place(
    img: np.ndarray, size: tuple[int, int], rng, scale: float
) -> tuple[np.ndarray, tuple[float, float]]:
    """``img`` (RGB) resized by ``scale`` at a seeded position in a noise frame (W, H); its centre."""
    import cv2

    w, h = size
    im = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    im = im[:h, :w]
    frame = rng.integers(90, 166, (h, w, 1), dtype=np.uint8).repeat(3, axis=2)
    y = int(rng.integers(0, h - im.shape[0] + 1))
    x = int(rng.integers(0, w - im.shape[1] + 1))
    frame[y : y + im.shape[0], x : x + im.shape[1]] = im
    return frame, (x, y)


def frames() -> dict[str, tuple[list[np.ndarray], list[tuple[float, float] | None]]]:
    import cv2
    from skimage import data as skdata

    rng = np.random.default_rng(0)
    lfw = np.asarray(skdata.lfw_subset())  # (200, 25, 25) float in [0, 1]: 100 faces, 100 non-faces
    sets: dict[str, tuple[list, list]] = {"lfw-faces": ([], []), "lfw-nonfaces": ([], [])}
    for i, patch in enumerate(lfw):
        rgb = np.repeat((patch * 255).astype(np.uint8)[..., None], 3, axis=2)
        frame, (x, y) = _place(rgb, (320, 240), rng, 6.0)
        key = "lfw-faces" if i < 100 else "lfw-nonfaces"
        sets[key][0].append(frame)
        sets[key][1].append((x + 75.0, y + 75.0) if i < 100 else None)
    photos: tuple[list, list] = ([], [])
    portraits = [(skdata.astronaut(), (177 + 47, 66 + 47), 95)]  # face box centre, face height (px)
    try:
        from matplotlib import cbook

        with cbook.get_sample_data("grace_hopper.jpg") as f:
            hopper = cv2.cvtColor(
                cv2.imdecode(np.frombuffer(f.read(), np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB
            )
        portraits.append((hopper, (255, 190), 200))
    except Exception:  # noqa: BLE001 — matplotlib's sample data is optional here
        pass
    for img, (cx, cy), face_h in portraits:
        for target in (60, 90, 120, 160, 200):
            s = target / face_h
            for gain in (0.6, 0.8, 1.0, 1.2):
                im = np.clip(img.astype(np.float32) * gain, 0, 255).astype(np.uint8)
                frame, (x, y) = _place(im, (480, 360), rng, s)
                centre = (x + cx * s, y + cy * s)
                if 0 <= centre[0] < 480 and 0 <= centre[1] < 360:
                    photos[0].append(frame)
                    photos[1].append(centre)
    sets["photos"] = photos
    return sets


class _NetworkOnly:
    """S3FD's network forward on each frame (mean subtracted as the detector does), no decoding;
    ``detect`` returns no box (the frames/s of the convolutions only)."""

    def __init__(self, net):
        self.net = net.eval()

    def detect(self, frames):
        import torch

        from unetprune.families.wav2lip.s3fd import MEAN

        mean = torch.tensor(MEAN).view(1, 3, 1, 1)
        with torch.no_grad():
            for f in np.asarray(frames):
                x = torch.from_numpy(np.ascontiguousarray(f[None])).permute(0, 3, 1, 2).float() - mean
                self.net(x)
        return [None] * len(frames)


def _detectors(s3fd_weights: str | None):
    from unetprune.families.wav2lip.faces import HaarDetector

    out = {"haar": HaarDetector()}
    if s3fd_weights:
        from unetprune.families.wav2lip.s3fd import S3FDDetector, S3FDNet

        if s3fd_weights == "seeded":  # speed only: seeded weights find no real faces
            import torch

            torch.manual_seed(0)
            out["s3fd-net-seeded"] = _NetworkOnly(S3FDNet())
        else:
            out["s3fd"] = S3FDDetector(s3fd_weights, device="cpu", batch_size=4)
    try:
        import mediapipe as mp

        class BlazeFace:
            name = "mediapipe-blazeface-short"

            def __init__(self):
                self.fd = mp.solutions.face_detection.FaceDetection(
                    model_selection=0, min_detection_confidence=0.5
                )

            def detect(self, frames):
                res = []
                for fr in frames:
                    r = self.fd.process(np.ascontiguousarray(fr))
                    if not r.detections:
                        res.append(None)
                        continue
                    b = r.detections[0].location_data.relative_bounding_box
                    h, w = fr.shape[:2]
                    res.append(
                        (
                            int(b.xmin * w),
                            int(b.ymin * h),
                            int((b.xmin + b.width) * w),
                            int((b.ymin + b.height) * h),
                        )
                    )
                return res

        out["mediapipe"] = BlazeFace()
    except Exception as e:  # noqa: BLE001 — not installed or no bundled model: reported, not measured
        print(f"mediapipe: not measured ({type(e).__name__}: {str(e)[:80]})")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--s3fd-weights", help="the reference s3fd.pth (adds the built-in S3FD); 'seeded': frames/s only"
    )
    ap.add_argument("--repeat", type=int, default=3, help="timed passes (the best is kept)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--speed-frames", type=int, default=0, help="time on N evenly spaced frames of all sets (0: all)"
    )
    args = ap.parse_args()
    import cv2
    import torch

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    sets = frames()
    dets = _detectors(args.s3fd_weights)
    every = [f for fr, _c in sets.values() for f in fr]
    if 0 < args.speed_frames < len(every):
        timed = [every[int(i)] for i in np.linspace(0, len(every) - 1, args.speed_frames)]
    else:
        timed = every
    rows = {}
    for name, det in dets.items():
        r = {}
        best = float("inf")
        for key, (fr, centres) in sets.items():
            if isinstance(det, _NetworkOnly):
                r[key] = None  # random weights: no detection rate
                continue
            boxes = det.detect(np.stack(fr)) if key != "photos" else [det.detect(f[None])[0] for f in fr]
            if centres[0] is None:
                r[key] = sum(b is not None for b in boxes) / len(boxes)
            else:
                hit = [
                    b is not None and b[0] <= c[0] <= b[2] and b[1] <= c[1] <= b[3]
                    for b, c in zip(boxes, centres)
                ]
                r[key] = sum(hit) / len(hit)
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            for f in timed:
                det.detect(f[None])
            best = min(best, time.perf_counter() - t0)
        r["fps"] = len(timed) / best
        rows[name] = r
    print(
        f"{len(every)} frames: "
        + ", ".join(f"{k} {len(v[0])}" for k, v in sets.items())
        + f"; timed on {len(timed)} frames, best of {args.repeat}, {args.threads} threads"
    )
    print(
        f"{'detector':<16} {'faces found (lfw)':>18} {'faces found (photos)':>21} {'false (non-faces)':>18} {'frames/s':>9} {'x haar':>7}"
    )

    def pct(v):
        return "n/a" if v is None else f"{v:.1%}"

    for name, r in rows.items():
        print(
            f"{name:<16} {pct(r['lfw-faces']):>18} {pct(r['photos']):>21} {pct(r['lfw-nonfaces']):>18} "
            f"{r['fps']:>9.2f} {r['fps'] / rows['haar']['fps']:>7.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
