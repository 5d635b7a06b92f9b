"""What the pruning engine needs from a model family, on the pruning side of the seam.

The model family (:mod:`unetprune.models.family`) describes a generator's structure:
its channel groups, their widths and the filters that score them, its inner levels.  The
operations that change a generator — dependency-aware channel removal, cutting the
innermost levels, the exact cost of a set of widths — live here, one :class:`PruningOps`
per family, registered under the family's name.  So models never import pruning code,
and a job that only trains or evaluates does not depend on it (see
:mod:`unetprune.provenance`).  The built-in ops (:mod:`.unet_ops`, :mod:`.wav2lip_ops`)
are found by :func:`pruning_ops` without registration.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable, Mapping, Sequence

from torch import nn

from ..models.family import family_of
from .surgery import PruningError


class PruningOps(ABC):
    """The operations that prune a generator of one model family."""

    family: str  # the model family's name

    @abstractmethod
    def check_layer(self, generator: nn.Module, layer: str) -> None:
        """Raise ``PruningError`` (naming the prunable layers) unless ``layer`` is one."""

    @abstractmethod
    def prune_channels(self, generator: nn.Module, keep: Mapping[str, Sequence[int]]) -> nn.Module:
        """A new generator keeping the filters ``keep[layer]`` (dependencies followed)."""

    @abstractmethod
    def layers_of_levels(self, generator: nn.Module, levels) -> tuple[list[int], list[str]]:
        """Validated levels (sorted) and their prunable layers; ``levels=None`` = default."""

    @abstractmethod
    def cut(self, generator: nn.Module, k: int) -> tuple[nn.Module, dict]:
        """Remove the ``k`` innermost levels: the new generator and what was removed."""

    @abstractmethod
    def width_cost(self, generator: nn.Module, input_shape) -> Callable[[Mapping[str, int]], dict[str, int]]:
        """``cost({layer: width})`` → exact ``params``/``macs_physical``/``macs_output`` of
        ``generator``'s architecture with those widths (absent layers keep theirs)."""


_OPS: dict[str, PruningOps] = {}


def register_pruning_ops(ops: PruningOps) -> PruningOps:
    _OPS[ops.family] = ops
    return ops


def unregister_pruning_ops(family: str) -> None:
    _OPS.pop(family, None)


def pruning_ops(obj) -> PruningOps:
    """The pruning operations of ``obj``'s model family (a generator, spec or checkpoint)."""
    name = family_of(obj).name
    if name not in _OPS:
        from . import unet_ops, wav2lip_ops  # the built-in ops (pix2pix, wav2lip)

        for ops in (unet_ops.UNET_OPS, wav2lip_ops.WAV2LIP_OPS):
            _OPS.setdefault(ops.family, ops)
    if name not in _OPS:
        raise PruningError(f"model family {name!r} has no pruning support "
                           f"(families with pruning: {', '.join(sorted(_OPS))})")
    return _OPS[name]
