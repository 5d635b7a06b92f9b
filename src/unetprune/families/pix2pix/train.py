"""The pix2pix GAN step (Isola et al.) as a trainer of the generic loop (:func:`unetprune.train.train`).

loss_G = BCE(D(A, G(A)), 1) + lambda_l1 * |G(A) - B|_1,
loss_D = 0.5 * (BCE(D(A, B), 1) + BCE(D(A, G(A)), 0)); Adam(lr, (beta1, beta2)) for both;
D is updated before G on every step, as in the reference.  Speed options: bf16 autocast
(``train.amp``), channels-last (``train.channels_last``), ``torch.compile``
(``train.compile``) and the whole-step CUDA graph (``train.cuda_graph``, :mod:`unetprune.cuda_graph`).
Checkpoints hold the CPU eager optimiser format whichever device wrote them, so any kind of
run resumes any other.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import nn

from ... import cuda_graph
from ...trainer import Trainer, auto_flag, memory_format


class Pix2PixTrainer(Trainer):
    """Holds G, D, optimisers and the speed options; :meth:`train_step` does one update."""

    losses = ("G_GAN", "G_L1", "D_real", "D_fake")

    def __init__(self, G: nn.Module, D: nn.Module, tcfg: dict, device: torch.device):
        self.amp = (tcfg["amp"] == "bf16") or (tcfg["amp"] == "auto" and device.type == "cuda")
        fmt = memory_format(tcfg, device)
        self.channels_last = fmt is not None
        super().__init__(G, D, tcfg, device, memory_format=fmt)
        betas = (tcfg["beta1"], tcfg["beta2"])
        compile_on = auto_flag(tcfg["compile"], device)
        if (
            tcfg["compile"] == "auto"
            and cuda_graph.normalise_setting(tcfg.get("cuda_graph", "auto")) != "off"
        ):
            compile_on = (
                False  # compile: auto yields to the whole-step graph (faster at batch 1; not combined)
            )
        # train.cuda_graph: whole-step capture where possible (unetprune.cuda_graph), else eager
        self.graph_decision = cuda_graph.decide(
            tcfg.get("cuda_graph", "auto"),
            device,
            compile_on=compile_on,
            amp_dtype=torch.bfloat16 if self.amp else None,
        )
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
        self.graph = cuda_graph.StepGraph(
            self._step,
            [self.G, self.D],
            [self.opt_G, self.opt_D],
            self.device,
            prepare=self._prep,
            mode=mode,
            status=self.step_mode,
        )
        return self.graph

    def autocast(self):
        if self.amp:  # no cast cache inside a CUDA graph: the casts are replayed with the step
            return torch.autocast(
                device_type=self.device.type, dtype=torch.bfloat16, cache_enabled=not self.graph_decision.use
            )
        return nullcontext()

    # --- the state protocol (unetprune.trainer.Trainer) -------------------------------------
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"G": self.opt_G, "D": self.opt_D}

    def optimizer_state(self, opt: torch.optim.Optimizer) -> dict:
        """The CPU eager trainer's format whatever the device: any kind of run resumes any other."""
        sd = opt.state_dict()
        return cuda_graph.eager_optimizer_state(sd) if self.device.type == "cuda" else sd

    def after_load(self, ckpt: dict) -> None:
        for opt in (self.opt_G, self.opt_D):  # loaded groups replaced the flags (and lr tensors)
            if self.graph_decision.use:
                cuda_graph.to_graph_optimizer(opt, self.device)
            else:
                cuda_graph.to_eager_optimizer(opt, self.device)
        if self.graph is not None:
            self.graph.reset()  # the optimiser states are new tensors: capture again

    # --- the step -----------------------------------------------------------------------------
    def step(self, batch: dict) -> dict[str, torch.Tensor]:
        """One update on a batch of aligned pairs ``{"A": ..., "B": ...}``."""
        return self.train_step(batch["A"], batch["B"])

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
            kd = self.distill_terms((real_A,), fake_B)  # {} unless distilling (unetprune.trainer)
            if kd:
                loss_G = loss_G + kd["KD"]
        loss_G.backward()
        self.opt_G.step()
        return {
            "G_GAN": loss_G_GAN.detach(),
            "G_L1": loss_G_L1.detach(),
            "D_real": loss_D_real.detach(),
            "D_fake": loss_D_fake.detach(),
            **{k: v.detach() for k, v in kd.items()},
        }
