"""Talking-face data for Wav2Lip: LRS2-style preprocessing, the offline demo set, the datasets.

**Preprocessing** (:func:`preprocess_lrs2`) turns talking-face videos in the LRS2 layout::

    RAW/<speaker>/<clip>.mp4        RAW/train.txt, val.txt, test.txt   (lines "speaker/clip")

into the layout of the reference Wav2Lip ``preprocess.py``::

    OUT/<speaker>/<clip>/0.jpg 1.jpg …   face crops at their detected size (BGR JPEGs, cv2)
    OUT/<speaker>/<clip>/audio.wav       16 kHz mono 16-bit
    OUT/<speaker>/<clip>/.done           what was done (JSON); written before the folder appears
    OUT/train.txt val.txt test.txt       the clips that were processed, per split
    OUT/preprocess.json                  the summary (processed, skipped with the reason)

Decoding, audio extraction and any fps conversion go through ffmpeg-python
(:mod:`unetprune.data.media`).  Every frame goes through a **face detector** (OpenCV's Haar
cascade by default; any :class:`FaceDetector`, e.g. S3FD with your weights, see
:func:`load_detector`).  Boxes are then **padded** and **smoothed over time** as the
reference ``inference.py`` does (``pads = 0, 10, 0, 0`` = top, bottom, left, right — the
bottom pad keeps the chin; then ``get_smoothened_boxes`` with T = 5: each box becomes the
mean of itself and the next 4, the last T of the clip the mean of the last window, on
integer boxes).  The reference ``preprocess.py`` itself crops the raw S3FD boxes and leaves a
gap in the frame numbering where no face was found; by default this module instead gives such
a frame the nearest detected box (a Haar cascade misses single frames that S3FD would not),
and a clip with faces in fewer than ``min_face_fraction`` of its frames is skipped as
face-less.  ``reference=True`` (``data preprocess-lrs2 --reference``, best with ``--detector
s3fd``) writes what ``preprocess.py`` writes: raw boxes, no file for a frame without a face.
(The training windows of :mod:`.datasets` are the frames numbered consecutively from 0, so a
gap ends a clip's usable frames there; the reference instead skips the windows that cross it.)

Filelist entries are ``<speaker>/<clip>`` (two plain names) and must stay inside their root
once links are resolved (:func:`clip_entries`: a ``../x`` entry, an absolute one or one
through a link out of the folder is refused with one line naming the filelist and its line,
before anything is written); ``OUT`` must not replace ``RAW``'s filelists.  Each video is
probed against the media limits (:class:`unetprune.data.media.MediaLimits`) before decoding.

It is resumable and robust: one clip at a time; a clip is built in a hidden temporary
folder and renamed into place with its ``.done`` marker, so a rerun skips finished clips and
a killed run leaves nothing half-written; a corrupt clip (truncated, no audio, not a video)
or a face-less one is reported by name in the summary and skipped without stopping the run.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...data.aligned import DataError
from ...data.media import DEFAULT_LIMITS, MediaError, MediaLimits, decode_frames, extract_audio, probe
from ...fileio import clashing_input, resolve_inside
from .faces import FPS, REFERENCE_PADS, SAMPLE_RATE, SMOOTH_T, FaceDetector, HaarDetector, track_faces

SPLITS = ("train", "val", "test")
DONE = ".done"
# ==========================================================================================
# preprocessing (LRS2 layout → the reference's preprocessed layout)
# ==========================================================================================


@dataclass
class ClipResult:
    name: str
    status: str  # "done" | "skipped" (already done) | "failed"
    reason: str = ""
    n_frames: int = 0
    filled: int = 0


def clip_entries(flist: Path, root: Path, suffix: str = "") -> list[str]:
    """The ``<speaker>/<clip>`` entries of the filelist ``flist`` (the first token of each
    non-empty line), each checked to name ``root/<speaker>/<clip><suffix>`` inside ``root``
    once links are resolved; otherwise :class:`DataError` naming the filelist, the line and
    the entry (``../x``, ``/abs``, ``a/b/c``, a link out of ``root``)."""
    entries = []
    for n, line in enumerate(flist.read_text().splitlines(), 1):
        if not line.strip():
            continue
        entry = line.split()[0]
        parts = entry.split("/")
        plain = len(parts) == 2 and all(
            p not in ("", ".", "..") and "\\" not in p and "\0" not in p for p in parts
        )
        if not plain or resolve_inside(root, entry + suffix) is None:
            raise DataError(
                f"{flist}: line {n}: {entry!r} is not <speaker>/<clip> inside {root} "
                f"(a filelist entry must not leave its folder)"
            )
        entries.append(entry)
    return entries


def read_filelists(root: Path) -> dict[str, list[str]]:
    """``train/val/test.txt`` in ``root`` (or its parent, as LRS2 puts them next to ``main/``):
    the first token of each non-empty line (LRS2's test list adds a tag), checked by
    :func:`clip_entries`.  Without any list: every ``<speaker>/<clip>.mp4`` under ``root`` goes
    to ``train``."""
    lists: dict[str, list[str]] = {}
    for split in SPLITS:
        for folder in (root, root.parent):
            f = folder / f"{split}.txt"
            if f.is_file():
                lists[split] = clip_entries(f, root, ".mp4")
                break
    if not lists:
        clips = sorted(f"{p.parent.name}/{p.stem}" for p in root.glob("*/*.mp4"))
        if not clips:
            raise DataError(f"{root}: no filelists (train.txt/val.txt/test.txt) and no <speaker>/<clip>.mp4")
        lists["train"] = clips
    return lists


def preprocess_clip(
    video: Path,
    dest: Path,
    detector: FaceDetector,
    *,
    pads: Sequence[int] = REFERENCE_PADS,
    smooth_T: int = SMOOTH_T,
    min_face_fraction: float = 0.5,
    fps: float = FPS,
    limits: MediaLimits = DEFAULT_LIMITS,
    reference: bool = False,
) -> ClipResult:
    """One clip → ``dest/`` (``0.jpg …``, ``audio.wav``, ``.done``), built in a temporary
    folder and renamed into place.  Raises MediaError / DataError naming the clip (one over
    ``limits`` before it is decoded).  ``reference``: what the reference ``preprocess.py``
    writes: the detector's raw boxes (no padding, no smoothing, ``pads``/``smooth_T`` unused)
    and no file for a frame without a face (a gap in the numbering); a clip without any face
    is refused."""
    import cv2

    name = f"{dest.parent.name}/{dest.name}"
    info = probe(video, require_video=True, require_audio=True, limits=limits)
    resample = info.fps is None or abs(info.fps - fps) > 0.01
    frames, _ = decode_frames(video, fps=fps if resample else None, limits=limits)
    if reference:
        boxes = list(detector.detect(frames))
        if len(boxes) != len(frames):
            raise DataError(
                f"{video}: the face detector returned {len(boxes)} boxes for {len(frames)} frames"
            )
        found, filled = sum(b is not None for b in boxes), 0
        pads, smooth_T, min_face_fraction = (0, 0, 0, 0), 1, 0.0
    else:
        track = track_faces(frames, detector, pads=pads, smooth_T=smooth_T, where=str(video))
        found, filled, boxes = track.found, track.filled, track.boxes
    if found < max(1, math.ceil(min_face_fraction * len(frames))):
        raise DataError(
            f"{video}: no face found in {len(frames) - found} of {len(frames)} frames (face-less clip)"
        )

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))
    try:
        extract_audio(video, tmp / "audio.wav", sr=SAMPLE_RATE, limits=limits)
        for i, (fr, box) in enumerate(zip(frames, boxes)):
            if box is None:  # reference mode: no face, no file
                continue
            x1, y1, x2, y2 = (int(v) for v in box)
            crop = fr[y1:y2, x1:x2]
            if crop.size == 0:
                raise DataError(f"{video}: empty face box {x1, y1, x2, y2} at frame {i}")
            if not cv2.imwrite(str(tmp / f"{i}.jpg"), np.ascontiguousarray(crop[..., ::-1])):
                raise OSError(f"cv2 could not write {tmp / f'{i}.jpg'}")
        meta = {
            "source": str(video),
            "n_frames": len(frames),
            "fps": fps,
            "resampled_fps": info.fps if resample else None,
            "detector": getattr(detector, "name", type(detector).__name__),
            "faces_found": found,
            "boxes_filled": filled,
            "pads": list(pads),
            "smooth_T": smooth_T,
            "mode": "reference" if reference else "inference",
            "frames_without_face": [i for i, b in enumerate(boxes) if b is None],
        }
        (tmp / DONE).write_text(json.dumps(meta, indent=1))
        if dest.exists():  # an earlier incomplete attempt (no .done)
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ClipResult(name, "done", n_frames=len(frames), filled=filled)


def _remove_partials(folder: Path) -> None:
    if folder.is_dir():
        for p in folder.glob(".*.partial"):
            shutil.rmtree(p, ignore_errors=True)


def preprocess_lrs2(
    root: Path | str,
    out: Path | str,
    *,
    detector: FaceDetector | None = None,
    pads: Sequence[int] = REFERENCE_PADS,
    smooth_T: int = SMOOTH_T,
    min_face_fraction: float = 0.5,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    limits: MediaLimits = DEFAULT_LIMITS,
    reference: bool = False,
) -> dict:
    """Preprocess every clip of the filelists (resumable; failures skipped and reported, a
    clip over ``limits`` too); ``reference``: as the reference ``preprocess.py``
    (:func:`preprocess_clip`).  A filelist entry that leaves ``root`` (or whose output would
    leave ``out``) and an ``out`` whose filelists would replace ``root``'s are refused before
    anything is written.  Returns (and writes to ``OUT/preprocess.json``) the summary."""
    from tqdm import tqdm

    from ...fileio import atomic_write_text

    root, out = Path(root), Path(out)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder (expected <root>/<speaker>/<clip>.mp4)")
    detector = detector or HaarDetector()
    lists = read_filelists(root)
    for clips in lists.values():
        for clip in clips:
            if resolve_inside(out, clip) is None:
                raise DataError(f"{out / clip}: the clip's output would leave {out} (through a link)")
    written = [out / f"{split}.txt" for split in lists] + [out / "preprocess.json"]
    inputs = [folder / f"{split}.txt" for folder in (root, root.parent) for split in SPLITS]
    clash = clashing_input(written, [p for p in inputs if p.exists()])
    if clash is not None:
        raise DataError(
            f"--out {out}: {clash[0]} would replace the input filelist {clash[1]}; choose another folder"
        )
    out.mkdir(parents=True, exist_ok=True)
    todo = [(split, c) for split, clips in lists.items() for c in clips]
    results: dict[str, ClipResult] = {}
    t0 = time.time()
    bar = tqdm(todo, desc="preprocess", unit="clip", disable=not progress, file=sys.stderr, leave=False)
    for split, clip in bar:
        if clip in results:
            continue
        spk, _, name = clip.partition("/")
        dest = out / spk / name
        _remove_partials(out / spk)
        if (dest / DONE).is_file():
            results[clip] = ClipResult(clip, "skipped", "already done")
            continue
        video = root / spk / f"{name}.mp4"
        try:
            if not video.is_file():
                raise MediaError(f"{video}: no such file (listed in {split}.txt)")
            results[clip] = preprocess_clip(
                video,
                dest,
                detector,
                pads=pads,
                smooth_T=smooth_T,
                min_face_fraction=min_face_fraction,
                limits=limits,
                reference=reference,
            )
        except (MediaError, DataError) as e:
            results[clip] = ClipResult(clip, "failed", str(e))
            if log:
                log(f"skipped {clip}: {e}")
    bar.close()
    ok = {c for c, r in results.items() if r.status in ("done", "skipped")}
    for split, clips in lists.items():
        atomic_write_text(out / f"{split}.txt", "".join(f"{c}\n" for c in clips if c in ok))
    summary = {
        "root": str(root),
        "out": str(out),
        "detector": getattr(detector, "name", type(detector).__name__),
        "pads": [0, 0, 0, 0] if reference else list(pads),
        "smooth_T": 1 if reference else smooth_T,
        "mode": "reference" if reference else "inference",
        "seconds": round(time.time() - t0, 2),
        "processed": sorted(c for c, r in results.items() if r.status == "done"),
        "already_done": sorted(c for c, r in results.items() if r.status == "skipped"),
        "failed": {c: r.reason for c, r in sorted(results.items()) if r.status == "failed"},
        "counts": {s: sum(c in ok for c in clips) for s, clips in lists.items()},
    }
    atomic_write_text(out / "preprocess.json", json.dumps(summary, indent=1))
    return summary
