"""Pruning operations of the ``pix2pix`` family (the U-Net of :mod:`.unet`): surgery in
:mod:`.surgery`, the exact width cost in :class:`WidthCost`."""

from __future__ import annotations

from typing import Mapping

from torch import nn

from ...metrics.complexity import macs_by_layer
from ...pruning.ops import PruningOps
from . import surgery
from .unet import UNetGenerator, default_inner_levels, layers_of_levels


class WidthCost:
    """Exact params/MACs of a U-Net ``generator``'s architecture at other widths (same
    depth/layout): :meth:`UNetPruningOps.width_cost`."""

    def __init__(self, generator: UNetGenerator, input_shape=(1, 3, 256, 256)):
        self.n, self.spec = generator.num_downs, generator.spec
        per = macs_by_layer(generator, input_shape)
        self.layers = {}
        for part in ("down", "up"):
            for i in range(1, self.n + 1):
                blk = getattr(generator, f"{part}{i}")
                conv = blk.conv
                ksz = conv.weight[0, 0].numel()
                cc = conv.in_channels * conv.out_channels
                rec = per[f"{part}{i}.conv"]
                norm = blk.norm
                per_out = (1 if conv.bias is not None else 0) + (
                    2 if isinstance(norm, nn.BatchNorm2d) and norm.affine else 0
                )
                self.layers[(part, i)] = (ksz, per_out, rec["physical"] / cc, rec["output"] / cc)

    def __call__(self, enc: list[int], dec: list[int]) -> dict[str, int]:
        tot = {"params": 0, "macs_physical": 0.0, "macs_output": 0.0}
        for (part, i), (ksz, per_out, cp, co) in self.layers.items():
            if part == "down":
                cin, cout = (self.spec.input_nc if i == 1 else enc[i - 2]), enc[i - 1]
            else:
                cin, cout = enc[i - 1] + (dec[i] if i < self.n else 0), dec[i - 1]
            tot["params"] += cin * cout * ksz + per_out * cout
            tot["macs_physical"] += cp * cin * cout
            tot["macs_output"] += co * cin * cout
        return {k: int(round(v)) for k, v in tot.items()}


class UNetPruningOps(PruningOps):
    family = "pix2pix"

    def check_layer(self, generator: UNetGenerator, layer: str) -> None:
        surgery.check_layer(generator, layer)

    def prune_channels(self, generator: UNetGenerator, keep) -> UNetGenerator:
        return surgery.prune_channels(generator, keep)

    def layers_of_levels(self, generator: UNetGenerator, levels) -> tuple[list[int], list[str]]:
        lv = (
            surgery.check_levels(generator, levels) if levels is not None else default_inner_levels(generator)
        )
        return lv, layers_of_levels(lv)

    def cut(self, generator: UNetGenerator, k: int) -> tuple[UNetGenerator, dict]:
        new = surgery.cut_inner_levels(generator, k)
        n = generator.num_downs
        return new, {
            "k": k,
            "num_downs_before": n,
            "num_downs": n - k,
            "removed_levels": list(range(n - k + 1, n + 1)),
            "bn_to_bias": "eval-mode BatchNorm of the new innermost encoder level folded "
            "into its conv (scale into weights, shift into bias where one exists)",
            "layers": [f"down{i}" for i in range(n - k + 1, n + 1)] + [f"up{i}" for i in range(n, n - k, -1)],
            "dropout_levels": list(new.spec.dropout_levels),
        }

    def width_cost(self, generator: UNetGenerator, input_shape):
        wc, s = WidthCost(generator, input_shape), generator.spec
        n = s.num_downs

        def cost(width: Mapping[str, int]) -> dict[str, int]:
            enc = [width.get(f"down{i}", s.enc_widths[i - 1]) for i in range(1, n + 1)]
            dec = [s.output_nc] + [width.get(f"up{i}", s.dec_widths[i - 1]) for i in range(2, n + 1)]
            return wc(enc, dec)

        return cost


UNET_OPS = UNetPruningOps()
