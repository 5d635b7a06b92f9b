"""`unetprune track`: the MLflow mirror of the tiny experiment (idempotent sync).

``results_tree`` / ``tiny_layout`` (tests/conftest.py) are the real tiny results tree that
test_report also reads; every path is asked of :class:`unetprune.layout.Layout`.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from unetprune import pipeline
from unetprune.layout import FINETUNED, ORIGINAL, PRUNED

N_LAYERS = 9  # down1..down5, up5..up2
N_MODELS = 1 + 6 * 2  # original + (2 variants + 4 baselines) x (pruned, finetuned)
N_RUNS = N_MODELS + 1 + 1 + N_LAYERS  # + report run + sensitivity parent + a child per layer


@pytest.fixture(scope="module")
def synced(results_tree, tiny_layout, tmp_path_factory):
    """Sync twice (library, then the CLI) into a fresh sqlite store.  Its artifacts are
    ``mlflow-artifacts:/tiny/...`` under ``mlartifacts/`` next to the database: this module reads
    them through :func:`unetprune.tracking.local_artifact_root` (as `mlflow ui` serves them)."""
    from unetprune.cli import main
    from unetprune.tracking import local_artifact_root, sync

    cfg, base, cfg_file = results_tree
    d = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{d / 'mlflow.db'}"
    first = sync(cfg, base, uri=uri)
    first_file = json.loads(tiny_layout.mlflow_json.read_text())
    assert main(["track", "--config", str(cfg_file), "--uri", uri, "--results", str(base)]) == 0
    from mlflow import MlflowClient

    with local_artifact_root(d / "mlartifacts"):
        yield cfg, base, uri, first, first_file, MlflowClient(tracking_uri=uri), d


def _active_runs(client, exp_id):
    from mlflow.entities import ViewType

    return client.search_runs([exp_id], run_view_type=ViewType.ACTIVE_ONLY, max_results=1000)


def test_sync_twice_gives_the_same_runs(synced, tiny_layout):
    cfg, base, _uri, first, first_file, client, d = synced
    exp = client.get_experiment_by_name("tiny")
    assert exp is not None and exp.experiment_id == first["experiment_id"]
    # relative to the store's artifact root (mlartifacts/ next to the sqlite file), not an absolute path
    assert exp.artifact_location == "mlflow-artifacts:/tiny" == first_file["artifact_location"]
    assert first["artifact_root"] == str(d / "mlartifacts")
    runs = _active_runs(client, exp.experiment_id)
    assert len(runs) == N_RUNS == len(first["runs"])
    assert first["logged"] == N_RUNS and first["unchanged"] == 0
    second = json.loads(tiny_layout.mlflow_json.read_text())
    assert second == first_file and second["runs"] == first["runs"]  # same run ids, file unchanged
    keys = {r.data.tags["unetprune.key"] for r in runs}
    assert keys == set(first["runs"]) and len(keys) == N_RUNS
    assert {"tiny/original", "tiny/cut-k1/pruned", "tiny/cut-k1/finetuned", "tiny/sensitivity/up2"} <= keys
    assert keys == {"tiny/original", "tiny/report", "tiny/sensitivity"} | {
        f"tiny/{v}/{s}" for v in pipeline.all_variants(cfg) for s in (PRUNED, FINETUNED)
    } | {f"tiny/sensitivity/{layer}" for layer in pipeline.config_layers(cfg)}


def test_sensitivity_parent_has_one_child_per_layer(synced, tiny_layout):
    cfg, base, _uri, first, _, client, _ = synced
    pid = first["runs"]["tiny/sensitivity"]
    children = client.search_runs(
        [first["experiment_id"]], filter_string=f"tags.`mlflow.parentRunId` = '{pid}'"
    )
    assert sorted(r.data.tags["unetprune.layer"] for r in children) == sorted(pipeline.config_layers(cfg))
    assert len(children) == N_LAYERS
    sens = json.loads(tiny_layout.sensitivity_json("down1").read_text())
    child = next(r for r in children if r.data.tags["unetprune.layer"] == "down1")
    assert child.data.metrics["fid_r0.5"] == pytest.approx(sens["metrics"][0]["fid"])
    assert child.data.metrics["params_r0.5"] == sens["params"][0]
    assert child.data.params["widths"] == str(sens["widths"][0]) and child.data.params["inner"] == "False"
    hist = client.get_metric_history(child.info.run_id, "fid")
    assert [(m.step, m.value) for m in hist] == [(0, pytest.approx(sens["metrics"][0]["fid"]))]
    parent = client.get_run(pid)
    assert parent.data.params["ratios"] == "0.5" and parent.data.params["inner_layers"] == "down5,up5"
    assert "mean_degradation_inner_r0.5" in parent.data.metrics


def _head(repo_root) -> str:
    out = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo_root, capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def test_variant_runs_hold_the_json_values(synced, tiny_layout, repo_root):
    from unetprune.tracking import file_sha256

    cfg, _base, _uri, first, _, client, _ = synced
    lay = tiny_layout
    head = _head(repo_root)  # the code that made (and synced) the results
    assert re.fullmatch(r"[0-9a-f]{40}", head)
    for key, variant, stage, run_name in [
        ("tiny/cut-k1/finetuned", "cut-k1", FINETUNED, "cut-k1/finetuned"),
        (
            "tiny/global-uniform-match-cut-k1/pruned",
            "global-uniform-match-cut-k1",
            PRUNED,
            "global-uniform-match-cut-k1/pruned",
        ),
        ("tiny/original", ORIGINAL, ORIGINAL, "original"),
    ]:
        run = client.get_run(first["runs"][key])
        ev = json.loads(lay.eval_json(variant, stage).read_text())
        m, p = run.data.metrics, run.data.params
        assert m["params"] == ev["complexity"]["params"]
        assert m["macs_physical"] == ev["complexity"]["macs_physical"]
        assert m["macs_output"] == ev["complexity"]["macs_output"]
        assert m["fid"] == pytest.approx(ev["fid"]["value"]) and m["kid"] == pytest.approx(ev["kid"]["mean"])
        assert m["miou"] == pytest.approx(ev["segmentation"]["miou"])
        assert m["l1"] == pytest.approx(ev["l1"]) and m["psnr"] == pytest.approx(ev["psnr"])
        assert m["ssim"] == pytest.approx(ev["ssim"])
        collapsed = ev["diversity"]["ratio"] < cfg["evaluate"]["collapse_threshold"]
        assert m["diversity"] == pytest.approx(ev["diversity"]["ratio"])
        assert m["collapsed"] == float(collapsed) and p["collapsed"] == str(collapsed)
        assert p["collapse_threshold"] == str(cfg["evaluate"]["collapse_threshold"])
        # the main table's latency: one per architecture, the lower median of the variant's stages
        stages = [ORIGINAL] if variant == ORIGINAL else [PRUNED, FINETUNED]
        medians = [
            json.loads(lay.eval_json(variant, st).read_text())["complexity"]["latency"][0]["median_ms"]
            for st in stages
        ]
        assert m["latency_ms"] == pytest.approx(min(medians))
        assert p["fid_backend"] == "standin" and p["stage"] == stage
        tags = run.data.tags
        assert tags["unetprune.key"] == key and tags["mlflow.runName"] == run_name
        assert tags["unetprune.variant"] == variant and tags["unetprune.stage"] == stage
        assert tags["mlflow.source.git.commit"] == tags["unetprune.git_commit"] == head
        assert "version.torch" in tags
        assert "version.mlflow" in tags and "mlflow.parentRunId" not in tags
        arts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"config.yaml", "checkpoint.txt", "json", "tables"} <= arts
        ptr = client.download_artifacts(run.info.run_id, "checkpoint.txt")
        with open(ptr) as f:
            text = f.read()
        ck = lay.checkpoint(variant, stage)
        assert f"path: {ck}" in text and f"sha256: {file_sha256(ck)}" in text and "DVC" in text
    cut = client.get_run(first["runs"]["tiny/cut-k1/finetuned"]).data.params
    assert cut["strategy"] == "cut" and cut["k"] == "1" and cut["finetune_epochs"] == "1+0"
    pj = json.loads(lay.prune_json("cut-k1").read_text())
    assert cut["widths_enc"] == ",".join(map(str, pj["widths"]["enc"]))
    g = client.get_run(first["runs"]["tiny/global-uniform-match-cut-k1/pruned"]).data
    gj = json.loads(lay.prune_json("global-uniform-match-cut-k1").read_text())
    assert g.params["matched_to"] == "cut-k1" and g.params["match_budget"] == "params"
    assert g.params["budget_target"] == str(gj["info"]["budget"]["target"])
    assert g.metrics["params"] == gj["params"]
    inner = client.get_run(first["runs"]["tiny/inner-l5-r0.5/pruned"]).data.params
    assert inner["ratio"] == "0.5" and inner["levels"] == "5" and inner["layers"] == "down5,up5"


def test_tables_are_logged_with_log_table(synced, tiny_layout):
    cfg, _base, _uri, first, _, client, _ = synced
    rid = first["runs"]["tiny/report"]
    arts = {a.path for a in client.list_artifacts(rid, "tables")}
    for name in ("main", "comparison", "sensitivity", "sensitivity_summary", "sensitivity_matrix"):
        assert f"tables/{name}.json" in arts and f"tables/{name}.csv" in arts
    logged = json.loads(client.get_run(rid).data.tags["mlflow.loggedArtifacts"])  # what log_table records
    assert {"path": "tables/main.json", "type": "table"} in logged
    main = pd.read_json(client.download_artifacts(rid, "tables/main.json"), orient="split")
    assert len(main) == N_MODELS and set(main.variant) >= set(pipeline.all_variants(cfg))
    figs = {a.path for a in client.list_artifacts(rid, "figures")}
    assert {f"figures/{tiny_layout.figure(f).name}" for f in tiny_layout.REPORT_FIGURES} <= figs
    assert tiny_layout.report_md.name in {a.path for a in client.list_artifacts(rid)}
    sens = client.list_artifacts(first["runs"]["tiny/sensitivity"], "tables")
    assert "tables/sensitivity.json" in {a.path for a in sens}
    report = client.get_run(rid).data
    assert report.metrics["comparisons"] == 4 and report.params["quality_metric"] == "fid"
    assert report.params["verdict_metric"] == "fid" and report.metrics["comparisons_decided_by_collapse"] == 0
    main_df = pd.read_json(client.download_artifacts(rid, "tables/main.json"), orient="split")
    assert report.metrics["collapsed_models"] == int(main_df.collapsed.astype(bool).sum())
    comp = pd.read_json(client.download_artifacts(rid, "tables/comparison.json"), orient="split")
    assert report.metrics["comparisons_with_disagreeing_metrics"] == int(
        (comp.disagree.fillna("") != "").sum()
    )
    assert "ratios_no_effect" in report.metrics


def test_changed_results_replace_runs_without_duplicates(synced, tiny_layout):
    """A changed result re-logs only the runs it affects, in place of the old ones."""
    from unetprune.tracking import sync

    cfg, base, uri, first, _, client, _ = synced
    path = tiny_layout.eval_json("cut-k1", FINETUNED)
    original = path.read_text()
    try:
        ev = json.loads(original)
        ev["psnr"] += 1.0
        path.write_text(json.dumps(ev))
        out = sync(cfg, base, uri=uri)
        assert out["logged"] == 2  # that model's run and the report run (its tables changed)
        assert out["runs"]["tiny/cut-k1/finetuned"] != first["runs"]["tiny/cut-k1/finetuned"]
        assert out["runs"]["tiny/report"] != first["runs"]["tiny/report"]
        assert out["runs"]["tiny/cut-k1/pruned"] == first["runs"]["tiny/cut-k1/pruned"]
        assert len(_active_runs(client, out["experiment_id"])) == N_RUNS
        versions = client.search_model_versions("name = 'tiny-generator'")  # the stale version went too
        assert len(versions) == N_MODELS
        assert {v.run_id for v in versions} == {out["runs"][k] for k in out["runs"]} & {
            v.run_id for v in versions
        }
        assert client.get_run(out["runs"]["tiny/cut-k1/finetuned"]).data.metrics["psnr"] == pytest.approx(
            ev["psnr"]
        )
    finally:
        path.write_text(original)
    assert sync(cfg, base, uri=uri)["logged"] == 2  # back to the original content


def test_track_without_report_is_a_clear_error(results_tree, tmp_path):
    from unetprune.layout import Layout
    from unetprune.tracking import TrackingError, sync

    cfg, _base, _ = results_tree
    report = re.escape(str(Layout.from_config(cfg, tmp_path).report_md))
    with pytest.raises(TrackingError, match=rf"missing {report}.*unetprune report"):
        sync(cfg, tmp_path, uri=f"sqlite:///{tmp_path / 'x.db'}")


# ------------------------------------------------------------------------------------------
# MLflow as people browse it: curves, job times, relative artifacts, loadable models, tags
# ------------------------------------------------------------------------------------------


def _current(tiny_layout) -> dict:
    """The run ids of the latest sync (test_changed_results_replace_runs... re-logs some runs)."""
    return json.loads(tiny_layout.mlflow_json.read_text())


def test_training_curves_have_one_point_per_epoch(synced, tiny_layout):
    client = synced[5]
    first = _current(tiny_layout)
    for key, (variant, stage) in {
        "tiny/original": (ORIGINAL, ORIGINAL),
        "tiny/cut-k1/finetuned": ("cut-k1", FINETUNED),
    }.items():
        log = json.loads(tiny_layout.train_log(variant, stage).read_text())
        epochs = log["epochs"]
        assert epochs
        rid = first["runs"][key]
        for name in ("G_L1", "G_GAN", "D_real", "D_fake", "lr", "images_per_s"):
            hist = client.get_metric_history(rid, f"train/{name}")
            assert [(m.step, m.value) for m in hist] == [
                (e["epoch"], pytest.approx(e[name])) for e in epochs
            ], name
        curve = log["eval"]["curve"]  # the learning check: epoch 0 = before training
        hist = client.get_metric_history(rid, "check/l1")
        assert [(m.step, m.value) for m in hist] == [(p["epoch"], pytest.approx(p["score"])) for p in curve]
        assert len(hist) == len(epochs) + 1
    assert client.get_run(first["runs"]["tiny/cut-k1/pruned"]).data.metrics.keys().isdisjoint({"train/G_L1"})


def test_run_times_are_the_jobs_times(synced, tiny_layout):
    """Start = the training job's recorded start (train.json `started_at`), end = the evaluation's
    recorded end (the eval JSON's `finished_at`): the jobs' times, not the sync's (which ran later)."""
    from datetime import datetime

    client = synced[5]
    first = _current(tiny_layout)
    lay = tiny_layout
    log = json.loads(lay.train_log(ORIGINAL).read_text())
    ev = json.loads(lay.eval_json(ORIGINAL, ORIGINAL).read_text())
    run = client.get_run(first["runs"]["tiny/original"])
    start = datetime.fromisoformat(log["started_at"]).timestamp()
    end = datetime.fromisoformat(ev["finished_at"]).timestamp()
    assert start <= datetime.fromisoformat(log["finished_at"]).timestamp() <= end
    assert run.info.start_time == int(start * 1000) and run.info.end_time == int(end * 1000)
    assert run.data.tags["unetprune.times_from"] == "recorded"
    report = client.get_run(first["runs"]["tiny/report"])
    assert report.info.end_time == int(lay.report_md.stat().st_mtime * 1000)
    for rid in first["runs"].values():
        info = client.get_run(rid).info
        assert info.start_time <= info.end_time


def test_artifact_uris_are_relative_to_the_artifact_root(synced, tiny_layout):
    """Every run's artifact URI is mlflow-artifacts:/tiny/<run>/artifacts (no path of this machine);
    the files are under the store's artifact root."""
    client, d = synced[5], synced[6]
    first = _current(tiny_layout)
    for rid in first["runs"].values():
        uri = client.get_run(rid).info.artifact_uri
        assert uri == f"mlflow-artifacts:/tiny/{rid}/artifacts", uri
        assert str(d) not in uri and "file:" not in uri
        assert any(p.is_file() for p in (d / "mlartifacts" / "tiny" / rid / "artifacts").rglob("*"))


def test_tags_name_commit_config_and_backends(synced, tiny_layout, repo_root):
    from unetprune.tracking import config_digest

    cfg, client = synced[0], synced[5]
    first = _current(tiny_layout)
    tags = client.get_run(first["runs"]["tiny/cut-k1/finetuned"]).data.tags
    assert tags["unetprune.config_sha256"] == config_digest(cfg)
    assert tags["unetprune.git_commit"] == _head(repo_root)
    assert tags["unetprune.fid_backend"] == "standin" == tags["unetprune.kid_backend"]
    assert tags["unetprune.segmentation"] == "demo" and tags["unetprune.eval_device"] == "cpu"
    assert tags["unetprune.train_device"] == "cpu" and tags["unetprune.model_family"] == "pix2pix"


def _model_outputs_equal_checkpoint(model, ckpt, cfg):
    """The pyfunc model's predict = the checkpoint's generator in the evaluation mode (and in eval mode)."""
    import numpy as np
    import torch

    from unetprune.checkpoint import generator_from_checkpoint
    from unetprune.translate import generation_mode

    size = cfg["data"]["crop_size"]
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, size, size)).astype(np.float32)
    g = generator_from_checkpoint(ckpt)
    for mode in ("train_bn", "eval"):
        with generation_mode(g, mode, 0):
            want = g(torch.from_numpy(x)).numpy()
        got = model.predict(x) if mode == cfg["evaluate"]["mode"] else model.predict(x, params={"mode": mode})
        np.testing.assert_array_equal(got, want)


def test_variant_generators_are_loadable_models(synced, tiny_layout):
    """Each model run holds its generator as a pyfunc model (registered as a version of
    tiny-generator) whose outputs equal the checkpoint's; params, MACs and strategy in its metadata."""
    import mlflow

    from unetprune.tracking import local_artifact_root

    cfg, uri, client, d = synced[0], synced[2], synced[5], synced[6]
    first = _current(tiny_layout)
    versions = client.search_model_versions("name = 'tiny-generator'")
    assert len(versions) == N_MODELS
    by_key = {v.tags["unetprune.key"]: v for v in versions}
    assert set(by_key) == {
        k for k in first["runs"] if k.count("/") >= 1 and "sensitivity" not in k and k != "tiny/report"
    }
    mv = by_key["tiny/cut-k1/finetuned"]
    assert mv.run_id == first["runs"]["tiny/cut-k1/finetuned"] and mv.tags["unetprune.strategy"] == "cut"
    mlflow.set_tracking_uri(uri)
    with local_artifact_root(d / "mlartifacts"):
        model = mlflow.pyfunc.load_model(f"models:/tiny-generator/{mv.version}")
        by_run = mlflow.pyfunc.load_model(f"runs:/{mv.run_id}/generator")
    meta = model.metadata.metadata["unetprune"]
    ev = json.loads(tiny_layout.eval_json("cut-k1", FINETUNED).read_text())
    assert meta["variant"] == "cut-k1" and meta["stage"] == FINETUNED and meta["strategy"] == "cut"
    assert (
        meta["params"] == ev["complexity"]["params"]
        and meta["macs_physical"] == ev["complexity"]["macs_physical"]
    )
    ckpt = tiny_layout.checkpoint("cut-k1", FINETUNED)
    _model_outputs_equal_checkpoint(model, ckpt, cfg)
    _model_outputs_equal_checkpoint(by_run, ckpt, cfg)
    # the model's code is saved as text; its weights are a weights_only checkpoint (nothing pickled)
    art = d / "mlartifacts" / "tiny" / "models" / model.metadata.model_id / "artifacts"
    assert not list(art.rglob("*.pkl")) and (art / "unetprune_generator.py").is_file()
    import torch

    assert torch.load(art / "artifacts" / "generator.pt", weights_only=True)["generator"]["arch"]


def test_the_store_can_be_moved(synced, tiny_layout, tmp_path):
    """mlflow.db + mlartifacts/ copied elsewhere still give the artifacts and the models."""
    import shutil

    import mlflow

    from unetprune.tracking import local_artifact_root

    cfg, d = synced[0], synced[6]
    first = _current(tiny_layout)
    shutil.copy(d / "mlflow.db", tmp_path / "mlflow.db")
    shutil.copytree(d / "mlartifacts", tmp_path / "mlartifacts")
    moved = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(moved)
    rid = first["runs"]["tiny/original"]
    with local_artifact_root(tmp_path / "mlartifacts"):
        path = client.download_artifacts(rid, "config.yaml", str(tmp_path))
        assert str(tmp_path / "mlartifacts") not in path and (tmp_path / "config.yaml").is_file()
        mlflow.set_tracking_uri(moved)
        model = mlflow.pyfunc.load_model(f"runs:/{rid}/generator")
    _model_outputs_equal_checkpoint(model, tiny_layout.checkpoint(ORIGINAL), cfg)


# ------------------------------------------------------------------------------------------
# `unetprune track --uri http://...`: a tracking server (a real `mlflow server` on 127.0.0.1)
# ------------------------------------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def mlflow_server(tmp_path, db: str, artifacts):
    """`mlflow server` on a free port of 127.0.0.1 (backend ``db``, artifacts served from the folder
    ``artifacts``: what `mlflow ui` does); stopped at the end by its process group (the server and
    the workers it started, nothing else)."""
    import os
    import signal
    import sys
    import time
    import urllib.request
    from pathlib import Path

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / f"server-{port}.log"
    cmd = [
        str(Path(sys.executable).parent / "mlflow"),
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        db,
        "--artifacts-destination",
        str(artifacts),
    ]
    with log_path.open("w") as log:
        server = subprocess.Popen(
            cmd,
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
        )
    t0 = time.monotonic()
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
            if server.poll() is not None or time.monotonic() - t0 > 180:
                raise AssertionError(f"mlflow server did not start:\n{log_path.read_text()[-3000:]}")
        print(f"mlflow server (pid {server.pid}) up on {url} in {time.monotonic() - t0:.1f} s")
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the group this test started (start_new_session)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)


@pytest.mark.slow
def test_mlflow_server_serves_the_synced_store(synced, tiny_layout, tmp_path):
    """The browse command of the README and docs/tracking.md (`mlflow ui` = `mlflow server` with the store and its artifact
    root): artifacts and models of the local store come through the server."""
    import mlflow

    cfg, uri, d = synced[0], synced[2], synced[6]
    first = _current(tiny_layout)
    with mlflow_server(tmp_path, uri, d / "mlartifacts") as url:
        client = mlflow.MlflowClient(url)
        rid = first["runs"]["tiny/inner-l5-r0.5/finetuned"]
        assert "config.yaml" in {a.path for a in client.list_artifacts(rid)}
        text = Path(client.download_artifacts(rid, "checkpoint.txt", str(tmp_path))).read_text()
        assert f"path: {tiny_layout.checkpoint('inner-l5-r0.5', FINETUNED)}" in text
        mlflow.set_tracking_uri(url)
        model = mlflow.pyfunc.load_model(f"runs:/{rid}/generator")
        _model_outputs_equal_checkpoint(model, tiny_layout.checkpoint("inner-l5-r0.5", FINETUNED), cfg)
        mlflow.set_tracking_uri(uri)


@pytest.mark.slow
def test_track_to_a_tracking_server(results_tree, tmp_path):
    """`unetprune track --uri http://127.0.0.1:PORT`: runs, artifacts (served by the server from its
    artifact root, recorded as mlflow-artifacts:/...) and loadable registered models."""
    artifacts = tmp_path / "server-artifacts"
    with mlflow_server(tmp_path, f"sqlite:///{tmp_path / 'server.db'}", artifacts) as url:
        _track_to_server(results_tree, url, artifacts, tmp_path)


def _track_to_server(results_tree, url, artifacts, tmp_path):
    import shutil

    import mlflow
    from mlflow import MlflowClient

    from unetprune.cli import main
    from unetprune.layout import Layout

    cfg, base, cfg_file = results_tree
    copy = tmp_path / "results"  # mlflow.json goes here, not into the shared tree
    shutil.copytree(base, copy)
    assert main(["track", "--config", str(cfg_file), "--uri", url, "--results", str(copy)]) == 0
    lay = Layout.from_config(cfg, copy)
    out = json.loads(lay.mlflow_json.read_text())
    assert out["tracking_uri"] == url and len(out["runs"]) == N_RUNS
    client = MlflowClient(url)
    exp = client.get_experiment_by_name("tiny")
    assert exp.artifact_location.startswith("mlflow-artifacts:")  # the server's artifact root
    rid = out["runs"]["tiny/cut-k1/pruned"]
    run = client.get_run(rid)
    assert (
        run.info.artifact_uri.startswith("mlflow-artifacts:") and str(tmp_path) not in run.info.artifact_uri
    )
    assert list(artifacts.rglob("checkpoint.txt"))  # stored by the server, under its artifact root
    hist = client.get_metric_history(out["runs"]["tiny/original"], "train/G_L1")
    assert len(hist) == len(json.loads(lay.train_log(ORIGINAL).read_text())["epochs"])
    mv = next(v for v in client.search_model_versions("name = 'tiny-generator'") if v.run_id == rid)
    mlflow.set_tracking_uri(url)
    model = mlflow.pyfunc.load_model(f"models:/tiny-generator/{mv.version}")
    _model_outputs_equal_checkpoint(model, lay.checkpoint("cut-k1", PRUNED), cfg)
    # a second sync changes nothing
    assert main(["track", "--config", str(cfg_file), "--uri", url, "--results", str(copy)]) == 0
    assert json.loads(lay.mlflow_json.read_text())["runs"] == out["runs"]


def test_a_generator_of_several_inputs_is_logged_with_its_family_input_names(tmp_path):
    """The pyfunc model's inputs are those the family names (pyfunc_inputs): a Wav2Lip generator
    takes {"face", "mel"} by name and predicts what its checkpoint's generator does."""
    import mlflow
    import numpy as np
    import torch

    from unetprune.checkpoint import generator_from_checkpoint, save_generator
    from unetprune.family import get_family
    from unetprune.tracking import _client, _experiment_id, _log_model, _Run, local_artifact_root
    from unetprune.translate import generation_mode

    fam = get_family("wav2lip")
    assert [n for n, _ in fam.pyfunc_inputs(96)] == ["face", "mel"]
    assert get_family("pix2pix").pyfunc_inputs(64) == [("input", (3, 64, 64))]
    ckpt = tmp_path / "w2l.pt"
    save_generator(
        ckpt, fam.build(fam.spec_from_config({"model": {"wav2lip": {"width_mult": 0.125}}}), seed=0)
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = _client(uri)
    with local_artifact_root(tmp_path / "mlartifacts"):
        exp = _experiment_id(client, "w2l", "mlflow-artifacts:/w2l")
        rid = client.create_run(exp).info.run_id
        run = _Run("w2l/original", "original")
        run.model = {
            "checkpoint": ckpt,
            "registered_model": None,
            "image_size": 96,
            "family": "wav2lip",
            "mode": "eval",
            "seed": 0,
            "metadata": {"variant": "original"},
        }
        _log_model(client, rid, run)
        mlflow.set_tracking_uri(uri)
        model = mlflow.pyfunc.load_model(f"runs:/{rid}/generator")
    assert [s.name for s in model.metadata.get_input_schema().inputs] == ["face", "mel"]
    rng = np.random.default_rng(0)
    face = rng.uniform(0, 1, (2, 6, 96, 96)).astype(np.float32)
    mel = rng.normal(size=(2, 1, 80, 16)).astype(np.float32)
    g = generator_from_checkpoint(ckpt)
    with generation_mode(g, "eval", 0):
        want = g(torch.from_numpy(face), torch.from_numpy(mel)).numpy()
    np.testing.assert_array_equal(model.predict({"face": face, "mel": mel}), want)
