"""Shared test helpers for networks (imported by the pruning tests of both model families)."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn


def randomise_bn(g: nn.Module, make_inputs: Callable[[torch.Generator], tuple], seed: int = 1) -> nn.Module:
    """Non-trivial BatchNorm affine parameters and running statistics and non-zero conv biases,
    so that a wrong channel mapping shows in the outputs and masking tests can fail.

    The running statistics are first calibrated on one batch, ``g(*make_inputs(gen))`` in train
    mode with momentum 1 (so activations keep an O(1) scale through every level in eval mode),
    then perturbed; ``gen`` is the seeded generator of the perturbations.  ``g`` keeps its
    train/eval mode."""
    gen = torch.Generator().manual_seed(seed)
    bns = [m for m in g.modules() if isinstance(m, nn.BatchNorm2d)]
    was_training = g.training
    with torch.no_grad():
        for m in bns:
            m.momentum = 1.0
        g.train()(*make_inputs(gen))
        g.train(was_training)
        for m in bns:
            m.momentum = 0.1
            n = m.num_features
            m.weight.copy_(1 + 0.5 * torch.randn(n, generator=gen))
            m.bias.copy_(0.3 * torch.randn(n, generator=gen))
            m.running_mean.add_(0.1 * torch.randn(n, generator=gen) * m.running_var.sqrt())
            m.running_var.mul_(0.7 + 0.6 * torch.rand(n, generator=gen))
        for m in g.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and m.bias is not None:
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))
    return g
