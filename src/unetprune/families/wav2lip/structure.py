"""The channel groups of a Wav2Lip generator: which convs share a width, their levels, the
widths of an architecture.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from .networks import FACE_SIZE, MEL_SHAPE, N_LEVELS, Wav2LipSpec

# ------------------------------------------------------------------------------------------
# structure queries (what the family seam and the pruning engine ask)
# ------------------------------------------------------------------------------------------
#
# Channel groups.  Inside a stage the residual blocks add their output to their input, so
# every conv of a stage shares one channel set: a *group* is a stage's output channels —
# its first conv's filters, every later conv's filters and inputs, the BN of each (FE6 and
# the last audio group close with a non-residual 1x1 conv; the spec gives it the stage's
# width, so it belongs to the group too).  Groups are named after their stage: ``fe0..fe6``,
# ``fd0..fd6``, ``audio0..audio4`` (the audio encoder's five groups) and ``out0`` (the output
# block's hidden conv; ``out0..out{m-1}`` for ``m`` hidden widths).  The output block's last
# conv (RGB, 3 channels) is in no group: it is never pruned.
#
# Consumers: ``fe{i}`` feeds ``fe{i+1}`` and, as the second half of its input, the decoder
# stage that concatenates it (``fd{7-i}``; ``fe0`` → the output block); ``fd{i}`` feeds the
# first half of ``fd{i+1}``'s input (``fd6`` → the output block); ``audio4`` feeds ``fd0``
# (in a cut model: the first half of the new innermost decoder stage's input).
#
# Levels (the unit of inner pruning and of the cut): level ``j`` (0..6) holds ``fe{j}`` and
# the decoder stage that reads at its resolution, ``fd{7-j}``; the innermost level 6 also
# holds ``fd0`` and level 0 the output block's hidden groups.  So level 6 = FE6, FD0, FD1;
# level 5 = FE5, FD2; level 4 = FE4, FD3 …; cut-k removes levels ``7-k..6``, and the
# default inner levels 5–6 are the 512-wide FE5, FE6, FD0, FD1, FD2.


@dataclass(frozen=True)
class ConvSlot:
    """One conv of a Wav2Lip generator and the channel groups on its two sides.

    ``path``: module path of the conv (``fe2.0.conv``, ``out.1``); ``bn``: that of the
    BatchNorm after it (``None`` for the final RGB conv); ``out``: the group its filters
    belong to, or a fixed width (the RGB output); ``ins``: its input channels in order,
    each a group name or a fixed width (the face's 6 channels, the mel's 1);
    ``transposed``: a ConvTranspose2d (weight ``[C_in, C_out, k, k]``).
    """

    path: str
    bn: str | None
    out: str | int
    ins: tuple
    transposed: bool = False


def _spec_of(obj) -> Wav2LipSpec:
    return getattr(obj, "spec", obj)


def wav2lip_input_shapes(spec_or_generator, input_shape=None) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(face, mel)`` shapes of a Wav2Lip forward pass from ``None`` (batch 1), a face shape
    ``(B, C, 96, 96)`` (the mel window follows its batch) or a pair of shapes."""
    spec = _spec_of(spec_or_generator)
    face_ok = (spec.face_nc, FACE_SIZE, FACE_SIZE)
    if input_shape is None:
        return (1, *face_ok), (1, 1, *MEL_SHAPE)
    shp = list(input_shape)
    if len(shp) == 2 and all(isinstance(s, (list, tuple)) for s in shp):
        face, mel = tuple(int(x) for x in shp[0]), tuple(int(x) for x in shp[1])
    else:
        face = tuple(int(x) for x in shp)
        mel = (face[0], 1, *MEL_SHAPE) if face else ()
    if (
        len(face) != 4
        or face[1:] != face_ok
        or len(mel) != 4
        or mel[1:] != (1, *MEL_SHAPE)
        or mel[0] != face[0]
    ):
        raise ValueError(
            f"a Wav2Lip generator is counted on a face (B, {spec.face_nc}, {FACE_SIZE}, {FACE_SIZE}) "
            f"and a mel window (B, 1, {MEL_SHAPE[0]}, {MEL_SHAPE[1]}); got input_shape "
            f"{list(input_shape)} (pass the family's input_shape)"
        )
    return face, mel


def wav2lip_groups(spec_or_generator) -> list[str]:
    """Prunable channel groups: ``audio0..audio4`` (the audio branch, outer → inner), then the
    face U outer → inner → outer: ``fe0..fe6``, ``fd0..fd6``, ``out0`` (a cut model lacks its
    removed stages)."""
    s = _spec_of(spec_or_generator)
    return (
        [f"audio{g}" for g in range(len(s.audio_widths))]
        + [f"fe{i}" for i in s.fe_levels]
        + [f"fd{i}" for i in s.fd_levels]
        + [f"out{j}" for j in range(len(s.out_widths))]
    )


def group_widths(spec_or_generator) -> dict[str, int]:
    """``{group: width}`` of every group, from the spec."""
    s = _spec_of(spec_or_generator)
    fields = {"audio": s.audio_widths, "fe": s.fe_widths, "fd": s.fd_widths, "out": s.out_widths}
    out = {}
    for name in wav2lip_groups(s):
        m = re.fullmatch(r"([a-z]+)(\d+)", name)
        out[name] = int(fields[m.group(1)][int(m.group(2))])
    return out


def conv_slots(spec_or_generator) -> list[ConvSlot]:
    """Every conv of the generator, in module order, with the groups it reads and writes."""
    s = _spec_of(spec_or_generator)
    slots: list[ConvSlot] = []

    def add(path: str, out, ins, transposed: bool = False):
        slots.append(ConvSlot(f"{path}.conv", f"{path}.bn", out, tuple(ins), transposed))

    idx, prev = 0, 1
    for g, n_res in enumerate(s.audio_residual):
        name = f"audio{g}"
        for b in range(1 + n_res):
            add(f"audio.{idx}", name, [prev if b == 0 else name])
            idx += 1
        prev = name
    add(f"audio.{idx}", prev, [prev])  # the closing 1x1 conv of the last group
    audio = prev
    prev = s.face_nc
    for i in s.fe_levels:
        name = f"fe{i}"
        n_blocks = 2 if i == 6 else 1 + s.fe_residual[i]
        for b in range(n_blocks):
            add(f"fe{i}.{b}", name, [prev if b == 0 else name])
        prev = name
    below = [audio] if s.cut == 0 else [audio, f"fe{N_LEVELS - 1 - s.cut}"]
    for i in s.fd_levels:
        name = f"fd{i}"
        for b in range(1 + s.fd_residual[i]):
            add(f"fd{i}.{b}", name, below if b == 0 else [name], transposed=(b == 0 and i > 0))
        below = [name, f"fe{N_LEVELS - 1 - i}"]
    for j in range(len(s.out_widths)):
        add(f"out.{j}", f"out{j}", below)
        below = [f"out{j}"]
    slots.append(ConvSlot(f"out.{len(s.out_widths)}", None, s.output_nc, tuple(below)))
    return slots


def group_convs(spec_or_generator, group: str) -> list[ConvSlot]:
    """The convs whose filters make up ``group`` (the first one scores it)."""
    return [c for c in conv_slots(spec_or_generator) if c.out == group]


def wav2lip_levels(spec_or_generator) -> list[int]:
    """The levels present: ``0..6`` (``0..6-cut`` in a cut model); 6 is the innermost."""
    return list(range(N_LEVELS - _spec_of(spec_or_generator).cut))


def level_groups(spec_or_generator, level: int) -> list[str]:
    """The groups of ``level`` (see the structure notes above), in :func:`wav2lip_groups` order."""
    s = _spec_of(spec_or_generator)
    names = {f"fe{level}"}
    if level >= 1:
        names.add(f"fd{N_LEVELS - level}")
    if level == N_LEVELS - 1:
        names.add("fd0")
    if level == 0:
        names.update(f"out{j}" for j in range(len(s.out_widths)))
    return [g for g in wav2lip_groups(s) if g in names]


def layers_of_levels(spec_or_generator, levels) -> list[str]:
    """The groups of a set of levels, in :func:`wav2lip_groups` order (outer → inner → outer)."""
    wanted = set()
    for lv in levels:
        wanted.update(level_groups(spec_or_generator, int(lv)))
    return [g for g in wav2lip_groups(spec_or_generator) if g in wanted]


def default_inner_levels(spec_or_generator) -> list[int]:
    """The levels all of whose stages have the face path's largest width: 5–6 (FE5, FE6, FD0,
    FD1, FD2, the 512-wide stages) for the reference layout and any ``width_mult``; 5 alone
    after cut-k1.  The innermost level when none qualifies."""
    s = _spec_of(spec_or_generator)
    gw = group_widths(s)
    face = [g for g in gw if g.startswith(("fe", "fd"))]
    wmax = max(gw[g] for g in face)
    levels = [
        lv
        for lv in wav2lip_levels(s)
        if all(gw[g] == wmax for g in level_groups(s, lv) if g.startswith(("fe", "fd")))
    ]
    return levels or [wav2lip_levels(s)[-1]]


def spec_with_widths(spec: Wav2LipSpec, widths: Mapping[str, int]) -> Wav2LipSpec:
    """``spec`` with the groups of ``widths`` at those widths (others unchanged)."""
    lists = {
        "audio": list(spec.audio_widths),
        "fe": list(spec.fe_widths),
        "fd": list(spec.fd_widths),
        "out": list(spec.out_widths),
    }
    for name, w in widths.items():
        m = re.fullmatch(r"(audio|fe|fd|out)(\d+)", name)
        if not m or int(m.group(2)) >= len(lists[m.group(1)]):
            raise ValueError(f"{name!r} is not a Wav2Lip channel group")
        lists[m.group(1)][int(m.group(2))] = int(w)
    return Wav2LipSpec(
        fe_widths=lists["fe"],
        fd_widths=lists["fd"],
        audio_widths=lists["audio"],
        fe_residual=list(spec.fe_residual),
        fd_residual=list(spec.fd_residual),
        audio_residual=list(spec.audio_residual),
        out_widths=lists["out"],
        face_nc=spec.face_nc,
        output_nc=spec.output_nc,
        cut=spec.cut,
    )


def wav2lip_widths(generator) -> dict:
    """JSON-serialisable architecture summary: every group's width, the residual blocks of
    every present stage and the cut."""
    s = _spec_of(generator)
    residual = {f"fe{i}": s.fe_residual[i] for i in s.fe_levels}
    residual.update({f"fd{i}": s.fd_residual[i] for i in s.fd_levels})
    residual["audio"] = list(s.audio_residual)
    return {"groups": group_widths(s), "residual": residual, "cut": s.cut}
