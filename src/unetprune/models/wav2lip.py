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

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..errors import UserFacingError
from .family import ModelFamily, register_family

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


class WeightsFileError(UserFacingError, ValueError):
    """A weights file is unreadable or holds another architecture (the message names the file)."""


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
        return (["audio"] + [f"fe{i}" for i in self.fe_levels] + [f"fd{i}" for i in self.fd_levels]
                + ["out"])

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
        return cls(fe_widths=_scaled(REF_FE_WIDTHS, m), fd_widths=_scaled(REF_FD_WIDTHS, m),
                   audio_widths=_scaled(REF_AUDIO_WIDTHS, m), out_widths=_scaled(REF_OUT_WIDTHS, m),
                   cut=cut)

    def validate(self) -> None:
        for name, n in (("fe_widths", N_LEVELS), ("fd_widths", N_LEVELS), ("fe_residual", N_LEVELS),
                        ("fd_residual", N_LEVELS), ("audio_widths", 5), ("audio_residual", 5)):
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
                raise ValueError(f"batched faces (B, C, T, H, W) need mels (B, T, 1, 80, 16), got {tuple(mel.shape)}")
            b, t = face.shape[0], face.shape[2]
            if mel.shape[0] != b or mel.shape[1] != t:
                raise ValueError(f"faces {tuple(face.shape)} and mels {tuple(mel.shape)} disagree on (B, T)")
            # frame-major like the reference: rows [t*B:(t+1)*B] are frame t of every sample
            f2 = face.permute(2, 0, 1, 3, 4).reshape(t * b, *face.shape[1:2], *face.shape[3:])
            m2 = mel.transpose(0, 1).reshape(t * b, *mel.shape[2:])
            y = self._forward_2d(f2, m2)
            return y.reshape(t, b, *y.shape[1:]).permute(1, 2, 0, 3, 4)
        if face.dim() != 4 or mel.dim() != 4:
            raise ValueError(f"expected face (B, C, H, W) and mel (B, 1, 80, 16), got {tuple(face.shape)} "
                             f"and {tuple(mel.shape)}")
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
    from ..metrics.complexity import _conv_macs, count_parameters

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
        tensors = {k: torch.empty_like(v, device="meta")
                   for k, v in list(model.named_parameters()) + list(model.named_buffers())}
        with torch.no_grad():
            torch.func.functional_call(model, tensors,
                                       tuple(torch.zeros(tuple(s), device="meta") for s in input_shapes))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return {"params": count_parameters(model), "macs_physical": int(totals["physical"]),
            "macs_output": int(totals["output"])}


def stage_parameters(model: nn.Module) -> dict[str, int]:
    """Parameters per named stage (``audio``, ``fe0`` …, ``out``) of a Wav2Lip generator."""
    return {name: int(sum(p.numel() for p in getattr(model, name).parameters()))
            for name in model.stage_names()}


# ------------------------------------------------------------------------------------------
# reference state dicts and weight files
# ------------------------------------------------------------------------------------------

_PREFIX_RE = re.compile(r"^(module\.|_orig_mod\.)+")


def strip_prefixes(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove DataParallel's ``module.`` (and torch.compile's ``_orig_mod.``) prefixes."""
    return {_PREFIX_RE.sub("", k): v for k, v in sd.items()}


def _block_leaf(rest: str) -> str | None:
    """``conv_block.0.weight`` → ``conv.weight``; ``conv_block.1.running_mean`` → ``bn.running_mean``."""
    m = re.fullmatch(r"conv_block\.([01])\.(.+)", rest)
    if not m:
        return None
    return ("conv." if m.group(1) == "0" else "bn.") + m.group(2)


# reference conv-block keys -> our block prefix (the indices of the match fill the braces)
_WAV2LIP_BLOCK_KEYS = ((re.compile(r"face_encoder_blocks\.(\d+)\.(\d+)\.(.+)"), "fe{}.{}."),
                       (re.compile(r"face_decoder_blocks\.(\d+)\.(\d+)\.(.+)"), "fd{}.{}."),
                       (re.compile(r"audio_encoder\.(\d+)\.(.+)"), "audio.{}."),
                       (re.compile(r"output_block\.0\.(.+)"), "out.0."))


def map_reference_wav2lip_key(key: str) -> str | None:
    """Our name of a reference Wav2Lip key (after prefix stripping); ``None`` if it is not one."""
    for pattern, prefix in _WAV2LIP_BLOCK_KEYS:
        m = pattern.fullmatch(key)
        if m:
            *index, rest = m.groups()
            leaf = _block_leaf(rest)
            return None if leaf is None else prefix.format(*index) + leaf
    m = re.fullmatch(r"output_block\.1\.(weight|bias)", key)
    return f"out.1.{m.group(1)}" if m else None


def _unwrap_checkpoint(obj) -> Mapping:
    """The state dict inside a reference checkpoint (``{"state_dict": …}``) or the object itself."""
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        return obj["state_dict"]
    return obj


def _check_against(model: nn.Module, sd: Mapping[str, torch.Tensor], what: str) -> None:
    """Raise ValueError (one line) unless ``sd`` has exactly ``model``'s keys and shapes."""
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    extra = [k for k in sd if k not in own]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if extra:
            parts.append(f"{len(extra)} unexpected (e.g. {extra[0]})")
        raise ValueError(f"not a {what} state dict: " + ", ".join(parts))
    for k, v in own.items():
        t = sd[k]
        if not isinstance(t, torch.Tensor) or tuple(t.shape) != tuple(v.shape):
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"not a {what} state dict: {k} has shape {got}, expected {tuple(v.shape)}")


def load_reference_wav2lip_state_dict(sd: Mapping, spec: Wav2LipSpec | None = None) -> dict[str, torch.Tensor]:
    """Map a reference Wav2Lip state dict (or checkpoint ``{"state_dict": …}``) onto our names.

    Accepts the keys of Rudrabha/Wav2Lip's ``Wav2Lip`` with or without the ``module.``
    prefix.  The result is checked against a generator of ``spec`` (default: the reference
    widths) — every key present, every shape right — and raises ``ValueError`` with a
    one-line reason otherwise.
    """
    return remap_state_dict(sd, map_reference_wav2lip_key, "Wav2Lip", "reference Wav2Lip",
                            lambda: Wav2LipGenerator(spec if spec is not None else Wav2LipSpec.reference()))


def remap_state_dict(sd: Mapping, mapper, what: str, ref_what: str, build) -> dict[str, torch.Tensor]:
    """A foreign state dict (or ``{"state_dict": …}`` checkpoint, with or without ``module.``)
    under our names: every key through ``mapper`` (None = not this model's key), then checked
    against ``build()`` made on the meta device (every key present, every shape right).
    ``ValueError`` with a one-line reason otherwise: "not a <what> state dict: …" for foreign
    keys, "not a <ref_what> state dict: …" for missing keys or wrong shapes."""
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for k, v in strip_prefixes(_unwrap_checkpoint(sd)).items():
        ours = mapper(k)
        if ours is None:
            unknown.append(k)
        else:
            out[ours] = v
    if unknown:
        raise ValueError(f"not a {what} state dict: {len(unknown)} keys of another model (e.g. {unknown[0]})")
    with torch.device("meta"):
        ref = build()
    _check_against(ref, out, ref_what)
    return out


def load_weights_file(path: Path | str, map_location="cpu"):
    """``torch.load(path, weights_only=True)``, with a one-line :class:`WeightsFileError`."""
    path = Path(path)
    if not path.is_file():
        raise WeightsFileError(f"{path}: no such weights file")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 — unpickling errors come in many types
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise WeightsFileError(f"{path}: cannot be read as a torch weights file "
                               f"(torch.load weights_only=True): {first}") from None


def load_wav2lip_weights(path: Path | str, spec: Wav2LipSpec | None = None,
                         map_location="cpu") -> Wav2LipGenerator:
    """A generator with the weights of a reference Wav2Lip checkpoint (``wav2lip.pth``,
    ``wav2lip_gan.pth``: ``{"state_dict": …}``) or a bare reference state dict."""
    obj = load_weights_file(path, map_location)
    if not isinstance(obj, Mapping):
        raise WeightsFileError(f"{path}: expected a reference Wav2Lip checkpoint (a dict with "
                               f"'state_dict'), got {type(obj).__name__}")
    try:
        sd = load_reference_wav2lip_state_dict(obj, spec)
    except ValueError as e:
        raise WeightsFileError(f"{path}: expected a reference Wav2Lip generator checkpoint; {e}") from None
    g = Wav2LipGenerator(spec if spec is not None else Wav2LipSpec.reference())
    g.load_state_dict(sd)
    return g


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
    if len(face) != 4 or face[1:] != face_ok or len(mel) != 4 or mel[1:] != (1, *MEL_SHAPE) or mel[0] != face[0]:
        raise ValueError(f"a Wav2Lip generator is counted on a face (B, {spec.face_nc}, {FACE_SIZE}, {FACE_SIZE}) "
                         f"and a mel window (B, 1, {MEL_SHAPE[0]}, {MEL_SHAPE[1]}); got input_shape "
                         f"{list(input_shape)} (pass the family's input_shape)")
    return face, mel


def wav2lip_groups(spec_or_generator) -> list[str]:
    """Prunable channel groups: ``audio0..audio4`` (the audio branch, outer → inner), then the
    face U outer → inner → outer: ``fe0..fe6``, ``fd0..fd6``, ``out0`` (a cut model lacks its
    removed stages)."""
    s = _spec_of(spec_or_generator)
    return ([f"audio{g}" for g in range(len(s.audio_widths))] + [f"fe{i}" for i in s.fe_levels]
            + [f"fd{i}" for i in s.fd_levels] + [f"out{j}" for j in range(len(s.out_widths))])


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
    levels = [lv for lv in wav2lip_levels(s)
              if all(gw[g] == wmax for g in level_groups(s, lv) if g.startswith(("fe", "fd")))]
    return levels or [wav2lip_levels(s)[-1]]


def spec_with_widths(spec: Wav2LipSpec, widths: Mapping[str, int]) -> Wav2LipSpec:
    """``spec`` with the groups of ``widths`` at those widths (others unchanged)."""
    lists = {"audio": list(spec.audio_widths), "fe": list(spec.fe_widths), "fd": list(spec.fd_widths),
             "out": list(spec.out_widths)}
    for name, w in widths.items():
        m = re.fullmatch(r"(audio|fe|fd|out)(\d+)", name)
        if not m or int(m.group(2)) >= len(lists[m.group(1)]):
            raise ValueError(f"{name!r} is not a Wav2Lip channel group")
        lists[m.group(1)][int(m.group(2))] = int(w)
    return Wav2LipSpec(fe_widths=lists["fe"], fd_widths=lists["fd"], audio_widths=lists["audio"],
                       fe_residual=list(spec.fe_residual), fd_residual=list(spec.fd_residual),
                       audio_residual=list(spec.audio_residual), out_widths=lists["out"],
                       face_nc=spec.face_nc, output_nc=spec.output_nc, cut=spec.cut)


def wav2lip_widths(generator) -> dict:
    """JSON-serialisable architecture summary: every group's width, the residual blocks of
    every present stage and the cut."""
    s = _spec_of(generator)
    residual = {f"fe{i}": s.fe_residual[i] for i in s.fe_levels}
    residual.update({f"fd{i}": s.fd_residual[i] for i in s.fd_levels})
    residual["audio"] = list(s.audio_residual)
    return {"groups": group_widths(s), "residual": residual, "cut": s.cut}


# ------------------------------------------------------------------------------------------
# training (issue 12 item 3): the expert SyncNet trainer and the generator trainer
# ------------------------------------------------------------------------------------------
#
# Both are trainers of the generic loop (:func:`unetprune.train.train`: epochs, seeding,
# resume, atomic checkpoints, NaN guard, progress bars), with the interface of
# :class:`unetprune.models.pix2pix.Pix2PixTrainer`.  Recipe (reference Rudrabha/Wav2Lip
# ``color_syncnet_train.py``, ``wav2lip_train.py``, ``hq_wav2lip_train.py``):
#
# * expert: ``d = cos(audio_emb, face_emb)`` (both ReLU'd and L2-normalised, so d ∈ [0, 1]),
#   loss = BCE(d, label) on in-sync (1) and off-sync (0) windows of the same clip; Adam 1e-4,
#   batch 64 (``train.expert``);
# * generator: loss = syncnet_wt · sync + disc_wt · perceptual + (1 − syncnet_wt − disc_wt) · L1,
#   L1 on the whole generated frames (B, 3, T, 96, 96) vs the targets; sync = BCE(cos(expert(mel,
#   lower halves of G's 5 frames)), 1) with the expert frozen (``requires_grad`` off and in eval
#   mode: its BatchNorm statistics never move); ``syncnet_wt`` is 0 until the validation sync
#   loss falls below ``train.sync_threshold`` (0.75), then ``train.syncnet_wt`` (0.03) for the
#   rest of the run (checked after every epoch, the reference every 3000 steps); perceptual =
#   BCE(qual(G lower halves), 1) with the HQ quality discriminator (``model.hq``; ``disc_wt`` 0.07,
#   0 without it), which is trained on real → 1, generated → 0 with its own Adam (train.lr).
#
# The expert is its own model family, ``wav2lip-expert`` (its "generator" is the SyncNet), so
# ``unetprune train --expert`` writes an ordinary self-describing checkpoint
# (``family: wav2lip-expert``) that a generator config names as ``model.expert_checkpoint``.

EXPERT_FAMILY = "wav2lip-expert"


def cosine_bce(audio: torch.Tensor, face: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """The reference ``cosine_loss``: BCE of the cosine similarity (clamped to [0, 1]) vs ``label``."""
    import torch.nn.functional as F

    d = F.cosine_similarity(audio.float(), face.float()).clamp(0.0, 1.0).unsqueeze(1)
    return F.binary_cross_entropy(d, label.float().view(-1, 1))


def lower_halves_stacked(frames: torch.Tensor) -> torch.Tensor:
    """(B, 3, T, S, S) frames → (B, 3T, S/2, S): the expert's input (frames on channels, as the reference)."""
    g = frames[:, :, :, frames.shape[3] // 2:]
    return torch.cat([g[:, :, i] for i in range(g.shape[2])], dim=1)


class Wav2LipCritics(nn.Module):
    """The non-generator models of a Wav2Lip generator run (the trainer's "discriminator" slot):
    ``expert`` (frozen :class:`~unetprune.models.syncnet.SyncNetColor`, or ``None`` = no sync
    loss) and ``qual`` (the HQ :class:`~unetprune.models.syncnet.Wav2LipDiscQual`, or ``None``).
    ``config`` is the checkpoint's ``discriminator.arch``: enough to rebuild both."""

    def __init__(self, expert: nn.Module | None, qual: nn.Module | None, config: dict):
        super().__init__()
        self.expert = expert
        self.qual = qual
        self.config = config
        if expert is not None:
            expert.requires_grad_(False)
            expert.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        if self.expert is not None:
            self.expert.eval()  # frozen, BatchNorm statistics included
        return self


def _critics_from_arch(arch: dict) -> Wav2LipCritics:
    from .syncnet import SyncNetColor, SyncNetSpec, Wav2LipDiscQual

    expert = SyncNetColor(SyncNetSpec.from_dict(arch["expert"])) if arch.get("expert") else None
    qual = Wav2LipDiscQual(arch["qual_widths"]) if arch.get("qual_widths") else None
    return Wav2LipCritics(expert, qual, dict(arch))


def load_expert(path: Path | str):
    """``(SyncNetColor, source record)`` from a ``wav2lip-expert`` checkpoint (``unetprune train
    --expert``) or a reference ``lipsync_expert.pth``; a one-line error naming the file otherwise."""
    from ..checkpoint import CheckpointError, load_checkpoint, sha256_file
    from .syncnet import SyncNetColor, SyncNetSpec, load_syncnet_color_weights

    path = Path(path)
    if not path.is_file():
        raise UserFacingError(f"model.expert_checkpoint {path} does not exist: train the expert first "
                              f"(`unetprune train --expert --config CONFIG --out DIR`)")
    source = {"path": str(path), "sha256": sha256_file(path)}
    try:
        ckpt = load_checkpoint(path)
    except CheckpointError as e:
        if "not a unetprune checkpoint" not in str(e):
            raise
        return load_syncnet_color_weights(path), {**source, "kind": "reference"}
    if ckpt.get("family") != EXPERT_FAMILY:
        raise UserFacingError(f"model.expert_checkpoint {path} holds a {ckpt.get('family', 'pix2pix')!r} model, "
                              f"not a lip-sync expert ({EXPERT_FAMILY!r}, `unetprune train --expert`)")
    m = SyncNetColor(SyncNetSpec.from_dict(ckpt["generator"]["arch"]))
    m.load_state_dict(ckpt["generator"]["state_dict"])
    return m, {**source, "kind": EXPERT_FAMILY, "epoch": ckpt.get("epoch")}


class _Windows:
    """Evenly spaced windows of a :class:`~unetprune.data.talking.TalkingFaceDataset` (``n`` of
    them, ``None`` = all), forwarding ``set_epoch``, ``split`` and ``__len__``."""

    def __init__(self, ds, n: int | None):
        self.ds, self.split = ds, ds.split
        total = len(ds)
        k = total if not n or n >= total else int(n)
        self.idx = [int(i * total // k) for i in range(k)]

    def set_epoch(self, epoch: int) -> None:
        self.ds.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.idx)

    def __getitem__(self, i: int) -> dict:
        return self.ds[self.idx[i]]


def talking_root(cfg: dict) -> Path:
    """The preprocessed talking-face folder of a config: ``<data root>/preprocessed`` (what
    ``unetprune demo-talking --out <data root>`` builds) if it exists, else the data root itself
    (a folder written by ``unetprune data preprocess-lrs2``)."""
    from ..layout import Layout

    root = Layout.from_config(cfg).data_root
    pre = root / "preprocessed"
    return pre if (pre / "train.txt").is_file() else root


def talking_dataset(cfg: dict, split: str, mode: str, n: int | None = None) -> _Windows:
    from ..data.aligned import DataError
    from ..data.talking import TalkingFaceDataset

    root = talking_root(cfg)
    if not (root / f"{split}.txt").is_file():
        hint = (f"`unetprune demo-talking --out {root}`" if cfg["data"]["dataset"] == "demo"
                else f"`unetprune data preprocess-lrs2 --out {root}`")
        raise DataError(f"{root}: no talking-face {split} split ({split}.txt); build it with {hint}")
    return _Windows(TalkingFaceDataset(root, split, mode=mode, seed=cfg["seed"]), n)


def _batches(dataset, batch_size: int = 8):
    from torch.utils.data import DataLoader

    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)


def _gen_batch(G: nn.Module, batch: dict, device) -> torch.Tensor:
    return G(batch["face"].to(device), batch["indiv_mels"].to(device))


def lower_half_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample mean |pred − target| over the lower halves of (B, 3, T, S, S) frames (in [0, 1] units)."""
    h = pred.shape[3] // 2
    return (pred[:, :, :, h:].float() - target[:, :, :, h:].float()).abs().flatten(1).mean(1)


def copy_reference_l1(dataset) -> float:
    """The "copy the reference frame" baseline: lower-half L1 of the identity reference (the
    generator's second input, channels 3..5) against the target, over ``dataset``."""
    tot, n = 0.0, 0
    for b in _batches(dataset):
        tot += float(lower_half_l1(b["face"][:, 3:], b["target"]).sum())
        n += b["target"].shape[0]
    return tot / max(n, 1)


def generated_lower_half_l1(G: nn.Module, dataset, mode: str = "eval", seed: int = 0) -> float:
    """Mean lower-half L1 of ``G``'s frames against the targets over ``dataset`` (generation
    mode ``mode``, the model left as it was)."""
    from ..translate import generation_mode

    device = next(G.parameters()).device
    tot, n = 0.0, 0
    with generation_mode(G, mode, seed):
        for b in _batches(dataset):
            tot += float(lower_half_l1(_gen_batch(G, b, device).cpu(), b["target"]).sum())
            n += b["target"].shape[0]
    return tot / max(n, 1)


def expert_sync_loss(expert: nn.Module, dataset, G: nn.Module | None = None, mode: str = "eval",
                     seed: int = 0) -> float:
    """Mean expert sync loss over ``dataset``: of ``G``'s frames against their audio (label 1,
    a generator-mode dataset), or with ``G=None`` of an expert-mode dataset's own labelled windows."""
    from ..translate import generation_mode

    device = next(expert.parameters()).device
    was = expert.training
    expert.eval()
    tot, n = 0.0, 0
    ctx = generation_mode(G, mode, seed) if G is not None else torch.no_grad()
    try:
        with ctx, torch.no_grad():
            for b in _batches(dataset):
                if G is None:
                    faces, label = b["faces"].to(device), b["label"].to(device)
                else:
                    faces = lower_halves_stacked(_gen_batch(G, b, device))
                    label = torch.ones(faces.shape[0], 1, device=device)
                a, v = expert(b["mel"].to(device), faces)
                k = faces.shape[0]
                tot += float(cosine_bce(a, v, label)) * k
                n += k
    finally:
        expert.train(was)
    return tot / max(n, 1)


def _bgr_to_rgb_uint8(x: torch.Tensor):
    import numpy as np

    a = (x.detach().float().clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return np.ascontiguousarray(a[:, :, ::-1])


#: why train.cuda_graph does not capture the Wav2Lip steps (unetprune.cuda_graph; 'auto' runs eagerly)
WAV2LIP_GRAPH_REASON = ("the wav2lip step is not captured yet (the sync-loss switch changes the step "
                        "between epochs; batches of 5-frame windows are not launch-bound like pix2pix's batch 1)")


def _eager_step_mode(tcfg: dict, device: torch.device):
    from .. import cuda_graph

    d = cuda_graph.decide(tcfg.get("cuda_graph", "auto"), device, unsupported=WAV2LIP_GRAPH_REASON)
    return cuda_graph.StepMode("eager", d.setting, d.reason)


class Wav2LipTrainer:
    """The Wav2Lip generator step (see the training notes above): ``G``, the frozen expert and
    the optional quality discriminator (``D``: a :class:`Wav2LipCritics`), Adam for G (and for
    the quality discriminator).  ``syncnet_wt`` is the current weight of the sync loss (0 until
    :meth:`end_epoch` sees the validation sync loss below the threshold)."""

    resume_keys = ("target", "syncnet_wt", "sync_threshold", "disc_wt")

    def __init__(self, G: nn.Module, D: Wav2LipCritics, tcfg: dict, device: torch.device):
        self.device, self.cfg = device, tcfg
        if device.type == "cpu" and tcfg["flush_denormal"]:
            torch.set_flush_denormal(True)  # as Pix2PixTrainer (process-wide)
        self.G = G.to(device)
        self.D = D.to(device)
        betas = (tcfg["beta1"], tcfg["beta2"])
        self.opt_G = torch.optim.Adam([p for p in self.G.parameters() if p.requires_grad], lr=tcfg["lr"], betas=betas)
        self.expert = self.D.expert
        self.qual = self.D.qual
        self.opt_D = (torch.optim.Adam(self.qual.parameters(), lr=tcfg["lr"], betas=betas)
                      if self.qual is not None else None)
        self.disc_wt = float(tcfg["disc_wt"]) if self.qual is not None else 0.0
        self.syncnet_wt = 0.0
        self.sync_on_epoch: int | None = None
        self.losses = ("L1", "sync", "loss") + (("G_disc", "D_real", "D_fake") if self.qual is not None else ())
        self._val = None
        self.step_mode = _eager_step_mode(tcfg, device)  # train.cuda_graph: eager, with the reason


    def set_lr(self, lr: float) -> None:
        for opt in (self.opt_G, self.opt_D):
            if opt is not None:
                for group in opt.param_groups:
                    group["lr"] = lr

    def set_train_mode(self) -> None:
        self.G.train()
        self.D.train()  # the expert stays in eval mode

    def sync_loss(self, mel: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        a, v = self.expert(mel, lower_halves_stacked(frames))
        return cosine_bce(a, v, torch.ones(frames.shape[0], 1, device=frames.device))

    def step(self, batch: dict) -> dict[str, torch.Tensor]:
        import torch.nn.functional as F

        dev = self.device
        x, gt = batch["face"].to(dev), batch["target"].to(dev)
        indiv, mel = batch["indiv_mels"].to(dev), batch["mel"].to(dev)
        zero = torch.zeros((), device=dev)
        g = self.G(x, indiv)                                    # (B, 3, T, 96, 96)
        l1 = F.l1_loss(g, gt)
        sync = self.sync_loss(mel, g) if (self.syncnet_wt > 0 and self.expert is not None) else zero
        if self.qual is not None:
            self.qual.requires_grad_(False)
            pl = self.qual.logits(g)
            perceptual = F.binary_cross_entropy_with_logits(pl, torch.ones_like(pl))
        else:
            perceptual = zero
        loss = self.syncnet_wt * sync + self.disc_wt * perceptual + (1.0 - self.syncnet_wt - self.disc_wt) * l1
        self.opt_G.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_G.step()
        out = {"L1": l1.detach(), "sync": sync.detach(), "loss": loss.detach()}
        if self.qual is not None:
            self.qual.requires_grad_(True)
            self.opt_D.zero_grad(set_to_none=True)
            pr = self.qual.logits(gt)
            pf = self.qual.logits(g.detach())
            d_real = F.binary_cross_entropy_with_logits(pr, torch.ones_like(pr))
            d_fake = F.binary_cross_entropy_with_logits(pf, torch.zeros_like(pf))
            (d_real + d_fake).backward()
            self.opt_D.step()
            out.update(G_disc=perceptual.detach(), D_real=d_real.detach(), D_fake=d_fake.detach())
        return out

    def end_epoch(self, epoch: int, cfg: dict) -> dict:
        """The reference's switch: while the sync loss is off, measure the validation sync loss
        of G's frames with the frozen expert; below ``sync_threshold`` it is on from the next epoch."""
        if self.expert is None or self.syncnet_wt > 0:
            return {"syncnet_wt": self.syncnet_wt}
        if self._val is None:
            self._val = talking_dataset(cfg, "val", "generator", max(cfg["train"]["eval_images"], 1))
        val = expert_sync_loss(self.expert, self._val, self.G, "eval", cfg["seed"])
        if val < self.cfg["sync_threshold"]:
            self.syncnet_wt = float(self.cfg["syncnet_wt"])
            self.sync_on_epoch = epoch + 1
        return {"val_sync": val, "syncnet_wt": self.syncnet_wt}

    def state(self) -> dict:
        d_state = {k: v.detach().cpu() for k, v in self.D.state_dict().items()}
        opts = {"G": self.opt_G.state_dict()}
        if self.opt_D is not None:
            opts["D"] = self.opt_D.state_dict()
        return {"discriminator": {"arch": self.D.config, "state_dict": d_state}, "optimizers": opts,
                "wav2lip": {"syncnet_wt": self.syncnet_wt, "sync_on_epoch": self.sync_on_epoch}}

    def load_state(self, ckpt: dict) -> None:
        self.G.load_state_dict(ckpt["generator"]["state_dict"])
        self.D.load_state_dict(ckpt["discriminator"]["state_dict"])
        self.opt_G.load_state_dict(ckpt["optimizers"]["G"])
        if self.opt_D is not None:
            self.opt_D.load_state_dict(ckpt["optimizers"]["D"])
        st = ckpt.get("wav2lip") or {}
        self.syncnet_wt = float(st.get("syncnet_wt", 0.0))
        self.sync_on_epoch = st.get("sync_on_epoch")


class SyncNetTrainer:
    """The expert's step: BCE on the cosine similarity of in-sync (1) vs off-sync (0) windows;
    Adam on every parameter.  ``G`` is the expert (the generic loop's "generator" slot)."""

    losses = ("sync", "acc")
    resume_keys = ("target",)

    def __init__(self, G: nn.Module, D: nn.Module, tcfg: dict, device: torch.device):
        self.device, self.cfg = device, tcfg
        if device.type == "cpu" and tcfg["flush_denormal"]:
            torch.set_flush_denormal(True)
        self.G = G.to(device)
        self.opt = torch.optim.Adam(self.G.parameters(), lr=tcfg["lr"], betas=(tcfg["beta1"], tcfg["beta2"]))
        self.step_mode = _eager_step_mode(tcfg, device)  # train.cuda_graph: eager, with the reason

    def set_lr(self, lr: float) -> None:
        for group in self.opt.param_groups:
            group["lr"] = lr

    def set_train_mode(self) -> None:
        self.G.train()

    def step(self, batch: dict) -> dict[str, torch.Tensor]:
        import torch.nn.functional as F

        faces, mel = batch["faces"].to(self.device), batch["mel"].to(self.device)
        label = batch["label"].to(self.device).view(-1, 1)
        a, v = self.G(mel, faces)
        d = F.cosine_similarity(a, v).clamp(0.0, 1.0).unsqueeze(1)
        loss = F.binary_cross_entropy(d, label)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        acc = ((d.detach() > 0.5).float() == label).float().mean()
        return {"sync": loss.detach(), "acc": acc}

    def state(self) -> dict:
        return {"optimizers": {"expert": self.opt.state_dict()}}

    def load_state(self, ckpt: dict) -> None:
        self.G.load_state_dict(ckpt["generator"]["state_dict"])
        self.opt.load_state_dict(ckpt["optimizers"]["expert"])


def _check_windows(cfg: dict, mode: str):
    split, n = cfg["train"]["eval_split"], cfg["train"]["eval_images"]
    if not split or not n or not (talking_root(cfg) / f"{split}.txt").is_file():
        return None
    return talking_dataset(cfg, split, mode, n)


def _save_png(rows: list, path: Path | str) -> Path:
    import numpy as np
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)
    return path


class Wav2LipFamily(ModelFamily):
    """The ``wav2lip`` model family: build, structure queries and the generator's training step
    (:class:`Wav2LipTrainer`; its lip-sync expert is the ``wav2lip-expert`` family).  Registered
    globally (with its pruning operations, :mod:`unetprune.pruning.wav2lip_ops`, found by
    :func:`unetprune.pruning.families.pruning_ops`).  ``input_shape`` is the face input
    ``(1, face_nc, 96, 96)``; the mel window is always ``(B, 1, 80, 16)`` (:data:`MEL_SHAPE`).
    """

    name = "wav2lip"
    # FID/KID on the generated faces, lower-half L1/PSNR/SSIM, the collapse check, size, LSE-D/LSE-C
    metrics: tuple[str, ...] = ("fid", "kid", "paired", "diversity", "complexity", "lse")
    spec_type = Wav2LipSpec

    # --- build ------------------------------------------------------------------------
    def spec_from_config(self, cfg: dict) -> Wav2LipSpec:
        """The reference Wav2Lip, widths scaled by ``model.width_mult`` (default 1)."""
        return Wav2LipSpec.reference(float((cfg.get("model") or {}).get("width_mult", 1.0)))

    def build(self, spec, init: bool = True, seed: int | None = None) -> Wav2LipGenerator:
        return build_wav2lip(spec, seed=seed)  # the reference's (PyTorch's) default init

    def input_shape(self, generator) -> tuple[int, int, int, int]:
        return (1, _spec_of(generator).face_nc, FACE_SIZE, FACE_SIZE)

    def input_shapes(self, generator, input_shape) -> list[tuple[int, ...]]:
        """The face batch ``input_shape`` (B, 6, 96, 96) and its mel windows (B, 1, 80, 16)."""
        return list(wav2lip_input_shapes(generator, input_shape))

    def layer_position(self, spec, layer: str) -> tuple[str, int | None]:
        """fe{j}: encoder level j; fd{i}: decoder level 7-i (fd0 with fd1 at level 6); the
        audio branch and the output block are outside the levels."""
        m = re.fullmatch(r"(audio|fe|fd|out)(\d+)", layer)
        if not m:
            raise ValueError(f"{layer!r} is not a Wav2Lip channel group")
        kind, i = m.group(1), int(m.group(2))
        if kind == "fe":
            return "encoder", i
        if kind == "fd":
            return "decoder", N_LEVELS - max(i, 1)
        return ("audio", None) if kind == "audio" else ("output", None)

    def levels(self, spec) -> list[int]:
        return wav2lip_levels(spec)

    def cut_ks(self, spec) -> dict[int, str | None]:
        """k = 1..levels-2; a cut fits where the audio embedding is as wide as the decoder output
        it replaces (k=1, 2 of the reference; k=3 would need new weights)."""
        s = _spec_of(spec)
        aw, out = s.audio_widths[-1], {}
        for k in range(1, N_LEVELS - s.cut - 1):
            nc = s.cut + k
            rw = s.fd_widths[nc]
            out[k] = None if rw == aw else (
                f"the audio embedding ({aw} channels) would replace fd{nc}'s output, which fd{nc + 1} reads as "
                f"{rw} channels: its weights cannot be copied (new weights would be needed)")
        return out

    def has_residual_blocks(self, spec) -> bool:
        s = _spec_of(spec)
        return any(s.fe_residual) or any(s.fd_residual)

    def eval_set(self, cfg: dict, split: str, root):
        from ..data.talking import TalkingEvalSet

        return TalkingEvalSet.load(cfg, split, root)

    # --- channel groups -------------------------------------------------------------------
    def groups(self, spec_or_generator) -> list[str]:
        return wav2lip_groups(spec_or_generator)

    def layer_width(self, generator, layer: str) -> int:
        return self.layer_filters(generator, layer)[0].out_channels

    def layer_filters(self, generator, layer: str) -> tuple[nn.Module, nn.Module | None]:
        """The stage's first conv (and its BN): for ``fe{i}``/``fd{i}`` the stage's entry conv
        (a ConvTranspose2d for ``fd1..fd6``), for ``audio{g}`` its group's entry conv."""
        convs = group_convs(generator, layer)
        if not convs:
            raise ValueError(f"{layer!r} is not a channel group of this Wav2Lip "
                             f"({', '.join(wav2lip_groups(generator))})")
        first = convs[0]
        return generator.get_submodule(first.path), generator.get_submodule(first.bn)

    def default_inner_levels(self, spec) -> list[int]:
        return default_inner_levels(spec)

    def widths(self, generator) -> dict:
        return wav2lip_widths(generator)

    # --- training: L1 + frozen-expert sync loss (+ the HQ quality discriminator) ---------
    def build_discriminator(self, cfg: dict, generator) -> Wav2LipCritics:
        """The frozen expert of ``model.expert_checkpoint`` (none: no sync loss) and, with
        ``model.hq``, a fresh quality discriminator (widths scaled by ``model.width_mult``)."""
        from .syncnet import REF_DISC_WIDTHS, Wav2LipDiscQual

        m = cfg["model"]
        expert, source, arch = None, None, None
        if m.get("expert_checkpoint"):
            expert, source = load_expert(m["expert_checkpoint"])
            arch = expert.spec.to_dict()
        qual_widths = _scaled(REF_DISC_WIDTHS, float(m.get("width_mult", 1.0))) if m.get("hq") else None
        qual = Wav2LipDiscQual(qual_widths) if qual_widths else None
        return Wav2LipCritics(expert, qual, {"name": "wav2lip-critics", "expert": arch, "expert_source": source,
                                             "qual_widths": qual_widths})

    def discriminator_from_entry(self, entry: dict) -> Wav2LipCritics:
        D = _critics_from_arch(entry["arch"])
        D.load_state_dict(entry["state_dict"])
        return D

    def trainer(self, generator, discriminator, tcfg: dict, device: torch.device) -> Wav2LipTrainer:
        return Wav2LipTrainer(generator, discriminator, tcfg, device)

    def train_dataset(self, cfg: dict):
        return talking_dataset(cfg, "train", "generator", cfg["data"]["max_train_items"])

    def check_dataset(self, cfg: dict):
        return _check_windows(cfg, "generator")

    def check_score(self, generator, dataset, cfg: dict) -> float:
        """Mean lower-half L1 of the generated frames vs the targets ([0, 1] units, evaluate.mode)."""
        return generated_lower_half_l1(generator, dataset, cfg["evaluate"]["mode"], cfg["seed"])

    # --- samples ------------------------------------------------------------------------
    def render_samples(self, generator, dataset, path: Path | str, cfg: dict, n: int = 8) -> Path:
        """PNG grid, one row per window (its middle frame): reference | masked target | generated | target."""
        import numpy as np

        from ..translate import generation_mode

        device = next(generator.parameters()).device
        rows = []
        with generation_mode(generator, cfg["evaluate"]["mode"], cfg["seed"]):
            for i in range(min(n, len(dataset))):
                b = dataset[i]
                face, target = b["face"][None], b["target"]
                g = generator(face.to(device), b["indiv_mels"][None].to(device))[0].cpu()
                t = target.shape[1] // 2
                cells = [face[0, 3:, t], face[0, :3, t], g[:, t], target[:, t]]
                rows.append(np.concatenate([_bgr_to_rgb_uint8(c) for c in cells], axis=1))
        return _save_png(rows, path)


class Wav2LipExpertFamily(ModelFamily):
    """The lip-sync expert (:class:`~unetprune.models.syncnet.SyncNetColor`) as a trainable
    family: ``unetprune train --expert`` (``train.target: expert``) trains it with
    :class:`SyncNetTrainer` in the generic loop; checkpoints record ``family: wav2lip-expert``.
    Not prunable (no channel groups)."""

    name = EXPERT_FAMILY
    metrics: tuple[str, ...] = ()

    @property
    def spec_type(self):
        from .syncnet import SyncNetSpec

        return SyncNetSpec

    def spec_from_config(self, cfg: dict):
        from .syncnet import SyncNetSpec

        return SyncNetSpec.reference(float(cfg["model"].get("expert_width_mult", 1.0)))

    def build(self, spec, init: bool = True, seed: int | None = None) -> nn.Module:
        from .syncnet import SyncNetColor, SyncNetSpec

        if isinstance(spec, Mapping):
            spec = SyncNetSpec.from_dict(spec)
        if seed is not None:
            torch.manual_seed(seed)
        return SyncNetColor(spec)

    def input_shape(self, generator) -> tuple[int, int, int, int]:
        return (1, generator.spec.face_nc, FACE_SIZE // 2, FACE_SIZE)

    def input_shapes(self, generator, input_shape) -> list[tuple[int, ...]]:
        """The stacked lower halves ``input_shape`` (B, 15, 48, 96) and the mel window (B, 1, 80, 16)."""
        face = tuple(int(s) for s in input_shape)
        return [face, (face[0], 1, *MEL_SHAPE)]

    def _not_prunable(self, *a, **k):
        raise NotImplementedError("the lip-sync expert is not a prunable generator")

    groups = layer_width = layer_filters = default_inner_levels = widths = _not_prunable

    def build_discriminator(self, cfg: dict, generator) -> nn.Module:
        return nn.Identity()  # the expert trains alone

    def discriminator_from_entry(self, entry: dict) -> nn.Module:
        return nn.Identity()

    def trainer(self, generator, discriminator, tcfg: dict, device: torch.device) -> SyncNetTrainer:
        return SyncNetTrainer(generator, discriminator, tcfg, device)

    def train_dataset(self, cfg: dict):
        return talking_dataset(cfg, "train", "expert", cfg["data"]["max_train_items"])

    def check_dataset(self, cfg: dict):
        return _check_windows(cfg, "expert")

    def check_score(self, generator, dataset, cfg: dict) -> float:
        """Mean sync BCE over the check windows (half in sync, half off; lower is better)."""
        return expert_sync_loss(generator, dataset, None)

    def render_samples(self, generator, dataset, path: Path | str, cfg: dict, n: int = 8) -> Path:
        """PNG, one row per window: its 5 lower halves, then a bar: the cosine similarity
        (green: in-sync window, red: off-sync)."""
        import numpy as np

        device = next(generator.parameters()).device
        was = generator.training
        generator.eval()
        rows = []
        try:
            with torch.no_grad():
                for i in range(min(n, len(dataset))):
                    b = dataset[i]
                    a, v = generator(b["mel"][None].to(device), b["faces"][None].to(device))
                    d = float(torch.nn.functional.cosine_similarity(a, v).clamp(0, 1))
                    faces = b["faces"]
                    cells = [_bgr_to_rgb_uint8(faces[3 * k:3 * k + 3]) for k in range(faces.shape[0] // 3)]
                    h = cells[0].shape[0]
                    bar = np.full((h, 48, 3), 255, np.uint8)
                    colour = (0, 160, 0) if float(b["label"]) == 1.0 else (200, 0, 0)
                    bar[h - round(d * h):, 8:40] = colour
                    rows.append(np.concatenate(cells + [bar], axis=1))
        finally:
            generator.train(was)
        return _save_png(rows, path)


WAV2LIP = register_family(Wav2LipFamily())
WAV2LIP_EXPERT = register_family(Wav2LipExpertFamily())
