"""The documentation stays true to the repository: every repository path that README.md and
docs/*.md cite exists (globs and ``<placeholder>`` segments must match something), every
relative link and ``#anchor`` resolves, the README stays short, and no tracker numbers,
change-history notes or tests that cannot fail are left in the sources, tests, docs and
benchmarks."""

from __future__ import annotations

import glob
import itertools
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
README_MAX_LINES = 200

# repository paths written in prose or code: they start with one of these top-level folders
TOP = ("src", "docs", "config", "benchmarks", "workflow", "tests", "profiles")
PATH = re.compile(r"(?<![\w./<>-])((?:%s)/[\w.*{}<>,/+-]*)" % "|".join(TOP))
LINK = re.compile(r"\]\(([^)\s]+)\)")

# text files of the sources, tests, docs and benchmarks the history / tracker checks read
SCANNED = ("src", "tests", "docs", "benchmarks")
SUFFIXES = {".py", ".md", ".yaml", ".yml", ".smk", ".sh", ".rst", ".txt", ".toml"}
# tracker references: the word issue(s) followed by a number, "issue-<n>", "#<n>" (but not
# ffmpeg's "Input #0," / "Stream #0:1", nor a colour like "#1f77b4")
TRACKER = re.compile(
    r"\bissues?\s+#?\d+|\bissue-\d+|(?:^|[\s(\[])#\d{1,4}\b(?![:,\d])", re.IGNORECASE | re.MULTILINE
)
# change-history notes (pytest's fixture scope of that name is not among them)
WORK_PERIOD = "sess" + "ion"  # spelled apart so that this file does not match its own pattern
HISTORY = re.compile(
    rf"\bthis {WORK_PERIOD}\b|\b(?:another|previous|next|last|earlier)\s+{WORK_PERIOD}\b|\bas before\b"
    r"|\bbefore the seam\b|\bseam existed\b|\bthe old code\b|\bused to be\b"
    r"|\bwritten before (?:the seam|checkpoints|it existed|those)\b",
    re.IGNORECASE,
)
LOOSE_XFAIL = re.compile(r"xfail\s*\([^)]*strict\s*=\s*False")


def _expand(path: str) -> list[str]:
    """``{a,b}`` alternatives expanded; ``<name>`` placeholders become ``*``."""
    path = re.sub(r"<[^>/]*>", "*", path)
    parts = re.split(r"(\{[^{}]*\})", path)
    options = [p[1:-1].split(",") if p.startswith("{") else [p] for p in parts]
    return ["".join(c) for c in itertools.product(*options)]


def _exists(pattern: str, base: Path) -> bool:
    if any(c in pattern for c in "*?["):
        return bool(glob.glob(str(base / pattern)))
    return (base / pattern).exists()


def _cited_paths(text: str) -> set[str]:
    found = set()
    for m in PATH.finditer(text):
        p = m.group(1).split("#")[0]
        if "{" not in p:
            p = p.split(",")[0]
        found.add(p.rstrip(".:;"))
    return found


def _slug(heading: str) -> str:
    """GitHub's anchor of a markdown heading."""
    s = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return s.replace(" ", "-")


def _anchors(md: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", md.read_text(), flags=re.DOTALL)
    return {_slug(h) for h in re.findall(r"^#{1,6}\s+(.+?)\s*$", text, flags=re.MULTILINE)}


def _scanned_files():
    me = Path(__file__).resolve()
    yield REPO / "README.md"
    for top in SCANNED:
        for f in sorted((REPO / top).rglob("*")):
            if (
                f.is_file()
                and f.suffix in SUFFIXES
                and f.resolve() != me
                and not any(part.endswith(".egg-info") or part == "__pycache__" for part in f.parts)
            ):
                yield f


def _hits(pattern: re.Pattern, files) -> list[str]:
    out = []
    for f in files:
        for n, line in enumerate(f.read_text(errors="replace").splitlines(), 1):
            if pattern.search(line):
                out.append(f"{f.relative_to(REPO)}:{n}: {line.strip()}")
    return out


# ------------------------------------------------------------------------------------------


def test_the_patterns_tell_references_from_ordinary_words():
    for ref in (
        "issue\t12",  # (whitespace of any kind: tabs here keep this file out of its own scan)
        "Issue\t16: verdicts",
        "(issue\t12 item 3)",
        "issues 10",
        "issue-12",
        "see #24",
        "(#12)",
    ):
        assert TRACKER.search(ref), ref
    for ok in (
        're.compile(r"Input #0,\\s*")',
        "Stream #0:1",
        "color #1f77b4",
        "# 12 px",
        "tissue 3",
        "an issue with 2 files",
    ):
        assert not TRACKER.search(ok), ok
    for note in ("as before issue\t10", "written before the seam existed", f"in this {WORK_PERIOD}"):
        assert HISTORY.search(note), note
    for ok in (
        f'@pytest.fixture(scope="{WORK_PERIOD}")',
        f"built once per pytest {WORK_PERIOD}",
        "sessionmaker",
        "written before the folder appears",
    ):
        assert not HISTORY.search(ok), ok
    assert LOOSE_XFAIL.search("@pytest.mark.xfail(strict=False, reason=R)")
    assert not LOOSE_XFAIL.search("@pytest.mark.xfail(strict=True, reason=R)")
    assert _expand("eval/<v>__{pruned,finetuned}.json") == ["eval/*__pruned.json", "eval/*__finetuned.json"]
    cited = _cited_paths(
        "`src/a.py`, `tests/b_{x,y}.py`: see docs/c.md#part, [d](../config/d.yaml) or results/e."
    )
    assert cited == {"src/a.py", "tests/b_{x,y}.py", "docs/c.md"}
    assert not _exists("src/unetprune/no_such_module.py", REPO) and _exists("src/unetprune/*.py", REPO)


def test_docs_exist():
    names = {p.name for p in DOCS}
    for name in (
        "README.md",
        "method.md",
        "wav2lip.md",
        "gpu.md",
        "dvc.md",
        "tracking.md",
        "benchmarks.md",
        "extending.md",
    ):
        assert name in names, f"docs/{name} is missing"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_cited_repository_path_exists(doc):
    text = doc.read_text()
    missing = [p for p in sorted(_cited_paths(text)) if not any(_exists(e, REPO) for e in _expand(p))]
    assert not missing, f"{doc.relative_to(REPO)} cites paths that do not exist: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_and_anchor_resolves(doc):
    text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.DOTALL)
    bad = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue  # http:, https:, mailto:
        path, _, anchor = target.partition("#")
        dest = (doc.parent / path).resolve() if path else doc
        if "shared" in Path(path).parts or not dest.exists() or REPO not in (dest, *dest.parents):
            bad.append(target)
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            bad.append(target)
    assert not bad, f"{doc.relative_to(REPO)}: links that do not resolve: {bad}"


def test_readme_is_short():
    n = len((REPO / "README.md").read_text().splitlines())
    assert n <= README_MAX_LINES, (
        f"README.md has {n} lines (at most {README_MAX_LINES}): move detail into docs/"
    )


def test_no_tracker_numbers():
    hits = _hits(TRACKER, _scanned_files())
    assert not hits, "tracker references (state the contract instead):\n" + "\n".join(hits)


def test_no_change_history_notes():
    hits = _hits(HISTORY, _scanned_files())
    assert not hits, "change-history notes (state the contract instead):\n" + "\n".join(hits)


def test_no_test_that_passes_whatever_happens():
    files = [f for f in _scanned_files() if f.suffix == ".py" and (REPO / "tests") in f.parents]
    hits = _hits(LOOSE_XFAIL, files)
    assert not hits, (
        "non-strict xfail tests pass whatever happens (measurements go to benchmarks/):\n" + "\n".join(hits)
    )
