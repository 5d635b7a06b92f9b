"""S3FD, the face detector of the reference Wav2Lip (its ``face_detection`` package, from
face-alignment): the network, loaded from the reference ``s3fd.pth`` state dict, and the
decoding the reference applies to its outputs, as a :class:`~.faces.FaceDetector`.

    unetprune data preprocess-lrs2 --detector s3fd --detector-weights s3fd.pth ...
    unetprune lipsync --detector s3fd --detector-weights s3fd.pth ...

Network: VGG-16 convolutions (``conv1_1`` … ``conv5_3``, ReLU, 2x2 max-pooling after each
group), ``fc6`` (3x3, padding 3) and ``fc7`` (1x1) as convolutions, two extra groups
(``conv6_1``/``conv6_2``, ``conv7_1``/``conv7_2``, stride 2), L2 normalisation with learned
scales on ``conv3_3``/``conv4_3``/``conv5_3`` (initial 10, 8, 5) and a 3x3 classification and
box head on each of the six sources (strides 4 … 128).  The stride-4 classifier has three
background channels, reduced to their maximum ("max-out background").  The parameter names are
the reference's, so ``s3fd.pth`` loads as it is (``torch.load(weights_only=True)``).

Decoding (per frame, as the reference ``batch_detect`` + ``detect_from_batch`` +
``get_detections_for_batch``): the frame's RGB values minus (104, 117, 123), the class scores
softmaxed; every cell whose face score exceeds 0.05 gives a box from its anchor (centre at the
cell centre, side 4 x stride) and the regression (variances 0.1, 0.2); non-maximum suppression
at IoU 0.3 (areas counted with the reference's +1 pixel); boxes scoring above 0.5 remain and
the first (highest) one, clipped at 0 and truncated to integers, is the frame's face.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...data.aligned import DataError

MEAN = (104.0, 117.0, 123.0)  # subtracted from the frame as the reference does (its RGB frames)
CANDIDATE_SCORE = 0.05
KEEP_SCORE = 0.5
NMS_IOU = 0.3
VARIANCES = (0.1, 0.2)
# (name, in, out) of the 3x3 padded convolutions of the VGG groups; a pool follows each group
_VGG = (
    (("conv1_1", 3, 64), ("conv1_2", 64, 64)),
    (("conv2_1", 64, 128), ("conv2_2", 128, 128)),
    (("conv3_1", 128, 256), ("conv3_2", 256, 256), ("conv3_3", 256, 256)),
    (("conv4_1", 256, 512), ("conv4_2", 512, 512), ("conv4_3", 512, 512)),
    (("conv5_1", 512, 512), ("conv5_2", 512, 512), ("conv5_3", 512, 512)),
)
# the six detection sources: (feature name, channels, classifier outputs)
_SOURCES = (
    ("conv3_3_norm", 256, 4),
    ("conv4_3_norm", 512, 2),
    ("conv5_3_norm", 512, 2),
    ("fc7", 1024, 2),
    ("conv6_2", 512, 2),
    ("conv7_2", 256, 2),
)
_NORM_SCALES = {"conv3_3_norm": 10.0, "conv4_3_norm": 8.0, "conv5_3_norm": 5.0}


class ScaledL2Norm(nn.Module):
    """x / (‖x‖₂ over channels + 1e-10) · weight (one learned scale per channel)."""

    def __init__(self, channels: int, scale: float):
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), float(scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10) * self.weight.view(1, -1, 1, 1)


class S3FDNet(nn.Module):
    """The S3FD network; ``forward(x)`` → ``[(scores, boxes)]`` of the six sources (fine to
    coarse): ``scores`` (N, 2, H, W) logits (background, face), ``boxes`` (N, 4, H, W) regressions."""

    def __init__(self):
        super().__init__()
        for group in _VGG:
            for name, cin, cout in group:
                self.add_module(name, nn.Conv2d(cin, cout, 3, 1, 1))
        self.fc6 = nn.Conv2d(512, 1024, 3, 1, 3)
        self.fc7 = nn.Conv2d(1024, 1024, 1, 1, 0)
        self.conv6_1 = nn.Conv2d(1024, 256, 1, 1, 0)
        self.conv6_2 = nn.Conv2d(256, 512, 3, 2, 1)
        self.conv7_1 = nn.Conv2d(512, 128, 1, 1, 0)
        self.conv7_2 = nn.Conv2d(128, 256, 3, 2, 1)
        for name, scale in _NORM_SCALES.items():
            self.add_module(name, ScaledL2Norm(256 if name.startswith("conv3") else 512, scale))
        for name, ch, n_cls in _SOURCES:
            self.add_module(f"{name}_mbox_conf", nn.Conv2d(ch, n_cls, 3, 1, 1))
            self.add_module(f"{name}_mbox_loc", nn.Conv2d(ch, 4, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        feats = {}
        h = x
        for group in _VGG:
            for name, _, _ in group:
                h = F.relu(getattr(self, name)(h))
            feats[group[-1][0]] = h
            h = F.max_pool2d(h, 2, 2)
        h = F.relu(self.fc7(F.relu(self.fc6(h))))
        feats["fc7"] = h
        h = F.relu(self.conv6_2(F.relu(self.conv6_1(h))))
        feats["conv6_2"] = h
        feats["conv7_2"] = F.relu(self.conv7_2(F.relu(self.conv7_1(h))))
        for name in _NORM_SCALES:
            feats[name] = getattr(self, name)(feats[name.removesuffix("_norm")])
        out = []
        for name, _, n_cls in _SOURCES:
            f = feats[name]
            cls = getattr(self, f"{name}_mbox_conf")(f)
            if n_cls == 4:  # max-out background: three background logits → their maximum
                cls = torch.cat([cls[:, :3].amax(dim=1, keepdim=True), cls[:, 3:]], dim=1)
            out.append((cls, getattr(self, f"{name}_mbox_loc")(f)))
        return out


def load_s3fd(path: Path | str, map_location="cpu") -> S3FDNet:
    """An :class:`S3FDNet` with the weights of the reference ``s3fd.pth`` (a state dict, read
    with ``torch.load(weights_only=True)``); a one-line :class:`DataError` naming the file otherwise."""
    from ...weights import load_weights
    from .weights import strip_prefixes

    obj = load_weights(
        path,
        "an S3FD state dict (s3fd.pth)",
        error=DataError,
        map_location=map_location,
        missing="--detector-weights {path}: no such file (expected {what})",
        unreadable="--detector-weights {path} is not {what} (torch.load weights_only=True: {first:.200})",
    )
    net = S3FDNet()
    if not isinstance(obj, dict):
        raise DataError(
            f"--detector-weights {path} is not an S3FD state dict: it holds a {type(obj).__name__}"
        )
    sd = strip_prefixes(obj)
    own = net.state_dict()
    missing = [k for k in own if k not in sd]
    extra = [k for k in sd if k not in own]
    bad = [k for k in own if k in sd and tuple(getattr(sd[k], "shape", ())) != tuple(own[k].shape)]
    if missing or extra or bad:
        what = (
            f"{len(missing)} keys missing (e.g. {missing[0]})"
            if missing
            else f"{len(extra)} unexpected keys (e.g. {extra[0]})"
            if extra
            else f"{bad[0]} has shape {tuple(sd[bad[0]].shape)}, expected {tuple(own[bad[0]].shape)}"
        )
        raise DataError(f"--detector-weights {path} is not an S3FD state dict (s3fd.pth): {what}")
    net.load_state_dict(sd)
    return net.eval()


def nms(dets: np.ndarray, iou: float = NMS_IOU) -> list[int]:
    """Indices kept by greedy non-maximum suppression of ``dets`` (K, 5: x1, y1, x2, y2, score),
    best first; overlap with the reference's inclusive pixel areas (+1)."""
    if len(dets) == 0:
        return []
    x1, y1, x2, y2, s = (dets[:, i] for i in range(5))
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(s)[::-1]
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(int(i))
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = w * h
        order = rest[inter / (areas[i] + areas[rest] - inter) <= iou]
    return keep


def decode(outputs, candidate: float = CANDIDATE_SCORE) -> list[np.ndarray]:
    """Per image, the candidate boxes (K, 5: x1, y1, x2, y2, face score) of the network's
    ``outputs``: every cell above ``candidate`` of every source, in source then row-major order."""
    per_image: list[list[np.ndarray]] = [[] for _ in range(outputs[0][0].shape[0])]
    for level, (cls, reg) in enumerate(outputs):
        stride = 2 ** (level + 2)
        score = F.softmax(cls.float(), dim=1)[:, 1]  # (N, H, W)
        for n in range(score.shape[0]):
            hs, ws = torch.nonzero(score[n] > candidate, as_tuple=True)
            if len(hs) == 0:
                continue
            loc = reg[n, :, hs, ws].T.float()  # (K, 4)
            cx = stride / 2 + ws.float() * stride
            cy = stride / 2 + hs.float() * stride
            side = float(stride * 4)
            bx = cx + loc[:, 0] * VARIANCES[0] * side
            by = cy + loc[:, 1] * VARIANCES[0] * side
            bw = side * torch.exp(loc[:, 2] * VARIANCES[1])
            bh = side * torch.exp(loc[:, 3] * VARIANCES[1])
            x1, y1 = bx - bw / 2, by - bh / 2
            boxes = torch.stack([x1, y1, x1 + bw, y1 + bh, score[n, hs, ws]], dim=1)
            per_image[n].append(boxes.numpy().astype(np.float64))
    return [np.concatenate(b) if b else np.zeros((0, 5)) for b in per_image]


def pick_face(cands: np.ndarray) -> tuple[int, int, int, int] | None:
    """The reference's face of one frame: NMS, boxes above 0.5, the first, clipped at 0, ``int``."""
    kept = cands[nms(cands)] if len(cands) else cands
    kept = [b for b in kept if b[-1] > KEEP_SCORE]
    if not kept:
        return None
    x1, y1, x2, y2 = (int(v) for v in np.clip(kept[0], 0, None)[:4])
    return x1, y1, x2, y2


class S3FDDetector:
    """:class:`~.faces.FaceDetector` with the S3FD network: ``detect(frames)`` on uint8 RGB
    ``(N, H, W, 3)`` frames, ``batch_size`` frames per network call, on ``device``."""

    name = "s3fd"

    def __init__(self, weights: Path | str | S3FDNet, device: str | None = None, batch_size: int = 8):
        self.net = weights if isinstance(weights, S3FDNet) else load_s3fd(weights)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.net = self.net.to(self.device).eval()
        self.batch_size = max(1, int(batch_size))

    @torch.no_grad()
    def detect(self, frames: np.ndarray | Sequence[np.ndarray]) -> list[tuple[int, int, int, int] | None]:
        frames = np.asarray(frames)
        out: list[tuple[int, int, int, int] | None] = []
        mean = torch.tensor(MEAN, device=self.device).view(1, 3, 1, 1)
        for i in range(0, len(frames), self.batch_size):
            x = torch.from_numpy(np.ascontiguousarray(frames[i : i + self.batch_size])).to(self.device)
            x = x.permute(0, 3, 1, 2).float() - mean
            outputs = [(c.cpu(), r.cpu()) for c, r in self.net(x)]
            out.extend(pick_face(c) for c in decode(outputs))
        return out
