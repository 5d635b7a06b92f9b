"""Segmentation scores of generated photos: mIoU against the labels the photos were made from.

Two scorers:

* **demo** (offline demo dataset): the generated photo is labelled again with the fixed
  labeller :func:`unetprune.data.demo.label_photo` and compared with the input label map
  (decoded from the palette image with :func:`~unetprune.data.demo.decode_labels`).
  Ground-truth photos score exactly 1.
* **cityscapes** — the protocol of GAN Compression (mit-han-lab/gan-compression,
  ``metric/cityscapes_mIoU.py``), which OMGD and others reuse:

  1. the generated 256x256 photo, quantised to uint8 as its PNG would be, is scaled to
     [0, 1] and normalised with the Cityscapes mean/std of fyu/drn
     (:data:`~unetprune.metrics.drn.CITYSCAPES_MEAN` / ``STD``);
  2. DRN-D-105 (``drn-d-105_ms_cityscapes.pth``) runs on it *at 256x256* (no upscaling of
     the input); its 8x bilinear ``up`` layer gives log-probabilities at 256x256;
  3. each class map is resized bilinearly to the label resolution (the full-resolution
     ``*_gtFine_trainIds.png``, 2048x1024) and the arg-max taken;
  4. one confusion matrix is accumulated over the whole split over the 19 train ids
     (0..18; 255 and any other id are ignored); per-class IoU = TP / (TP + FP + FN);
     mIoU = mean over classes with a defined IoU (GAN Compression reports it x100).

  Labels are the full-resolution train-id maps that ``unetprune.data.cityscapes`` writes
  next to the pairs (``<data root>/labels/<split>/<stem>_gtFine_trainIds.png``).  Without
  them, a documented fallback recovers the train ids from the generator's *input* colour label map (nearest
  Cityscapes colour) at 256x256; the result says which label source was used, because
  that fallback is *not* the published protocol.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UserFacingError

IGNORE_INDEX = 255

CITYSCAPES_CLASSES = (
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
)

# Cityscapes colour of every label id (gtFine_color) and its train id (255 = ignored in eval).
CITYSCAPES_COLOURS = [
    ((0, 0, 0), 255),
    ((111, 74, 0), 255),
    ((81, 0, 81), 255),
    ((128, 64, 128), 0),
    ((244, 35, 232), 1),
    ((250, 170, 160), 255),
    ((230, 150, 140), 255),
    ((70, 70, 70), 2),
    ((102, 102, 156), 3),
    ((190, 153, 153), 4),
    ((180, 165, 180), 255),
    ((150, 100, 100), 255),
    ((150, 120, 90), 255),
    ((153, 153, 153), 5),
    ((250, 170, 30), 6),
    ((220, 220, 0), 7),
    ((107, 142, 35), 8),
    ((152, 251, 152), 9),
    ((70, 130, 180), 10),
    ((220, 20, 60), 11),
    ((255, 0, 0), 12),
    ((0, 0, 142), 13),
    ((0, 0, 70), 14),
    ((0, 60, 100), 15),
    ((0, 0, 90), 255),
    ((0, 0, 110), 255),
    ((0, 80, 100), 16),
    ((0, 0, 230), 17),
    ((119, 11, 32), 18),
]

CITYSCAPES_PROTOCOL = (
    "GAN Compression (mit-han-lab/gan-compression metric/cityscapes_mIoU.py): DRN-D-105 "
    "(drn-d-105_ms_cityscapes.pth) on the uint8-quantised generated photo at its generated size, "
    "input /255 then normalised with the fyu/drn Cityscapes mean/std; 8x bilinear up-layer; "
    "log-probabilities resized bilinearly to the label size; arg-max; one confusion matrix over the "
    "split; 19 train ids, label 255 ignored; mIoU = nanmean of per-class IoU"
)
FULL_RES_LABELS = "gtFine trainIds (full resolution)"
DEMO_PROTOCOL = (
    "demo: generated photo relabelled with unetprune.data.demo.label_photo, compared with the "
    "input label map decoded with decode_labels; one confusion matrix over the split; mIoU = "
    "nanmean of per-class IoU (ground-truth photos score 1)"
)


class SegmentationError(UserFacingError):
    """A segmentation score cannot be computed (missing weights or labels; the message names the file)."""


# --------------------------------------------------------------------------------------
# Confusion matrices and IoU
# --------------------------------------------------------------------------------------


def confusion(pred, target, n_classes: int, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """Confusion matrix (n, n), rows = target class, columns = predicted class.
    Target pixels outside ``[0, n_classes)`` (e.g. ``ignore_index``) are skipped."""
    p = torch.as_tensor(pred).reshape(-1).long()
    t = torch.as_tensor(target).reshape(-1).long().to(p.device)
    if p.shape != t.shape:
        raise SegmentationError(f"prediction has {p.numel()} pixels but the target {t.numel()}")
    keep = (t >= 0) & (t < n_classes) & (t != ignore_index)
    p = p[keep].clamp(0, n_classes - 1)
    hist = torch.bincount(t[keep] * n_classes + p, minlength=n_classes * n_classes)
    return hist.reshape(n_classes, n_classes).cpu().numpy().astype(np.int64)


def iou_from_confusion(hist: np.ndarray) -> np.ndarray:
    """Per-class IoU = TP / (TP + FP + FN); NaN for classes absent from target and prediction."""
    hist = np.asarray(hist, dtype=np.float64)
    tp = np.diag(hist)
    union = hist.sum(0) + hist.sum(1) - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, tp / np.where(union > 0, union, 1), np.nan)


def _nan_to_none(values) -> list:
    return [None if (v is None or not np.isfinite(v)) else float(v) for v in values]


def summarize(hist: np.ndarray, names=None) -> dict:
    iou = iou_from_confusion(hist)
    valid = np.isfinite(iou)
    m = float(iou[valid].mean()) if valid.any() else float("nan")
    total = hist.sum()
    return {
        "miou": m,
        "miou_percent": 100.0 * m,
        "per_class_iou": _nan_to_none(iou),
        "class_names": list(names) if names is not None else [str(i) for i in range(len(iou))],
        "pixel_accuracy": float(np.trace(hist) / total) if total else float("nan"),
        "n_classes": len(iou),
        "n_classes_present": int(valid.sum()),
    }


# --------------------------------------------------------------------------------------
# Demo scorer
# --------------------------------------------------------------------------------------


def _hwc(img) -> np.ndarray:
    a = img.cpu().numpy() if torch.is_tensor(img) else np.asarray(img)
    if a.ndim == 3 and a.shape[0] == 3 and a.shape[-1] != 3:
        a = a.transpose(1, 2, 0)
    if a.dtype != np.uint8:
        raise SegmentationError(f"segmentation scorers take uint8 images, got {a.dtype}")
    return np.ascontiguousarray(a)


def demo_confusions(photos, label_images, n_classes: int) -> np.ndarray:
    """Per-image confusion matrices (N, n, n) of relabelled ``photos`` vs the palette label images
    they came from.  Both are sequences (or batches) of uint8 images, HWC or CHW."""
    from ..data.demo import decode_labels, label_photo

    if len(photos) != len(label_images):
        raise SegmentationError(f"{len(photos)} photos but {len(label_images)} label maps")
    hists = np.zeros((len(photos), n_classes, n_classes), dtype=np.int64)
    for i, (photo, lab) in enumerate(zip(photos, label_images)):
        photo, lab = _hwc(photo), _hwc(lab)
        if photo.shape != lab.shape:
            raise SegmentationError(f"photo {photo.shape} and label map {lab.shape} differ in size")
        hists[i] = confusion(label_photo(photo, n_classes), decode_labels(lab, n_classes), n_classes)
    return hists


def demo_confusion(photos, label_images, n_classes: int) -> np.ndarray:
    """Confusion matrix of relabelled ``photos`` vs the palette label images they came from (summed
    over the images)."""
    return demo_confusions(photos, label_images, n_classes).sum(0)


def demo_result(hist: np.ndarray) -> dict:
    """The demo segmentation score of a (summed) confusion matrix."""
    out = summarize(hist)
    out.update({"name": "demo", "protocol": DEMO_PROTOCOL, "label_source": "input label maps (A)"})
    return out


def demo_miou(photos, label_images, n_classes: int) -> dict:
    return demo_result(demo_confusion(photos, label_images, n_classes))


# --------------------------------------------------------------------------------------
# Cityscapes scorer (DRN-D-105)
# --------------------------------------------------------------------------------------


def load_drn(weights_path: str | Path | None, device: str | torch.device = "cpu", arch: str = "drn_d_105"):
    """DRN-D-105 with the Cityscapes weights of fyu/drn (``drn-d-105_ms_cityscapes.pth``), eval mode."""
    from ..weights import is_state_dict, load_weights
    from .drn import DRNSeg, drn_arch_name, state_mismatch

    if weights_path is None:
        raise SegmentationError(
            "config error at 'evaluate.drn_weights': the Cityscapes mIoU needs the DRN-D-105 weights file "
            "drn-d-105_ms_cityscapes.pth (released with fyu/drn, used by GAN Compression); download it "
            "yourself and set evaluate.drn_weights=/path/to/drn-d-105_ms_cityscapes.pth, or "
            "evaluate.segmentation=none to skip the score"
        )
    path = Path(weights_path).expanduser()
    if not path.is_file():
        raise SegmentationError(
            f"config error at 'evaluate.drn_weights': DRN-D-105 weight file {path} does not exist; put "
            f"drn-d-105_ms_cityscapes.pth there (fyu/drn release) or set evaluate.segmentation=none"
        )
    state = load_weights(
        path,
        error=SegmentationError,
        missing=None,
        unreadable="cannot read the DRN weight file {path} (evaluate.drn_weights) as a plain "
        "state dict (torch.load weights_only=True): {kind}: {first}",
    )
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not is_state_dict(state):
        raise SegmentationError(
            f"{path} (evaluate.drn_weights) does not hold a state dict of tensors; expected "
            f"the {drn_arch_name(arch)} Cityscapes segmenter drn-d-105_ms_cityscapes.pth"
        )
    state = {k.removeprefix("module."): v for k, v in state.items()}
    why = state_mismatch(state, arch, 19)
    if why is not None:
        raise SegmentationError(
            f"{path} (evaluate.drn_weights) is not a {arch} Cityscapes segmenter "
            f"({drn_arch_name(arch)}, 19 classes: drn-d-105_ms_cityscapes.pth of fyu/drn, as "
            f"GAN Compression uses): {why}"
        )
    model = DRNSeg(arch, classes=19)
    model.load_state_dict(state, strict=False)  # up.weight may be absent: the bilinear kernel is fixed anyway
    return model.to(device).eval().requires_grad_(False)


def colour_to_train_ids(img) -> np.ndarray:
    """Cityscapes colour label image (uint8 HWC/CHW) → train ids by nearest colour (255 = void)."""
    a = _hwc(img).astype(np.int32)
    cols = np.array([c for c, _ in CITYSCAPES_COLOURS], dtype=np.int32)
    ids = np.array([t for _, t in CITYSCAPES_COLOURS], dtype=np.uint8)
    d = ((a[..., None, :] - cols[None, None]) ** 2).sum(-1)
    return ids[d.argmin(-1)]


def expected_label_file(root: Path | str, split: str, image_path: Path | str) -> Path:
    """Where the full-resolution train-id map of an aligned image lives (``data.cityscapes``'s layout)."""
    from ..data.cityscapes import label_path

    return label_path(root, split, image_path)


def find_label_file(root: Path | str, split: str, image_path: Path | str) -> Path | None:
    p = expected_label_file(root, split, image_path)
    return p if p.is_file() else None


def read_train_ids(path: Path | str) -> np.ndarray:
    from ..data.cityscapes import load_train_ids

    return load_train_ids(path)


class CityscapesScorer:
    """Accumulates the GAN Compression Cityscapes confusion matrix batch by batch."""

    name = "cityscapes-drn-d-105"

    def __init__(self, model: torch.nn.Module, device: str | torch.device = "cpu", n_classes: int = 19):
        from .drn import CITYSCAPES_MEAN, CITYSCAPES_STD

        self.model, self.device, self.n = model, torch.device(device), n_classes
        self.mean = torch.tensor(CITYSCAPES_MEAN, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(CITYSCAPES_STD, device=self.device).view(1, 3, 1, 1)
        self.hist = np.zeros((n_classes, n_classes), dtype=np.int64)
        self.per_image: list[np.ndarray] = []  # one confusion matrix per scored image (bootstrap)

    @torch.no_grad()
    def predict(self, photos_uint8: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        """Class maps (N, H', W') of uint8 photos (N, 3, H, W); ``size`` = label (H', W')."""
        x = (photos_uint8.to(self.device).float() / 255.0 - self.mean) / self.std
        logp = self.model(x)[0]
        if size is not None and tuple(logp.shape[-2:]) != tuple(size):
            logp = F.interpolate(logp, size=size, mode="bilinear", align_corners=False)
        return logp.argmax(1)

    def update(self, photos_uint8: torch.Tensor, labels: list[np.ndarray]) -> None:
        for photo, lab in zip(photos_uint8, labels):
            pred = self.predict(photo[None], tuple(lab.shape[-2:]))[0]
            h = confusion(pred, torch.from_numpy(np.asarray(lab)), self.n)
            self.per_image.append(h)
            self.hist += h

    def result(self, label_source: str) -> dict:
        out = summarize(self.hist, CITYSCAPES_CLASSES)
        out.update({"name": self.name, "protocol": CITYSCAPES_PROTOCOL, "label_source": label_source})
        if label_source != FULL_RES_LABELS:
            out["protocol"] += (
                "; DEVIATION: labels recovered from the input colour maps at the generated "
                "size, not the full-resolution gtFine trainIds"
            )
        return out
