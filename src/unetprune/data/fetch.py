"""Fetching the pix2pix benchmark datasets: download, checksum, lock file, safe install.

``fetch_dataset("facades", root)`` turns ``root`` into an aligned dataset
(``root/{train,val,test}/*.jpg``, see ``aligned.py``) from the archive the pix2pix
reference downloads (``http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/<name>.tar.gz``),
or from ``source=`` (a mirror URL, a ``file://`` URL or a local archive) when given.

Steps and the guarantees each gives:

1. **Download** (:func:`download`): into ``<root.parent>/.<root.name>.download/<file>.part``
   with HTTP range requests, so an interrupted fetch resumes where it stopped (an
   ``If-Range`` validator restarts it if the server's file changed); retries with
   exponential back-off; a progress bar; an unreachable server gives one clear line with
   the URL to fetch by hand.  A failure before any byte arrived leaves nothing behind.
2. **Checksum**: the archive's sha256 is recorded on the first fetch in the lock file
   ``root/dataset.lock.json`` (:data:`LOCK_NAME`) and compared on every later fetch (and by
   :func:`verify_dataset`, run by `unetprune data verify`); a mismatch stops with both hashes.
3. **Extraction** (``archive.safe_extract``): refuses unsafe members, writes into a fresh
   temporary folder beside ``root`` and renames it into place only after step 4 passed,
   so an interrupted fetch never leaves a half dataset that looks complete.
4. **Layout check**: the splits the dataset should have exist, every image decodes and
   has width = 2 x height (``check_aligned_layout``); the counts are returned and recorded.

Cityscapes is licence-gated and is built by ``cityscapes.prepare_cityscapes`` from the
user's official zips; ``fetch_dataset("cityscapes", source=...)`` still accepts a
pix2pix-format ``cityscapes.tar.gz`` the user already has.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import random
import re
import shutil
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.client import HTTPException
from pathlib import Path

from ..fileio import atomic_write_text
from .aligned import IMAGE_SUFFIXES, SPLITS, DataError, check_aligned_layout
from .archive import DEFAULT_MAX_RATIO, ArchiveMember, safe_extract
from ..fileio import sha256_file  # noqa: F401 (re-exported)

__all__ = [
    "CITYSCAPES_DOWNLOADS",
    "DATASETS",
    "LOCK_NAME",
    "PIX2PIX_URL",
    "ChecksumMismatch",
    "DatasetSpec",
    "DownloadError",
    "FetchResult",
    "dataset_spec",
    "default_root",
    "download",
    "fetch_dataset",
    "install_dir",
    "read_lock",
    "sha256_file",
    "tree_sha256",
    "verify_dataset",
    "write_lock",
]

PIX2PIX_URL = "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/{name}.tar.gz"
CITYSCAPES_DOWNLOADS = "https://www.cityscapes-dataset.com/downloads/"
LOCK_NAME = "dataset.lock.json"
LOCK_FORMAT = "unetprune-data-lock"
USER_AGENT = "unetprune-data-fetch/1 (+python urllib)"
_CHUNK = 1 << 16


@dataclass(frozen=True)
class DatasetSpec:
    """A known dataset: where it comes from and which splits a complete copy has.

    ``url`` is None for licence-gated data (cityscapes); ``sha256`` pins the archive's
    hash where it is known in advance (otherwise the lock file records it on first use).
    """

    name: str
    splits: tuple[str, ...]
    url: str | None
    sha256: str | None = None
    description: str = ""
    max_bytes: int = 4 << 30  # extraction limit (unpacked files), several times the real size


DATASETS: dict[str, DatasetSpec] = {
    "facades": DatasetSpec(
        "facades",
        ("train", "val", "test"),
        PIX2PIX_URL.format(name="facades"),
        description="CMP Facades: 400 train / 100 val / 106 test, A = photo, B = labels",
        max_bytes=1 << 30,
    ),
    "cityscapes": DatasetSpec(
        "cityscapes",
        ("train", "val"),
        None,
        description="Cityscapes label<->photo (licence-gated: prepare-cityscapes)",
        max_bytes=2 << 30,
    ),
    "edges2shoes": DatasetSpec(
        "edges2shoes",
        ("train", "val"),
        PIX2PIX_URL.format(name="edges2shoes"),
        description="UT Zappos50K edges->shoes: ~50k train / 200 val",
        max_bytes=16 << 30,
    ),
    "edges2handbags": DatasetSpec(
        "edges2handbags",
        ("train", "val"),
        PIX2PIX_URL.format(name="edges2handbags"),
        description="iGAN edges->handbags: ~137k train / 200 val",
        max_bytes=48 << 30,
    ),
    "maps": DatasetSpec(
        "maps",
        ("train", "val"),
        PIX2PIX_URL.format(name="maps"),
        description="Google Maps aerial<->map: 1096 train / 1098 val",
    ),
    "night2day": DatasetSpec(
        "night2day",
        ("train", "val"),
        PIX2PIX_URL.format(name="night2day"),
        description="Transient Attributes night->day: ~17.8k train",
        max_bytes=16 << 30,
    ),
}


class DownloadError(DataError):
    """The archive could not be downloaded (the message says why and how to fetch it by hand)."""


class ChecksumMismatch(DataError):
    """An archive's sha256 differs from the one recorded or requested (both are shown)."""


@dataclass
class FetchResult:
    """What :func:`fetch_dataset` did: ``counts`` per split, the archive's ``sha256``,
    ``skipped`` when ``root`` already held the locked dataset."""

    name: str
    root: Path
    counts: dict[str, int]
    sha256: str
    source: str
    skipped: bool = False
    lock: dict = field(default_factory=dict)


def dataset_spec(name: str) -> DatasetSpec:
    """The registry entry for ``name``; DataError listing the known names otherwise."""
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}") from None


def default_root(name: str) -> Path:
    """Where a dataset goes when no root is given: ``datasets/<name>`` (as pix2pix)."""
    return Path("datasets") / name


def _tree(root: Path | str, exclude: tuple[str, ...] = (LOCK_NAME,)) -> tuple[str, dict[str, list]]:
    """(tree sha256, {relpath: [size, sha256]}) of a folder's files, in one pass."""
    root = Path(root)
    lines, files = [], {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for fn in filenames:
            p = Path(dirpath) / fn
            rel = p.relative_to(root).as_posix()
            if rel in exclude:
                continue
            if p.is_symlink():
                digest = "link:" + os.readlink(p)
            else:
                digest = sha256_file(p)
                files[rel] = [p.stat().st_size, digest]
            lines.append(f"{rel}\0{digest}\n")
    h = hashlib.sha256()
    for line in sorted(lines):
        h.update(line.encode("utf-8", "surrogateescape"))
    return h.hexdigest(), dict(sorted(files.items()))


def tree_sha256(root: Path | str, exclude: tuple[str, ...] = (LOCK_NAME,)) -> str:
    """One sha256 over a folder's files: sorted ``relpath NUL sha256(file)`` lines (symlinks by
    their target text).  Detects any changed, added or removed file; ``exclude`` names top-level
    files to leave out (the lock file itself)."""
    return _tree(root, exclude)[0]


# --------------------------------------------------------------------------- download


class _Retryable(Exception):
    """An attempt failed in a way a later attempt may not (network, 5xx, short read)."""


def _meta_path(part: Path) -> Path:
    return part.with_name(part.name + ".json")


def _parse_content_range(value: str | None) -> tuple[int | None, int | None, int | None]:
    """'bytes 10-99/100' → (10, 99, 100); 'bytes */100' → (None, None, 100)."""
    if not value or not value.startswith("bytes "):
        return None, None, None
    span, _, total = value[6:].partition("/")
    total_n = int(total) if total.strip().isdigit() else None
    if span.strip() == "*":
        return None, None, total_n
    a, _, b = span.partition("-")
    return int(a), int(b), total_n


def _download_once(url: str, part: Path, timeout: float, progress: bool, desc: str) -> None:
    """One HTTP attempt that appends to ``part`` (resuming when it has bytes); raises
    _Retryable for transient failures, DownloadError for permanent ones."""
    offset = part.stat().st_size if part.exists() else 0
    meta = {}
    if offset and _meta_path(part).exists():
        try:
            meta = json.loads(_meta_path(part).read_text())
        except (OSError, ValueError):
            meta = {}
        if meta.get("url") != url:
            meta = {}
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        validator = meta.get("etag") or meta.get("last_modified")
        if validator:
            headers["If-Range"] = validator
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:
            _, _, total = _parse_content_range(e.headers.get("Content-Range"))
            if total == offset:
                return  # the part file is already complete
            part.unlink()
            raise _Retryable("the server refused to resume (HTTP 416); restarting from zero") from e
        if e.code in (408, 425, 429) or e.code >= 500:
            raise _Retryable(f"HTTP {e.code} {e.reason}") from e
        raise DownloadError(f"cannot download {url}: the server answered HTTP {e.code} {e.reason}") from e
    except (urllib.error.URLError, OSError, HTTPException) as e:
        reason = getattr(e, "reason", None) or e
        raise _Retryable(f"cannot reach the server ({reason})") from e

    with resp:
        if resp.status == 206:
            start, _, total = _parse_content_range(resp.headers.get("Content-Range"))
            if start != offset:
                part.unlink()
                raise _Retryable(f"the server resumed at byte {start}, not {offset}; restarting")
            mode = "ab"
        else:  # 200: the server ignored the range or the file changed (If-Range): start over
            offset, mode = 0, "wb"
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        meta = {
            "url": url,
            "etag": resp.headers.get("ETag"),
            "last_modified": resp.headers.get("Last-Modified"),
            "total": total,
        }
        _meta_path(part).write_text(json.dumps(meta))
        from tqdm import tqdm

        with (
            open(part, mode) as f,
            tqdm(
                total=total,
                initial=offset,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=desc,
                disable=not progress,
                leave=False,
            ) as bar,
        ):
            while True:
                try:
                    chunk = resp.read(_CHUNK)
                except (HTTPException, OSError) as e:
                    raise _Retryable(f"the connection broke after {f.tell()} bytes ({e})") from e
                if not chunk:
                    break
                f.write(chunk)
                bar.update(len(chunk))
    size = part.stat().st_size
    if total is not None and size < total:
        raise _Retryable(f"the connection closed after {size} of {total} bytes")
    if total is not None and size > total:
        part.unlink()
        raise _Retryable(f"received {size} bytes, more than the {total} announced; restarting")


def download(
    url: str,
    dest: Path | str,
    *,
    retries: int = 4,
    backoff: float = 1.0,
    timeout: float = 60.0,
    progress: bool = True,
    desc: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Path:
    """Download ``url`` to ``dest`` (resumable; returns ``dest``).

    Bytes accumulate in ``dest.part`` (with ``dest.part.json`` holding the server's
    validators); each attempt resumes from its size with ``Range: bytes=N-``.  Transient
    failures (unreachable, timeouts, 5xx, a connection closed early) are retried
    ``retries`` times, sleeping ``backoff * 2**k`` seconds; then DownloadError says what
    happened, and the part file is kept for the next call to resume, or removed when it
    is empty.  ``dest`` appears (atomically renamed) only when complete.
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    last: Exception | None = None
    for attempt in range(retries + 1):
        if attempt:
            sleep(backoff * 2 ** (attempt - 1))
        try:
            _download_once(url, part, timeout, progress, desc or dest.name)
        except _Retryable as e:
            last = e
            continue
        os.replace(part, dest)
        _meta_path(part).unlink(missing_ok=True)
        return dest
    have = part.stat().st_size if part.exists() else 0
    if have == 0:
        part.unlink(missing_ok=True)
        _meta_path(part).unlink(missing_ok=True)
        kept = ""
    else:
        kept = f"; {have} bytes kept in {part}, the next fetch resumes from there"
    raise DownloadError(f"cannot download {url} after {retries + 1} attempt(s): {last}{kept}")


# --------------------------------------------------------------------------- lock file

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _lock_problem(lock) -> str | None:
    """What is wrong with a parsed lock record's structure (None when it is well-formed)."""
    if not isinstance(lock, dict) or lock.get("format") != LOCK_FORMAT:
        return "it is not a unetprune data lock file"
    if not isinstance(lock.get("dataset"), str) or not lock["dataset"]:
        return "'dataset' must be a name"
    splits = lock.get("splits")
    if not isinstance(splits, dict) or not all(
        k in SPLITS and isinstance(v, int) and not isinstance(v, bool) and v >= 0 for k, v in splits.items()
    ):
        return "'splits' must map train/val/test to image counts"
    if "tree_sha256" in lock and not (
        isinstance(lock["tree_sha256"], str) and _HEX64.match(lock["tree_sha256"])
    ):
        return "'tree_sha256' must be a sha256 hex digest"
    arc = lock.get("archive")
    if arc is not None and not (
        isinstance(arc, dict)
        and isinstance(arc.get("sha256"), str)
        and _HEX64.match(arc["sha256"])
        and isinstance(arc.get("name", ""), str)
        and "/" not in arc.get("name", "")
        and arc.get("name") not in ("..", ".")
    ):
        return "'archive' must hold a file name and a sha256 hex digest"
    files = lock.get("files")
    if files is not None and not (
        isinstance(files, dict)
        and all(
            isinstance(k, str)
            and isinstance(v, list)
            and len(v) == 2
            and isinstance(v[0], int)
            and isinstance(v[1], str)
            and _HEX64.match(v[1])
            for k, v in files.items()
        )
    ):
        return "'files' must map file names to [size, sha256]"
    return None


def read_lock(root: Path | str) -> dict | None:
    """The lock record of the dataset at ``root`` (None if it has none); a lock file that is
    not valid JSON or not well-formed is a one-line DataError naming it."""
    path = Path(root) / LOCK_NAME
    if not path.exists():
        return None
    try:
        lock = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise DataError(
            f"lock file {path} is not valid JSON ({' '.join(str(e).split())}); delete the "
            f"dataset folder and fetch again"
        ) from e
    problem = _lock_problem(lock)
    if problem:
        raise DataError(
            f"lock file {path} is malformed: {problem}; delete the dataset folder and fetch again"
        )
    return lock


def write_lock(root: Path | str, record: dict) -> dict:
    """Write ``record`` (plus format, time and package version) as ``root``'s lock file; the
    tree hash and the per-file ``[size, sha256]`` records are added when ``record`` lacks them."""
    from .. import __version__

    if "files" not in record or "tree_sha256" not in record:
        tree, files = _tree(root)
        record = {"tree_sha256": tree, "files": files, **record}
    lock = {
        "format": LOCK_FORMAT,
        "format_version": 1,
        **record,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "unetprune": __version__,
    }
    atomic_write_text(Path(root) / LOCK_NAME, json.dumps(lock, indent=2, sort_keys=True) + "\n")
    return lock


def _check_hash(what: str, actual: str, expected: str | None, origin: str) -> None:
    if expected and actual.lower() != expected.lower():
        raise ChecksumMismatch(
            f"sha256 mismatch for {what}: expected {expected.lower()} ({origin}), "
            f"got {actual}; the file is corrupt or was changed upstream"
        )


# --------------------------------------------------------------------------- install


def install_dir(new: Path, root: Path) -> None:
    """Move the finished folder ``new`` to ``root`` by rename (same filesystem), replacing an
    existing ``root`` (moved aside first, deleted after) so readers see old or new, never half."""
    root = Path(root)
    if root.exists() or root.is_symlink():
        trash = Path(tempfile.mkdtemp(prefix=f".{root.name}.old-", dir=root.parent))
        os.replace(root, trash / root.name)
        os.replace(new, root)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(new, root)


def _find_dataset_dir(extracted: Path) -> Path:
    """The folder holding the splits: the extraction root or its single top-level folder."""
    if any((extracted / s).is_dir() for s in SPLITS):
        return extracted
    entries = [p for p in extracted.iterdir() if not p.name.startswith(".") and p.name != "__MACOSX"]
    if (
        len(entries) == 1
        and entries[0].is_dir()
        and not entries[0].is_symlink()
        and any((entries[0] / s).is_dir() for s in SPLITS)
    ):
        return entries[0]
    found = ", ".join(sorted(p.name for p in entries)[:10]) or "nothing"
    raise DataError(
        f"the archive does not hold an aligned dataset: expected {'/, '.join(SPLITS)}/ at its "
        f"top or inside one folder, found {found}"
    )


def _count_images(folder: Path) -> int:
    """Number of image files in ``folder`` (0 if it is missing), without decoding them."""
    if not folder.is_dir():
        return 0
    return sum(1 for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _first_missing(path: Path) -> Path | None:
    """The outermost ancestor-or-self of ``path`` that does not exist yet (None if it exists)."""
    missing = None
    for p in [path, *path.parents]:
        if p.exists():
            break
        missing = p
    return missing


def _remove_empty(path: Path, up_to: Path | None) -> None:
    """rmdir ``path`` and its parents while empty, stopping after ``up_to``."""
    if up_to is None:
        return
    p = path
    while True:
        try:
            p.rmdir()
        except OSError:
            return
        if p == up_to or p == p.parent:
            return
        p = p.parent


def _local_source(source: str) -> Path | None:
    """A local archive path for ``source`` (a path or file:// URL), None for a remote URL."""
    parsed = urllib.parse.urlparse(source)
    if parsed.scheme == "file":
        return Path(urllib.request.url2pathname(parsed.path))
    if parsed.scheme in ("http", "https", "ftp"):
        return None
    return Path(source)


PARTIAL_OWNER = ".owner"  # "<host> <pid>" of the fetch extracting into a .<root>.partial-* folder


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_partials(root: Path | str, *, older_than: float = 24 * 3600.0) -> list[Path]:
    """Delete the ``.<root>.partial-*`` extraction folders next to ``root`` that a killed fetch
    (kill -9, power loss) left behind.  A folder is stale when its owner file names this host and
    a process that no longer runs, or (no readable owner file) when it is older than
    ``older_than`` seconds; a folder of a fetch still running is kept.  Returns those removed."""
    import socket

    root = Path(root)
    removed: list[Path] = []
    if not root.parent.is_dir():
        return removed
    host = socket.gethostname()
    for d in root.parent.glob(f".{glob.escape(root.name)}.partial-*"):
        if d.is_symlink() or not d.is_dir():
            continue
        try:
            owner_host, pid = (d / PARTIAL_OWNER).read_text().split()
            stale = owner_host == host and int(pid) != os.getpid() and not _pid_alive(int(pid))
        except (OSError, ValueError):
            try:
                stale = time.time() - d.stat().st_mtime > older_than
            except OSError:
                stale = False
        if stale:
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    return removed


_JUNK = re.compile(r"(^|/)(__MACOSX(/|$)|\.DS_Store$|\._[^/]*$|Thumbs\.db$)")


def dataset_member(m: ArchiveMember) -> bool | str:
    """The archive members a dataset may hold (``safe_extract``'s ``member_filter``): images in
    ``[<top>/]{train,val,test}/`` and those folders; OS clutter (``__MACOSX/``, ``.DS_Store``,
    ``._*``, ``Thumbs.db``) is skipped; anything else refuses the archive."""
    if _JUNK.search(m.name):
        return False
    parts = m.name.split("/") if m.name else []
    if m.kind == "dir":
        if len(parts) <= 1 or (len(parts) == 2 and parts[1] in SPLITS):
            return True
        return "is a folder outside the dataset layout ([<top>/]train|val|test/)"
    if m.kind == "file":
        fname = parts[-1] if parts else ""
        if (
            len(parts) in (2, 3)
            and parts[-2] in SPLITS
            and not fname.startswith(".")
            and Path(fname).suffix.lower() in IMAGE_SUFFIXES
        ):
            return True
        return (
            f"is not an image ({', '.join(IMAGE_SUFFIXES)}) in [<top>/]train|val|test/, the only "
            f"members a dataset may hold"
        )
    return True  # links: refused by allow_links=False


def parse_size(text: str | int) -> int:
    """``"20G"``, ``"500M"``, ``"4096"`` -> bytes (K/M/G/T are powers of 1024)."""
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*", str(text), re.IGNORECASE)
    if not m:
        raise DataError(f"size {text!r} is not a number of bytes like 4096, 500M or 20G")
    return int(float(m.group(1)) * 1024 ** " KMGT".index(m.group(2).upper() or " "))


def fetch_dataset(
    name: str,
    root: Path | str | None = None,
    *,
    source: str | None = None,
    sha256: str | None = None,
    force: bool = False,
    keep_archive: bool = False,
    retries: int = 4,
    backoff: float = 1.0,
    timeout: float = 60.0,
    progress: bool = True,
    max_bytes: int | None = None,
    max_ratio: float | None = DEFAULT_MAX_RATIO,
    log: Callable[[str], None] | None = None,
) -> FetchResult:
    """Make ``root`` (default ``datasets/<name>``) the aligned dataset ``name``.

    ``source`` overrides where the archive comes from (mirror URL, ``file://`` URL or a local
    path; a local file is read in place, never deleted).  ``sha256`` requires that hash.
    If ``root`` already holds this dataset with a lock file, nothing is downloaded unless
    ``force``; a non-empty ``root`` without a lock file is refused unless ``force``.
    ``keep_archive`` keeps the downloaded archive in ``<root.parent>/.<root.name>.download/``
    (it is deleted after a successful install otherwise).  See the module docstring for
    the guarantees; every failure is a DataError with a one-line message.  ``max_bytes``
    (default: the dataset's ``DatasetSpec.max_bytes``) and ``max_ratio`` bound what the
    archive may unpack to; only images in ``train/ val/ test/`` are accepted, links never.
    """
    spec = dataset_spec(name)
    root = Path(root) if root is not None else default_root(name)
    say = log or (lambda msg: None)
    for stale in remove_stale_partials(root):
        say(f"removed {stale}, left by an interrupted fetch")
    if source is None and spec.url is None:
        raise DataError(
            f"{name} is licence-gated and cannot be downloaded automatically: download "
            f"gtFine_trainvaltest.zip and leftImg8bit_trainvaltest.zip from "
            f"{CITYSCAPES_DOWNLOADS} into a folder DIR, then run "
            f"`unetprune data prepare-cityscapes --zips DIR --root {root}` (or pass --from "
            f"with a pix2pix-format {name}.tar.gz you already have)"
        )
    url = source or spec.url

    old_lock = read_lock(root) if root.is_dir() else None
    if old_lock is not None and old_lock.get("dataset") != name and not force:
        raise DataError(
            f"{root} holds the dataset {old_lock.get('dataset')!r}, not {name!r}; choose another --root"
        )
    if root.exists() and not force:
        if old_lock is not None:
            counts = {s: _count_images(root / s) for s in old_lock.get("splits", {}) if (root / s).is_dir()}
            if counts != old_lock.get("splits"):
                raise DataError(
                    f"{root} is incomplete or changed (images per split {counts}, lock file "
                    f"says {old_lock.get('splits')}); run `unetprune data verify --root {root}` "
                    f"or fetch again with --force"
                )
            old_sha = old_lock.get("archive", {}).get("sha256", "")
            say(f"{name} already present at {root} (sha256 {old_sha}); --force refetches")
            return FetchResult(
                name, root, counts, old_sha, old_lock.get("source", ""), skipped=True, lock=old_lock
            )
        if root.is_dir() and any(root.iterdir()) or root.is_file():
            raise DataError(
                f"{root} already exists and is not a dataset fetched by unetprune "
                f"(no {LOCK_NAME}); choose another --root or pass --force to replace it"
            )
    expected = sha256 or spec.sha256
    locked = None
    if old_lock is not None and old_lock.get("dataset") == name:
        locked = old_lock.get("archive", {}).get("sha256")

    local = _local_source(url)
    cache = root.parent / f".{root.name}.download"
    created = _first_missing(cache)
    if local is not None:
        if not local.is_file():
            raise DataError(f"archive {local} does not exist")
        archive = local
    else:
        archive_name = Path(urllib.parse.urlparse(url).path).name or f"{name}.tar.gz"
        archive = cache / archive_name
        if not archive.exists():
            say(f"downloading {url}")
            try:
                download(
                    url,
                    archive,
                    retries=retries,
                    backoff=backoff,
                    timeout=timeout,
                    progress=progress,
                    desc=name,
                )
            except DownloadError as e:
                _remove_empty(cache, created)
                hint = (
                    f"; check the network, or download it by hand from {url} and run "
                    f"`unetprune data fetch {name} --from FILE --root {root}`"
                )
                raise DownloadError(f"{e}{hint}") from e

    say(f"checking sha256 of {archive}")
    digest = sha256_file(archive)
    try:
        _check_hash(
            f"{name} archive {archive}",
            digest,
            expected,
            "requested" if sha256 else "pinned in the dataset registry",
        )
        _check_hash(f"{name} archive {archive}", digest, locked, f"recorded in {root / LOCK_NAME}")
    except ChecksumMismatch:
        if local is None:  # a bad download: do not let the next fetch reuse it
            archive.unlink(missing_ok=True)
            _remove_empty(cache, created)
        raise

    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.partial-", dir=root.parent))
    try:
        import socket

        (tmp / PARTIAL_OWNER).write_text(f"{socket.gethostname()} {os.getpid()}\n")
        say(f"extracting {archive.name}")
        safe_extract(
            archive,
            tmp / "x",
            max_total_bytes=spec.max_bytes if max_bytes is None else max_bytes,
            max_ratio=max_ratio,
            allow_links=False,
            member_filter=dataset_member,
        )
        data_dir = _find_dataset_dir(tmp / "x")
        say("checking the aligned layout (every image is decoded)")
        counts = check_aligned_layout(data_dir, splits=spec.splits)
        lock = write_lock(
            data_dir,
            {
                "dataset": name,
                "source": url,
                "splits": counts,
                "archive": {"name": archive.name, "sha256": digest, "size": archive.stat().st_size},
            },
        )
        install_dir(data_dir, root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if local is None and not keep_archive:
        shutil.rmtree(cache, ignore_errors=True)
    return FetchResult(name, root, counts, digest, url, lock=lock)


QUICK_SAMPLE = 16  # files hashed by a quick verify (chosen at random each time)


def verify_dataset(
    root: Path | str, *, name: str | None = None, quick: bool = False, sample: int = QUICK_SAMPLE
) -> dict:
    """Check the dataset at ``root`` against its lock file; returns the lock record.

    Checks the dataset name (when given), the image counts per split and, unless ``quick``,
    that every image decodes as an aligned pair and the tree's sha256 equals the recorded
    one; a kept archive (``--keep-archive``) is re-hashed too.  ``quick`` (what the workflow
    runs before training): counts, every file's size and the sha256 of ``sample`` files drawn
    at random, against the lock's per-file records (a lock without per-file records: counts
    only).  Raises DataError / ChecksumMismatch with a one-line message.
    """
    root = Path(root)
    lock = read_lock(root) if root.is_dir() else None
    if lock is None:
        raise DataError(
            f"{root} has no {LOCK_NAME}: it was not fetched or prepared by unetprune "
            f"(run `unetprune data fetch` or `prepare-cityscapes`)"
        )
    if name is not None and lock.get("dataset") != name:
        raise DataError(f"{root} holds {lock.get('dataset')!r}, expected {name!r}")
    recorded = lock.get("splits", {})
    if quick:
        counts = {s: _count_images(root / s) for s in recorded}
    else:
        counts = check_aligned_layout(root, splits=tuple(recorded))
    if counts != recorded:
        raise DataError(f"{root}: images per split {counts} differ from the lock file's {recorded}")
    if quick:
        files = lock.get("files") or {}
        for rel, (size, _) in files.items():
            p = root / rel
            if p.is_symlink() or not p.is_file():
                raise DataError(
                    f"{p} is missing (or not a plain file) but {LOCK_NAME} records it; "
                    f"fetch again with --force"
                )
            if p.stat().st_size != size:
                raise ChecksumMismatch(
                    f"{p} has {p.stat().st_size} bytes, {LOCK_NAME} records {size}: the "
                    f"dataset was changed after it was fetched; fetch again with --force"
                )
        for rel in random.sample(sorted(files), min(sample, len(files))):
            _check_hash(f"{root / rel}", sha256_file(root / rel), files[rel][1], f"recorded in {LOCK_NAME}")
        return lock
    _check_hash(
        f"the files of {root}", tree_sha256(root), lock.get("tree_sha256"), f"recorded in {LOCK_NAME}"
    )
    kept = root.parent / f".{root.name}.download" / lock.get("archive", {}).get("name", "")
    if lock.get("archive") and kept.is_file():
        _check_hash(
            f"archive {kept}", sha256_file(kept), lock["archive"]["sha256"], f"recorded in {LOCK_NAME}"
        )
    return lock
