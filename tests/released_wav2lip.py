"""Files in the layouts of the released Wav2Lip weights, built with seeded weights for tests.

:class:`RefWav2Lip` is the reference generator written out in the reference repository's module
structure (``face_encoder_blocks`` / ``audio_encoder`` / ``face_decoder_blocks`` /
``output_block``, each conv block a ``conv_block`` Sequential of conv + BatchNorm, ReLU after
the residual sum), independently of :mod:`unetprune.families.wav2lip.networks`, so that an
import is checked against the reference forward and not against itself.  :func:`save_released`
writes a state dict the way the reference training scripts save it: ``module.`` prefixes
(DataParallel) and the ``optimizer`` / ``global_step`` / ``global_epoch`` entries beside
``state_dict``.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn


def _w(width: int, mult: float) -> int:
    return max(1, round(width * mult))


class RefConv(nn.Module):
    def __init__(self, cin, cout, k, s, p, residual=False):
        super().__init__()
        self.conv_block = nn.Sequential(nn.Conv2d(cin, cout, k, s, p), nn.BatchNorm2d(cout))
        self.residual = residual

    def forward(self, x):
        y = self.conv_block(x)
        return torch.relu(y + x if self.residual else y)


class RefConvT(nn.Module):
    def __init__(self, cin, cout, k, s, p, op=0):
        super().__init__()
        self.conv_block = nn.Sequential(nn.ConvTranspose2d(cin, cout, k, s, p, op), nn.BatchNorm2d(cout))

    def forward(self, x):
        return torch.relu(self.conv_block(x))


def _res(c, n):
    return [RefConv(c, c, 3, 1, 1, residual=True) for _ in range(n)]


class RefWav2Lip(nn.Module):
    """The reference Wav2Lip (``forward(audio, face)``, the reference's argument order); every
    width scaled by ``mult`` (rounded, at least 1)."""

    def __init__(self, mult: float = 1.0):
        super().__init__()
        fe = [_w(c, mult) for c in (16, 32, 64, 128, 256, 512, 512)]
        fd = [_w(c, mult) for c in (512, 512, 512, 384, 256, 128, 64)]
        au = [_w(c, mult) for c in (32, 64, 128, 256, 512)]
        out = _w(32, mult)
        self.face_encoder_blocks = nn.ModuleList(
            [
                nn.Sequential(RefConv(6, fe[0], 7, 1, 3)),
                nn.Sequential(RefConv(fe[0], fe[1], 3, 2, 1), *_res(fe[1], 2)),
                nn.Sequential(RefConv(fe[1], fe[2], 3, 2, 1), *_res(fe[2], 3)),
                nn.Sequential(RefConv(fe[2], fe[3], 3, 2, 1), *_res(fe[3], 2)),
                nn.Sequential(RefConv(fe[3], fe[4], 3, 2, 1), *_res(fe[4], 2)),
                nn.Sequential(RefConv(fe[4], fe[5], 3, 2, 1), *_res(fe[5], 1)),
                nn.Sequential(RefConv(fe[5], fe[6], 3, 1, 0), RefConv(fe[6], fe[6], 1, 1, 0)),
            ]
        )
        self.audio_encoder = nn.Sequential(
            RefConv(1, au[0], 3, 1, 1),
            *_res(au[0], 2),
            RefConv(au[0], au[1], 3, (3, 1), 1),
            *_res(au[1], 2),
            RefConv(au[1], au[2], 3, 3, 1),
            *_res(au[2], 2),
            RefConv(au[2], au[3], 3, (3, 2), 1),
            *_res(au[3], 1),
            RefConv(au[3], au[4], 3, 1, 0),
            RefConv(au[4], au[4], 1, 1, 0),
        )
        self.face_decoder_blocks = nn.ModuleList(
            [
                nn.Sequential(RefConv(au[4], fd[0], 1, 1, 0)),
                nn.Sequential(RefConvT(fd[0] + fe[6], fd[1], 3, 1, 0), *_res(fd[1], 1)),
                nn.Sequential(RefConvT(fd[1] + fe[5], fd[2], 3, 2, 1, 1), *_res(fd[2], 2)),
                nn.Sequential(RefConvT(fd[2] + fe[4], fd[3], 3, 2, 1, 1), *_res(fd[3], 2)),
                nn.Sequential(RefConvT(fd[3] + fe[3], fd[4], 3, 2, 1, 1), *_res(fd[4], 2)),
                nn.Sequential(RefConvT(fd[4] + fe[2], fd[5], 3, 2, 1, 1), *_res(fd[5], 2)),
                nn.Sequential(RefConvT(fd[5] + fe[1], fd[6], 3, 2, 1, 1), *_res(fd[6], 2)),
            ]
        )
        self.output_block = nn.Sequential(
            RefConv(fd[6] + fe[0], out, 3, 1, 1), nn.Conv2d(out, 3, 1, 1, 0), nn.Sigmoid()
        )

    def forward(self, audio, face):
        b = audio.size(0)
        five_d = face.dim() > 4
        if five_d:  # (B, T, 1, 80, 16) and (B, 6, T, 96, 96): frames stacked on the batch
            audio = torch.cat([audio[:, i] for i in range(audio.size(1))], dim=0)
            face = torch.cat([face[:, :, i] for i in range(face.size(2))], dim=0)
        feats, x = [], face
        for block in self.face_encoder_blocks:
            x = block(x)
            feats.append(x)
        x = self.audio_encoder(audio)
        for block in self.face_decoder_blocks:
            x = torch.cat((block(x), feats.pop()), dim=1)
        x = self.output_block(x)
        return torch.stack(torch.split(x, b, dim=0), dim=2) if five_d else x


def randomise(m: nn.Module, seed: int) -> nn.Module:
    """Random weights and BatchNorm statistics (a wrong mapping cannot go unnoticed)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in m.state_dict().items():
            if t.dtype.is_floating_point:
                r = torch.rand(t.shape, generator=g)
                t.copy_(r * 0.5 + 0.5 if name.endswith("running_var") else (r - 0.5) * 0.2)
            else:
                t.fill_(7)
    return m.eval()


def _ref_leaf(prefix: str, leaf: str) -> str:
    kind, _, name = leaf.partition(".")
    return f"{prefix}.conv_block.{0 if kind == 'conv' else 1}.{name}"


def syncnet_reference_sd(ours: nn.Module) -> dict:
    """An expert's state dict (:class:`SyncNetColor`) under the reference ``SyncNet_color`` names."""
    out = {}
    for k, v in ours.state_dict().items():
        m = re.fullmatch(r"(face_encoder|audio_encoder)\.(\d+)\.(.+)", k)
        out[_ref_leaf(f"{m.group(1)}.{m.group(2)}", m.group(3))] = v.clone()
    return out


def disc_reference_sd(ours: nn.Module) -> dict:
    """A quality discriminator's state dict under the reference ``Wav2Lip_disc_qual`` names."""
    out = {}
    for k, v in ours.state_dict().items():
        m = re.fullmatch(r"d(\d)\.(\d+)\.conv\.(weight|bias)", k)
        if m:
            out[f"face_encoder_blocks.{m.group(1)}.{m.group(2)}.conv_block.0.{m.group(3)}"] = v.clone()
        else:
            out[k.replace("pred.", "binary_pred.0.")] = v.clone()
    return out


def save_released(path: Path, sd: dict, wrapper: str = "checkpoint") -> Path:
    """Write ``sd`` as a released file: ``checkpoint`` = the reference scripts' dict with
    ``module.`` keys, an Adam state, ``global_step`` and ``global_epoch``; ``module`` = a bare
    state dict with ``module.`` keys; ``bare`` = the state dict itself."""
    keys = [k for k, v in sd.items() if v.dtype.is_floating_point and "running" not in k]
    if wrapper == "bare":
        obj = dict(sd)
    elif wrapper == "module":
        obj = {f"module.{k}": v for k, v in sd.items()}
    else:
        params = [nn.Parameter(sd[k].clone()) for k in keys[:3]]
        opt = torch.optim.Adam(params, lr=1e-4)
        sum((p**2).sum() for p in params).backward()
        opt.step()
        obj = {
            "state_dict": {f"module.{k}": v for k, v in sd.items()},
            "optimizer": opt.state_dict(),
            "global_step": 250000,
            "global_epoch": 41,
        }
    torch.save(obj, path)
    return path
