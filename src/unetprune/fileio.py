"""Files written safely: atomic writes, content hashes and path containment (the one copy of each).

Every write goes to a temporary file in the destination folder, is flushed and fsynced,
then renamed over the destination (``os.replace``), so a reader never sees a half-written
file and a killed process leaves either the old file or the new one.  The temporary file
is removed on any error.  Files get the normal permissions (``0666 & ~umask``), not
``mkstemp``'s private ``0600``.  :func:`atomic_torch_save` turns a failed write (disk full,
file size limit) into the ``OSError`` that caused it, naming the destination.

Paths taken from data (filelist entries) are resolved and must stay inside their root
(:func:`resolve_inside`); an output must not be, or lead through a link to, one of the
command's inputs (:func:`clashing_input`).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable


def file_mode() -> int:
    """The permissions a new file normally gets (``0666 & ~umask``): what every atomic write
    gives its temporary file instead of ``mkstemp``'s private ``0600``."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: Path | str, write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(f)`` on a binary temporary file, then move it to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, file_mode())
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


class _RecordingWriter:
    """A binary file wrapper that keeps the first ``OSError`` its ``write`` raised (torch's
    writer turns it into an opaque ``RuntimeError`` from its C++ stream)."""

    def __init__(self, f: BinaryIO):
        self.f, self.error = f, None

    def write(self, data) -> int:
        try:
            return self.f.write(data)
        except OSError as e:
            self.error = self.error or e
            raise

    def flush(self) -> None:
        self.f.flush()


def atomic_torch_save(obj, path: Path | str) -> Path:
    """``torch.save(obj)`` to ``path`` atomically.  A write that fails (disk full, the file size
    limit of ``ulimit -f``) raises that ``OSError`` with ``path`` as its file name (printed by the
    CLI as one line), and no partial file is left."""
    import torch

    path = Path(path)

    def write(f: BinaryIO) -> None:
        w = _RecordingWriter(f)
        try:
            torch.save(obj, w)
        except RuntimeError:
            if w.error is None:
                raise
            e = w.error
            raise OSError(e.errno, e.strerror or os.strerror(e.errno or 0), str(path)) from None

    try:
        return atomic_write(path, write)
    except OSError as e:
        if e.filename is None and e.errno is not None:  # flush/fsync of the temporary file
            raise OSError(e.errno, e.strerror or os.strerror(e.errno), str(path)) from None
        raise


def resolve_inside(root: Path | str, rel: Path | str) -> Path | None:
    """``root / rel`` with every link resolved, or None when it is not inside ``root`` (an
    absolute ``rel``, a ``..`` that climbs out, a link that leads out)."""
    base = Path(root).resolve()
    target = (base / rel).resolve()
    return target if target == base or base in target.parents else None


def clashing_input(outputs, inputs) -> tuple[Path, Path] | None:
    """The first ``(output, input)`` pair of ``outputs`` and ``inputs`` (paths) where writing the
    output would replace or write through the input: the output resolves (through links) to
    it, or is the same file (a hard link); None when there is none."""
    real: dict[Path, Path] = {}
    ids: dict[tuple[int, int], Path] = {}
    for i in inputs:
        p = Path(i)
        real.setdefault(p.resolve(), p)
        try:
            st = p.stat()
            ids.setdefault((st.st_dev, st.st_ino), p)
        except OSError:
            pass
    for o in outputs:
        out = Path(o)
        hit = real.get(out.resolve())
        if hit is None:
            try:
                st = out.stat()
                hit = ids.get((st.st_dev, st.st_ino))
            except OSError:
                pass
        if hit is not None:
            return out, hit
    return None


def sha256_file(path: Path | str, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes (datasets, archives, checkpoints, extractor weights)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
