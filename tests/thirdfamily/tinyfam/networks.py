"""The networks of ``tinyfam``: an encoder-decoder generator without skips and a small PatchGAN.

Level ``i`` (1 = outermost, ``L`` = innermost) has an encoder block ``enc{i}`` and a
decoder block ``dec{i}``; the signal goes down every encoder level and back up every
decoder level, with no skip connection::

    x ─enc1─▶ … ─encL─▶ h ─decL─▶ … ─dec1─▶ out (output_nc, Tanh)

* ``enc1``: Conv(k4 s2 p1, bias); ``enc{1<i<L}``: LeakyReLU(0.2) → Conv(k4 s2 p1) → BN;
  ``encL``: LeakyReLU(0.2) → Conv (bias), no norm
* ``dec{i>1}``: ReLU → ConvT(k4 s2 p1) → BN;  ``dec1``: ReLU → ConvT (bias) → Tanh

``enc_widths[i-1]`` is the output width of ``enc{i}``, ``dec_widths[i-1]`` that of ``dec{i}``
(``dec_widths[0] == output_nc``).  Only torch is imported.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

ARCH = "tinyfam-encdec"


@dataclass
class TinySpec:
    """Everything needed to rebuild a generator (stored in checkpoints)."""

    input_nc: int
    output_nc: int
    enc_widths: list[int]
    dec_widths: list[int]

    @property
    def n_levels(self) -> int:
        return len(self.enc_widths)

    def to_dict(self) -> dict:
        return {"name": ARCH, **asdict(self)}

    @classmethod
    def from_dict(cls, d) -> "TinySpec":
        d = dict(d)
        name = d.pop("name", ARCH)
        if name != ARCH:
            raise ValueError(f"architecture name is {name!r}, expected {ARCH!r}")
        return cls(**d)

    @classmethod
    def reference(cls, n_levels: int = 5, ngf: int = 8, input_nc: int = 3, output_nc: int = 3) -> "TinySpec":
        """Widths ngf·(1, 2, 4, 4, …) down, the mirror image up."""
        enc = [ngf * min(2**i, 4) for i in range(n_levels)]
        return cls(input_nc, output_nc, enc, [output_nc] + enc[: n_levels - 1])

    def validate(self) -> None:
        if self.n_levels < 2:
            raise ValueError(f"tinyfam needs at least 2 levels, got {self.n_levels}")
        if len(self.dec_widths) != self.n_levels or self.dec_widths[0] != self.output_nc:
            raise ValueError(
                f"dec_widths must have {self.n_levels} entries starting with output_nc, got {self.dec_widths}"
            )


class Block(nn.Module):
    """[activation] → conv → [norm]: ``conv`` and ``norm`` are what pruning scores and cuts."""

    def __init__(self, act: nn.Module, conv: nn.Module, norm: nn.Module):
        super().__init__()
        self.act, self.conv, self.norm = act, conv, norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(self.act(x)))


class TinyGenerator(nn.Module):
    """The generator of a :class:`TinySpec`; modules ``enc1..encL``, ``dec1..decL``."""

    def __init__(self, spec: TinySpec):
        super().__init__()
        spec.validate()
        self.spec = spec
        n, enc, dec = spec.n_levels, spec.enc_widths, spec.dec_widths
        for i in range(1, n + 1):
            cin = spec.input_nc if i == 1 else enc[i - 2]
            norm = 1 < i < n  # the innermost level has no norm (1x1 at 2^L)
            self.add_module(
                f"enc{i}",
                Block(
                    nn.LeakyReLU(0.2) if i > 1 else nn.Identity(),
                    nn.Conv2d(cin, enc[i - 1], 4, 2, 1, bias=not norm),
                    nn.BatchNorm2d(enc[i - 1]) if norm else nn.Identity(),
                ),
            )
        for i in range(1, n + 1):
            cin = enc[n - 1] if i == n else dec[i]
            outer = i == 1
            self.add_module(
                f"dec{i}",
                Block(
                    nn.ReLU(),
                    nn.ConvTranspose2d(cin, dec[i - 1], 4, 2, 1, bias=outer),
                    nn.Tanh() if outer else nn.BatchNorm2d(dec[i - 1]),
                ),
            )

    @property
    def n_levels(self) -> int:
        return self.spec.n_levels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.n_levels
        for i in range(1, n + 1):
            x = getattr(self, f"enc{i}")(x)
        for i in range(n, 0, -1):
            x = getattr(self, f"dec{i}")(x)
        return x


def init_weights(module: nn.Module, gain: float = 0.02) -> None:
    """Conv weights N(0, gain), biases 0; BN weight N(1, gain), bias 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)


class TinyPatchGAN(nn.Module):
    """Conv(k4 s2) → LeakyReLU → Conv(k4 s1) → one logit per patch; ``config`` rebuilds it."""

    def __init__(self, input_nc: int, ndf: int = 8):
        super().__init__()
        self.config = {"input_nc": int(input_nc), "ndf": int(ndf)}
        self.net = nn.Sequential(
            nn.Conv2d(input_nc, ndf, 4, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(ndf, 1, 4, 1, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
