"""Hostile inputs: each test reproduces an attack on a naive implementation — a weights file
that runs code when unpickled, an experiment name that escapes results/, leftovers of a killed
run, a file name that ffmpeg reads as a protocol, a 10-hour input, a filelist entry that climbs
out of its folder, an output that is an input, a full disk, out-of-range numbers — and checks
it is refused (one line, naming the file or key) or cleaned up.  The suite counts what it tried,
what was refused with one line, code executed, inputs lost and hangs; the summary line is
printed at the end of the run (tests/conftest.py) and the last test requires 0, 0 and 0."""

from __future__ import annotations

import ast
import os
import socket
import time
from pathlib import Path

import pytest
import torch

from unetprune.config import ConfigError, load_config, validate
from unetprune.data.fetch import PARTIAL_OWNER, remove_stale_partials
from unetprune.fileio import atomic_torch_save, remove_stale_temps
from unetprune.layout import CHECKPOINT_NAME, RESUME_NAME
from unetprune.metrics import fid as F

from test_lipsync import inputs  # noqa: F401, F811 (the lip-sync fixture the media attacks start from)

SRC = Path(__file__).resolve().parents[1] / "src"


class _Touch:
    """Unpickling this object creates ``marker``: stands for arbitrary code execution."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def _poisoned(path: Path, marker: Path) -> Path:
    """A file torch.load(weights_only=False) would unpickle, touching ``marker``."""
    torch.save({"Conv2d_1a_3x3.conv.weight": torch.zeros(1), "x": _Touch(str(marker))}, path)
    return path


# ---------------------------------------------------------------- item 1: weights files


def test_poisoned_inception_weights_refused_without_running_code(tmp_path):
    marker = tmp_path / "PWNED"
    bad = _poisoned(tmp_path / F.INCEPTION_WEIGHTS_FILE, marker)
    with pytest.raises(F.FIDError) as e:
        F.get_extractor("inception-v3-compat", weights=bad)
    msg = str(e.value)
    assert "\n" not in msg and str(bad) in msg and "weights_only" in msg
    _not_executed(marker)
    _refused("pickled Inception weights that run code", msg, str(bad))


def test_poisoned_cached_standin_weights_refused_without_running_code(tmp_path):
    marker = tmp_path / "PWNED"
    # the file standin_weights() would reuse from the (DVC-shared) cache folder
    path = tmp_path / f"standin-inception-v3-s{F.STANDIN_INPUT_SIZE}-seed0.pt"
    _poisoned(path, marker)
    with pytest.raises(F.FIDError) as e:
        F.get_extractor("standin", seed=0, cache_dir=tmp_path)
    assert "\n" not in str(e.value) and str(path) in str(e.value)
    _not_executed(marker)
    _refused("poisoned cached stand-in weights", str(e.value), str(path))
    # the same file handed explicitly, and through torch-fidelity's own folder computation
    with pytest.raises(F.FIDError):
        F.get_extractor("standin", weights=path, seed=0, cache_dir=tmp_path / "other")
    _not_executed(marker)
    with pytest.raises(F.FIDError):
        F.load_weights_file(path)
    _not_executed(marker)


def test_torch_fidelity_extractor_reads_weights_safely(tmp_path, monkeypatch):
    """The classes torch-fidelity instantiates (folder path) never reach its weights_only=False load."""
    marker = tmp_path / "PWNED"
    bad = _poisoned(tmp_path / "w.pt", marker)
    cls = F._register_standin()
    with pytest.raises(F.FIDError):
        cls(F.STANDIN_NAME, [F.FEATURE_LAYER], feature_extractor_weights_path=str(bad), verbose=False)
    cls = F._register_inception()
    with pytest.raises(F.FIDError):
        cls(F.SAFE_INCEPTION_NAME, [F.FEATURE_LAYER], feature_extractor_weights_path=str(bad), verbose=False)
    _not_executed(marker)


def test_wrong_state_dict_refused_with_one_line(tmp_path):
    path = tmp_path / "w.pt"
    torch.save({"not.a.layer": torch.zeros(3)}, path)
    with pytest.raises(F.FIDError) as e:
        F.get_extractor("inception-v3-compat", weights=path)
    assert "\n" not in str(e.value) and str(path) in str(e.value)
    _refused("weights file with a foreign state dict", str(e.value), str(path))


def _torch_load_calls(tree: ast.AST):
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "load"
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "torch"
        ):
            yield node


def test_every_torch_load_in_src_is_weights_only():
    """One owner reads torch files (unetprune.weights.load_weights), with weights_only=True."""
    checked, bad, owners = 0, [], set()
    for py in sorted(SRC.rglob("*.py")):
        text = py.read_text()
        for call in _torch_load_calls(ast.parse(text)):
            checked += 1
            owners.add(str(py.relative_to(SRC)))
            kw = {k.arg: k.value for k in call.keywords}
            val = kw.get("weights_only")
            if not (isinstance(val, ast.Constant) and val.value is True):
                bad.append(f"{py.relative_to(SRC)}:{call.lineno}")
        # nothing unpickles directly either
        assert "pickle.load(" not in text and "pickle.loads(" not in text, py
    assert checked >= 1 and not bad, f"torch.load without weights_only=True: {bad}"
    assert owners == {"unetprune/weights.py"}, (
        f"torch.load outside unetprune.weights.load_weights: {sorted(owners)}"
    )


# ---------------------------------------------------------------- item 7: experiment names


@pytest.mark.parametrize("name", ["..", ".", "../x", "a/../..", "/tmp/x", "a..b", ".hidden", "-x", "x.", ""])
def test_experiment_names_that_escape_results_are_refused(name):
    with pytest.raises(ConfigError) as e:
        validate({"experiment": name})
    assert "'experiment'" in str(e.value)
    _refused(f"experiment name {name!r}", str(e.value), "'experiment'")


@pytest.mark.parametrize("name", ["demo", "tiny", "facades_paper", "run-2", "v1.2"])
def test_ordinary_experiment_names_accepted(name):
    assert validate({"experiment": name})["experiment"] == name


# ---------------------------------------------------------------- item 11: leftovers, permissions


def test_stale_atomic_temps_removed(tmp_path):
    left = [tmp_path / f".{RESUME_NAME}.abc123.tmp", tmp_path / f".{CHECKPOINT_NAME}.x_y.tmp"]
    keep = [tmp_path / RESUME_NAME, tmp_path / ".other.pt.abc.tmp", tmp_path / f"{RESUME_NAME}.tmp"]
    for p in left + keep:
        p.write_bytes(b"x")
    removed = remove_stale_temps(tmp_path, (RESUME_NAME, CHECKPOINT_NAME))
    assert sorted(removed) == sorted(left)
    assert all(not p.exists() for p in left) and all(p.exists() for p in keep)


def test_training_start_removes_temps_of_a_killed_run(tiny_demo, tmp_path):
    from unetprune.train import train

    out = tmp_path / "run"
    out.mkdir()
    stale = [out / f".{RESUME_NAME}.k9abcd.tmp", out / f".{CHECKPOINT_NAME}.k9efgh.tmp"]
    for p in stale:
        p.write_bytes(b"\0" * 1024)  # what kill -9 during atomic_torch_save leaves
    cfg = load_config(
        None,
        {
            "experiment": "tiny",
            "seed": 7,
            "data": {"dataset": "folder", "root": str(tiny_demo), "load_size": 36, "crop_size": 32},
            "demo": {"image_size": 32},
            "model": {"pix2pix": {"num_downs": 5, "ngf": 4, "ndf": 4}},
            "train": {
                "n_epochs": 1,
                "n_epochs_decay": 0,
                "save_every": 1,
                "threads": 1,
                "log_every": 2,
                "eval_images": 2,
            },
            "evaluate": {"fid_backend": "standin"},
        },
    )
    train(cfg, out, progress=False)
    assert not any(p.exists() for p in stale)
    assert not list(out.glob(".*.tmp"))


def test_saved_checkpoint_is_not_private_under_umask_022(tmp_path):
    old = os.umask(0o022)
    try:
        p = atomic_torch_save({"w": torch.zeros(2)}, tmp_path / CHECKPOINT_NAME)
    finally:
        os.umask(old)
    assert p.stat().st_mode & 0o777 == 0o644


def test_encoded_media_are_not_private_under_umask_022(tmp_path):
    """ffmpeg's outputs (clips, extracted audio, lip-synced videos) are renamed from a temporary
    file: they get the normal permissions, as every other output."""
    import numpy as np

    from unetprune.data.media import encode_mp4, write_wav

    old = os.umask(0o022)
    try:
        wav = write_wav(tmp_path / "a.wav", np.zeros(3200, np.float32), 16000)
        mp4 = encode_mp4(tmp_path / "v.mp4", np.zeros((5, 32, 32, 3), np.uint8), 25, wav)
    finally:
        os.umask(old)
    assert wav.stat().st_mode & 0o777 == 0o644 and mp4.stat().st_mode & 0o777 == 0o644


def _partial(parent: Path, root_name: str, suffix: str, owner: str | None) -> Path:
    d = parent / f".{root_name}.partial-{suffix}"
    (d / "x" / "train").mkdir(parents=True)
    (d / "x" / "train" / "1.png").write_bytes(b"\0" * 100)
    if owner is not None:
        (d / PARTIAL_OWNER).write_text(owner)
    return d


def _dead_pid() -> int:
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_partial_extractions_removed_live_ones_kept(tmp_path):
    host = socket.gethostname()
    root = tmp_path / "facades"
    dead = _partial(tmp_path, "facades", "dead", f"{host} {_dead_pid()}")
    live = _partial(tmp_path, "facades", "live", f"{host} {os.getpid()}")
    elsewhere = _partial(tmp_path, "facades", "other", f"not-{host} {_dead_pid()}")
    legacy_old = _partial(tmp_path, "facades", "old", None)
    t = time.time() - 3 * 24 * 3600
    os.utime(legacy_old, (t, t))
    legacy_new = _partial(tmp_path, "facades", "new", None)
    other_ds = _partial(tmp_path, "maps", "dead", f"{host} {_dead_pid()}")
    removed = remove_stale_partials(root)
    assert sorted(removed) == sorted([dead, legacy_old])
    for d in (live, elsewhere, legacy_new, other_ds):
        assert d.is_dir()


def test_fetch_cleans_partials_of_a_killed_fetch(tmp_path):
    from test_fetch import make_dataset_archive

    from unetprune.data.fetch import fetch_dataset

    arc = make_dataset_archive(tmp_path / "facades.tar.gz")
    parent = tmp_path / "data"
    parent.mkdir()
    dead = _partial(parent, "facades", "k9", f"{socket.gethostname()} {_dead_pid()}")
    fetch_dataset("facades", parent / "facades", source=str(arc), progress=False)
    assert not dead.exists()
    assert sorted(p.name for p in parent.iterdir()) == ["facades"]


# ================================================================= items 4, 5, 6, 8, 9, 10
# Every hostile input below is counted: HOSTILE["tried"] when it is tried, HOSTILE["refused"] when
# it was refused with a one-line message (naming the file, member or key); the last test states
# both and requires them equal.

HOSTILE = {"tried": 0, "refused": 0, "executed": 0, "lost": 0, "hangs": 0}


def hostile_summary() -> str:
    """The suite's summary (printed by tests/conftest.py at the end of the run): the counts, and
    what the 10-hour refusals took when they ran."""
    h = HOSTILE
    line = (
        f"hostile-input suite: {h['tried']} attacks tried, {h['refused']} refused with one line, "
        f"{h['executed']} code executed, {h['lost']} inputs lost, {h['hangs']} hangs"
    )
    took = [
        f"10-hour {k} refused in {t:.2f} s (a fresh `unetprune lipsync`), peak memory {mb:.0f} MB"
        for k, (t, mb) in sorted(MEASURED.items())
    ]
    return "\n".join([line, *took])


def _not_executed(marker: Path) -> None:
    """Count a code-execution marker that exists (it must not)."""
    if marker.exists():
        HOSTILE["executed"] += 1
    assert not marker.exists(), f"code ran: {marker} exists"


def _snapshot(*paths: Path) -> dict:
    """{file: bytes} of every file under ``paths`` (links followed): the inputs to keep."""
    out = {}
    for p in paths:
        for f in [p] if p.is_file() else sorted(q for q in p.rglob("*") if q.is_file()):
            out[f] = f.read_bytes()
    return out


def _kept(before: dict) -> None:
    """Count the inputs of ``before`` (a :func:`_snapshot`) that are gone or changed (must be 0)."""
    lost = [f for f, data in before.items() if not f.is_file() or f.read_bytes() != data]
    HOSTILE["lost"] += len(lost)
    assert not lost, f"inputs replaced or removed: {lost}"


def _refused(what: str, message: str, *needles: str) -> None:
    """Count one hostile input; it must have been refused with one line holding ``needles``."""
    HOSTILE["tried"] += 1
    text = message.strip()
    assert text and "\n" not in text and "Traceback" not in text, f"{what}: not one line: {message!r}"
    for n in needles:
        assert n in text, f"{what}: {n!r} not in {text!r}"
    HOSTILE["refused"] += 1


def _raises_one_line(what: str, exc, fn, *needles: str):
    with pytest.raises(exc) as e:
        fn()
    _refused(what, str(e.value), *needles)
    return e.value


def _cli_refused(what: str, argv: list[str], capsys, *needles: str) -> str:
    from unetprune.cli import main

    capsys.readouterr()
    rc = main(argv)
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error" in line]
    assert rc == 2, f"{what}: exit {rc}, stderr {err!r}"
    assert "Traceback" not in err and len(errors) == 1, f"{what}: {err!r}"
    _refused(what, errors[0], *needles)
    return errors[0]


# ---------------------------------------------------------------- archives (items 4, 5)


def _targz(path: Path, members: list[tuple[str, bytes]], links: list[tuple[str, str, bytes]] = ()) -> Path:
    import io
    import tarfile

    with tarfile.open(path, "w:gz") as tf:
        for name, data in members:
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode = len(data), 0o644
            tf.addfile(ti, io.BytesIO(data))
        for name, target, kind in links:
            ti = tarfile.TarInfo(name)
            ti.type, ti.linkname = kind, target
            tf.addfile(ti)
    return path


def _aligned_members(top: str = "facades") -> list[tuple[str, bytes]]:
    from test_fetch import SPLIT_SIZES, _png

    return [
        (f"{top}/{split}/{i + 1}.png", _png(10 * k + i))
        for k, (split, n) in enumerate(SPLIT_SIZES.items())
        for i in range(n)
    ]


def _fetch(arc: Path, root: Path, **kw):
    from unetprune.data.fetch import fetch_dataset

    return fetch_dataset("facades", root, source=str(arc), progress=False, **kw)


def _nothing_installed(parent: Path) -> bool:
    return not parent.exists() or not any(parent.iterdir())


def test_gzip_bomb_refused_before_anything_is_written(tmp_path):
    """A 64 MiB member that gzips to ~64 KB (ratio ~1000): nothing of it is written."""
    from unetprune.data.aligned import DataError

    arc = _targz(tmp_path / "bomb.tar.gz", _aligned_members() + [("facades/train/zz.png", bytes(64 << 20))])
    assert arc.stat().st_size < 1 << 20
    _raises_one_line(
        "tar.gz bomb (ratio)",
        DataError,
        lambda: _fetch(arc, tmp_path / "d" / "facades"),
        "bomb.tar.gz",
        "times the archive's",
    )
    assert _nothing_installed(tmp_path / "d")


def test_zip_bomb_and_total_limit_refused(tmp_path):
    import zipfile

    from unetprune.data.aligned import DataError
    from unetprune.data.archive import safe_extract

    arc = tmp_path / "bomb.zip"
    with zipfile.ZipFile(arc, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in _aligned_members():
            zf.writestr(name, data)
        zf.writestr("facades/train/zz.png", bytes(64 << 20))
    _raises_one_line(
        "zip bomb (ratio)", DataError, lambda: _fetch(arc, tmp_path / "d" / "facades"), "bomb.zip"
    )
    assert _nothing_installed(tmp_path / "d")
    ok = _targz(tmp_path / "ok.tar.gz", _aligned_members())
    _raises_one_line(
        "archive over the configured total size",
        DataError,
        lambda: _fetch(ok, tmp_path / "d" / "facades", max_bytes=1000),
        "limit of 1000",
    )
    assert _nothing_installed(tmp_path / "d")
    many = _targz(tmp_path / "many.tar.gz", [(f"ds/train/{i}.png", b"") for i in range(50)])
    _raises_one_line(
        "member-count bomb",
        DataError,
        lambda: safe_extract(many, tmp_path / "x", max_members=20),
        "more than 20 members",
    )
    assert not (tmp_path / "x").exists()


def test_lying_zip_member_is_stopped_while_streaming(tmp_path):
    """The declared sizes pass, the written bytes are counted too: a member whose stream is longer
    than the limit is cut off while streaming and what was written is removed."""
    from unetprune.data.archive import UnsafeArchiveError, _Budget, safe_extract

    arc = _targz(tmp_path / "a.tar.gz", [("ds/train/a.png", bytes(5000))])
    real_check = _Budget.check

    def lenient_first(self, total, what):  # as if the header had lied: skip the declared-size check
        if what == "add up to":
            return None
        return real_check(self, total, what)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_Budget, "check", lenient_first)
        _raises_one_line(
            "member longer than declared",
            UnsafeArchiveError,
            lambda: safe_extract(arc, tmp_path / "out", max_total_bytes=1000),
            "limit of 1000",
        )
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "member",
    [
        "facades/train/run.sh",
        "facades/README",
        "facades/extra/1.png",
        "facades/train/.hidden.png",
        "x/y/facades/train/1.png",
    ],
)
def test_members_outside_the_dataset_layout_refused(tmp_path, member):
    from unetprune.data.archive import UnsafeArchiveError

    arc = _targz(tmp_path / "extra.tar.gz", _aligned_members() + [(member, b"#!/bin/sh\necho pwned\n")])
    _raises_one_line(
        f"unexpected member {member}",
        UnsafeArchiveError,
        lambda: _fetch(arc, tmp_path / "d" / "facades"),
        repr(member),
    )
    assert _nothing_installed(tmp_path / "d")


def test_os_clutter_is_skipped_not_installed(tmp_path):
    arc = _targz(
        tmp_path / "mac.tar.gz",
        _aligned_members() + [("__MACOSX/facades/._1.png", b"x"), ("facades/.DS_Store", b"x")],
    )
    res = _fetch(arc, tmp_path / "d" / "facades")
    assert res.counts == {"train": 3, "val": 2, "test": 1}
    assert not list((tmp_path / "d").rglob(".DS_Store")) and not list((tmp_path / "d").rglob("__MACOSX"))


@pytest.mark.parametrize(
    "link,target,kind",
    [
        ("facades/train/9.png", "1.png", b"2"),  # a symlink inside the dataset
        ("facades/train/up", "../..", b"2"),  # reaches the dataset's parent once installed
        ("facades/val/9.png", "facades/train/1.png", b"1"),  # a hardlink
    ],
)
def test_links_in_datasets_refused(tmp_path, link, target, kind):
    from unetprune.data.archive import UnsafeArchiveError

    arc = _targz(tmp_path / "links.tar.gz", _aligned_members(), links=[(link, target, kind)])
    _raises_one_line(
        f"link {link} -> {target}",
        UnsafeArchiveError,
        lambda: _fetch(arc, tmp_path / "d" / "facades"),
        repr(link),
        "needs no links",
    )
    assert _nothing_installed(tmp_path / "d")


def _png_header(w: int, h: int) -> bytes:
    """A PNG that claims w x h pixels (a few hundred bytes: the shape of a decompression bomb)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("w,h", [(40_000, 20_000), (12_000, 6_000)], ids=["800MP", "72MP"])
def test_pixel_bomb_in_a_fetched_archive_is_one_line(tmp_path, capsys, w, h):
    """800 MP trips Pillow's DecompressionBombError (a traceback before); 72 MP only warned."""
    arc = _targz(tmp_path / "px.tar.gz", _aligned_members() + [("facades/train/zz.png", _png_header(w, h))])
    _cli_refused(
        f"{w * h // 10**6}-megapixel PNG",
        [
            "data",
            "fetch",
            "facades",
            "--from",
            str(arc),
            "--root",
            str(tmp_path / "d" / "facades"),
            "--no-progress",
        ],
        capsys,
        "zz.png",
    )
    assert _nothing_installed(tmp_path / "d")


def test_cityscapes_zip_bomb_member_is_refused_and_members_stream(tmp_path, monkeypatch):
    import zipfile

    from test_cityscapes import make_zips

    from unetprune.data import cityscapes as C
    from unetprune.data.aligned import DataError

    zips = make_zips(tmp_path / "zips")
    gt = zips / C.GTFINE_ZIP
    names = [n for n in zipfile.ZipFile(gt).namelist() if n.endswith("_gtFine_color.png")]
    rebuilt = tmp_path / "gt.zip"
    with zipfile.ZipFile(gt) as src, zipfile.ZipFile(rebuilt, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = bytes(8 << 20) if info.filename == names[0] else src.read(info)
            dst.writestr(info.filename, data)
    rebuilt.replace(gt)
    # streaming: no member is ever read whole into memory
    monkeypatch.setattr(zipfile.ZipFile, "read", lambda *a, **k: pytest.fail("a member was read whole"))
    _raises_one_line(
        "Cityscapes zip bomb member",
        DataError,
        lambda: C.prepare_cityscapes(zips, tmp_path / "cs", progress=False, hash_inputs=False),
        names[0],
        "decompression bomb",
    )
    assert not (tmp_path / "cs").exists()


# ---------------------------------------------------------------- integrity (item 9)


def _fetched(tmp_path: Path) -> Path:
    from test_fetch import make_dataset_archive

    root = tmp_path / "facades"
    _fetch(make_dataset_archive(tmp_path / "f.tar.gz"), root)
    return root


def test_quick_verify_finds_a_tampered_image(tmp_path, capsys):
    from unetprune.cli import main

    root = _fetched(tmp_path)
    assert main(["data", "verify", "--root", str(root), "--quick"]) == 0
    img = sorted((root / "train").glob("*.png"))[1]
    data = bytearray(img.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, different bytes
    img.write_bytes(bytes(data))
    _cli_refused(
        "image changed in place after fetch",
        ["data", "verify", "--root", str(root), "--quick"],
        capsys,
        str(img),
        "sha256 mismatch",
    )
    img.write_bytes(bytes(data) + b"more")  # a different size
    _cli_refused(
        "image grown after fetch",
        ["data", "verify", "--root", str(root), "--quick"],
        capsys,
        str(img),
        "bytes",
    )


@pytest.mark.parametrize(
    "lock",
    [
        '{"format": "unetprune-data-lock", "dataset": "facades", "splits": null}',
        '{"format": "unetprune-data-lock", "dataset": "facades", "splits": {"train": 3}, "archive": "x"}',
        '{"format": "unetprune-data-lock", "dataset": "facades", "splits": {"train": 3}, "files": {"a": 1}}',
        '{"format": "unetprune-data-lock", "dataset": ["x"], "splits": {}}',
        '{"format": "unetprune-data-lock", "dataset": "facades", "splits": {"../x": 1}}',
        "[1, 2",
    ],
    ids=["splits-null", "archive-str", "files-bad", "dataset-list", "split-path", "truncated"],
)
def test_malformed_lock_file_is_one_line(tmp_path, capsys, lock):
    root = _fetched(tmp_path)
    (root / "dataset.lock.json").write_text(lock)
    _cli_refused(
        f"malformed lock {lock[:30]}",
        ["data", "verify", "--root", str(root), "--quick"],
        capsys,
        "dataset.lock.json",
    )
    from test_fetch import make_dataset_archive

    _cli_refused(
        "fetch over a malformed lock",
        [
            "data",
            "fetch",
            "facades",
            "--root",
            str(root),
            "--from",
            str(make_dataset_archive(tmp_path / "g.tar.gz")),
            "--no-progress",
        ],
        capsys,
        "dataset.lock.json",
    )


# ---------------------------------------------------------------- images (item 6)


def _aligned_file(path: Path, im) -> Path:
    im.save(path)
    return path


def test_16bit_png_is_scaled_not_clipped_to_white(tmp_path):
    import numpy as np
    from PIL import Image

    from unetprune.data.aligned import read_aligned

    v = np.tile(np.linspace(0, 65535, 32).astype(np.uint16), (16, 1))
    p = _aligned_file(tmp_path / "16.png", Image.fromarray(v))
    assert Image.open(p).mode.startswith("I")
    a, b = read_aligned(p)
    got = np.concatenate([np.asarray(a), np.asarray(b)], axis=1)
    assert got.shape == (16, 32, 3) and (got[..., 0] == got[..., 1]).all()
    expected = np.round(v / 257).astype(np.uint8)
    assert np.array_equal(got[..., 0], expected)
    assert (got == 255).mean() < 0.1  # scaled, not clipped to white


def test_lossless_conversions_are_accepted(tmp_path):
    import numpy as np
    from PIL import Image

    from unetprune.data.aligned import read_aligned

    rgb = np.random.default_rng(0).integers(0, 256, (16, 32, 3), dtype=np.uint8)
    opaque = Image.fromarray(rgb).convert("RGBA")
    a, _ = read_aligned(_aligned_file(tmp_path / "rgba.png", opaque))
    assert np.array_equal(np.asarray(a), rgb[:, :16])
    gray = Image.fromarray(rgb[..., 0])
    a, _ = read_aligned(_aligned_file(tmp_path / "gray.png", gray))
    assert np.array_equal(np.asarray(a)[..., 2], rgb[:, :16, 0])


def _refused_images(tmp_path: Path) -> dict:
    import numpy as np
    from PIL import Image

    rgb = np.random.default_rng(0).integers(0, 256, (16, 32, 3), dtype=np.uint8)
    rgba = Image.fromarray(rgb).convert("RGBA")
    rgba.putpixel((3, 3), (1, 2, 3, 0))
    la = Image.fromarray(rgb[..., 0]).convert("LA")
    la.putpixel((0, 0), (5, 128))
    good = tmp_path / "good.png"
    Image.fromarray(rgb).save(good)
    files = {
        "transparent RGBA": _aligned_file(tmp_path / "rgba.png", rgba),
        "transparent LA": _aligned_file(tmp_path / "la.png", la),
        "CMYK JPEG": _aligned_file(tmp_path / "cmyk.jpg", Image.fromarray(rgb).convert("CMYK")),
        "float TIFF-like (F) image": _aligned_file(
            tmp_path / "f.tiff", Image.fromarray(rgb[..., 0].astype(np.float32))
        ),
        "truncated PNG": tmp_path / "trunc.png",
        "not an image": tmp_path / "text.png",
        "800-megapixel PNG": tmp_path / "bomb.png",
        "square (not A|B)": _aligned_file(tmp_path / "sq.png", Image.fromarray(rgb[:, :16])),
    }
    files["truncated PNG"].write_bytes(good.read_bytes()[:60])
    files["not an image"].write_text("hello")
    files["800-megapixel PNG"].write_bytes(_png_header(40_000, 20_000))
    return files


def test_images_outside_the_policy_are_refused_naming_the_file(tmp_path):
    from unetprune.data.aligned import DataError, read_aligned

    for what, path in _refused_images(tmp_path).items():
        _raises_one_line(what, DataError, lambda p=path: read_aligned(p), str(path))


# ---------------------------------------------------------------- translate (item 6)


@pytest.fixture(scope="module")
def small_ckpt(tmp_path_factory):
    from unetprune.checkpoint import save_generator
    from unetprune.families.pix2pix.unet import UNetSpec, build_generator

    path = tmp_path_factory.mktemp("ck") / "g.pt"
    save_generator(
        path, build_generator(UNetSpec.reference(5, 4), seed=0), config={"data": {"crop_size": 32}}
    )
    return path


def _inputs(folder: Path, names=("a.png", "b.png")) -> Path:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, n in enumerate(names):
        Image.fromarray(np.full((32, 64, 3), 40 * i, dtype=np.uint8)).save(folder / n)
    return folder


def test_translate_refuses_output_equal_to_or_inside_input_and_stem_clashes(tmp_path, capsys, small_ckpt):
    inp = _inputs(tmp_path / "in")
    before = _snapshot(inp)
    for what, out in (
        ("translate --output = --input", inp),
        ("translate --output inside --input", inp / "gen"),
    ):
        _cli_refused(
            what,
            ["translate", "--checkpoint", str(small_ckpt), "--input", str(inp), "--output", str(out)],
            capsys,
            str(inp),
        )
    _kept(before)  # the inputs are untouched
    clash = _inputs(tmp_path / "clash", ("a.png", "a.jpg", "b.png"))
    _cli_refused(
        "two inputs with the same stem",
        [
            "translate",
            "--checkpoint",
            str(small_ckpt),
            "--input",
            str(clash),
            "--output",
            str(tmp_path / "o"),
        ],
        capsys,
        "a.jpg",
        "a.png",
        "same name stem",
    )
    assert not (tmp_path / "o").exists()
    from unetprune.cli import main

    assert (
        main(
            [
                "translate",
                "--checkpoint",
                str(small_ckpt),
                "--input",
                str(inp),
                "--output",
                str(tmp_path / "fine"),
            ]
        )
        == 0
    )
    assert sorted(p.name for p in (tmp_path / "fine").iterdir()) == ["a.png", "b.png"]


# ---------------------------------------------------------------- checkpoints (item 10)


def test_malformed_but_loadable_checkpoints_are_one_line(tmp_path, capsys, small_ckpt):
    from unetprune.checkpoint import FORMAT

    ck = torch.load(small_ckpt, weights_only=True)
    cases = {
        "no generator": {"format": FORMAT, "format_version": 1},
        "generator is a string": {"format": FORMAT, "generator": "x"},
        "arch of the wrong type": {**ck, "generator": {"arch": {"enc_widths": "wide"}, "state_dict": {}}},
        "weights of the wrong shape": {
            **ck,
            "generator": {
                "arch": ck["generator"]["arch"],
                "state_dict": {k: torch.zeros(1) for k in ck["generator"]["state_dict"]},
            },
        },
        "state dict holding a list": {
            **ck,
            "generator": {"arch": ck["generator"]["arch"], "state_dict": {"w": [1, 2]}},
        },
    }
    inp = _inputs(tmp_path / "in")
    for i, (what, obj) in enumerate(cases.items()):
        bad = tmp_path / f"bad{i}.pt"
        torch.save(obj, bad)
        _cli_refused(
            f"checkpoint: {what}",
            ["translate", "--checkpoint", str(bad), "--input", str(inp), "--output", str(tmp_path / f"o{i}")],
            capsys,
            str(bad),
        )


# ---------------------------------------------------------------- configs (item 10)


@pytest.mark.parametrize(
    "override,key",
    [
        ({"train": {"lr": float("nan")}}, "train.lr"),
        ({"train": {"beta1": float("nan")}}, "train.beta1"),
        ({"train": {"lambda_l1": float("inf")}}, "train.lambda_l1"),
        ({"seed": 10**23}, "seed"),
        ({"seed": 1e23}, "seed"),
        ({"data": {"seed": 2**64}}, "data.seed"),
        ({"variants": []}, "variants"),
        ({"baselines": {"strategies": []}}, "baselines.strategies"),
        ({"sensitivity": {"layers": []}}, "sensitivity.layers"),
    ],
)
def test_hostile_config_values_refused_naming_the_key(tmp_path, capsys, override, key):
    """NaN passes every schema bound; a seed of 1e23 reached torch.manual_seed; empty lists made
    an experiment with nothing to compare (refused: say what to compare)."""
    import yaml

    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump({"experiment": "x", **override}))
    _cli_refused(f"config {key}={override}", ["config", "check", str(p)], capsys, f"config error at '{key}'")


def test_yaml_nan_spelling_refused(tmp_path, capsys):
    p = tmp_path / "c.yaml"
    p.write_text("experiment: x\ntrain:\n  lr: .nan\n")
    _cli_refused("YAML .nan", ["config", "check", str(p)], capsys, "config error at 'train.lr'", "finite")


# ---------------------------------------------------------------- OS errors (item 10)


def test_permission_denied_is_one_line_naming_the_file(tmp_path, capsys, small_ckpt, monkeypatch):
    import errno

    from PIL import Image

    inp = _inputs(tmp_path / "in")
    out = tmp_path / "out"

    def denied(self, fp, *a, **k):
        raise PermissionError(errno.EACCES, "Permission denied", str(fp))

    monkeypatch.setattr(Image.Image, "save", denied)  # as root chmod cannot deny; the OS error is the same
    _cli_refused(
        "permission denied",
        ["translate", "--checkpoint", str(small_ckpt), "--input", str(inp), "--output", str(out)],
        capsys,
        str(out / "a.png"),
        "Permission denied",
    )


def test_disk_full_is_one_line_naming_the_file(tmp_path, capsys, small_ckpt, monkeypatch):
    import errno

    out = tmp_path / "out.pt"

    def full(obj, f, *a, **k):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")  # what write() raises: no file name

    monkeypatch.setattr(torch, "save", full)
    _cli_refused(
        "disk full",
        ["prune", "--checkpoint", str(small_ckpt), "--strategy", "cut", "--k", "1", "--out", str(out)],
        capsys,
        str(out),
        "No space left",
        "disk is full",
    )
    assert not out.exists() and not list(tmp_path.glob(".out.pt.*"))


def test_output_path_that_is_a_folder_is_one_line(tmp_path, capsys, small_ckpt):
    out = tmp_path / "out.pt"
    out.mkdir()
    _cli_refused(
        "output path is a folder",
        ["prune", "--checkpoint", str(small_ckpt), "--strategy", "cut", "--k", "1", "--out", str(out)],
        capsys,
        str(out),
    )


# ---------------------------------------------------------------- concurrent MLflow sync (item 8)


def test_two_syncs_at_once_on_a_fresh_store(results_tree, tmp_path):
    """Two `unetprune track` processes at once on a fresh sqlite store: both succeed and every run key
    exists once — also after a result changed (no crash in the store's migrations, no duplicate
    of the changed run)."""
    import json
    import shutil
    import subprocess
    import sys

    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    from unetprune.tracking import sync_lock_path

    _cfg, base, cfg_file = results_tree
    base2 = tmp_path / "results"
    shutil.copytree(base, base2)
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    (tmp_path / "store").mkdir()
    assert sync_lock_path(uri) == tmp_path / "store" / "mlflow.db.lock"
    cmd = [
        sys.executable,
        "-m",
        "unetprune.cli",
        "track",
        "--config",
        str(cfg_file),
        "--uri",
        uri,
        "--results",
        str(base2),
    ]
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}

    def two_at_once():
        procs = [
            subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
            for _ in range(2)
        ]
        outs = [p.communicate(timeout=300) for p in procs]
        assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
        client = MlflowClient(tracking_uri=uri)
        exp = client.get_experiment_by_name(_cfg["experiment"])
        runs = client.search_runs([exp.experiment_id], run_view_type=ViewType.ACTIVE_ONLY, max_results=1000)
        keys = [r.data.tags["unetprune.key"] for r in runs]
        assert len(keys) == len(set(keys)), sorted(k for k in keys if keys.count(k) > 1)
        return set(keys)

    first = two_at_once()
    ev = sorted((base2 / _cfg["experiment"] / "eval").glob("*.json"))[0]
    data = json.loads(ev.read_text())
    data["l1"] = (data.get("l1") or 0.5) + 0.125  # a result changed
    ev.write_text(json.dumps(data))
    assert two_at_once() == first


# ---------------------------------------------------------------- media: protocol names, 10-hour inputs


@pytest.fixture(scope="module")
def lip(inputs):  # noqa: F811
    """test_lipsync's small Wav2Lip checkpoint and real media, plus a 10-hour FLAC and a 2-frame
    mp4 whose second frame sits at 10 h (a few KB each, made by the bundled ffmpeg)."""
    import subprocess

    from unetprune.data.media import ffmpeg_exe

    ff = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i"]
    subprocess.run(
        [*ff, "anullsrc=r=100:cl=mono", "-t", "36000", "-c:a", "flac", str(inputs / "ten_hours.flac")],
        check=True,
    )
    gap = ["-frames:v", "2", "-vf", "setpts=N*36000/TB", "-fps_mode", "passthrough", "-c:v", "libx264"]
    subprocess.run([*ff, "color=c=gray:s=64x64:r=1", *gap, str(inputs / "ten_hour_gap.mp4")], check=True)
    return inputs


def _lipsync_argv(lip: Path, face, audio, out, *extra) -> list[str]:
    return [
        "lipsync",
        "--checkpoint",
        str(lip / "G.pt"),
        "--face",
        str(face),
        "--audio",
        str(audio),
        "--out",
        str(out),
        "--no-progress",
        "--device",
        "cpu",
        *extra,
    ]


def _run_child(cmd: list[str], timeout: float, **kw) -> tuple[int, str, float]:
    """Run ``cmd`` (stdin a live pipe that is never written nor closed); returns (exit status,
    stderr, peak resident MB of the child and the children it waited for).  A child still
    running after ``timeout`` s is killed and counted as a hang."""
    import subprocess
    import tempfile
    import threading

    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err, **kw)
        hung = threading.Event()

        def kill():
            hung.set()
            proc.kill()

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
            proc.stdin.close()
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        text = err.read().decode("utf-8", "replace")
    if hung.is_set():
        HOSTILE["hangs"] += 1
        pytest.fail(f"{' '.join(cmd[-12:])}: still running after {timeout} s (killed)")
    return proc.returncode, text, usage.ru_maxrss / 1024


def _one_error_line(what: str, rc: int, err: str) -> str:
    errors = [ln for ln in err.splitlines() if "error" in ln]
    assert rc == 2 and len(errors) == 1 and "Traceback" not in err, f"{what}: exit {rc}: {err[-3000:]}"
    return errors[0]


@pytest.mark.parametrize(
    "name",
    ["concat:a.mp4|b.mp4", "subfile,,start,0,end,2000,,:a.mp4", "file:a.mp4", "http:127.0.0.1:{port}"],
    ids=["concat", "subfile", "file", "http"],
)
def test_file_names_that_ffmpeg_reads_as_protocols_are_refused(lip, tmp_path, capsys, monkeypatch, name):
    """A local file whose name is an ffmpeg protocol, given as typed (relative), is refused
    before ffmpeg sees it: no other file is read, no connection opened.  The same file named by
    its absolute path is read as itself."""
    import shutil

    from unetprune.data import media as M

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.setblocking(False)
    name = name.format(port=server.getsockname()[1])
    monkeypatch.chdir(tmp_path)
    for n in ("a.mp4", "b.mp4"):
        shutil.copy(lip / "talk.mp4", n)
    shutil.copy(lip / "face.mp4", name)  # it exists, so an existence check passes
    before = _snapshot(tmp_path)
    for flag in ("--face", "--audio"):
        face, audio = (name, lip / "speech.wav") if flag == "--face" else (lip / "face.mp4", name)
        _cli_refused(
            f"lipsync {flag} {name}",
            _lipsync_argv(lip, face, audio, tmp_path / "out.mp4"),
            capsys,
            name,
            "ffmpeg protocol or URL",
        )
        assert not (tmp_path / "out.mp4").exists()
    with pytest.raises(BlockingIOError):
        server.accept()  # nothing connected
    server.close()
    _kept(before)
    own = M.probe(tmp_path / name)  # by its absolute path: the file itself (face.mp4, no audio)
    assert own.audio is None and abs(own.duration - 0.8) < 0.05


def test_pipe0_name_with_a_live_stdin_does_not_hang(lip, tmp_path):
    """``--face pipe:0`` (a local file of that name) while stdin stays open: refused at once
    (ffmpeg would read stdin and wait for ever)."""
    import sys

    (tmp_path / "pipe:0").write_bytes((lip / "face.mp4").read_bytes())
    argv = _lipsync_argv(lip, "pipe:0", lip / "speech.wav", "o.mp4")
    rc, err, _ = _run_child([sys.executable, "-m", "unetprune.cli", *argv], 120, cwd=tmp_path)
    line = _one_error_line("--face pipe:0", rc, err)
    _refused("lipsync --face pipe:0 with a live stdin", line, "pipe:0", "ffmpeg protocol or URL")
    assert not (tmp_path / "o.mp4").exists()


MEASURED: dict = {}  # the 10-hour refusals, printed with the summary


# Runs a command with 4 GiB of address space (a regression fails fast instead of filling the
# machine: unbounded, the 10-hour FLAC grew past 14 GB in 45 s) and writes its peak resident
# memory (``wait4``'s ``ru_maxrss``: the largest of the command and the children it waited
# for) to argv[1].  The command is this small process's child, not the test process's: a
# process started from the (large) test process begins its peak count at the test's size.
_MEASURED = """
import os, resource, subprocess, sys
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
p = subprocess.Popen(sys.argv[2:])
try:
    _, status, usage = os.wait4(p.pid, 0)
finally:
    if p.poll() is None:
        p.kill()
with open(sys.argv[1], "w") as f:
    f.write(f"{usage.ru_maxrss / 1024:.1f}")
sys.exit(os.waitstatus_to_exitcode(status))
"""


@pytest.mark.parametrize("which", ["audio", "video"])
def test_ten_hour_inputs_refused_fast_in_little_memory(lip, tmp_path, which):
    """A 10-hour FLAC (a few KB) as --audio, a 2-frame mp4 whose second frame sits at 10 h as
    --face: ``unetprune lipsync`` (a fresh interpreter) refuses it from the probe in under 5 s
    of wall time, start-up included, with the line naming the limit and its flag, and the
    whole command's peak resident memory (the largest of the Python process and every ffmpeg
    it ran: ``wait4``'s ``ru_maxrss``) stays under 500 MB: nothing is decoded and torch is
    not imported before the refusal."""
    import sys
    import time

    if which == "audio":
        face, audio, bad = lip / "face.mp4", lip / "ten_hours.flac", lip / "ten_hours.flac"
    else:
        face, audio, bad = lip / "ten_hour_gap.mp4", lip / "speech.wav", lip / "ten_hour_gap.mp4"
    assert bad.stat().st_size < 100_000
    argv = _lipsync_argv(lip, face, audio, tmp_path / "o.mp4")
    peak = tmp_path / "peak_mb.txt"
    cmd = [sys.executable, "-c", _MEASURED, str(peak), sys.executable, "-m", "unetprune.cli", *argv]
    t0 = time.perf_counter()
    rc, err, _ = _run_child(cmd, 120)
    peak_mb = float(peak.read_text())
    took = time.perf_counter() - t0
    MEASURED[which] = (took, peak_mb)
    line = _one_error_line(f"10-hour {which}", rc, err)
    _refused(f"10-hour {which}", line, str(bad), "max_seconds", "--max-seconds")
    assert took < 5, f"10-hour {which}: refused after {took:.1f} s"
    assert peak_mb < 500, f"10-hour {which}: peak {peak_mb:.0f} MB"
    assert not (tmp_path / "o.mp4").exists()


def test_media_limits_are_configurable_and_admit_the_defaults(lip, tmp_path):
    """The flags raise or lower each limit; the schema's defaults are MediaLimits' defaults."""
    from unetprune.config import validate
    from unetprune.data import media as M

    assert validate({"experiment": "x"})["data"]["media"] == {
        "max_seconds": M.DEFAULT_LIMITS.max_seconds,
        "max_frames": M.DEFAULT_LIMITS.max_frames,
        "max_pixels": M.DEFAULT_LIMITS.max_pixels,
    }
    M.probe(lip / "ten_hours.flac", limits=M.MediaLimits(max_seconds=36001))  # raised: accepted
    for limits, needle in (
        (M.MediaLimits(max_seconds=0.5), "max_seconds"),
        (M.MediaLimits(max_frames=10), "max_frames"),
        (M.MediaLimits(max_pixels=100 * 100), "max_pixels"),
    ):
        _raises_one_line(
            f"face.mp4 over {needle}",
            M.MediaError,
            lambda lim=limits: M.decode_frames(lip / "face.mp4", limits=lim),
            "face.mp4",
            needle,
            needle.replace("max_", "--max-"),
        )


# ---------------------------------------------------------------- filelists that climb out


def test_preprocess_filelist_entry_with_dotdot_writes_nothing_outside_out(lip, tmp_path):
    import shutil

    from unetprune.data.aligned import DataError
    from unetprune.families.wav2lip.lrs2 import preprocess_lrs2

    root, out = tmp_path / "raw" / "main", tmp_path / "pre"
    (root / "spk").mkdir(parents=True)
    (tmp_path / "raw" / "outside").mkdir()
    shutil.copy(lip / "talk.mp4", root / "spk" / "00001.mp4")
    shutil.copy(lip / "talk.mp4", tmp_path / "raw" / "outside" / "00009.mp4")  # root/../outside/00009
    (root / "train.txt").write_text("spk/00001\n../outside/00009\n")
    before = _snapshot(tmp_path / "raw")
    _raises_one_line(
        "preprocess-lrs2 entry ../outside/00009",
        DataError,
        lambda: preprocess_lrs2(root, out, progress=False),
        "train.txt",
        "'../outside/00009'",
    )
    assert not (tmp_path / "outside").exists() and not out.exists()  # nothing written anywhere
    _kept(before)


def test_training_loader_refuses_filelist_entries_that_leave_the_root(tmp_path):
    import cv2
    import numpy as np

    from unetprune.data.aligned import DataError
    from unetprune.data.media import write_wav
    from unetprune.families.wav2lip.datasets import TalkingFaceDataset

    clip = tmp_path / "secret" / "00009"  # a complete clip folder outside the preprocessed root
    clip.mkdir(parents=True)
    for i in range(20):
        cv2.imwrite(str(clip / f"{i}.jpg"), np.full((32, 32, 3), i, np.uint8))
    write_wav(clip / "audio.wav", np.zeros(16000, np.float32), 16000)
    root = tmp_path / "pre"
    root.mkdir()
    for entry in ("../secret/00009", str(clip)):
        (root / "train.txt").write_text(f"{entry}\n")
        _raises_one_line(
            f"train.txt entry {entry}",
            DataError,
            lambda: TalkingFaceDataset(root, "train", img_size=32),
            "train.txt",
            repr(entry),
        )


# ---------------------------------------------------------------- outputs that are inputs


def test_lipsync_out_equal_to_or_linked_to_an_input_is_refused(lip, tmp_path, capsys):
    import shutil

    face, audio = tmp_path / "face.mp4", tmp_path / "talk.mp4"
    shutil.copy(lip / "face.mp4", face)
    shutil.copy(lip / "talk.mp4", audio)
    (tmp_path / "link.mp4").symlink_to(face)
    before = _snapshot(face, audio)
    for what, out in (
        ("--out = --face", face),
        ("--out = --audio", audio),
        ("--out a link to --face", tmp_path / "link.mp4"),
    ):
        _cli_refused(f"lipsync {what}", _lipsync_argv(lip, face, audio, out), capsys, str(out), "replaced")
    _kept(before)


def test_lse_and_standin_outputs_never_replace_an_input(lip, tmp_path, capsys):
    """``lse --out`` equal to (or a link to) its weights or a scored video, and
    ``train-lse-standin --out`` onto a file of its ``--data`` folder, are refused; nothing changes."""
    import shutil

    data = tmp_path / "data"
    data.mkdir()
    (data / "train.txt").write_text("clip0\n")
    video, weights = tmp_path / "talk.mp4", tmp_path / "S.pt"
    shutil.copy(lip / "talk.mp4", video)
    weights.write_bytes(b"stand-in weights")
    (tmp_path / "link.json").symlink_to(weights)
    before = _snapshot(data, video, weights)
    lse = ["lse", "--weights", str(weights), "--video", str(video)]
    for what, out in (
        ("weights", weights),
        ("video", video),
        ("a link to the weights", tmp_path / "link.json"),
    ):
        _cli_refused(f"lse --out = {what}", [*lse, "--out", str(out)], capsys, str(out), "replaced")
    out = data / "train.txt"
    _cli_refused(
        "train-lse-standin --out = a file of --data",
        ["train-lse-standin", "--data", str(data), "--out", str(out)],
        capsys,
        str(out),
        "replaced",
    )
    _kept(before)


def test_lse_video_has_the_media_limits(lip, capsys):
    """``lse --video`` probes each video against ``--max-*`` before anything is decoded."""
    for flag, value, needle in (
        ("--max-seconds", "0.5", "max_seconds"),
        ("--max-pixels", "100", "max_pixels"),
    ):
        _cli_refused(
            f"lse --video over {flag}",
            ["lse", "--weights", str(lip / "G.pt"), "--video", str(lip / "talk.mp4"), flag, value],
            capsys,
            "talk.mp4",
            needle,
            flag,
        )


def test_translate_over_an_input_folder_of_links_into_the_output_replaces_nothing(
    tmp_path, capsys, small_ckpt
):
    out = _inputs(tmp_path / "out", ("a.png", "b.png", "c.png", "d.png"))  # the real images
    inp = tmp_path / "in"
    inp.mkdir()
    for f in sorted(out.iterdir()):
        (inp / f.name).symlink_to(f)
    before = _snapshot(out)
    _cli_refused(
        "translate over input links into --output",
        ["translate", "--checkpoint", str(small_ckpt), "--input", str(inp), "--output", str(out)],
        capsys,
        "would replace the input",
    )
    _kept(before)


def test_prune_out_equal_to_its_checkpoint_is_refused(tmp_path, capsys, small_ckpt):
    import shutil

    ck = tmp_path / "g.pt"
    shutil.copy(small_ckpt, ck)
    before = _snapshot(ck)
    _cli_refused(
        "prune --out = --checkpoint",
        ["prune", "--checkpoint", str(ck), "--strategy", "cut", "--k", "1", "--out", str(ck)],
        capsys,
        str(ck),
        "replaced",
    )
    _kept(before)


# ---------------------------------------------------------------- full disk during train


def _tiny_train_argv(tiny_demo, tmp_path: Path) -> list[str]:
    import yaml

    cfg = {
        "experiment": "tiny",
        "seed": 7,
        "data": {"dataset": "folder", "root": str(tiny_demo), "load_size": 36, "crop_size": 32},
        "demo": {"image_size": 32},
        "model": {"pix2pix": {"num_downs": 5, "ngf": 4, "ndf": 4}},
        "train": {"n_epochs": 1, "n_epochs_decay": 0, "save_every": 1, "threads": 1, "eval_images": 2},
        "evaluate": {"fid_backend": "standin"},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    return ["train", "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run"), "--quiet"]


def test_full_disk_during_train_is_one_line_and_leaves_no_partial_file(
    tiny_demo, tmp_path, capsys, monkeypatch
):
    """The disk fills up while a checkpoint is written (a write fails with ENOSPC, which torch's
    C++ writer turns into a RuntimeError): one line naming the file, no partial file."""
    import errno

    from unetprune import fileio

    class Full:
        """The disk fills up after the first write (torch has begun its archive)."""

        def __init__(self, f):
            self.f, self.writes = f, 0

        def write(self, data):
            self.writes += 1
            if self.writes > 1:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.f.write(data)

        def flush(self):
            self.f.flush()

    real = fileio.atomic_write

    def filling(path, write):
        return real(path, (lambda f: write(Full(f))) if str(path).endswith(".pt") else write)

    monkeypatch.setattr(fileio, "atomic_write", filling)
    _cli_refused(
        "full disk during train", _tiny_train_argv(tiny_demo, tmp_path), capsys, "No space left", ".pt"
    )
    run = tmp_path / "run"
    assert not list(run.glob(".*.tmp")) and not list(run.glob("*.pt")), sorted(p.name for p in run.iterdir())


def test_file_size_limit_during_train_is_one_line_and_leaves_no_partial_file(tiny_demo, tmp_path):
    """``ulimit -f`` (RLIMIT_FSIZE) below the checkpoint's size: torch's writer fails inside its
    C++ stream; the command says so in one line naming the file."""
    import resource
    import sys

    argv = _tiny_train_argv(tiny_demo, tmp_path)

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (16_384, 16_384))

    rc, err, _ = _run_child([sys.executable, "-m", "unetprune.cli", *argv], 300, preexec_fn=limit)
    line = _one_error_line("ulimit -f during train", rc, err)
    _refused("file size limit during train", line, "File too large", ".pt")
    run = tmp_path / "run"
    assert not list(run.glob(".*.tmp")) and not list(run.glob("*.pt")), sorted(p.name for p in run.iterdir())


# ---------------------------------------------------------------- numbers out of range


@pytest.mark.parametrize("size", ["0", "-1"])
def test_lipsync_batch_size_below_one_is_refused(lip, tmp_path, capsys, size):
    from unetprune.cli import main
    from unetprune.families.wav2lip.lipsync import LipSyncError, lipsync

    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(
            _lipsync_argv(lip, lip / "face.mp4", lip / "speech.wav", tmp_path / "o.mp4", "--batch-size", size)
        )
    err = capsys.readouterr().err
    errors = [ln for ln in err.splitlines() if "error" in ln]
    assert e.value.code == 2 and len(errors) == 1, err
    _refused(f"lipsync --batch-size {size}", errors[0], "--batch-size", "at least 1")
    _raises_one_line(
        f"lipsync(batch_size={size})",
        LipSyncError,
        lambda: lipsync(
            lip / "G.pt", lip / "face.mp4", lip / "speech.wav", tmp_path / "o.mp4", batch_size=int(size)
        ),
        "batch size",
    )
    assert not (tmp_path / "o.mp4").exists()


@pytest.mark.parametrize(
    "text,key",
    [
        ("train:\n  lr: 1.0e+308\n", "train.lr"),
        ("train:\n  lr: 1.5\n", "train.lr"),
        ("finetune:\n  lr: 1.0\n", "finetune.lr"),
        ("train:\n  expert:\n    lr: 1.0e+308\n", "train.expert.lr"),
        ("data:\n  media:\n    max_seconds: 0\n", "data.media.max_seconds"),
    ],
)
def test_numbers_out_of_range_refused_naming_the_key(tmp_path, capsys, text, key):
    p = tmp_path / "c.yaml"
    p.write_text("experiment: x\n" + text)
    _cli_refused(f"config {text.strip()!r}", ["config", "check", str(p)], capsys, f"config error at '{key}'")


def test_yaml_exponent_without_a_dot_is_a_number(tmp_path):
    """``lr: 1e-3`` (YAML 1.1 would read a string) is 0.001: in a config file, a --set value,
    and a config read by another YAML 1.1 loader (Snakemake's --configfile)."""
    from unetprune.config import load_config, validate

    p = tmp_path / "c.yaml"
    p.write_text("experiment: x\ntrain:\n  lr: 1e-3\n  expert:\n    lr: 5E-5\nfinetune:\n  lr: 2e-4\n")
    cfg = load_config(p)
    assert (
        cfg["train"]["lr"] == 0.001 and cfg["train"]["expert"]["lr"] == 5e-5 and cfg["finetune"]["lr"] == 2e-4
    )
    assert load_config(None, ["experiment=x", "train.lr=3e-4"])["train"]["lr"] == 3e-4
    assert validate({"experiment": "x", "train": {"lr": "1e-3"}})["train"]["lr"] == 0.001


def test_cli_learning_rate_and_batch_flags_have_the_schema_ranges(capsys):
    from unetprune.cli import main

    for flag, value in (("--lr", "1.0e+308"), ("--lr", "nan"), ("--batch", "0"), ("--steps", "-1")):
        capsys.readouterr()
        with pytest.raises(SystemExit) as e:
            main(["train-lse-standin", "--data", "x", "--out", "y.pt", flag, value])
        err = capsys.readouterr().err
        errors = [ln for ln in err.splitlines() if "error" in ln]
        assert e.value.code == 2 and len(errors) == 1, err
        _refused(f"train-lse-standin {flag} {value}", errors[0], flag)


# ---------------------------------------------------------------- the summary


def test_zz_hostile_summary():
    """Every hostile input tried was refused with one line; no code ran, no input was lost, no
    command hung (the line itself is printed at the end of the run by tests/conftest.py)."""
    h = HOSTILE
    line = hostile_summary()
    print(line)
    assert h["tried"] == h["refused"] and h["tried"] > 0, line
    assert h["executed"] == h["lost"] == h["hangs"] == 0, line
