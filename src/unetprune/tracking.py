"""MLflow mirror of one experiment's results (the only module that imports mlflow, besides the
logged model's own code, :mod:`unetprune.tracking_model`).

``sync(cfg)`` reads the JSON files, tables and figures under ``results/<experiment>/`` and
writes them into the MLflow experiment of the same name:

* a run per model and stage — ``original``, ``<variant>/pruned``,
  ``<variant>/finetuned`` — with params (strategy, ratio, levels, k, layers, widths, matched
  budget, ``collapsed``), metrics (params, both MAC conventions, CPU latency, FID, KID, mIoU,
  L1, PSNR, SSIM, output ``diversity`` and ``collapsed`` = 1/0: the collapse check, budget
  gap), the training curves of its training run (``train/<loss>``, ``train/lr``,
  ``train/images_per_s`` with step = epoch; ``check/l1`` with step = epoch, 0 = before
  training), artifacts (the config, a ``checkpoint.txt`` pointer to the checkpoint with its
  sha256, the eval/prune/train JSON, the model's samples, the tables) and its generator as a
  loadable pyfunc model ``generator`` (its code: :mod:`unetprune.tracking_model`; its inputs: the
  family's ``pyfunc_inputs``; registered as one version of
  ``<experiment>-generator``) and, for the original and each variant at its final stage, its
  ONNX export (``onnx/<model>.onnx`` of ``unetprune export``) beside it as the ONNX model
  ``generator_onnx`` (inputs named as in the file; eval mode);
* the sensitivity sweep as a parent run with one child run per layer (metrics per ratio as
  ``fid_r0.5`` and as ``fid`` with ``step`` = ratio index);
* a ``report`` run with every table (``mlflow.log_table``), the figures and report.md.

Run start and end times are the jobs' (the files' own ``started_at``/``finished_at`` where
recorded, else the file's time minus the durations the job recorded: epoch seconds,
evaluation timings), not the sync's.  Tags: git commit, config digest, backends (FID, KID,
segmentation, device), package versions.  The experiment is tagged as a model-training
experiment (``mlflow.experimentKind`` = ``custom_model_development``) whose primary metric is the
verdict metric (``report.quality_metric``, with whether greater is better).  MLflow 3.17's UI
chooses between its GenAI and model-training views by its own switch (``workflowType``, kept in
the browser; GenAI by default) rather than by that tag, so the sync also records (``ui_path`` in
``mlflow.json``) and prints the experiment's address in the model-training view,
``#/experiments/<id>?workflowType=machine_learning``, which opens on the runs.

Artifacts of a local store (sqlite/file URI) go to an artifact root folder (``tracking.artifact_root``,
default ``mlartifacts/`` next to the sqlite database) and are recorded as
``mlflow-artifacts:/<experiment>/...``: relative to that root, never an absolute path of the
syncing machine, so ``mlflow.db`` + ``mlartifacts/`` can be moved or shared and are served by
``mlflow ui --backend-store-uri sqlite:///mlflow.db --artifacts-destination mlartifacts``
(:func:`local_artifact_root` reads them from Python without a server).  A tracking server
(``--uri http://...``) keeps its artifacts where it was told (``mlflow server --artifacts-destination``).

Idempotent: every run carries a stable ``unetprune.key`` tag (``<experiment>/original``,
``<experiment>/<variant>/<stage>``, ``<experiment>/report``, ``<experiment>/sensitivity[/<layer>]``)
and a ``unetprune.sha256`` of its content.  A sync looks the key up; an unchanged run is kept
(only its tags — git commit, versions — are refreshed), a changed one is deleted (with its
logged model and model version) and logged again, so re-running never duplicates runs.
The run ids go to the experiment's ``mlflow.json`` (:mod:`unetprune.layout`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
import warnings
from datetime import datetime
from pathlib import Path

import yaml

from . import pipeline
from .fileio import atomic_write_text
from .errors import UserFacingError
from .family import family_for_config, get_family
from .layout import DEFAULT_BASE, FINETUNED, ORIGINAL, Layout
from .fileio import sha256_file as file_sha256

KEY_TAG = "unetprune.key"
HASH_TAG = "unetprune.sha256"
PARENT_TAG = "mlflow.parentRunId"
QUALITY = ("fid", "kid", "miou", "l1", "psnr", "ssim", "lse_d", "lse_c")
SYNC_FORMAT = 3  # part of every run's digest: runs logged by an older sync are logged again
ARTIFACTS_SCHEME = "mlflow-artifacts"
MODEL_NAME = "generator"  # the logged model's name in each model run
ONNX_MODEL_NAME = "generator_onnx"  # the logged ONNX export beside it
# experiment tags read by MLflow's UI (mlflow/utils/mlflow_tags.py and the UI's experiment kinds)
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"  # MLflow's kind of a model-training experiment
PRIMARY_METRIC_TAG = "mlflow.experiment.primaryMetric.name"
PRIMARY_METRIC_GREATER_TAG = "mlflow.experiment.primaryMetric.greaterIsBetter"


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


def local_store_path(uri: str) -> Path | None:
    """The database file (sqlite) or folder (file store) of a local tracking URI; None for a server."""
    if uri.startswith("sqlite:///"):
        db = uri[len("sqlite:///") :].split("?", 1)[0]
        return Path(db) if db and db != ":memory:" else None
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme == "file":
        return Path(urllib.parse.unquote(parsed.path))
    if parsed.scheme == "" and uri:
        return Path(uri)
    return None


def default_artifact_root(uri: str, cfg: dict | None = None) -> Path | None:
    """Where a local store's artifacts go: ``tracking.artifact_root``, else ``mlartifacts/`` next to the
    sqlite database (or inside a file store); None for a tracking server (it has its own)."""
    store = local_store_path(uri)
    if store is None:
        return None
    root = ((cfg or {}).get("tracking") or {}).get("artifact_root")
    if root:
        return Path(root)
    return store.parent / "mlartifacts" if uri.startswith("sqlite:") else store / "mlartifacts"


def default_artifact_location(uri: str, experiment: str) -> str | None:
    """The artifact location of a new experiment: ``mlflow-artifacts:/<experiment>`` for a local store
    (relative to its artifact root: the store can be moved); None (the server's default) otherwise."""
    return f"{ARTIFACTS_SCHEME}:/{experiment}" if local_store_path(uri) is not None else None


@contextlib.contextmanager
def local_artifact_root(root: Path | str):
    """Read and write ``mlflow-artifacts:/<path>`` URIs as ``<root>/<path>`` in this process, as
    ``mlflow server --artifacts-destination <root>`` does: how a local store's artifacts (and its logged
    models) are reached without a server (with an http(s) tracking URI the server is still asked), e.g.::

        with local_artifact_root("mlartifacts"):
            model = mlflow.pyfunc.load_model("models:/demo-generator/1")
    """
    from mlflow.store.artifact.artifact_repository_registry import _artifact_repository_registry as registry
    from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository

    base = Path(root).resolve()

    def factory(artifact_uri: str, tracking_uri: str | None = None, registry_uri: str | None = None):
        import mlflow

        served = urllib.parse.urlparse(tracking_uri or mlflow.get_tracking_uri()).scheme in ("http", "https")
        if served and before is not None:  # a tracking server serves its own artifacts
            return before(artifact_uri, tracking_uri=tracking_uri, registry_uri=registry_uri)
        rel = urllib.parse.unquote(urllib.parse.urlparse(artifact_uri).path).lstrip("/")
        target = (base / rel).resolve()
        if target != base and base not in target.parents:
            raise TrackingError(f"artifact URI {artifact_uri} points outside the artifact root {base}")
        return LocalArtifactRepository(str(target))

    table = registry._registry
    before = table.get(ARTIFACTS_SCHEME)
    table[ARTIFACTS_SCHEME] = factory
    try:
        yield base
    finally:
        if before is None:
            table.pop(ARTIFACTS_SCHEME, None)
        else:
            table[ARTIFACTS_SCHEME] = before


def config_digest(cfg: dict) -> str:
    """sha256 of the validated config (every key, defaults filled in)."""
    return hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()


def _timestamp(value) -> float | None:
    """Seconds since the epoch from a recorded time: a number, or an ISO-8601 string."""
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def job_times(path: Path, record: dict | None = None, seconds: float = 0.0) -> tuple[float, float, str]:
    """(start, end, source) in seconds of the job that wrote ``path``: the ``started_at``/``finished_at``
    it recorded, else end = the file's modification time and start = end - ``seconds`` (the durations
    the job recorded)."""
    record = record or {}
    start, end = _timestamp(record.get("started_at")), _timestamp(record.get("finished_at"))
    if start is not None and end is not None:
        return start, end, "recorded"
    end = end if end is not None else Path(path).stat().st_mtime
    return (start if start is not None else end - max(0.0, seconds)), end, "file time - recorded durations"


def _read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _train_seconds(log: dict) -> float:
    return float(sum(_finite(e.get("seconds")) or 0.0 for e in log.get("epochs") or []))


def _eval_seconds(ev: dict) -> float:
    return float(sum(_finite(v) or 0.0 for v in (ev.get("timing_s") or {}).values()))


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
        self.times: list[tuple[float, float, str]] = []  # (start, end, source) of each job behind the run
        self.step_times: dict[tuple[str, int], float] = {}  # (metric, step) -> seconds since the epoch
        self.model: dict | None = None  # the generator to log as a pyfunc model (see _log_model)

    def job(
        self, path: Path, record: dict | None = None, seconds: float = 0.0
    ) -> tuple[float, float, str] | None:
        """Add the times of the job that wrote ``path`` (see :func:`job_times`)."""
        if not Path(path).is_file():
            return None
        t = job_times(path, record, seconds)
        self.times.append(t)
        return t

    def span_ms(self) -> tuple[int | None, int | None, str | None]:
        """(start, end) in ms over the run's jobs, and where the times come from."""
        if not self.times:
            return None, None, None
        start, end = min(t[0] for t in self.times), max(t[1] for t in self.times)
        sources = sorted({t[2] for t in self.times})
        return int(start * 1000), int(max(start, end) * 1000), ", ".join(sources)

    def training_curves(self, log: dict, start: float) -> None:
        """Per-epoch metrics of a training run (``train/<name>`` and ``check/<name>``, step = epoch),
        timestamped at the end of each epoch (``start`` + the recorded epoch seconds)."""
        t = start
        for e in log.get("epochs") or []:
            epoch = int(e.get("epoch", 0))
            t += _finite(e.get("seconds")) or 0.0
            for k, v in e.items():
                v = _finite(v) if not isinstance(v, bool) else None
                if k == "epoch" or v is None:
                    continue
                self.steps.append((f"train/{k}", v, epoch))
                self.step_times[(f"train/{k}", epoch)] = t
        seconds = {int(e.get("epoch", 0)): _finite(e.get("seconds")) or 0.0 for e in log.get("epochs") or []}
        for point in (log.get("eval") or {}).get("curve") or []:
            epoch = int(point.get("epoch", 0))
            for k, v in point.items():
                v = _finite(v) if not isinstance(v, bool) else None
                if k == "epoch" or v is None:
                    continue
                name = "check/l1" if k == "score" else f"check/{k}"
                self.steps.append((name, v, epoch))
                self.step_times[(name, epoch)] = start + sum(s for ep, s in seconds.items() if ep <= epoch)

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
                    "format": SYNC_FORMAT,
                    "model": self.model
                    and {k: v for k, v in self.model.items() if k not in ("checkpoint", "onnx")},
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


def registered_model_name(cfg: dict) -> str | None:
    """The model-registry name of the experiment's generators (``tracking.registered_model``,
    default ``<experiment>-generator``); None = not registered."""
    name = cfg["tracking"].get("registered_model")
    if name is None:
        return f"{cfg['experiment']}-generator"
    return name or None


def _training(r: _Run, path: Path) -> None:
    """The training job behind ``r``: its times and its per-epoch curves."""
    log = _read_json(path)
    t = r.job(path, log, _train_seconds(log))
    if t is not None:
        r.training_curves(log, t[0])
        if log.get("device"):
            r.tags["unetprune.train_device"] = str(log["device"])


def _eval_tags(ev: dict) -> dict[str, str]:
    """The backends an evaluation used (FID, KID, segmentation, device, amp)."""
    tags = {
        "unetprune.fid_backend": (ev.get("fid") or {}).get("backend"),
        "unetprune.kid_backend": (ev.get("kid") or {}).get("backend"),
        "unetprune.segmentation": (ev.get("segmentation") or {}).get("name"),
        "unetprune.eval_device": ev.get("device"),
        "unetprune.eval_amp": ev.get("amp"),
        "unetprune.eval_mode": ev.get("mode"),
    }
    return {k: str(v) for k, v in tags.items() if v is not None}


def _variant_runs(cfg: dict, base, tables: dict, cfg_file: Path) -> list[_Run]:
    from .report.load import load_eval, load_prune

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
        if v == ORIGINAL:  # the sanity gate (unetprune.sanity): does the original beat trivial generators?
            from .report.verdicts import sanity_gate
            from .sanity import gate_metrics

            gate = sanity_gate(ev, gate_metrics(cfg))
            if gate is not None and gate["passed"] is not None:
                r.param("sanity_passed", bool(gate["passed"]))
                r.param("sanity_failed", ", ".join(gate["failed"]) or "none")
                r.metric("sanity_passed", 1.0 if gate["passed"] else 0.0)
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
                _training(r, lay.train_log(v, s))
            else:
                r.job(lay.prune_json(v), pj)
        else:
            r.file(lay.train_log(ORIGINAL), "json")
            r.file(lay.samples(ORIGINAL), "samples")
            _training(r, lay.train_log(ORIGINAL))
        r.job(lay.eval_json(v, s), ev, _eval_seconds(ev))
        r.tags.update(_eval_tags(ev))
        for m in (
            "params",
            "macs_physical",
            "macs_output",
            "latency_ms",
            "latency_ort_ms",
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
        if cfg["tracking"].get("log_models", True):
            r.model = {
                "checkpoint": ckpt,
                "registered_model": registered_model_name(cfg),
                "image_size": int(ev.get("image_size") or cfg["data"]["crop_size"]),
                "family": family_for_config(cfg).name,
                "mode": str(ev.get("mode") or cfg["evaluate"]["mode"]),
                "seed": int(ev.get("seed") or 0),
                "metadata": {
                    "experiment": exp_name,
                    "variant": v,
                    "stage": s,
                    "group": str(row["group"]),
                    "strategy": str(row["strategy"]),
                    "params": _finite(row["params"]),
                    "macs_physical": _finite(row["macs_physical"]),
                    "macs_output": _finite(row["macs_output"]),
                    **{
                        k: r.params[k]
                        for k in (
                            "ratio",
                            "levels",
                            "k",
                            "layers",
                            "widths_enc",
                            "widths_dec",
                            "matched_to",
                            "match_budget",
                        )
                        if k in r.params
                    },
                    "checkpoint": str(ckpt),
                    "checkpoint_sha256": file_sha256(ckpt),
                    "input": "float32 array (N, 3, H, W), values in [-1, 1] (data.direction "
                    f"{cfg['data']['direction']}); output: the same shape",
                    "mode": f"{ev.get('mode') or cfg['evaluate']['mode']} (as evaluated; unetprune.translate: "
                    "train_bn = batch statistics and seeded dropout, eval = running statistics)",
                },
            }
            onnx_file = lay.onnx_model(v, s)
            if onnx_file.is_file():  # the workflow exports the original and the final stage (export.smk)
                r.model["onnx"] = onnx_file
                r.model["onnx_sha256"] = file_sha256(onnx_file)
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
        f"storage: an output of the workflow (path relative to the project). Under DVC (the experiment "
        f"listed in config/dvc_experiments.yaml, its dvc.lock committed and pushed) `dvc pull` restores it; "
        f"otherwise rerun the workflow.  The generator alone is this run's logged model "
        f"'{MODEL_NAME}' (mlflow.pyfunc.load_model).\n"
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
        c.job(lay.sensitivity_json(layer), _read_json(lay.sensitivity_json(layer)))
        c.tags.update({"unetprune.stage": "sensitivity", "unetprune.layer": layer})
        children.append(c)
        parent.times += c.times
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
    collapsed = [
        v if v == ORIGINAL else f"{v}/{st}"
        for v, st, x in zip(main.variant, main.stage, main.collapsed)
        if x is not None and x == x and x
    ]
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
    r.job(lay.report_md)
    r.tags["unetprune.stage"] = "report"
    return r


# ------------------------------------------------------------------------------------------
# MLflow
# ------------------------------------------------------------------------------------------


def _client(uri: str):
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def experiment_tags(cfg: dict) -> dict[str, str]:
    """The experiment's tags for MLflow's UI: a model-training experiment whose primary metric is
    the verdict metric (``report.quality_metric``) with whether greater is better."""
    from .report.verdicts import better

    metric = cfg["report"]["quality_metric"]
    return {
        EXPERIMENT_KIND_TAG: EXPERIMENT_KIND,
        PRIMARY_METRIC_TAG: metric,
        PRIMARY_METRIC_GREATER_TAG: str(better(metric) == "higher"),  # "True"/"False", as MLflow writes it
    }


def ui_path(experiment_id: str) -> str:
    """The address (after the server's URL) at which MLflow's UI shows the experiment's runs: its
    page in the model-training view (``workflowType=machine_learning``)."""
    return f"#/experiments/{experiment_id}?workflowType=machine_learning"


def _experiment_id(client, name: str, artifact_location: str | None) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is None:
        return client.create_experiment(
            name, artifact_location=artifact_location, tags={"unetprune.experiment": name}
        )
    if exp.lifecycle_stage == "deleted":
        client.restore_experiment(exp.experiment_id)
    if artifact_location and exp.artifact_location != artifact_location:
        print(
            f"note: MLflow experiment '{name}' keeps the artifact location it was created with "
            f"({exp.artifact_location}), not {artifact_location}; delete the experiment (or the store) "
            f"and sync again to move it",
            file=sys.stderr,
        )
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


def _delete_run(client, run) -> None:
    """Delete a stale run with the model versions and logged models made from it."""
    from mlflow.exceptions import MlflowException

    rid = run.info.run_id
    try:
        for mv in client.search_model_versions(f"run_id = '{rid}'"):
            client.delete_model_version(mv.name, mv.version)
    except MlflowException as e:  # a store without a model registry
        print(f"note: model versions of run {rid} not deleted ({type(e).__name__}: {e})", file=sys.stderr)
    try:
        models = client.search_logged_models(
            experiment_ids=[run.info.experiment_id], filter_string=f"source_run_id = '{rid}'"
        )
        for m in models:
            client.delete_logged_model(m.model_id)
    except MlflowException as e:  # a server without logged models (MLflow < 3)
        print(f"note: logged models of run {rid} not deleted ({type(e).__name__}: {e})", file=sys.stderr)
    client.delete_run(rid)


def _upsert(
    client, exp_id: str, existing: dict[str, list], run: _Run, common_tags: dict, parent_id: str | None = None
) -> tuple[str, bool]:
    """Create or reuse the run of ``run.key``; returns (run id, whether it was (re)logged)."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.utils.time import get_current_time_millis

    digest = run.digest(parent_id)
    start_ms, end_ms, times_from = run.span_ms()
    tags = {**common_tags, **run.tags, KEY_TAG: run.key, HASH_TAG: digest, "mlflow.runName": run.name}
    if times_from:
        tags["unetprune.times_from"] = times_from
    if parent_id:
        tags[PARENT_TAG] = parent_id
    found = existing.get(run.key, [])
    keep = None
    for old in found:
        if keep is None and old.data.tags.get(HASH_TAG) == digest:
            keep = old
        else:
            _delete_run(client, old)  # stale content or a duplicate
    if keep is not None:
        client.log_batch(keep.info.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])
        return keep.info.run_id, False
    now = get_current_time_millis()
    end_ms = end_ms if end_ms is not None else now
    new = client.create_run(
        exp_id,
        start_time=start_ms if start_ms is not None else end_ms,
        run_name=run.name,
        tags={k: str(v) for k, v in tags.items()},
    )
    rid = new.info.run_id
    metrics = [Metric(k, v, end_ms, 0) for k, v in run.metrics.items()]
    metrics += [
        Metric(k, v, int(run.step_times[(k, step)] * 1000) if (k, step) in run.step_times else end_ms, step)
        for k, v, step in run.steps
    ]
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
    if run.model is not None:
        _log_model(client, rid, run)
    client.set_terminated(rid, "FINISHED", end_time=end_ms)
    return rid, True


def _generator_only(ckpt_path: Path, out: Path) -> Path:
    """The checkpoint without discriminator, optimiser state and training log (a model's weights)."""
    import torch

    from .checkpoint import load_checkpoint

    ckpt = load_checkpoint(ckpt_path)
    keep = ("format", "format_version", "family", "generator", "config", "versions", "meta")
    torch.save({k: ckpt[k] for k in keep if k in ckpt}, out)
    return out


def _log_model(client, rid: str, run: _Run) -> None:
    """Log ``run.model`` as the pyfunc model ``generator`` of run ``rid`` (and register a version)."""
    import mlflow
    import numpy as np
    import torch
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import ParamSchema, ParamSpec, Schema, TensorSpec

    from . import __version__

    from . import tracking_model

    spec = run.model
    size = spec["image_size"]
    tensor = TensorSpec(np.dtype(np.float32), (-1, 3, size, size))
    named = get_family(spec["family"]).pyfunc_inputs(size)
    if len(named) == 1:  # one input: predict gets the array itself
        inputs = Schema([TensorSpec(np.dtype(np.float32), (-1, *named[0][1]))])
    else:  # several: predict gets {name: array}
        inputs = Schema([TensorSpec(np.dtype(np.float32), (-1, *shape), name) for name, shape in named])
    defaults = {"mode": spec["mode"], "seed": int(spec["seed"])}
    signature = ModelSignature(
        inputs=inputs,
        outputs=Schema([tensor]),
        params=ParamSchema(
            [ParamSpec("mode", "string", defaults["mode"]), ParamSpec("seed", "long", defaults["seed"])]
        ),
    )
    requirements = [
        f"unetprune=={__version__}",
        f"torch=={torch.__version__.split('+')[0]}",
        f"mlflow=={mlflow.__version__}",
        f"numpy=={np.__version__}",
    ]
    with tempfile.TemporaryDirectory(prefix="unetprune-model-") as tmp:
        code = Path(tmp) / "unetprune_generator.py"  # the logged model's code: tracking_model.py
        shutil.copyfile(tracking_model.__file__, code)
        weights = _generator_only(spec["checkpoint"], Path(tmp) / "generator.pt")
        previous = mlflow.get_tracking_uri()
        mlflow.set_tracking_uri(client.tracking_uri)
        try:
            with warnings.catch_warnings(), mlflow.start_run(run_id=rid):
                warnings.simplefilter("ignore")
                info = mlflow.pyfunc.log_model(
                    name=MODEL_NAME,
                    python_model=str(code),
                    artifacts={"checkpoint": str(weights)},
                    signature=signature,
                    pip_requirements=requirements,
                    metadata={"unetprune": spec["metadata"]},
                    model_config={**defaults, "inputs": [name for name, _ in named]},
                    registered_model_name=spec["registered_model"],
                    await_registration_for=60,
                )
            if spec.get("onnx"):
                _log_onnx(rid, spec)
        finally:
            mlflow.set_tracking_uri(previous)
    version = getattr(info, "registered_model_version", None)
    if spec["registered_model"] and version is not None:
        meta = spec["metadata"]
        for k in ("experiment", "variant", "stage", "strategy", "group"):
            client.set_model_version_tag(
                spec["registered_model"], str(version), f"unetprune.{k}", str(meta[k])
            )
        client.set_model_version_tag(spec["registered_model"], str(version), KEY_TAG, run.key)
        client.update_model_version(
            spec["registered_model"],
            str(version),
            description=f"{meta['variant']} ({meta['stage']}): {meta['strategy']}, "
            f"{meta['params']:.0f} parameters, {meta['macs_physical']:.4g} MACs (physical)",
        )


def _log_onnx(rid: str, spec: dict) -> None:
    """Log the ONNX export ``spec["onnx"]`` as the ONNX model ``generator_onnx`` of run ``rid`` (the
    tracking URI already set), its signature from the file's own named inputs and output."""
    import mlflow
    import mlflow.onnx
    import numpy as np
    import onnx
    import onnxruntime
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    from .export import read_metadata

    path = Path(spec["onnx"])
    proto = onnx.load(str(path))
    meta = read_metadata(path)

    def specs(values) -> Schema:
        return Schema(
            [
                TensorSpec(
                    np.dtype(np.float32), tuple(-1 if not isinstance(d, int) else d for d in shape), name
                )
                for name, shape in values
            ]
        )

    sess = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    signature = ModelSignature(
        inputs=specs((i.name, i.shape) for i in sess.get_inputs()),
        outputs=specs((o.name, o.shape) for o in sess.get_outputs()),
    )
    with warnings.catch_warnings(), mlflow.start_run(run_id=rid):
        warnings.simplefilter("ignore")
        mlflow.onnx.log_model(
            proto,
            name=ONNX_MODEL_NAME,
            signature=signature,
            pip_requirements=[
                f"onnx=={onnx.__version__}",
                f"onnxruntime=={onnxruntime.__version__}",
                f"mlflow=={mlflow.__version__}",
            ],
            metadata={
                "unetprune": {
                    **spec["metadata"],
                    "onnx_file": str(path),
                    "onnx_sha256": spec["onnx_sha256"],
                    "opset": meta.get("unetprune.opset"),
                    "mode": meta.get("unetprune.mode"),
                }
            },
            save_as_external_data=False,
        )


def sync_lock_path(uri: str) -> Path:
    """The lock file that serialises syncs into one store: ``<db>.lock`` next to a sqlite database,
    ``.unetprune-sync.lock`` inside a file store, a per-URI file in the temp folder otherwise."""
    import urllib.parse

    if uri.startswith("sqlite:///"):
        db = uri[len("sqlite:///") :].split("?", 1)[0]
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
    cfg: dict,
    base: Path | str = DEFAULT_BASE,
    uri: str | None = None,
    artifact_location: str | None = None,
    artifact_root: Path | str | None = None,
) -> dict:
    """Mirror ``results/<experiment>/`` into MLflow; returns (and writes to mlflow.json) the run ids.

    ``uri``: the tracking URI (default ``tracking.uri``): a local store or a tracking server.
    ``artifact_root``: the artifact folder of a local store (default :func:`default_artifact_root`).
    ``artifact_location``: the artifact location of a newly created experiment (default
    ``mlflow-artifacts:/<experiment>`` for a local store, the server's default for a server).
    Syncs into one store are serialised by a file lock (:func:`sync_lock_path`)."""
    uri = uri or cfg["tracking"]["uri"]
    root = Path(artifact_root) if artifact_root else default_artifact_root(uri, cfg)
    artifacts = local_artifact_root(root) if root is not None else contextlib.nullcontext()
    with _SyncLock(sync_lock_path(uri)), artifacts:
        return _sync_locked(cfg, base, uri, artifact_location, root)


def _sync_locked(cfg: dict, base, uri: str, artifact_location: str | None, root: Path | None) -> dict:
    from .report.tables import all_tables

    lay = Layout.from_config(cfg, base)
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
        for tag, value in experiment_tags(cfg).items():
            client.set_experiment_tag(exp_id, tag, value)
        existing = _existing_runs(client, exp_id, name)
        from .evaluate import versions

        commit = git_commit()
        ev = cfg["evaluate"]
        common = {
            "unetprune.experiment": name,
            "mlflow.source.git.commit": commit,
            "unetprune.git_commit": commit,
            "unetprune.config_sha256": config_digest(cfg),
            "unetprune.fid_backend": ev["fid_backend"],
            "unetprune.segmentation": ev.get("segmentation"),
            "unetprune.model_family": cfg["model"].get("family"),
        }
        common.update({f"version.{k}": v for k, v in versions().items()})
        import mlflow

        common["version.mlflow"] = mlflow.__version__
        common = {k: v for k, v in common.items() if v is not None}
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
                    _delete_run(client, run)
        artifact_location = client.get_experiment(exp_id).artifact_location
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
        "artifact_location": artifact_location,
        "registered_model": registered_model_name(cfg) if cfg["tracking"].get("log_models", True) else None,
        "ui_path": ui_path(exp_id),
        "runs": ids,
        "sensitivity_parent": pid,
    }
    atomic_write_text(lay.mlflow_json, json.dumps(result, indent=2) + "\n")  # stable across re-syncs
    return {
        **result,
        "artifact_root": str(root) if root is not None else None,
        "logged": changed,
        "unchanged": len(ids) - changed,
    }
