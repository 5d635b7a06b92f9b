"""Lip-sync inference with a Wav2Lip generator (the use case of the reference ``inference.py``).

``lipsync(checkpoint, face, audio, out)``:

1. **face**: a video (decoded at 25 fps through ffmpeg) or a still image (looped to the
   audio's length); a video shorter than the audio is looped, as the reference does;
2. **audio**: a WAV file, or the audio stream of any media file (extracted by ffmpeg), as
   16 kHz mono; Wav2Lip's mel spectrogram (:mod:`unetprune.audio`, computed block by block:
   :func:`melspectrogram_blocks`);
3. **detection**: the preprocessing's face detector (OpenCV Haar by default, any
   ``--detector module:factory``), a frame without a face takes the nearest detected box, the
   reference padding (``0 10 0 0``: the chin) and box smoothing over 5 frames (``--nosmooth``);
4. **generator inputs** as the reference builds them: the 96 x 96 face crop (BGR, [0, 1]) with
   its lower half zeroed, concatenated with the same crop unmasked (the identity reference),
   and the frame's mel window (80 x 16) starting at mel index ``int(80 · i / 25)``;
5. generation in batches; the prediction resized to the box and pasted back (``paste="lower"``:
   its lower half, the region the generator fills, feathered on every border — the middle of
   the box, both sides and the bottom — so the pasted edge pixels are the frame's own;
   ``paste="face"``: the whole box, hard-edged, as the reference);
6. H.264 + AAC mp4 (atomic) with the whole audio track muxed.

**Streaming**: the video is read twice by an ffmpeg decoder in chunks of at most
:data:`CHUNK_BYTES` (first pass: detection, keeping only the boxes; second pass: generate,
paste, encode), and the frames go to an ffmpeg encoder as they are made, so memory does not
grow with the length of the video or the audio.  The decoder and the encoder run in their own
processes, fed through bounded queues, while this process detects, generates and pastes.  The
boxes are filled, padded and smoothed over all frames at once after the first pass, so they
equal a single pass over the whole video.  A still image is read and detected once.

The output has ``round(25 · duration)`` frames (the reference makes one per mel window,
``≈ 25 · duration − 3``; here the last windows are held flush with the end of the
spectrogram) and the whole audio stream, so it lasts as long as the audio (±1 frame).

Errors a user can fix are one line naming the file: no face found, unreadable media (a
truncated mp4, a file that is no media, a video without audio where audio is needed, an
unreadable image), audio shorter than one window (16 mel frames = 0.2 s), a checkpoint that
holds no Wav2Lip generator, an input over the media limits (:class:`unetprune.data.media.MediaLimits`:
duration, frames and pixels, checked on the probe before decoding), a name ffmpeg would read
as a protocol, an output that is (or leads through a link to) an input, a batch size below 1.
:func:`check_inputs` makes every check that needs no decoding and imports no torch.
"""

from __future__ import annotations

import numbers
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...data import media as M
from ...errors import UserFacingError

FPS = 25
FACE = 96
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
PASTE_MODES = ("lower", "face")
STAGES = ("decode", "detect", "mel", "generate", "paste", "encode")
CHUNK_BYTES = 32 << 20  # decoded frames per chunk: at most this many bytes (>= 1 frame)
FEATHER = 0.08  # feathered band of the "lower" paste, as a fraction of the box side


class LipSyncError(UserFacingError, ValueError):
    """Something in the inputs that stops lip-syncing (the message names the file)."""


# ------------------------------------------------------------------------------------------
# inputs
# ------------------------------------------------------------------------------------------


def load_generator(checkpoint: Path | str, device="cpu"):
    """The Wav2Lip generator of a unetprune checkpoint (``save_generator``), in eval mode, read
    through :func:`unetprune.checkpoint.generator_from_checkpoint`."""
    from ...checkpoint import generator_from_checkpoint
    from .networks import Wav2LipGenerator

    checkpoint = Path(checkpoint)
    g = generator_from_checkpoint(checkpoint)
    if not isinstance(g, Wav2LipGenerator):
        raise LipSyncError(f"{checkpoint}: holds a {type(g).__name__}, lip-sync needs a Wav2Lip generator")
    return g.to(device).eval()


@dataclass(frozen=True)
class FaceInput:
    """The face input after its checks: a still image (``size`` read from its header) or a
    video (``info``: its probe); ``resample``: decoded through ffmpeg's fps filter to 25 fps."""

    path: Path
    still: bool
    width: int
    height: int
    info: M.MediaInfo | None = None

    @property
    def resample(self) -> bool:
        return self.info is not None and (self.info.fps is None or abs(self.info.fps - FPS) > 0.01)


def check_face(path: Path | str, limits: M.MediaLimits = M.DEFAULT_LIMITS) -> FaceInput:
    """A still image's size is read before its pixels, a video is probed; both against ``limits``."""
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
        return FaceInput(path, True, w, h)
    info = M.probe(path, require_video=True, limits=limits)
    if not info.video.width or not info.video.height:
        raise M.MediaError(f"{path}: could not read the frame size of its video stream")
    return FaceInput(path, False, info.video.width, info.video.height, info)


def read_image(face: FaceInput) -> np.ndarray:
    """A still image as uint8 RGB ``(1, H, W, 3)``."""
    import cv2

    im = cv2.imread(str(face.path), cv2.IMREAD_COLOR)
    if im is None:
        raise M.MediaError(f"{face.path}: not a readable image")
    return im[None, ..., ::-1].copy()


def face_chunks(
    face: FaceInput, chunk: int, limits: M.MediaLimits, timing: dict | None = None
) -> Iterator[np.ndarray]:
    """One pass over a video face's frames (25 fps) in chunks of at most ``chunk`` frames."""
    return M.iter_frames(
        face.path,
        fps=FPS if face.resample else None,
        chunk=chunk,
        info=face.info,
        limits=limits,
        timing=timing,
    )


def read_face_input(path: Path | str, limits: M.MediaLimits = M.DEFAULT_LIMITS) -> tuple[np.ndarray, bool]:
    """(every frame as uint8 RGB (N, H, W, 3) at 25 fps, is_still_image): the whole input in
    memory, for short clips; :func:`lipsync` streams instead."""
    face = check_face(path, limits)
    if face.still:
        return read_image(face), True
    return np.concatenate(list(face_chunks(face, 64, limits))), False


def read_audio_input(
    path: Path | str, dest_wav: Path, limits: M.MediaLimits = M.DEFAULT_LIMITS
) -> np.ndarray:
    """16 kHz mono float samples of ``path`` (a WAV, or any media file with an audio stream),
    also written to ``dest_wav`` (the track muxed into the output); probed against ``limits``
    before it is read."""
    from ... import audio as A

    path = Path(path)
    if path.suffix.lower() == ".wav":
        M.probe(path, require_audio=True, limits=limits)
        wav = A.read_wav(path, 16000)
        M.write_wav(dest_wav, wav, 16000)
        return wav
    M.extract_audio(path, dest_wav, sr=16000, limits=limits)
    return A.read_wav(dest_wav, 16000)


def check_inputs(
    checkpoint: Path | str,
    face: Path | str,
    audio: Path | str,
    out: Path | str,
    *,
    batch_size: int = 32,
    paste: str = "lower",
    limits: M.MediaLimits = M.DEFAULT_LIMITS,
) -> FaceInput:
    """Every check of the inputs that needs no decoding (and imports no torch): the paste mode,
    the batch size, ``out`` not being an input, the face probed (or the image's size read) and
    the audio probed against ``limits``.  Returns the checked face."""
    from ...fileio import clashing_input

    if paste not in PASTE_MODES:
        raise ValueError(f"paste must be one of {PASTE_MODES}, got {paste!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise LipSyncError(f"batch size must be a whole number of at least 1, got {batch_size!r}")
    clash = clashing_input([Path(out)], [Path(face), Path(audio), Path(checkpoint)])
    if clash is not None:
        raise LipSyncError(
            f"--out {out} is the input {clash[1]} (the same file, or a link to it): it would be "
            f"replaced; choose another output file"
        )
    checked = check_face(face, limits)
    M.probe(audio, require_audio=True, limits=limits)
    return checked


# ------------------------------------------------------------------------------------------
# mel spectrogram, block by block
# ------------------------------------------------------------------------------------------


def melspectrogram_blocks(wav: np.ndarray, block: int = 2048, hp=None) -> np.ndarray:
    """:func:`unetprune.audio.melspectrogram` of ``wav`` (with the mel parameters ``hp``, default
    Wav2Lip's), computed ``block`` STFT columns at a time (the same framing, window and
    scaling; the memory of the complex STFT is one block's)."""
    from scipy import signal

    from ... import audio as A

    hp = A.HP if hp is None else hp

    wav = np.asarray(wav)
    if wav.ndim != 1:
        raise A.AudioError(f"expected mono audio (1-D), got shape {wav.shape}")
    y = A.preemphasis(wav.astype(np.float64), hp.preemphasis)
    pad = hp.n_fft // 2
    if y.size <= pad:
        raise A.AudioError(f"audio of {y.size} samples is too short for an STFT (needs more than {pad})")
    y = np.pad(y, pad, mode="reflect")
    window = signal.get_window("hann", hp.win_size, fftbins=True)
    if hp.win_size < hp.n_fft:
        lpad = (hp.n_fft - hp.win_size) // 2
        window = np.pad(window, (lpad, hp.n_fft - hp.win_size - lpad))
    n = 1 + (y.size - hp.n_fft) // hp.hop_size
    basis = A.mel_basis(hp)
    out = np.empty((hp.num_mels, n), np.float32)
    for c0 in range(0, n, block):
        c1 = min(n, c0 + block)
        seg = y[c0 * hp.hop_size : (c1 - 1) * hp.hop_size + hp.n_fft]
        frames = np.lib.stride_tricks.as_strided(
            seg,
            shape=(c1 - c0, hp.n_fft),
            strides=(seg.strides[0] * hp.hop_size, seg.strides[0]),
            writeable=False,
        )
        mag = np.abs(np.fft.rfft(frames * window, n=hp.n_fft, axis=1)).T
        s = A.amp_to_db(basis @ mag, hp) - hp.ref_level_db
        out[:, c0:c1] = A.normalize(s, hp)
    if not np.isfinite(out).all():
        raise A.AudioError("the mel spectrogram contains NaN/inf (is the audio finite?)")
    return out


def mel_windows(mel: np.ndarray, n_frames: int, fps: float = FPS, first: int = 0) -> np.ndarray:
    """(n_frames, 80, 16): the windows of frames ``first .. first + n_frames - 1``; frame ``i``'s
    starts at ``int(80 · i / fps)`` (the reference's mapping), held flush with the end of the
    spectrogram past it."""
    from ... import audio as A

    last = mel.shape[1] - A.MEL_STEP
    starts = [min(int(A.HP.frames_per_second * i / float(fps)), last) for i in range(first, first + n_frames)]
    return np.stack([mel[:, s : s + A.MEL_STEP] for s in starts])


# ------------------------------------------------------------------------------------------
# face boxes
# ------------------------------------------------------------------------------------------


def face_boxes(
    frames: np.ndarray, detector=None, pads=(0, 10, 0, 0), smooth: bool = True, name: str = "face"
) -> np.ndarray:
    """One padded, smoothed (x1, y1, x2, y2) box per frame of ``frames`` held in memory."""
    return boxes_of_detections(detect_chunk(frames, detector, name), frames.shape[1:3], pads, smooth, name)


def detect_chunk(frames: np.ndarray, detector, name: str) -> list:
    """The detector's box (or None) for each frame of one chunk."""
    from ...data.aligned import DataError

    dets = list(detector.detect(frames))
    if len(dets) != len(frames):
        raise DataError(f"{name}: the face detector returned {len(dets)} boxes for {len(frames)} frames")
    return dets


def boxes_of_detections(
    dets: list, shape: tuple[int, int], pads=(0, 10, 0, 0), smooth: bool = True, name: str = "face"
) -> np.ndarray:
    """The face-box pipeline of :func:`unetprune.families.wav2lip.faces.track_faces` on the
    detections of every frame: fill the frames without a face, pad, smooth."""
    from .faces import SMOOTH_T, fill_missing, pad_boxes, smooth_boxes

    filled, _ = fill_missing(dets)
    if not filled:
        raise LipSyncError(
            f"{name}: no face found in {'the image' if len(dets) == 1 else f'any of its {len(dets)} frames'}"
        )
    return smooth_boxes(pad_boxes(filled, shape, pads), SMOOTH_T if smooth else 1)


# ------------------------------------------------------------------------------------------
# crops and paste
# ------------------------------------------------------------------------------------------


def _crop96(frame_rgb: np.ndarray, box) -> np.ndarray:
    import cv2

    x1, y1, x2, y2 = (int(v) for v in box)
    return cv2.resize(np.ascontiguousarray(frame_rgb[y1:y2, x1:x2, ::-1]), (FACE, FACE))  # BGR


def _ramp(n: int, width: float) -> np.ndarray:
    """0 at index 0, rising linearly to 1 over ``width`` indices."""
    return np.clip(np.arange(n, dtype=np.float32) / max(1.0, width), 0.0, 1.0)


def paste_alpha(h: int, w: int, mode: str) -> np.ndarray:
    """(h, w, 1) weight of the prediction in a box of ``h`` x ``w``: 1 everywhere for ``face``;
    for ``lower`` the lower half, feathered over :data:`FEATHER` of the box around its middle
    and over the same share inside the sides and the bottom, 0 on the box's edge pixels."""
    if mode == "face":
        return np.ones((h, w, 1), np.float32)
    feather = max(1.0, FEATHER * h)
    top = np.clip(0.5 + (np.arange(h, dtype=np.float32) + 0.5 - h / 2) / feather, 0.0, 1.0)
    rows = top * _ramp(h, FEATHER * h)[::-1]
    cols = _ramp(w, FEATHER * w) * _ramp(w, FEATHER * w)[::-1]
    return (rows[:, None] * cols[None, :])[..., None]


def _paste(frame: np.ndarray, pred_bgr: np.ndarray, box, mode: str) -> None:
    import cv2

    x1, y1, x2, y2 = (int(v) for v in box)
    w, h = x2 - x1, y2 - y1
    p = cv2.resize(pred_bgr, (w, h))[..., ::-1]
    if mode == "face":
        frame[y1:y2, x1:x2] = np.clip(p + 0.5, 0, 255).astype(np.uint8)
        return
    region = frame[y1:y2, x1:x2].astype(np.float32)
    alpha = paste_alpha(h, w, mode)
    frame[y1:y2, x1:x2] = np.clip(region + alpha * (p - region) + 0.5, 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------
# the pipeline
# ------------------------------------------------------------------------------------------


class _Stages:
    """Seconds and frames per stage (:data:`STAGES`)."""

    def __init__(self):
        self.seconds = dict.fromkeys(STAGES, 0.0)
        self.frames = dict.fromkeys(STAGES, 0)

    def add(self, stage: str, t0: float, frames: int) -> float:
        now = time.perf_counter()
        self.seconds[stage] += now - t0
        self.frames[stage] += frames
        return now

    def summary(self) -> dict:
        total = sum(self.seconds.values()) or 1.0
        return {
            s: {
                "frames": self.frames[s],
                "seconds": round(self.seconds[s], 4),
                "fps": round(self.frames[s] / self.seconds[s], 2) if self.seconds[s] > 0 else None,
                "share": round(self.seconds[s] / total, 4),
            }
            for s in STAGES
        }


def format_stats(stats: dict) -> str:
    """One line per stage (frames/s and share of the stage time) and the end-to-end rate."""
    lines = [f"{'stage':<9}{'frames':>8}{'seconds':>10}{'frames/s':>11}{'share':>8}"]
    for s, v in stats["stages"].items():
        fps = f"{v['fps']:.1f}" if v["fps"] is not None else "-"
        lines.append(f"{s:<9}{v['frames']:>8}{v['seconds']:>10.3f}{fps:>11}{100 * v['share']:>7.1f}%")
    lines.append(
        f"end to end: {stats['frames']} frames in {stats['seconds']:.2f} s = {stats['fps']:.2f} frames/s"
    )
    return "\n".join(lines)


def _onnx_runner(path: Path | str, threads: int | None = None):
    """A callable ``(faces, mels) -> prediction`` (numpy, float32) running an exported Wav2Lip
    generator (``unetprune export``) through ONNX Runtime on the CPU with ``threads`` threads;
    the face batch is the 4-D input with 6 channels, the mel windows the other."""
    try:
        from ...export import ort_session
    except ImportError as e:
        raise LipSyncError(f"--onnx needs the ONNX packages ({e}): pip install onnx onnxruntime") from None
    path = M.local_file(path, "ONNX model")
    try:
        sess = ort_session(path, threads)
    except ImportError as e:
        raise LipSyncError(f"--onnx needs onnxruntime ({e}): pip install onnxruntime") from None
    except Exception as e:  # noqa: BLE001 — onnxruntime raises its own exception types
        first = (str(e).splitlines() or [type(e).__name__])[0][:200]
        raise LipSyncError(f"{path}: not a readable ONNX model ({first})") from None
    inputs = sess.get_inputs()
    face_name = next((i.name for i in inputs if len(i.shape) == 4 and i.shape[1] == 6), None)
    if len(inputs) != 2 or face_name is None:
        raise LipSyncError(
            f"{path}: not a Wav2Lip generator (it takes {len(inputs)} input(s); Wav2Lip takes a "
            f"(B, 6, 96, 96) face batch and (B, 1, 80, 16) mel windows)"
        )
    mel_name = next(i.name for i in inputs if i.name != face_name)

    def run(faces: np.ndarray, mels: np.ndarray) -> np.ndarray:
        return sess.run(None, {face_name: faces, mel_name: mels})[0]

    return run


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
    onnx: Path | str | None = None,
    chunk_bytes: int = CHUNK_BYTES,
) -> dict:
    """Lip-sync ``face`` to ``audio`` with the generator of ``checkpoint`` (or, with ``onnx``,
    its ONNX export run by ONNX Runtime on the CPU); writes ``out`` (mp4), streaming (see the
    module doc).  Inputs beyond ``limits`` are refused before they are decoded; ``out`` must
    not be (or lead through a link to) one of the inputs; ``batch_size`` (frames per generator
    call, and per decoded chunk up to ``chunk_bytes``) is at least 1.  Returns a summary
    (frames, durations, seconds, and per stage: frames, seconds, frames/s, share)."""
    import sys

    from tqdm import tqdm

    from ... import audio as A

    face, audio, out = Path(face), Path(audio), Path(out)
    src = check_inputs(checkpoint, face, audio, out, batch_size=batch_size, paste=paste, limits=limits)

    import torch

    t_start = time.perf_counter()
    st = _Stages()
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    g = load_generator(checkpoint, dev)
    run_onnx = _onnx_runner(onnx, torch.get_num_threads()) if onnx is not None else None
    if detector is None:
        from .faces import HaarDetector

        detector = HaarDetector()
    chunk = max(1, min(int(batch_size), int(chunk_bytes) // max(1, src.width * src.height * 3)))
    timing: dict = {}

    with tempfile.TemporaryDirectory(
        prefix=".lipsync.", dir=out.parent if out.parent.is_dir() else None
    ) as td:
        # --- audio and its mel windows
        wav_path = Path(td) / "audio.wav"
        wav = read_audio_input(audio, wav_path, limits)
        duration = len(wav) / 16000.0
        t = time.perf_counter()
        try:
            mel = melspectrogram_blocks(wav)
        except A.AudioError as e:
            raise LipSyncError(
                f"{audio}: the audio is shorter than one window ({duration:.3f} s; {e})"
            ) from None
        del wav
        if mel.shape[1] < A.MEL_STEP:
            raise LipSyncError(
                f"{audio}: the audio is shorter than one window ({duration:.3f} s < "
                f"{A.MEL_STEP / A.HP.frames_per_second:.2f} s: {mel.shape[1]} of {A.MEL_STEP} mel frames)"
            )
        n_out = max(1, round(duration * FPS))
        st.add("mel", t, n_out)

        # --- face boxes: one pass over the video (or the image), keeping only the detections
        t = time.perf_counter()
        if src.still:
            image = read_image(src)
            t = st.add("decode", t, 1)
            dets = detect_chunk(image, detector, str(face))
            t = st.add("detect", t, 1)
            n_video = 1
        else:
            dets = []
            for frames in face_chunks(src, chunk, limits, timing):
                t = time.perf_counter()
                dets += detect_chunk(frames, detector, str(face))
                t = st.add("detect", t, len(frames))
            n_video = len(dets)
            st.seconds["decode"] += timing.pop("decode", 0.0)
            st.frames["decode"] += n_video
        boxes = boxes_of_detections(dets, (src.height, src.width), pads, smooth, str(face))
        del dets

        # --- generate, paste, encode: output frame i shows video frame i % n_video
        h, w = src.height - src.height % 2, src.width - src.width % 2  # even sides for H.264
        still_crop = _crop96(image[0], boxes[0]) if src.still else None

        def source_frames() -> Iterator[np.ndarray]:
            """Chunks of the frames the output shows, in order (the video looped as needed)."""
            if src.still:
                for i0 in range(0, n_out, chunk):
                    yield np.repeat(image, min(chunk, n_out - i0), axis=0)
                return
            left = n_out
            while left > 0:
                with closing(face_chunks(src, chunk, limits, timing)) as one_pass:
                    for frames in one_pass:
                        yield frames[:left]
                        left -= len(frames[:left])
                        if left == 0:
                            break

        bar = tqdm(
            total=n_out, desc="lip-sync", unit="frame", disable=not progress, file=sys.stderr, leave=False
        )
        writer = M.Mp4Writer(out, w, h, FPS, wav_path)
        try:
            i0 = 0
            with torch.no_grad():
                for frames in source_frames():
                    t = time.perf_counter()
                    k = len(frames)
                    js = [(i0 + m) % n_video for m in range(k)]
                    if src.still:
                        crops = np.repeat(still_crop[None], k, axis=0)
                    else:
                        crops = np.stack([_crop96(frames[m], boxes[j]) for m, j in enumerate(js)])
                    crops = crops.astype(np.float32) / 255.0
                    masked = crops.copy()
                    masked[:, FACE // 2 :] = 0.0
                    x = np.ascontiguousarray(np.concatenate([masked, crops], axis=3).transpose(0, 3, 1, 2))
                    m_in = mel_windows(mel, k, first=i0)[:, None]
                    if run_onnx is not None:
                        pred = run_onnx(x, np.ascontiguousarray(m_in, dtype=np.float32))
                    else:
                        pred = g(torch.from_numpy(x).to(dev), torch.from_numpy(m_in).to(dev)).cpu().numpy()
                    pred = pred.transpose(0, 2, 3, 1) * 255.0
                    t = st.add("generate", t, k)
                    for m, j in enumerate(js):
                        _paste(frames[m], pred[m], boxes[j], paste)
                    batch = frames[:, :h, :w]
                    t = st.add("paste", t, k)
                    writer.write(batch)
                    i0 += k
                    bar.update(k)
            if not src.still:
                st.seconds["decode"] += timing.pop("decode", 0.0)
                st.frames["decode"] += n_out
            writer.close()
        except BaseException:
            writer.abort()
            raise
        finally:
            bar.close()
        st.seconds["encode"] += writer.seconds
        st.frames["encode"] += n_out
    info = M.probe(out, require_video=True, require_audio=True, limits=None)
    seconds = time.perf_counter() - t_start
    summary = {
        "out": str(out),
        "frames": n_out,
        "fps": FPS,
        "audio_seconds": round(duration, 4),
        "video_seconds": round(n_out / FPS, 4),
        "mp4_seconds": info.duration,
        "still_image": src.still,
        "face_frames": n_video,
        "paste": paste,
        "device": str(dev),
        "generator": "onnxruntime" if run_onnx is not None else "torch",
        "chunk_frames": chunk,
        "seconds": round(seconds, 2),
        "frames_per_second": round(n_out / seconds, 2),
        "stages": st.summary(),
    }
    if log:
        log(f"lip-synced {face} to {audio}: {n_out} frames → {out}")
    return summary
