"""A third model family with no edit to the core: ``tinyfam`` (tests/thirdfamily, an
encoder-decoder GAN without skips) is registered only through the ``unetprune.families``
entry point of ``tinyfam-0.0.dist-info`` (tests/conftest.py puts its folder on the path).

It passes the family contract (tests/test_family_contract.py is parametrised over every
registered family, this one included); here: it is found like an installed plug-in, in this
process and in a subprocess, its config keys come from its schema fragment, nothing in
``src/`` or ``workflow/`` names it, and (slow) the whole tiny DAG runs on it — train, sweep,
inner/cut/global variants, fine-tuning, evaluation, report, MLflow.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from unetprune.config import ConfigError, load_config
from unetprune.family import ENTRY_POINT_GROUP, family_names, get_family

REPO = Path(__file__).resolve().parents[1]
THIRD = REPO / "tests" / "thirdfamily"
BIN = Path(sys.executable).parent
NAME = "tinyfam"

TINY_DAG = {
    "experiment": "tinyfam",
    "seed": 0,
    "data": {"dataset": "demo", "load_size": 36, "crop_size": 32},
    "demo": {"image_size": 32, "n_train": 8, "n_val": 2, "n_test": 4},
    "model": {"family": NAME, NAME: {"levels": 5, "width": 32, "disc_width": 8}},
    "train": {"n_epochs": 1, "n_epochs_decay": 1, "batch_size": 4, "save_every": 1, "eval_images": 2},
    "evaluate": {"fid_backend": "standin", "max_images": 4},
    "sensitivity": {"layers": ["enc1", "enc5", "dec5", "dec2"], "ratios": [0.5], "max_images": 4},
    "variants": [{"strategy": "inner", "ratio": 0.5}, {"strategy": "cut", "k": 1}],
    "finetune": {"n_epochs": 1, "n_epochs_decay": 0},
    "report": {"quality_metric": "fid", "sample_images": 2},
    "workflow": {"train_threads": 1, "eval_threads": 1},
}


def test_found_through_its_entry_point_like_an_installed_plugin():
    import importlib.metadata

    eps = {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
    assert eps[NAME].value == "tinyfam.family:FAMILY" and eps[NAME].dist.name == NAME
    assert NAME in family_names()
    fam = get_family(NAME)
    assert fam.name == NAME and Path(sys.modules[type(fam).__module__].__file__).is_relative_to(THIRD)
    assert fam.pruning_ops().family == NAME


def test_found_in_a_subprocess_through_pythonpath():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(THIRD)])}
    code = (
        "from unetprune.family import family_names, get_family; "
        "print(sorted(family_names())); print(type(get_family('tinyfam')).__name__)"
    )
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert "'tinyfam'" in p.stdout and "TinyFamily" in p.stdout
    no = {**env, "PYTHONPATH": str(REPO / "src")}  # not on the path: not a family
    p = subprocess.run([sys.executable, "-c", code], env=no, capture_output=True, text=True)
    assert "'tinyfam'" not in p.stdout and "unknown model family 'tinyfam'" in p.stderr


def test_its_keys_come_from_its_schema_fragment():
    cfg = load_config(None, {"model": {"family": NAME, NAME: {"levels": 4}}})
    assert cfg["model"][NAME] == {"levels": 4, "width": 8, "disc_width": 8}  # the fragment's defaults
    assert get_family(NAME).spec_from_config(cfg).enc_widths == [8, 16, 32, 32]
    with pytest.raises(ConfigError, match=r"model\.tinyfam\.depth"):
        load_config(None, {"model": {"family": NAME, NAME: {"depth": 4}}})
    with pytest.raises(ConfigError, match=r"model\.tinyfam\.levels"):
        load_config(None, {"model": {"family": NAME, NAME: {"levels": 1}}})


def test_the_tiny_dag_config_is_valid_and_names_its_layers():
    from unetprune import pipeline

    cfg = load_config(None, TINY_DAG)
    assert pipeline.sensitivity_layers(cfg) == ["enc1", "enc5", "dec5", "dec2"]
    assert pipeline.default_inner_levels(cfg) == [4, 5]
    names = set(pipeline.all_variants(cfg))
    assert len(names) == 6 and any(n.startswith("cut-k1") for n in names)


def test_nothing_in_src_or_workflow_knows_it():
    files = [
        *(REPO / "src").rglob("*.py"),
        *(REPO / "src").rglob("*.yaml"),
        *(REPO / "workflow").rglob("*"),
        REPO / "Snakefile",
        REPO / "pyproject.toml",
    ]
    hits = [str(p.relative_to(REPO)) for p in files if p.is_file() and NAME in p.read_text(errors="replace")]
    assert not hits


def test_contract_parametrisation_includes_it():
    import test_family_contract

    assert NAME in test_family_contract.FAMILIES


# ------------------------------------------------------------------------------------------
# the whole DAG
# ------------------------------------------------------------------------------------------


def _workflow_copy(dest: Path) -> Path:
    dest.mkdir(parents=True)
    for name in ("Snakefile", "dvc.yaml"):
        shutil.copy(REPO / name, dest / name)
    for name in ("workflow", "config", "profiles", "src"):
        shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return dest


@pytest.mark.slow
def test_tiny_dag_end_to_end_on_the_third_family(tmp_path):
    from unetprune import pipeline
    from unetprune.checkpoint import load_checkpoint
    from unetprune.layout import ORIGINAL, Layout

    wf = _workflow_copy(tmp_path / "wf")
    (wf / "config" / "tinyfam.yaml").write_text(yaml.safe_dump(TINY_DAG))
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "OMP_NUM_THREADS": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "PYTHONPATH": os.pathsep.join([str(wf / "src"), str(THIRD)]),
    }
    p = subprocess.run(
        [str(BIN / "snakemake"), "--cores", "2", "--configfile", "config/tinyfam.yaml"],
        cwd=wf,
        env=env,
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, f"snakemake failed:\n{p.stdout[-4000:]}\n{p.stderr[-4000:]}"

    cfg = load_config(wf / "config" / "tinyfam.yaml")
    lay = Layout.from_config(cfg, wf / "results")
    with open(lay.table("main")) as f:
        rows = list(csv.DictReader(f))
    assert {(r["variant"], r["stage"]) for r in rows} == set(pipeline.models(cfg))
    assert len(rows) == 1 + 2 * len(pipeline.all_variants(cfg))
    for r in rows:
        assert float(r["params"]) > 0 and float(r["macs_physical"]) > 0 and r["fid_backend"] == "standin"
    for model, stage in pipeline.models(cfg):
        ckpt = load_checkpoint(lay.checkpoint(model, stage))
        assert ckpt["family"] == NAME, (model, stage)
    assert all(lay.sensitivity_json(layer).stat().st_size > 0 for layer in pipeline.sensitivity_layers(cfg))
    for f in (*lay.report_outputs(), lay.mlflow_json, lay.config_file):
        assert f.stat().st_size > 0, f
    cut = [n for n in pipeline.all_variants(cfg) if n.startswith("cut-")][0]
    g = load_checkpoint(lay.pruned_checkpoint(cut))["generator"]["arch"]
    assert len(g["enc_widths"]) == 4  # one level cut from five
    orig = load_checkpoint(lay.checkpoint(ORIGINAL))
    assert torch.is_tensor(next(iter(orig["generator"]["state_dict"].values())))
    p = subprocess.run(
        [str(BIN / "snakemake"), "-n", "--cores", "2", "--configfile", "config/tinyfam.yaml"],
        cwd=wf,
        env=env,
        capture_output=True,
        text=True,
    )
    assert "Nothing to be done" in p.stdout, p.stdout[-3000:]
