"""MLflow mirror of one experiment's results (the only module that imports mlflow).

``sync(cfg)`` reads the JSON files, tables and figures under ``results/<experiment>/`` and
writes them into the MLflow experiment of the same name:

* a run per model and stage — ``original``, ``<variant>/pruned``,
  ``<variant>/finetuned`` — with params (strategy, ratio, levels, k, layers, widths, matched
  budget, ``collapsed``), metrics (params, both MAC conventions, CPU latency, FID, KID, mIoU,
  L1, PSNR, SSIM, output ``diversity`` and ``collapsed`` = 1/0: the collapse check, budget
  gap) and artifacts (the config, a ``checkpoint.txt`` pointer to the DVC-tracked checkpoint
  with its sha256, the eval/prune/train JSON, the model's samples, the tables);
* the sensitivity sweep as a parent run with one child run per layer (metrics per ratio as
  ``fid_r0.5`` and as ``fid`` with ``step`` = ratio index);
* a ``report`` run with every table (``mlflow.log_table``), the figures and report.md.

Idempotent: every run carries a stable ``unetprune.key`` tag (``<experiment>/original``,
``<experiment>/<variant>/<stage>``, ``<experiment>/report``, ``<experiment>/sensitivity[/<layer>]``)
and a ``unetprune.sha256`` of its content.  A sync looks the key up; an unchanged run is kept
(only its tags — git commit, versions — are refreshed), a changed one is deleted and logged
again, so re-running never duplicates runs.
The run ids go to the experiment's ``mlflow.json`` (:mod:`unetprune.layout`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import tempfile
import warnings
from pathlib import Path

import yaml

from . import pipeline
from .fileio import atomic_write_text
from .errors import UserFacingError
from .layout import DEFAULT_BASE, FINETUNED, ORIGINAL, Layout
from .fileio import sha256_file as file_sha256

KEY_TAG = "unetprune.key"
HASH_TAG = "unetprune.sha256"
PARENT_TAG = "mlflow.parentRunId"
QUALITY = ("fid", "kid", "miou", "l1", "psnr", "ssim")


class TrackingError(UserFacingError):
    """The results cannot be mirrored into MLflow (missing report, bad URI)."""


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------


def git_commit(cwd: Path | str | None = None) -> str:
    """``git rev-parse HEAD`` of the unetprune checkout (the code that made the results), or 'unknown'."""
    cwd = cwd if cwd is not None else Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"




def _finite(x) -> float | None:
    if x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _fmt_ratio(r: float) -> str:
    return f"{float(r):g}"


def default_artifact_location(uri: str, experiment: str) -> str | None:
    """For ``sqlite:///path/mlflow.db``: ``<path>/mlartifacts/<experiment>`` (like ``mlflow server``)."""
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///") :])
        return (db.resolve().parent / "mlartifacts" / experiment).as_uri()
    return None


class _Run:
    """What one MLflow run should hold (params/metrics/tags/artifacts/tables), hashable."""

    def __init__(self, key: str, name: str, parent: str | None = None):
        self.key, self.name, self.parent = key, name, parent
        self.params: dict[str, str] = {}
        self.metrics: dict[str, float] = {}
        self.steps: list[tuple[str, float, int]] = []  # (name, value, step)
        self.tags: dict[str, str] = {}
        self.files: list[tuple[Path, str | None]] = []  # (local file, artifact dir)
        self.tables: dict[str, object] = {}  # artifact_file -> DataFrame

    def param(self, name: str, value) -> None:
        if value is None:
            return
        if isinstance(value, (list, tuple)):
            value = ",".join(map(str, value))
        elif isinstance(value, dict):
            value = json.dumps(value, sort_keys=True)
        self.params[name] = str(value)[:6000]

    def metric(self, name: str, value) -> None:
        v = _finite(value)
        if v is not None:
            self.metrics[name] = v

    def file(self, path: Path, artifact_dir: str | None = None) -> None:
        if Path(path).is_file():
            self.files.append((Path(path), artifact_dir))

    def digest(self, parent_id: str | None) -> str:
        h = hashlib.sha256()
        h.update(
            json.dumps(
                {
                    "params": self.params,
                    "metrics": self.metrics,
                    "steps": self.steps,
                    "parent": parent_id,
                    "name": self.name,
                    "files": [(str(a), p.name) for p, a in self.files],
                    "tables": {k: v.to_json(orient="split") for k, v in self.tables.items()},
                },
                sort_keys=True,
                default=str,
            ).encode()
        )
        for p, _ in self.files:
            h.update(file_sha256(p).encode())
        return h.hexdigest()


# ------------------------------------------------------------------------------------------
# what to log
# ------------------------------------------------------------------------------------------


def _variant_runs(cfg: dict, base, tables: dict, cfg_file: Path) -> list[_Run]:
    from .report.tables import load_eval, load_prune

    exp_name = cfg["experiment"]
    lay = Layout.from_config(cfg, base)
    exp = lay.root
    main = tables["main"].set_index(["variant", "stage"])
    allv = pipeline.all_variants(cfg)
    runs = []
    widths_before = None
    for v, s in pipeline.models(cfg):
        name = v if v == ORIGINAL else f"{v}/{s}"
        r = _Run(f"{exp_name}/{name}", name)
        ev = load_eval(cfg, base, v, s)
        row = main.loc[(v, s)]
        r.param("variant", v)
        r.param("stage", s)
        r.param("group", row["group"])
        r.param("strategy", row["strategy"])
        r.param("eval_split", ev.get("split"))
        r.param("eval_mode", ev.get("mode"))
        r.param("eval_images", ev.get("n_images"))
        r.param("fid_backend", ev["fid"].get("backend"))
        collapsed = row["collapsed"]
        if collapsed is not None and collapsed == collapsed:  # the collapse check (None/NaN: not measured)
            r.param("collapsed", bool(collapsed))
            r.metric("collapsed", 1.0 if bool(collapsed) else 0.0)
            r.param("collapse_threshold", cfg["evaluate"].get("collapse_threshold"))
        if v != ORIGINAL:
            a = allv[v]
            pj = load_prune(cfg, base, v)
            info = pj.get("info") or {}
            widths_before = widths_before or pj.get("widths_before")
            r.param("ratio", a.get("ratio", pj.get("ratio")))
            r.param("levels", a.get("levels", info.get("levels")))
            r.param("k", a.get("k", info.get("k")))
            r.param("layers", pj.get("layers"))
            r.param("widths_enc", (pj.get("widths") or {}).get("enc"))
            r.param("widths_dec", (pj.get("widths") or {}).get("dec"))
            r.param("importance", info.get("importance"))
            if a.get("reference"):
                budget = info.get("budget") or {}
                r.param("matched_to", a["reference"])
                r.param("match_budget", a["match"])
                r.param("normalize", a["normalize"])
                r.param("budget_target", budget.get("target"))
                r.param("budget_tolerance", budget.get("tol"))
                r.param("threshold", info.get("threshold"))
                r.param("searched_ratio", info.get("ratio"))
            r.file(lay.prune_json(v), "json")
            if s == FINETUNED:
                f = cfg["finetune"]
                r.param("finetune_epochs", f"{f['n_epochs']}+{f['n_epochs_decay']}")
                r.file(lay.train_log(v, s), "json")
                r.file(lay.samples(v, s), "samples")
        else:
            r.file(lay.train_log(ORIGINAL), "json")
            r.file(lay.samples(ORIGINAL), "samples")
        for m in (
            "params",
            "macs_physical",
            "macs_output",
            "latency_ms",
            *QUALITY,
            "diversity",
            "params_fraction",
            "budget_gap",
        ):
            r.metric(m, row[m])
        r.file(lay.eval_json(v, s), "json")
        r.file(cfg_file, None)
        ckpt = lay.checkpoint(v, s)
        r.file(_checkpoint_pointer(ckpt, exp), None)
        r.tags.update({"unetprune.variant": v, "unetprune.stage": s, "unetprune.group": str(row["group"])})
        r.tables["tables/main_row.json"] = tables["main"][
            (tables["main"].variant == v) & (tables["main"].stage == s)
        ]
        for table in ("main", "comparison"):
            r.file(lay.table(table, "md"), "tables")
        runs.append(r)
    if widths_before:  # the original's widths = what every variant was pruned from
        runs[0].param("widths_enc", widths_before.get("enc"))
        runs[0].param("widths_dec", widths_before.get("dec"))
    return runs


_POINTERS: dict[Path, Path] = {}


def _checkpoint_pointer(ckpt: Path, exp: Path) -> Path:
    """A small ``checkpoint.txt`` (path + sha256 + size) in a temp folder per checkpoint."""
    if not ckpt.is_file():
        raise TrackingError(
            f"missing checkpoint {ckpt}: the report's inputs are incomplete (rerun the workflow)"
        )
    d = Path(tempfile.mkdtemp(prefix="unetprune-ckpt-"))
    p = d / "checkpoint.txt"
    p.write_text(
        f"path: {ckpt}\nsha256: {file_sha256(ckpt)}\nbytes: {ckpt.stat().st_size}\n"
        f"storage: DVC-tracked output of the workflow (`dvc pull` restores it; see dvc.lock)\n"
    )
    _POINTERS[p] = d
    return p


def _sensitivity_runs(cfg: dict, base, tables: dict, cfg_file: Path) -> tuple[_Run, list[_Run]]:
    exp_name = cfg["experiment"]
    lay = Layout.from_config(cfg, base)
    sens, summ = tables["sensitivity"], tables["sensitivity_summary"]
    metric = cfg["report"]["quality_metric"]
    s = cfg["sensitivity"]
    parent = _Run(f"{exp_name}/sensitivity", "sensitivity")
    parent.param("layers", list(dict.fromkeys(sens.layer)))
    parent.param("ratios", [_fmt_ratio(x) for x in s["ratios"]])
    parent.param("importance", s["importance"])
    parent.param("split", s["split"])
    parent.param("max_images", s["max_images"])
    parent.param("quality_metric", metric)
    parent.param("inner_layers", sens.attrs.get("inner_layers"))
    parent.param("fid_backend", sens.fid_backend.iloc[0] if len(sens) else None)
    if len(sens):
        parent.metric(f"{metric}_unpruned", sens.quality_full.iloc[0])
    for i, row in summ.reset_index(drop=True).iterrows():
        tag = _fmt_ratio(row.ratio)
        parent.metric(f"mean_degradation_inner_r{tag}", row.mean_degradation_inner)
        parent.metric(f"mean_degradation_outer_r{tag}", row.mean_degradation_outer)
        parent.steps += [
            ("mean_degradation_inner", float(row.mean_degradation_inner), int(i)),
            ("mean_degradation_outer", float(row.mean_degradation_outer), int(i)),
        ]
    parent.tables["tables/sensitivity.json"] = sens
    parent.tables["tables/sensitivity_summary.json"] = summ
    parent.tables["tables/sensitivity_matrix.json"] = tables["sensitivity_matrix"]
    parent.file(lay.figure("sensitivity"), "figures")
    parent.file(cfg_file, None)
    parent.tags["unetprune.stage"] = "sensitivity"
    children = []
    for layer, g in sens.groupby("layer", sort=False):
        c = _Run(f"{exp_name}/sensitivity/{layer}", f"sensitivity/{layer}")
        first = g.iloc[0]
        c.param("layer", layer)
        c.param("part", first.part)
        c.param("level", int(first.level))
        c.param("inner", bool(first.inner))
        c.param("ratios", [_fmt_ratio(x) for x in g.ratio])
        c.param("widths", [int(x) for x in g.width])
        c.param("importance", s["importance"])
        for step, (_, row) in enumerate(g.sort_values("ratio").iterrows()):
            tag = _fmt_ratio(row.ratio)
            for m in (*QUALITY, "params", "macs_physical", "macs_output", "width", "degradation"):
                v = _finite(row[m])
                if v is None:
                    continue
                c.metric(f"{m}_r{tag}", v)
                c.steps.append((m, v, step))
        c.file(lay.sensitivity_json(layer), "json")
        c.tags.update({"unetprune.stage": "sensitivity", "unetprune.layer": layer})
        children.append(c)
    return parent, children


def _report_run(cfg: dict, base, tables: dict, cfg_file: Path) -> _Run:
    lay = Layout.from_config(cfg, base)
    r = _Run(f"{cfg['experiment']}/report", "report")
    comp, summ = tables["comparison"], tables["sensitivity_summary"]
    r.param("quality_metric", cfg["report"]["quality_metric"])
    r.param("final_stage", pipeline.final_stage(cfg))
    r.param("baselines_match", cfg["baselines"]["match"])
    r.param("variants", list(pipeline.primary_variants(cfg)))
    r.param("baselines", list(pipeline.baseline_variants(cfg)))
    r.param("fid_backend", tables["main"].attrs.get("fid_backend"))
    r.param("verdict_metric", tables["comparison"].attrs.get("metric", cfg["report"]["quality_metric"]))
    r.param("collapse_threshold", cfg["evaluate"].get("collapse_threshold"))
    main = tables["main"]
    r.metric("collapsed_models", int(sum(bool(x) for x in main.collapsed if x is not None and x == x)))
    collapsed = [v if v == ORIGINAL else f"{v}/{st}" for v, st, x in zip(main.variant, main.stage, main.collapsed)
                 if x is not None and x == x and x]
    r.param("collapsed", sorted(collapsed) or "none")
    if not comp.empty:
        r.metric("variant_wins", int((comp.winner == comp.variant).sum()))
        r.metric("comparisons", len(comp))
        r.metric("max_budget_gap", float(comp.budget_gap.abs().max()))
        r.metric("comparisons_decided_by_collapse", int((comp.decided_by == "collapse").sum()))
        r.metric("comparisons_with_disagreeing_metrics", int((comp.disagree != "").sum()))
    judged = summ[summ.inner_less_sensitive.notna()]
    r.metric("ratios_inner_less_sensitive", int(judged.inner_less_sensitive.astype(bool).sum()))
    r.metric("ratios_judged", len(judged))
    r.metric("ratios_no_effect", int((summ.finding == "no effect").sum()))
    for name, df in tables.items():
        r.tables[f"tables/{name}.json"] = df
    for p in sorted(lay.tables_dir.glob("*")):
        r.file(p, "tables")
    for p in sorted(lay.figures_dir.glob("*.png")):
        r.file(p, "figures")
    r.file(lay.report_md, None)
    r.file(cfg_file, None)
    r.tags["unetprune.stage"] = "report"
    return r


# ------------------------------------------------------------------------------------------
# MLflow
# ------------------------------------------------------------------------------------------


def _client(uri: str):
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _experiment_id(client, name: str, artifact_location: str | None) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is None:
        return client.create_experiment(
            name, artifact_location=artifact_location, tags={"unetprune.experiment": name}
        )
    if exp.lifecycle_stage == "deleted":
        client.restore_experiment(exp.experiment_id)
    return exp.experiment_id


def _existing_runs(client, exp_id: str, experiment: str) -> dict[str, list]:
    """Active runs of the experiment that carry a ``unetprune.key`` tag, by key (oldest first)."""
    from mlflow.entities import ViewType

    out: dict[str, list] = {}
    token = None
    while True:
        page = client.search_runs(
            [exp_id],
            filter_string=f"tags.`{KEY_TAG}` LIKE '{experiment}/%'",
            run_view_type=ViewType.ACTIVE_ONLY,
            max_results=1000,
            order_by=["attributes.start_time ASC"],
            page_token=token,
        )
        for run in page:
            out.setdefault(run.data.tags[KEY_TAG], []).append(run)
        token = page.token
        if not token:
            return out


def _upsert(
    client, exp_id: str, existing: dict[str, list], run: _Run, common_tags: dict, parent_id: str | None = None
) -> tuple[str, bool]:
    """Create or reuse the run of ``run.key``; returns (run id, whether it was (re)logged)."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.utils.time import get_current_time_millis

    digest = run.digest(parent_id)
    tags = {**common_tags, **run.tags, KEY_TAG: run.key, HASH_TAG: digest, "mlflow.runName": run.name}
    if parent_id:
        tags[PARENT_TAG] = parent_id
    found = existing.get(run.key, [])
    keep = None
    for old in found:
        if keep is None and old.data.tags.get(HASH_TAG) == digest:
            keep = old
        else:
            client.delete_run(old.info.run_id)  # stale content or a duplicate
    if keep is not None:
        client.log_batch(keep.info.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])
        return keep.info.run_id, False
    new = client.create_run(exp_id, run_name=run.name, tags={k: str(v) for k, v in tags.items()})
    rid = new.info.run_id
    now = get_current_time_millis()
    metrics = [Metric(k, v, now, 0) for k, v in run.metrics.items()]
    metrics += [Metric(k, v, now, step) for k, v, step in run.steps]
    params = [Param(k, v) for k, v in run.params.items()]
    for i in range(0, max(len(metrics), len(params), 1), 100):  # log_batch limits: 1000 metrics, 100 params
        client.log_batch(rid, metrics=metrics[i : i + 100], params=params[i : i + 100])
    for path, artifact_dir in run.files:
        client.log_artifact(rid, str(path), artifact_dir)
    from .report.tables import jsonable_table

    for artifact_file, df in run.tables.items():
        with warnings.catch_warnings():  # pandas 3 deprecation noise from inside mlflow
            warnings.simplefilter("ignore")
            client.log_table(rid, jsonable_table(df.reset_index(drop=True)), artifact_file)
    client.set_terminated(rid, "FINISHED")
    return rid, True


def sync_lock_path(uri: str) -> Path:
    """The lock file that serialises syncs into one store: ``<db>.lock`` next to a sqlite database,
    ``.unetprune-sync.lock`` inside a file store, a per-URI file in the temp folder otherwise."""
    import urllib.parse

    if uri.startswith("sqlite:///"):
        db = uri[len("sqlite:///"):].split("?", 1)[0]
        if db and db != ":memory:":
            return Path(db + ".lock")
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme in ("", "file"):
        store = Path(urllib.parse.unquote(parsed.path) if parsed.scheme == "file" else uri)
        return store / ".unetprune-sync.lock"
    digest = hashlib.sha256(uri.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"unetprune-mlflow-{digest}.lock"


class _SyncLock:
    """An exclusive ``fcntl`` lock held for a whole sync: concurrent ``unetprune track`` runs on one
    store take turns, so store creation (migrations) and the look-up-then-create of each run key
    never interleave (one run per key)."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        import fcntl

        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def sync(
    cfg: dict, base: Path | str = DEFAULT_BASE, uri: str | None = None, artifact_location: str | None = None
) -> dict:
    """Mirror ``results/<experiment>/`` into MLflow; returns (and writes to mlflow.json) the run ids.
    Syncs into one store are serialised by a file lock (:func:`sync_lock_path`)."""
    uri = uri or cfg["tracking"]["uri"]
    with _SyncLock(sync_lock_path(uri)):
        return _sync_locked(cfg, base, uri, artifact_location)


def _sync_locked(cfg: dict, base, uri: str, artifact_location: str | None) -> dict:
    from .report.tables import all_tables

    lay = Layout.from_config(cfg, base)
    uri = uri or cfg["tracking"]["uri"]
    name = cfg["experiment"]
    missing = [p for p in lay.report_outputs() if not p.is_file()]
    if missing:
        raise TrackingError(
            f"missing {', '.join(map(str, missing))}: made by the report rule "
            f"(`unetprune report --config <CFG>`), which must run before `unetprune track`"
        )
    tables = all_tables(cfg, base)  # raises a ReportError naming any missing input

    tmp = Path(tempfile.mkdtemp(prefix="unetprune-track-"))
    cfg_file = tmp / "config.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg, sort_keys=False))
    try:
        runs = _variant_runs(cfg, base, tables, cfg_file)
        parent, children = _sensitivity_runs(cfg, base, tables, cfg_file)
        report = _report_run(cfg, base, tables, cfg_file)

        client = _client(uri)
        exp_id = _experiment_id(client, name, artifact_location or default_artifact_location(uri, name))
        existing = _existing_runs(client, exp_id, name)
        from .evaluate import versions

        commit = git_commit()
        common = {
            "unetprune.experiment": name,
            "mlflow.source.git.commit": commit,
            "unetprune.git_commit": commit,
        }
        common.update({f"version.{k}": v for k, v in versions().items()})
        import mlflow

        common["version.mlflow"] = mlflow.__version__
        ids: dict[str, str] = {}
        changed = 0
        for r in runs + [report]:
            ids[r.key], new = _upsert(client, exp_id, existing, r, common)
            changed += new
        pid, new = _upsert(client, exp_id, existing, parent, common)
        ids[parent.key] = pid
        changed += new
        for c in children:
            ids[c.key], new = _upsert(client, exp_id, existing, c, common, parent_id=pid)
            changed += new
        wanted = set(ids)
        for key, old in existing.items():  # runs of variants no longer in the config
            if key not in wanted:
                for run in old:
                    client.delete_run(run.info.run_id)
    finally:
        for p, d in list(_POINTERS.items()):
            p.unlink(missing_ok=True)
            d.rmdir()
            _POINTERS.pop(p)
        cfg_file.unlink(missing_ok=True)
        tmp.rmdir()
    result = {
        "tracking_uri": uri,
        "experiment": name,
        "experiment_id": exp_id,
        "runs": ids,
        "sensitivity_parent": pid,
    }
    atomic_write_text(lay.mlflow_json, json.dumps(result, indent=2) + "\n")  # stable across re-syncs
    return {**result, "logged": changed, "unchanged": len(ids) - changed}
