"""Files written safely: atomic writes and content hashes (the one copy of each).

Every write goes to a temporary file in the destination folder, is flushed and fsynced,
then renamed over the destination (``os.replace``), so a reader never sees a half-written
file and a killed process leaves either the old file or the new one.  The temporary file
is removed on any error.  Files get the normal permissions (``0666 & ~umask``), not
``mkstemp``'s private ``0600``.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path | str, write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(f)`` on a binary temporary file, then move it to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def remove_stale_temps(folder: Path | str, names: tuple[str, ...] | list[str]) -> list[Path]:
    """Delete the temporary files ``.<name>.*.tmp`` that :func:`atomic_write` leaves in ``folder``
    when its process is killed (kill -9, power loss) before the rename.  Call it where one process
    owns ``folder`` (e.g. a training run's output folder at start); returns the files removed."""
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for name in names:
        for tmp in folder.glob(f".{glob_escape(name)}.*.tmp"):
            if tmp.is_file() and not tmp.is_symlink():
                try:
                    tmp.unlink()
                    removed.append(tmp)
                except FileNotFoundError:
                    pass
    return removed


def glob_escape(name: str) -> str:
    import glob

    return glob.escape(name)


def atomic_write_bytes(path: Path | str, data: bytes) -> Path:
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: Path | str, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def atomic_torch_save(obj, path: Path | str) -> Path:
    import torch

    return atomic_write(path, lambda f: torch.save(obj, f))


def sha256_file(path: Path | str, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes (datasets, archives, checkpoints, extractor weights)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
