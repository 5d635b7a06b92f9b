"""The 70x70 PatchGAN discriminator of pix2pix (``n_layers = 3``).

C64 (no norm) → C128 → C256 → C512 (stride 1) → 1-channel map, k4, LeakyReLU(0.2).
Convs followed by BatchNorm have no bias, as in the reference ``NLayerDiscriminator``.
Its receptive field is 70x70 pixels; for a 256x256 input the output is 30x30 logits.
"""

from __future__ import annotations

from torch import nn


class PatchGANDiscriminator(nn.Module):
    def __init__(self, input_nc: int = 6, ndf: int = 64, n_layers: int = 3, norm: str = "batch"):
        super().__init__()
        self.config = {
            "name": "patchgan",
            "input_nc": input_nc,
            "ndf": ndf,
            "n_layers": n_layers,
            "norm": norm,
        }
        use_bias = norm == "instance"

        def norm_layer(ch: int) -> nn.Module:
            if norm == "batch":
                return nn.BatchNorm2d(ch)
            return nn.InstanceNorm2d(ch)

        layers: list[nn.Module] = [nn.Conv2d(input_nc, ndf, 4, 2, 1), nn.LeakyReLU(0.2)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [
                nn.Conv2d(ndf * prev, ndf * mult, 4, stride, 1, bias=use_bias),
                norm_layer(ndf * mult),
                nn.LeakyReLU(0.2),
            ]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, 1, 1))
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x)


def build_discriminator(config: dict) -> PatchGANDiscriminator:
    cfg = dict(config)
    cfg.pop("name", None)
    return PatchGANDiscriminator(**cfg)
