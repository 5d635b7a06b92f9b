"""`snakemake --report`: one shareable file with the figures, tables and sample grids of an
experiment, with captions (workflow/report/*.rst), one category per phase.

The slow tests build the report of the tiny workflow that tests/tinyflow.py runs once per
test run (shared with test_dvc.py) and open it: a self-contained HTML (every result embedded as
a base64 data URI) and a zip (the files next to report.html)."""

from __future__ import annotations

import base64
import re
import zipfile
from pathlib import Path

import pytest

from tinyflow import CONFIG, REPO, tiny_project
from unetprune.config import load_config
from unetprune.layout import Layout

CAPTIONS = REPO / "workflow" / "report"
FIGURES = ("learning_curve", "sensitivity", "tradeoff", "samples", "samples_pruned")
TABLES = ("main", "comparison", "sensitivity", "sensitivity_matrix", "sensitivity_summary")
CATEGORIES = ("1. Training", "2. Sensitivity", "3. Pruning vs baselines", "4. Samples", "5. Report")


def test_every_caption_exists_and_renders():
    """Each caption named in report.smk (and the workflow description) is a Jinja template of
    reStructuredText that renders with an experiment's config (as Snakemake renders it)."""
    from types import SimpleNamespace

    from docutils.core import publish_parts
    from jinja2 import Environment, StrictUndefined

    rules = (REPO / "workflow" / "rules" / "report.smk").read_text()
    names = set(re.findall(r'\("([a-z_]+)", _(?:TRAIN|SENS|PRUNE|SAMPLES|REPORT)\b', rules))
    assert {
        "learning_curve",
        "sensitivity_figure",
        "tradeoff_figure",
        "samples",
        "samples_pruned",
        "main_table",
    } <= names
    snakefile = (REPO / "Snakefile").read_text()
    assert 'report: "workflow/report/workflow.rst"' in snakefile
    cfg = load_config(REPO / CONFIG)
    env = Environment(undefined=StrictUndefined)
    for name in sorted(names) + ["workflow"]:
        text = (CAPTIONS / f"{name}.rst").read_text()
        rendered = env.from_string(text).render(snakemake=SimpleNamespace(config=cfg, wildcards={}))
        html = publish_parts(
            rendered, writer="html", settings_overrides={"report_level": 2, "halt_level": 2}
        )["body"]
        assert html.strip() and "System Message" not in html, name


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return tiny_project(tmp_path_factory)


def _data_uris(html: str) -> dict[str, bytes]:
    """filename -> decoded bytes of every embedded result (Snakemake's data:...;filename=...;base64,...)."""
    out = {}
    for m in re.finditer(
        r"data:([\w/+.-]+);charset=[\w-]+;filename=([^;\"']+);base64,([A-Za-z0-9+/=]+)", html
    ):
        out.setdefault(m.group(2), base64.b64decode(m.group(3)))
    return out


@pytest.mark.slow
def test_html_report_holds_the_figures_tables_and_samples(project, tmp_path):
    report = tmp_path / "report.html"
    p = project.run("snakemake", "--report", report, "--configfile", CONFIG)
    lay = Layout.from_config(load_config(project.repo / CONFIG), project.repo / "results")
    html = report.read_text()
    embedded = _data_uris(html)
    for name in FIGURES:  # the sensitivity and trade-off figures and the sample grids, byte for byte
        assert embedded[f"{name}.png"] == lay.figure(name).read_bytes(), name
        assert f"Adding {name}.png" in p.stdout + p.stderr
    for name in TABLES:
        assert embedded[f"{name}.csv"] == lay.table(name).read_bytes(), name
    assert embedded[lay.report_md.name] == lay.report_md.read_bytes()
    for category in CATEGORIES:
        assert f'"{category}"' in html, category
    # captions, rendered with the experiment's config
    assert "Per-layer sensitivity (the paper" in html and "experiment <strong>tiny</strong>" in html
    assert "ratios 0.5" in html


@pytest.mark.slow
def test_zip_report_holds_the_files(project, tmp_path):
    report = tmp_path / "report.zip"
    project.run("snakemake", "--report", report, "--configfile", CONFIG)
    lay = Layout.from_config(load_config(project.repo / CONFIG), project.repo / "results")
    with zipfile.ZipFile(report) as z:
        names = z.namelist()
        assert "report/report.html" in names
        for name in FIGURES:
            hit = [n for n in names if Path(n).name == f"{name}.png"]
            assert len(hit) == 1 and z.read(hit[0]) == lay.figure(name).read_bytes(), name
