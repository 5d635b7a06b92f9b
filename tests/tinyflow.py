"""A git + DVC project holding the tiny workflow's results, shared by the slow tests of the
Snakemake report (test_snakemake_report.py) and of DVC (test_dvc.py).

``tiny_project(tmp_path_factory)`` builds it once per pytest run (a marker file in the
run's base temp folder): the workflow files are copied into a fresh git repository,
``dvc init``, the tiny experiment registered in ``config/dvc_experiments.yaml``, then ONE
``dvc repro workflow@tiny`` runs the whole tiny Snakemake workflow (train, sweep, prune,
fine-tune, evaluate, report, MLflow), the result is committed (git: ``dvc.lock``; DVC: every
output) and pushed to a local DVC remote next to the repository.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
EXPERIMENT = "tiny"
CONFIG = "config/tiny.yaml"
STAGE = f"workflow@{EXPERIMENT}"


@dataclass(frozen=True)
class TinyProject:
    repo: Path  # the git + DVC repository (the workflow ran here)
    remote: Path  # the local DVC remote it pushed to
    env: dict  # environment of every command: the venv's tools, the copy's package
    repro_seconds: float

    def run(
        self, *args, cwd: Path | None = None, check: bool = True, env: dict | None = None
    ) -> subprocess.CompletedProcess:
        return run(list(args), cwd or self.repo, env or self.env, check)


def env_for(src: Path) -> dict:
    """The venv's tools first on PATH; ``src`` (a copy of the package) first on the Python path."""
    return {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "OMP_NUM_THREADS": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "PYTHONPATH": str(src),
        "GIT_AUTHOR_NAME": "test",
        "GIT_AUTHOR_EMAIL": "test@example.invalid",
        "GIT_COMMITTER_NAME": "test",
        "GIT_COMMITTER_EMAIL": "test@example.invalid",
    }


def run(args: list, cwd: Path, env: dict, check: bool = True) -> subprocess.CompletedProcess:
    exe = str(BIN / args[0]) if (BIN / args[0]).exists() else args[0]
    p = subprocess.run(
        [exe, *map(str, args[1:])], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    if check and p.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, args))} failed ({p.returncode}):\n{p.stdout[-4000:]}\n{p.stderr[-4000:]}"
        )
    return p


def copy_project(dest: Path) -> Path:
    """The files a user's clone has (workflow, package, configs, DVC and git settings)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("Snakefile", "dvc.yaml", ".gitignore", ".dvcignore", "pyproject.toml", "README.md"):
        if (REPO / name).exists():
            shutil.copy(REPO / name, dest / name)
    for name in ("workflow", "config", "profiles", "src"):
        shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return dest


def register(repo: Path, experiments: dict[str, str]) -> None:
    """Put ``experiments`` (name -> config) under DVC (config/dvc_experiments.yaml)."""
    path = repo / "config" / "dvc_experiments.yaml"
    reg = yaml.safe_load(path.read_text())
    reg["experiments"] = experiments
    reg["talking"] = {}  # the tests' repository holds only these experiments
    path.write_text(yaml.safe_dump(reg, sort_keys=False))


def build(root: Path) -> TinyProject:
    repo, remote = root / "repo", root / "remote"
    copy_project(repo)
    env = env_for(repo / "src")
    run(["git", "init", "-q", "-b", "main"], repo, env)
    run(["dvc", "init", "-q"], repo, env)
    run(["dvc", "config", "core.analytics", "false"], repo, env)
    register(repo, {EXPERIMENT: CONFIG})
    t0 = time.perf_counter()
    out = run(["dvc", "repro", STAGE], repo, env).stdout
    seconds = time.perf_counter() - t0
    assert f"Running stage '{STAGE}'" in out, out
    run(["dvc", "remote", "add", "-d", "store", str(remote)], repo, env)
    run(["git", "add", "-A"], repo, env)
    run(["git", "commit", "-q", "-m", "tiny experiment"], repo, env)
    run(["dvc", "push", "-q"], repo, env)
    return TinyProject(repo, remote, env, seconds)


def tiny_project(tmp_path_factory) -> TinyProject:
    """The project, built once per pytest run."""
    root = tmp_path_factory.getbasetemp() / "tiny-dvc-project"
    done = root / ".done"
    if not done.exists():
        if root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True)
        project = build(root)
        done.write_text(f"{project.repro_seconds:.1f}\n")
    repo = root / "repo"
    return TinyProject(repo, root / "remote", env_for(repo / "src"), float(done.read_text()))
