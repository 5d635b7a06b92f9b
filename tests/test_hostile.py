"""Hostile inputs of issue 11 (items 1, 7, 11): each test reproduces an attack that worked on the
old code — a weights file that runs code when unpickled, an experiment name that escapes
results/, leftovers of a killed run — and checks it is refused (one line, naming the file or key)
or cleaned up."""

from __future__ import annotations

import ast
import os
import pickle
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
    assert not marker.exists()


def test_poisoned_cached_standin_weights_refused_without_running_code(tmp_path):
    marker = tmp_path / "PWNED"
    # the file standin_weights() would reuse from the (DVC-shared) cache folder
    path = tmp_path / f"standin-inception-v3-s{F.STANDIN_INPUT_SIZE}-seed0.pt"
    _poisoned(path, marker)
    with pytest.raises(F.FIDError) as e:
        F.get_extractor("standin", seed=0, cache_dir=tmp_path)
    assert "\n" not in str(e.value) and str(path) in str(e.value)
    assert not marker.exists()
    # the same file handed explicitly, and through torch-fidelity's own folder computation
    with pytest.raises(F.FIDError):
        F.get_extractor("standin", weights=path, seed=0, cache_dir=tmp_path / "other")
    assert not marker.exists()
    with pytest.raises(F.FIDError):
        F.load_weights_file(path)
    assert not marker.exists()


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
    assert not marker.exists()


def test_wrong_state_dict_refused_with_one_line(tmp_path):
    path = tmp_path / "w.pt"
    torch.save({"not.a.layer": torch.zeros(3)}, path)
    with pytest.raises(F.FIDError) as e:
        F.get_extractor("inception-v3-compat", weights=path)
    assert "\n" not in str(e.value) and str(path) in str(e.value)


def _torch_load_calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load" \
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch":
            yield node


def test_every_torch_load_in_src_is_weights_only():
    checked, bad = 0, []
    for py in sorted(SRC.rglob("*.py")):
        text = py.read_text()
        for call in _torch_load_calls(ast.parse(text)):
            checked += 1
            kw = {k.arg: k.value for k in call.keywords}
            val = kw.get("weights_only")
            if not (isinstance(val, ast.Constant) and val.value is True):
                bad.append(f"{py.relative_to(SRC)}:{call.lineno}")
        # nothing unpickles directly either
        assert "pickle.load(" not in text and "pickle.loads(" not in text, py
    assert checked >= 3 and not bad, f"torch.load without weights_only=True: {bad}"


# ---------------------------------------------------------------- item 7: experiment names

@pytest.mark.parametrize("name", ["..", ".", "../x", "a/../..", "/tmp/x", "a..b", ".hidden", "-x", "x.", ""])
def test_experiment_names_that_escape_results_are_refused(name):
    with pytest.raises(ConfigError) as e:
        validate({"experiment": name})
    assert "'experiment'" in str(e.value)


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
        p.write_bytes(b"\0" * 1024)   # what kill -9 during atomic_torch_save leaves
    cfg = load_config(None, {
        "experiment": "tiny", "seed": 7,
        "data": {"dataset": "folder", "root": str(tiny_demo), "load_size": 36, "crop_size": 32},
        "demo": {"image_size": 32}, "model": {"num_downs": 5, "ngf": 4, "ndf": 4},
        "train": {"n_epochs": 1, "n_epochs_decay": 0, "save_every": 1, "threads": 1, "log_every": 2,
                  "eval_images": 2},
        "evaluate": {"fid_backend": "standin"}})
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
