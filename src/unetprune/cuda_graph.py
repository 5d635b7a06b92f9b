"""Whole-step CUDA graphs for the trainers (``train.cuda_graph``).

At the paper's batch 1 a GPU is launch-bound: one eager pix2pix step of ``unet_256`` is
hundreds of small kernels whose launches cost more than their arithmetic.  Captured once in
a CUDA graph — G forward, D forward/backward, D's Adam step, G's backward and Adam step —
the whole step is replayed with a single launch.  This module holds the parts that do not
depend on a model family:

* :func:`decide` — whether a run captures its steps, and if not the one-line reason
  (``train.cuda_graph``: ``auto`` captures where possible, ``on`` refuses to run where it
  cannot, ``off`` never captures);
* :class:`StepGraph` — a training step over **static input buffers**: the first call
  allocates the buffers (the batch's shape, dtype, device and memory format), runs a few
  warm-up steps on a side stream, **restores** every parameter, buffer, optimiser state and
  the RNG to what they were before the warm-up (so the warm-up leaves no trace: the run is
  the eager run's), then captures the step; every later call copies the batch into the
  buffers and replays.  A batch of another shape (the last, partial batch of an epoch) runs
  eagerly on the same models and optimisers, and the event is recorded once;
* :func:`graph_adam` and the state-dict converters :func:`eager_optimizer_state` /
  :func:`to_graph_optimizer` — Adam with ``capturable=True`` (and ``fused`` where it
  exists), its learning rate a **device tensor** so a new learning rate is a ``fill_``
  and never a recapture; checkpoints hold the eager optimiser's exact state-dict format
  (float ``lr``, ``capturable`` off, ``step`` on the CPU), so a run captured on a GPU
  resumes eagerly on a CPU and the other way round.

Correctness under replay:

* **dropout**: the default CUDA generator is registered with the graph; each replay reads
  the generator's *current* seed and offset and advances the offset by the whole step's
  increment, exactly as the eager kernels would, so ``torch.manual_seed`` per epoch (the
  trainer's) and the dropout masks are the eager run's;
* **BatchNorm** train-mode statistics are in-place updates of the module buffers captured
  with the step, so they advance on every replay (``momentum=None``, which reads the step
  count on the host, would not capture; no model here uses it);
* **autocast** runs with ``cache_enabled=False`` inside a graph (the cast weights are
  recomputed on every replay, as the CUDA-graph documentation requires).

``mode="static"`` runs the same static-buffer step *eagerly* (warm-up, restore and buffer
copies included) on any device: on a CPU it must give bit-identical losses to the plain
trainer, which checks the buffer and restore logic without a GPU (tests/test_cuda_graph.py).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from .errors import UserFacingError

SETTINGS = ("auto", "on", "off")
WARMUP_STEPS = 3


def normalise_setting(value) -> str:
    """``train.cuda_graph`` as ``auto``/``on``/``off`` (YAML reads ``on``/``off`` as booleans)."""
    if value is True:
        return "on"
    if value is False or value is None:
        return "off"
    v = str(value).lower()
    if v in ("true", "yes"):
        return "on"
    if v in ("false", "no"):
        return "off"
    if v not in SETTINGS:
        raise UserFacingError(f"config error at 'train.cuda_graph': {value!r} is not one of auto, on, off")
    return v


@dataclass
class GraphDecision:
    """Whether a run captures its training steps; ``reason`` says why not (one line)."""

    use: bool
    setting: str
    reason: str | None = None


def decide(
    setting,
    device: torch.device,
    *,
    compile_on: bool = False,
    amp_dtype: torch.dtype | None = None,
    unsupported: str | None = None,
) -> GraphDecision:
    """Whether to capture whole training steps (see the module doc).

    ``unsupported`` is a family's reason why its step cannot be captured (e.g. Wav2Lip's).
    ``on`` raises :class:`UserFacingError` naming the reason where capture is impossible.
    """
    s = normalise_setting(setting)
    if s == "off":
        return GraphDecision(False, s, "train.cuda_graph is off")
    reason = None
    if torch.device(device).type != "cuda":
        reason = "no CUDA"
    elif unsupported:
        reason = unsupported
    elif compile_on:
        reason = "train.compile is on (torch.compile's own graphs and a whole-step capture are not combined)"
    elif amp_dtype is not None and amp_dtype != torch.bfloat16:
        reason = (
            f"autocast {amp_dtype} needs a GradScaler, whose inf check syncs with the host "
            f"(bf16 or fp32 capture)"
        )
    if reason is None:
        return GraphDecision(True, s, None)
    if s == "on":
        raise UserFacingError(
            f"config error at 'train.cuda_graph': 'on', but the training step cannot be "
            f"captured: {reason}; use 'auto' (eager where capture is impossible) or 'off'"
        )
    return GraphDecision(False, s, reason)


# ------------------------------------------------------------------------------------------
# Adam for graphs, and checkpoints in the eager format
# ------------------------------------------------------------------------------------------


def _fused_available(device: torch.device) -> bool:
    return torch.device(device).type == "cuda"


def graph_adam(
    params: Iterable[nn.Parameter], lr: float, betas: tuple[float, float], device: torch.device
) -> torch.optim.Adam:
    """Adam that can be captured: ``capturable`` (step counts on the device), ``fused`` on
    CUDA (one kernel for all parameters), the learning rate a float32 device tensor."""
    lr_t = torch.tensor(float(lr), dtype=torch.float32, device=device)
    kw = {"fused": True} if _fused_available(device) else {"foreach": True}
    return torch.optim.Adam(params, lr=lr_t, betas=betas, capturable=True, **kw)


def eager_adam(
    params: Iterable[nn.Parameter], lr: float, betas: tuple[float, float], device: torch.device
) -> torch.optim.Adam:
    """The eager trainer's Adam: ``fused`` on CUDA (one kernel for all parameters: the fastest
    eager step, and the same update kernel as :func:`graph_adam`, so an eager and a graph run
    agree to the last bit where the rest is deterministic), torch's default elsewhere (on the
    CPU nothing changes)."""
    return torch.optim.Adam(
        params, lr=lr, betas=betas, **({"fused": True} if _fused_available(device) else {})
    )


def to_eager_optimizer(opt: torch.optim.Optimizer, device: torch.device) -> None:
    """After ``load_state_dict``: the flags :func:`eager_adam` gives on ``device`` (a
    checkpoint holds the eager format of the CPU, whichever device wrote it)."""
    if _fused_available(device):
        for group in opt.param_groups:
            group["fused"], group["foreach"] = True, None
            for p in group["params"]:  # fused Adam keeps its step counts on the parameters' device
                st = opt.state.get(p)
                if st and isinstance(st.get("step"), torch.Tensor):
                    st["step"] = st["step"].to(device=p.device, dtype=torch.float32)


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's learning rate: in place for a tensor lr (no recapture), else as a float."""
    for group in opt.param_groups:
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(float(lr))
        else:
            group["lr"] = lr


def _eager_group_flags(betas) -> dict:
    """The hyper-parameter flags an eager ``torch.optim.Adam(params, lr=float, betas)`` has
    (this torch version's defaults), read from a throwaway instance."""
    probe = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=1.0, betas=betas)
    g = probe.param_groups[0]
    return {k: v for k, v in g.items() if k in ("foreach", "capturable", "fused", "differentiable")}


def eager_optimizer_state(state_dict: dict) -> dict:
    """An Adam state dict (any flavour) in the eager trainer's format: float ``lr``, the eager
    flags (``capturable`` off, ``fused``/``foreach`` unset), every ``step`` a CPU float32
    scalar, the moments where they are (the parameters' device, as the eager optimiser keeps
    them).  Values are copied, never shared with the live optimiser."""
    sd = {"state": {}, "param_groups": []}
    for k, st in state_dict["state"].items():
        sd["state"][k] = {
            n: (v.detach().clone() if isinstance(v, torch.Tensor) else copy.deepcopy(v))
            for n, v in st.items()
        }
        if "step" in st and isinstance(st["step"], torch.Tensor):
            sd["state"][k]["step"] = st["step"].detach().to("cpu", torch.float32, copy=True)
    for g in state_dict["param_groups"]:
        g2 = {k: (copy.deepcopy(v) if not isinstance(v, torch.Tensor) else v) for k, v in g.items()}
        if isinstance(g2.get("lr"), torch.Tensor):
            g2["lr"] = float(g2["lr"].item())
        g2.update(_eager_group_flags(g2.get("betas", (0.9, 0.999))))
        sd["param_groups"].append(g2)
    return sd


def to_graph_optimizer(opt: torch.optim.Optimizer, device: torch.device) -> None:
    """After ``load_state_dict`` of an eager-format state: back to the capturable flavour
    (the loaded groups replaced the flags, the lr tensor and the step devices)."""
    for group in opt.param_groups:
        lr = group["lr"]
        group["lr"] = (
            lr.to(device=device, dtype=torch.float32)
            if isinstance(lr, torch.Tensor)
            else torch.tensor(float(lr), dtype=torch.float32, device=device)
        )
        group["capturable"] = True
        if _fused_available(device):
            group["fused"], group["foreach"] = True, None
        else:
            group["fused"], group["foreach"] = None, True
        for p in group["params"]:
            st = opt.state.get(p)
            if st and isinstance(st.get("step"), torch.Tensor):
                st["step"] = st["step"].to(device=p.device, dtype=torch.float32)


# ------------------------------------------------------------------------------------------
# the static-buffer step and its capture
# ------------------------------------------------------------------------------------------


@dataclass
class StepMode:
    """How a trainer's steps run, for the log (``train.json``'s ``step_mode``) and one line
    of output: ``mode`` is ``graph`` (captured), ``static`` (the static-buffer step run
    eagerly: tests) or ``eager``; ``reason`` says why a run is eager; ``events`` are the
    one-line notes of steps that ran eagerly in a graph run (a partial batch)."""

    mode: str
    setting: str = "auto"
    reason: str | None = None
    captures: int = 0
    replays: int = 0
    eager_steps: int = 0
    events: list[str] = field(default_factory=list)
    _notify: Callable[[str], None] | None = field(default=None, repr=False)

    def line(self) -> str:
        if self.mode == "graph":
            return (
                "cuda_graph: whole-step CUDA graph (G and D forward/backward and both Adam steps "
                "captured, replayed every step)"
            )
        if self.mode == "static":
            return "cuda_graph: static-buffer step run eagerly (test mode)"
        return f"cuda_graph: eager steps ({self.reason})"

    def report_to(self, notify: Callable[[str], None] | None) -> None:
        """Print :meth:`line` now and every later event through ``notify`` (e.g. ``tqdm.write``)."""
        self._notify = notify
        if notify is not None:
            notify(self.line())

    def event(self, msg: str) -> None:
        if msg not in self.events:
            self.events.append(msg)
            if self._notify is not None:
                self._notify(f"cuda_graph: {msg}")

    def as_dict(self) -> dict:
        return {
            "mode": self.mode,
            "setting": self.setting,
            "reason": self.reason,
            "captures": self.captures,
            "replays": self.replays,
            "eager_steps": self.eager_steps,
            "events": list(self.events),
        }


def _snapshot(modules: Sequence[nn.Module], optimizers: Sequence[torch.optim.Optimizer], device) -> dict:
    """Everything a training step changes: module parameters and buffers (by identity), the
    optimisers' per-parameter state (absent = fresh), the CPU and CUDA RNG states."""
    tensors = []
    for m in modules:
        for t in list(m.parameters()) + list(m.buffers()):
            tensors.append((t, t.detach().clone()))
    opts = []
    for opt in optimizers:
        st = {}
        for group in opt.param_groups:
            for p in group["params"]:
                s = opt.state.get(p)
                st[p] = (
                    None
                    if not s
                    else {k: (v.detach().clone() if isinstance(v, torch.Tensor) else v) for k, v in s.items()}
                )
        opts.append(st)
    rng = {"cpu": torch.random.get_rng_state()}
    if torch.device(device).type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(device)
    return {"tensors": tensors, "opts": opts, "rng": rng}


def _restore(snap: dict, optimizers: Sequence[torch.optim.Optimizer], device) -> None:
    """Undo the warm-up in place (the tensors keep their storage: a later capture uses them).

    An optimiser state created by the warm-up (a fresh Adam) is zeroed: step 0 and zero
    moments are exactly what Adam's first step would have created."""
    with torch.no_grad():
        for t, saved in snap["tensors"]:
            t.copy_(saved)
        for opt, st in zip(optimizers, snap["opts"]):
            if not isinstance(opt, torch.optim.Adam):
                raise TypeError(f"whole-step capture restores Adam states only, not {type(opt).__name__}")
            for p, saved in st.items():
                cur = opt.state.get(p)
                if not cur:
                    continue
                for k, v in cur.items():
                    if not isinstance(v, torch.Tensor):
                        continue
                    if saved is None:
                        v.zero_()
                    else:
                        v.copy_(saved[k])
    torch.random.set_rng_state(snap["rng"]["cpu"])
    if "cuda" in snap["rng"]:
        torch.cuda.set_rng_state(snap["rng"]["cuda"], device)


class StepGraph:
    """A training step ``fn(*inputs) -> {name: scalar loss}`` over static input buffers,
    captured in a CUDA graph (``mode="graph"``) or run eagerly on the buffers
    (``mode="static"``).  See the module doc.

    ``prepare(x)`` turns a raw batch tensor into the step's input (device, memory format);
    it fixes the buffers' layout on the first call.  ``modules``/``optimizers`` are what the
    step changes (restored after the warm-up).  ``__call__`` returns the losses, or ``None``
    when the batch does not fit the captured buffers (the caller then runs the step eagerly
    and :attr:`status` records why, once).
    """

    def __init__(
        self,
        fn: Callable[..., dict[str, torch.Tensor]],
        modules: Sequence[nn.Module],
        optimizers: Sequence[torch.optim.Optimizer],
        device: torch.device,
        prepare: Callable[[torch.Tensor], torch.Tensor] = lambda x: x,
        mode: str = "graph",
        warmup: int = WARMUP_STEPS,
        status: StepMode | None = None,
    ):
        if mode not in ("graph", "static"):
            raise ValueError(f"mode must be 'graph' or 'static', got {mode!r}")
        if mode == "graph" and torch.device(device).type != "cuda":
            raise ValueError("a CUDA graph needs a CUDA device")
        self.fn, self.modules, self.optimizers = fn, list(modules), list(optimizers)
        self.device, self.prepare, self.mode, self.warmup = torch.device(device), prepare, mode, warmup
        self.status = status or StepMode(mode)
        self.reset()

    def reset(self) -> None:
        """Forget the capture (after a checkpoint was loaded into the optimisers: their state
        tensors were replaced); the next call captures again."""
        self.static_in: list[torch.Tensor] | None = None
        self.names: list[str] | None = None
        self.graph = None
        self.static_out: torch.Tensor | None = None
        self._keep: list = []
        self._train_modes: list[bool] | None = None

    def _fits(self, inputs: Sequence[torch.Tensor]) -> bool:
        return len(inputs) == len(self.static_in) and all(
            x.shape == s.shape and x.dtype == s.dtype for x, s in zip(inputs, self.static_in)
        )

    def _packed_step(self) -> torch.Tensor:
        out = self.fn(*self.static_in)
        if self.names is None:
            self.names = list(out)
        return torch.stack([out[k].detach().float() for k in self.names])

    def _setup(self, inputs: Sequence[torch.Tensor]) -> None:
        prepared = [self.prepare(x) for x in inputs]
        self.static_in = [torch.empty_like(p, memory_format=torch.preserve_format).copy_(p) for p in prepared]
        self._train_modes = [m.training for m in self.modules]
        snap = _snapshot(self.modules, self.optimizers, self.device)
        if self.mode == "graph":
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                for _ in range(self.warmup):
                    self._packed_step()
            torch.cuda.current_stream(self.device).wait_stream(side)
        else:
            for _ in range(self.warmup):
                self._packed_step()
        _restore(snap, self.optimizers, self.device)
        del snap
        if self.mode == "graph":
            for opt in self.optimizers:
                opt.zero_grad(set_to_none=True)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
                self.static_out = self._packed_step()
            # keep every tensor the graph writes (the gradients allocated during capture)
            # alive, whatever later eager steps do to .grad
            self._keep = [p.grad for opt in self.optimizers for g in opt.param_groups for p in g["params"]]
            self.status.captures += 1

    def __call__(self, *inputs: torch.Tensor) -> dict[str, torch.Tensor] | None:
        if self.static_in is not None and [m.training for m in self.modules] != self._train_modes:
            self.reset()  # captured in another train/eval mode: capture again
        if self.static_in is None:
            self._setup(inputs)
        elif not self._fits(inputs):
            shapes = " and ".join(str(list(x.shape)) for x in inputs)
            want = " and ".join(str(list(s.shape)) for s in self.static_in)
            self.status.event(
                f"a batch of {shapes} (not the captured {want}: a last partial batch) runs eagerly"
            )
            self.status.eager_steps += 1
            return None
        else:
            for s, x in zip(self.static_in, inputs):
                s.copy_(x, non_blocking=True)
        if self.mode == "graph":
            self.graph.replay()
            self.status.replays += 1
            packed = self.static_out.clone()
        else:
            packed = self._packed_step().clone()
        return {k: packed[i] for i, k in enumerate(self.names)}


__all__ = [
    "SETTINGS",
    "GraphDecision",
    "StepGraph",
    "StepMode",
    "decide",
    "eager_optimizer_state",
    "eager_adam",
    "graph_adam",
    "normalise_setting",
    "set_lr",
    "to_eager_optimizer",
    "to_graph_optimizer",
]
