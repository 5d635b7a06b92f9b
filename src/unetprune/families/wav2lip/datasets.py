"""**Datasets** (:class:`TalkingFaceDataset`): the reference ``wav2lip_train.py`` /
``color_syncnet_train.py`` samples, seeded and deterministic (see its docstring).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...data.aligned import DataError
from .lrs2 import SAMPLE_RATE, clip_entries


def list_frames(clip_dir: Path) -> int:
    """Number of consecutive frames ``0.jpg .. (n-1).jpg`` in a preprocessed clip folder."""
    n = 0
    names = {p.name for p in clip_dir.glob("*.jpg")}
    while f"{n}.jpg" in names:
        n += 1
    return n


class TalkingFaceDataset:
    """Samples of a preprocessed talking-face set (the reference ``wav2lip_train.py`` /
    ``color_syncnet_train.py`` datasets), deterministic from ``(seed, epoch, index)``.  The
    entries of ``<root>/<split>.txt`` must stay inside ``root`` (``../x`` is refused, one line).

    An index is one valid (clip, start frame) pair: frames ``start .. start+T-1`` exist, the
    expert's mel window for ``start`` fits and the generator's per-frame windows exist
    (``start >= 1``); clips of at most ``3 T`` frames are skipped (as the reference: at least 16
    for ``T = 5``).  A second window (``wrong``) of the same clip is drawn at least
    ``min_offset`` frames away (default 1: any other window, as the reference; a larger value
    keeps the off-sync label unambiguous).  Frames are read with cv2 (BGR, as the reference),
    resized to ``img_size`` with cv2's default bilinear filter (``INTER_LINEAR``, as the
    reference) and scaled to [0, 1].

    ``mode="generator"`` → dict ``face`` (6, T, S, S): the target window with its lower half
    zeroed, then the wrong window as the identity reference; ``target`` (3, T, S, S);
    ``indiv_mels`` (T, 1, 80, 16) (:func:`unetprune.audio.segmented_mels`); ``mel`` (1, 80, 16)
    (the expert window of the target).

    ``mode="expert"`` → dict ``faces`` (3T, S/2, S): the lower halves of the target window
    (label 1) or of the wrong window (label 0), frames stacked on channels as the reference;
    ``mel`` (1, 80, 16) of the target start; ``label`` (1,) float.  Half the samples are in
    sync (the label is drawn per sample).
    """

    def __init__(
        self,
        root: Path | str,
        split: str = "train",
        *,
        mode: str = "generator",
        T: int = 5,
        img_size: int = 96,
        seed: int = 0,
        min_offset: int = 1,
        max_windows_per_clip: int | None = None,
    ):
        from ... import audio as A

        if mode not in ("generator", "expert"):
            raise ValueError(f"mode must be 'generator' or 'expert', got {mode!r}")
        self.root, self.split, self.mode, self.T = Path(root), split, mode, T
        self.img_size, self.seed, self.min_offset, self.epoch = img_size, seed, min_offset, 0
        self._A = A
        flist = self.root / f"{split}.txt"
        if not flist.is_file():
            raise DataError(f"{flist}: no such filelist (run `unetprune data preprocess-lrs2` first)")
        self.clips: list[str] = clip_entries(flist, self.root)  # entries that leave root are refused
        self._mels: dict[int, np.ndarray] = {}
        self.n_frames: list[int] = []
        self.index: list[tuple[int, int]] = []
        for ci, c in enumerate(self.clips):
            d = self.root / c
            n = list_frames(d)
            self.n_frames.append(n)
            if n <= 3 * T or not (d / "audio.wav").is_file():  # the reference skips <= 3T frames
                continue
            mel_len = self._mel_len(d)
            starts = [
                s
                for s in range(1, n - T + 1)
                if A.mel_window_start(s + T - 2) + A.MEL_STEP <= mel_len
                and A.mel_window_start(s) + A.MEL_STEP <= mel_len
            ]
            if max_windows_per_clip:
                starts = starts[:: max(1, len(starts) // max_windows_per_clip)][:max_windows_per_clip]
            self.index.extend((ci, s) for s in starts)
        if not self.index:
            raise DataError(f"{self.root}: split {split!r} has no usable {T}-frame window")

    def _mel_len(self, d: Path) -> int:
        from scipy.io import wavfile

        rate, data = wavfile.read(d / "audio.wav", mmap=True)
        n = round(len(data) * SAMPLE_RATE / rate)
        return 1 + n // self._A.HP.hop_size

    def mel(self, ci: int) -> np.ndarray:
        m = self._mels.get(ci)
        if m is None:
            m = self._A.melspectrogram(
                self._A.read_wav(self.root / self.clips[ci] / "audio.wav", SAMPLE_RATE)
            )
            self._mels[ci] = m
        return m

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.index)

    def _window(self, ci: int, start: int) -> np.ndarray:
        import cv2

        d = self.root / self.clips[ci]
        out = []
        for f in range(start, start + self.T):
            p = d / f"{f}.jpg"
            im = cv2.imread(str(p))
            if im is None:
                raise DataError(f"{p}: unreadable face frame")
            out.append(cv2.resize(im, (self.img_size, self.img_size), interpolation=cv2.INTER_LINEAR))
        return np.stack(out).astype(np.float32) / 255.0  # (T, S, S, 3) BGR

    def lower_halves(self, ci: int, start: int) -> np.ndarray:
        """The expert's input for a window: its frames' lower halves stacked on channels,
        (3T, S/2, S) float32 BGR in [0, 1]."""
        x = np.concatenate(list(self._window(ci, start)), axis=2).transpose(2, 0, 1)  # (3T, S, S)
        return np.ascontiguousarray(x[:, x.shape[1] // 2 :])

    def _wrong_start(self, ci: int, start: int, rng: np.random.Generator) -> int:
        n = self.n_frames[ci]
        cands = [s for s in range(n - self.T + 1) if abs(s - start) >= self.min_offset]
        if not cands:
            cands = [s for s in range(n - self.T + 1) if s != start]
        return int(cands[int(rng.integers(len(cands)))])

    def __getitem__(self, i: int) -> dict:
        import torch

        ci, start = self.index[i]
        rng = np.random.default_rng([self.seed, self.epoch, i])
        wrong = self._wrong_start(ci, start, rng)
        mel = self.mel(ci)
        m = self._A.crop_mel_window(mel, start)
        if self.mode == "expert":
            label = float(rng.integers(2))
            x = self.lower_halves(ci, start if label == 1.0 else wrong)
            return {
                "faces": torch.from_numpy(x),
                "mel": torch.from_numpy(m.copy())[None],
                "label": torch.tensor([label]),
                "clip": self.clips[ci],
                "start": start,
                "other": wrong,
            }
        target = self._window(ci, start).transpose(3, 0, 1, 2)  # (3, T, S, S)
        ref = self._window(ci, wrong).transpose(3, 0, 1, 2)
        masked = target.copy()
        masked[:, :, self.img_size // 2 :] = 0.0
        indiv = self._A.segmented_mels(mel, start, self.T)
        return {
            "face": torch.from_numpy(np.ascontiguousarray(np.concatenate([masked, ref], axis=0))),
            "target": torch.from_numpy(np.ascontiguousarray(target)),
            "indiv_mels": torch.from_numpy(indiv.copy())[:, None],
            "mel": torch.from_numpy(m.copy())[None],
            "clip": self.clips[ci],
            "start": start,
            "other": wrong,
        }


class ClipWindowGroups:
    """The lip-sync expert's in-clip pair sampling: item ``i`` is ``k`` in-sync windows of one
    clip of an expert-mode :class:`TalkingFaceDataset` ``ds``.  Each epoch a clip's windows are
    shuffled (seeded by ``(seed, epoch, clip)``) and cut into groups of ``k`` (a remainder is
    left out that epoch), so the groups cover different windows every epoch; the number of
    groups is fixed.  A clip with fewer than ``k`` windows contributes none.

    Item: ``faces`` (k, 3T, S/2, S) (:meth:`TalkingFaceDataset.lower_halves`), ``mel``
    (k, 1, 80, 16) (each window's own audio), ``start`` (k,) long.  Within an item, face window
    ``j`` with audio window ``i`` is an off-sync pair when their starts differ by at least
    ``ds.min_offset`` frames (:func:`~unetprune.families.wav2lip.train.in_clip_pair_bce`)."""

    def __init__(self, ds: TalkingFaceDataset, k: int):
        if ds.mode != "expert":
            raise ValueError("ClipWindowGroups needs an expert-mode TalkingFaceDataset")
        if k < 2:
            raise ValueError(f"windows per clip must be at least 2, got {k}")
        self.ds, self.k, self.split = ds, int(k), ds.split
        self.samples_per_item = self.k  # train.batch_size counts windows
        starts: dict[int, list[int]] = {}
        for ci, s in ds.index:
            starts.setdefault(ci, []).append(s)
        self.starts = starts
        self.groups = [(ci, j) for ci in sorted(starts) for j in range(len(starts[ci]) // self.k)]
        if not self.groups:
            raise DataError(
                f"{ds.root}: no {ds.split} clip has {self.k} windows; lower train.expert.windows_per_clip"
            )

    def set_epoch(self, epoch: int) -> None:
        self.ds.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, i: int) -> dict:
        import torch

        ci, j = self.groups[i]
        order = np.random.default_rng([self.ds.seed, self.ds.epoch, ci]).permutation(self.starts[ci])
        starts = [int(s) for s in order[j * self.k : (j + 1) * self.k]]
        mel = self.ds.mel(ci)
        faces = np.stack([self.ds.lower_halves(ci, s) for s in starts])
        mels = np.stack([self.ds._A.crop_mel_window(mel, s)[None] for s in starts])
        return {
            "faces": torch.from_numpy(faces),
            "mel": torch.from_numpy(np.ascontiguousarray(mels)),
            "start": torch.tensor(starts, dtype=torch.long),
            "clip": self.ds.clips[ci],
        }


# ==========================================================================================
# the evaluation set
# ==========================================================================================

#: how an evaluated frame gets its identity reference (the generator's second 3 channels)
EVAL_REFERENCE = (
    "the frame half a clip away in the same clip (frame (i + n//2) mod n), so the "
    "mouth of the target frame is never shown to the generator; the reference "
    "inference.py uses the frame itself, which leaks the mouth being scored"
)


@dataclass
class TalkingEvalSet:
    """One split of a preprocessed talking-face folder as the Evaluator sees it: every frame of
    every clip, in order (whole clips, the last one cut at ``evaluate.max_images`` frames).

    Frame ``i`` of a clip is generated from its lower-half-masked face, the identity reference
    of :data:`EVAL_REFERENCE` and its mel window (the reference mapping, frame ``i`` → mel
    column ``int(80 i / 25)``, held flush with the end).  Faces are BGR as the reference
    Wav2Lip reads them; ``targets`` are the real faces as RGB uint8 (N, 3, 96, 96) — what FID,
    KID, the diversity check and the paired metrics compare against.  The paired metrics score
    the lower half only (``paired_rows``: the part the generator has to produce); LSE scores
    each clip's generated frames with its own audio (``clips``).  Implements the evaluation-set
    protocol of :class:`unetprune.evaluate.EvalSet` (``batches``, ``quantize_outputs``, ``display_inputs``)."""

    split: str
    root: Path
    dataset: str
    direction: str
    image_size: int
    files: list[Path]
    faces: "np.ndarray"  # (N, S, S, 3) uint8 BGR, every evaluated frame
    refs: "np.ndarray"  # (N,) index into faces of each frame's reference
    mels: "np.ndarray"  # (N, 80, 16) float32
    clips: list[dict]  # {"name", "n_frames", "audio"} in order
    files_sha256: str
    reference: str = EVAL_REFERENCE
    paired_region: str = "lower half of the face (the masked part the generator produces)"
    quantize: str = "round"  # evaluate.quantize (truncate = the reference inference.py's uint8 cast)

    @property
    def n(self) -> int:
        return len(self.files)

    @property
    def paired_rows(self) -> slice:
        return slice(self.image_size // 2, self.image_size)

    @property
    def targets(self):
        import torch

        return torch.from_numpy(np.ascontiguousarray(self.faces[: self.n, ..., ::-1].transpose(0, 3, 1, 2)))

    @property
    def copied_references(self):
        """The "copy the reference frame" baseline: each frame's identity reference as RGB uint8
        (N, 3, S, S), the very frame the generator is given."""
        import torch

        return torch.from_numpy(np.ascontiguousarray(self.faces[self.refs][..., ::-1].transpose(0, 3, 1, 2)))

    def generate(self, G, mode: str = "eval", seed: int = 0, batch_size: int = 16):
        """Every frame through ``G`` (on its device; generation mode ``mode``, through the
        Evaluator's generation loop :func:`unetprune.translate.generate_batches`): RGB uint8
        (N, 3, S, S), the frames the Evaluator scores."""
        from contextlib import closing

        import torch

        from ...translate import generate_batches

        with closing(generate_batches(G, self.batches(batch_size), mode, seed)) as ys:
            return torch.cat([self.quantize_outputs(y).cpu() for y in ys])

    def region_l1(self, frames, rows: slice | None = None) -> float:
        """Mean |frames − targets| over ``rows`` (default: the scored lower half), in [0, 1] units."""
        rows = self.paired_rows if rows is None else rows
        return float((frames[:, :, rows].float() - self.targets[:, :, rows].float()).abs().mean() / 255.0)

    @classmethod
    def load(cls, cfg: dict, split: str, root: Path | str, img_size: int = 96) -> "TalkingEvalSet":
        import cv2

        from ... import audio as A
        from ...metrics.fid import file_list_hash
        from .lipsync import mel_windows

        root = Path(root)
        pre = root / "preprocessed"
        if (pre / f"{split}.txt").is_file():
            root = pre
        flist = root / f"{split}.txt"
        if not flist.is_file():
            raise DataError(
                f"{flist}: no talking-face {split} split (build it with `unetprune demo-talking` or "
                f"`unetprune data preprocess-lrs2`)"
            )
        limit = cfg["evaluate"].get("max_images")
        names = clip_entries(flist, root)
        faces, refs, mels, files, clips = [], [], [], [], []
        for name in names:
            if limit is not None and len(files) >= limit:
                break
            d = root / name
            n = list_frames(d)
            wav = d / "audio.wav"
            if n < 2 or not wav.is_file():
                continue
            take = n if limit is None else min(n, limit - len(files))
            frames = []
            for f in range(n):
                p = d / f"{f}.jpg"
                im = cv2.imread(str(p))
                if im is None:
                    raise DataError(f"{p}: unreadable face frame")
                frames.append(cv2.resize(im, (img_size, img_size), interpolation=cv2.INTER_LINEAR))
            mel = A.melspectrogram(A.read_wav(wav, SAMPLE_RATE))
            base = len(faces) + take  # the clip's frames past `take` are stored after them (references)
            idx_of = {f: len(faces) + f if f < take else None for f in range(n)}
            extra = []
            clip_refs = []
            for f in range(take):
                r = (f + n // 2) % n
                if idx_of[r] is None:
                    idx_of[r] = base + len(extra)
                    extra.append(r)
                clip_refs.append(idx_of[r])
            faces.extend(frames[:take])
            refs.extend(clip_refs)
            mels.extend(mel_windows(mel, n)[:take])
            files.extend(d / f"{f}.jpg" for f in range(take))
            clips.append({"name": name, "n_frames": take, "audio": str(wav)})
            if extra:  # reference frames beyond the evaluated ones: kept, never scored
                faces.extend(frames[r] for r in extra)
                refs.extend([-1] * len(extra))
                mels.extend(np.zeros((len(extra), *mel.shape[:1], A.MEL_STEP), np.float32))
                files.extend([None] * len(extra))
        scored = [i for i, f in enumerate(files) if f is not None]
        if len(scored) < 2:
            raise DataError(f"{flist}: fewer than 2 frames to evaluate (check evaluate.max_images)")
        # keep the reference-only frames at the end, after every scored frame, remapping indices
        order = scored + [i for i, f in enumerate(files) if f is None]
        pos = {old: new for new, old in enumerate(order)}
        faces_a = np.stack([faces[i] for i in order])
        refs_a = np.array([pos[refs[i]] for i in scored], dtype=np.int64)
        mels_a = np.stack([mels[i] for i in scored]).astype(np.float32)
        files_s = [files[i] for i in scored]
        return cls(
            split=split,
            root=root,
            dataset=cfg["data"]["dataset"],
            direction="audio+face->face",
            image_size=img_size,
            files=files_s,
            faces=faces_a,
            refs=refs_a,
            mels=mels_a,
            clips=clips,
            files_sha256=file_list_hash(files_s),
            quantize=cfg["evaluate"].get("quantize", "round"),
        )

    def batches(self, batch_size: int, idx=None):
        """``(face (B, 6, S, S), mel (B, 1, 80, 16))`` float batches in frame order (or of the items
        ``idx`` only, in that order): the lower-half masked frame and its reference, BGR in [0, 1]
        (the reference generator's inputs)."""
        import torch

        h = self.image_size // 2
        items = np.arange(self.n) if idx is None else np.asarray(idx, dtype=np.int64)
        for i in range(0, len(items), batch_size):
            sel = items[i : i + batch_size]
            tgt = self.faces[sel].astype(np.float32) / 255.0
            masked = tgt.copy()
            masked[:, h:] = 0.0
            ref = self.faces[self.refs[sel]].astype(np.float32) / 255.0
            face = np.concatenate([masked, ref], axis=3).transpose(0, 3, 1, 2)
            yield (
                torch.from_numpy(np.ascontiguousarray(face)),
                torch.from_numpy(self.mels[sel][:, None].copy()),
            )

    def display_inputs(self, idx) -> list:
        """The masked target frames of items ``idx`` as (S, S, 3) uint8 RGB (sample grids)."""
        out = []
        for i in idx:
            x = self.faces[int(i)][..., ::-1].copy()
            x[self.image_size // 2 :] = 0
            out.append(x)
        return out

    def quantize_outputs(self, outputs):
        """Generated BGR faces in [0, 1] → RGB uint8 (N, 3, S, S), quantised by the project's one
        quantiser (:func:`unetprune.data.aligned.quantize_uint8`, ``evaluate.quantize``)."""
        from ...data.aligned import quantize_uint8

        y = outputs.detach().float().clamp(0, 1).flip(1)
        return quantize_uint8(y * 2.0 - 1.0, self.quantize)
