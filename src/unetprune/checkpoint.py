"""Self-describing checkpoints.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so it loads
with ``torch.load(path, weights_only=True)``::

    {
      "format": "unetprune-checkpoint", "format_version": 1,
      "generator": {"arch": UNetSpec.to_dict(), "state_dict": {...}},
      "discriminator": {"arch": {...}, "state_dict": {...}}        # optional
      "optimizers": {"G": ..., "D": ...}, "epoch": int,             # trainer state, optional
      "config": {...}, "versions": {...}, "meta": {...}             # provenance
    }

Writes are atomic: a temporary file in the same folder, fsync, then ``os.replace``.
"""

from __future__ import annotations

import hashlib
import os
import platform
import sys
import tempfile
from pathlib import Path

import torch

from . import __version__
from .models.unet import UNetGenerator, UNetSpec, build_generator

FORMAT = "unetprune-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable or not a unetprune checkpoint (message names the file)."""


def package_versions() -> dict[str, str]:
    import numpy

    return {"unetprune": __version__, "torch": str(torch.__version__), "numpy": str(numpy.__version__),
            "python": sys.version.split()[0], "platform": platform.platform()}


def sha256_file(path: Path | str, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes (datasets, archives, checkpoints, extractor weights)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def atomic_torch_save(obj, path: Path | str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path | str, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def generator_entry(g: UNetGenerator) -> dict:
    return {"arch": g.spec.to_dict(),
            "state_dict": {k: v.detach().cpu().clone() for k, v in g.state_dict().items()}}


def make_checkpoint(generator: UNetGenerator, config: dict | None = None, meta: dict | None = None,
                    **extra) -> dict:
    ckpt = {"format": FORMAT, "format_version": FORMAT_VERSION,
            "generator": generator_entry(generator),
            "config": config or {}, "versions": package_versions(), "meta": meta or {}}
    ckpt.update(extra)
    return ckpt


def save_generator(path: Path | str, generator: UNetGenerator, config: dict | None = None,
                   meta: dict | None = None, **extra) -> None:
    atomic_torch_save(make_checkpoint(generator, config, meta, **extra), path)


def load_checkpoint(path: Path | str, map_location: str | torch.device = "cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; train or prune a model first "
                              f"(e.g. `unetprune train --config config/config.yaml --out DIR`)")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises several types for truncated/corrupt files
        raise CheckpointError(f"cannot read checkpoint {path}: {e}") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a unetprune checkpoint (no '{FORMAT}' header)")
    if ckpt.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path} has format version {ckpt['format_version']}; this unetprune "
                              f"reads up to {FORMAT_VERSION}: upgrade unetprune")
    return ckpt


def generator_from_checkpoint(ckpt: dict | Path | str, map_location="cpu") -> UNetGenerator:
    """Rebuild the generator (any widths) from a checkpoint dict or path."""
    if not isinstance(ckpt, dict):
        ckpt = load_checkpoint(ckpt, map_location)
    entry = ckpt["generator"]
    g = build_generator(UNetSpec.from_dict(entry["arch"]), init=False)
    g.load_state_dict(entry["state_dict"])
    return g
