"""DRN-D (Dilated Residual Networks, Yu, Koltun & Funkhouser, CVPR 2017) for segmentation.

The Cityscapes quality score of pix2pix-style labels→photo models (GAN Compression,
OMGD, ...) is the mIoU of a DRN-D-105 segmenter trained on Cityscapes
(``drn-d-105_ms_cityscapes.pth``, released with fyu/drn) applied to the generated photos.
This module rebuilds that architecture so that the released weights load by name:

* ``DRNSeg.base`` = the DRN trunk without its classifier: ``base.0`` = ``layer0``
  (7x7 conv 3→16, BN, ReLU), ``base.1`` / ``base.2`` = plain conv layers (16, 32 wide,
  the second with stride 2), ``base.3..base.5`` = residual stages (Bottleneck for
  D-105: 3, 4, 23 blocks; strides 2, 2 and dilation 2), ``base.6`` = 3 blocks with
  dilation 4, ``base.7`` / ``base.8`` = plain 3x3 convs 2048→512 (dilation 2) and
  512→512 (degridding layers).  Output stride 8, 512 channels.
* ``DRNSeg.seg`` = 1x1 conv 512 → 19 classes (with bias).
* ``DRNSeg.up`` = fixed depthwise ConvTranspose2d(19, 19, 16, stride 8, padding 4)
  holding a bilinear kernel: upsamples the scores 8x back to the input size.
* forward returns ``(log_softmax(up(seg(base(x)))), seg(base(x)))``.

Everything here is written for this project; only the layer shapes follow the published
architecture so the published weights apply.
"""

from __future__ import annotations

import math

import torch
from torch import nn

CITYSCAPES_MEAN = (0.29010095242892997, 0.32808144844279574, 0.28696394422942517)
CITYSCAPES_STD = (0.1829540508368939, 0.18656561047509476, 0.18447508988480435)
CHANNELS = (16, 32, 64, 128, 256, 512, 512, 512)

# name -> (residual block kind, blocks per stage for the 8 stages)
ARCHS = {
    "drn_d_22": ("basic", (1, 1, 2, 2, 2, 2, 1, 1)),
    "drn_d_38": ("basic", (1, 1, 3, 4, 6, 3, 1, 1)),
    "drn_d_54": ("bottleneck", (1, 1, 3, 4, 6, 3, 1, 1)),
    "drn_d_105": ("bottleneck", (1, 1, 3, 4, 23, 3, 1, 1)),
}


def _conv3(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(
        self,
        cin: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        dilation: tuple[int, int] = (1, 1),
    ):
        super().__init__()
        self.conv1 = _conv3(cin, planes, stride, dilation[0])
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3(planes, planes, 1, dilation[1])
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + skip)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(
        self,
        cin: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        dilation: tuple[int, int] = (1, 1),
    ):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3(planes, planes, stride, dilation[1])
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + skip)


class _Trunk:
    """Builds the eight DRN-D stages, tracking the running channel count."""

    def __init__(self, block: type):
        self.block = block
        self.cin = CHANNELS[0]

    def conv_stage(self, width: int, n: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
        mods: list[nn.Module] = []
        for i in range(n):
            mods += [
                nn.Conv2d(
                    self.cin,
                    width,
                    3,
                    stride=stride if i == 0 else 1,
                    padding=dilation,
                    dilation=dilation,
                    bias=False,
                ),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ]
            self.cin = width
        return nn.Sequential(*mods)

    def res_stage(
        self, planes: int, n: int, stride: int = 1, dilation: int = 1, new_level: bool = True
    ) -> nn.Sequential:
        block, out = self.block, planes * self.block.expansion
        down = None
        if stride != 1 or self.cin != out:
            down = nn.Sequential(nn.Conv2d(self.cin, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out))
        first_dil = (1, 1) if dilation == 1 else ((dilation // 2 if new_level else dilation), dilation)
        blocks = [block(self.cin, planes, stride, down, dilation=first_dil)]
        self.cin = out
        blocks += [block(self.cin, planes, dilation=(dilation, dilation)) for _ in range(1, n)]
        return nn.Sequential(*blocks)


def drn_d_trunk(arch: str = "drn_d_105") -> nn.Sequential:
    """The DRN-D feature trunk (stages ``0..8``), output stride 8, 512 channels."""
    if arch not in ARCHS:
        raise ValueError(f"unknown DRN architecture {arch!r} (known: {', '.join(ARCHS)})")
    kind, n = ARCHS[arch]
    t = _Trunk(Bottleneck if kind == "bottleneck" else BasicBlock)
    c = CHANNELS
    layer0 = nn.Sequential(
        nn.Conv2d(3, c[0], 7, padding=3, bias=False), nn.BatchNorm2d(c[0]), nn.ReLU(inplace=True)
    )
    stages = [
        layer0,
        t.conv_stage(c[0], n[0]),
        t.conv_stage(c[1], n[1], stride=2),
        t.res_stage(c[2], n[2], stride=2),
        t.res_stage(c[3], n[3], stride=2),
        t.res_stage(c[4], n[4], dilation=2, new_level=False),
        t.res_stage(c[5], n[5], dilation=4, new_level=False),
        t.conv_stage(c[6], n[6], dilation=2),
        t.conv_stage(c[7], n[7], dilation=1),
    ]
    return nn.Sequential(*stages)


def bilinear_up_weight(classes: int, kernel: int = 16) -> torch.Tensor:
    """Depthwise bilinear-interpolation kernel (classes, 1, k, k) for an 8x ConvTranspose2d."""
    f = math.ceil(kernel / 2)
    c = (2 * f - 1 - f % 2) / (2.0 * f)
    r = torch.arange(kernel, dtype=torch.float64)
    w1 = 1 - (r / f - c).abs()
    w = (w1[:, None] * w1[None, :]).float()
    return w.expand(classes, 1, kernel, kernel).clone()


class DRNSeg(nn.Module):
    """DRN-D segmenter: trunk → 1x1 classifier → fixed 8x bilinear upsampling → log-softmax."""

    def __init__(self, arch: str = "drn_d_105", classes: int = 19):
        super().__init__()
        self.arch, self.classes = arch, classes
        self.base = drn_d_trunk(arch)
        self.seg = nn.Conv2d(CHANNELS[-1], classes, 1, bias=True)
        self.up = nn.ConvTranspose2d(classes, classes, 16, stride=8, padding=4, groups=classes, bias=False)
        for m in self.modules():  # He init (only matters without weights)
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(
                    m.weight, 0.0, math.sqrt(2.0 / (m.kernel_size[0] * m.kernel_size[1] * m.out_channels))
                )
        nn.init.zeros_(self.seg.bias)
        with torch.no_grad():
            self.up.weight.copy_(bilinear_up_weight(classes))
        self.up.weight.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores = self.seg(self.base(x))
        return torch.log_softmax(self.up(scores), dim=1), scores


# --------------------------------------------------------------------------------------
# What a weights file holds (for one-line errors about wrong files)
# --------------------------------------------------------------------------------------


def drn_arch_name(arch: str) -> str:
    """``drn_d_105`` → ``DRN-D-105``."""
    return arch.upper().replace("_", "-")


def expected_shapes(arch: str = "drn_d_105", classes: int = 19) -> dict[str, tuple[int, ...]]:
    """Key → shape of a :class:`DRNSeg` state dict (built on the meta device: no memory, no init cost)."""
    with torch.device("meta"):
        model = DRNSeg(arch, classes)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def state_classes(state: dict) -> int | None:
    """The class count of a DRNSeg state dict (rows of ``seg.weight``), None without one."""
    w = state.get("seg.weight")
    return int(w.shape[0]) if torch.is_tensor(w) and w.dim() == 4 else None


def identify_drn(state: dict) -> tuple[str, int] | None:
    """``(arch, classes)`` of the DRN-D segmenter whose keys and shapes ``state`` has exactly
    (``up.weight`` optional), or None when it is none of :data:`ARCHS`."""
    classes = state_classes(state)
    if classes is None:
        return None
    have = {k: tuple(v.shape) for k, v in state.items() if torch.is_tensor(v) and k != "up.weight"}
    for arch in ARCHS:
        want = {k: s for k, s in expected_shapes(arch, classes).items() if k != "up.weight"}
        if have == want:
            return arch, classes
    return None


def state_mismatch(state: dict, arch: str = "drn_d_105", classes: int = 19) -> str | None:
    """One line saying how ``state`` differs from a ``arch`` segmenter of ``classes`` classes
    (what the file is, when it is another DRN-D or a classifier), or None when it fits."""
    from ..weights import shape_mismatch

    want = expected_shapes(arch, classes)
    have = {k: tuple(v.shape) for k, v in state.items() if torch.is_tensor(v)}
    diffs = shape_mismatch(want, have, optional=lambda k: k == "up.weight")
    if not diffs:
        return None
    found = identify_drn(state)
    if found is not None:
        f_arch, f_classes = found
        if f_arch == arch:
            return (
                f"it holds a {drn_arch_name(f_arch)} segmenter with {f_classes} classes (seg.weight "
                f"{have['seg.weight']}), expected {classes} classes"
            )
        return (
            f"it holds a {drn_arch_name(f_arch)} segmenter ({f_classes} classes), a different architecture "
            f"from the expected {drn_arch_name(arch)}"
        )
    parts = []
    if any(k.startswith("layer0.") or k == "fc.weight" for k in have):
        parts.append("it looks like a DRN ImageNet classifier (layer0.../fc keys), not a segmenter")
    return "; ".join(parts + diffs)
