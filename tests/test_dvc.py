"""DVC that never loses data: per-experiment outputs, metrics and plots DVC can read at any
commit, the sensitivity plot per ratio with layers as categories, and the push/pull steps of
docs/dvc.md (clone + `dvc pull` + `snakemake --touch`) without any training job.

The slow tests work on clones of the git + DVC project of tests/tinyflow.py (the tiny
workflow run once per test run through `dvc repro workflow@tiny`, committed and pushed to a
local remote), so the project itself stays as pushed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tinyflow import BIN, CONFIG, EXPERIMENT, REPO, STAGE, env_for, register, run, tiny_project
from unetprune.config import load_config
from unetprune.layout import FINETUNED, ORIGINAL, Layout

TEMPLATE = "workflow/report/dvc_sensitivity.json"
ASSETS = BIN.parent / "lib"  # the venv's site-packages hold Snakemake's offline copies of vega


def _dvc_yaml() -> dict:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())


def _stage_paths(do: dict, key: str) -> dict[str, dict]:
    """path -> properties of every out, metric and plot of one experiment of a foreach stage."""
    out = {}
    for section in ("outs", "metrics", "plots"):
        for item in do.get(section, []):
            path, props = next(iter(item.items())) if isinstance(item, dict) else (item, {})
            out[path.replace("${key}", key)] = {**(props or {}), "section": section}
    return out


LAY_A = Layout.from_config({"experiment": "a"})


def test_every_output_is_per_experiment_cached_and_persistent():
    """Each stage's outputs are under results/<its experiment>/ (so two experiments never share
    one), persistent (DVC never deletes them before a run) and cached: `dvc push/pull` move them
    and `dvc exp show` / `dvc plots` read metrics and plots of any commit from the cache (a
    cache: false file in the git-ignored results/ folder is in no commit)."""
    stages = _dvc_yaml()["stages"]
    assert set(stages) == {"workflow", "downloaded", "talking"}
    reg = yaml.safe_load((REPO / "config" / "dvc_experiments.yaml").read_text())
    assert set(reg) >= {"experiments", "downloaded", "talking", "cores"}
    assert reg["experiments"]["demo"] == "config/config.yaml"
    assert reg["talking"]["wav2lip-demo"] == "config/wav2lip_demo.yaml"
    groups = {"workflow": "experiments", "downloaded": "downloaded", "talking": "talking"}
    for name, stage in stages.items():
        do = stage["do"]
        assert stage["foreach"] == f"${{{groups[name]}}}"
        assert "--experiment ${key}" in do["cmd"] and "--configfile ${item}" in do["cmd"]
        a, b = _stage_paths(do, "a"), _stage_paths(do, "b")
        assert not set(a) & set(b)
        for path, props in a.items():
            assert Path(path).is_relative_to(LAY_A.root), path
            assert props.get("persist") is True and props.get("cache", True) is True, path
        sections = {props["section"]: path for path, props in a.items()}
        assert sections["metrics"] == str(Layout.from_config({"experiment": "a"}).metrics_json)
        assert sections["plots"] == str(Layout.from_config({"experiment": "a"}).plot("sensitivity"))
    assert str(LAY_A.dataset_verified) in _stage_paths(stages["downloaded"]["do"], "a")
    talking = _stage_paths(stages["talking"]["do"], "a")
    # Wav2Lip's expert and LSE network
    assert {str(LAY_A.expert_dir), str(LAY_A.lse_standin.parent)} <= set(talking)


def test_dvc_lists_one_stage_per_registered_experiment(tmp_path):
    """Both groups expand: `workflow@<name>` (generated data) and `downloaded@<name>` (fetched)."""
    shutil.copy(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "dvc_experiments.yaml").write_text(
        yaml.safe_dump(
            {
                "cores": 2,
                "experiments": {"demo": "config/config.yaml", "tiny": "config/tiny.yaml"},
                "downloaded": {"pix2pix_facades": "config/experiments/pix2pix_facades.yaml"},
                "talking": {"wav2lip-demo": "config/wav2lip_demo.yaml"},
            }
        )
    )
    env = env_for(REPO / "src")
    run(["git", "init", "-q"], tmp_path, env)
    run(["dvc", "init", "-q"], tmp_path, env)
    listed = run(["dvc", "stage", "list", "--name-only"], tmp_path, env).stdout.split()
    assert sorted(listed) == [
        "downloaded@pix2pix_facades",
        "talking@wav2lip-demo",
        "workflow@demo",
        "workflow@tiny",
    ]


def _plots_repo(tmp_path: Path) -> tuple[Path, dict]:
    """A scratch git + DVC repository with a two-ratio sensitivity plot file and the template."""
    repo = tmp_path / "plots"
    (repo / "workflow" / "report").mkdir(parents=True)
    shutil.copy(REPO / TEMPLATE, repo / TEMPLATE)
    rows = [("down1", 2.0, 3.0), ("down5", 1.5, 1.6), ("up5", 1.4, 1.5), ("up2", 2.5, 3.5)]
    text = "layer,ratio,quality\n" + "".join(
        f"{layer},r{r},{q}\n"
        for r, i in (("0.25", 1), ("0.5", 2))
        for layer, *qs in rows
        for q in [qs[i - 1]]
    )
    (repo / "sensitivity.csv").write_text(text)
    env = env_for(REPO / "src")
    run(["git", "init", "-q"], repo, env)
    run(["dvc", "init", "-q"], repo, env)
    return repo, env


PLOT_ARGS = ["sensitivity.csv", "--template", TEMPLATE, "-x", "layer", "-y", "quality"]


def test_sensitivity_plot_spec_has_layers_as_categories_and_a_line_per_ratio(tmp_path):
    repo, env = _plots_repo(tmp_path)
    out = run(["dvc", "plots", "show", "--json", *PLOT_ARGS], repo, env).stdout
    spec = json.loads(out)["data"]["sensitivity.csv"][0]["content"]
    enc = spec["encoding"]
    assert enc["x"] == {
        **enc["x"],
        "field": "layer",
        "type": "nominal",
        "sort": None,
    }  # categories, sweep order
    assert enc["y"]["field"] == "quality" and enc["y"]["type"] == "quantitative"
    assert enc["color"] == {"field": "ratio", "type": "nominal", "title": "pruning ratio"}
    values = spec["data"]["values"]
    assert [v["layer"] for v in values[:4]] == ["down1", "down5", "up5", "up2"]
    assert {v["ratio"] for v in values} == {"r0.25", "r0.5"}


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def offline_html_template() -> str:
    """A `dvc plots show --html-template` page with vega, vega-lite and vega-embed inlined (Snakemake's
    offline copies, so nothing is fetched from a CDN), drawing to SVG and marking when it has rendered."""
    assets = next(ASSETS.glob("python3*/site-packages/snakemake/assets/data"))
    scripts = "".join(
        f"<script>{(assets / n / f'{n}.js').read_text()}</script>\n"
        for n in ("vega", "vega-lite", "vega-embed")
    )
    hook = """<script>
const realEmbed = window.vegaEmbed;
let rendered = 0;
window.vegaEmbed = (el, spec, opt) => realEmbed(el, spec, Object.assign({renderer: "svg", actions: false}, opt || {}))
  .then(r => { rendered += 1; document.body.setAttribute("data-rendered", String(rendered)); return r; })
  .catch(e => { document.body.setAttribute("data-error", String(e)); });
</script>"""
    return f"<!DOCTYPE html><html><head><meta charset='utf-8'>{scripts}{hook}</head><body>{{plot_divs}}</body></html>"


@pytest.mark.skipif(_chromium() is None, reason="needs headless Chromium (Debian package `chromium`)")
def test_sensitivity_plot_renders_in_headless_chromium(tmp_path):
    """`dvc plots show` HTML drawn by a real browser, offline: the x axis lists the layers as
    categories in sweep order, the legend the ratios, one line per ratio."""
    repo, env = _plots_repo(tmp_path)
    page = tmp_path / "offline.html"
    page.write_text(offline_html_template())
    run(["dvc", "plots", "show", *PLOT_ARGS, "--html-template", page, "-o", tmp_path / "out"], repo, env)
    html = tmp_path / "out" / "index.html"
    assert "cdn.jsdelivr" not in html.read_text()
    p = subprocess.run(
        [
            _chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--allow-file-access-from-files",
            "--virtual-time-budget=20000",
            "--dump-dom",
            html.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    dom = p.stdout
    assert 'data-rendered="1"' in dom, (dom[-2000:], p.stderr[-2000:])
    texts = re.findall(r"<text[^>]*>([^<]*)</text>", dom)
    ticks = [t for t in texts if t in ("down1", "down5", "up5", "up2")]
    assert ticks == ["down1", "down5", "up5", "up2"]  # categorical axis, sweep order
    assert {"r0.25", "r0.5", "pruning ratio"} <= set(texts)
    assert len(re.findall(r'aria-roledescription="line mark"', dom)) == 2  # a line per ratio


# ------------------------------------------------------------------------------------------
# the tiny project: push, clone, pull
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return tiny_project(tmp_path_factory)


def _clone(project, dest: Path) -> tuple[Path, dict]:
    """A git clone of the project (no results, empty DVC cache) with its own copy of the package."""
    run(["git", "clone", "-q", project.repo, dest], dest.parent, project.env)
    return dest, env_for(dest / "src")


def _layout(repo: Path, experiment: str = EXPERIMENT) -> Layout:
    return Layout.from_config(load_config(repo / CONFIG) | {"experiment": experiment}, repo / "results")


def _outputs(lay: Layout) -> list[Path]:
    """What a person wants back: the report, every table and figure, metrics, plots, the MLflow
    record and the checkpoints."""
    files = [
        lay.report_md,
        lay.metrics_json,
        lay.plot("sensitivity"),
        lay.mlflow_json,
        lay.config_file,
        lay.checkpoint(ORIGINAL),
        lay.checkpoint("cut-k1", FINETUNED),
        lay.pruned_checkpoint("cut-k1"),
    ]
    return files + sorted(lay.tables_dir.iterdir()) + sorted(lay.figures_dir.iterdir())


@pytest.mark.slow
def test_every_file_of_the_experiment_is_a_dvc_output(project):
    lay = _layout(project.repo)
    do = _dvc_yaml()["stages"]["workflow"]["do"]
    declared = {Path(p).name for p in _stage_paths(do, EXPERIMENT)} - {"sensitivity.csv"} | {"plots"}
    present = {p.name for p in lay.root.iterdir() if p.name != ".gitignore"}
    assert present <= declared, present - declared


@pytest.mark.slow
def test_clone_and_pull_restore_every_output_without_training(project, tmp_path):
    """The steps of docs/dvc.md: clone + `dvc pull` + `snakemake --touch` gives back the report, tables,
    figures, metrics, plots and checkpoints byte for byte, and Snakemake then has nothing to do."""
    repo, env = _clone(project, tmp_path / "clone")
    lay, origin = _layout(repo), _layout(project.repo)
    assert not lay.root.exists()
    run(["dvc", "pull"], repo, env)
    for mine, theirs in zip(_outputs(lay), _outputs(origin), strict=True):
        assert mine.read_bytes() == theirs.read_bytes(), mine
    assert len(_outputs(lay)) > 15
    touch = run(["snakemake", "--touch", "--cores", "1", "--configfile", CONFIG], repo, env)
    assert "Output files not touched because they don't exist" not in touch.stdout + touch.stderr
    dry = run(["snakemake", "-n", "--cores", "1", "--configfile", CONFIG], repo, env).stdout
    assert "Nothing to be done" in dry, dry[-3000:]
    assert "Data and pipelines are up to date" in run(["dvc", "status"], repo, env).stdout
    assert "didn't change, skipping" in run(["dvc", "repro", STAGE], repo, env).stdout  # no job at all
    # metrics and plots of the commit, read by DVC from its cache (not `!`)
    shown = json.loads(run(["dvc", "exp", "show", "--json"], repo, env).stdout)
    head = next(e for e in shown if e.get("rev") != "workspace")
    metrics = head["data"]["metrics"][str(lay.metrics_json.relative_to(repo))]
    assert "error" not in metrics and metrics["data"]["original"]["params"] > 0
    spec = json.loads(run(["dvc", "plots", "show", "--json"], repo, env).stdout)
    content = spec["data"][str(lay.plot("sensitivity").relative_to(repo))][0]["content"]
    assert content["encoding"]["x"]["type"] == "nominal" and content["encoding"]["color"]["field"] == "ratio"


@pytest.mark.slow
def test_switching_experiments_keeps_the_other_experiments_outputs(project, tmp_path):
    """Two experiments under DVC.  Working on one (`dvc checkout/pull workflow@<it>`, on this commit
    or on one that predates the other), bare `dvc checkout`/`dvc pull` while both are listed, and a
    config whose `experiment` was changed (outs named by that key would become "unused" outputs
    that `dvc pull` deletes) never delete the other's checkpoints.  Only dropping an experiment from the list and
    running a bare `dvc checkout` removes its files from the workspace, and they come back from the
    cache byte for byte."""
    repo, env = _clone(project, tmp_path / "clone")
    run(["dvc", "pull"], repo, env)
    tiny, other = _layout(repo), _layout(repo, "tinyb")
    # a second experiment: the tiny results under another name, committed to DVC without a rerun
    raw = yaml.safe_load((repo / CONFIG).read_text())
    (repo / "config" / "tinyb.yaml").write_text(yaml.safe_dump({**raw, "experiment": "tinyb"}))
    shutil.copytree(tiny.root, other.root, ignore=shutil.ignore_patterns(".gitignore"))
    register(repo, {EXPERIMENT: CONFIG, "tinyb": "config/tinyb.yaml"})
    run(["dvc", "commit", "-f", "workflow@tinyb"], repo, env)
    run(["git", "add", "-A"], repo, env)
    run(["git", "commit", "-q", "-m", "second experiment"], repo, env)
    run(["dvc", "push", "-q"], repo, env)
    kept = {p: p.read_bytes() for lay in (tiny, other) for p in _outputs(lay)}

    def unchanged(layouts=(tiny, other)):
        for p, content in kept.items():
            if any(lay.root in p.parents for lay in layouts):
                assert p.is_file() and p.read_bytes() == content, p

    # work on `tiny` only: its checkpoint deleted by hand comes back; `tinyb` is not touched
    tiny.checkpoint(ORIGINAL).unlink()
    for cmd in (["dvc", "checkout", STAGE], ["dvc", "pull", STAGE], ["dvc", "checkout"], ["dvc", "pull"]):
        run(cmd, repo, env)
        unchanged()
    # on the commit that predates `tinyb`, the named stage's checkout/pull leave `tinyb` alone
    first = run(["git", "rev-list", "--max-parents=0", "HEAD"], repo, env).stdout.strip()
    run(["git", "checkout", "-q", first], repo, env)
    assert "tinyb" not in (repo / "config" / "dvc_experiments.yaml").read_text()
    for cmd in (["dvc", "checkout", STAGE], ["dvc", "pull", STAGE]):
        run(cmd, repo, env)
        unchanged()
    # ... while a bare checkout there removes the files of the experiment that commit does not list
    # (DVC drops the files it placed for outputs no stage declares): from the workspace only
    run(["dvc", "checkout"], repo, env)
    unchanged((tiny,))
    assert not other.checkpoint(ORIGINAL).exists()
    run(["git", "checkout", "-q", "main"], repo, env)
    run(["dvc", "checkout"], repo, env)
    unchanged()
    # a config whose experiment was renamed: the stage refuses before Snakemake runs, DVC deletes nothing
    (repo / CONFIG).write_text((repo / CONFIG).read_text().replace("experiment: tiny", "experiment: tiny2"))
    p = run(["dvc", "repro", STAGE], repo, env, check=False)
    assert p.returncode != 0 and "tiny2" in p.stdout + p.stderr
    for cmd in (["dvc", "checkout"], ["dvc", "pull"]):
        run(cmd, repo, env, check=False)  # the changed config is a modified dependency, not an output
        unchanged()
    assert not (repo / "results" / "tiny2").exists()
    assert "up to date" in run(["dvc", "status", "workflow@tinyb"], repo, env).stdout
