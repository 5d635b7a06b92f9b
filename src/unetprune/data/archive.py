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

Bounded extraction (decompression bombs): an archive is refused, one line, when its member
count exceeds ``max_members``, when its files' declared sizes add up to more than
``max_total_bytes``, or when they exceed ``max_ratio`` times the archive's own size (above a
floor of :data:`RATIO_FLOOR` bytes, so tiny archives of text are not caught).  The same limits
are enforced again on the bytes actually written while streaming, so a member that lies
about its size cannot get past them; a refused extraction removes what it wrote.  Datasets
extract with ``allow_links=False`` (no dataset needs links; a link could reach outside the
folder that is finally installed) and a ``member_filter`` that admits only the members the
dataset layout expects.
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

DEFAULT_MAX_TOTAL_BYTES = 64 << 30  # 64 GiB: more than any pix2pix benchmark unpacked
DEFAULT_MAX_RATIO = 100.0  # JPEG/PNG datasets unpack to ~1x their archive
DEFAULT_MAX_MEMBERS = 1_000_000  # edges2handbags, the largest, has ~139k files
RATIO_FLOOR = 32 << 20  # the ratio applies once the files exceed 32 MiB


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
    raise DataError(
        f"{path} is neither a tar nor a zip archive (first bytes {head[:8]!r}); delete it and fetch again"
    )


def _unsafe(archive: Path, member: str, why: str) -> UnsafeArchiveError:
    return UnsafeArchiveError(
        f"refusing to extract {archive.name}: member {member!r} {why}; nothing was extracted"
    )


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
        raise _unsafe(
            archive, raw, f"is a symlink to the absolute path {target!r} (outside the target folder)"
        )
    if not _inside(posixpath.join(posixpath.dirname(name), target.replace("\\", "/"))):
        raise _unsafe(archive, raw, f"is a symlink to {target!r}, which points outside the target folder")


def _too_many(archive: Path, limit: int) -> UnsafeArchiveError:
    return UnsafeArchiveError(
        f"refusing to extract {archive.name}: it has more than {limit} members "
        f"(the limit; a dataset has far fewer); nothing was extracted"
    )


def _tar_members(archive: Path, tf: tarfile.TarFile, max_members: int | None = None) -> list[ArchiveMember]:
    out = []
    for n, ti in enumerate(tf, 1):  # streaming: a member-count bomb stops at the limit
        if max_members is not None and n > max_members:
            raise _too_many(archive, max_members)
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
                raise _unsafe(
                    archive,
                    ti.name,
                    f"is a hardlink to the absolute path {ti.linkname!r} (outside the target folder)",
                )
            parts = [p for p in re.split(r"[/\\]", ti.linkname) if p not in ("", ".")]
            if ".." in parts:
                raise _unsafe(
                    archive,
                    ti.name,
                    f"is a hardlink to {ti.linkname!r}, which points outside the target folder",
                )
            out.append(ArchiveMember(name, "hardlink", target="/".join(parts), raw=ti))
        else:
            raise _unsafe(
                archive, ti.name, f"has an unsupported type {ti.type!r} (not a file, folder or link)"
            )
    return out


def _zip_members(archive: Path, zf: zipfile.ZipFile, max_members: int | None = None) -> list[ArchiveMember]:
    out = []
    if max_members is not None and len(zf.infolist()) > max_members:
        raise _too_many(archive, max_members)
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
                raise _unsafe(
                    archive, m.name, f"needs {prefix!r} to be a folder, but the archive makes it a file"
                )
        if m.kind == "hardlink" and kinds.get(m.target) not in ("file", "hardlink"):
            raise _unsafe(
                archive,
                m.name,
                f"is a hardlink to {m.target!r}, which is not an earlier regular file in the archive",
            )
        prev = kinds.get(m.name)
        if prev is not None and (prev == "dir") != (m.kind == "dir"):
            raise _unsafe(archive, m.name, "appears both as a folder and as a file")
        kinds[m.name] = m.kind


def list_members(archive: Path | str, max_members: int | None = DEFAULT_MAX_MEMBERS) -> list[ArchiveMember]:
    """All members of a tar or zip archive, checked; raises UnsafeArchiveError naming the first
    offending member (or saying there are more than ``max_members``), DataError if the archive
    is corrupt.  Writes nothing."""
    archive = Path(archive)
    try:
        if archive_format(archive) == "zip":
            with zipfile.ZipFile(archive) as zf:
                members = _zip_members(archive, zf, max_members)
        else:
            with tarfile.open(archive, "r:*") as tf:
                members = _tar_members(archive, tf, max_members)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError) as e:
        if isinstance(e, FileNotFoundError):
            raise DataError(f"archive {archive} does not exist") from e
        raise DataError(f"archive {archive} is corrupt or truncated ({e}); delete it and fetch again") from e
    _check_structure(archive, members)
    return members


def _contained(root_real: str, path: str) -> bool:
    real = os.path.realpath(path)
    return real == root_real or real.startswith(root_real + os.sep)


class _Budget:
    """Bytes written so far against the total and ratio limits (checked per chunk)."""

    def __init__(self, archive: Path, max_total: int | None, max_ratio: float | None):
        self.archive, self.max_total, self.written = archive, max_total, 0
        size = archive.stat().st_size
        self.max_by_ratio = None if max_ratio is None else max(int(max_ratio * size), RATIO_FLOOR)
        self.max_ratio = max_ratio

    def check(self, total: int, what: str) -> None:
        if self.max_total is not None and total > self.max_total:
            raise UnsafeArchiveError(
                f"refusing to extract {self.archive.name}: its files {what} {total} bytes, "
                f"more than the limit of {self.max_total} (a decompression bomb?)"
            )
        if self.max_by_ratio is not None and total > self.max_by_ratio:
            raise UnsafeArchiveError(
                f"refusing to extract {self.archive.name}: its files {what} {total} bytes, more than "
                f"{self.max_ratio:g} times the archive's {self.archive.stat().st_size} bytes "
                f"(a decompression bomb?)"
            )

    def add(self, n: int) -> None:
        self.written += n
        self.check(self.written, "would unpack to more than")


def _write_stream(src: BinaryIO, dest: str, executable: bool, budget: _Budget | None = None) -> None:
    if os.path.lexists(dest):
        if os.path.islink(dest) or os.path.isdir(dest):
            raise UnsafeArchiveError(f"refusing to overwrite {dest}: it is a link or a folder")
        os.unlink(dest)  # a duplicate member: the later one wins, as with tar
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(dest, flags, 0o755 if executable else 0o644)
    with os.fdopen(fd, "wb") as out:
        while True:
            chunk = src.read(_COPY_CHUNK)
            if not chunk:
                break
            if budget is not None:
                budget.add(len(chunk))  # before writing: a bomb never reaches the disk
            out.write(chunk)


def safe_extract(
    archive: Path | str,
    dest: Path | str,
    *,
    max_total_bytes: int | None = DEFAULT_MAX_TOTAL_BYTES,
    max_ratio: float | None = DEFAULT_MAX_RATIO,
    max_members: int | None = DEFAULT_MAX_MEMBERS,
    allow_links: bool = True,
    member_filter: Callable[[ArchiveMember], bool | str] | None = None,
    on_member: Callable[[ArchiveMember], None] | None = None,
) -> list[str]:
    """Extract a tar (any compression) or zip ``archive`` into folder ``dest`` safely.

    Every member is checked (see the module docstring) before anything is written; an
    unsafe archive raises :class:`UnsafeArchiveError` naming the member and leaves ``dest``
    untouched.  ``max_total_bytes``, ``max_ratio`` (unpacked / archive size) and
    ``max_members`` bound what an archive may unpack to (decompression bombs), checked on
    the declared sizes first and again on every chunk written; None disables one.
    ``allow_links=False`` refuses symlinks and hardlinks.  ``member_filter(member)`` returns
    True (extract), False (skip quietly) or a reason string (refuse the archive, naming the
    member).  ``on_member`` is called per extracted member (for a progress bar).  Returns
    the extracted member names.  If writing fails part-way (disk full, corrupt data, a
    limit reached while streaming), the error propagates; what this call created in
    ``dest`` is removed on a limit, but extract into a temporary folder when it matters.
    """
    archive, dest = Path(archive), Path(dest)
    members = list_members(archive, max_members)
    if not allow_links:
        for m in members:
            if m.kind in ("symlink", "hardlink"):
                raise _unsafe(archive, m.name, f"is a {m.kind} (to {m.target!r}); a dataset needs no links")
    if member_filter is not None:
        kept = []
        for m in members:
            verdict = member_filter(m)
            if isinstance(verdict, str):
                raise _unsafe(archive, m.name, verdict)
            if verdict:
                kept.append(m)
        members = kept
    budget = _Budget(archive, max_total_bytes, max_ratio)
    budget.check(sum(m.size for m in members if m.kind == "file"), "add up to")
    created = not dest.exists()
    dest.mkdir(parents=True, exist_ok=True)
    try:
        return _extract(archive, dest, members, budget, on_member)
    except UnsafeArchiveError:
        if created:
            shutil.rmtree(dest, ignore_errors=True)
        raise


def _extract(
    archive: Path,
    dest: Path,
    members: list[ArchiveMember],
    budget: _Budget,
    on_member: Callable[[ArchiveMember], None] | None,
) -> list[str]:
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
                        _write_stream(src, target, executable=False, budget=budget)
                elif fmt == "zip":
                    with arc.open(m.raw) as src:
                        _write_stream(src, target, m.executable, budget)
                else:
                    src = arc.extractfile(m.raw)
                    with src:
                        _write_stream(src, target, m.executable, budget)
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
            raise _unsafe(
                archive, m.name, "is a symlink that resolves outside the target folder through other links"
            )
    return written
