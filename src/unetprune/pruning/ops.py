"""What the pruning engine needs from a model family, on the pruning side of the seam.

The model family (:mod:`unetprune.family`) describes a generator's structure:
its channel groups, their widths and the filters that score them, its inner levels.  The
operations that change a generator — dependency-aware channel removal, cutting the
innermost levels, the exact cost of a set of widths — are one :class:`PruningOps` per family,
handed out by the family's ``pruning_ops()`` and imported only when asked for.  So networks
never import pruning code, and a job that only trains or evaluates does not depend on it
(see :mod:`unetprune.provenance`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable, Mapping, Sequence

from torch import nn

from ..family import family_of
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


def pruning_ops(obj) -> PruningOps:
    """The pruning operations of ``obj``'s model family (a generator, spec or checkpoint);
    :class:`~unetprune.pruning.surgery.PruningError` for a family without them."""
    family = family_of(obj)
    ops = family.pruning_ops()
    if ops is None:
        raise PruningError(f"model family {family.name!r} has no pruning support")
    return ops
