"""The trivial generators of the image-to-image task (the sanity gate, :mod:`unetprune.sanity`):
copying the input, and the per-pixel mean of the training targets.  Both take the U-Net's input
batch ([-1, 1], (B, C, H, W)) and return images in its output range."""

from __future__ import annotations

import torch
from torch import nn


class CopyInput(nn.Module):
    """Outputs its input (the label map itself, as an image); needs as many input as output channels."""

    def __init__(self, output_nc: int = 3):
        super().__init__()
        self.output_nc = int(output_nc)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] < self.output_nc:
            raise ValueError(f"cannot copy a {x.shape[1]}-channel input to {self.output_nc} output channels")
        return x[:, : self.output_nc]


class ConstantImage(nn.Module):
    """Outputs one fixed image (1, C, H, W) in [-1, 1] for every input: the per-pixel mean of the
    training targets, the best constant under a per-pixel L2 loss."""

    def __init__(self, image: torch.Tensor):
        super().__init__()
        if image.dim() != 4 or image.shape[0] != 1:
            raise ValueError(f"a constant image is (1, C, H, W), got {tuple(image.shape)}")
        self.register_buffer("image", image.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.image.to(x.dtype).expand(len(x), -1, -1, -1)


def mean_target(targets: torch.Tensor) -> torch.Tensor:
    """The per-pixel mean (1, C, H, W) in [-1, 1] of uint8 RGB targets (N, C, H, W)."""
    if targets.dim() != 4 or len(targets) == 0:
        raise ValueError(f"targets must be a non-empty (N, C, H, W) batch, got {tuple(targets.shape)}")
    return (targets.double().mean(0, keepdim=True) / 127.5 - 1.0).float()
