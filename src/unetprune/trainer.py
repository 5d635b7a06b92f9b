"""The trainer protocol of :func:`unetprune.train.train`, and the base class that holds its
state/resume half.

A family's trainer (``ModelFamily.trainer(G, D, tcfg, device)``) provides ``G``, ``losses``
(the names :meth:`Trainer.step` returns), ``step(batch) -> {name: detached loss tensor}``,
:meth:`~Trainer.set_lr`, :meth:`~Trainer.set_train_mode`, :meth:`~Trainer.state` and
:meth:`~Trainer.load_state`; optionally ``resume_keys`` (further ``train`` keys that must
match to resume), ``step_mode`` (:class:`unetprune.cuda_graph.StepMode`, for the log) and
``end_epoch(epoch, cfg) -> dict`` (run after every epoch; its values join the epoch's log).

:class:`Trainer` implements the state half once.  A subclass names its optimisers
(:meth:`~Trainer.optimizers`) and, where it has them, extra checkpoint entries
(:meth:`~Trainer.extra_state`) and what to redo after loading (:meth:`~Trainer.after_load`).
The checkpoint entries it writes beside the generator are::

    "discriminator": {"arch": D.config, "state_dict": {...}}   # when the trainer has a D
    "optimizers": {name: optimiser state dict, ...}            # in optimizers() order
    ...extra_state()
"""

from __future__ import annotations

import torch
from torch import nn

from . import cuda_graph


class Trainer:
    """``G`` and the optional ``D`` on ``device`` (in ``memory_format`` when given), the train
    config ``cfg`` (``train.*``), and the state/resume protocol.  On the CPU,
    ``train.flush_denormal`` flushes denormal floats to zero (a process-wide setting: they can
    slow x86 CPUs down several-fold; only values below ~1e-38 change)."""

    losses: tuple[str, ...] = ()
    resume_keys: tuple[str, ...] = ()
    step_mode: cuda_graph.StepMode | None = None

    def __init__(
        self,
        G: nn.Module,
        D: nn.Module | None,
        tcfg: dict,
        device: torch.device,
        memory_format: torch.memory_format | None = None,
    ):
        self.device, self.cfg = device, tcfg
        if device.type == "cpu" and tcfg["flush_denormal"]:
            torch.set_flush_denormal(True)
        fmt = {} if memory_format is None else {"memory_format": memory_format}
        self.G = G.to(device, **fmt)
        self.D = D.to(device, **fmt) if D is not None else None

    # --- what a subclass states -------------------------------------------------------------
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The optimisers by their checkpoint name (``optimizers.<name>``)."""
        raise NotImplementedError

    def step(self, batch: dict) -> dict[str, torch.Tensor]:
        """One update on ``batch``; the detached losses named in ``losses``."""
        raise NotImplementedError

    def optimizer_state(self, opt: torch.optim.Optimizer) -> dict:
        """``opt``'s state as the checkpoint stores it (default: its ``state_dict()``)."""
        return opt.state_dict()

    def extra_state(self) -> dict:
        """Further checkpoint entries of this trainer (default: none)."""
        return {}

    def after_load(self, ckpt: dict) -> None:
        """Run by :meth:`load_state` once the weights and optimiser states are in (default: nothing)."""

    # --- the protocol ---------------------------------------------------------------------------
    def set_lr(self, lr: float) -> None:
        """Every optimiser's learning rate (a device-tensor lr is filled in place)."""
        for opt in self.optimizers().values():
            cuda_graph.set_lr(opt, lr)

    def set_train_mode(self) -> None:
        self.G.train()
        if self.D is not None:
            self.D.train()

    def state(self) -> dict:
        """The checkpoint entries besides the generator (see the module doc)."""
        out: dict = {}
        if self.D is not None:
            out["discriminator"] = {
                "arch": self.D.config,
                "state_dict": {k: v.detach().cpu() for k, v in self.D.state_dict().items()},
            }
        out["optimizers"] = {name: self.optimizer_state(opt) for name, opt in self.optimizers().items()}
        out.update(self.extra_state())
        return out

    def load_state(self, ckpt: dict) -> None:
        """Continue from a checkpoint written with :meth:`state` (the generator included)."""
        self.G.load_state_dict(ckpt["generator"]["state_dict"])
        if self.D is not None:
            self.D.load_state_dict(ckpt["discriminator"]["state_dict"])
        for name, opt in self.optimizers().items():
            opt.load_state_dict(ckpt["optimizers"][name])
        self.after_load(ckpt)
