"""Which code a job runs: a digest of the package modules a command imports.

Snakemake reruns a job when its ``params`` change, but not when the Python code that
the job's shell command runs changes.  Each rule therefore carries, as a param, the
digest of the source files its ``unetprune`` command can import (the transitive closure
of the package-internal ``import`` statements of the command module, lazy imports inside
functions included, plus the parent packages Python executes on the way).  Editing
``pruning/surgery.py`` changes the digest of ``prune``, ``sweep`` and everything that
imports pruning, and of nothing else::

    code_digest("unetprune.commands.prune")   # 'sha256:…' of its closure
    code_digest("unetprune.commands.train", "unetprune.families.wav2lip.family")   # + a family
    code_modules("unetprune.commands.train")  # the module names in that closure
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
from functools import lru_cache
from pathlib import Path

PACKAGE = "unetprune"
ROOT = Path(__file__).resolve().parent


@lru_cache(maxsize=None)
def _package_root(top: str) -> Path | None:
    """The folder of the top-level package ``top`` (this package, or one that provides a model
    family through an entry point), or None if it is not importable from source."""
    if top == PACKAGE:
        return ROOT
    spec = importlib.util.find_spec(top)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))).resolve()


def _module_file(name: str, tops: frozenset[str] = frozenset({PACKAGE})) -> Path | None:
    """Source file of a module of one of the top-level packages ``tops`` (``unetprune.x.y``), or
    None if it is not one."""
    top, *rest = name.split(".")
    root = _package_root(top) if top in tops else None
    if root is None:
        return None
    rel = Path(*rest) if rest else Path()
    pkg = root / rel / "__init__.py"
    if pkg.is_file():
        return pkg
    if (root / rel).is_dir() and any((root / rel).glob("*.py")):
        return root / rel  # a namespace package (no __init__.py): nothing of its own runs
    mod = (root / rel).with_suffix(".py")
    return mod if rest and mod.is_file() else None


def _module_level(tree: ast.Module):
    """The nodes of a module that run when it is imported (function bodies excluded)."""
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        yield node
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            todo.extend(ast.iter_child_nodes(node))


def _imports(name: str, path: Path, tops: frozenset[str], module_level: bool = False) -> set[str]:
    """Modules of the packages ``tops`` imported anywhere in ``path`` (module ``name``), or only
    by the statements that run at import (``module_level``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_pkg = path.name == "__init__.py"
    here = name.split(".") if is_pkg else name.split(".")[:-1]
    found: set[str] = set()
    for node in _module_level(tree) if module_level else ast.walk(tree):
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
            if _module_file(sub, tops) is not None:
                out.add(sub)
    return out


@lru_cache(maxsize=None)
def code_modules(*entry: str) -> tuple[str, ...]:
    """Sorted names of the modules reachable from ``entry`` modules by imports, within this
    package and the packages of the entries (a model family installed from another package)."""
    tops = frozenset({PACKAGE} | {e.split(".")[0] for e in entry})
    todo, seen = list(entry), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = _module_file(name, tops)
        if path is None:
            raise ValueError(f"{name} is not a module of the {', '.join(sorted(tops))} package(s)")
        seen.add(name)
        if path.is_file():
            todo.extend(_imports(name, path, tops) - seen)
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) not in seen)
    return tuple(sorted(seen))


@lru_cache(maxsize=None)
def family_modules(family_module: str, exclude: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The code a job runs through a model family: the family module and the modules of its
    package that it imports, lazily or not (but ``exclude``, e.g. the family's pruning
    operations for a job that does not prune), and the core modules they import when they are
    imported.  The core modules a family imports inside its methods are not followed: the ones
    a job uses are in its command's own closure (:func:`code_modules`)."""
    top = family_module.split(".")[0]
    tops = frozenset({PACKAGE, top})
    package = family_module.rsplit(".", 1)[0]
    todo, seen = [family_module], set()
    while todo:
        name = todo.pop()
        if name in seen or name in exclude:
            continue
        path = _module_file(name, tops)
        if path is None:
            continue
        seen.add(name)
        if path.is_file():
            inside = {m for m in _imports(name, path, tops) if m == package or m.startswith(package + ".")}
            todo.extend((inside | _imports(name, path, tops, module_level=True)) - seen)
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))
    return tuple(sorted(seen))


def _data_files(name: str, tops: frozenset[str]) -> list[Path]:
    """The YAML files (schema fragments) beside a package's ``__init__.py``."""
    path = _module_file(name, tops)
    return sorted(path.parent.glob("*.yaml")) if path is not None and path.name == "__init__.py" else []


def code_digest(*entry: str, extra: tuple[str, ...] = ()) -> str:
    """``sha256:<hex>`` over the names and bytes of every module in ``code_modules(*entry)``
    plus the modules ``extra`` (e.g. :func:`family_modules`), and the package data files they
    read (the config schema, a family's schema fragment)."""
    h = hashlib.sha256()
    tops = frozenset({PACKAGE} | {e.split(".")[0] for e in (*entry, *extra)})
    for name in sorted(set(code_modules(*entry)) | set(extra)):
        path = _module_file(name, tops)
        h.update(name.encode() + b"\0" + (path.read_bytes() if path.is_file() else b"") + b"\0")
    names = set(code_modules(*entry)) | set(extra)
    for data in sorted({*ROOT.glob("*.yaml"), *(p for name in names for p in _data_files(name, tops))}):
        h.update(data.name.encode() + b"\0" + data.read_bytes() + b"\0")
    return "sha256:" + h.hexdigest()


def utc_now_iso() -> str:
    """The current UTC time, ISO-8601 to the second: the ``started_at`` / ``finished_at`` that
    training and evaluation records carry (the MLflow runs' times come from them)."""
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat(timespec="seconds")
