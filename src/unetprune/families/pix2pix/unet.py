"""The pix2pix U-Net generator with named levels and explicit per-level widths.

Level ``i`` (1 = outermost, ``N = num_downs`` = innermost) has an encoder block
``down{i}`` and a decoder block ``up{i}``::

    x (input_nc, H) ─down1─▶ e1 (enc[0], H/2) ─down2─▶ e2 ─ … ─downN─▶ eN (enc[N-1], H/2^N)
                                                                            │
    out (output_nc) ◀─up1─ cat[e1, d2] ◀─up2─ … cat[e(N-1), dN] ◀─upN── eN ─┘

* ``down1``: Conv(k4 s2 p1)                       (no activation, no norm)
* ``down{i}``: LeakyReLU(0.2) → Conv → BN          (1 < i < N)
* ``down{N}``: LeakyReLU(0.2) → Conv               (innermost: no norm)
* ``up{N}``: ReLU → ConvT(k4 s2 p1) → BN           (input: eN only)
* ``up{i}``: ReLU → ConvT → BN [→ Dropout(0.5)]    (input: cat[skip = e_i, up = d_{i+1}])
* ``up1``: ReLU → ConvT (bias) → Tanh             (input: cat[e1, d2])

The concatenation order (skip first, then the decoder output from below) is the
reference's ``torch.cat([x, self.model(x)], 1)``.

Widths are explicit: ``enc_widths[i-1]`` is the output width of ``down{i}`` and
``dec_widths[i-1]`` the output width of ``up{i}`` (``dec_widths[0] == output_nc``).
A pruned or cut network is an ordinary instance of this class with other widths, so
it saves, reloads and trains like the original.

Conv biases: with ``bias_mode="paper"`` (default) a conv has a bias exactly where no
normalisation follows it (``down1``, ``down{N}``, ``up1``); that is the convention
behind the 54,414,531 parameters of ``unet_256`` (docs/method.md).  The official pix2pix code
(junyanz/pytorch-CycleGAN-and-pix2pix, ``UnetSkipConnectionBlock``) computes
``use_bias = norm is InstanceNorm`` and so, with BatchNorm, gives a bias only to the
outermost ConvTranspose: ``bias_mode="reference"`` reproduces that (54,413,955
parameters, 576 fewer) so that the official checkpoints' layouts can be matched.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from ...metrics.complexity import count_parameters  # noqa: F401 (re-exported: the one parameter count)

BIAS_MODES = ("paper", "reference")
NORMS = ("batch", "instance")


def default_enc_widths(num_downs: int, ngf: int = 64) -> list[int]:
    """Encoder widths of the reference ``unet_{2^num_downs}``: ngf·(1, 2, 4, 8, 8, …)."""
    return [ngf * min(2**i, 8) for i in range(num_downs)]


def default_dropout_levels(num_downs: int) -> list[int]:
    """Decoder levels with Dropout(0.5) in the reference: the ``num_downs - 5`` 8·ngf-wide
    levels just outside the innermost one (5, 6, 7 for ``unet_256``)."""
    return list(range(5, num_downs))


@dataclass
class UNetSpec:
    """Everything needed to rebuild a generator; stored in every checkpoint."""

    input_nc: int
    output_nc: int
    enc_widths: list[int]
    dec_widths: list[int]
    norm: str = "batch"
    dropout_levels: list[int] = field(default_factory=list)
    bias_mode: str = "paper"

    @property
    def num_downs(self) -> int:
        return len(self.enc_widths)

    def level_names(self) -> list[str]:
        """The blocks outer → inner → outer: ``down1..downN`` then ``upN..up1``."""
        n = self.num_downs
        return [f"down{i}" for i in range(1, n + 1)] + [f"up{i}" for i in range(n, 0, -1)]

    def to_dict(self) -> dict:
        return {"name": "unet", **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "UNetSpec":
        d = dict(d)
        name = d.pop("name", "unet")
        if name != "unet":
            raise ValueError(f"architecture name is {name!r}, expected 'unet'")
        return cls(**d)

    @classmethod
    def reference(
        cls,
        num_downs: int = 8,
        ngf: int = 64,
        input_nc: int = 3,
        output_nc: int = 3,
        norm: str = "batch",
        use_dropout: bool = True,
        bias_mode: str = "paper",
    ) -> "UNetSpec":
        """The pix2pix ``unet_{2^num_downs}`` layout (``unet_256`` = ``num_downs=8``)."""
        enc = default_enc_widths(num_downs, ngf)
        dec = [output_nc] + enc[: num_downs - 1]
        drop = default_dropout_levels(num_downs) if use_dropout else []
        return cls(input_nc, output_nc, enc, dec, norm, drop, bias_mode)

    def validate(self) -> None:
        n = self.num_downs
        if n < 2:
            raise ValueError(f"a U-Net needs at least 2 levels, got num_downs={n}")
        if len(self.dec_widths) != n:
            raise ValueError(f"dec_widths has {len(self.dec_widths)} entries, expected {n} (one per level)")
        if self.dec_widths[0] != self.output_nc:
            raise ValueError(
                f"dec_widths[0] (up1) must equal output_nc={self.output_nc}, got {self.dec_widths[0]}"
            )
        for name, ws in (("enc_widths", self.enc_widths), ("dec_widths", self.dec_widths)):
            for i, w in enumerate(ws):
                if not isinstance(w, int) or w < 1:
                    raise ValueError(f"{name}[{i}] must be a positive integer, got {w!r}")
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")
        if self.bias_mode not in BIAS_MODES:
            raise ValueError(f"bias_mode must be one of {BIAS_MODES}, got {self.bias_mode!r}")
        for lv in self.dropout_levels:
            if not 2 <= lv <= n - 1:
                raise ValueError(f"dropout level {lv} is not a decoder level between 2 and {n - 1}")


def _norm(kind: str, ch: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(ch)
    return nn.InstanceNorm2d(ch, affine=False, track_running_stats=False)


class Down(nn.Module):
    """Encoder level: [LeakyReLU] → Conv2d(k4 s2 p1) → [norm]."""

    def __init__(self, cin: int, cout: int, act: bool, norm: str | None, bias: bool):
        super().__init__()
        self.act = nn.LeakyReLU(0.2) if act else nn.Identity()
        self.conv = nn.Conv2d(cin, cout, kernel_size=4, stride=2, padding=1, bias=bias)
        self.norm = _norm(norm, cout) if norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(self.act(x)))


class Up(nn.Module):
    """Decoder level: ReLU → ConvTranspose2d(k4 s2 p1) → [norm | Tanh] → [Dropout(0.5)].

    ``skip_ch``/``up_ch`` record how the input splits into the encoder skip and the
    decoder-from-below halves (``up_ch == 0`` for the innermost level).
    """

    def __init__(
        self,
        skip_ch: int,
        up_ch: int,
        cout: int,
        norm: str | None,
        bias: bool,
        outermost: bool,
        dropout: bool,
    ):
        super().__init__()
        self.skip_ch, self.up_ch = skip_ch, up_ch
        self.act = nn.ReLU()
        self.conv = nn.ConvTranspose2d(skip_ch + up_ch, cout, kernel_size=4, stride=2, padding=1, bias=bias)
        self.norm = nn.Tanh() if outermost else (_norm(norm, cout) if norm else nn.Identity())
        self.dropout = nn.Dropout(0.5) if dropout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.norm(self.conv(self.act(x))))


class UNetGenerator(nn.Module):
    """U-Net generator built from a :class:`UNetSpec`; modules ``down1..downN``, ``up1..upN``."""

    def __init__(self, spec: UNetSpec):
        super().__init__()
        spec.validate()
        self.spec = spec
        n, enc, dec = spec.num_downs, spec.enc_widths, spec.dec_widths
        paper = spec.bias_mode == "paper"
        use_bias_with_norm = spec.norm == "instance"  # reference: bias unless BatchNorm
        for i in range(1, n + 1):
            cin = spec.input_nc if i == 1 else enc[i - 2]
            has_norm = 1 < i < n
            bias = use_bias_with_norm or (paper and not has_norm)
            self.add_module(
                f"down{i}", Down(cin, enc[i - 1], act=i > 1, norm=spec.norm if has_norm else None, bias=bias)
            )
        for i in range(1, n + 1):
            outermost, innermost = i == 1, i == n
            up_ch = 0 if innermost else dec[i]
            bias = outermost or use_bias_with_norm
            self.add_module(
                f"up{i}",
                Up(
                    enc[i - 1],
                    up_ch,
                    dec[i - 1],
                    norm=None if outermost else spec.norm,
                    bias=bias,
                    outermost=outermost,
                    dropout=i in spec.dropout_levels,
                ),
            )

    @property
    def num_downs(self) -> int:
        return self.spec.num_downs

    def level_names(self) -> list[str]:
        return self.spec.level_names()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.num_downs
        skips = []
        h = x
        for i in range(1, n + 1):
            h = getattr(self, f"down{i}")(h)
            skips.append(h)
        y = getattr(self, f"up{n}")(skips[-1])
        for i in range(n - 1, 0, -1):
            y = getattr(self, f"up{i}")(torch.cat([skips[i - 1], y], dim=1))
        return y


def init_weights(module: nn.Module, gain: float = 0.02) -> None:
    """pix2pix 'normal' init: conv weights N(0, gain), biases 0; BN weight N(1, gain), bias 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)


def build_generator(spec: UNetSpec | dict, init: bool = True, seed: int | None = None) -> UNetGenerator:
    if isinstance(spec, dict):
        spec = UNetSpec.from_dict(spec)
    if seed is not None:
        torch.manual_seed(seed)
    g = UNetGenerator(spec)
    if init:
        init_weights(g)
    return g


# --- structure queries (what the family seam and the pruning engine ask) ---------------


def unet_prunable_layers(spec_or_generator) -> list[str]:
    """The U-Net's channel groups: ``down1..downN`` then ``upN..up2`` (``up1`` produces the
    RGB output: never pruned)."""
    spec = getattr(spec_or_generator, "spec", spec_or_generator)
    return [n for n in spec.level_names() if n != "up1"]


def default_inner_levels(spec_or_generator) -> list[int]:
    """The levels whose encoder *and* decoder outputs have the network's largest width
    (the 8·ngf levels of the reference layout): 5–8 for ``unet_256`` (docs/method.md), 5–6 for
    a ``num_downs=6`` model.  Level 1 never qualifies (``up1`` is the RGB output)."""
    spec = getattr(spec_or_generator, "spec", spec_or_generator)
    n, enc, dec = spec.num_downs, spec.enc_widths, spec.dec_widths
    wmax = max(enc)
    levels = [i for i in range(2, n + 1) if enc[i - 1] == wmax and dec[i - 1] == wmax]
    return levels or [n]


def layers_of_levels(levels) -> list[str]:
    """``down{l}`` and ``up{l}`` of each level (``up1`` excluded: the RGB output)."""
    out = [f"down{lv}" for lv in levels]
    out += [f"up{lv}" for lv in sorted(levels, reverse=True) if lv != 1]
    return out


def layer_width(generator: "UNetGenerator", layer: str) -> int:
    return getattr(generator, layer).conv.out_channels


def widths(generator: "UNetGenerator") -> dict[str, list[int]]:
    return {"enc": list(generator.spec.enc_widths), "dec": list(generator.spec.dec_widths)}
