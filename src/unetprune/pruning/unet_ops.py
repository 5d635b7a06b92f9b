"""Pruning operations of the ``pix2pix`` family (the U-Net of :mod:`unetprune.models.unet`):
surgery in :mod:`.surgery`, the exact width cost in :mod:`.budget`."""

from __future__ import annotations

from typing import Mapping

from ..models.unet import UNetGenerator, default_inner_levels, layers_of_levels
from . import surgery
from .families import PruningOps, register_pruning_ops


class UNetPruningOps(PruningOps):
    family = "pix2pix"

    def check_layer(self, generator: UNetGenerator, layer: str) -> None:
        surgery.check_layer(generator, layer)

    def prune_channels(self, generator: UNetGenerator, keep) -> UNetGenerator:
        return surgery.prune_channels(generator, keep)

    def layers_of_levels(self, generator: UNetGenerator, levels) -> tuple[list[int], list[str]]:
        lv = surgery.check_levels(generator, levels) if levels is not None else default_inner_levels(generator)
        return lv, layers_of_levels(lv)

    def cut(self, generator: UNetGenerator, k: int) -> tuple[UNetGenerator, dict]:
        new = surgery.cut_inner_levels(generator, k)
        n = generator.num_downs
        return new, {"k": k, "num_downs_before": n, "num_downs": n - k,
                     "removed_levels": list(range(n - k + 1, n + 1)),
                     "bn_to_bias": "eval-mode BatchNorm of the new innermost encoder level folded "
                                   "into its conv (scale into weights, shift into bias where one exists)",
                     "layers": [f"down{i}" for i in range(n - k + 1, n + 1)]
                               + [f"up{i}" for i in range(n, n - k, -1)],
                     "dropout_levels": list(new.spec.dropout_levels)}

    def width_cost(self, generator: UNetGenerator, input_shape):
        from .budget import WidthCost

        wc, s = WidthCost(generator, input_shape), generator.spec
        n = s.num_downs

        def cost(width: Mapping[str, int]) -> dict[str, int]:
            enc = [width.get(f"down{i}", s.enc_widths[i - 1]) for i in range(1, n + 1)]
            dec = [s.output_nc] + [width.get(f"up{i}", s.dec_widths[i - 1]) for i in range(2, n + 1)]
            return wc(enc, dec)
        return cost


UNET_OPS = register_pruning_ops(UNetPruningOps())
