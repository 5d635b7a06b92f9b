"""`unetprune track`: the MLflow mirror of the tiny experiment (idempotent sync).

``results_tree`` / ``tiny_layout`` (tests/conftest.py) are the real tiny results tree that
test_report also reads; every path is asked of :class:`unetprune.layout.Layout`.
"""

from __future__ import annotations

import json
import re
import subprocess

import pandas as pd
import pytest

from unetprune import pipeline
from unetprune.layout import FINETUNED, ORIGINAL, PRUNED

N_LAYERS = 9  # down1..down5, up5..up2
N_MODELS = 1 + 6 * 2  # original + (2 variants + 4 baselines) x (pruned, finetuned)
N_RUNS = N_MODELS + 1 + 1 + N_LAYERS  # + report run + sensitivity parent + a child per layer


@pytest.fixture(scope="module")
def synced(results_tree, tiny_layout, tmp_path_factory):
    """Sync twice (library, then the CLI) into a fresh sqlite store."""
    from unetprune.cli import main
    from unetprune.tracking import sync

    cfg, base, cfg_file = results_tree
    d = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{d / 'mlflow.db'}"
    first = sync(cfg, base, uri=uri)
    first_file = json.loads(tiny_layout.mlflow_json.read_text())
    assert main(["track", "--config", str(cfg_file), "--uri", uri, "--results", str(base)]) == 0
    from mlflow import MlflowClient

    return cfg, base, uri, first, first_file, MlflowClient(tracking_uri=uri), d


def _active_runs(client, exp_id):
    from mlflow.entities import ViewType

    return client.search_runs([exp_id], run_view_type=ViewType.ACTIVE_ONLY, max_results=1000)


def test_sync_twice_gives_the_same_runs(synced, tiny_layout):
    cfg, base, _uri, first, first_file, client, d = synced
    exp = client.get_experiment_by_name("tiny")
    assert exp is not None and exp.experiment_id == first["experiment_id"]
    assert exp.artifact_location.startswith((d / "mlartifacts").as_uri())  # next to the sqlite file
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
        ("tiny/global-uniform-match-cut-k1/pruned", "global-uniform-match-cut-k1", PRUNED,
         "global-uniform-match-cut-k1/pruned"),
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
        assert m["latency_ms"] == pytest.approx(ev["complexity"]["latency"][0]["median_ms"])
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
    assert report.metrics["comparisons_with_disagreeing_metrics"] == int((comp.disagree.fillna("") != "").sum())
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
