"""Wav2Lip's discriminators and the LSE network.

* :class:`SyncNetColor` — the expert lip-sync discriminator of Wav2Lip (reference
  Rudrabha/Wav2Lip ``models/syncnet.py``, ``SyncNet_color``): 5 stacked lower-half frames
  (15 x 48 x 96, RGB in [0, 1]) and the matching mel window (1 x 80 x 16) → two
  L2-normalised 512-d embeddings ``(audio, face)``; 16,435,072 parameters.
* :class:`Wav2LipDiscQual` — the visual-quality discriminator of the HQ variant (reference
  ``Wav2Lip_disc_qual``): the lower half of each face → P(real); 14,113,793 parameters.
* :class:`SyncNetS` — syncnet_python's ``S`` (joonson/syncnet_python ``SyncNetModel.py``),
  the network of the LSE-D / LSE-C protocol: 5 frames at 224 x 224 (BGR, 0..255, as
  ``cv2.imread`` gives them) and 13 MFCCs x 20 frames → two 1024-d features;
  13,631,616 parameters.  ``syncnet_v2.model`` is a state dict of ``S``.

Module names: ``SyncNetColor.face_encoder`` / ``.audio_encoder`` are flat ``nn.Sequential``
of :class:`~unetprune.families.wav2lip.networks.ConvBlock` (``conv`` + ``bn``), like the reference's
but with ``conv``/``bn`` in place of ``conv_block.0``/``conv_block.1``.  ``Wav2LipDiscQual``
has stages ``d0..d6`` (``nn.Sequential`` of :class:`PlainConvBlock`) and ``pred`` (the 1x1
conv).  ``SyncNetS`` has ``audio_cnn``, ``audio_fc``, ``lip_cnn``, ``lip_fc`` laid out index for
index like ``S``'s ``netcnnaud``, ``netfcaud``, ``netcnnlip``, ``netfclip``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .networks import ConvBlock, _residuals, _scaled
from ...weights import WeightsFileError
from .weights import _block_leaf, _unwrap_checkpoint, load_reference_file, remap_state_dict, strip_prefixes

# ------------------------------------------------------------------------------------------
# expert lip-sync discriminator
# ------------------------------------------------------------------------------------------

REF_SYNC_FACE_WIDTHS = [32, 64, 128, 256, 512, 512]
REF_SYNC_FACE_RESIDUAL = [0, 2, 3, 2, 2, 0]
REF_SYNC_AUDIO_WIDTHS = [32, 64, 128, 256, 512]
REF_SYNC_AUDIO_RESIDUAL = [2, 2, 2, 2, 0]
# first conv of each face group: (kernel, stride, padding); 48x96 → 48x96 → 46x47 → 23x24 → 12x12 → 6x6 → 3x3 → 1x1
_SYNC_FACE_FIRST = [(7, 1, 3), (5, (1, 2), 1), (3, 2, 1), (3, 2, 1), (3, 2, 1), (3, 2, 1)]
_SYNC_AUDIO_FIRST = [(3, 1, 1), (3, (3, 1), 1), (3, 3, 1), (3, (3, 2), 1), (3, 1, 0)]


@dataclass
class SyncNetSpec:
    """Widths of the expert: six face groups and five audio groups (the last of each ends with a
    3x3 unpadded conv and a 1x1 conv at the same width), and their residual blocks."""

    face_widths: list[int] = field(default_factory=lambda: list(REF_SYNC_FACE_WIDTHS))
    audio_widths: list[int] = field(default_factory=lambda: list(REF_SYNC_AUDIO_WIDTHS))
    face_residual: list[int] = field(default_factory=lambda: list(REF_SYNC_FACE_RESIDUAL))
    audio_residual: list[int] = field(default_factory=lambda: list(REF_SYNC_AUDIO_RESIDUAL))
    face_nc: int = 15

    def to_dict(self) -> dict:
        return {"name": "syncnet_color", **asdict(self)}

    @classmethod
    def from_dict(cls, d: Mapping) -> SyncNetSpec:
        d = dict(d)
        name = d.pop("name", "syncnet_color")
        if name != "syncnet_color":
            raise ValueError(f"architecture name is {name!r}, expected 'syncnet_color'")
        return cls(**d)

    @classmethod
    def reference(cls, width_mult: float = 1.0) -> SyncNetSpec:
        if not float(width_mult) > 0:
            raise ValueError(f"width_mult must be positive, got {width_mult!r}")
        return cls(
            face_widths=_scaled(REF_SYNC_FACE_WIDTHS, width_mult),
            audio_widths=_scaled(REF_SYNC_AUDIO_WIDTHS, width_mult),
        )

    @property
    def embed_dim(self) -> int:
        return self.face_widths[-1]

    def validate(self) -> None:
        if len(self.face_widths) != 6 or len(self.face_residual) != 6:
            raise ValueError("the expert's face encoder has 6 groups")
        if len(self.audio_widths) != 5 or len(self.audio_residual) != 5:
            raise ValueError("the expert's audio encoder has 5 groups")
        if self.face_widths[-1] != self.audio_widths[-1]:
            raise ValueError(
                f"face and audio embeddings must have one width, got "
                f"{self.face_widths[-1]} and {self.audio_widths[-1]}"
            )
        if self.face_residual[-1] or self.audio_residual[-1]:
            raise ValueError("the last group of each encoder has no residual blocks")


def _encoder(cin: int, widths, residual, first) -> tuple[list[nn.Module], int]:
    """The conv blocks of an encoder's groups (first conv + residual blocks each) and its width."""
    blocks: list[nn.Module] = []
    for g, (w, n_res) in enumerate(zip(widths, residual)):
        k, s, p = first[g]
        blocks.append(ConvBlock(cin, w, k, s, p))
        blocks.extend(_residuals(w, n_res))
        cin = w
    return blocks, cin


class SyncNetColor(nn.Module):
    """The expert: ``forward(mel, face)`` → ``(audio_emb, face_emb)``, each (B, 512) of unit norm.

    ``mel``: (B, 1, 80, 16); ``face``: (B, 15, 48, 96) — the lower halves of 5 consecutive
    frames stacked on channels (the reference's argument order: audio first).
    """

    def __init__(self, spec: SyncNetSpec | None = None):
        super().__init__()
        spec = spec if spec is not None else SyncNetSpec.reference()
        spec.validate()
        self.spec = spec
        face, c = _encoder(spec.face_nc, spec.face_widths, spec.face_residual, _SYNC_FACE_FIRST)
        # the last face group: 6x6 → 3x3 (above), then 3x3 unpadded → 1x1 and a 1x1 conv
        face += [ConvBlock(c, c, 3, 1, 0), ConvBlock(c, c, 1, 1, 0)]
        self.face_encoder = nn.Sequential(*face)
        audio, c = _encoder(1, spec.audio_widths, spec.audio_residual, _SYNC_AUDIO_FIRST)
        audio += [ConvBlock(c, c, 1, 1, 0)]
        self.audio_encoder = nn.Sequential(*audio)

    def embed_audio(self, mel: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.audio_encoder(mel).flatten(1), p=2, dim=1)

    def embed_face(self, face: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.face_encoder(face).flatten(1), p=2, dim=1)

    def forward(self, mel: torch.Tensor, face: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.embed_audio(mel), self.embed_face(face)


def map_reference_syncnet_color_key(key: str) -> str | None:
    m = re.fullmatch(r"(face_encoder|audio_encoder)\.(\d+)\.(.+)", key)
    if not m:
        return None
    leaf = _block_leaf(m.group(3))
    return None if leaf is None else f"{m.group(1)}.{m.group(2)}.{leaf}"


def load_reference_syncnet_color_state_dict(sd: Mapping, spec: SyncNetSpec | None = None) -> dict:
    """Map a reference ``SyncNet_color`` state dict (or ``{"state_dict": …}`` checkpoint, with
    or without ``module.``) onto :class:`SyncNetColor`'s names; ``ValueError`` otherwise."""
    return remap_state_dict(
        sd,
        map_reference_syncnet_color_key,
        "SyncNet_color",
        "reference SyncNet_color",
        lambda: SyncNetColor(spec),
    )


def identify_sync_weights(obj) -> str | None:
    """What a loaded weights object is, when it is one of the lip-sync networks' files (for the
    one-line errors of a wrong file): the LSE stand-in, syncnet_python's S, Wav2Lip's expert or
    generator; None otherwise."""
    if not isinstance(obj, Mapping):
        return None
    if obj.get("format") == "unetprune-lse-standin":
        return (
            "an unetprune LSE stand-in checkpoint (LSE backend 'standin', from `unetprune train-lse-standin`)"
        )
    try:
        keys = list(strip_prefixes(_unwrap_checkpoint(obj)))
    except Exception:  # noqa: BLE001 — only a hint
        return None
    if not keys or not all(isinstance(k, str) for k in keys):
        return None
    if all(map_syncnet_s_key(k) for k in keys):
        return "syncnet_python's S (syncnet_v2.model: the LSE-D/LSE-C network)"
    if all(map_reference_syncnet_color_key(k) for k in keys):
        return (
            "Wav2Lip's lip-sync expert SyncNet_color (lipsync_expert.pth: the training loss's discriminator)"
        )
    if any(k.startswith("face_encoder_blocks.") for k in keys):
        return "a Wav2Lip generator (wav2lip.pth / wav2lip_gan.pth)"
    return None


def _is_hint(obj) -> str:
    what = identify_sync_weights(obj)
    return f" (this file is {what})" if what else ""


def load_syncnet_color_weights(
    path: Path | str, spec: SyncNetSpec | None = None, map_location="cpu"
) -> SyncNetColor:
    """The expert with the weights of the reference ``lipsync_expert.pth`` (or a bare state dict)."""
    return load_reference_file(
        path,
        lambda obj: load_reference_syncnet_color_state_dict(obj, spec),
        lambda: SyncNetColor(spec),
        kind="a reference SyncNet_color checkpoint",
        expected="a reference SyncNet_color (lip-sync expert, lipsync_expert.pth) checkpoint",
        hint=_is_hint,
        map_location=map_location,
    )


# ------------------------------------------------------------------------------------------
# visual-quality discriminator (HQ Wav2Lip)
# ------------------------------------------------------------------------------------------


class PlainConvBlock(nn.Module):
    """Conv2d (bias) → LeakyReLU(0.01): the reference's ``nonorm_Conv2d``."""

    def __init__(self, cin: int, cout: int, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride, padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.conv(x), 0.01)


REF_DISC_WIDTHS = [32, 64, 128, 256, 512, 512, 512]
# (kernel, stride, padding) of each stage's first conv; the second (if any) keeps size
_DISC_FIRST = [(7, 1, 3), (5, (1, 2), 2), (5, 2, 2), (5, 2, 2), (3, 2, 1), (3, 2, 1), (3, 1, 0)]
_DISC_SECOND = [None, (5, 1, 2), (5, 1, 2), (5, 1, 2), (3, 1, 1), (3, 1, 1), (1, 1, 0)]


class Wav2LipDiscQual(nn.Module):
    """The HQ visual-quality discriminator: ``forward(faces)`` → (N, 1) probabilities of "real".

    ``faces``: whole faces (N, 3, 96, 96) or the reference's batched (B, 3, T, 96, 96), RGB in
    [0, 1]; the lower half of each is judged (48 x 96 → 1 x 1).  Stages ``d0..d6``, ``pred``.
    """

    def __init__(self, widths: list[int] | None = None, in_nc: int = 3):
        super().__init__()
        widths = list(widths) if widths is not None else list(REF_DISC_WIDTHS)
        if len(widths) != 7:
            raise ValueError(f"the quality discriminator has 7 stages, got {len(widths)} widths")
        self.widths = widths
        cin = in_nc
        for i, w in enumerate(widths):
            blocks = [PlainConvBlock(cin, w, *_DISC_FIRST[i])]
            if _DISC_SECOND[i] is not None:
                blocks.append(PlainConvBlock(w, w, *_DISC_SECOND[i]))
            self.add_module(f"d{i}", nn.Sequential(*blocks))
            cin = w
        self.pred = nn.Conv2d(cin, 1, 1, 1, 0)

    @staticmethod
    def to_2d(faces: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) → (T·B, C, H, W), frame-major as the reference; 4-D passes through."""
        if faces.dim() == 5:
            return faces.permute(2, 0, 1, 3, 4).reshape(-1, faces.shape[1], *faces.shape[3:])
        return faces

    def logits(self, faces: torch.Tensor) -> torch.Tensor:
        x = self.to_2d(faces)
        x = x[:, :, x.shape[2] // 2 :]
        for i in range(7):
            x = getattr(self, f"d{i}")(x)
        return self.pred(x).flatten(1)

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(faces))


def map_reference_disc_qual_key(key: str) -> str | None:
    m = re.fullmatch(r"face_encoder_blocks\.(\d+)\.(\d+)\.conv_block\.0\.(weight|bias)", key)
    if m:
        return f"d{m.group(1)}.{m.group(2)}.conv.{m.group(3)}"
    m = re.fullmatch(r"binary_pred\.0\.(weight|bias)", key)
    return f"pred.{m.group(1)}" if m else None


def load_reference_disc_qual_state_dict(sd: Mapping) -> dict:
    return remap_state_dict(
        sd, map_reference_disc_qual_key, "Wav2Lip_disc_qual", "reference Wav2Lip_disc_qual", Wav2LipDiscQual
    )


def load_disc_qual_weights(path: Path | str, map_location="cpu") -> Wav2LipDiscQual:
    """The quality discriminator with the weights of a reference HQ-training ``disc`` checkpoint."""
    return load_reference_file(
        path,
        load_reference_disc_qual_state_dict,
        Wav2LipDiscQual,
        kind="a reference Wav2Lip_disc_qual checkpoint",
        expected="a reference Wav2Lip_disc_qual (quality discriminator) checkpoint",
        map_location=map_location,
    )


# ------------------------------------------------------------------------------------------
# syncnet_python's S (LSE-D / LSE-C)
# ------------------------------------------------------------------------------------------


def _cbr2(cin, cout, k, s=1, p=0, inplace=True):
    return [nn.Conv2d(cin, cout, k, s, p), nn.BatchNorm2d(cout), nn.ReLU(inplace=inplace)]


def _cbr3(cin, cout, k, s=1, p=0):
    return [nn.Conv3d(cin, cout, k, s, p), nn.BatchNorm3d(cout), nn.ReLU(inplace=True)]


def _fc(dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, dim), nn.BatchNorm1d(dim), nn.ReLU(), nn.Linear(dim, out_dim))


class SyncNetS(nn.Module):
    """syncnet_python's ``S``: ``forward_aud`` (N, 1, 13, 20) MFCCs → (N, 1024);
    ``forward_lip`` (N, 3, 5, 224, 224) BGR frames (0..255) → (N, 1024).

    The module order inside each ``nn.Sequential`` follows ``S`` index for index (the
    no-op 1x1 max-pool included), so ``syncnet_v2.model`` loads by renaming the four
    containers only.
    """

    def __init__(self, embed_dim: int = 1024):
        super().__init__()
        self.audio_cnn = nn.Sequential(
            *_cbr2(1, 64, 3, 1, 1),
            nn.MaxPool2d(1, 1),  # 13 x 20
            *_cbr2(64, 192, 3, 1, 1),
            nn.MaxPool2d(3, (1, 2)),  # → 11 x 9
            *_cbr2(192, 384, 3, 1, 1),
            *_cbr2(384, 256, 3, 1, 1),
            *_cbr2(256, 256, 3, 1, 1),
            nn.MaxPool2d(3, 2),  # → 5 x 4
            *_cbr2(256, 512, (5, 4), 1, 0, inplace=False),  # → 1 x 1
        )
        self.audio_fc = _fc(512, embed_dim)
        self.lip_fc = _fc(512, embed_dim)
        self.lip_cnn = nn.Sequential(
            *_cbr3(3, 96, (5, 7, 7), (1, 2, 2), 0),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2)),  # 1 x 54 x 54
            *_cbr3(96, 256, (1, 5, 5), (1, 2, 2), (0, 1, 1)),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),  # 13 x 13
            *_cbr3(256, 256, (1, 3, 3), 1, (0, 1, 1)),
            *_cbr3(256, 256, (1, 3, 3), 1, (0, 1, 1)),
            *_cbr3(256, 256, (1, 3, 3), 1, (0, 1, 1)),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2)),  # 6 x 6
            *_cbr3(256, 512, (1, 6, 6), 1, 0),  # 1 x 1
        )

    def forward_aud(self, mfcc: torch.Tensor) -> torch.Tensor:
        return self.audio_fc(self.audio_cnn(mfcc).flatten(1))

    def forward_lip(self, frames: torch.Tensor) -> torch.Tensor:
        return self.lip_fc(self.lip_cnn(frames).flatten(1))

    def forward_lipfeat(self, frames: torch.Tensor) -> torch.Tensor:
        return self.lip_cnn(frames).flatten(1)

    def forward(self, frames: torch.Tensor, mfcc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(lip features, audio features)``."""
        return self.forward_lip(frames), self.forward_aud(mfcc)


_S_RENAME = {"netcnnaud": "audio_cnn", "netfcaud": "audio_fc", "netcnnlip": "lip_cnn", "netfclip": "lip_fc"}


def map_syncnet_s_key(key: str) -> str | None:
    head, _, rest = key.partition(".")
    return f"{_S_RENAME[head]}.{rest}" if head in _S_RENAME and rest else None


def load_syncnet_s_state_dict(sd: Mapping) -> dict:
    """Map a state dict of syncnet_python's ``S`` (``syncnet_v2.model``) onto :class:`SyncNetS`."""
    return remap_state_dict(sd, map_syncnet_s_key, "syncnet_python S", "syncnet_python S", SyncNetS)


def load_syncnet_s_weights(path: Path | str, map_location="cpu") -> SyncNetS:
    """``S`` with the weights of ``syncnet_v2.model`` (a state dict), in eval mode."""

    def not_a_standin(obj: Mapping) -> None:
        if obj.get("format") == "unetprune-lse-standin":
            raise WeightsFileError(
                f"{path}: expected syncnet_python's S (syncnet_v2.model) for the standard LSE "
                f"backend, but this file is an unetprune LSE stand-in checkpoint: use the "
                f"stand-in backend (evaluate.lse_backend=standin / --backend standin)"
            )

    expected = "a syncnet_python S state dict (syncnet_v2.model)"
    return load_reference_file(
        path,
        load_syncnet_s_state_dict,
        SyncNetS,
        kind=expected,
        expected=expected,
        hint=_is_hint,
        check=not_a_standin,
        map_location=map_location,
    ).eval()
