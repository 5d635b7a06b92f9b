"""MLflow as a user sees it: the tiny experiment synced with its ONNX exports, its experiment tags,
the ONNX model logged beside the PyTorch one, and MLflow's own web UI (a real `mlflow server`
loaded in headless Chromium) showing the experiment's training runs at the address the sync
records."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from test_tracking import mlflow_server
from unetprune import pipeline
from unetprune.layout import ORIGINAL, Layout

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.fixture(scope="module")
def onnx_synced(results_tree, tmp_path_factory):
    """The tiny results tree (with the ONNX files the workflow's export jobs write: the original and
    every variant at its final stage) copied and synced into a fresh sqlite store."""
    from unetprune.tracking import local_artifact_root, sync

    cfg, base, _ = results_tree
    d = tmp_path_factory.mktemp("mlflow-ui")
    copy = d / "results"
    shutil.copytree(base, copy)
    lay = Layout.from_config(cfg, copy)
    uri = f"sqlite:///{d / 'mlflow.db'}"
    out = sync(cfg, copy, uri=uri)
    from mlflow import MlflowClient

    with local_artifact_root(d / "mlartifacts"):
        yield cfg, lay, uri, out, MlflowClient(tracking_uri=uri), d


def test_experiment_is_tagged_as_model_training_with_the_verdict_metric(onnx_synced):
    cfg, _, _, out, client, _ = onnx_synced
    tags = client.get_experiment(out["experiment_id"]).tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"
    assert tags["mlflow.experiment.primaryMetric.name"] == cfg["report"]["quality_metric"] == "fid"
    assert tags["mlflow.experiment.primaryMetric.greaterIsBetter"] == "False"  # lower FID is better
    assert out["ui_path"] == f"#/experiments/{out['experiment_id']}?workflowType=machine_learning"


def test_onnx_model_is_logged_beside_the_pytorch_one(onnx_synced):
    """The exported models' runs hold ``generator_onnx`` (equal to PyTorch within 1e-4 on the same
    inputs) beside ``generator``; the runs of models without an export hold only ``generator``;
    every model run has the ONNX Runtime latency metric."""
    import mlflow

    from unetprune.checkpoint import generator_from_checkpoint
    from unetprune.export import exported_models

    cfg, lay, uri, out, client, d = onnx_synced
    final = pipeline.final_stage(cfg)
    mlflow.set_tracking_uri(uri)
    for model, stage in pipeline.models(cfg):
        key = f"tiny/{ORIGINAL}" if model == ORIGINAL else f"tiny/{model}/{stage}"
        rid = out["runs"][key]
        logged = {
            m.name
            for m in client.search_logged_models(
                experiment_ids=[out["experiment_id"]], filter_string=f"source_run_id = '{rid}'"
            )
        }
        exported = (model, stage) in exported_models(cfg)
        assert exported == (stage in (ORIGINAL, final))
        assert logged == ({"generator", "generator_onnx"} if exported else {"generator"}), key
        run = client.get_run(rid)
        assert run.data.metrics["latency_ort_ms"] > 0 and run.data.metrics["latency_ms"] > 0, key
        if not exported:
            continue
        onnx_model = mlflow.pyfunc.load_model(f"runs:/{rid}/generator_onnx")
        meta = onnx_model.metadata.metadata["unetprune"]
        assert meta["variant"] == model and meta["opset"] is not None
        x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 32, 32)).astype(np.float32)
        got = onnx_model.predict({"input": x})["output"]
        g = generator_from_checkpoint(lay.checkpoint(model, stage)).eval()
        with torch.inference_mode():
            want = g(torch.from_numpy(x)).numpy()
        assert np.max(np.abs(got - want)) <= 1e-4, key


def test_main_table_has_one_onnx_runtime_latency_per_architecture(onnx_synced):
    """``latency_ort_ms``: one ONNX Runtime median per architecture - the exported stage's file
    (the original's, each variant's final stage), timed at the threads the eager entry states;
    the other stage is not exported again and shows the same value."""
    import json

    from unetprune.export import exported_models
    from unetprune.report.tables import main_table

    cfg, lay = onnx_synced[0], onnx_synced[1]
    exported = set(exported_models(cfg))
    df = main_table(cfg, lay.root.parent)  # the copied results base
    for row in df.itertuples():
        entries = []
        for st in df[df.variant == row.variant].stage:
            lat = json.loads(lay.eval_json(row.variant, st).read_text())["complexity"]["latency"]
            by_mode = {e["mode"]: e for e in lat if e["device"] == "cpu"}
            if (row.variant, st) not in exported:
                assert "onnxruntime" not in by_mode and by_mode["eager"]["median_ms"] > 0
                continue
            ort = by_mode["onnxruntime"]
            assert ort["threads"] == by_mode["eager"]["threads"] >= 1
            assert Path(ort["source"]).name == lay.onnx_model(row.variant, st).name
            entries.append(ort["median_ms"])
        assert len(entries) == 1
        assert row.latency_ort_ms == pytest.approx(entries[0]) and row.latency_ort_ms > 0


def _visible_text(html: str) -> str:
    text = re.sub(r"<script.*?</script>|<style.*?</style>", " ", html, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", text))


def _render(url: str, tmp_path: Path) -> str:
    """The DOM of ``url`` after its scripts ran, from headless Chromium (its own profile folder)."""
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--virtual-time-budget=30000",
        "--dump-dom",
        url,
    ]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stderr[-2000:]
    return _visible_text(p.stdout)


@pytest.mark.skipif(CHROMIUM is None, reason="needs a Chromium browser (chromium) for the headless UI check")
def test_mlflow_ui_opens_the_experiment_on_its_training_runs(onnx_synced, tmp_path):
    cfg, _, uri, out, _, d = onnx_synced
    with mlflow_server(tmp_path, uri, d / "mlartifacts") as url:
        text = _render(f"{url}/{out['ui_path']}", tmp_path)
    assert "matching runs" in text, text[:2000]
    names = {ORIGINAL} | {f"{m}/{s}" for m, s in pipeline.models(cfg) if m != ORIGINAL}
    shown = {n for n in names if n in text}
    assert ORIGINAL in shown and "cut-k1/finetuned" in shown, text[:2000]
    assert "Runs - Experiment" in text  # the page is the experiment's runs, not the GenAI overview
    assert "Token Usage" not in text and "No data available for the selected time range" not in text
