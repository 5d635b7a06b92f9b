"""Shared fixtures: the repository root, a tiny demo dataset, and a tiny but REAL results
tree (``results_tree``) that test_report and test_tracking read."""

import json
import os
import shutil
from pathlib import Path

import pytest

# Tests are sized for 2 cores; keep torch from oversubscribing them.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory):
    """A tiny demo dataset (32 px) shared by tests that only read it."""
    from unetprune.data.demo import build_demo_dataset

    root = tmp_path_factory.mktemp("demo32")
    build_demo_dataset(root, image_size=32, n_train=6, n_val=2, n_test=4, progress=False)
    return root


# ------------------------------------------------------------------------------------------
# the tiny experiment of test_report / test_tracking
# ------------------------------------------------------------------------------------------

TINY_CFG = {
    "experiment": "tiny",
    "data": {"dataset": "folder", "crop_size": 32, "load_size": 32},
    "demo": {"image_size": 32},
    "model": {
        "pix2pix": {"num_downs": 5, "ngf": 16, "ndf": 8}
    },  # ngf 16: fine enough widths to match budgets within 1%
    "train": {"n_epochs": 1, "n_epochs_decay": 0, "eval_images": 2, "threads": 1},
    "variants": [{"strategy": "inner", "ratio": 0.5}, {"strategy": "cut", "k": 1}],
    "sensitivity": {"ratios": [0.5]},
    "evaluate": {"fid_backend": "standin", "max_images": 4, "segmentation": "demo"},
    "finetune": {"enabled": True, "n_epochs": 1, "n_epochs_decay": 0},
    "report": {"sample_images": 2},
}


def build_tree(root: Path) -> tuple[dict, Path, Path]:
    """A complete results tree under ``root/results`` made by the real library functions,
    each writing where :class:`unetprune.layout.Layout` says (as the workflow's rules do):
    train the original, sweep every layer, `unetprune prune` every variant and matched
    baseline, fine-tune each, evaluate every model, then `unetprune report`."""
    from unetprune import pipeline
    from unetprune.checkpoint import atomic_write_text, generator_from_checkpoint
    from unetprune.cli import main
    from unetprune.commands.sweep import sweep_metric
    from unetprune.config import load_config
    from unetprune.data.demo import build_demo_dataset
    from unetprune.evaluate import Evaluator
    from unetprune.layout import FINETUNED, ORIGINAL, PRUNED, Layout
    from unetprune.pruning import sensitivity_sweep
    from unetprune.train import finetune_config, train

    import yaml

    # the dataset lives outside the results base, named by data.root (as a download would)
    data = root / "data"
    build_demo_dataset(data, image_size=32, n_train=4, n_val=2, n_test=4, progress=False)
    raw = {**TINY_CFG, "data": {**TINY_CFG["data"], "root": str(data)}}
    cfg = load_config(None, raw)
    cfg_file = root / "config.yaml"
    cfg_file.write_text(yaml.safe_dump(raw))
    base = root / "results"
    lay = Layout.from_config(cfg, base)

    # train_original
    train(cfg, lay.original_dir, progress=False)
    original = lay.checkpoint(ORIGINAL)

    # sensitivity_layer (every layer in one process here), one JSON per layer as it finishes,
    # with how its points were scored (as `unetprune sweep` records it)
    ev = Evaluator(cfg, "test", cache_dir=lay.fid_cache, latency=False)
    s = cfg["sensitivity"]
    scored: list[dict] = []

    def metric(g) -> dict:
        r = ev.score(g)
        scored.append(r)
        return sweep_metric(r)

    def write_layer(layer: str, result: dict) -> None:
        r = scored[0]
        scoring = {
            "fid_backend": r["fid"]["backend"],
            "split": r["split"],
            "n_images": r["n_images"],
            "mode": r["mode"],
            "image_size": r["image_size"],
        }
        atomic_write_text(lay.sensitivity_json(layer), json.dumps({**result, **scoring}, indent=2) + "\n")

    sensitivity_sweep(
        generator_from_checkpoint(original),
        pipeline.sensitivity_layers(cfg),
        s["ratios"],
        metric,
        on_layer=write_layer,
        importance=s["importance"],
        seed=cfg["seed"],
        input_shape=(1, 3, 32, 32),
        include_full=True,
    )

    # prune_variant + finetune_variant
    for name in pipeline.all_variants(cfg):
        argv = [
            "prune",
            "--checkpoint",
            str(original),
            "--out",
            str(lay.pruned_checkpoint(name)),
            "--json",
            str(lay.prune_json(name)),
            *pipeline.prune_cli_args(cfg, name, base),
        ]
        assert main(argv) == 0, argv
        train(
            finetune_config(cfg),
            lay.finetuned_dir(name),
            init_from=lay.pruned_checkpoint(name),
            init_discriminator_from=original,
            progress=False,
        )

    # export_* + evaluate_original + evaluate_variant (with CPU latency, as the evaluate rules do:
    # ONNX Runtime times the exported stage's file, the other stages skip it)
    from unetprune.export import export_checkpoint, exported_models

    exported = set(exported_models(cfg))
    for model, stage in exported:
        export_checkpoint(lay.checkpoint(model, stage), lay.onnx_model(model, stage))
    ev = Evaluator(cfg, "test", cache_dir=lay.fid_cache, latency=True)
    for model, stage in pipeline.models(cfg):
        ckpt = lay.checkpoint(model, stage)
        ev.ctx.ort = (model, stage) in exported
        ev.ctx.onnx_file = lay.onnx_model(model, stage) if ev.ctx.ort else None
        r = ev.score(generator_from_checkpoint(ckpt), checkpoint=ckpt)
        r["experiment"] = cfg["experiment"]
        atomic_write_text(lay.eval_json(model, stage), json.dumps(r, indent=2))
    assert {stage for _, stage in pipeline.models(cfg)} == {ORIGINAL, PRUNED, FINETUNED}

    # report
    assert main(["report", "--config", str(cfg_file), "--results", str(base)]) == 0
    return cfg, base, cfg_file


@pytest.fixture(scope="session")
def results_tree(tmp_path_factory):
    """(cfg, results base, config file) of the tiny experiment, built once per session."""
    import yaml

    from unetprune.config import load_config

    root = tmp_path_factory.getbasetemp() / "report-tree"
    done = root / ".done"
    if not done.exists():
        if root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True)
        build_tree(root)
        done.touch()
    raw = yaml.safe_load((root / "config.yaml").read_text())
    return load_config(None, raw), root / "results", root / "config.yaml"


@pytest.fixture(scope="session")
def tiny_layout(results_tree):
    """The :class:`unetprune.layout.Layout` of the tiny experiment."""
    from unetprune.layout import Layout

    cfg, base, _ = results_tree
    return Layout.from_config(cfg, base)


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


# ------------------------------------------------------------------------------------------
# the third model family (tests/thirdfamily): an installed-looking distribution outside src/
# ------------------------------------------------------------------------------------------

THIRD_FAMILY_PATH = REPO / "tests" / "thirdfamily"  # holds tinyfam/ and tinyfam-0.0.dist-info/


def _install_third_family() -> None:
    """Put ``tinyfam`` and its ``tinyfam-0.0.dist-info`` (entry point group ``unetprune.families``)
    on ``sys.path``: ``importlib.metadata`` finds it like any installed distribution, and
    subprocesses inherit it through ``PYTHONPATH``."""
    import sys

    path = str(THIRD_FAMILY_PATH)
    if path not in sys.path:
        sys.path.append(path)
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if path not in parts:
        os.environ["PYTHONPATH"] = os.pathsep.join(parts + [path])


_install_third_family()


# ------------------------------------------------------------------------------------------
# the hostile-input suite's summary (tests/test_hostile.py), at the end of the run, in CI too
# ------------------------------------------------------------------------------------------


def pytest_terminal_summary(terminalreporter):
    """Print the hostile suite's line (attacks tried, refused with one line, code executed,
    inputs lost, hangs) when that suite ran."""
    import sys

    hostile = sys.modules.get("test_hostile")
    if hostile is not None and hostile.HOSTILE["tried"]:
        terminalreporter.write_sep("-", "hostile inputs")
        for line in hostile.hostile_summary().splitlines():
            terminalreporter.write_line(line)
