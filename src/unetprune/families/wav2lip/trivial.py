"""The trivial generator of the lip-sync task (the sanity gate, :mod:`unetprune.sanity`): copy
the identity reference frame the generator is given (its input channels 3..5), whatever the
audio says."""

from __future__ import annotations

import torch
from torch import nn


class CopyReference(nn.Module):
    """Takes the generator's ``(face (B, 6, S, S), mel)`` and returns the reference half of
    ``face`` (channels 3..5, BGR in [0, 1], the generator's output range)."""

    def forward(self, face: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
        if face.dim() != 4 or face.shape[1] != 6:
            raise ValueError(f"expected faces (B, 6, S, S), got {tuple(face.shape)}")
        return face[:, 3:6]
