"""The ``pix2pix`` model family: the U-Net generator of :mod:`.unet`, the PatchGAN of
:mod:`.patchgan`, the pix2pix GAN step and aligned A|B image pairs.

Every method is a thin adapter over the module that owns the behaviour: the U-Net
channel groups and surgery in :mod:`unetprune.pruning.surgery` (cost model in
:mod:`unetprune.pruning.budget`), the GAN step in :class:`unetprune.train.Pix2PixTrainer`,
the data in :mod:`unetprune.data.aligned`, the learning check and sample grid in
:mod:`unetprune.translate`, each imported when first used.

The pruning half and the trainer are looked up by module name (:func:`_part`), not
imported: their only callers are the pruning package and ``train.py``, which import those
modules themselves.  So the code digest of a job (:mod:`unetprune.provenance`, the static
import closure of its command) stays what the job runs: loading a checkpoint for training
or evaluation does not make those jobs depend on the pruning code.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from .family import ModelFamily, register_family
from .patchgan import build_discriminator
from .unet import UNetGenerator, UNetSpec, build_generator, init_weights


def _part(module: str):
    """``unetprune.<module>``, imported by name (see the module doc)."""
    return importlib.import_module(f"unetprune.{module}")


def _surgery():
    return _part("pruning.surgery")


class Pix2PixFamily(ModelFamily):
    name = "pix2pix"
    metrics = ("fid", "kid", "segmentation", "paired", "complexity")
    spec_type = UNetSpec

    # --- build ------------------------------------------------------------------------
    def spec_from_config(self, cfg: dict) -> UNetSpec:
        from ..config import model_spec_from_config

        return model_spec_from_config(cfg)

    def build(self, spec, init: bool = True, seed: int | None = None) -> UNetGenerator:
        return build_generator(spec, init=init, seed=seed)

    def input_shape(self, generator: UNetGenerator) -> tuple[int, int, int, int]:
        side = 2 ** generator.num_downs
        return (1, generator.spec.input_nc, side, side)

    # --- prunable channel groups: one group per encoder/decoder conv, up1 excluded -------
    def groups(self, spec_or_generator) -> list[str]:
        return _surgery().unet_prunable_layers(spec_or_generator)

    def check_layer(self, generator: UNetGenerator, layer: str) -> None:
        _surgery().check_layer(generator, layer)

    def layer_width(self, generator: UNetGenerator, layer: str) -> int:
        return _surgery().layer_width(generator, layer)

    def layer_filters(self, generator: UNetGenerator, layer: str) -> tuple[nn.Module, nn.Module]:
        block = getattr(generator, layer)
        return block.conv, block.norm

    def prune_channels(self, generator: UNetGenerator, keep) -> UNetGenerator:
        return _surgery().prune_channels(generator, keep)

    def default_inner_levels(self, spec) -> list[int]:
        return _surgery().default_inner_levels(spec)

    def layers_of_levels(self, generator: UNetGenerator, levels) -> tuple[list[int], list[str]]:
        lv = (_surgery().check_levels(generator, levels) if levels is not None
              else _surgery().default_inner_levels(generator))
        return lv, _surgery().layers_of_levels(lv)

    def cut(self, generator: UNetGenerator, k: int) -> tuple[UNetGenerator, dict]:
        new = _surgery().cut_inner_levels(generator, k)
        n = generator.num_downs
        return new, {"k": k, "num_downs_before": n, "num_downs": n - k,
                     "removed_levels": list(range(n - k + 1, n + 1)),
                     "bn_to_bias": "eval-mode BatchNorm of the new innermost encoder level folded "
                                   "into its conv (scale into weights, shift into bias where one exists)",
                     "layers": [f"down{i}" for i in range(n - k + 1, n + 1)]
                               + [f"up{i}" for i in range(n, n - k, -1)],
                     "dropout_levels": list(new.spec.dropout_levels)}

    def widths(self, generator: UNetGenerator) -> dict:
        return _surgery().widths(generator)

    def width_cost(self, generator: UNetGenerator, input_shape):
        wc, s = _part("pruning.budget").WidthCost(generator, input_shape), generator.spec
        n = s.num_downs

        def cost(width: Mapping[str, int]) -> dict[str, int]:
            enc = [width.get(f"down{i}", s.enc_widths[i - 1]) for i in range(1, n + 1)]
            dec = [s.output_nc] + [width.get(f"up{i}", s.dec_widths[i - 1]) for i in range(2, n + 1)]
            return wc(enc, dec)
        return cost

    # --- training: the pix2pix GAN step on aligned pairs --------------------------------
    def build_discriminator(self, cfg: dict, generator: UNetGenerator) -> nn.Module:
        m = cfg["model"]
        D = build_discriminator({"input_nc": generator.spec.input_nc + generator.spec.output_nc,
                                 "ndf": m["ndf"], "n_layers": m["n_layers_d"], "norm": m["norm"]})
        init_weights(D)
        return D

    def discriminator_from_entry(self, entry: dict) -> nn.Module:
        D = build_discriminator(entry["arch"])
        D.load_state_dict(entry["state_dict"])
        return D

    def trainer(self, generator, discriminator, tcfg: dict, device: torch.device):
        return _part("train").Pix2PixTrainer(generator, discriminator, tcfg, device)

    def train_dataset(self, cfg: dict):
        from ..data.aligned import AlignedDataset
        from ..layout import Layout

        d = cfg["data"]
        return AlignedDataset(Layout.from_config(cfg).data_root, "train", d["direction"], d["load_size"],
                              d["crop_size"], train=True, flip=not d["no_flip"], seed=cfg["seed"],
                              max_items=d["max_train_items"])

    def check_dataset(self, cfg: dict):
        from ..data.aligned import AlignedDataset
        from ..layout import Layout

        split, n = cfg["train"]["eval_split"], cfg["train"]["eval_images"]
        root = Layout.from_config(cfg).data_root
        if not split or not n or not (root / split).is_dir():
            return None
        d = cfg["data"]
        return AlignedDataset(root, split, d["direction"], d["load_size"], d["crop_size"], train=False,
                              seed=cfg["seed"], max_items=n)

    def check_score(self, generator, dataset, cfg: dict) -> float:
        """Mean |G(A) - B| in [-1, 1] units (evaluate.mode, seeded, batch 1)."""
        from ..translate import generate_split

        outs = generate_split(generator, dataset, cfg["evaluate"]["mode"], seed=cfg["seed"])
        return float(sum((o - b).abs().mean().item() for _, o, b in outs) / max(len(outs), 1))

    # --- samples ------------------------------------------------------------------------
    def render_samples(self, generator, dataset, path: Path | str, cfg: dict) -> Path:
        """PNG grid, one row per image: input | output | target."""
        from ..translate import save_sample_grid

        return save_sample_grid(generator, dataset, path, cfg)


PIX2PIX = register_family(Pix2PixFamily())
