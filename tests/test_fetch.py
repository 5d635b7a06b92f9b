"""Dataset fetching, offline: a local HTTP server with Range support serves archives the tests
build; downloads resume, checksums are locked and checked, failures leave nothing half-done."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import socket
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unetprune.cli import main
from unetprune.data.aligned import DataError
from unetprune.data.archive import UnsafeArchiveError
from unetprune.data.fetch import (
    LOCK_NAME,
    ChecksumMismatch,
    DownloadError,
    fetch_dataset,
    read_lock,
    sha256_file,
    tree_sha256,
    verify_dataset,
)

SPLIT_SIZES = {"train": 3, "val": 2, "test": 1}


def _png(seed: int, w: int = 32, h: int = 16) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def make_dataset_archive(
    path: Path,
    top: str = "facades",
    sizes: dict[str, int] = SPLIT_SIZES,
    extra: list[tuple[str, bytes]] = (),
    seed: int = 0,
    wh: tuple[int, int] = (32, 16),
) -> Path:
    """A deterministic pix2pix-style tar.gz: <top>/<split>/<i>.png aligned A|B images (+ extra members)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tf:
        members = [
            (f"{top}/{split}/{i + 1}.png", _png(seed * 1000 + 10 * k + i, *wh))
            for k, (split, n) in enumerate(sizes.items())
            for i in range(n)
        ]
        for name, data in [*members, *extra]:
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(data), 0o644, 0
            tf.addfile(ti, io.BytesIO(data))
    with open(path, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0) as gz:
        gz.write(raw.getvalue())
    return path


class RangeHandler(BaseHTTPRequestHandler):
    """Serves ``server.files`` with single ``bytes=N-`` / ``bytes=N-M`` ranges and an ETag;
    ``server.cut_after[path] = n`` closes the connection after n body bytes, once."""

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        srv = self.server
        srv.requests.append(
            {"path": self.path, "range": self.headers.get("Range"), "if_range": self.headers.get("If-Range")}
        )
        data = srv.files.get(self.path)
        if data is None:
            self.send_error(404, "Not Found")
            return
        etag = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
        rng = self.headers.get("Range")
        if rng and not srv.ignore_range and self.headers.get("If-Range") in (None, etag):
            first, _, last = rng.removeprefix("bytes=").partition("-")
            start, end = int(first), int(last) if last else len(data) - 1
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = data[start : end + 1]
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{start + len(body) - 1}/{len(data)}")
        else:
            body = data
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", etag)
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        cut = srv.cut_after.pop(self.path, None)
        if cut is not None:
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    srv.files, srv.requests, srv.cut_after, srv.ignore_range = {}, [], {}, False
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _listing(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def test_local_archive_gives_aligned_dataset_and_lock(tmp_path):
    arc = make_dataset_archive(tmp_path / "facades.tar.gz")
    digest = hashlib.sha256(arc.read_bytes()).hexdigest()
    root = tmp_path / "data" / "facades"
    res = fetch_dataset("facades", root, source=str(arc), progress=False)
    assert res.counts == {"train": 3, "val": 2, "test": 1} and res.sha256 == digest and not res.skipped
    assert _listing(root) == sorted(
        [
            LOCK_NAME,
            "test",
            "train",
            "val",
            "test/1.png",
            "train/1.png",
            "train/2.png",
            "train/3.png",
            "val/1.png",
            "val/2.png",
        ]
    )
    # no leftovers beside the dataset (no temporary folder, no download cache)
    assert _listing(tmp_path / "data") == ["facades", *[f"facades/{p}" for p in _listing(root)]]
    assert arc.exists()  # a local source is never deleted
    lock = read_lock(root)
    assert lock["dataset"] == "facades" and lock["source"] == str(arc)
    assert lock["archive"] == {"name": "facades.tar.gz", "sha256": digest, "size": arc.stat().st_size}
    assert lock["splits"] == {"train": 3, "val": 2, "test": 1}
    assert lock["tree_sha256"] == tree_sha256(root)
    # the installed bytes are the archive's bytes
    with tarfile.open(arc) as tf:
        assert (root / "val/2.png").read_bytes() == tf.extractfile("facades/val/2.png").read()
    assert verify_dataset(root, name="facades")["archive"]["sha256"] == digest
    # a changed file is caught by verify
    (root / "train/1.png").write_bytes(_png(999))
    with pytest.raises(ChecksumMismatch, match="sha256 mismatch for the files of"):
        verify_dataset(root)


def test_http_download_installs_and_cleans_up_and_second_fetch_skips(tmp_path, server):
    arc = make_dataset_archive(tmp_path / "src.tar.gz")
    server.files["/pix2pix/facades.tar.gz"] = arc.read_bytes()
    root = tmp_path / "data" / "facades"
    url = server.url + "/pix2pix/facades.tar.gz"
    res = fetch_dataset("facades", root, source=url, progress=False)
    assert res.sha256 == sha256_file(arc) and res.counts == {"train": 3, "val": 2, "test": 1}
    assert [r["range"] for r in server.requests] == [None]
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["facades"]  # download cache removed
    again = fetch_dataset("facades", root, source=url, progress=False)
    assert again.skipped and again.sha256 == res.sha256 and len(server.requests) == 1
    kept = fetch_dataset("facades", root, source=url, progress=False, force=True, keep_archive=True)
    assert kept.sha256 == res.sha256
    assert sha256_file(tmp_path / "data" / ".facades.download" / "facades.tar.gz") == res.sha256
    assert verify_dataset(root)["dataset"] == "facades"


def test_interrupted_download_resumes_with_range_and_same_sha256(tmp_path, server):
    arc = make_dataset_archive(tmp_path / "src.tar.gz")
    data = arc.read_bytes()
    half = len(data) // 2
    server.files["/facades.tar.gz"] = data
    server.cut_after["/facades.tar.gz"] = half
    root = tmp_path / "data" / "facades"
    url = server.url + "/facades.tar.gz"
    part = tmp_path / "data" / ".facades.download" / "facades.tar.gz.part"
    with pytest.raises(DownloadError) as exc:
        fetch_dataset("facades", root, source=url, retries=0, progress=False)
    msg = str(exc.value)
    assert f"the connection closed after {half} of {len(data)} bytes" in msg
    assert f"{half} bytes kept in {part}" in msg and "\n" not in msg
    assert part.stat().st_size == half and part.read_bytes() == data[:half]
    assert not root.exists()
    res = fetch_dataset("facades", root, source=url, retries=0, progress=False)
    etag = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
    assert server.requests[1] == {"path": "/facades.tar.gz", "range": f"bytes={half}-", "if_range": etag}
    assert res.sha256 == hashlib.sha256(data).hexdigest()
    assert read_lock(root)["archive"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert res.counts == {"train": 3, "val": 2, "test": 1}
    assert not part.exists()


def test_broken_connection_is_retried_within_one_fetch(tmp_path, server):
    data = make_dataset_archive(tmp_path / "src.tar.gz").read_bytes()
    server.files["/facades.tar.gz"] = data
    server.cut_after["/facades.tar.gz"] = 1000
    res = fetch_dataset(
        "facades",
        tmp_path / "facades",
        source=server.url + "/facades.tar.gz",
        retries=2,
        backoff=0.0,
        progress=False,
    )
    assert [r["range"] for r in server.requests] == [None, "bytes=1000-"]
    assert res.sha256 == hashlib.sha256(data).hexdigest()


def test_server_ignoring_range_restarts_cleanly(tmp_path, server):
    data = make_dataset_archive(tmp_path / "src.tar.gz").read_bytes()
    server.files["/facades.tar.gz"] = data
    server.cut_after["/facades.tar.gz"] = 777
    server.ignore_range = True
    res = fetch_dataset(
        "facades",
        tmp_path / "facades",
        source=server.url + "/facades.tar.gz",
        retries=1,
        backoff=0.0,
        progress=False,
    )
    assert [r["range"] for r in server.requests] == [None, "bytes=777-"]
    assert res.sha256 == hashlib.sha256(data).hexdigest()  # the 200 reply overwrote, not appended


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_clear_error_and_nothing_left(tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}/pix2pix/datasets/facades.tar.gz"
    root = tmp_path / "data" / "facades"
    with pytest.raises(DownloadError) as exc:
        fetch_dataset("facades", root, source=url, retries=1, backoff=0.0, progress=False)
    msg = str(exc.value)
    assert msg.startswith(f"cannot download {url} after 2 attempt(s): cannot reach the server")
    assert (
        f"download it by hand from {url} and run `unetprune data fetch facades --from FILE --root {root}`"
    ) in msg
    assert "\n" not in msg
    assert list(tmp_path.iterdir()) == []  # not even the parent folder


def test_http_404_is_not_retried(tmp_path, server):
    with pytest.raises(DownloadError, match=r"the server answered HTTP 404"):
        fetch_dataset(
            "maps", tmp_path / "maps", source=server.url + "/nope.tar.gz", retries=3, progress=False
        )
    assert len(server.requests) == 1
    assert list(tmp_path.iterdir()) == []


def test_checksum_mismatch_stops_with_both_hashes(tmp_path, server):
    first = make_dataset_archive(tmp_path / "a.tar.gz")
    changed = make_dataset_archive(tmp_path / "b.tar.gz", seed=1)
    good, bad = sha256_file(first), sha256_file(changed)
    root = tmp_path / "data" / "facades"
    fetch_dataset("facades", root, source=str(first), progress=False)
    tree = tree_sha256(root)
    # a later fetch of a different archive (here over HTTP) is stopped by the lock file
    server.files["/facades.tar.gz"] = changed.read_bytes()
    with pytest.raises(ChecksumMismatch) as exc:
        fetch_dataset("facades", root, source=server.url + "/facades.tar.gz", force=True, progress=False)
    msg = str(exc.value)
    assert f"expected {good} (recorded in {root / LOCK_NAME}), got {bad}" in msg
    assert tree_sha256(root) == tree and read_lock(root)["archive"]["sha256"] == good  # old data intact
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["facades"]  # bad download deleted
    # an explicitly requested hash is checked on the first fetch too
    with pytest.raises(ChecksumMismatch, match=f"expected {'0' * 64} \\(requested\\), got {good}"):
        fetch_dataset("facades", tmp_path / "other", source=str(first), sha256="0" * 64, progress=False)
    assert not (tmp_path / "other").exists()


def test_hostile_archive_refused_and_nothing_written_outside(tmp_path):
    arc = make_dataset_archive(tmp_path / "evil.tar.gz", extra=[("facades/../../../escaped.txt", b"pwned")])
    root = tmp_path / "data" / "facades"
    with pytest.raises(
        UnsafeArchiveError, match=r"member 'facades/\.\./\.\./\.\./escaped\.txt' has a '\.\.' "
    ):
        fetch_dataset("facades", root, source=str(arc), progress=False)
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "data" / "escaped.txt").exists()
    assert _listing(tmp_path / "data") == []  # no dataset, no temporary folder


def test_misshapen_dataset_is_rejected_without_partial_folder(tmp_path):
    square = make_dataset_archive(tmp_path / "sq.tar.gz", wh=(16, 16))
    with pytest.raises(DataError, match="width = 2 x height, got 16x16"):
        fetch_dataset("facades", tmp_path / "data" / "facades", source=str(square), progress=False)
    assert _listing(tmp_path / "data") == []
    no_test = make_dataset_archive(tmp_path / "nt.tar.gz", sizes={"train": 1, "val": 1})
    with pytest.raises(DataError, match="has no 'test/' folder"):
        fetch_dataset("facades", tmp_path / "data" / "facades", source=str(no_test), progress=False)
    assert _listing(tmp_path / "data") == []


def test_refuses_foreign_folder_and_gated_cityscapes(tmp_path):
    root = tmp_path / "mine"
    root.mkdir()
    (root / "notes.txt").write_text("keep me")
    arc = make_dataset_archive(tmp_path / "f.tar.gz")
    with pytest.raises(DataError, match="is not a dataset fetched by unetprune"):
        fetch_dataset("facades", root, source=str(arc), progress=False)
    assert (root / "notes.txt").read_text() == "keep me"
    with pytest.raises(
        DataError,
        match=r"licence-gated.*https://www.cityscapes-dataset.com/downloads/.*"
        r"prepare-cityscapes --zips DIR",
    ):
        fetch_dataset("cityscapes", tmp_path / "cs")
    # a pix2pix-format cityscapes.tar.gz the user has goes through --from (train + val only)
    cs = make_dataset_archive(tmp_path / "cityscapes.tar.gz", top="cityscapes", sizes={"train": 2, "val": 1})
    assert fetch_dataset("cityscapes", tmp_path / "cs", source=cs.as_uri(), progress=False).counts == {
        "train": 2,
        "val": 1,
    }


def test_cli_fetch_verify_and_one_line_errors(tmp_path, capsys):
    arc = make_dataset_archive(tmp_path / "facades.tar.gz")
    root = tmp_path / "facades"
    assert main(["data", "fetch", "facades", "--from", str(arc), "--root", str(root), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out == (
        f"facades installed at {root}: train 3, val 2, test 1 images; archive sha256 {sha256_file(arc)}\n"
    )
    assert main(["data", "verify", "--root", str(root), "--name", "facades"]) == 0
    assert "matches its lock file: train 3, val 2, test 1 images" in capsys.readouterr().out
    lock = json.loads((root / LOCK_NAME).read_text())
    assert lock["format"] == "unetprune-data-lock"

    evil = make_dataset_archive(tmp_path / "evil.tar.gz", extra=[("/abs/evil.txt", b"x")])
    assert (
        main(
            ["data", "fetch", "maps", "--from", str(evil), "--root", str(tmp_path / "maps"), "--no-progress"]
        )
        == 2
    )
    err_lines = capsys.readouterr().err.splitlines()  # progress notes, then the one-line error
    assert [line for line in err_lines if "error" in line] == err_lines[-1:]
    assert err_lines[-1].startswith(
        "unetprune data: error: refusing to extract evil.tar.gz: member '/abs/evil.txt' has an absolute path"
    )
    assert not (tmp_path / "maps").exists()
    assert main(["data", "verify", "--root", str(tmp_path / "maps")]) == 2
    assert "has no dataset.lock.json" in capsys.readouterr().err
