"""The kill/resume harness: train a config through the CLI once uninterrupted and once killed
with SIGKILL after its first checkpoint (stopped with SIGSTOP the moment a new state appears, so
the state it is killed at is the one inspected) and resumed; the caller compares the two final
checkpoints (:func:`assert_equal_tensors`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

from unetprune.checkpoint import CheckpointError, load_checkpoint
from unetprune.layout import CHECKPOINT_NAME, RESUME_NAME


def run_cli_train(cfg_path: Path, out: Path, *extra: str) -> subprocess.Popen:
    """``unetprune train --config cfg_path --out out --quiet *extra`` in a subprocess (one thread)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "unetprune.cli",
            "train",
            "--config",
            str(cfg_path),
            "--out",
            str(out),
            "--quiet",
            *extra,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def kill_and_resume(
    cfg: dict, tmp_path: Path, n_epochs: int, *extra: str, timeout: float = 600, mid_epoch: bool = False
) -> tuple[dict, dict]:
    """(the uninterrupted run's final checkpoint, the killed-and-resumed run's).  Checks that the
    kill came after a checkpoint and before the end, that the resumed run finished all
    ``n_epochs`` and recorded the resume, and that no resume state or temporary file is left.
    ``mid_epoch``: kill once the resume state is one written inside an epoch
    (``train.save_every_steps``), and check that the run resumed at its step."""
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    full, killed = tmp_path / "full", tmp_path / "killed"
    p = run_cli_train(cfg_path, full, *extra)
    assert p.wait(timeout=timeout) == 0, p.stderr.read().decode()

    p = run_cli_train(cfg_path, killed, *extra)
    ckpt = killed / RESUME_NAME
    deadline = time.time() + timeout
    seen = None  # (mtime, size) of the last resume state inspected

    def stopped_at_a_wanted_state() -> bool:
        """Whether the run, stopped (SIGSTOP) as soon as a new resume state appears, holds one
        to kill it at; the state cannot change while it is inspected.  Otherwise it continues."""
        nonlocal seen
        try:
            st = ckpt.stat()
        except FileNotFoundError:
            return False
        if (st.st_mtime_ns, st.st_size) == seen:
            return False
        try:
            os.kill(p.pid, signal.SIGSTOP)
        except ProcessLookupError:
            return False  # it has just ended
        try:
            st = ckpt.stat()
            seen = (st.st_mtime_ns, st.st_size)
            if not mid_epoch or load_checkpoint(ckpt).get("epoch_progress") is not None:
                return True
        except (OSError, CheckpointError):
            pass  # the run ended and renamed its state between the two looks
        os.kill(p.pid, signal.SIGCONT)
        return False

    while time.time() < deadline and p.poll() is None and not stopped_at_a_wanted_state():
        time.sleep(0.005)
    assert p.poll() is None, "run finished before it could be killed"
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    state = load_checkpoint(ckpt)
    epoch_at_kill = state["epoch"]
    if mid_epoch:
        assert state.get("epoch_progress") is not None and 0 <= epoch_at_kill < n_epochs
        step_at_kill = json.loads(state["log"])["global_step"]
    else:
        assert 1 <= epoch_at_kill < n_epochs

    p = run_cli_train(cfg_path, killed, "--resume", *extra)
    assert p.wait(timeout=timeout) == 0, p.stderr.read().decode()
    assert not ckpt.exists()  # renamed to checkpoint.pt at the end
    assert not [f for f in killed.iterdir() if f.name.endswith(".tmp")]  # no temporaries of the atomic writes
    a, b = load_checkpoint(full / CHECKPOINT_NAME), load_checkpoint(killed / CHECKPOINT_NAME)
    log_b = json.loads(b["log"])
    assert b["epoch"] == n_epochs and log_b["resumed_at_epoch"] == [epoch_at_kill]
    assert "epoch_progress" not in b  # a finished run's checkpoint is an epoch-end state
    if mid_epoch:
        assert log_b["resumed_at_step"] == [step_at_kill]
        assert json.loads(a["log"])["epochs"] == [
            {**e, "seconds": a_e["seconds"], "images_per_s": a_e["images_per_s"]}
            for e, a_e in zip(log_b["epochs"], json.loads(a["log"])["epochs"])
        ]  # the interrupted epoch's mean losses and image count continue where they were
    return a, b


def assert_equal_tensors(x, y, where: str = "") -> None:
    """``x`` and ``y`` (nested dicts, lists, tensors, plain values) are equal, tensors bitwise."""
    if isinstance(x, torch.Tensor):
        assert torch.equal(x, y), f"{where} differs after resume"
    elif isinstance(x, dict):
        assert x.keys() == y.keys(), where
        for k in x:
            assert_equal_tensors(x[k], y[k], f"{where}.{k}")
    elif isinstance(x, (list, tuple)):
        assert len(x) == len(y), where
        for i, (u, v) in enumerate(zip(x, y)):
            assert_equal_tensors(u, v, f"{where}[{i}]")
    else:
        assert x == y, where
