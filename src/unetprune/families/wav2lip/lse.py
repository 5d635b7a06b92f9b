"""LSE-D / LSE-C: the lip-sync scores of the Wav2Lip paper (syncnet_python's protocol).

Protocol (joonson/syncnet_python ``SyncNetInstance.evaluate``, as Wav2Lip's
``calculate_scores_*`` scripts run it), on one clip:

1. video: face crops at 224 x 224, BGR 0..255 (as ``cv2.imread`` gives them), 25 fps;
   audio: 16 kHz mono, 13 MFCCs at 100 Hz (:func:`unetprune.audio.syncnet_mfcc`);
2. ``min_length = min(n_frames, floor(n_samples / 640))``; windows ``v = 0 .. min_length-6``
   (``lastframe = min_length - 5``, exclusive, as the reference): frames ``v .. v+4`` and MFCC
   columns ``4v .. 4v+19``; each through ``S`` → a 1024-d video and a 1024-d audio feature;
3. for each window ``v`` the Euclidean distance (``pairwise_distance``, eps 1e-6) between its
   video feature and the audio feature of window ``v + j - 15`` for ``j = 0 .. 30`` (audio
   features zero-padded by 15 on both sides, as ``calc_pdist``);
4. the mean over windows per ``j`` (31 values); **LSE-D** = their minimum, **LSE-C** =
   median − minimum, **offset** = ``15 - argmin``.  Also recorded: ``lse_c_at_0`` = median −
   the mean distance at offset 0 (the confidence of the clip *as given*: LSE-C is taken at the
   best offset, so a constant audio shift within ±15 frames moves the offset, not LSE-C).

Sign of the offset (the reference's): ``offset = +k`` when the audio is ``k`` frames *early*
(it leads the picture; delay the audio by ``k`` frames to resync), ``-k`` when it is ``k``
frames late.  Over a set of clips the scores are averaged (``lse_d``, ``lse_c``; also the mean
``|offset|``).  Lower LSE-D and higher LSE-C are better.

Backends (every result records ``backend`` and the weights' ``weights_sha256``):

* ``standard`` — ``S`` with the user's ``syncnet_v2.model`` (loaded with
  :func:`unetprune.weights.load_weights`, :func:`unetprune.families.wav2lip.syncnet.load_syncnet_s_weights`):
  numbers comparable with the papers' (given the same face crops; see below);
* ``standin`` — the offline, **labelled stand-in**: an ``S`` network trained here by
  :func:`train_lse_standin` on the *training* split of a talking-face set (the offline demo),
  seeded, a few minutes on CPU.  It is separate from the expert lip-sync discriminator used
  in the generator's loss (a model is never scored with the network it was trained
  against).  Its numbers are for relative comparisons on the same set only.

Face crops: a preprocessed clip folder (``0.jpg …`` + ``audio.wav``, the layout of
:func:`unetprune.families.wav2lip.lrs2.preprocess_lrs2`) is scored on its crops; an mp4 is decoded and
cropped by the same detector, padding and box smoothing as the preprocessing (OpenCV Haar by
default), then resized to 224 x 224.  syncnet_python's ``run_pipeline`` instead tracks faces
with S3FD and crops a square enlarged by 40 %: standard-backend numbers of this module are
comparable with published ones only up to that difference in cropping.

Stand-in training (:func:`train_lse_standin`): each step draws ``batch`` video windows of the
training clips and, per window, its in-sync audio window and ``negatives`` off-sync audio
windows of the same clip (offsets ``1 .. 15`` frames either way).  The loss is

* the cross-entropy of the in-sync window among them with logits ``-distance`` (the multi-way
  matching form of SyncNet's contrastive objective, on the very distance the protocol measures),
* plus ``3 x [d_sync² + (m - d_off)²] / m² + (m - d_missing)² / m²`` with ``m = 20``
  (:data:`STANDIN_MARGIN`): SyncNet's contrastive form with fixed target distances.  It pins the
  *absolute* scale of every distance.  Without it only the differences between the candidates of
  one video window are trained, and the video features grew free norms that differ from window
  to window (measured: 40 to 175 within one clip, LSE-D ~80): since the protocol averages over
  windows per offset and pads with zeros, which windows meet the padding at an offset then
  dominated the curve, and a 20-frame shift or swapped audio scored a higher LSE-C than the real
  audio.
* ``d_missing`` is the distance to *missing* audio: the zero vector (the protocol's padding) and
  windows of digital silence (the zero-filled part of a delayed or advanced track, built from
  the training clips' own audio).  Both are pulled to the off-sync distance ``m``, so missing audio
  weighs like any off-sync window and does not tilt the curve.

The lip branch sees luminance only (its first conv has the same seeded random weights for B, G
and R): luminance keeps the frozen features independent of skin tone, so a face of an unseen
colour (the demo's test identity grace_hopper) is no outlier of them.
Adam, seeded sampling, CPU, deterministic.  The checkpoint is self-describing (``torch.load`` with
``weights_only=True``): its ``state_dict`` uses syncnet_python's key names, so the file also
loads wherever ``syncnet_v2.model`` does.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ...errors import UserFacingError
from ...metrics import plugins

VSHIFT = 15
WINDOW = 5  # video frames per window
SPF = 640  # audio samples per video frame (16 kHz / 25 fps)
SIZE = 224
STANDARD, STANDIN = "standard", "standin"
BACKENDS = (STANDARD, STANDIN)
STANDIN_FORMAT = "unetprune-lse-standin"
STANDIN_FORMAT_VERSION = 1

LSE_DEFINITION = (
    "syncnet_python protocol: 5-frame windows of 224x224 face crops and 20 MFCC frames (13 coefficients, "
    "100 Hz); per window the Euclidean distance of the two 1024-d S features at audio offsets -15..+15 frames "
    "(zero-padded); mean over windows per offset; LSE-D = min, LSE-C = median - min, offset = 15 - argmin "
    "(+k: audio k frames early); set values are means over clips"
)


class LSEError(UserFacingError, ValueError):
    """A clip or weights file that cannot be scored (the message names it)."""


# ------------------------------------------------------------------------------------------
# the arithmetic (independent of the network)
# ------------------------------------------------------------------------------------------


def calc_pdist(video_feats: torch.Tensor, audio_feats: torch.Tensor, vshift: int = VSHIFT) -> torch.Tensor:
    """(n_windows, 2·vshift+1): distance of video feature ``i`` to audio feature ``i + j - vshift``
    (zeros outside), ``torch.nn.functional.pairwise_distance`` as syncnet_python's ``calc_pdist``."""
    v = torch.as_tensor(video_feats, dtype=torch.float32)
    a = torch.as_tensor(audio_feats, dtype=torch.float32)
    if v.dim() != 2 or a.dim() != 2 or v.shape[1] != a.shape[1]:
        raise ValueError(f"features must be (N, D) with one D, got {tuple(v.shape)} and {tuple(a.shape)}")
    win = 2 * vshift + 1
    ap = torch.nn.functional.pad(a, (0, 0, vshift, vshift))
    rows = [
        torch.nn.functional.pairwise_distance(v[i : i + 1].expand(win, -1), ap[i : i + win])
        for i in range(len(v))
    ]
    return torch.stack(rows) if rows else torch.zeros(0, win)


def sync_scores(dists: torch.Tensor | np.ndarray, vshift: int = VSHIFT) -> dict:
    """LSE-D, LSE-C and the offset from the (n_windows, 2·vshift+1) distances."""
    d = torch.as_tensor(np.asarray(dists), dtype=torch.float32)
    if d.dim() != 2 or d.shape[1] != 2 * vshift + 1 or d.shape[0] == 0:
        raise ValueError(f"distances must be (n_windows > 0, {2 * vshift + 1}), got {tuple(d.shape)}")
    mdist = d.mean(dim=0)
    minval, minidx = torch.min(mdist, 0)
    med = torch.median(mdist)  # torch's median: the lower middle value (31 values: the middle)
    return {
        "lse_d": float(minval),
        "lse_c": float(med - minval),
        "offset": int(vshift - int(minidx)),
        "lse_c_at_0": float(med - mdist[vshift]),
        "n_windows": int(d.shape[0]),
        "mean_dists": [round(float(x), 5) for x in mdist],
    }


def aggregate(per_clip: Sequence[dict]) -> dict:
    """Set values: means of LSE-D, LSE-C and |offset| over the clips."""
    if not per_clip:
        raise ValueError("no clip to average")
    return {
        "lse_d": float(np.mean([c["lse_d"] for c in per_clip])),
        "lse_c": float(np.mean([c["lse_c"] for c in per_clip])),
        "abs_offset": float(np.mean([abs(c["offset"]) for c in per_clip])),
        "lse_c_at_0": float(np.mean([c["lse_c_at_0"] for c in per_clip])),
        "n_clips": len(per_clip),
    }


def n_windows(n_frames: int, n_samples: int) -> int:
    """The reference's number of windows: ``min(n_frames, n_samples // 640) - 5``."""
    return min(int(n_frames), int(n_samples) // SPF) - WINDOW


# ------------------------------------------------------------------------------------------
# inputs
# ------------------------------------------------------------------------------------------


def to_s_frames(frames: np.ndarray, bgr: bool = True) -> np.ndarray:
    """Face crops (N, H, W, 3) uint8 → (N, 224, 224, 3) uint8 BGR (resized when needed)."""
    import cv2

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (N, H, W, 3), got {frames.shape}")
    if not bgr:
        frames = frames[..., ::-1]
    if frames.shape[1:3] == (SIZE, SIZE):
        return np.ascontiguousarray(frames, dtype=np.uint8)
    return np.stack([cv2.resize(np.ascontiguousarray(f), (SIZE, SIZE)) for f in frames]).astype(np.uint8)


def read_int16_wav(path: Path | str) -> np.ndarray:
    """A WAV file as int16 mono samples at 16 kHz (what syncnet_python feeds to its MFCC)."""
    from scipy.io import wavfile

    from ... import audio as A

    path = Path(path)
    try:
        rate, data = wavfile.read(path)
    except Exception as e:  # noqa: BLE001
        raise LSEError(f"{path}: not a readable WAV file ({e})") from None
    if data.dtype == np.int16 and data.ndim == 1 and rate == 16000:
        if data.size == 0:
            raise LSEError(f"{path}: the WAV file holds no samples")
        return data
    x = A.read_wav(path, 16000)
    return (np.clip(x, -1, 1) * 32767).round().astype(np.int16)


def load_clip_dir(clip_dir: Path | str) -> tuple[np.ndarray, np.ndarray]:
    """A preprocessed clip (``0.jpg …``, ``audio.wav``) → (frames (N, 224, 224, 3) BGR, int16 audio)."""
    import cv2

    from .datasets import list_frames

    d = Path(clip_dir)
    n = list_frames(d)
    if n == 0:
        raise LSEError(f"{d}: no face frames (0.jpg …) in this clip folder")
    frames = []
    for i in range(n):
        im = cv2.imread(str(d / f"{i}.jpg"))
        if im is None:
            raise LSEError(f"{d / f'{i}.jpg'}: unreadable face frame")
        frames.append(cv2.resize(im, (SIZE, SIZE)))
    return np.stack(frames), read_int16_wav(d / "audio.wav")


def frames_at_25fps(video: Path | str, limits=None) -> np.ndarray:
    """Every frame of a video as uint8 RGB (N, H, W, 3), resampled to 25 fps when its rate
    differs (as :func:`~.lipsync.lipsync` reads a face video); probed and decoded within
    ``limits`` (:class:`unetprune.data.media.MediaLimits`, default the defaults)."""
    from ...data.media import DEFAULT_LIMITS, decode_frames, probe
    from . import faces as T

    limits = limits or DEFAULT_LIMITS
    info = probe(video, require_video=True, limits=limits)
    resample = info.fps is None or abs(info.fps - T.FPS) > 0.01
    return decode_frames(video, fps=T.FPS if resample else None, limits=limits)[0]


def face_crops_of_video(video: Path | str, detector=None, limits=None) -> np.ndarray:
    """An mp4's frames at 25 fps → face crops (N, 224, 224, 3) BGR, cropped as the preprocessing
    crops (detector, reference padding, box smoothing); decoded within ``limits``."""
    import cv2

    from . import faces as T

    video = Path(video)
    frames = frames_at_25fps(video, limits)
    track = T.track_faces(frames, detector, where=str(video))
    if not track.found:
        raise LSEError(f"{video}: no face found in any of its {len(frames)} frames")
    out = [
        cv2.resize(np.ascontiguousarray(fr[y1:y2, x1:x2, ::-1]), (SIZE, SIZE))
        for fr, (x1, y1, x2, y2) in zip(frames, track.boxes)
    ]
    return np.stack(out)


def audio_of_video(video: Path | str, limits=None) -> np.ndarray:
    """An mp4's audio as int16 16 kHz mono (extracted by ffmpeg-python within ``limits``)."""
    import tempfile

    from ...data.media import DEFAULT_LIMITS, extract_audio

    with tempfile.TemporaryDirectory(prefix="lse-audio.") as td:
        wav = extract_audio(video, Path(td) / "audio.wav", sr=16000, limits=limits or DEFAULT_LIMITS)
        return read_int16_wav(wav)


def shift_audio(wav: np.ndarray, k: int) -> np.ndarray:
    """The samples delayed by ``k`` frames (advanced when ``k < 0``), zero-filled, same length."""
    x = np.asarray(wav)
    y = np.zeros_like(x)
    s = abs(int(k)) * SPF
    if s >= len(x):
        return y
    if k >= 0:
        y[s:] = x[: len(x) - s]
    else:
        y[: len(x) - s] = x[s:]
    return y


# ------------------------------------------------------------------------------------------
# the scorer
# ------------------------------------------------------------------------------------------


class LSEScorer:
    """``S`` (standard or stand-in) + the protocol.  Build with :meth:`load`."""

    def __init__(
        self,
        net,
        backend: str,
        weights: Path | str | None = None,
        weights_sha256: str | None = None,
        device: str | torch.device = "cpu",
        batch_size: int = 20,
        info: dict | None = None,
    ):
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.net = net.to(device).eval()
        self.backend, self.device, self.batch_size = backend, torch.device(device), int(batch_size)
        # on the CPU the lip branch's 3-D convolutions run faster on channels-last-3d tensors (the
        # same arithmetic in another order: features agree to float rounding; benchmarks/lse_speed.py)
        self.memory_format = torch.channels_last_3d if self.device.type == "cpu" else torch.contiguous_format
        self.net.lip_cnn.to(memory_format=self.memory_format)
        self.weights = str(weights) if weights is not None else None
        self.weights_sha256 = weights_sha256
        self.info = info or {}

    @classmethod
    def load(
        cls, backend: str, weights: Path | str, device: str | torch.device = "cpu", batch_size: int = 20
    ) -> LSEScorer:
        """``standard``: ``syncnet_v2.model``; ``standin``: a :func:`train_lse_standin` checkpoint."""
        from ...fileio import sha256_file

        if backend == STANDARD:
            from .syncnet import load_syncnet_s_weights

            net, info = load_syncnet_s_weights(weights), {"weights_file": "syncnet_v2.model (user-supplied)"}
        elif backend == STANDIN:
            net, info = load_standin(weights)
        else:
            raise LSEError(f"LSE backend {backend!r}: use 'standard' (syncnet_v2.model) or 'standin'")
        return cls(net, backend, weights, sha256_file(weights), device, batch_size, info)

    def describe(self) -> dict:
        d = {
            "backend": self.backend,
            "weights": self.weights,
            "weights_sha256": self.weights_sha256,
            "network": "syncnet_python S (13,631,616 parameters)",
            "vshift": VSHIFT,
            "definition": LSE_DEFINITION,
        }
        if self.backend == STANDIN:
            d["label"] = (
                "stand-in S trained offline on the training split of "
                f"{self.info.get('data', '?')} (relative comparisons only; not the expert of the "
                f"generator's loss)"
            )
        return d

    @torch.no_grad()
    def video_features(self, frames: np.ndarray, n: int) -> torch.Tensor:
        """Features of windows ``0 .. n-1`` of (N, 224, 224, 3) BGR uint8 frames."""
        out = []
        for i in range(0, n, self.batch_size):
            idx = range(i, min(n, i + self.batch_size))
            x = np.stack([frames[v : v + WINDOW] for v in idx])  # (B, 5, H, W, 3)
            t = torch.from_numpy(x).to(self.device).float().permute(0, 4, 1, 2, 3)  # (B, 3, 5, H, W)
            out.append(self.net.forward_lip(t.contiguous(memory_format=self.memory_format)).cpu())
        return torch.cat(out)

    @torch.no_grad()
    def audio_features(self, mfcc: np.ndarray, n: int) -> torch.Tensor:
        out = []
        for i in range(0, n, self.batch_size):
            x = np.stack([mfcc[:, 4 * v : 4 * v + 20] for v in range(i, min(n, i + self.batch_size))])
            out.append(self.net.forward_aud(torch.from_numpy(x)[:, None].to(self.device)).cpu())
        return torch.cat(out)

    def score(
        self,
        frames: np.ndarray,
        wav: np.ndarray,
        name: str = "clip",
        *,
        video_feats: torch.Tensor | None = None,
    ) -> dict:
        """One clip: frames (N, 224, 224, 3) BGR uint8 (other sizes are resized), int16 16 kHz audio.
        ``video_feats`` (from an earlier call's ``"_video_feats"``) skips the video branch."""
        from ... import audio as A

        n = n_windows(len(frames), len(wav))
        if n < 1:
            raise LSEError(
                f"{name}: too short for one LSE window ({len(frames)} frames, "
                f"{len(wav) / 16000:.2f} s of audio; at least {WINDOW + 1} frames of both are needed)"
            )
        if video_feats is None or len(video_feats) < n:
            video_feats = self.video_features(to_s_frames(frames), n)
        mfcc = A.syncnet_mfcc(np.asarray(wav))
        af = self.audio_features(mfcc, n)
        res = sync_scores(calc_pdist(video_feats[:n], af))
        return {"clip": name, **res, "_video_feats": video_feats}

    def score_clip_dir(self, clip_dir: Path | str, name: str | None = None) -> dict:
        frames, wav = load_clip_dir(clip_dir)
        return self.score(frames, wav, name or Path(clip_dir).name)

    def score_video(
        self, video: Path | str, audio: Path | str | None = None, detector=None, limits=None
    ) -> dict:
        """An mp4 (its own audio, or ``audio``: a WAV or a media file with audio).  Every input is
        probed and decoded within ``limits`` (:class:`unetprune.data.media.MediaLimits`; default
        the defaults), the limits of the ``--max-*`` flags of ``unetprune lse``."""
        from ...data.media import DEFAULT_LIMITS, probe

        limits = limits or DEFAULT_LIMITS
        frames = face_crops_of_video(video, detector, limits)
        if audio is None:
            wav = audio_of_video(video, limits)
        elif Path(audio).suffix.lower() == ".wav":
            probe(audio, require_audio=True, limits=limits)
            wav = read_int16_wav(audio)
        else:
            wav = audio_of_video(audio, limits)
        return self.score(frames, wav, str(video))


def public(res: dict) -> dict:
    """A per-clip result without its cached features (JSON-ready)."""
    return {k: v for k, v in res.items() if not k.startswith("_")}


def evaluate_clips(
    scorer: LSEScorer, clip_dirs: Sequence[Path | str], names: Sequence[str] | None = None
) -> dict:
    """Per-clip and averaged scores of preprocessed clip folders, with the backend's description."""
    per = []
    for i, d in enumerate(clip_dirs):
        per.append(public(scorer.score_clip_dir(d, names[i] if names else None)))
    return {**aggregate(per), **scorer.describe(), "clips": per}


def split_clips(data: Path | str, split: str) -> tuple[Path, list[str]]:
    """The preprocessed root and the clips of ``split`` (``data`` = a preprocessed folder or the
    demo folder holding ``preprocessed/``)."""
    data = Path(data)
    root = data / "preprocessed" if (data / "preprocessed" / f"{split}.txt").is_file() else data
    flist = root / f"{split}.txt"
    if not flist.is_file():
        raise LSEError(
            f"{data}: no {split}.txt filelist (a preprocessed talking-face folder, or the "
            f"`unetprune demo-talking` folder, was expected)"
        )
    from .lrs2 import clip_entries

    clips = clip_entries(flist, root)
    if not clips:
        raise LSEError(f"{flist}: lists no clip")
    return root, clips


# ------------------------------------------------------------------------------------------
# the protocols: own audio (in memory) and the Wav2Lip repository's published evaluation
# ------------------------------------------------------------------------------------------

OWN_AUDIO, PUBLISHED = "own-audio", "published"
PROTOCOLS = (OWN_AUDIO, PUBLISHED)
PUBLISHED_PADS = (0, 0, 0, 0)  # gen_videos_from_filelist.py's --pads default

#: the steps of ``own-audio`` that differ from the published evaluation
OWN_AUDIO_DIFFERENCES = (
    "audio: each clip's own audio (published: another clip's audio, the filelist's pairs)",
    "identity reference: the frame half a clip away (published: the same frame, as inference.py)",
    "face boxes: the preprocessing's crops, padded 0 10 0 0 (published: S3FD boxes, no padding)",
    "frames scored: the 96x96 generated crops in memory, resized to 224 (published: the whole "
    "frames of the written mp4, resized to 224)",
    "no video written (published: an mp4 per pair, encoded by ffmpeg)",
)


#: the FID backend whose preprocessing and weights are pytorch-fid's (the published FID's)
PUBLISHED_FID_BACKEND = "pytorch-fid-compat"


def published_differences(detector_name: str | None, fid_backend: str | None = None) -> list[str]:
    """The steps of this project's ``published`` protocol that still differ from the reference's,
    with the face detector ``detector_name`` and the FID over the written frames computed with
    ``fid_backend`` (None: no FID over the written frames)."""
    out = [
        "video encoding: H.264 + AAC by the bundled ffmpeg (published: DIVX AVI, then ffmpeg's default "
        "mp4 encoder at -q:v 1)",
        "a face video shorter than its audio source is looped (published: the pair is skipped)",
    ]
    if fid_backend is None:
        out.append(
            "FID: not computed over the written frames (published: pytorch-fid over every written "
            "frame; evaluate the fid metric beside lse)"
        )
    elif fid_backend != PUBLISHED_FID_BACKEND:
        out.append(
            f"FID over the written frames with the {fid_backend} backend (published: pytorch-fid; set "
            f"evaluate.fid_backend {PUBLISHED_FID_BACKEND})"
        )
    if detector_name != "s3fd":
        out.insert(
            0,
            f"face detector: {detector_name or 'haar'} (published: S3FD; set evaluate.lse_detector_weights)",
        )
    return out


def read_pairs(filelist: Path | str, root: Path | str) -> list[tuple[str, Path, Path]]:
    """``(line, audio source mp4, video mp4)`` of each line ``AUDIO_SOURCE VIDEO`` of a filelist in
    the reference's ``lrs2.txt`` format (names relative to ``root``, without ``.mp4``).  Names
    that leave ``root``, missing files and malformed lines are one-line :class:`LSEError` errors."""
    filelist, root = Path(filelist), Path(root)
    if not filelist.is_file():
        raise LSEError(f"evaluate.lse_filelist {filelist}: no such file (lines 'AUDIO_SOURCE VIDEO')")
    base = root.resolve()
    pairs = []
    for i, line in enumerate(filelist.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            raise LSEError(f"{filelist}:{i}: expected 'AUDIO_SOURCE VIDEO', got {line.strip()!r}")
        files = []
        for name in parts:
            f = (root / f"{name}.mp4").resolve()
            if not f.is_relative_to(base):
                raise LSEError(f"{filelist}:{i}: {name!r} leaves the video root {root}")
            if not f.is_file():
                raise LSEError(f"{filelist}:{i}: {root / (name + '.mp4')} does not exist")
            files.append(f)
        pairs.append((" ".join(parts), files[0], files[1]))
    if not pairs:
        raise LSEError(f"{filelist}: lists no pair")
    return pairs


def written_video(video: Path | str, limits=None) -> tuple[np.ndarray, np.ndarray]:
    """A written mp4 as the published scoring reads it: every whole frame (25 fps), BGR, resized to
    224 x 224, and its audio as int16 16 kHz (decoded within ``limits``)."""
    frames, wav = _written_frames(video, limits)
    return to_s_frames(frames, bgr=False), wav


def _written_frames(video: Path | str, limits=None) -> tuple[np.ndarray, np.ndarray]:
    """Every whole frame of a written mp4 (uint8 RGB) and its audio (int16 16 kHz)."""
    from ...data.media import DEFAULT_LIMITS, decode_frames

    frames, _ = decode_frames(video, limits=limits or DEFAULT_LIMITS)
    return frames, audio_of_video(video, limits)


def frame_features(frames: np.ndarray, extractor, batch_size: int = 32) -> np.ndarray:
    """FID features (N, D) of uint8 RGB frames (N, H, W, 3), whole, through ``extractor``
    (:func:`unetprune.metrics.fid.get_extractor`; it resizes to its input size)."""
    from ...metrics.fid import features_from_uint8

    x = torch.from_numpy(np.require(frames, np.uint8, ["C", "W"])).permute(0, 3, 1, 2)  # copied if read-only
    return features_from_uint8(
        (x[i : i + batch_size] for i in range(0, len(x), batch_size)), extractor, batch_size
    )


def written_frames_fid(generated: Sequence[np.ndarray], real: Sequence[np.ndarray], extractor) -> dict:
    """FID between the features of every written frame (``generated``: one (N, D) array per
    written mp4) and of every frame of the real face videos (``real``: one array per video)."""
    from ...metrics.fid import FeatureStats, fid_from_stats

    g, r = np.concatenate(list(generated)), np.concatenate(list(real))
    return {
        "value": fid_from_stats(FeatureStats.from_features(g), FeatureStats.from_features(r)),
        "backend": extractor.backend,
        "extractor": extractor.describe(),
        "n_generated_frames": int(len(g)),
        "n_real_frames": int(len(r)),
        "generated": "every frame of every written mp4, whole",
        "real": "every frame (25 fps) of each face video of the filelist, once per video, whole",
    }


def published_lse(
    scorer: LSEScorer,
    checkpoint: Path | str,
    pairs: Sequence[tuple[str, Path, Path]],
    workdir: Path | str,
    *,
    detector=None,
    device: str | None = None,
    fid_extractor=None,
    fid_batch_size: int = 32,
    limits=None,
) -> dict:
    """The published evaluation of the generator in ``checkpoint``: per pair, ``VIDEO`` lip-synced
    to ``AUDIO_SOURCE``'s audio (:func:`~.lipsync.lipsync`: the same frame as reference, boxes of
    ``detector`` without padding, smoothed over 5 frames, the whole face box pasted) written to
    ``workdir/<i>.mp4``, whose whole frames are scored.  A pair the generator cannot be run on
    (no face, unreadable media) is skipped and recorded, as the reference skips it.

    With ``fid_extractor`` (:func:`unetprune.metrics.fid.get_extractor`) the result's ``fid`` is
    the FID of every written frame against every frame of the pairs' face videos (each video
    once), whole frames through the extractor (:func:`written_frames_fid`); ``fid`` is None
    without it.  Every media input and written file is read within ``limits``."""
    from ...data.media import DEFAULT_LIMITS
    from .lipsync import lipsync

    limits = limits or DEFAULT_LIMITS
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    per, skipped = [], []
    fake_feats, real_feats = [], {}
    for i, (name, audio_src, video) in enumerate(pairs):
        out = workdir / f"{i}.mp4"
        try:
            lipsync(
                checkpoint,
                video,
                audio_src,
                out,
                detector=detector,
                pads=PUBLISHED_PADS,
                smooth=True,
                paste="face",
                device=device,
                limits=limits,
            )
        except UserFacingError as e:  # no face, unreadable media: the reference skips the pair
            skipped.append({"pair": name, "reason": str(e).splitlines()[0]})
            continue
        frames, wav = _written_frames(out, limits)
        if fid_extractor is not None:
            fake_feats.append(frame_features(frames, fid_extractor, fid_batch_size))
            if video not in real_feats:
                real_feats[video] = frame_features(
                    frames_at_25fps(video, limits), fid_extractor, fid_batch_size
                )
        frames = to_s_frames(frames, bgr=False)
        per.append({**public(scorer.score(frames, wav, name)), "video": str(out)})
    if not per:
        raise LSEError(
            f"no pair of the filelist could be generated ({skipped[0]['reason'] if skipped else 'none'})"
        )
    det = getattr(detector, "name", None) if detector is not None else "haar"
    fid = written_frames_fid(fake_feats, real_feats.values(), fid_extractor) if fake_feats else None
    return {
        **aggregate(per),
        **scorer.describe(),
        "protocol": PUBLISHED,
        "detector": det,
        "fid": fid,
        "differs_from_published": published_differences(det, fid["backend"] if fid else None),
        "clips": per,
        "skipped": skipped,
    }


# ------------------------------------------------------------------------------------------
# the stand-in
# ------------------------------------------------------------------------------------------


def _s_state_dict_reference_names(net) -> dict:
    from .syncnet import _S_RENAME

    back = {v: k for k, v in _S_RENAME.items()}
    out = {}
    for k, v in net.state_dict().items():
        head, _, rest = k.partition(".")
        out[f"{back[head]}.{rest}"] = v.detach().cpu().clone()
    return out


def load_standin(path: Path | str):
    """(``S`` in eval mode, the checkpoint's ``info``) from a stand-in checkpoint (weights_only)."""
    from .syncnet import SyncNetS, identify_sync_weights, load_syncnet_s_state_dict
    from ...weights import load_weights

    obj = load_weights(path)
    if not isinstance(obj, dict) or obj.get("format") != STANDIN_FORMAT:
        what = identify_sync_weights(obj)
        raise LSEError(
            f"{path}: not an LSE stand-in checkpoint (no '{STANDIN_FORMAT}' header"
            f"{'; this file is ' + what if what else ''}; "
            f"make one with `unetprune train-lse-standin`, or use --lse-backend standard "
            f"for syncnet_v2.model)"
        )
    if int(obj.get("format_version", 0)) > STANDIN_FORMAT_VERSION:
        raise LSEError(
            f"{path}: stand-in format version {obj['format_version']} is newer than this unetprune"
        )
    try:
        sd = load_syncnet_s_state_dict(obj["state_dict"])
    except (ValueError, KeyError) as e:
        raise LSEError(f"{path}: the stand-in's weights do not fit S ({e})") from None
    net = SyncNetS()
    net.load_state_dict(sd)
    return net.eval(), dict(obj.get("info") or {})


def _load_training_clips(
    root: Path, clips: Sequence[str], log=None
) -> list[tuple[np.ndarray, np.ndarray, int, list[np.ndarray]]]:
    """(frames, MFCC, windows, missing-audio MFCC windows) of each usable clip."""
    from ... import audio as A

    out = []
    for c in clips:
        frames, wav = load_clip_dir(root / c)
        n = n_windows(len(frames), len(wav))
        if n < 2 * WINDOW:
            if log:
                log(f"skipped {c}: too short ({n} windows)")
            continue
        out.append((frames, A.syncnet_mfcc(wav), n, _silent_windows(A.syncnet_mfcc, wav, n)))
    return out


LOWER = 18  # S's lip_cnn[:18] / audio_cnn[:18] (every conv but the last of each branch): random, frozen
STANDIN_MARGIN = 20.0  # target distance of off-sync and missing audio (the in-sync target is 0)
STANDIN_DIST_WT = 3.0  # weight of the fixed-target distance terms beside the cross-entropy
MISSING_SHIFT = 20  # frames of digital silence in the delayed / advanced tracks of the missing-audio pool


def _calibrate_bn(module: torch.nn.Module, batches) -> None:
    """Set the BatchNorm statistics of a frozen random ``module`` to the data's (cumulative average)."""
    bns = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    module.train()
    with torch.no_grad():
        for x in batches:
            module(x)
    for m in bns:
        m.momentum = 0.1
    module.eval()


def _silent_windows(mfcc_of, wav: np.ndarray, n: int) -> list[np.ndarray]:
    """MFCC windows (13, 20) of the clip's track delayed and advanced by :data:`MISSING_SHIFT`
    frames (zero-filled) that are more than a fifth digital silence: what missing audio looks like."""
    out = []
    for k in (MISSING_SHIFT, -MISSING_SHIFT):
        w = shift_audio(wav, k)
        m = mfcc_of(w)
        for v in range(n):
            if (w[v * SPF : (v + WINDOW) * SPF] == 0).mean() > 0.2:
                out.append(m[:, 4 * v : 4 * v + 20])
    return out


def _lip_tensor(frames: np.ndarray, starts, sigmas=None) -> torch.Tensor:
    """Video windows at ``starts`` as (B, 3, WINDOW, H, W) floats; with ``sigmas``, each window
    Gaussian-blurred by its own sigma (pixels; below 0.05 = sharp)."""
    wins = [frames[v : v + WINDOW] for v in starts]
    if sigmas is not None:
        import cv2

        wins = [
            np.stack([cv2.GaussianBlur(f, (0, 0), float(s)) for f in w]) if s > 0.05 else w
            for w, s in zip(wins, sigmas)
        ]
    return torch.from_numpy(np.stack(wins)).float().permute(0, 4, 1, 2, 3)


def train_lse_standin(
    data: Path | str,
    out: Path | str,
    *,
    steps: int = 600,
    batch: int = 16,
    negatives: int = 10,
    lr: float = 1e-3,
    seed: int = 0,
    threads: int | None = None,
    split: str = "train",
    video_stride: int = 2,
    blur: float = 4.7,
    progress: bool = True,
    log=None,
) -> dict:
    """Train the stand-in ``S`` on ``split`` of a preprocessed talking-face set and write its
    self-describing checkpoint to ``out`` (atomic).  Returns the checkpoint's ``info``.

    To fit a few CPU minutes, every conv of ``S`` but the last of each branch keeps its seeded
    random initialisation (its BatchNorm statistics set to the training data's; the lip branch's
    first conv shares its weights across B, G, R: luminance only); their outputs are computed
    once (video windows every ``video_stride`` frames, every audio window, the missing-audio
    windows), and the last conv of each branch and both fully connected heads are trained on
    them with the objective of the module notes (cross-entropy + fixed target distances).

    ``blur`` > 0 also caches every video window Gaussian-blurred (its sigma drawn per window in
    [0, ``blur``] pixels of the 224 px crop) and trains on either copy with even odds, so that
    sync is read from the mouth's motion rather than from the frames' sharpness (a generator's
    frames are softer than the crisp training frames; docs/method.md, "Stand-in LSE network")."""
    import sys

    from tqdm import tqdm

    from ...checkpoint import package_versions
    from ...fileio import atomic_torch_save, sha256_file
    from .syncnet import SyncNetS

    if steps < 1 or batch < 1 or negatives < 1 or video_stride < 1:
        raise LSEError("steps, batch, negatives and video_stride must be positive")
    if not 0.0 <= blur <= 16.0:
        raise LSEError(f"blur {blur}: the largest blur sigma must be in [0, 16] pixels of the 224 px crop")
    root, clips = split_clips(data, split)
    if threads:
        torch.set_num_threads(int(threads))
    t0 = time.time()
    set_ = _load_training_clips(root, clips, log)
    if not set_:
        raise LSEError(f"{root}: no {split} clip is long enough to train the LSE stand-in")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = SyncNetS()
    with torch.no_grad():  # luminance only: one random kernel for B, G and R
        w = net.lip_cnn[0].weight
        w.copy_(w.mean(dim=1, keepdim=True).expand_as(w))
    lip_lo, aud_lo = net.lip_cnn[:LOWER], net.audio_cnn[:LOWER]
    for p in list(lip_lo.parameters()) + list(aud_lo.parameters()):
        p.requires_grad_(False)
    # BatchNorm statistics of the frozen parts, then their outputs, once
    calib = [_lip_tensor(fr, range(i, min(n, i + 8))) for fr, _, n, _ in set_ for i in range(0, n, 8 * 4)]
    _calibrate_bn(lip_lo, calib)
    aud_windows = [
        torch.from_numpy(np.stack([m[:, 4 * w : 4 * w + 20] for w in range(n)]))[:, None]
        for _, m, n, _ in set_
    ]
    _calibrate_bn(aud_lo, aud_windows)
    lip_feats, blur_feats, aud_feats, starts = [], [], [], []
    with torch.no_grad():
        for (fr, _, n, _), aw in zip(set_, aud_windows):
            st = list(range(0, n, video_stride))
            lip_feats.append(
                torch.cat([lip_lo(_lip_tensor(fr, st[i : i + 8])) for i in range(0, len(st), 8)])
            )
            if blur > 0:
                sig = rng.uniform(0.0, blur, len(st))
                blur_feats.append(
                    torch.cat(
                        [lip_lo(_lip_tensor(fr, st[i : i + 8], sig[i : i + 8])) for i in range(0, len(st), 8)]
                    )
                )
            aud_feats.append(aud_lo(aw))
            starts.append(st)
        silent = [w for *_, ws in set_ for w in ws]
        missing = (
            aud_lo(torch.from_numpy(np.stack(silent))[:, None])
            if silent
            else torch.zeros(0, *aud_feats[0].shape[1:])
        )
    t_cache = time.time() - t0
    lip_hi, aud_hi = net.lip_cnn[LOWER:], net.audio_cnn[LOWER:]
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    history = []
    bar = tqdm(
        range(steps), desc="LSE stand-in", unit="step", disable=not progress, file=sys.stderr, leave=False
    )
    for step in bar:
        lip_hi.train(), aud_hi.train(), net.lip_fc.train(), net.audio_fc.train()
        vx, ax = [], []
        for _ in range(batch):
            ci = int(rng.integers(len(set_)))
            n = set_[ci][2]
            j = int(rng.integers(len(starts[ci])))
            v = starts[ci][j]
            offs = [d for d in range(-VSHIFT, VSHIFT + 1) if d and 0 <= v + d < n]
            neg = rng.choice(offs, size=negatives, replace=len(offs) < negatives)
            vx.append((blur_feats if blur_feats and rng.random() < 0.5 else lip_feats)[ci][j])
            ax.extend(aud_feats[ci][w] for w in [v, *(v + int(d) for d in neg)])
        vf = net.lip_fc(lip_hi(torch.stack(vx)).flatten(1))
        af = net.audio_fc(aud_hi(torch.stack(ax)).flatten(1)).view(batch, negatives + 1, -1)
        dist = torch.linalg.vector_norm(vf[:, None] - af, dim=2)
        # missing audio: 2 digital-silence windows per video window, and the protocol's zero padding
        nf = torch.zeros(batch, 1, vf.shape[1])
        if len(missing):
            pick = torch.from_numpy(rng.integers(0, len(missing), 2 * batch))
            nf = torch.cat([net.audio_fc(aud_hi(missing[pick]).flatten(1)).view(batch, 2, -1), nf], 1)
        d_missing = torch.linalg.vector_norm(vf[:, None] - nf, dim=2)
        m = STANDIN_MARGIN
        loss = (
            torch.nn.functional.cross_entropy(-dist, torch.zeros(batch, dtype=torch.long))
            + STANDIN_DIST_WT * ((dist[:, 0] ** 2).mean() + ((m - dist[:, 1:]) ** 2).mean()) / m**2
            + ((m - d_missing) ** 2).mean() / m**2
        )
        if not torch.isfinite(loss):
            raise LSEError(f"the LSE stand-in's loss became {float(loss)} at step {step}; lower --lr")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        acc = float((dist.detach().argmin(dim=1) == 0).float().mean())
        history.append((float(loss.detach()), acc))
        bar.set_postfix(loss=f"{history[-1][0]:.3f}", acc=f"{acc:.2f}")
    bar.close()
    net.eval()
    last = history[-max(1, steps // 5) :]
    info = {
        "backend": STANDIN,
        "data": str(Path(data)),
        "split": split,
        "clips": list(clips),
        "n_clips_used": len(set_),
        "steps": steps,
        "batch": batch,
        "negatives": negatives,
        "lr": lr,
        "seed": seed,
        "video_stride": video_stride,
        "blur": blur,
        "trained": f"lip_cnn[{LOWER}:], audio_cnn[{LOWER}:], lip_fc, audio_fc (the rest: seeded random "
        f"init, BatchNorm statistics of the training data)",
        "objective": "cross-entropy of the in-sync audio window among 1 + negatives windows of the same "
        "clip (offsets 1..15 frames), logits = -Euclidean distance; plus "
        f"{STANDIN_DIST_WT:g} x [d_sync^2 + (m - d_off)^2] / m^2 + (m - d_missing)^2 / m^2, m = "
        f"{STANDIN_MARGIN:g} (missing audio: the zero padding and digital silence); lip branch "
        "on luminance",
        "n_missing_windows": int(len(missing)),
        "final_loss": float(np.mean([h[0] for h in last])),
        "final_accuracy": float(np.mean([h[1] for h in last])),
        "chance_accuracy": 1.0 / (negatives + 1),
        "seconds": round(time.time() - t0, 1),
        "seconds_features": round(t_cache, 1),
        "threads": torch.get_num_threads(),
        "note": "separate from the expert lip-sync discriminator of the generator's loss",
    }
    ckpt = {
        "format": STANDIN_FORMAT,
        "format_version": STANDIN_FORMAT_VERSION,
        "arch": "syncnet_python S",
        "state_dict": _s_state_dict_reference_names(net),
        "info": info,
        "versions": package_versions(),
    }
    atomic_torch_save(ckpt, out)
    info["weights_sha256"] = sha256_file(out)
    return info


# ------------------------------------------------------------------------------------------
# the metric plug-in
# ------------------------------------------------------------------------------------------


class LSEMetric(plugins.Metric):
    """LSE-D / LSE-C / offset of generated talking-face clips (per clip and averaged).

    Contract with the evaluation set (the Wav2Lip evaluation wiring): ``eval_set.clips``
    is a list of dicts ``{"name", "n_frames", "audio"}`` (``audio``: the clip's WAV file), and
    ``fakes`` holds the generated face frames of all clips in order (uint8 (N, 3, H, W), RGB).
    Config: ``ctx.ev["lse_backend"]`` (``standin`` | ``standard``) and ``ctx.ev["lse_weights"]``
    (the stand-in checkpoint or ``syncnet_v2.model``).  ``lse`` is None when no weights are set.
    ``ctx.ev["lse_protocol"]``: ``own-audio`` scores ``fakes`` with each clip's own audio;
    ``published`` ignores ``fakes`` and runs :func:`published_lse` on the generator over the
    pairs of ``evaluate.lse_filelist`` (videos under ``evaluate.lse_video_root``, default
    ``data.source``), reading the media within ``data.media``'s limits; when the Evaluator also
    runs the ``fid`` plug-in, its extractor gives the result's ``fid`` over every written frame
    (None otherwise).  Every result records its ``protocol`` and ``differs_from_published``.
    """

    name, keys = "lse", ("lse",)
    setup_rank = 0  # a missing weights file fails before anything expensive

    def setup(self, eval_set, ctx):
        super().setup(eval_set, ctx)
        ev = getattr(ctx, "ev", None) or {}
        weights = ev.get("lse_weights")
        cfg = getattr(ctx, "cfg", None)
        if (
            not weights
            and ev.get("lse_backend", STANDIN) == STANDIN
            and cfg is not None
            and "experiment" in cfg
        ):
            from ...layout import Layout

            weights = Layout.from_config(cfg).lse_standin  # trained by the workflow (rule lse_standin)
            if not Path(weights).is_file():
                raise LSEError(
                    f"{weights}: no stand-in LSE network yet; train it with `unetprune train-lse-standin "
                    f"--data <talking-face folder> --out {weights}` (the workflow does) or set "
                    f"evaluate.lse_weights"
                )
        self.scorer = None
        if weights:
            self.scorer = LSEScorer.load(
                ev.get("lse_backend", STANDIN), weights, device=getattr(ctx, "device", "cpu")
            )
        self.protocol = ev.get("lse_protocol", OWN_AUDIO)
        if self.protocol not in PROTOCOLS:
            raise LSEError(f"evaluate.lse_protocol {self.protocol!r}: use one of {', '.join(PROTOCOLS)}")
        self.pairs, self.detector = [], None
        if self.scorer is not None and self.protocol == PUBLISHED:
            root = ev.get("lse_video_root") or ((cfg or {}).get("data") or {}).get("source")
            if not ev.get("lse_filelist") or not root:
                raise LSEError(
                    "evaluate.lse_protocol published needs evaluate.lse_filelist (lrs2.txt format) and "
                    "evaluate.lse_video_root (or data.source)"
                )
            self.pairs = read_pairs(ev["lse_filelist"], root)
            if ev.get("lse_detector_weights"):
                from .faces import load_detector

                self.detector = load_detector("s3fd", ev["lse_detector_weights"])
        self.wavs = (
            [read_int16_wav(c["audio"]) for c in eval_set.clips]
            if self.scorer and self.protocol == OWN_AUDIO
            else []
        )

    def _media_limits(self):
        """The limits of the config's ``data.media`` (the defaults without a config)."""
        from ...data.media import DEFAULT_LIMITS, MediaLimits

        cfg = getattr(self.ctx, "cfg", None) or {}
        media = (cfg.get("data") or {}).get("media") or {}
        return (
            MediaLimits(**{k: media[k] for k in ("max_seconds", "max_frames", "max_pixels") if k in media})
            if media
            else DEFAULT_LIMITS
        )

    def score(self, fakes, generator):
        if self.scorer is None:
            return {"lse": None}
        if self.protocol == PUBLISHED:
            import tempfile

            from ...checkpoint import save_generator

            fid = (getattr(self.ctx, "metrics", None) or {}).get("fid")
            with tempfile.TemporaryDirectory(prefix="lse-published.") as td:
                save_generator(Path(td) / "G.pt", generator)
                res = published_lse(
                    self.scorer,
                    Path(td) / "G.pt",
                    self.pairs,
                    Path(td) / "videos",
                    detector=self.detector,
                    device=str(getattr(self.ctx, "device", "cpu")),
                    fid_extractor=getattr(fid, "extractor", None),
                    fid_batch_size=int(getattr(fid, "batch_size", 32)),
                    limits=self._media_limits(),
                )
            for c in res["clips"]:
                c.pop("video", None)  # the temporary files are gone
            return {"lse": res}
        x = fakes.detach().cpu().numpy().transpose(0, 2, 3, 1)[..., ::-1]  # RGB → BGR, (N, H, W, 3)
        per, i = [], 0
        for c, wav in zip(self.eval_set.clips, self.wavs):
            n = int(c["n_frames"])
            per.append(public(self.scorer.score(x[i : i + n], wav, c["name"])))
            i += n
        return {
            "lse": {
                **aggregate(per),
                **self.scorer.describe(),
                "protocol": OWN_AUDIO,
                "differs_from_published": list(OWN_AUDIO_DIFFERENCES),
                "clips": per,
            }
        }


plugins.register_metric(LSEMetric)
