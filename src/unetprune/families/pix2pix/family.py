"""The ``pix2pix`` model family: the U-Net generator of :mod:`.unet`, the PatchGAN of
:mod:`.patchgan`, the pix2pix GAN step (:class:`Pix2PixTrainer`) and aligned A|B pairs.

The structure queries (channel groups, widths, inner levels) are those of :mod:`.unet`;
the operations that prune a U-Net are on the pruning side of the seam
(:mod:`unetprune.families.pix2pix.pruning`), so nothing here imports pruning code.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import torch
from torch import nn

from ... import cuda_graph
from ...family import ModelFamily
from . import unet
from .patchgan import build_discriminator
from .unet import UNetGenerator, UNetSpec, build_generator, init_weights


def _auto(value, device: torch.device) -> bool:
    return device.type == "cuda" if value == "auto" else bool(value)


class Pix2PixTrainer:
    """Holds G, D, optimisers and the speed options; :meth:`train_step` does one update.

    The trainer interface :func:`train` uses (what any family's trainer provides): ``G``,
    ``losses``, :meth:`set_lr`, :meth:`set_train_mode`, :meth:`step`, :meth:`state`,
    :meth:`load_state`.
    """

    losses = ("G_GAN", "G_L1", "D_real", "D_fake")

    def __init__(self, G: nn.Module, D: nn.Module, tcfg: dict, device: torch.device):
        self.device = device
        self.cfg = tcfg
        if device.type == "cpu" and tcfg["flush_denormal"]:
            # Denormal floats appear in the pix2pix nets after a few Adam steps and can slow
            # x86 CPUs down several-fold (a safeguard: benchmarks/train_step.py measured no
            # difference on the demo); flushing them to zero changes values below ~1e-38
            # only.  Process-wide setting.
            torch.set_flush_denormal(True)
        self.amp = (tcfg["amp"] == "bf16") or (tcfg["amp"] == "auto" and device.type == "cuda")
        self.channels_last = _auto(tcfg["channels_last"], device)
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        self.G = G.to(device, memory_format=fmt)
        self.D = D.to(device, memory_format=fmt)
        betas = (tcfg["beta1"], tcfg["beta2"])
        compile_on = _auto(tcfg["compile"], device)
        if tcfg["compile"] == "auto" and cuda_graph.normalise_setting(tcfg.get("cuda_graph", "auto")) != "off":
            compile_on = False  # compile: auto yields to the whole-step graph (faster at batch 1; not combined)
        # train.cuda_graph: whole-step capture where possible (unetprune.cuda_graph), else eager
        self.graph_decision = cuda_graph.decide(tcfg.get("cuda_graph", "auto"), device, compile_on=compile_on,
                                                amp_dtype=torch.bfloat16 if self.amp else None)
        if self.graph_decision.use:  # capturable Adam, lr a device tensor (no recapture on a new lr)
            self.opt_G = cuda_graph.graph_adam(self.G.parameters(), tcfg["lr"], betas, device)
            self.opt_D = cuda_graph.graph_adam(self.D.parameters(), tcfg["lr"], betas, device)
        else:
            self.opt_G = cuda_graph.eager_adam(self.G.parameters(), tcfg["lr"], betas, device)
            self.opt_D = cuda_graph.eager_adam(self.D.parameters(), tcfg["lr"], betas, device)
        self.bce = nn.BCEWithLogitsLoss()
        self.l1 = nn.L1Loss()
        self.lambda_l1 = tcfg["lambda_l1"]
        self.G_fwd = torch.compile(self.G) if compile_on else self.G
        self.D_fwd = torch.compile(self.D) if compile_on else self.D
        d = self.graph_decision
        self.step_mode = cuda_graph.StepMode("graph" if d.use else "eager", d.setting, d.reason)
        self.graph = self.use_step_graph("graph") if d.use else None

    def use_step_graph(self, mode: str = "graph") -> cuda_graph.StepGraph:
        """Run :meth:`train_step` through a :class:`~unetprune.cuda_graph.StepGraph` (``graph``:
        captured; ``static``: the same static-buffer step run eagerly, any device: tests)."""
        if mode == "static":
            self.step_mode.mode = "static"
        self.graph = cuda_graph.StepGraph(self._step, [self.G, self.D], [self.opt_G, self.opt_D], self.device,
                                          prepare=self._prep, mode=mode, status=self.step_mode)
        return self.graph

    def autocast(self):
        if self.amp:  # no cast cache inside a CUDA graph: the casts are replayed with the step
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16,
                                  cache_enabled=not self.graph_decision.use)
        return nullcontext()

    def set_lr(self, lr: float) -> None:
        for opt in (self.opt_G, self.opt_D):
            cuda_graph.set_lr(opt, lr)  # a device-tensor lr is filled in place (no recapture)

    def set_train_mode(self) -> None:
        self.G.train()
        self.D.train()

    def step(self, batch: dict) -> dict[str, torch.Tensor]:
        """One update on a batch of aligned pairs ``{"A": ..., "B": ...}``."""
        return self.train_step(batch["A"], batch["B"])

    def state(self) -> dict:
        """The checkpoint entries besides the generator: discriminator and optimisers."""
        d_state = {k: v.detach().cpu() for k, v in self.D.state_dict().items()}
        opts = {"G": self.opt_G.state_dict(), "D": self.opt_D.state_dict()}
        if self.device.type == "cuda":  # the CPU eager trainer's format: any kind of run resumes any other
            opts = {k: cuda_graph.eager_optimizer_state(v) for k, v in opts.items()}
        return {"discriminator": {"arch": self.D.config, "state_dict": d_state}, "optimizers": opts}

    def load_state(self, ckpt: dict) -> None:
        """Continue from a checkpoint written with :meth:`state` (the generator included)."""
        self.G.load_state_dict(ckpt["generator"]["state_dict"])
        self.D.load_state_dict(ckpt["discriminator"]["state_dict"])
        self.opt_G.load_state_dict(ckpt["optimizers"]["G"])
        self.opt_D.load_state_dict(ckpt["optimizers"]["D"])
        for opt in (self.opt_G, self.opt_D):  # loaded groups replaced the flags (and lr tensors)
            if self.graph_decision.use:
                cuda_graph.to_graph_optimizer(opt, self.device)
            else:
                cuda_graph.to_eager_optimizer(opt, self.device)
        if self.graph is not None:
            self.graph.reset()  # the optimiser states are new tensors: capture again

    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def train_step(self, real_A: torch.Tensor, real_B: torch.Tensor) -> dict[str, torch.Tensor]:
        """One pix2pix update (D then G). Returns detached loss tensors (no device sync).

        With a step graph the batch is copied into its static buffers and the captured step
        replayed; a batch of another shape (the last, partial one) runs eagerly."""
        if self.graph is not None:
            out = self.graph(real_A, real_B)
            if out is not None:
                return out
        return self._step(self._prep(real_A), self._prep(real_B))

    def _step(self, real_A: torch.Tensor, real_B: torch.Tensor) -> dict[str, torch.Tensor]:
        """The update on prepared inputs (device, memory format): what a step graph captures."""
        with self.autocast():
            fake_B = self.G_fwd(real_A)
        # --- D: real pairs → 1, fake pairs (G detached) → 0
        self.D.requires_grad_(True)
        self.opt_D.zero_grad(set_to_none=True)
        with self.autocast():
            pred_fake = self.D_fwd(torch.cat([real_A, fake_B.detach()], 1)).float()
            pred_real = self.D_fwd(torch.cat([real_A, real_B], 1)).float()
            loss_D_fake = self.bce(pred_fake, torch.zeros_like(pred_fake))
            loss_D_real = self.bce(pred_real, torch.ones_like(pred_real))
            loss_D = 0.5 * (loss_D_fake + loss_D_real)
        loss_D.backward()
        self.opt_D.step()
        # --- G: fool D, stay close to B in L1
        self.D.requires_grad_(False)
        self.opt_G.zero_grad(set_to_none=True)
        with self.autocast():
            pred = self.D_fwd(torch.cat([real_A, fake_B], 1)).float()
            loss_G_GAN = self.bce(pred, torch.ones_like(pred))
            loss_G_L1 = self.l1(fake_B.float(), real_B.float()) * self.lambda_l1
            loss_G = loss_G_GAN + loss_G_L1
        loss_G.backward()
        self.opt_G.step()
        return {"G_GAN": loss_G_GAN.detach(), "G_L1": loss_G_L1.detach(),
                "D_real": loss_D_real.detach(), "D_fake": loss_D_fake.detach()}


class Pix2PixFamily(ModelFamily):
    name = "pix2pix"
    metrics = ("fid", "kid", "segmentation", "paired", "diversity", "complexity")
    spec_type = UNetSpec

    # --- build ------------------------------------------------------------------------
    def spec_from_config(self, cfg: dict) -> UNetSpec:
        from ...config import model_spec_from_config

        return model_spec_from_config(cfg)

    def build(self, spec, init: bool = True, seed: int | None = None) -> UNetGenerator:
        return build_generator(spec, init=init, seed=seed)

    def input_shape(self, generator: UNetGenerator) -> tuple[int, int, int, int]:
        side = 2 ** generator.num_downs
        return (1, generator.spec.input_nc, side, side)

    def counting_shape(self, generator: UNetGenerator, image_size: int | None = None) -> tuple[int, int, int, int]:
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
        return list(range(2, spec.num_downs + 1))       # level 1 holds the RGB output

    def cut_ks(self, spec) -> dict[int, str | None]:
        n = spec.num_downs
        return {k: None for k in range(1, n - 1)}       # at least 2 levels must remain

    def pruning_ops(self):
        from .pruning import UNET_OPS

        return UNET_OPS

    def eval_set(self, cfg: dict, split: str, root):
        from ...evaluate import EvalSet

        return EvalSet.load(cfg, split, root)

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
        return Pix2PixTrainer(generator, discriminator, tcfg, device)

    def train_dataset(self, cfg: dict):
        from ...data.aligned import AlignedDataset
        from ...data.gpu_data import maybe_on_device
        from ...layout import Layout

        d = cfg["data"]
        ds = AlignedDataset(Layout.from_config(cfg).data_root, "train", d["direction"], d["load_size"],
                            d["crop_size"], train=True, flip=not d["no_flip"], seed=cfg["seed"],
                            max_items=d["max_train_items"])
        return maybe_on_device(ds, cfg)  # data.on_device: the same samples, held on the GPU

    def check_dataset(self, cfg: dict):
        from ...data.aligned import AlignedDataset
        from ...layout import Layout

        split, n = cfg["train"]["eval_split"], cfg["train"]["eval_images"]
        root = Layout.from_config(cfg).data_root
        if not split or not n or not (root / split).is_dir():
            return None
        d = cfg["data"]
        return AlignedDataset(root, split, d["direction"], d["load_size"], d["crop_size"], train=False,
                              seed=cfg["seed"], max_items=n)

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


FAMILY = Pix2PixFamily()
