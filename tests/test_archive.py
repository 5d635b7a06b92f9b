"""Safe extraction: benign tar/zip archives extract; hostile ones are refused before any write."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from unetprune.data.aligned import DataError
from unetprune.data.archive import UnsafeArchiveError, list_members, safe_extract


def _tar(path: Path, entries: list[tuple[tarfile.TarInfo, bytes | None]], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tf:
        for info, data in entries:
            if data is not None:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
            else:
                tf.addfile(info)
    return path


def _file(name: str, mode: int = 0o644) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.mode = mode
    return ti


def _special(name: str, kind: bytes, linkname: str = "", mode: int = 0o644) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type, ti.linkname, ti.mode = kind, linkname, mode
    return ti


def _zip(path: Path, entries: list[tuple[str, bytes, int | None]]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data, unix_mode in entries:
            zi = zipfile.ZipInfo(name)
            if unix_mode is not None:
                zi.create_system = 3
                zi.external_attr = unix_mode << 16
            zf.writestr(zi, data)
    return path


@pytest.fixture
def sandbox(tmp_path):
    """(out, sentinel): extraction target and a path outside it that must stay absent."""
    out = tmp_path / "work" / "out"
    out.parent.mkdir()
    return out, tmp_path / "work" / "evil.txt"


def test_benign_tar_extracts_files_dirs_and_internal_links(tmp_path, sandbox):
    out, sentinel = sandbox
    arc = _tar(
        tmp_path / "ok.tar.gz",
        [
            (_special("ds", tarfile.DIRTYPE, mode=0o755), None),
            (_file("ds/train/a.txt"), b"alpha"),
            (_file("ds/run.sh", 0o755), b"#!/bin/sh\n"),
            (_special("ds/train/b.txt", tarfile.LNKTYPE, "ds/train/a.txt"), None),
            (_special("ds/alias", tarfile.SYMTYPE, "train/a.txt"), None),
        ],
    )
    names = safe_extract(arc, out)
    assert sorted(names) == ["ds", "ds/alias", "ds/run.sh", "ds/train/a.txt", "ds/train/b.txt"]
    assert (out / "ds/train/a.txt").read_bytes() == b"alpha"
    assert (out / "ds/train/b.txt").read_bytes() == b"alpha"  # hardlink materialised as a copy
    assert os.readlink(out / "ds/alias") == "train/a.txt"
    assert (out / "ds/alias").read_bytes() == b"alpha"
    assert stat.S_IMODE((out / "ds/run.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((out / "ds/train/a.txt").stat().st_mode) == 0o644
    assert not sentinel.exists()


def test_benign_zip_extracts(tmp_path, sandbox):
    out, _ = sandbox
    arc = _zip(tmp_path / "ok.zip", [("ds/", b"", None), ("ds/val/x.txt", b"xyz", 0o100644)])
    assert safe_extract(arc, out) == ["ds", "ds/val/x.txt"]
    assert (out / "ds/val/x.txt").read_bytes() == b"xyz"


HOSTILE_TARS = {
    "absolute": lambda s: [(_file(str(s)), b"pwned")],
    "dotdot": lambda s: [(_file("ds/../../evil.txt"), b"pwned")],
    "symlink-escape": lambda s: [
        (_special("ds/link", tarfile.SYMTYPE, "../.."), None),
        (_file("ds/link/evil.txt"), b"pwned"),
    ],
    "symlink-absolute": lambda s: [
        (_special("ds/link", tarfile.SYMTYPE, str(s.parent)), None),
        (_file("ds/link/evil.txt"), b"pwned"),
    ],
    "hardlink-escape": lambda s: [(_special("ds/hl", tarfile.LNKTYPE, "../evil.txt"), None)],
    "hardlink-absolute": lambda s: [(_special("ds/hl", tarfile.LNKTYPE, str(s)), None)],
    "device": lambda s: [(_special("ds/null", tarfile.CHRTYPE), None)],
    "fifo": lambda s: [(_special("ds/pipe", tarfile.FIFOTYPE), None)],
    "setuid": lambda s: [(_file("ds/sudo", 0o4755), b"\x7fELF")],
    "setgid": lambda s: [(_file("ds/sg", 0o2755), b"\x7fELF")],
}
EXPECTED_TAR = {
    "absolute": ("{sentinel}", "absolute path"),
    "dotdot": ("ds/../../evil.txt", "'..' component"),
    "symlink-escape": ("ds/link", "points outside the target folder"),
    "symlink-absolute": ("ds/link", "symlink to the absolute path"),
    "hardlink-escape": ("ds/hl", "points outside the target folder"),
    "hardlink-absolute": ("ds/hl", "hardlink to the absolute path"),
    "device": ("ds/null", "device file"),
    "fifo": ("ds/pipe", "FIFO"),
    "setuid": ("ds/sudo", "set-uid/set-gid bit (mode 4755)"),
    "setgid": ("ds/sg", "set-uid/set-gid bit (mode 2755)"),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE_TARS))
def test_hostile_tar_refused_naming_member_and_nothing_written(tmp_path, sandbox, kind):
    out, sentinel = sandbox
    # A benign member first: refusal must happen before *anything* is written.
    entries = [(_file("ds/ok.txt"), b"fine"), *HOSTILE_TARS[kind](sentinel)]
    arc = _tar(tmp_path / f"{kind}.tar.gz", entries)
    with pytest.raises(UnsafeArchiveError) as exc:
        safe_extract(arc, out)
    member, why = EXPECTED_TAR[kind]
    member = member.format(sentinel=sentinel)
    msg = str(exc.value)
    assert f"member {member!r}" in msg and why in msg and f"{kind}.tar.gz" in msg
    assert "\n" not in msg
    assert not sentinel.exists()
    assert not out.exists()
    assert sorted(p.name for p in sentinel.parent.iterdir()) == []


HOSTILE_ZIPS = {
    "zip-slip": (
        [("ds/ok.txt", b"fine", None), ("../evil.txt", b"pwned", None)],
        "../evil.txt",
        "'..' component",
    ),
    "zip-slip-backslash": (
        [("ds\\..\\..\\evil.txt", b"pwned", None)],
        "ds\\..\\..\\evil.txt",
        "'..' component",
    ),
    "zip-absolute": ([("/tmp/evil.txt", b"pwned", None)], "/tmp/evil.txt", "absolute path"),
    "zip-drive": ([("C:/evil.txt", b"pwned", None)], "C:/evil.txt", "absolute path"),
    "zip-symlink": (
        [("ds/link", b"../../", stat.S_IFLNK | 0o777), ("ds/link/evil.txt", b"x", None)],
        "ds/link",
        "points outside the target folder",
    ),
    "zip-device": ([("ds/null", b"", stat.S_IFCHR | 0o666)], "ds/null", "device file"),
    "zip-setuid": ([("ds/sudo", b"x", stat.S_IFREG | 0o4755)], "ds/sudo", "set-uid/set-gid bit"),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE_ZIPS))
def test_hostile_zip_refused(tmp_path, sandbox, kind):
    out, sentinel = sandbox
    entries, member, why = HOSTILE_ZIPS[kind]
    arc = _zip(tmp_path / f"{kind}.zip", entries)
    with pytest.raises(UnsafeArchiveError) as exc:
        safe_extract(arc, out)
    assert f"member {member!r}" in str(exc.value) and why in str(exc.value)
    assert not sentinel.exists() and not out.exists()
    assert not (tmp_path / "evil.txt").exists()


def test_write_through_internal_symlink_refused(tmp_path, sandbox):
    out, sentinel = sandbox
    arc = _tar(
        tmp_path / "through.tar",
        [
            (_special("ds/sub", tarfile.DIRTYPE, mode=0o755), None),
            (_special("ds/alias", tarfile.SYMTYPE, "sub"), None),
            (_file("ds/alias/x.txt"), b"x"),
        ],
        mode="w",
    )
    with pytest.raises(
        UnsafeArchiveError,
        match=r"member 'ds/alias/x.txt' would be written through the "
        r"symlink member 'ds/alias'",
    ):
        safe_extract(arc, out)
    assert not out.exists() and not sentinel.exists()


def test_symlink_chain_that_climbs_out_is_removed_and_refused(tmp_path, sandbox):
    # 'here' -> '.' is inside; 'up' -> 'here/../evil.txt' is lexically 'evil.txt' (inside) but
    # really resolves to <out>/../evil.txt: the post-creation real-path check must catch it.
    out, sentinel = sandbox
    arc = _tar(
        tmp_path / "chain.tar",
        [
            (_special("here", tarfile.SYMTYPE, "."), None),
            (_special("up", tarfile.SYMTYPE, "here/../evil.txt"), None),
        ],
        mode="w",
    )
    # Lexically 'here/../evil.txt' -> 'evil.txt', so it passes the first check...
    assert [m.name for m in list_members(arc)] == ["here", "up"]
    with pytest.raises(UnsafeArchiveError, match="member 'up' is a symlink that resolves outside"):
        safe_extract(arc, out)
    assert not sentinel.exists()
    assert not os.path.lexists(out / "up") and not os.path.lexists(out / "here")


def test_hardlink_to_missing_member_refused(tmp_path, sandbox):
    out, _ = sandbox
    arc = _tar(tmp_path / "hl.tar", [(_special("ds/hl", tarfile.LNKTYPE, "ds/nothing"), None)], mode="w")
    with pytest.raises(UnsafeArchiveError, match="not an earlier regular file"):
        safe_extract(arc, out)


def test_size_limit_and_corrupt_archive(tmp_path, sandbox):
    out, _ = sandbox
    arc = _tar(tmp_path / "big.tar.gz", [(_file("ds/zeros"), bytes(10_000))])
    with pytest.raises(UnsafeArchiveError, match="10000 bytes, more than the limit of 1000"):
        safe_extract(arc, out, max_total_bytes=1000)
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(arc.read_bytes()[:40])
    with pytest.raises(DataError, match="corrupt or truncated"):
        safe_extract(bad, out)
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"hello world")
    with pytest.raises(DataError, match="neither a tar nor a zip"):
        safe_extract(junk, out)
    assert not out.exists()
