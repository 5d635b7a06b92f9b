"""Pruning operations of the ``wav2lip`` family (:mod:`.networks`, :mod:`.structure`).

Structure (groups, levels, which conv reads and writes which channels) comes from the
model module's structure queries (:func:`~unetprune.families.wav2lip.structure.conv_slots`); this module
changes generators:

* :meth:`Wav2LipPruningOps.prune_channels` — dependency-aware channel removal.  Removing
  filters of a group removes them from every conv of the group (first conv, residual
  convs' filters *and* inputs, the closing 1x1 of FE6/audio4, each BN) and removes the
  matching input channels of every consumer: the next stage, the decoder stage that
  concatenates an encoder feature (its second input slice), the next decoder stage (its
  first slice), ``fd0`` or the new innermost decoder stage for ``audio4``, the output block.
  The result is an ordinary :class:`~unetprune.families.wav2lip.networks.Wav2LipGenerator` of a spec
  with the new widths, weights copied (not masked).  The RGB conv is never pruned.
* :meth:`Wav2LipPruningOps.cut` — **cut-k** (the default unit, the paper's "cut inner
  layers"): remove the ``k`` innermost levels (k=1: FE6, FD0, FD1; k=2: also FE5, FD2) and
  feed the audio embedding, broadcast to the new innermost resolution, where the removed
  decoder output went.  Every surviving weight is copied by name, unchanged: the audio
  embedding takes exactly the channel slot of the removed decoder output, so the cut is
  possible only where the two widths agree (audio 512 = FD1 = FD2 = 512 in the reference;
  k=3 would put 512 audio channels where FD4 reads FD3's 384, so it is refused).  Unlike
  the pix2pix cut no BN has to be folded: every Wav2Lip stage keeps its BN.
* :meth:`Wav2LipPruningOps.cut_residual` — **cut-res** (the alternative unit, the one
  removed in the same authors' later compressed Wav2Lip, arXiv 2304.00471): remove every
  residual block of the stages of some levels (default: the inner levels 5–6, i.e. FE5's
  one, FD1's one and FD2's two; FE6, FD0 have none).  Widths and resolutions do not change;
  the surviving blocks keep their names and weights.  The strategies' ``cut`` (``prune(g,
  "cut", k=…)``) is cut-k; cut-res is reached by ``cut(g, k, unit="residual")`` or
  :meth:`cut_residual` (docs/method.md, "Cut inner layers for Wav2Lip").
* :meth:`Wav2LipPruningOps.width_cost` — exact params and MACs (both conventions of
  :mod:`unetprune.metrics.complexity`) of the architecture at other widths, for budget
  matching: one hooked pass gives every conv's MACs per (input x output channel).

"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import torch
from torch import nn

from ...pruning.ops import PruningOps
from ...pruning.surgery import PruningError, copy_norm, parse_levels
from .networks import N_LEVELS, Wav2LipGenerator, Wav2LipSpec
from .structure import (
    conv_slots,
    default_inner_levels,
    group_widths,
    layers_of_levels,
    level_groups,
    spec_with_widths,
    wav2lip_groups,
    wav2lip_input_shapes,
    wav2lip_levels,
)

CUT_UNITS = ("levels", "residual")


def _idx(ix: Iterable[int], device) -> torch.Tensor:
    return torch.as_tensor(list(ix), dtype=torch.long, device=device)


def _device(generator: nn.Module) -> torch.device:
    return next(generator.parameters()).device


def check_group(generator: Wav2LipGenerator, layer: str) -> None:
    spec = generator.spec
    names = wav2lip_groups(spec)
    if layer in names:
        return
    rgb = f"out{len(spec.out_widths)}"
    if layer in (rgb, "out"):
        raise PruningError(
            f"layer {layer!r}: the output block's last conv (RGB, {spec.output_nc} channels) "
            f"is never pruned; prunable layers: {', '.join(names)}"
        )
    if spec.cut and layer in {f"fe{i}" for i in range(N_LEVELS - spec.cut, N_LEVELS)} | {
        f"fd{i}" for i in range(spec.cut + 1)
    }:
        raise PruningError(
            f"layer {layer!r} was removed by the cut (cut={spec.cut}); prunable layers: {', '.join(names)}"
        )
    raise PruningError(
        f"unknown layer {layer!r} for a Wav2Lip generator; prunable layers: {', '.join(names)}"
    )


def check_levels(generator: Wav2LipGenerator, levels) -> list[int]:
    present = wav2lip_levels(generator)
    lv = parse_levels(levels)
    bad = [x for x in lv if x not in present]
    if bad:
        raise PruningError(
            f"level(s) {bad} do not exist in this Wav2Lip (levels are {present[0]}..{present[-1]}, "
            f"{present[-1]} = innermost; level j holds fe{{j}} and fd{{7-j}})"
        )
    return lv


def normalise_keep(
    generator: Wav2LipGenerator, keep: Mapping[str, Sequence[int]] | None
) -> dict[str, list[int]]:
    """Every group → sorted kept indices (absent = keep all)."""
    keep = dict(keep or {})
    for name in keep:
        check_group(generator, name)
    widths = group_widths(generator.spec)
    out = {}
    for name, n in widths.items():
        if name not in keep:
            out[name] = list(range(n))
            continue
        ix = sorted(int(i) for i in keep[name])
        if not ix:
            raise PruningError(f"pruning would remove every filter of {name}; keep at least one")
        if len(set(ix)) != len(ix) or ix[0] < 0 or ix[-1] >= n:
            raise PruningError(f"kept indices for {name} must be distinct and in [0, {n})")
        out[name] = ix
    return out


def prune_wav2lip_channels(
    generator: Wav2LipGenerator, keep: Mapping[str, Sequence[int]]
) -> Wav2LipGenerator:
    """A new generator keeping the filters ``keep[group]`` of each listed group (see the
    module doc for the dependencies); the original is untouched, the copy is on its device
    in its train/eval mode."""
    keep = normalise_keep(generator, keep)
    spec = generator.spec
    old_w = group_widths(spec)
    new_spec = spec_with_widths(spec, {g: len(ix) for g, ix in keep.items()})
    device = _device(generator)
    with torch.device(device):
        new = Wav2LipGenerator(new_spec)
    kx = {g: _idx(ix, device) for g, ix in keep.items()}

    def sel(item) -> tuple[torch.Tensor, int]:  # kept channel indices of one segment, its old width
        return (kx[item], old_w[item]) if isinstance(item, str) else (_idx(range(item), device), item)

    with torch.no_grad():
        for slot in conv_slots(spec):
            src, dst = generator.get_submodule(slot.path), new.get_submodule(slot.path)
            ko, _ = sel(slot.out)
            parts, off = [], 0
            for item in slot.ins:
                ix, w = sel(item)
                parts.append(ix + off)
                off += w
            ki = torch.cat(parts)
            w = src.weight[ki][:, ko] if slot.transposed else src.weight[ko][:, ki]
            dst.weight.copy_(w)
            if src.bias is not None:
                dst.bias.copy_(src.bias[ko])
            if slot.bn is not None:
                copy_norm(new.get_submodule(slot.bn), generator.get_submodule(slot.bn), ko)
    new.train(generator.training)
    return new


def _copy_by_name(
    generator: Wav2LipGenerator, new_spec: Wav2LipSpec, rename: Callable[[str], str] = lambda k: k
) -> tuple[Wav2LipGenerator, list[str]]:
    """Build ``new_spec`` and copy every one of its tensors from ``generator`` (key
    ``rename(key)``); returns the new model and the source keys not copied."""
    device = _device(generator)
    with torch.device(device):
        new = Wav2LipGenerator(new_spec)
    src = generator.state_dict()
    sd, used = {}, set()
    for k, v in new.state_dict().items():
        sk = rename(k)
        t = src.get(sk)
        if t is None or tuple(t.shape) != tuple(v.shape):
            got = "absent" if t is None else tuple(t.shape)
            raise PruningError(f"internal: {k} cannot be copied from {sk} ({got} vs {tuple(v.shape)})")
        sd[k] = t
        used.add(sk)
    new.load_state_dict(sd)
    new.train(generator.training)
    return new, [k for k in src if k not in used]


def fitting_cuts(spec: Wav2LipSpec) -> list[int]:
    """The ``k`` for which cut-k keeps every surviving weight: the audio embedding is as wide
    as the decoder output it replaces (``fd{cut+k}``)."""
    aw = spec.audio_widths[-1]
    return [k for k in range(1, 6 - spec.cut) if spec.fd_widths[spec.cut + k] == aw]


def cut_levels(generator: Wav2LipGenerator, k: int) -> tuple[Wav2LipGenerator, dict]:
    """cut-k: remove the ``k`` innermost levels (of a model maybe already cut: ``cut`` grows
    by ``k``); the audio embedding, broadcast, replaces ``fd{cut+k}``'s output."""
    if not isinstance(k, int) or isinstance(k, bool):
        raise PruningError(f"k must be an integer, got {k!r}")
    spec = generator.spec
    c = spec.cut
    n_left = N_LEVELS - c
    if not 1 <= k <= n_left - 2:
        raise PruningError(
            f"cut k={k} does not fit this Wav2Lip ({n_left} levels left): k must be in "
            f"1..{n_left - 2} (at least 2 levels must remain)"
        )
    nc = c + k
    aw, rw = spec.audio_widths[-1], spec.fd_widths[nc]
    if aw != rw:
        fits = fitting_cuts(spec)
        cin = rw + spec.fe_widths[N_LEVELS - 1 - nc]
        raise PruningError(
            f"cut k={k} is refused: the audio embedding ({aw} channels) would take the place of fd{nc}'s "
            f"output, but fd{nc + 1} reads {rw} channels there (its input would grow from {cin} to "
            f"{aw + spec.fe_widths[N_LEVELS - 1 - nc]} channels), so its weights cannot be copied and new "
            f"weights would be needed; cuts that fit this model: "
            f"{', '.join(f'k={x}' for x in fits) if fits else 'none'}"
        )
    new_spec = Wav2LipSpec.from_dict({**spec.to_dict(), "cut": nc})
    new, dropped = _copy_by_name(generator, new_spec)
    removed_stages = [f"fe{i}" for i in range(N_LEVELS - nc, N_LEVELS - c)] + [
        f"fd{i}" for i in range(c + (0 if c == 0 else 1), nc + 1)
    ]
    levels = list(range(N_LEVELS - nc, N_LEVELS - c))
    return new, {
        "k": k,
        "unit": "levels",
        "cut_before": c,
        "cut": nc,
        "removed_levels": levels,
        "removed_stages": removed_stages,
        "layers": [g for g in wav2lip_groups(spec) if g in removed_stages],
        "audio_in_place_of": f"fd{nc}",
        "weights": "every surviving weight copied unchanged (by name)",
        "removed_tensors": len(dropped),
    }


def cut_residual(generator: Wav2LipGenerator, levels=None) -> tuple[Wav2LipGenerator, dict]:
    """cut-res: remove every residual block of the stages of ``levels`` (default: the
    default inner levels); surviving blocks keep their names and weights."""
    spec = generator.spec
    lv = check_levels(generator, levels) if levels is not None else default_inner_levels(spec)
    stages = [g for g in layers_of_levels(spec, lv) if g.startswith(("fe", "fd"))]
    fe_res, fd_res = list(spec.fe_residual), list(spec.fd_residual)
    removed_blocks = []
    for st in stages:
        i = int(st[2:])
        res = fe_res if st.startswith("fe") else fd_res
        removed_blocks += [f"{st}.{b}" for b in range(1, 1 + res[i])]
        res[i] = 0
    if not removed_blocks:
        raise PruningError(
            f"cut-res: the stages of level(s) {lv} ({', '.join(stages)}) have no residual blocks"
        )
    new_spec = Wav2LipSpec.from_dict({**spec.to_dict(), "fe_residual": fe_res, "fd_residual": fd_res})
    new, dropped = _copy_by_name(generator, new_spec)
    return new, {
        "unit": "residual",
        "levels": lv,
        "stages": stages,
        "removed_blocks": removed_blocks,
        "layers": stages,
        "weights": "every surviving weight copied unchanged (by name)",
        "removed_tensors": len(dropped),
    }


def _input_shapes(spec: Wav2LipSpec, input_shape) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(face, mel)`` shapes (:func:`unetprune.families.wav2lip.structure.wav2lip_input_shapes`)."""
    try:
        return wav2lip_input_shapes(spec, input_shape)
    except ValueError as e:
        raise PruningError(str(e)) from None


class Wav2LipWidthCost:
    """Exact ``params``/``macs_physical``/``macs_output`` of a Wav2Lip architecture at other
    group widths (same layout, cut and residual blocks)."""

    def __init__(self, generator: Wav2LipGenerator, input_shape=None):
        from ...metrics.complexity import _conv_macs

        spec = generator.spec
        self.base = group_widths(spec)
        face, mel = _input_shapes(spec, input_shape)
        per: dict[str, dict[str, int]] = {}
        handles = []
        for name, m in generator.named_modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):

                def hook(mod, args, out, _name=name):
                    per[_name] = _conv_macs(mod, args[0], out)

                handles.append(m.register_forward_hook(hook))
        try:
            tensors = {
                k: torch.empty_like(v, device="meta")
                for k, v in list(generator.named_parameters()) + list(generator.named_buffers())
            }
            was = generator.training
            generator.eval()
            with torch.no_grad():
                torch.func.functional_call(
                    generator, tensors, (torch.zeros(face, device="meta"), torch.zeros(mel, device="meta"))
                )
            generator.train(was)
        finally:
            for h in handles:
                h.remove()
        self.slots = []
        for slot in conv_slots(spec):
            conv = generator.get_submodule(slot.path)
            cc = conv.in_channels * conv.out_channels
            rec = per[slot.path]
            if rec["physical"] % cc or rec["output"] % cc:
                raise PruningError(f"internal: MACs of {slot.path} are not bilinear in its widths")
            per_out = (1 if conv.bias is not None else 0) + (2 if slot.bn is not None else 0)
            self.slots.append(
                (
                    slot.ins,
                    slot.out,
                    conv.weight[0, 0].numel(),
                    per_out,
                    rec["physical"] // cc,
                    rec["output"] // cc,
                )
            )

    def __call__(self, width: Mapping[str, int]) -> dict[str, int]:
        w = {**self.base, **{k: int(v) for k, v in width.items()}}

        def n(item) -> int:
            return w[item] if isinstance(item, str) else int(item)

        tot = {"params": 0, "macs_physical": 0, "macs_output": 0}
        for ins, out, ksz, per_out, cp, co in self.slots:
            cin, cout = sum(n(i) for i in ins), n(out)
            tot["params"] += cin * cout * ksz + per_out * cout
            tot["macs_physical"] += cp * cin * cout
            tot["macs_output"] += co * cin * cout
        return tot


class Wav2LipPruningOps(PruningOps):
    family = "wav2lip"

    def check_layer(self, generator: Wav2LipGenerator, layer: str) -> None:
        check_group(generator, layer)

    def prune_channels(self, generator: Wav2LipGenerator, keep) -> Wav2LipGenerator:
        return prune_wav2lip_channels(generator, keep)

    def layers_of_levels(self, generator: Wav2LipGenerator, levels) -> tuple[list[int], list[str]]:
        lv = check_levels(generator, levels) if levels is not None else default_inner_levels(generator)
        return lv, layers_of_levels(generator, lv)

    def cut(
        self, generator: Wav2LipGenerator, k, unit: str = "levels", levels=None
    ) -> tuple[Wav2LipGenerator, dict]:
        """cut-k (``unit="levels"``, the default) or cut-res (``unit="residual"``, ``k`` unused:
        ``levels`` or the default inner levels); see the module doc."""
        if unit == "levels":
            return cut_levels(generator, k)
        if unit == "residual":
            return cut_residual(generator, levels)
        raise PruningError(f"unknown cut unit {unit!r}; choose one of {', '.join(CUT_UNITS)}")

    def cut_residual(self, generator: Wav2LipGenerator, levels=None) -> tuple[Wav2LipGenerator, dict]:
        return cut_residual(generator, levels)

    def width_cost(self, generator: Wav2LipGenerator, input_shape=None):
        return Wav2LipWidthCost(generator, input_shape)


WAV2LIP_OPS = Wav2LipPruningOps()


__all__ = [
    "CUT_UNITS",
    "WAV2LIP_OPS",
    "Wav2LipPruningOps",
    "Wav2LipWidthCost",
    "check_group",
    "check_levels",
    "cut_levels",
    "cut_residual",
    "fitting_cuts",
    "level_groups",
    "prune_wav2lip_channels",
]
