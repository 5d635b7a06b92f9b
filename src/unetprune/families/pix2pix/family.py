"""The ``pix2pix`` model family: the U-Net generator of :mod:`.unet`, the PatchGAN of
:mod:`.patchgan`, the pix2pix GAN step (:class:`.train.Pix2PixTrainer`) and aligned A|B pairs.

The structure queries (channel groups, widths, inner levels) are those of :mod:`.unet`;
the operations that prune a U-Net are on the pruning side of the seam
(:mod:`unetprune.families.pix2pix.pruning`), so nothing here imports pruning code.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ...family import ModelFamily
from . import unet
from .patchgan import build_discriminator
from .train import Pix2PixTrainer
from .unet import UNetGenerator, UNetSpec, build_generator, init_weights

SECTION = "pix2pix"  # this family's config section: model.pix2pix (schema.yaml beside this file)


def model_options(cfg: dict, section: str = SECTION) -> dict:
    """``model.<section>`` of a config (the schema fragment's keys; empty in an unvalidated dict)."""
    return ((cfg.get("model") or {}).get(section)) or {}


class Pix2PixFamily(ModelFamily):
    """The U-Net generator family; its own keys (``schema.yaml`` beside this module) are read
    from ``model.<name>`` (``model.pix2pix``; a subclass under another name has its own section)."""

    name = SECTION
    metrics = ("fid", "kid", "segmentation", "paired", "diversity", "complexity")
    spec_type = UNetSpec

    # --- build ------------------------------------------------------------------------
    def spec_from_config(self, cfg: dict) -> UNetSpec:
        m = model_options(cfg, self.name)
        return UNetSpec.reference(
            num_downs=m["num_downs"],
            ngf=m["ngf"],
            norm=m["norm"],
            use_dropout=m["use_dropout"],
            bias_mode=m["bias_mode"],
        )

    def build(self, spec, init: bool = True, seed: int | None = None) -> UNetGenerator:
        return build_generator(spec, init=init, seed=seed)

    def input_shape(self, generator: UNetGenerator) -> tuple[int, int, int, int]:
        side = 2**generator.num_downs
        return (1, generator.spec.input_nc, side, side)

    def counting_shape(
        self, generator: UNetGenerator, image_size: int | None = None
    ) -> tuple[int, int, int, int]:
        if not image_size:
            return self.input_shape(generator)
        return (1, generator.spec.input_nc, int(image_size), int(image_size))

    def layer_position(self, spec, layer: str) -> tuple[str, int | None]:
        if layer.startswith("down"):
            return "encoder", int(layer[4:])
        if layer.startswith("up"):
            return "decoder", int(layer[2:])
        raise ValueError(f"{layer!r} is not a U-Net layer (down<i> / up<i>)")

    def levels(self, spec) -> list[int]:
        return list(range(2, spec.num_downs + 1))  # level 1 holds the RGB output

    def cut_ks(self, spec) -> dict[int, str | None]:
        n = spec.num_downs
        return {k: None for k in range(1, n - 1)}  # at least 2 levels must remain

    def pruning_ops(self):
        from .pruning import UNET_OPS

        return UNET_OPS

    def eval_set(self, cfg: dict, split: str, root):
        from ...evaluate import EvalSet

        return EvalSet.load(cfg, split, root)

    def trivial_generators(self, cfg: dict, generator, root) -> dict:
        """Copy the input, the per-pixel mean of the training targets, and the untrained generator."""
        from .trivial import ConstantImage, CopyInput, mean_target

        train = self.eval_set(cfg, "train", root)
        return {
            "copy-input": (CopyInput(generator.spec.output_nc), "outputs its input (the label map)"),
            "mean-target": (
                ConstantImage(mean_target(train.targets)),
                f"the per-pixel mean of the {train.n} training targets, for every input",
            ),
            **super().trivial_generators(cfg, generator, root),
        }

    # --- channel groups: one per encoder/decoder conv, up1 (the RGB output) excluded ---
    def groups(self, spec_or_generator) -> list[str]:
        return unet.unet_prunable_layers(spec_or_generator)

    def layer_width(self, generator: UNetGenerator, layer: str) -> int:
        return unet.layer_width(generator, layer)

    def layer_filters(self, generator: UNetGenerator, layer: str) -> tuple[nn.Module, nn.Module]:
        block = getattr(generator, layer)
        return block.conv, block.norm

    def default_inner_levels(self, spec) -> list[int]:
        return unet.default_inner_levels(spec)

    def widths(self, generator: UNetGenerator) -> dict:
        return unet.widths(generator)

    # --- training: the pix2pix GAN step on aligned pairs --------------------------------
    def build_discriminator(self, cfg: dict, generator: UNetGenerator) -> nn.Module:
        m = model_options(cfg, self.name)
        D = build_discriminator(
            {
                "input_nc": generator.spec.input_nc + generator.spec.output_nc,
                "ndf": m["ndf"],
                "n_layers": m["n_layers_d"],
                "norm": m["norm"],
            }
        )
        init_weights(D)
        return D

    def discriminator_from_entry(self, entry: dict) -> nn.Module:
        D = build_discriminator(entry["arch"])
        D.load_state_dict(entry["state_dict"])
        return D

    def trainer(self, generator, discriminator, tcfg: dict, device: torch.device):
        return Pix2PixTrainer(generator, discriminator, tcfg, device)

    def train_dataset(self, cfg: dict):
        from ...data.aligned import AlignedDataset
        from ...data.gpu_data import maybe_on_device
        from ...layout import Layout

        d = cfg["data"]
        ds = AlignedDataset(
            Layout.from_config(cfg).data_root,
            "train",
            d["direction"],
            d["load_size"],
            d["crop_size"],
            train=True,
            flip=not d["no_flip"],
            seed=cfg["seed"],
            max_items=d["max_train_items"],
        )
        return maybe_on_device(ds, cfg)  # data.on_device: the same samples, held on the GPU

    def check_dataset(self, cfg: dict):
        from ...data.aligned import AlignedDataset
        from ...layout import Layout

        split, n = cfg["train"]["eval_split"], cfg["train"]["eval_images"]
        root = Layout.from_config(cfg).data_root
        if not split or not n or not (root / split).is_dir():
            return None
        d = cfg["data"]
        return AlignedDataset(
            root,
            split,
            d["direction"],
            d["load_size"],
            d["crop_size"],
            train=False,
            seed=cfg["seed"],
            max_items=n,
        )

    def check_score(self, generator, dataset, cfg: dict) -> float:
        """Mean |G(A) - B| in [-1, 1] units (evaluate.mode, seeded, the batch-1 outputs)."""
        from ...translate import generate_split

        outs = generate_split(generator, dataset, cfg["evaluate"]["mode"], seed=cfg["seed"])
        return float(sum((o - b).abs().mean().item() for _, o, b in outs) / max(len(outs), 1))

    # --- samples ------------------------------------------------------------------------
    def render_samples(self, generator, dataset, path: Path | str, cfg: dict) -> Path:
        """PNG grid, one row per image: input | output | target."""
        from ...translate import save_sample_grid

        return save_sample_grid(generator, dataset, path, cfg)

    # --- config -----------------------------------------------------------------------
    def schema_fragment(self) -> Path:
        return Path(__file__).with_name("schema.yaml")

    def check_config(self, cfg: dict) -> None:
        """Image-translation data whose (crop) size the U-Net's depth divides; image metrics."""
        from ...errors import ConfigError

        d, m = cfg["data"], model_options(cfg, self.name)
        if d["dataset"] == "lrs2":
            raise ConfigError(
                "config error at 'data.dataset': lrs2 is talking-face data for model.family wav2lip, "
                "not an image-translation dataset"
            )
        if cfg["report"]["quality_metric"] in ("lse_d", "lse_c"):
            raise ConfigError(
                f"config error at 'report.quality_metric': {cfg['report']['quality_metric']} (lip "
                f"sync) applies to model.family wav2lip only"
            )
        if d["crop_size"] > d["load_size"]:
            raise ConfigError(
                f"config error at 'data.crop_size': {d['crop_size']} exceeds data.load_size={d['load_size']}"
            )
        size = cfg["demo"]["image_size"] if d["dataset"] == "demo" else d["crop_size"]
        if d["dataset"] == "demo" and d["crop_size"] != size:
            raise ConfigError(
                f"config error at 'data.crop_size': the demo images are demo.image_size={size} "
                f"pixels, so data.crop_size must be {size}"
            )
        if size % (2 ** m["num_downs"]):
            raise ConfigError(
                f"config error at 'model.{self.name}.num_downs': images of {size}px are not divisible by "
                f"2^{m['num_downs']}={2 ** m['num_downs']}"
            )

    def describe(self, spec) -> str:
        return f"num_downs={spec.num_downs}"

    # --- command line and workflow ----------------------------------------------------
    def command_modules(self) -> list[str]:
        """``unetprune import``: a released pix2pix generator as a unetprune checkpoint (the
        ``train_original`` job's command when ``model.pix2pix.init_weights`` is set)."""
        return [f"{__package__}.commands.import_"]

    def import_released(self, source, *, cfg=None, discriminator=None, expert=None, options=None):
        """A released ``latest_net_G.pth`` (+ ``latest_net_D.pth``): ``commands.import_.import_released``."""
        from .commands.import_ import import_released

        return import_released(source, cfg=cfg, discriminator=discriminator, expert=expert, options=options)

    # --- report and tracking ----------------------------------------------------------
    def comparability_rows(self, cfg: dict) -> list:
        """GAN Compression and OMGD on cityscapes / edges2shoes (:mod:`.report`)."""
        from .report import PUBLISHED

        return list(PUBLISHED)

    def report_text(self):
        from .report import Pix2PixReportText

        return Pix2PixReportText(self)


FAMILY = Pix2PixFamily()
