"""The Wav2Lip generator (Prajwal et al. 2020) with named stages and explicit widths.

Layout (reference: Rudrabha/Wav2Lip ``models/wav2lip.py``; every number below is a
default of :meth:`Wav2LipSpec.reference`)::

    face (6, 96, 96) ─fe0─▶ 16@96 ─fe1─▶ 32@48 ─fe2─▶ 64@24 ─fe3─▶ 128@12 ─fe4─▶ 256@6 ─fe5─▶ 512@3 ─fe6─▶ 512@1
    mel (1, 80, 16) ─audio─▶ 512@1 ─fd0─▶ 512@1 ┐
        cat fe6 → fd1 (ConvT, 1→3)   512 ┐ cat fe5 → fd2 (ConvT, 3→6)   512 ┐ cat fe4 → fd3 (→12) 384
        cat fe3 → fd4 (→24) 256 ┐ cat fe2 → fd5 (→48) 128 ┐ cat fe1 → fd6 (→96) 64 ┐ cat fe0 → out
    out: ConvBlock(80→32, 3x3) → Conv1x1(32→3) → Sigmoid       (B, 3, 96, 96) in [0, 1]

Each decoder stage's output is concatenated (decoder output first, then the encoder
feature) with the encoder feature of the same resolution: the U-Net skips.

* A **conv block** is Conv2d (with bias) → BatchNorm → [+ input, when residual] → ReLU.
  Residual blocks keep the width, so every conv of a stage shares the stage's width.
* A **transposed block** is ConvTranspose2d (with bias) → BatchNorm → ReLU.
* ``fe0``: one 7x7 conv; ``fe1..fe5``: a stride-2 3x3 conv then residual blocks;
  ``fe6``: a 3x3 conv without padding (3→1) then a 1x1 conv.
* ``fd0``: a 1x1 conv on the audio embedding; ``fd1``: a 3x3 ConvT (1→3); ``fd2..fd6``:
  a stride-2 3x3 ConvT (padding 1, output padding 1) then residual blocks.
* ``audio``: five groups (3x3 convs, strides 1, (3,1), 3, (3,2); then a 3x3 conv without
  padding and a 1x1 conv): 80x16 → 80x16 → 27x16 → 9x6 → 3x3 → 1x1.

Module names: ``fe0..fe6``, ``fd0..fd6`` and ``out`` are ``nn.Sequential`` of blocks;
``audio`` is one flat ``nn.Sequential`` (13 blocks by default).  A block holds ``conv``
and ``bn`` (``ConvBlock``/``ConvTBlock``).  So ``fe2.0.conv.weight`` is FE2's strided conv,
``audio.12.conv.weight`` the audio encoder's last 1x1 conv, ``out.1.weight`` the final
1x1 conv.

A pruned model is an ordinary instance with other widths; a **cut** model
(``spec.cut = k``) lacks the ``k`` innermost levels (``fe(7-k)..fe6``, ``fd0..fdk``): the audio
embedding, broadcast to the new innermost resolution, takes the place of ``fdk``'s output
(docs/method.md, "Cut inner layers for Wav2Lip").  Surviving stages keep their names,
so surviving weights copy by name.

The reference checkpoints' state dicts (``face_encoder_blocks.1.0.conv_block.0.weight``,
``audio_encoder.3.conv_block.1.running_mean``, ``output_block.1.weight``, with or without
DataParallel's ``module.`` prefix) load through :func:`load_reference_wav2lip_state_dict`
and :func:`load_wav2lip_weights`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

N_LEVELS = 7  # fe0..fe6 / fd0..fd6
FACE_SIZE = 96
MEL_SHAPE = (80, 16)

REF_FE_WIDTHS = [16, 32, 64, 128, 256, 512, 512]
REF_FE_RESIDUAL = [0, 2, 3, 2, 2, 1, 0]
REF_FD_WIDTHS = [512, 512, 512, 384, 256, 128, 64]
REF_FD_RESIDUAL = [0, 1, 2, 2, 2, 2, 2]
REF_AUDIO_WIDTHS = [32, 64, 128, 256, 512]
REF_AUDIO_RESIDUAL = [2, 2, 2, 1, 0]
REF_OUT_WIDTHS = [32]

# audio groups: (kernel, stride, padding) of the first conv of each group
_AUDIO_FIRST = [(3, 1, 1), (3, (3, 1), 1), (3, 3, 1), (3, (3, 2), 1), (3, 1, 0)]


# ------------------------------------------------------------------------------------------
# blocks
# ------------------------------------------------------------------------------------------


class ConvBlock(nn.Module):
    """Conv2d (bias) → BatchNorm2d → [+ x] → ReLU."""

    def __init__(self, cin: int, cout: int, kernel_size, stride=1, padding=0, residual: bool = False):
        super().__init__()
        if residual and cin != cout:
            raise ValueError(f"a residual block keeps its width, got {cin} → {cout}")
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride, padding)
        self.bn = nn.BatchNorm2d(cout)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.conv(x))
        if self.residual:
            y = y + x
        return torch.relu(y)


class ConvTBlock(nn.Module):
    """ConvTranspose2d (bias) → BatchNorm2d → ReLU."""

    def __init__(self, cin: int, cout: int, kernel_size, stride=1, padding=0, output_padding=0):
        super().__init__()
        self.conv = nn.ConvTranspose2d(cin, cout, kernel_size, stride, padding, output_padding)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x)))


def _residuals(width: int, n: int) -> list[nn.Module]:
    return [ConvBlock(width, width, 3, 1, 1, residual=True) for _ in range(n)]


# ------------------------------------------------------------------------------------------
# spec
# ------------------------------------------------------------------------------------------


def _scaled(widths: list[int], mult: float) -> list[int]:
    return [max(1, round(w * mult)) for w in widths]


@dataclass
class Wav2LipSpec:
    """Everything needed to rebuild a Wav2Lip generator; stored in every checkpoint.

    ``fe_widths[i]``/``fd_widths[i]`` are the widths of stages ``fe{i}``/``fd{i}`` (seven
    entries each, also in a cut model, where the removed stages' entries are ignored);
    ``*_residual`` the residual blocks per stage; ``audio_widths`` the widths of the audio
    encoder's five groups and ``audio_residual`` their residual blocks; ``out_widths`` the
    hidden widths of the output block (a conv block each) before its 1x1 conv.
    """

    fe_widths: list[int] = field(default_factory=lambda: list(REF_FE_WIDTHS))
    fd_widths: list[int] = field(default_factory=lambda: list(REF_FD_WIDTHS))
    audio_widths: list[int] = field(default_factory=lambda: list(REF_AUDIO_WIDTHS))
    fe_residual: list[int] = field(default_factory=lambda: list(REF_FE_RESIDUAL))
    fd_residual: list[int] = field(default_factory=lambda: list(REF_FD_RESIDUAL))
    audio_residual: list[int] = field(default_factory=lambda: list(REF_AUDIO_RESIDUAL))
    out_widths: list[int] = field(default_factory=lambda: list(REF_OUT_WIDTHS))
    face_nc: int = 6
    output_nc: int = 3
    cut: int = 0

    # -- names -------------------------------------------------------------------------
    @property
    def fe_levels(self) -> list[int]:
        """Indices of the face-encoder stages present (0..6-cut)."""
        return list(range(N_LEVELS - self.cut))

    @property
    def fd_levels(self) -> list[int]:
        """Indices of the face-decoder stages present (0..6, or cut+1..6 when cut)."""
        return list(range(N_LEVELS)) if self.cut == 0 else list(range(self.cut + 1, N_LEVELS))

    def stage_names(self) -> list[str]:
        """``audio``, the encoder outer → inner, the decoder inner → outer, ``out``."""
        return ["audio"] + [f"fe{i}" for i in self.fe_levels] + [f"fd{i}" for i in self.fd_levels] + ["out"]

    # -- (de)serialisation -------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"name": "wav2lip", **asdict(self)}

    @classmethod
    def from_dict(cls, d: Mapping) -> Wav2LipSpec:
        d = dict(d)
        name = d.pop("name", "wav2lip")
        if name != "wav2lip":
            raise ValueError(f"architecture name is {name!r}, expected 'wav2lip'")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown Wav2LipSpec fields: {unknown}")
        return cls(**{k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in d.items()})

    @classmethod
    def reference(cls, width_mult: float = 1.0, cut: int = 0) -> Wav2LipSpec:
        """The reference Wav2Lip; ``width_mult`` scales every width (rounded, ≥ 1) for small
        demo models (0.25: 2,275,983 parameters)."""
        m = float(width_mult)
        if not m > 0:
            raise ValueError(f"width_mult must be positive, got {width_mult!r}")
        return cls(
            fe_widths=_scaled(REF_FE_WIDTHS, m),
            fd_widths=_scaled(REF_FD_WIDTHS, m),
            audio_widths=_scaled(REF_AUDIO_WIDTHS, m),
            out_widths=_scaled(REF_OUT_WIDTHS, m),
            cut=cut,
        )

    def validate(self) -> None:
        for name, n in (
            ("fe_widths", N_LEVELS),
            ("fd_widths", N_LEVELS),
            ("fe_residual", N_LEVELS),
            ("fd_residual", N_LEVELS),
            ("audio_widths", 5),
            ("audio_residual", 5),
        ):
            v = getattr(self, name)
            if len(v) != n:
                raise ValueError(f"{name} has {len(v)} entries, expected {n}")
        for name in ("fe_widths", "fd_widths", "audio_widths", "out_widths"):
            for i, w in enumerate(getattr(self, name)):
                if not isinstance(w, int) or isinstance(w, bool) or w < 1:
                    raise ValueError(f"{name}[{i}] must be a positive integer, got {w!r}")
        for name in ("fe_residual", "fd_residual", "audio_residual"):
            for i, r in enumerate(getattr(self, name)):
                if not isinstance(r, int) or isinstance(r, bool) or r < 0:
                    raise ValueError(f"{name}[{i}] must be a non-negative integer, got {r!r}")
        if self.fe_residual[6] != 0 or self.audio_residual[4] != 0:
            raise ValueError("fe6 and the last audio group have no residual blocks (3→1 conv, then 1x1)")
        if self.fd_residual[0] != 0:
            raise ValueError("fd0 (the 1x1 conv on the audio embedding) has no residual blocks")
        if not 0 <= self.cut <= 5:
            raise ValueError(f"cut must be between 0 and 5, got {self.cut!r}")
        for name in ("face_nc", "output_nc"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive")


# ------------------------------------------------------------------------------------------
# generator
# ------------------------------------------------------------------------------------------


def _fe_stage(i: int, cin: int, w: int, n_res: int) -> nn.Sequential:
    if i == 0:
        return nn.Sequential(ConvBlock(cin, w, 7, 1, 3), *_residuals(w, n_res))
    if i == 6:
        return nn.Sequential(ConvBlock(cin, w, 3, 1, 0), ConvBlock(w, w, 1, 1, 0))
    return nn.Sequential(ConvBlock(cin, w, 3, 2, 1), *_residuals(w, n_res))


def _fd_stage(i: int, cin: int, w: int, n_res: int) -> nn.Sequential:
    if i == 0:
        return nn.Sequential(ConvBlock(cin, w, 1, 1, 0))
    if i == 1:
        return nn.Sequential(ConvTBlock(cin, w, 3, 1, 0), *_residuals(w, n_res))
    return nn.Sequential(ConvTBlock(cin, w, 3, 2, 1, 1), *_residuals(w, n_res))


def _audio_encoder(widths: list[int], residual: list[int]) -> nn.Sequential:
    blocks: list[nn.Module] = []
    cin = 1
    for g, (w, n_res) in enumerate(zip(widths, residual)):
        k, s, p = _AUDIO_FIRST[g]
        blocks.append(ConvBlock(cin, w, k, s, p))
        blocks.extend(_residuals(w, n_res))
        cin = w
    blocks.append(ConvBlock(cin, cin, 1, 1, 0))  # the closing 1x1 conv of the last group
    return nn.Sequential(*blocks)


class Wav2LipGenerator(nn.Module):
    """Wav2Lip built from a :class:`Wav2LipSpec`; modules ``audio``, ``fe*``, ``fd*``, ``out``.

    ``forward(face, mel)``: ``face`` (B, 6, 96, 96) and ``mel`` (B, 1, 80, 16) give
    (B, 3, 96, 96) in [0, 1]; the reference's batched layout — ``face`` (B, 6, T, 96, 96)
    and ``mel`` (B, T, 1, 80, 16) — gives (B, 3, T, 96, 96).  (The reference's argument
    order is ``(audio, face)``; this class takes the face first.)
    """

    def __init__(self, spec: Wav2LipSpec | None = None):
        super().__init__()
        spec = spec if spec is not None else Wav2LipSpec.reference()
        spec.validate()
        self.spec = spec
        fe, fd = spec.fe_widths, spec.fd_widths
        self.audio = _audio_encoder(spec.audio_widths, spec.audio_residual)
        cin = spec.face_nc
        for i in spec.fe_levels:
            self.add_module(f"fe{i}", _fe_stage(i, cin, fe[i], spec.fe_residual[i]))
            cin = fe[i]
        audio_w = spec.audio_widths[-1]
        if spec.cut == 0:
            below = audio_w  # fd0's input: the audio embedding
        else:
            below = audio_w + fe[N_LEVELS - 1 - spec.cut]  # broadcast audio ++ the innermost skip
        for i in spec.fd_levels:
            self.add_module(f"fd{i}", _fd_stage(i, below, fd[i], spec.fd_residual[i]))
            below = fd[i] + fe[N_LEVELS - 1 - i]  # fd_i's output ++ fe_(6-i)
        out: list[nn.Module] = []
        for w in spec.out_widths:
            out.append(ConvBlock(below, w, 3, 1, 1))
            below = w
        out += [nn.Conv2d(below, spec.output_nc, 1, 1, 0), nn.Sigmoid()]
        self.out = nn.Sequential(*out)

    def stage_names(self) -> list[str]:
        return self.spec.stage_names()

    def _forward_2d(self, face: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
        a = self.audio(mel)
        feats = []
        x = face
        for i in self.spec.fe_levels:
            x = getattr(self, f"fe{i}")(x)
            feats.append(x)
        if self.spec.cut == 0:
            y = a
        else:
            skip = feats.pop()
            y = torch.cat([a.expand(-1, -1, skip.shape[2], skip.shape[3]), skip], dim=1)
        for i in self.spec.fd_levels:
            y = getattr(self, f"fd{i}")(y)
            y = torch.cat([y, feats.pop()], dim=1)
        return self.out(y)

    def forward(self, face: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
        if face.dim() == 5:
            if mel.dim() != 5:
                raise ValueError(
                    f"batched faces (B, C, T, H, W) need mels (B, T, 1, 80, 16), got {tuple(mel.shape)}"
                )
            b, t = face.shape[0], face.shape[2]
            if mel.shape[0] != b or mel.shape[1] != t:
                raise ValueError(f"faces {tuple(face.shape)} and mels {tuple(mel.shape)} disagree on (B, T)")
            # frame-major like the reference: rows [t*B:(t+1)*B] are frame t of every sample
            f2 = face.permute(2, 0, 1, 3, 4).reshape(t * b, *face.shape[1:2], *face.shape[3:])
            m2 = mel.transpose(0, 1).reshape(t * b, *mel.shape[2:])
            y = self._forward_2d(f2, m2)
            return y.reshape(t, b, *y.shape[1:]).permute(1, 2, 0, 3, 4)
        if face.dim() != 4 or mel.dim() != 4:
            raise ValueError(
                f"expected face (B, C, H, W) and mel (B, 1, 80, 16), got {tuple(face.shape)} "
                f"and {tuple(mel.shape)}"
            )
        if face.shape[0] != mel.shape[0]:
            raise ValueError(f"face batch {face.shape[0]} != mel batch {mel.shape[0]}")
        return self._forward_2d(face, mel)


def build_wav2lip(spec: Wav2LipSpec | dict | None = None, seed: int | None = None) -> Wav2LipGenerator:
    """A generator from a spec (or its dict); PyTorch's default initialisation, as the reference."""
    if isinstance(spec, dict):
        spec = Wav2LipSpec.from_dict(spec)
    if seed is not None:
        torch.manual_seed(seed)
    return Wav2LipGenerator(spec)


def count_complexity(model: nn.Module, *input_shapes) -> dict[str, int]:
    """``{"params", "macs_physical", "macs_output"}`` of a model with several inputs.

    The conventions of :mod:`unetprune.metrics.complexity` (Conv2d/ConvTranspose2d MACs only;
    physical counts a ConvTranspose2d per input pixel), from one hooked forward pass on
    ``meta`` tensors (the model's own parameters and buffers are untouched).  Default inputs
    for a :class:`Wav2LipGenerator`: one 96x96 face and one mel window.
    """
    from ...metrics.complexity import _conv_macs, count_parameters

    if not input_shapes:
        spec = model.spec
        input_shapes = ((1, spec.face_nc, FACE_SIZE, FACE_SIZE), (1, 1, *MEL_SHAPE))
    totals = {"physical": 0, "output": 0}
    handles = []

    def hook(mod, args, out):
        for k, v in _conv_macs(mod, args[0], out).items():
            totals[k] += v

    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            handles.append(m.register_forward_hook(hook))
    was_training = model.training
    model.eval()  # BatchNorm at 1x1 with batch 1 refuses training mode; MACs do not depend on it
    try:
        tensors = {
            k: torch.empty_like(v, device="meta")
            for k, v in list(model.named_parameters()) + list(model.named_buffers())
        }
        with torch.no_grad():
            torch.func.functional_call(
                model, tensors, tuple(torch.zeros(tuple(s), device="meta") for s in input_shapes)
            )
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return {
        "params": count_parameters(model),
        "macs_physical": int(totals["physical"]),
        "macs_output": int(totals["output"]),
    }


def stage_parameters(model: nn.Module) -> dict[str, int]:
    """Parameters per named stage (``audio``, ``fe0`` …, ``out``) of a Wav2Lip generator."""
    return {
        name: int(sum(p.numel() for p in getattr(model, name).parameters())) for name in model.stage_names()
    }
