"""One owner per concern, checked on the source: results paths only in the layout module,
no reference to files outside the repository, one definition of each shared helper."""

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = sorted(
    [
        *REPO.glob("src/unetprune/**/*.py"),
        *REPO.glob("tests/*.py"),
        *REPO.glob("benchmarks/*.py"),
        *REPO.glob("workflow/rules/*.smk"),
        REPO / "Snakefile",
    ]
)
LAYOUT = REPO / "src" / "unetprune" / "layout.py"

# file names of the results layout (their folders are named only by unetprune.layout)
RESULT_FILES = (
    "checkpoint.pt",
    "resume.pt",
    "pruned.pt",
    "prune.json",
    "train.json",
    "samples.png",
    "report.md",
    "mlflow.json",
    "metrics.json",
    "original.json",
)


def _string_literals(path: Path):
    """(line, value) of every string constant of a Python file (docstrings excluded)."""
    text = path.read_text()
    if path.suffix != ".py":
        for i, line in enumerate(text.splitlines(), 1):
            code = line.split("#", 1)[0]
            for m in re.finditer(r"""(["'])(.*?)\1""", code):
                yield i, m.group(2)
        return
    tree = ast.parse(text)
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node.lineno, node.value


def _is_results_path(value: str) -> bool:
    """A results path: under results/, or naming one of the layout's files (alone or in a path)."""
    parts = [p for p in re.split(r"[/\\]", value) if p]
    return value.startswith("results/") or bool(parts) and parts[-1] in RESULT_FILES


def test_no_results_path_literal_outside_the_layout_module():
    here = Path(__file__).resolve()
    found = [
        f"{p.relative_to(REPO)}:{line}: {value!r}"
        for p in SOURCES
        if p not in (LAYOUT, here)
        for line, value in _string_literals(p)
        if _is_results_path(value)
    ]
    assert not found, "results paths spelled outside unetprune/layout.py:\n" + "\n".join(found)


def test_the_scanner_finds_a_spelled_path(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        '"""results/demo/x is fine in a docstring"""\nP = "results/demo/eval"\nQ = ("x", "prune.json")\n'
        'R = "variants/cut-k2/pruned.pt"\n'
    )
    assert sorted(v for _, v in _string_literals(bad) if _is_results_path(v)) == [
        "prune.json",
        "results/demo/eval",
        "variants/cut-k2/pruned.pt",
    ]


def test_no_reference_to_files_outside_the_repository():
    pattern = re.compile(r"\.\./shared|PAPER\.md|DESIGN\.md")
    files = [
        *SOURCES,
        REPO / "README.md",
        REPO / "Makefile",
        REPO / "dvc.yaml",
        *REPO.glob("config/**/*.yaml"),
        *REPO.glob("profiles/**/*.yaml"),
        *REPO.glob("docs/*.md"),
        REPO / "src" / "unetprune" / "schema.yaml",
    ]
    found = [
        f"{p.relative_to(REPO)}:{i}"
        for p in files
        if p != Path(__file__).resolve()
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert not found, "references to files a user of the repository does not have:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "name",
    [
        "atomic_write_text",
        "atomic_torch_save",
        "sha256_file",
        "count_parameters",
        "resolve_device",
        "to_uint8",
        "prunable_layers",
        "generation_mode",
        "resolve_inside",
        "clashing_input",
        "clip_entries",
        "local_file",
    ],
)
def test_one_definition_of_each_shared_helper(name):
    defs = [
        f"{p.relative_to(REPO)}:{node.lineno}"
        for p in REPO.glob("src/unetprune/**/*.py")
        for node in ast.walk(ast.parse(p.read_text()))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name
    ]
    assert len(defs) <= 1, f"{name} is defined {len(defs)} times: {defs}"
