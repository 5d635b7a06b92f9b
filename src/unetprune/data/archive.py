"""Safe extraction of tar and zip archives downloaded from the network.

A dataset archive is untrusted input.  :func:`safe_extract` reads the whole member list
first and refuses the archive, naming the offending member, before anything is written if
any member

* has an absolute path (``/etc/x``, ``C:\\x``) or a ``..`` component (zip-slip),
* is a symlink or hardlink whose target lies outside the target folder (or is absolute),
* would be written *through* a symlink member (``link/file``),
* is a device file, FIFO or socket, or carries a set-uid / set-gid bit.

Writing then happens member by member with ``O_NOFOLLOW`` and a containment check on
every resolved parent folder; symlinks (all pointing inside, as checked) are created
last, and each one's real path is checked again, so a chain of links cannot escape.
Hardlinks become copies of the earlier member they name.  File modes are normalised
(0644, or 0755 when an execute bit is set); ownership is never restored.

Callers that need atomicity (``fetch.py``) extract into a fresh temporary folder and
rename it into place, so an interrupted extraction never looks like a complete dataset.
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .aligned import DataError

__all__ = ["ArchiveMember", "UnsafeArchiveError", "archive_format", "list_members", "safe_extract"]

_DRIVE = re.compile(r"^[A-Za-z]:")
_COPY_CHUNK = 1 << 20


class UnsafeArchiveError(DataError):
    """The archive holds a member that could write outside the target or is not plain data."""


@dataclass(frozen=True)
class ArchiveMember:
    """One checked member: ``name`` is the normalised relative POSIX path inside the target;
    ``kind`` is ``file``, ``dir``, ``symlink`` or ``hardlink``; ``target`` is the link
    target (symlink: as stored, relative to the link's folder; hardlink: normalised name of
    the member it duplicates); ``executable`` keeps the owner's execute bit."""

    name: str
    kind: str
    size: int = 0
    target: str | None = None
    executable: bool = False
    raw: object = None  # the TarInfo / ZipInfo it came from


def archive_format(path: Path | str) -> str:
    """'tar' (plain, gz, bz2, xz) or 'zip', from the file's magic bytes; DataError otherwise."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(512)
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if head.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")) or head[257:262] == b"ustar":
        return "tar"
    raise DataError(f"{path} is neither a tar nor a zip archive (first bytes {head[:8]!r}); "
                    f"delete it and fetch again")


def _unsafe(archive: Path, member: str, why: str) -> UnsafeArchiveError:
    return UnsafeArchiveError(f"refusing to extract {archive.name}: member {member!r} {why}; "
                              f"nothing was extracted")


def _normalise(archive: Path, raw_name: str) -> str:
    """Relative POSIX path of a member, or raise if it is absolute or climbs with '..'."""
    if "\x00" in raw_name:
        raise _unsafe(archive, raw_name, "has a NUL byte in its name")
    if raw_name.startswith(("/", "\\")) or _DRIVE.match(raw_name):
        raise _unsafe(archive, raw_name, "has an absolute path (would be written outside the target folder)")
    # Backslashes are separators on Windows: treat them as such for the '..' test.
    parts = [p for p in re.split(r"[/\\]", raw_name) if p not in ("", ".")]
    if ".." in parts:
        raise _unsafe(archive, raw_name, "has a '..' component (would be written outside the target folder)")
    return "/".join(parts)


def _inside(rel: str) -> bool:
    """Whether a normalised relative POSIX path stays inside the root."""
    norm = posixpath.normpath(rel)
    return not (norm == ".." or norm.startswith(("../", "/")))


def _check_symlink(archive: Path, raw: str, name: str, target: str) -> None:
    if not target:
        raise _unsafe(archive, raw, "is a symlink with an empty target")
    if target.startswith(("/", "\\")) or _DRIVE.match(target):
        raise _unsafe(archive, raw, f"is a symlink to the absolute path {target!r} "
                                    f"(outside the target folder)")
    if not _inside(posixpath.join(posixpath.dirname(name), target.replace("\\", "/"))):
        raise _unsafe(archive, raw, f"is a symlink to {target!r}, which points outside the target folder")


def _tar_members(archive: Path, tf: tarfile.TarFile) -> list[ArchiveMember]:
    out = []
    for ti in tf.getmembers():
        if ti.mode & (stat.S_ISUID | stat.S_ISGID):
            raise _unsafe(archive, ti.name, f"has the set-uid/set-gid bit (mode {ti.mode:o})")
        if ti.ischr() or ti.isblk():
            raise _unsafe(archive, ti.name, "is a device file")
        if ti.isfifo():
            raise _unsafe(archive, ti.name, "is a FIFO")
        name = _normalise(archive, ti.name)
        if ti.isdir():
            out.append(ArchiveMember(name, "dir", raw=ti))
        elif ti.isreg():
            out.append(ArchiveMember(name, "file", ti.size, executable=bool(ti.mode & 0o100), raw=ti))
        elif ti.issym():
            _check_symlink(archive, ti.name, name, ti.linkname)
            out.append(ArchiveMember(name, "symlink", target=ti.linkname, raw=ti))
        elif ti.islnk():
            # Hardlink targets are archive paths (relative to the archive root).
            if ti.linkname.startswith(("/", "\\")) or _DRIVE.match(ti.linkname):
                raise _unsafe(archive, ti.name, f"is a hardlink to the absolute path {ti.linkname!r} "
                                                f"(outside the target folder)")
            parts = [p for p in re.split(r"[/\\]", ti.linkname) if p not in ("", ".")]
            if ".." in parts:
                raise _unsafe(archive, ti.name, f"is a hardlink to {ti.linkname!r}, which points outside "
                                                f"the target folder")
            out.append(ArchiveMember(name, "hardlink", target="/".join(parts), raw=ti))
        else:
            raise _unsafe(archive, ti.name, f"has an unsupported type {ti.type!r} "
                                            f"(not a file, folder or link)")
    return out


def _zip_members(archive: Path, zf: zipfile.ZipFile) -> list[ArchiveMember]:
    out = []
    for zi in zf.infolist():
        mode = zi.external_attr >> 16 if zi.create_system == 3 else 0  # 3 = Unix
        if mode & (stat.S_ISUID | stat.S_ISGID):
            raise _unsafe(archive, zi.filename, f"has the set-uid/set-gid bit (mode {mode:o})")
        fmt = stat.S_IFMT(mode)
        if fmt in (stat.S_IFCHR, stat.S_IFBLK):
            raise _unsafe(archive, zi.filename, "is a device file")
        if fmt in (stat.S_IFIFO, stat.S_IFSOCK):
            raise _unsafe(archive, zi.filename, "is a FIFO or socket")
        name = _normalise(archive, zi.filename)
        if zi.is_dir() or fmt == stat.S_IFDIR:
            out.append(ArchiveMember(name, "dir", raw=zi))
        elif fmt == stat.S_IFLNK:
            if zi.file_size > 4096:
                raise _unsafe(archive, zi.filename, "is a symlink with an implausibly long target")
            target = zf.read(zi).decode("utf-8", "surrogateescape")
            _check_symlink(archive, zi.filename, name, target)
            out.append(ArchiveMember(name, "symlink", target=target, raw=zi))
        elif fmt in (0, stat.S_IFREG):
            out.append(ArchiveMember(name, "file", zi.file_size, executable=bool(mode & 0o100), raw=zi))
        else:
            raise _unsafe(archive, zi.filename, f"has an unsupported file type (mode {mode:o})")
    return out


def _check_structure(archive: Path, members: list[ArchiveMember]) -> None:
    """Refuse members written through symlinks, hardlinks to non-files, and file/folder clashes."""
    links = {m.name for m in members if m.kind == "symlink"}
    kinds: dict[str, str] = {}
    for m in members:
        if not m.name:
            continue
        parts = m.name.split("/")
        for i in range(1, len(parts)):
            prefix = "/".join(parts[:i])
            if prefix in links:
                raise _unsafe(archive, m.name, f"would be written through the symlink member {prefix!r}")
            if kinds.get(prefix, "dir") != "dir":
                raise _unsafe(archive, m.name, f"needs {prefix!r} to be a folder, "
                                               f"but the archive makes it a file")
        if m.kind == "hardlink" and kinds.get(m.target) not in ("file", "hardlink"):
            raise _unsafe(archive, m.name, f"is a hardlink to {m.target!r}, which is not an earlier "
                                           f"regular file in the archive")
        prev = kinds.get(m.name)
        if prev is not None and (prev == "dir") != (m.kind == "dir"):
            raise _unsafe(archive, m.name, "appears both as a folder and as a file")
        kinds[m.name] = m.kind


def list_members(archive: Path | str) -> list[ArchiveMember]:
    """All members of a tar or zip archive, checked; raises UnsafeArchiveError naming the first
    offending member, DataError if the archive is corrupt.  Writes nothing."""
    archive = Path(archive)
    try:
        if archive_format(archive) == "zip":
            with zipfile.ZipFile(archive) as zf:
                members = _zip_members(archive, zf)
        else:
            with tarfile.open(archive, "r:*") as tf:
                members = _tar_members(archive, tf)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError) as e:
        if isinstance(e, FileNotFoundError):
            raise DataError(f"archive {archive} does not exist") from e
        raise DataError(f"archive {archive} is corrupt or truncated ({e}); delete it and fetch again") from e
    _check_structure(archive, members)
    return members


def _contained(root_real: str, path: str) -> bool:
    real = os.path.realpath(path)
    return real == root_real or real.startswith(root_real + os.sep)


def _write_stream(src: BinaryIO, dest: str, executable: bool) -> None:
    if os.path.lexists(dest):
        if os.path.islink(dest) or os.path.isdir(dest):
            raise UnsafeArchiveError(f"refusing to overwrite {dest}: it is a link or a folder")
        os.unlink(dest)  # a duplicate member: the later one wins, as with tar
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(dest, flags, 0o755 if executable else 0o644)
    with os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(src, out, _COPY_CHUNK)


def safe_extract(archive: Path | str, dest: Path | str, *,
                 max_total_bytes: int | None = None,
                 on_member: Callable[[ArchiveMember], None] | None = None) -> list[str]:
    """Extract a tar (any compression) or zip ``archive`` into folder ``dest`` safely.

    Every member is checked (see the module docstring) before anything is written; an
    unsafe archive raises :class:`UnsafeArchiveError` naming the member and leaves ``dest``
    untouched.  ``max_total_bytes`` refuses archives whose files add up to more (a guard
    against decompression bombs).  ``on_member`` is called per extracted member (for a
    progress bar).  Returns the extracted member names.  If writing fails part-way
    (disk full, corrupt data), the error propagates and ``dest`` may hold a partial
    tree: extract into a temporary folder when that matters.
    """
    archive, dest = Path(archive), Path(dest)
    members = list_members(archive)
    total = sum(m.size for m in members if m.kind == "file")
    if max_total_bytes is not None and total > max_total_bytes:
        raise UnsafeArchiveError(f"refusing to extract {archive.name}: its files add up to {total} bytes, "
                                 f"more than the limit of {max_total_bytes}")
    dest.mkdir(parents=True, exist_ok=True)
    root_real = os.path.realpath(dest)
    fmt = archive_format(archive)
    written: list[str] = []
    symlinks: list[ArchiveMember] = []
    try:
        with zipfile.ZipFile(archive) if fmt == "zip" else tarfile.open(archive, "r:*") as arc:
            for m in members:
                if not m.name:
                    continue
                target = os.path.join(root_real, *m.name.split("/"))
                parent = os.path.dirname(target)
                if m.kind == "symlink":
                    symlinks.append(m)
                    continue
                if m.kind == "dir":
                    os.makedirs(target, mode=0o755, exist_ok=True)
                    if not _contained(root_real, target):
                        raise _unsafe(archive, m.name, "resolves outside the target folder")
                    written.append(m.name)
                    continue
                os.makedirs(parent, mode=0o755, exist_ok=True)
                if not _contained(root_real, parent):
                    raise _unsafe(archive, m.name, "resolves outside the target folder")
                if m.kind == "hardlink":
                    with open(os.path.join(root_real, *m.target.split("/")), "rb") as src:
                        _write_stream(src, target, executable=False)
                elif fmt == "zip":
                    with arc.open(m.raw) as src:
                        _write_stream(src, target, m.executable)
                else:
                    src = arc.extractfile(m.raw)
                    with src:
                        _write_stream(src, target, m.executable)
                written.append(m.name)
                if on_member:
                    on_member(m)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error) as e:
        raise DataError(f"archive {archive} is corrupt or truncated ({e}); delete it and fetch again") from e
    # Symlinks last, so no file is ever written through one; then re-check each real path
    # (a chain of individually-inside links could otherwise climb out).
    for m in symlinks:
        link = os.path.join(root_real, *m.name.split("/"))
        os.makedirs(os.path.dirname(link), mode=0o755, exist_ok=True)
        if os.path.lexists(link):
            raise _unsafe(archive, m.name, "is a symlink over an existing member")
        os.symlink(m.target, link)
        written.append(m.name)
    for m in symlinks:
        link = os.path.join(root_real, *m.name.split("/"))
        if not _contained(root_real, link):
            for s in symlinks:
                p = os.path.join(root_real, *s.name.split("/"))
                if os.path.islink(p):
                    os.unlink(p)
            raise _unsafe(archive, m.name, "is a symlink that resolves outside the target folder "
                                           "through other links")
    return written
