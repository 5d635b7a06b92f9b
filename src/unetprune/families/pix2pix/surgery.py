"""Dependency-aware surgery on :class:`~unetprune.families.pix2pix.unet.UNetGenerator`: the pruning
operations of the ``pix2pix`` family (reached through :mod:`.pruning`).

Channel coupling in the U-Net (docs/method.md): the output of ``down{i}`` (after its norm) is
read by two consumers, the next encoder conv ``down{i+1}`` and the *skip half* (the first
``skip_ch`` input channels) of ``up{i}``; the output of ``up{i+1}`` is read only by the
*up half* of ``up{i}`` (input channels ``skip_ch .. skip_ch+up_ch``).  So every prunable
layer is its own group: removing filters of ``down{i}`` removes its conv filters (and
bias), its BN entries, the matching input channels of ``down{i+1}`` and of the skip half
of ``up{i}``; removing filters of ``up{i+1}`` removes its conv filters (and bias), its BN
entries and the matching input channels of the up half of ``up{i}``.  Nothing else.

The result of :func:`prune_channels` is an ordinary ``UNetGenerator`` with a new
:class:`UNetSpec` (smaller widths; the same spec class, so the same model family) whose
weights are copied from the original, not a mask.  Prunable layers are every encoder and
decoder conv except the RGB output conv ``up1``.  Surgery works on any device, ``meta``
included (shape-only experiments).

:func:`cut_inner_levels` removes the innermost ``k`` levels (the paper's "cut inner
layers"); see its docstring for how the new innermost encoder level loses its BN.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Iterable, Mapping, Sequence

import torch
from torch import nn

from ...pruning.surgery import PruningError, check_ratio, copy_norm, index_tensor, parse_levels  # noqa: F401
from .unet import (  # noqa: F401
    UNetGenerator,
    UNetSpec,
    default_dropout_levels,
    default_inner_levels,
    layer_width,
    layers_of_levels,
    unet_prunable_layers,
    widths,
)


def check_levels(generator: UNetGenerator, levels: Iterable[int]) -> list[int]:
    n = generator.num_downs
    lv = parse_levels(levels)
    bad = [x for x in lv if not 1 <= x <= n]
    if bad:
        raise PruningError(
            f"level(s) {bad} do not exist in this num_downs={n} U-Net (levels are 1..{n}, 1 = outermost)"
        )
    return lv


def check_layer(generator: UNetGenerator, layer: str) -> None:
    names = unet_prunable_layers(generator)
    if layer == "up1":
        raise PruningError(
            f"layer 'up1' is the RGB output conv and cannot be pruned; prunable layers: {', '.join(names)}"
        )
    if layer not in names:
        raise PruningError(
            f"unknown layer {layer!r} for a num_downs={generator.num_downs} U-Net; "
            f"prunable layers: {', '.join(names)}"
        )


def normalise_keep(
    generator: UNetGenerator, keep: Mapping[str, Sequence[int]] | None
) -> dict[str, list[int]]:
    """Full keep map: every prunable layer → sorted kept indices (absent = keep all)."""
    keep = dict(keep or {})
    out: dict[str, list[int]] = {}
    for name in keep:
        check_layer(generator, name)
    for name in unet_prunable_layers(generator):
        n = layer_width(generator, name)
        if name in keep:
            ix = sorted(int(i) for i in keep[name])
            if len(ix) == 0:
                raise PruningError(f"pruning would remove every filter of {name}; keep at least one")
            if len(set(ix)) != len(ix) or ix[0] < 0 or ix[-1] >= n:
                raise PruningError(f"kept indices for {name} must be distinct and in [0, {n})")
            out[name] = ix
        else:
            out[name] = list(range(n))
    return out


def prune_channels(generator: UNetGenerator, keep: Mapping[str, Sequence[int]]) -> UNetGenerator:
    """A new generator keeping only the filters ``keep[layer]`` of each listed layer.

    ``keep`` maps prunable layer names to the output-filter indices to keep (any order;
    layers not listed keep everything).  The original is not modified; the copy is on the
    same device, in the same train/eval mode.
    """
    keep = normalise_keep(generator, keep)
    spec = generator.spec
    n = spec.num_downs
    enc = [len(keep[f"down{i}"]) for i in range(1, n + 1)]
    dec = [spec.output_nc] + [len(keep[f"up{i}"]) for i in range(2, n + 1)]
    new_spec = replace(spec, enc_widths=enc, dec_widths=dec, dropout_levels=list(spec.dropout_levels))
    device = next(generator.parameters()).device
    with torch.device(device):
        new = UNetGenerator(new_spec)
    out_keep = {name: index_tensor(ix, device) for name, ix in keep.items()}
    out_keep["up1"] = index_tensor(range(spec.output_nc), device)
    with torch.no_grad():
        for i in range(1, n + 1):
            src, dst = getattr(generator, f"down{i}"), getattr(new, f"down{i}")
            ko = out_keep[f"down{i}"]
            ki = index_tensor(range(spec.input_nc), device) if i == 1 else out_keep[f"down{i - 1}"]
            dst.conv.weight.copy_(src.conv.weight[ko][:, ki])
            if src.conv.bias is not None:
                dst.conv.bias.copy_(src.conv.bias[ko])
            copy_norm(dst.norm, src.norm, ko)
        for i in range(1, n + 1):
            src, dst = getattr(generator, f"up{i}"), getattr(new, f"up{i}")
            ko = out_keep[f"up{i}"]
            ki = out_keep[f"down{i}"]  # skip half
            if i < n:  # up half: channels of up{i+1}'s output, after the skip_ch skip channels
                ki = torch.cat([ki, out_keep[f"up{i + 1}"] + src.skip_ch])
            # ConvTranspose2d weight: [C_in, C_out, k, k]
            dst.conv.weight.copy_(src.conv.weight[ki][:, ko])
            if src.conv.bias is not None:
                dst.conv.bias.copy_(src.conv.bias[ko])
            copy_norm(dst.norm, src.norm, ko)
    new.train(generator.training)
    return new


def default_cut_dropout_levels(spec: UNetSpec, new_n: int) -> list[int]:
    """Dropout levels after a cut: a model built with the reference dropout layout gets the
    reference layout of the shallower model (``num_downs - 5`` levels: none below 6);
    a model without dropout stays without; any other set keeps its levels that still
    exist as non-outermost, non-innermost decoder levels."""
    if list(spec.dropout_levels) == default_dropout_levels(spec.num_downs):
        return default_dropout_levels(new_n)
    return [lv for lv in spec.dropout_levels if 2 <= lv <= new_n - 1]


def cut_inner_levels(generator: UNetGenerator, k: int) -> UNetGenerator:
    """Remove the innermost ``k`` levels: the result is a ``num_downs = N - k`` U-Net.

    * ``down1 .. down{N-k-1}`` and ``up1 .. up{N-k-1}`` are copied unchanged.
    * The new innermost decoder conv ``up{N-k}`` keeps only the weight slice of its
      encoder input (the skip half, input channels ``0 .. skip_ch``); its norm is copied.
    * The new innermost encoder conv ``down{N-k}`` loses its norm, as a fresh model's
      innermost level has none.  With BatchNorm the BN is **folded** into the conv in its
      eval-mode form ``y = s * (conv(x) + b - mean) + beta`` with
      ``s = gamma / sqrt(running_var + eps)``: weights are scaled by ``s`` and, where the
      architecture gives the conv a bias (``bias_mode="paper"``: the innermost down conv
      has one), the bias becomes ``s * (b - mean) + beta``.  So in eval mode the new
      innermost encoder output, and hence every skip, equals the trained model's exactly.
      With ``bias_mode="reference"`` the innermost conv has no bias: the scale is folded,
      the shift ``beta - s * mean`` cannot be represented and is dropped (fine-tuning
      absorbs it).  InstanceNorm (no affine parameters) is simply removed.
    * Dropout levels follow the fresh ``num_downs = N - k`` model's layout
      (:func:`default_cut_dropout_levels`).

    The widths are the original ones truncated (a pruned model can be cut too).
    """
    spec = generator.spec
    n = spec.num_downs
    if not isinstance(k, int) or isinstance(k, bool):
        raise PruningError(f"k must be an integer, got {k!r}")
    if not 1 <= k <= n - 2:
        raise PruningError(
            f"cut k={k} does not fit a num_downs={n} U-Net: k must be in 1..{n - 2} "
            f"(at least 2 levels must remain)"
        )
    m = n - k
    new_spec = replace(
        spec,
        enc_widths=list(spec.enc_widths[:m]),
        dec_widths=list(spec.dec_widths[:m]),
        dropout_levels=default_cut_dropout_levels(spec, m),
    )
    device = next(generator.parameters()).device
    with torch.device(device):
        new = UNetGenerator(new_spec)
    with torch.no_grad():
        for i in range(1, m):
            getattr(new, f"down{i}").load_state_dict(getattr(generator, f"down{i}").state_dict())
        for i in range(1, m):
            getattr(new, f"up{i}").load_state_dict(getattr(generator, f"up{i}").state_dict())
        # new innermost encoder level: conv (+ folded norm)
        src, dst = getattr(generator, f"down{m}"), getattr(new, f"down{m}")
        w = src.conv.weight
        b = (
            src.conv.bias
            if src.conv.bias is not None
            else torch.zeros(w.shape[0], device=w.device, dtype=w.dtype)
        )
        norm = src.norm
        if isinstance(norm, nn.BatchNorm2d):
            mean = norm.running_mean if norm.track_running_stats else torch.zeros_like(b)
            var = norm.running_var if norm.track_running_stats else torch.ones_like(b)
            gamma = norm.weight if norm.affine else torch.ones_like(b)
            beta = norm.bias if norm.affine else torch.zeros_like(b)
            s = gamma / torch.sqrt(var + norm.eps)
            w = w * s.view(-1, 1, 1, 1)
            b = s * (b - mean) + beta
        dst.conv.weight.copy_(w)
        if dst.conv.bias is not None:
            dst.conv.bias.copy_(b)
        # new innermost decoder level: skip half of the input only
        src, dst = getattr(generator, f"up{m}"), getattr(new, f"up{m}")
        dst.conv.weight.copy_(src.conv.weight[: src.skip_ch])
        if src.conv.bias is not None:
            dst.conv.bias.copy_(src.conv.bias)
        keep_all = torch.arange(src.conv.out_channels, device=w.device)
        copy_norm(dst.norm, src.norm, keep_all)
    new.train(generator.training)
    return new
