"""Lip-sync inference with a Wav2Lip generator (the use case of the reference ``inference.py``).

``lipsync(checkpoint, face, audio, out)``:

1. **face**: a video (decoded at 25 fps through ffmpeg-python) or a still image (looped to the
   audio's length); a video shorter than the audio is looped, as the reference does;
2. **audio**: a WAV file, or the audio stream of any media file (extracted by ffmpeg-python),
   as 16 kHz mono; Wav2Lip's mel spectrogram (:mod:`unetprune.audio`);
3. **detection**: the preprocessing's face detector (OpenCV Haar by default, any
   ``--detector module:factory``), a frame without a face takes the nearest detected box, the
   reference padding (``0 10 0 0``: the chin) and box smoothing over 5 frames (``--nosmooth``);
4. **generator inputs** as the reference builds them: the 96 x 96 face crop (BGR, [0, 1]) with
   its lower half zeroed, concatenated with the same crop unmasked (the identity reference),
   and the frame's mel window (80 x 16) starting at mel index ``int(80 · i / 25)``;
5. generation in batches; the prediction resized to the box and pasted back (``paste="lower"``:
   its lower half, the region the generator fills, with a feathered seam; ``paste="face"``: the
   whole box, as the reference);
6. H.264 + AAC mp4 (atomic) with the audio muxed by ffmpeg-python.

One deliberate difference: the reference makes one frame per mel window
(``len(mel_chunks)`` ≈ 25 · duration − 3), so its video ends ~0.1 s before the audio.  Here the
output has ``round(25 · duration)`` frames (the last windows held flush with the end of the
spectrogram), so the video lasts as long as the audio (±1 frame).

Errors a user can fix are one line naming the file: no face found, unreadable media (a
truncated mp4, a file that is no media, a video without audio where audio is needed, an
unreadable image), audio shorter than one window (16 mel frames = 0.2 s), a checkpoint that
holds no Wav2Lip generator, an input over the media limits (:class:`unetprune.data.media.MediaLimits`:
duration, frames and pixels, checked on the probe before decoding), a name ffmpeg would read
as a protocol, an output that is (or leads through a link to) an input, a batch size below 1.
"""

from __future__ import annotations

import numbers
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ... import audio as A
from ...data import media as M
from ...errors import UserFacingError

FPS = 25
FACE = 96
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
PASTE_MODES = ("lower", "face")


class LipSyncError(UserFacingError, ValueError):
    """Something in the inputs that stops lip-syncing (the message names the file)."""


# ------------------------------------------------------------------------------------------
# inputs
# ------------------------------------------------------------------------------------------


def load_generator(checkpoint: Path | str, device: str | torch.device = "cpu"):
    """The Wav2Lip generator of a unetprune checkpoint (``save_generator``), in eval mode, read
    through :func:`unetprune.checkpoint.generator_from_checkpoint`."""
    from ...checkpoint import generator_from_checkpoint
    from .networks import Wav2LipGenerator

    checkpoint = Path(checkpoint)
    g = generator_from_checkpoint(checkpoint)
    if not isinstance(g, Wav2LipGenerator):
        raise LipSyncError(f"{checkpoint}: holds a {type(g).__name__}, lip-sync needs a Wav2Lip generator")
    return g.to(device).eval()


def read_face_input(path: Path | str, limits: M.MediaLimits = M.DEFAULT_LIMITS) -> tuple[np.ndarray, bool]:
    """(uint8 RGB frames (N, H, W, 3) at 25 fps, is_still_image); a video is probed against
    ``limits`` before it is decoded, an image's size is read before its pixels."""
    import cv2
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        if not path.is_file():
            raise M.MediaError(f"{path}: no such file")
        try:
            with Image.open(path) as im:
                w, h = im.size
        except (UnidentifiedImageError, OSError, ValueError):
            raise M.MediaError(f"{path}: not a readable image") from None
        if w * h > limits.max_pixels:
            limits.refuse(path, "pixels", f"has {w}x{h} = {w * h} pixels")
        im = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if im is None:
            raise M.MediaError(f"{path}: not a readable image")
        return im[None, ..., ::-1].copy(), True
    info = M.probe(path, require_video=True, limits=limits)
    resample = info.fps is None or abs(info.fps - FPS) > 0.01
    frames, _ = M.decode_frames(path, fps=FPS if resample else None, limits=limits)
    return frames, False


def read_audio_input(
    path: Path | str, dest_wav: Path, limits: M.MediaLimits = M.DEFAULT_LIMITS
) -> np.ndarray:
    """16 kHz mono float samples of ``path`` (a WAV, or any media file with an audio stream),
    also written to ``dest_wav`` (the track muxed into the output); probed against ``limits``
    before it is read."""
    path = Path(path)
    if path.suffix.lower() == ".wav":
        M.probe(path, require_audio=True, limits=limits)
        wav = A.read_wav(path, 16000)
        M.write_wav(dest_wav, wav, 16000)
        return wav
    M.extract_audio(path, dest_wav, sr=16000, limits=limits)
    return A.read_wav(dest_wav, 16000)


def mel_windows(mel: np.ndarray, n_frames: int, fps: float = FPS) -> np.ndarray:
    """(n_frames, 80, 16): frame ``i``'s window starts at ``int(80 · i / fps)`` (the reference's
    mapping), held flush with the end of the spectrogram past it."""
    last = mel.shape[1] - A.MEL_STEP
    starts = [min(int(A.HP.frames_per_second * i / float(fps)), last) for i in range(n_frames)]
    return np.stack([mel[:, s : s + A.MEL_STEP] for s in starts])


def face_boxes(
    frames: np.ndarray, detector=None, pads=(0, 10, 0, 0), smooth: bool = True, name: str = "face"
) -> np.ndarray:
    """One padded, smoothed (x1, y1, x2, y2) box per frame (see the module doc)."""
    from .faces import SMOOTH_T, track_faces

    track = track_faces(frames, detector, pads=pads, smooth_T=SMOOTH_T if smooth else 1, where=name)
    if not track.found:
        raise LipSyncError(
            f"{name}: no face found in {'the image' if len(frames) == 1 else f'any of its {len(frames)} frames'}"
        )
    return track.boxes


# ------------------------------------------------------------------------------------------
# generation
# ------------------------------------------------------------------------------------------


def _crop96(frame_rgb: np.ndarray, box) -> np.ndarray:
    import cv2

    x1, y1, x2, y2 = (int(v) for v in box)
    return cv2.resize(np.ascontiguousarray(frame_rgb[y1:y2, x1:x2, ::-1]), (FACE, FACE))  # BGR


def _paste(frame: np.ndarray, pred_bgr: np.ndarray, box, mode: str) -> None:
    import cv2

    x1, y1, x2, y2 = (int(v) for v in box)
    w, h = x2 - x1, y2 - y1
    p = cv2.resize(pred_bgr, (w, h))[..., ::-1].astype(np.float32)
    region = frame[y1:y2, x1:x2].astype(np.float32)
    if mode == "face":
        alpha = np.ones((h, 1, 1), np.float32)
    else:  # the lower half, feathered over ~8 % of the box around its middle
        feather = max(1.0, 0.08 * h)
        rows = (np.arange(h, dtype=np.float32) + 0.5 - h / 2) / feather
        alpha = np.clip(0.5 + rows, 0.0, 1.0)[:, None, None]
    frame[y1:y2, x1:x2] = np.clip(alpha * p + (1 - alpha) * region + 0.5, 0, 255).astype(np.uint8)


def lipsync(
    checkpoint: Path | str,
    face: Path | str,
    audio: Path | str,
    out: Path | str,
    *,
    batch_size: int = 32,
    device: str | None = None,
    detector=None,
    pads=(0, 10, 0, 0),
    smooth: bool = True,
    paste: str = "lower",
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    limits: M.MediaLimits = M.DEFAULT_LIMITS,
) -> dict:
    """Lip-sync ``face`` to ``audio`` with the generator of ``checkpoint``; writes ``out`` (mp4).
    Inputs beyond ``limits`` are refused before they are decoded; ``out`` must not be (or lead
    through a link to) one of the inputs; ``batch_size`` is at least 1.
    Returns a summary (frames, durations, seconds, boxes found)."""
    import sys

    from tqdm import tqdm

    from ...fileio import clashing_input

    if paste not in PASTE_MODES:
        raise ValueError(f"paste must be one of {PASTE_MODES}, got {paste!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise LipSyncError(f"batch size must be a whole number of at least 1, got {batch_size!r}")
    t0 = time.time()
    face, audio, out = Path(face), Path(audio), Path(out)
    clash = clashing_input([out], [face, audio, Path(checkpoint)])
    if clash is not None:
        raise LipSyncError(
            f"--out {out} is the input {clash[1]} (the same file, or a link to it): it would be "
            f"replaced; choose another output file"
        )
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    g = load_generator(checkpoint, dev)
    frames, still = read_face_input(face, limits)
    with tempfile.TemporaryDirectory(
        prefix=".lipsync.", dir=out.parent if out.parent.is_dir() else None
    ) as td:
        wav_path = Path(td) / "audio.wav"
        wav = read_audio_input(audio, wav_path, limits)
        duration = len(wav) / 16000.0
        try:
            mel = A.melspectrogram(wav)
        except A.AudioError as e:
            raise LipSyncError(
                f"{audio}: the audio is shorter than one window ({duration:.3f} s; {e})"
            ) from None
        if mel.shape[1] < A.MEL_STEP:
            raise LipSyncError(
                f"{audio}: the audio is shorter than one window ({duration:.3f} s < "
                f"{A.MEL_STEP / A.HP.frames_per_second:.2f} s: {mel.shape[1]} of {A.MEL_STEP} mel frames)"
            )
        n_out = max(1, round(duration * FPS))
        mels = mel_windows(mel, n_out)
        boxes = face_boxes(frames, detector, pads, smooth, str(face))
        # even sides for H.264 yuv420p
        h, w = frames.shape[1] - frames.shape[1] % 2, frames.shape[2] - frames.shape[2] % 2
        result = np.empty((n_out, h, w, 3), np.uint8)
        bar = tqdm(
            range(0, n_out, batch_size),
            desc="lip-sync",
            unit="batch",
            disable=not progress,
            file=sys.stderr,
            leave=False,
        )
        with torch.no_grad():
            for i0 in bar:
                idx = range(i0, min(n_out, i0 + batch_size))
                src = [0 if still else i % len(frames) for i in idx]
                crops = np.stack([_crop96(frames[j], boxes[j]) for j in src]).astype(np.float32) / 255.0
                masked = crops.copy()
                masked[:, FACE // 2 :] = 0.0
                x = torch.from_numpy(np.concatenate([masked, crops], axis=3)).permute(0, 3, 1, 2).to(dev)
                m = torch.from_numpy(mels[i0 : i0 + len(idx)])[:, None].to(dev)
                pred = g(x, m).permute(0, 2, 3, 1).cpu().numpy() * 255.0
                for k, j in enumerate(src):
                    fr = frames[j].copy()
                    _paste(fr, pred[k], boxes[j], paste)
                    result[i0 + k] = fr[:h, :w]
        bar.close()
        M.encode_mp4(out, result, FPS, wav_path)
    info = M.probe(out, require_video=True, require_audio=True, limits=None)
    summary = {
        "out": str(out),
        "frames": n_out,
        "fps": FPS,
        "audio_seconds": round(duration, 4),
        "video_seconds": round(n_out / FPS, 4),
        "mp4_seconds": info.duration,
        "still_image": still,
        "face_frames": len(frames),
        "paste": paste,
        "device": str(dev),
        "seconds": round(time.time() - t0, 2),
    }
    if log:
        log(f"lip-synced {face} to {audio}: {n_out} frames → {out}")
    return summary
