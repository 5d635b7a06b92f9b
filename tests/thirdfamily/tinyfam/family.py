"""The ``tinyfam`` model family: what unetprune asks of it, answered with its own networks
(:mod:`.networks`), pruning operations (:mod:`.pruning`) and GAN step (:class:`TinyTrainer`),
and the core's aligned A|B image pairs for data, evaluation and samples.

Found through the ``unetprune.families`` entry point ``tinyfam = tinyfam.family:FAMILY``;
its keys live under ``model.tinyfam`` (:file:`schema.yaml`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from unetprune.family import ModelFamily

from . import pruning
from .networks import TinyGenerator, TinyPatchGAN, TinySpec, init_weights

NAME = "tinyfam"


def _section(cfg: dict) -> dict:
    return {"levels": 5, "width": 8, "disc_width": 8, **((cfg.get("model") or {}).get(NAME) or {})}


class TinyTrainer:
    """The pix2pix objective (BCE GAN + 100·L1) with Adam, eager, on aligned pairs."""

    losses = ("G_GAN", "G_L1", "D_real", "D_fake")

    def __init__(self, G: nn.Module, D: nn.Module, tcfg: dict, device: torch.device):
        self.device = device
        self.G, self.D = G.to(device), D.to(device)
        betas = (tcfg["beta1"], tcfg["beta2"])
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=tcfg["lr"], betas=betas)
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=tcfg["lr"], betas=betas)
        self.bce, self.l1 = nn.BCEWithLogitsLoss(), nn.L1Loss()
        self.lambda_l1 = tcfg.get("lambda_l1", 100.0)

    def set_lr(self, lr: float) -> None:
        for opt in (self.opt_G, self.opt_D):
            for group in opt.param_groups:
                group["lr"] = lr

    def set_train_mode(self) -> None:
        self.G.train()
        self.D.train()

    def step(self, batch: dict) -> dict[str, torch.Tensor]:
        a, b = batch["A"].to(self.device), batch["B"].to(self.device)
        fake = self.G(a)
        self.D.requires_grad_(True)
        self.opt_D.zero_grad(set_to_none=True)
        pred_fake = self.D(torch.cat([a, fake.detach()], 1))
        pred_real = self.D(torch.cat([a, b], 1))
        d_fake = self.bce(pred_fake, torch.zeros_like(pred_fake))
        d_real = self.bce(pred_real, torch.ones_like(pred_real))
        (0.5 * (d_fake + d_real)).backward()
        self.opt_D.step()
        self.D.requires_grad_(False)
        self.opt_G.zero_grad(set_to_none=True)
        pred = self.D(torch.cat([a, fake], 1))
        g_gan = self.bce(pred, torch.ones_like(pred))
        g_l1 = self.l1(fake, b) * self.lambda_l1
        (g_gan + g_l1).backward()
        self.opt_G.step()
        return {
            "G_GAN": g_gan.detach(),
            "G_L1": g_l1.detach(),
            "D_real": d_real.detach(),
            "D_fake": d_fake.detach(),
        }

    def state(self) -> dict:
        return {
            "discriminator": {
                "arch": dict(self.D.config),
                "state_dict": {k: v.detach().cpu() for k, v in self.D.state_dict().items()},
            },
            "optimizers": {"G": self.opt_G.state_dict(), "D": self.opt_D.state_dict()},
        }

    def load_state(self, ckpt: dict) -> None:
        self.G.load_state_dict(ckpt["generator"]["state_dict"])
        self.D.load_state_dict(ckpt["discriminator"]["state_dict"])
        self.opt_G.load_state_dict(ckpt["optimizers"]["G"])
        self.opt_D.load_state_dict(ckpt["optimizers"]["D"])


class TinyFamily(ModelFamily):
    name = NAME
    metrics = ("fid", "kid", "paired", "diversity", "complexity")
    spec_type = TinySpec

    # --- build ------------------------------------------------------------------------
    def spec_from_config(self, cfg: dict) -> TinySpec:
        s = _section(cfg)
        return TinySpec.reference(int(s["levels"]), int(s["width"]))

    def build(self, spec, init: bool = True, seed: int | None = None) -> TinyGenerator:
        if not isinstance(spec, TinySpec):
            spec = TinySpec.from_dict(spec)
        if seed is not None:
            torch.manual_seed(seed)
        g = TinyGenerator(spec)
        if init:
            init_weights(g)
        return g

    def input_shape(self, generator) -> tuple[int, int, int, int]:
        side = 2**generator.n_levels
        return (1, generator.spec.input_nc, side, side)

    def counting_shape(self, generator, image_size: int | None = None) -> tuple[int, int, int, int]:
        if not image_size:
            return self.input_shape(generator)
        return (1, generator.spec.input_nc, int(image_size), int(image_size))

    def schema_fragment(self) -> Path:
        return Path(__file__).with_name("schema.yaml")

    def eval_set(self, cfg: dict, split: str, root):
        from unetprune.evaluate import EvalSet

        return EvalSet.load(cfg, split, root)

    def pruning_ops(self):
        return pruning.TINY_OPS

    # --- channel groups ---------------------------------------------------------------
    def groups(self, spec_or_generator) -> list[str]:
        return pruning.groups(getattr(spec_or_generator, "spec", spec_or_generator))

    def layer_width(self, generator, layer: str) -> int:
        return getattr(generator, layer).conv.out_channels

    def layer_filters(self, generator, layer: str) -> tuple[nn.Module, nn.Module]:
        block = getattr(generator, layer)
        return block.conv, block.norm

    def default_inner_levels(self, spec) -> list[int]:
        return pruning.default_inner_levels(getattr(spec, "spec", spec))

    def layer_position(self, spec, layer: str) -> tuple[str, int | None]:
        if layer.startswith("enc"):
            return "encoder", int(layer[3:])
        if layer.startswith("dec"):
            return "decoder", int(layer[3:])
        raise ValueError(f"{layer!r} is not a tinyfam layer (enc<i> / dec<i>)")

    def levels(self, spec) -> list[int]:
        return list(range(2, getattr(spec, "spec", spec).n_levels + 1))

    def cut_ks(self, spec) -> dict[int, str | None]:
        s = getattr(spec, "spec", spec)
        return {k: pruning.cut_refusal(s, k) for k in range(1, s.n_levels - 1)}

    def widths(self, generator) -> dict:
        return {"enc": list(generator.spec.enc_widths), "dec": list(generator.spec.dec_widths)}

    # --- training ---------------------------------------------------------------------
    def build_discriminator(self, cfg: dict, generator) -> TinyPatchGAN:
        D = TinyPatchGAN(generator.spec.input_nc + generator.spec.output_nc, int(_section(cfg)["disc_width"]))
        init_weights(D)
        return D

    def discriminator_from_entry(self, entry: dict) -> TinyPatchGAN:
        D = TinyPatchGAN(**entry["arch"])
        D.load_state_dict(entry["state_dict"])
        return D

    def trainer(self, generator, discriminator, tcfg: dict, device: torch.device) -> TinyTrainer:
        return TinyTrainer(generator, discriminator, tcfg, device)

    def _aligned(self, cfg: dict, split: str, train: bool, max_items):
        from unetprune.data.aligned import AlignedDataset
        from unetprune.layout import Layout

        d = cfg["data"]
        return AlignedDataset(
            Layout.from_config(cfg).data_root,
            split,
            d["direction"],
            d["load_size"],
            d["crop_size"],
            train=train,
            flip=train and not d["no_flip"],
            seed=cfg["seed"],
            max_items=max_items,
        )

    def train_dataset(self, cfg: dict):
        return self._aligned(cfg, "train", True, cfg["data"]["max_train_items"])

    def check_dataset(self, cfg: dict):
        from unetprune.layout import Layout

        split, n = cfg["train"]["eval_split"], cfg["train"]["eval_images"]
        if not split or not n or not (Layout.from_config(cfg).data_root / split).is_dir():
            return None
        return self._aligned(cfg, split, False, n)

    def check_score(self, generator, dataset, cfg: dict) -> float:
        """Mean |G(A) - B| over the check pairs ([-1, 1] units)."""
        from unetprune.translate import generate_split

        outs = generate_split(generator, dataset, cfg["evaluate"]["mode"], seed=cfg["seed"])
        return float(sum((o - b).abs().mean().item() for _, o, b in outs) / max(len(outs), 1))

    # --- samples ----------------------------------------------------------------------
    def render_samples(self, generator, dataset, path: Path | str, cfg: dict) -> Path:
        from unetprune.translate import save_sample_grid

        return save_sample_grid(generator, dataset, path, cfg)


FAMILY = TinyFamily()
