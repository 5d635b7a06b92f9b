"""Which code a job runs: a digest of the package modules a command imports.

Snakemake reruns a job when its ``params`` change, but not when the Python code that
the job's shell command runs changes.  Each rule therefore carries, as a param, the
digest of the source files its ``unetprune`` command can import (the transitive closure
of the package-internal ``import`` statements of the command module, lazy imports inside
functions included, plus the parent packages Python executes on the way).  Editing
``pruning/surgery.py`` changes the digest of ``prune``, ``sweep`` and everything that
imports pruning, and of nothing else::

    code_digest("unetprune.commands.prune")   # 'sha256:…' of its closure
    code_modules("unetprune.commands.train")  # the module names in that closure
"""

from __future__ import annotations

import ast
import hashlib
from functools import lru_cache
from pathlib import Path

PACKAGE = "unetprune"
ROOT = Path(__file__).resolve().parent


def _module_file(name: str) -> Path | None:
    """Source file of a package module (``unetprune.x.y``), or None if it is not one."""
    if name != PACKAGE and not name.startswith(PACKAGE + "."):
        return None
    rel = Path(*name.split(".")[1:])
    pkg = ROOT / rel / "__init__.py"
    if pkg.is_file():
        return pkg
    if (ROOT / rel).is_dir() and any((ROOT / rel).glob("*.py")):
        return ROOT / rel  # a namespace package (no __init__.py): nothing of its own runs
    mod = (ROOT / rel).with_suffix(".py")
    return mod if mod.is_file() else None


def _imports(name: str, path: Path) -> set[str]:
    """Package-internal modules imported anywhere in ``path`` (module ``name``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_pkg = path.name == "__init__.py"
    here = name.split(".") if is_pkg else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.add(mod)
            found.update(f"{mod}.{a.name}" for a in node.names)  # `from . import pipeline`
    out = set()
    for m in found:
        parts = m.split(".")
        # the module and every parent package Python runs on the way
        for i in range(1, len(parts) + 1):
            sub = ".".join(parts[:i])
            if _module_file(sub) is not None:
                out.add(sub)
    return out


@lru_cache(maxsize=None)
def code_modules(*entry: str) -> tuple[str, ...]:
    """Sorted names of the package modules reachable from ``entry`` modules by imports."""
    todo, seen = list(entry), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = _module_file(name)
        if path is None:
            raise ValueError(f"{name} is not a module of the {PACKAGE} package")
        seen.add(name)
        if path.is_file():
            todo.extend(_imports(name, path) - seen)
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) not in seen)
    return tuple(sorted(seen))


def code_digest(*entry: str) -> str:
    """``sha256:<hex>`` over the names and bytes of every module in ``code_modules(*entry)``
    and the package data files they read (the config schema)."""
    h = hashlib.sha256()
    for name in code_modules(*entry):
        path = _module_file(name)
        h.update(name.encode() + b"\0" + (path.read_bytes() if path.is_file() else b"") + b"\0")
    for data in sorted(ROOT.glob("*.yaml")):
        h.update(data.name.encode() + b"\0" + data.read_bytes() + b"\0")
    return "sha256:" + h.hexdigest()


def utc_now_iso() -> str:
    """The current UTC time, ISO-8601 to the second: the ``started_at`` / ``finished_at`` that
    training and evaluation records carry (the MLflow runs' times come from them)."""
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat(timespec="seconds")
