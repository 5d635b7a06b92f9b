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
    "distill": {"adapters": {...}, "optimizer": {...}}         # with distillation only
    ...extra_state()

Distillation (``finetune.distill``, :class:`Distillation`): :meth:`Trainer.enable_distillation`
attaches a frozen teacher; a family's step adds ``self.distill_terms(inputs, output)["KD"]`` to
its generator loss (an empty dict without distillation) and returns the terms with its losses.
"""

from __future__ import annotations

import torch
from torch import nn

from . import cuda_graph


#: the loss names distillation adds to a trainer's ``losses``
DISTILL_LOSSES = ("KD", "KD_out", "KD_feat")


class Distillation:
    """Knowledge distillation from a frozen teacher (the unpruned original) into a pruned student.

    ``KD = weight * (KD_out + KD_feat)``: ``KD_out`` is the L1 distance between the two
    generators' outputs on the same inputs; ``KD_feat`` the mean, over ``features`` (prunable
    groups of the family: the output of the group's normalisation, else of its conv, as
    ``ModelFamily.layer_filters`` names them), of the L1 distance between the teacher's feature
    and the student's mapped by a learned 1x1 conv (an *adapter*; none where the widths agree).
    Groups the student no longer has (a cut removed them) are skipped and listed in ``skipped``.

    The teacher never learns: its parameters do not require gradients and it runs under
    ``torch.no_grad``.  With ``train_bn`` evaluation its BatchNorm layers use the batch's
    statistics without touching their running buffers and its dropout is off; with
    ``eval`` it runs in eval mode.  The adapters have their own Adam (the generator's lr and
    betas), stepped after each generator update; they live only in the training checkpoint, never
    in the exported generator."""

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        family,
        weight: float,
        features,
        tcfg: dict,
        device: torch.device,
        mode: str = "eval",
    ):
        self.weight = float(weight)
        self.teacher = teacher.to(device)
        self.teacher.requires_grad_(False)
        self.mode = mode
        self.features: list[str] = []
        self.skipped: list[str] = []
        student_groups = set(family.groups(student))
        adapters = {}
        self._hooks = []
        self._student_feats: dict[str, torch.Tensor] = {}
        self._teacher_feats: dict[str, torch.Tensor] = {}
        for name in features:
            if name not in student_groups:
                self.skipped.append(name)
                continue
            self.features.append(name)
            ws, wt = family.layer_width(student, name), family.layer_width(teacher, name)
            if ws != wt:
                adapters[name] = nn.Conv2d(ws, wt, 1, bias=False)
            self._hook(family, student, name, self._student_feats)
            self._hook(family, self.teacher, name, self._teacher_feats)
        self.adapters = nn.ModuleDict(adapters).to(device)
        params = list(self.adapters.parameters())
        self.opt = (
            torch.optim.Adam(params, lr=tcfg["lr"], betas=(tcfg["beta1"], tcfg["beta2"])) if params else None
        )
        self.set_teacher_mode()

    def _hook(self, family, model: nn.Module, name: str, store: dict) -> None:
        conv, norm = family.layer_filters(model, name)
        module = norm if norm is not None else conv

        def grab(_mod, _args, out, _name=name):
            store[_name] = out

        self._hooks.append(module.register_forward_hook(grab))

    def set_teacher_mode(self) -> None:
        if self.mode == "train_bn":
            self.teacher.train()
            for m in self.teacher.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.track_running_stats = False  # batch statistics; running buffers untouched
                elif isinstance(m, nn.modules.dropout._DropoutNd):
                    m.eval()
        else:
            self.teacher.eval()

    def terms(self, inputs: tuple, output: torch.Tensor) -> dict[str, torch.Tensor]:
        """The distillation terms of the student's ``output`` on ``inputs`` (its features were
        captured by that forward pass): ``{"KD", "KD_out", "KD_feat"}``, ``KD`` with gradients."""
        import torch.nn.functional as F

        with torch.no_grad():
            target = self.teacher(*inputs)
        kd_out = F.l1_loss(output.float(), target.float())
        if self.features:
            per = []
            for name in self.features:
                s = self._student_feats[name]
                if name in self.adapters:
                    s = self.adapters[name](s.float())
                per.append(F.l1_loss(s.float(), self._teacher_feats[name].float()))
            kd_feat = torch.stack(per).mean()
        else:
            kd_feat = torch.zeros((), device=output.device)
        return {"KD": self.weight * (kd_out + kd_feat), "KD_out": kd_out, "KD_feat": kd_feat}

    def zero_grad(self) -> None:
        if self.opt is not None:
            self.opt.zero_grad(set_to_none=True)

    def step(self) -> None:
        if self.opt is not None:
            self.opt.step()

    def state(self) -> dict:
        return {
            "adapters": {k: v.detach().cpu() for k, v in self.adapters.state_dict().items()},
            "optimizer": self.opt.state_dict() if self.opt is not None else None,
        }

    def load_state(self, entry: dict) -> None:
        self.adapters.load_state_dict(entry["adapters"])
        if self.opt is not None:
            self.opt.load_state_dict(entry["optimizer"])

    def record(self) -> dict:
        """What train.json records about the distillation."""
        return {
            "weight": self.weight,
            "features": list(self.features),
            "skipped_features": list(self.skipped),
            "adapters": {
                k: [m.in_channels, m.out_channels] for k, m in self.adapters.items()
            },  # student -> teacher
            "teacher_mode": self.mode,
        }


def auto_flag(value, device: torch.device) -> bool:
    """A ``true | false | auto`` speed option of ``train``: ``auto`` is on for CUDA only."""
    return device.type == "cuda" if value == "auto" else bool(value)


def memory_format(tcfg: dict, device: torch.device) -> torch.memory_format | None:
    """``torch.channels_last`` where ``train.channels_last`` asks for it on ``device``, else ``None``."""
    return torch.channels_last if auto_flag(tcfg.get("channels_last", "auto"), device) else None


class Trainer:
    """``G`` and the optional ``D`` on ``device`` (in ``memory_format`` when given), the train
    config ``cfg`` (``train.*``), and the state/resume protocol.  On the CPU,
    ``train.flush_denormal`` flushes denormal floats to zero (a process-wide setting: they can
    slow x86 CPUs down several-fold; only values below ~1e-38 change)."""

    losses: tuple[str, ...] = ()
    resume_keys: tuple[str, ...] = ()
    step_mode: cuda_graph.StepMode | None = None
    distill: Distillation | None = None

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

    # --- distillation ----------------------------------------------------------------------------
    def enable_distillation(self, distill: Distillation) -> None:
        """Distil from ``distill``'s teacher: its terms join :attr:`losses` and the checkpoint."""
        self.distill = distill
        self.losses = tuple(self.losses) + DISTILL_LOSSES

    def distill_terms(self, inputs: tuple, output: torch.Tensor) -> dict[str, torch.Tensor]:
        """The distillation terms of the generator's ``output`` on ``inputs`` (:meth:`Distillation.terms`);
        ``{}`` without distillation, so a step adds ``KD`` to its generator loss only when present."""
        return {} if self.distill is None else self.distill.terms(inputs, output)

    # --- the protocol ---------------------------------------------------------------------------
    def set_lr(self, lr: float) -> None:
        """Every optimiser's learning rate (a device-tensor lr is filled in place)."""
        for opt in self.optimizers().values():
            cuda_graph.set_lr(opt, lr)
        if self.distill is not None and self.distill.opt is not None:
            cuda_graph.set_lr(self.distill.opt, lr)

    def set_train_mode(self) -> None:
        self.G.train()
        if self.D is not None:
            self.D.train()
        if self.distill is not None:
            self.distill.adapters.train()
            self.distill.set_teacher_mode()

    def state(self) -> dict:
        """The checkpoint entries besides the generator (see the module doc)."""
        out: dict = {}
        if self.D is not None:
            out["discriminator"] = {
                "arch": self.D.config,
                "state_dict": {k: v.detach().cpu() for k, v in self.D.state_dict().items()},
            }
        out["optimizers"] = {name: self.optimizer_state(opt) for name, opt in self.optimizers().items()}
        if self.distill is not None:
            out["distill"] = self.distill.state()
        out.update(self.extra_state())
        return out

    def load_state(self, ckpt: dict) -> None:
        """Continue from a checkpoint written with :meth:`state` (the generator included)."""
        self.G.load_state_dict(ckpt["generator"]["state_dict"])
        if self.D is not None:
            self.D.load_state_dict(ckpt["discriminator"]["state_dict"])
        for name, opt in self.optimizers().items():
            opt.load_state_dict(ckpt["optimizers"][name])
        if self.distill is not None:
            self.distill.load_state(ckpt["distill"])
        self.after_load(ckpt)
