"""The package is a clean stack and its core names no model family (read from the source, no
imports): the import graph of ``src/unetprune`` (function-level imports included) has no cycle;
a family's network modules import only torch, the standard library and the lowest utilities;
no core module imports ``unetprune.families``; a family package's ``__init__`` imports nothing;
no family name appears as a string literal in the core or as a switch in the workflow."""

from __future__ import annotations

import ast
import re
import sys
from functools import lru_cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
PKG = SRC / "unetprune"
FAMILY_NAMES = ("pix2pix", "wav2lip")  # the built-in families
NETWORK_MODULES = ("unet.py", "patchgan.py", "networks.py", "syncnet.py")
NETWORK_MAY_IMPORT = ("torch", "unetprune.errors", "unetprune.weights", "unetprune.metrics.complexity")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@lru_cache(maxsize=None)
def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


@lru_cache(maxsize=None)
def tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), str(path))


def imported(name: str) -> list[tuple[str, int]]:
    """``(absolute module, line)`` of every import statement of module ``name``, at any depth;
    ``from X import y`` gives ``X.y`` where that is a module of the package, else ``X``."""
    path = modules()[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(tree(path)):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in modules()]
            out += (
                [(s, node.lineno) for s in subs]
                if len(subs) == len(node.names)
                else [(target, node.lineno)] + [(s, node.lineno) for s in subs]
            )
    return out


def graph() -> dict[str, set[str]]:
    """Edges between the package's modules (an import of ``a.b.c`` that is no module: ``a.b``)."""
    mods = modules()
    g: dict[str, set[str]] = {m: set() for m in mods}
    for m in mods:
        for target, _ in imported(m):
            while target and target not in mods:
                target = target.rpartition(".")[0]
            if target and target != m and target.startswith("unetprune"):
                g[m].add(target)
    return g


def strongly_connected(g: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(g[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, 10 * len(g) + 100))
    try:
        for v in sorted(g):
            if v not in index:
                visit(v)
    finally:
        sys.setrecursionlimit(old)
    return out


def a_cycle(g: dict[str, set[str]], comp: list[str]) -> list[str]:
    """One cycle through the component ``comp`` (for the failure message)."""
    members, start = set(comp), comp[0]
    path, seen = [start], {start}
    while True:
        nxt = sorted(w for w in g[path[-1]] if w in members)
        back = [w for w in nxt if w in path]
        if back:
            return path[path.index(back[0]) :] + [back[0]]
        w = next(w for w in nxt if w not in seen)
        path.append(w)
        seen.add(w)


# ------------------------------------------------------------------------------------------
# the import graph
# ------------------------------------------------------------------------------------------


def test_the_parser_sees_lazy_imports():
    """The graph includes imports inside functions (the family's lazy ones)."""
    edges = graph()
    assert "unetprune.family" in edges["unetprune.checkpoint"]
    assert (
        "unetprune.families.pix2pix.pruning" in edges["unetprune.families.pix2pix.family"]
    )  # inside pruning_ops()


def test_import_graph_has_no_cycle():
    g = graph()
    comps = strongly_connected(g)
    msg = "\n".join(f"cycle of {len(c)} modules: {' -> '.join(a_cycle(g, c))}" for c in comps)
    assert not comps, msg


def test_cycle_detection_can_fail():
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert strongly_connected(g) == [["a", "b", "c"]]
    assert a_cycle(g, ["a", "b", "c"]) == ["a", "b", "c", "a"]


def _network_modules() -> list[str]:
    return [
        m for m, p in modules().items() if m.startswith("unetprune.families.") and p.name in NETWORK_MODULES
    ]


def test_there_are_network_modules():
    assert {"unetprune.families.pix2pix.unet", "unetprune.families.wav2lip.networks"} <= set(
        _network_modules()
    )


def network_violations(name: str, seen: frozenset = frozenset()) -> list[str]:
    """The imports that take module ``name`` above the networks: anything but the standard
    library, torch, the lowest utilities, and modules of its own family that obey this rule too."""
    family = name.rpartition(".")[0]  # unetprune.families.<family>
    bad = []
    for target, line in imported(name):
        top = target.split(".")[0]
        if (
            top in sys.stdlib_module_names
            or top == "__future__"
            or any(target == a or target.startswith(a + ".") for a in NETWORK_MAY_IMPORT)
        ):
            continue
        if target.startswith(family + ".") and target in modules():
            if target in seen or target == name:
                continue
            below = network_violations(target, seen | {name})
            if not below:
                continue
            bad += below
        bad.append(f"{modules()[name].relative_to(REPO)}:{line} imports {target}")
    return bad


@pytest.mark.parametrize("name", _network_modules())
def test_network_modules_import_only_torch_and_the_lowest_utilities(name):
    bad = network_violations(name)
    assert not bad, "a network module reaches above the networks:\n" + "\n".join(bad)


def test_the_network_rule_can_fail():
    assert network_violations("unetprune.families.pix2pix.family")  # the trainer's module imports the core


def test_core_never_imports_a_family():
    bad = [
        f"{modules()[m].relative_to(REPO)}:{line} imports {t}"
        for m in modules()
        if not m.startswith("unetprune.families")
        for t, line in imported(m)
        if t == "unetprune.families" or t.startswith("unetprune.families.")
    ]
    assert not bad, "the core asks families through unetprune.family hooks, not by import:\n" + "\n".join(bad)


def test_family_package_inits_import_nothing():
    inits = [p for p in (PKG / "families").rglob("__init__.py")]
    assert len(inits) >= 3
    bad = [
        f"{p.relative_to(REPO)}:{n.lineno}"
        for p in inits
        for n in ast.walk(tree(p))
        if isinstance(n, (ast.Import, ast.ImportFrom))
    ]
    assert not bad, (
        "a family package's __init__.py must import nothing (no cycles through it):\n" + "\n".join(bad)
    )


# ------------------------------------------------------------------------------------------
# no family names in the core
# ------------------------------------------------------------------------------------------

NAME_RE = re.compile(r"^\s*(" + "|".join(FAMILY_NAMES) + r")(-[\w-]+)?\s*$")  # "wav2lip", "wav2lip-expert"


def _docstrings(t: ast.Module) -> set[int]:
    ids = set()
    for node in ast.walk(t):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def family_literals(path: Path) -> list[str]:
    """``file:line: 'text'`` of every string literal that is a built-in family's name
    (``"wav2lip"``, ``'pix2pix'``, ``"wav2lip-expert"``: what a comparison or a dispatch on the
    family would hold; prose that mentions a family, e.g. "a pix2pix-format dataset", is not
    one); the one default ``DEFAULT_FAMILY = "pix2pix"`` is allowed."""
    t = tree(path)
    skip = _docstrings(t)
    for node in ast.walk(t):
        if isinstance(node, ast.Assign) and any(
            isinstance(x, ast.Name) and x.id == "DEFAULT_FAMILY" for x in node.targets
        ):
            skip.add(id(node.value))
    where = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    return [
        f"{where}:{node.lineno}: {node.value!r}"
        for node in ast.walk(t)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in skip
        and NAME_RE.search(node.value)
    ]


def test_the_literal_scan_can_fail(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(
        '"""pix2pix."""\nDEFAULT_FAMILY = "pix2pix"\nif f in ("wav2lip", \'wav2lip-expert\'):\n'
        '    print("a pix2pix-format dataset")\n'
    )
    hits = family_literals(probe)
    assert [h.split(": ", 1)[1] for h in hits] == ["'wav2lip'", "'wav2lip-expert'"], hits


def test_no_family_name_literals_in_the_core():
    core = [p for p in sorted(PKG.rglob("*.py")) if "families" not in p.relative_to(PKG).parts]
    hits = [h for p in core for h in family_literals(p)]
    assert not hits, "the core compares family names; ask the family through a hook instead:\n" + "\n".join(
        hits
    )


SWITCH_RE = re.compile(
    r"\b(" + "|".join(n.upper() for n in FAMILY_NAMES) + r")\b|[\"'](" + "|".join(FAMILY_NAMES) + r")\b"
)


def _code(line: str) -> str:
    """``line`` without its comment (a ``#`` outside quotes)."""
    quote = None
    for i, c in enumerate(line):
        if quote:
            if c == quote:
                quote = None
        elif c in "\"'":
            quote = c
        elif c == "#":
            return line[:i]
    return line


def test_no_family_switches_in_the_workflow():
    files = [REPO / "Snakefile", *sorted((REPO / "workflow").rglob("*.smk"))]
    assert len(files) > 2
    hits = [
        f"{p.relative_to(REPO)}:{i}: {line.strip()}"
        for p in files
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if SWITCH_RE.search(_code(line))
    ]
    assert not hits, (
        "the workflow switches on a family; include the family's workflow_rules() instead:\n"
        + "\n".join(hits)
    )
