"""Self-describing checkpoints.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so it loads
with ``torch.load(path, weights_only=True)`` (:func:`unetprune.weights.load_weights`)::

    {
      "format": "unetprune-checkpoint", "format_version": 1,
      "family": "<name>",                                           # the model family
      "generator": {"arch": the family's spec dict, "state_dict": {...}},
      "discriminator": {"arch": {...}, "state_dict": {...}}        # optional
      "optimizers": {"G": ..., "D": ...}, "epoch": int,             # trainer state, optional
      "config": {...}, "versions": {...}, "meta": {...}             # provenance
    }

``family`` names the :class:`~unetprune.family.ModelFamily` that rebuilds the
generator from its ``arch``; a checkpoint without it is read as the default family
(:data:`unetprune.family.DEFAULT_FAMILY`).

Writes are atomic: a temporary file in the same folder, fsync, then ``os.replace``.
"""

from __future__ import annotations

import platform
import sys
from pathlib import Path

import torch

from . import __version__
from torch import nn

from .fileio import atomic_torch_save, atomic_write_text, sha256_file  # noqa: F401 (re-exported)
from .family import family_of
from .weights import load_weights

FORMAT = "unetprune-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable or not a unetprune checkpoint (message names the file)."""


def package_versions() -> dict[str, str]:
    import numpy

    return {
        "unetprune": __version__,
        "torch": str(torch.__version__),
        "numpy": str(numpy.__version__),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }


def generator_entry(g: nn.Module) -> dict:
    return {
        "arch": family_of(g).spec_to_dict(g.spec),
        "state_dict": {k: v.detach().cpu().clone() for k, v in g.state_dict().items()},
    }


def make_checkpoint(
    generator: nn.Module, config: dict | None = None, meta: dict | None = None, **extra
) -> dict:
    ckpt = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "family": family_of(generator).name,
        "generator": generator_entry(generator),
        "config": config or {},
        "versions": package_versions(),
        "meta": meta or {},
    }
    ckpt.update(extra)
    return ckpt


def save_generator(
    path: Path | str, generator: nn.Module, config: dict | None = None, meta: dict | None = None, **extra
) -> None:
    atomic_torch_save(make_checkpoint(generator, config, meta, **extra), path)


def load_checkpoint(path: Path | str, map_location: str | torch.device = "cpu") -> dict:
    path = Path(path)
    ckpt = load_weights(
        path,
        "a checkpoint",
        error=CheckpointError,
        map_location=map_location,
        missing="checkpoint {path} does not exist; train or prune a model first "
        "(e.g. `unetprune train --config config/config.yaml --out DIR`)",
        unreadable="cannot read checkpoint {path}: {first}",
    )
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a unetprune checkpoint (no '{FORMAT}' header)")
    if ckpt.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format version {ckpt['format_version']}; this unetprune "
            f"reads up to {FORMAT_VERSION}: upgrade unetprune"
        )
    _check_structure(ckpt, path)
    return ckpt


def _one_line(e: BaseException) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    text = " ".join(lines) or type(e).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _check_structure(ckpt: dict, path: Path) -> None:
    """A loadable file whose content is not a usable checkpoint: one-line CheckpointError naming it."""
    gen = ckpt.get("generator")
    if (
        not isinstance(gen, dict)
        or not isinstance(gen.get("arch"), dict)
        or not isinstance(gen.get("state_dict"), dict)
    ):
        raise CheckpointError(
            f"{path} is a malformed checkpoint: 'generator' must hold an 'arch' mapping and "
            f"a 'state_dict' mapping"
        )
    bad = [
        k for k, v in gen["state_dict"].items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)
    ]
    if bad:
        raise CheckpointError(
            f"{path} is a malformed checkpoint: generator.state_dict entry {bad[0]!r} is not a named tensor"
        )
    fam = family_of(ckpt)  # an unknown family: its own one-line UserFacingError
    try:
        fam.spec_from_dict(gen["arch"])
    except Exception as e:  # unknown family, missing or wrongly typed arch fields
        raise CheckpointError(
            f"{path} is a malformed checkpoint: its generator architecture cannot be read ({_one_line(e)})"
        ) from e


def generator_from_checkpoint(ckpt: dict | Path | str, map_location="cpu") -> nn.Module:
    """Rebuild the generator (any widths) from a checkpoint dict or path, through the
    checkpoint's model family (the default family when it records none)."""
    where = "checkpoint"
    if not isinstance(ckpt, dict):
        where = f"checkpoint {ckpt}"
        ckpt = load_checkpoint(ckpt, map_location)
    fam = family_of(ckpt)
    try:
        entry = ckpt["generator"]
        g = fam.build(fam.spec_from_dict(entry["arch"]), init=False)
        g.load_state_dict(entry["state_dict"])
    except Exception as e:  # weights that do not fit the recorded architecture, a broken arch
        raise CheckpointError(f"{where}: the generator cannot be rebuilt from it ({_one_line(e)})") from e
    return g
