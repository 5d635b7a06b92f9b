"""Face detection and the face-box pipeline of the reference ``inference.py``: detect, fill
frames without a face, pad, smooth over time (:func:`track_faces`, the one pipeline the
preprocessing, lip-sync inference and the LSE crops share).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from ...data.aligned import DataError

FPS = 25
SAMPLE_RATE = 16000
REFERENCE_PADS = (0, 10, 0, 0)  # top, bottom, left, right (reference inference.py --pads)
SMOOTH_T = 5  # reference get_smoothened_boxes(boxes, T=5)

# ==========================================================================================
# face detection
# ==========================================================================================

Box = tuple[int, int, int, int]  # x1, y1, x2, y2 (pixels; x2/y2 exclusive)


@runtime_checkable
class FaceDetector(Protocol):
    """Anything with ``detect(frames) -> boxes``: ``frames`` uint8 RGB ``(N, H, W, 3)``, one
    ``(x1, y1, x2, y2)`` box or ``None`` per frame (the most prominent face).

    The reference S3FD is built in (:mod:`.s3fd`: ``--detector s3fd --detector-weights
    s3fd.pth``); another detector plugs in as a small module with a class or factory taking the
    weights path, chosen with ``--detector my_module:MyDetector --detector-weights FILE`` (or
    by passing an instance to :func:`preprocess_lrs2`).
    """

    def detect(self, frames: np.ndarray) -> list[Box | None]: ...


class HaarDetector:
    """OpenCV's frontal-face Haar cascade (shipped in opencv-python-headless); the largest face."""

    name = "opencv-haar-frontalface-default"

    def __init__(
        self,
        cascade: str = "haarcascade_frontalface_default.xml",
        scale_factor: float = 1.15,
        min_neighbors: int = 5,
        min_size_fraction: float = 0.2,
    ):
        import cv2

        path = os.path.join(cv2.data.haarcascades, cascade)
        self._cv2 = cv2
        self.cascade = cv2.CascadeClassifier(path)
        if self.cascade.empty():
            raise DataError(f"{path}: OpenCV could not load the Haar cascade")
        self.scale_factor, self.min_neighbors, self.min_size_fraction = (
            scale_factor,
            min_neighbors,
            min_size_fraction,
        )

    def detect(self, frames: np.ndarray) -> list[Box | None]:
        cv2 = self._cv2
        out: list[Box | None] = []
        for fr in frames:
            grey = cv2.cvtColor(np.ascontiguousarray(fr), cv2.COLOR_RGB2GRAY)
            side = max(16, int(self.min_size_fraction * min(grey.shape)))
            faces = self.cascade.detectMultiScale(
                grey, self.scale_factor, self.min_neighbors, minSize=(side, side)
            )
            if len(faces) == 0:
                out.append(None)
                continue
            x, y, w, h = max(faces, key=lambda r: int(r[2]) * int(r[3]))
            out.append((int(x), int(y), int(x + w), int(y + h)))
        return out


def load_detector(spec: str = "haar", weights: str | None = None) -> FaceDetector:
    """``"haar"``, ``"s3fd"`` (the reference detector, :mod:`.s3fd`, with ``weights`` = the
    reference ``s3fd.pth``) or ``"module:factory"`` (imported; called with ``weights`` when given)."""
    if spec == "haar":
        return HaarDetector()
    if spec == "s3fd":
        if not weights:
            raise DataError("--detector s3fd needs --detector-weights s3fd.pth (the reference S3FD weights)")
        from .s3fd import S3FDDetector

        return S3FDDetector(weights)
    if ":" not in spec:
        raise DataError(f"--detector {spec!r}: use 'haar', 's3fd' or 'module:factory' (e.g. my_s3fd:S3FD)")
    import importlib

    mod, attr = spec.split(":", 1)
    try:
        factory = getattr(importlib.import_module(mod), attr)
    except (ImportError, AttributeError) as e:
        raise DataError(f"--detector {spec!r}: cannot import it ({e})") from None
    det = factory(weights) if weights is not None else factory()
    if not hasattr(det, "detect"):
        if callable(det):
            fn = det

            class _Wrapped:
                name = spec

                def detect(self, frames):
                    return fn(frames)

            det = _Wrapped()
        else:
            raise DataError(f"--detector {spec!r}: the factory returned no detector (needs detect(frames))")
    return det


def pad_boxes(
    boxes: Sequence[Box], shape: tuple[int, int], pads: Sequence[int] = REFERENCE_PADS
) -> np.ndarray:
    """The reference's padding (``inference.py``): top/bottom/left/right pads, clipped to the frame."""
    top, bottom, left, right = pads
    h, w = shape
    out = [
        [max(0, x1 - left), max(0, y1 - top), min(w, x2 + right), min(h, y2 + bottom)]
        for x1, y1, x2, y2 in boxes
    ]
    return np.asarray(out, dtype=np.int64).reshape(-1, 4)


def smooth_boxes(boxes: np.ndarray, T: int = SMOOTH_T) -> np.ndarray:
    """The reference ``get_smoothened_boxes``: in place, on an integer array (means truncate),
    box ``i`` = mean of boxes ``i .. i+T-1``; near the end the mean of the last ``T``."""
    boxes = np.array(boxes, copy=True)
    n = len(boxes)
    if T <= 1 or n == 0:
        return boxes
    for i in range(n):
        window = boxes[n - T :] if i + T > n else boxes[i : i + T]
        boxes[i] = np.mean(window, axis=0)
    return boxes


def fill_missing(boxes: Sequence[Box | None]) -> tuple[list[Box], int]:
    """Each ``None`` takes the nearest detected box (earlier wins a tie); returns the number filled."""
    idx = [i for i, b in enumerate(boxes) if b is not None]
    if not idx:
        return [], len(boxes)
    arr = np.asarray(idx)
    out = []
    for i, b in enumerate(boxes):
        if b is None:
            j = arr[np.argmin(np.abs(arr - i))]
            b = boxes[int(j)]
        out.append(tuple(int(v) for v in b))
    return out, len(boxes) - len(idx)


@dataclass(frozen=True)
class FaceTrack:
    """The face boxes of a clip: ``boxes`` (N, 4) int64, one padded, smoothed box per frame
    (empty when no frame has a face); ``found`` frames had a detected face, ``filled`` took the
    nearest detected box."""

    boxes: np.ndarray
    found: int
    filled: int


def track_faces(
    frames: np.ndarray,
    detector: FaceDetector | None = None,
    *,
    pads: Sequence[int] = REFERENCE_PADS,
    smooth_T: int = SMOOTH_T,
    where: str = "frames",
) -> FaceTrack:
    """The face-box pipeline of the reference ``inference.py`` on uint8 RGB ``frames`` (N, H, W, 3):
    detect (``detector``, default :class:`HaarDetector`), fill the frames without a face
    (:func:`fill_missing`), pad (:func:`pad_boxes`) and smooth over ``smooth_T`` frames
    (:func:`smooth_boxes`; 1 = no smoothing).  A detector that does not give one box per frame
    is a :class:`DataError` naming ``where``; how many faces a caller needs is its own check."""
    det = detector if detector is not None else HaarDetector()
    dets = det.detect(frames)
    if len(dets) != len(frames):
        raise DataError(f"{where}: the face detector returned {len(dets)} boxes for {len(frames)} frames")
    found = sum(b is not None for b in dets)
    filled_boxes, filled = fill_missing(dets)
    boxes = pad_boxes(filled_boxes, frames.shape[1:3], pads)
    return FaceTrack(smooth_boxes(boxes, smooth_T), found, filled)
