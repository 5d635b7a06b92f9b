"""The results layout: the one place that knows where every file of an experiment lives.

Every path under ``results/<experiment>/`` comes from a :class:`Layout` built from the
validated config; the Snakemake rules, the CLI defaults, the report, the MLflow sync,
the benchmarks and the tests all ask it instead of spelling paths out::

    lay = Layout.from_config(cfg)              # results/<experiment>/
    lay.checkpoint("original", "original")     # results/demo/original/checkpoint.pt
    lay.eval_json("cut-k2", "finetuned")       # results/demo/eval/cut-k2__finetuned.json

Vocabulary (one name per thing):

* **original** — the unpruned generator trained by the pipeline (folder ``original/``,
  rule ``train_original``, evaluation ``eval/original.json``, table stage ``original``);
* **variant** — a pruned model: an inner or cut variant, or a matched global **baseline**
  (``baselines`` means only the global pruning baselines);
* stages of a variant: **pruned** (``variants/<v>/pruned.pt``) and **finetuned**
  (``variants/<v>/finetuned/checkpoint.pt``).

Layout::

    results/<experiment>/
      config.yaml                       the validated config every job ran with
      data/                             the dataset (unless data.root points elsewhere)
      dataset.verified                  a fetched dataset checked against its lock before training
      original/checkpoint.pt train.json samples.png [resume.pt while training]
      <aux>/                            a family's auxiliary runs (aux_dir), e.g. Wav2Lip's
        expert/checkpoint.pt train.json   lip-sync expert of the generator's sync loss
        lse/standin.pt                    stand-in LSE network (evaluate.lse_backend standin)
      sensitivity/<layer>.json          one per prunable layer, every ratio inside
      sensitivity/latency-<device>-t<threads>.json   a latency plan's per-layer latency table
      variants/<v>/pruned.pt prune.json
      variants/<v>/finetuned/checkpoint.pt train.json samples.png
      eval/original.json eval/<v>__pruned.json eval/<v>__finetuned.json
      onnx/original.onnx onnx/<v>__<final stage>.onnx   the original and each variant in ONNX
      fid_stats/                        cached real-image statistics, stand-in weights
      tables/<name>.csv|md              the paper's tables
      figures/<name>.png                sensitivity curves, trade-offs, sample grids
      figures/samples.mp4               Wav2Lip: one test clip through every model, side by side, with audio
      metrics.json                      the main table's numbers (DVC metrics)
      plots/sensitivity.csv             long-format sensitivity points (DVC plots)
      report.md  mlflow.json  logs/<job>.log
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ORIGINAL = "original"  # the unpruned model, and the name of its only stage
PRUNED, FINETUNED = "pruned", "finetuned"
STAGES = (ORIGINAL, PRUNED, FINETUNED)

# file names inside a training run's folder (the trainer writes them, the layout names them)
CHECKPOINT_NAME = "checkpoint.pt"  # a finished run (appears once, at the end)
RESUME_NAME = "resume.pt"  # the resumable state while a run is in progress
TRAIN_LOG_NAME = "train.json"
SAMPLES_NAME = "samples.png"

DEFAULT_BASE = Path("results")


@dataclass(frozen=True)
class Layout:
    """Paths of one experiment's results (``root`` = ``<base>/<experiment>``)."""

    root: Path
    data_root: Path
    sensitivity_root: Path | None = None  # only to redirect a sweep (`unetprune sweep --out-dir`)
    dataset: str = "demo"  # data.dataset

    @classmethod
    def from_config(cls, cfg: dict, base: Path | str = DEFAULT_BASE) -> "Layout":
        root = Path(base) / cfg["experiment"]
        data = (cfg.get("data") or {}).get("root")
        return cls(
            root=root,
            data_root=Path(data) if data else root / "data",
            dataset=(cfg.get("data") or {}).get("dataset") or "demo",
        )

    def redirect_sensitivity(self, folder: Path | str) -> "Layout":
        """This layout with the sweep JSONs in ``folder`` (`unetprune sweep --out-dir`)."""
        from dataclasses import replace

        return replace(self, sensitivity_root=Path(folder))

    # --- the experiment as a whole ---------------------------------------------------
    @property
    def config_file(self) -> Path:
        return self.root / "config.yaml"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    def log(self, job: str) -> Path:
        return self.logs_dir / f"{job}.log"

    @property
    def fid_cache(self) -> Path:
        return self.root / "fid_stats"

    # --- data ------------------------------------------------------------------------
    def data_file(self, name: str) -> Path:
        """A file of the dataset's root (a demo manifest, a preprocessing summary; the model
        family names it, e.g. :meth:`~unetprune.family.ModelFamily.demo_manifest`)."""
        return self.data_root / name

    @property
    def talking_summary(self) -> Path:
        """``preprocess.json`` of a talking-face folder preprocessed into the data root
        (`unetprune data preprocess-lrs2 --out <data root>`)."""
        return self.data_file("preprocess.json")

    @property
    def talking_root(self) -> Path:
        """The preprocessed talking-face folder: ``<data root>/preprocessed`` for the demo (its
        raw mp4s are in ``raw/``), the data root itself for LRS2 or a preprocessed folder."""
        return self.data_root / "preprocessed" if self.dataset == "demo" else self.data_root

    # --- a family's auxiliary runs (models trained besides the generator) ---------------
    def aux_dir(self, name: str) -> Path:
        """The folder of the auxiliary run ``name`` (``<root>/<name>``; a model family chooses the
        name, e.g. Wav2Lip's lip-sync expert in ``expert/`` and its LSE network in ``lse/``)."""
        return self.root / name

    @property
    def expert_dir(self) -> Path:
        """The lip-sync expert's run folder (Wav2Lip)."""
        return self.aux_dir("expert")

    @property
    def expert_checkpoint(self) -> Path:
        """The lip-sync expert trained by the pipeline (`unetprune train --expert`)."""
        return self.expert_dir / CHECKPOINT_NAME

    @property
    def lse_standin(self) -> Path:
        """Weights of the stand-in LSE network trained on the experiment's training clips
        (evaluate.lse_backend standin, evaluate.lse_weights null)."""
        return self.aux_dir("lse") / "standin.pt"

    def video(self, name: str) -> Path:
        return self.figures_dir / f"{name}.mp4"

    @property
    def dataset_lock(self) -> Path:
        return self.data_root / "dataset.lock.json"

    @property
    def dataset_verified(self) -> Path:
        """Marker of a fetched/prepared dataset checked against its lock (`data verify --quick`)
        before training: the workflow's data input for such datasets."""
        return self.root / "dataset.verified"

    # --- the original (unpruned) model -------------------------------------------------
    @property
    def original_dir(self) -> Path:
        return self.root / ORIGINAL

    # --- sensitivity -----------------------------------------------------------------
    @property
    def sensitivity_dir(self) -> Path:
        return self.sensitivity_root or self.root / "sensitivity"

    def sensitivity_json(self, layer: str) -> Path:
        return self.sensitivity_dir / f"{layer}.json"

    def latency_table(self, device: str, threads: int | None) -> Path:
        """The plan's latency table measured on ``device`` at ``threads`` CPU threads, cached with
        the sweep: ``latency-<device>-t<threads>.json`` (``-tna`` on CUDA, where threads do not apply)."""
        return self.sensitivity_dir / f"latency-{device}-t{threads if threads else 'na'}.json"

    # --- variants --------------------------------------------------------------------
    @property
    def variants_dir(self) -> Path:
        return self.root / "variants"

    def variant_dir(self, variant: str) -> Path:
        return self.variants_dir / variant

    def pruned_checkpoint(self, variant: str) -> Path:
        return self.variant_dir(variant) / "pruned.pt"

    def prune_json(self, variant: str) -> Path:
        return self.variant_dir(variant) / "prune.json"

    def finetuned_dir(self, variant: str) -> Path:
        return self.variant_dir(variant) / FINETUNED

    # --- any model at any stage ------------------------------------------------------
    def run_dir(self, model: str, stage: str | None = None) -> Path:
        """The training-run folder of the original or of a fine-tuned variant."""
        if model == ORIGINAL:
            return self.original_dir
        if stage == FINETUNED:
            return self.finetuned_dir(model)
        raise ValueError(
            f"{model} at stage {stage!r} has no training run (only the original and fine-tuned variants do)"
        )

    def checkpoint(self, model: str, stage: str | None = None) -> Path:
        """The generator of ``model`` at ``stage`` (the original has one stage)."""
        if model == ORIGINAL:
            return self.original_dir / CHECKPOINT_NAME
        if stage == PRUNED:
            return self.pruned_checkpoint(model)
        if stage == FINETUNED:
            return self.finetuned_dir(model) / CHECKPOINT_NAME
        raise ValueError(f"unknown stage {stage!r} (one of {', '.join(STAGES)})")

    def train_log(self, model: str, stage: str | None = None) -> Path:
        return self.run_dir(model, stage) / TRAIN_LOG_NAME

    def samples(self, model: str, stage: str | None = None) -> Path:
        return self.run_dir(model, stage) / SAMPLES_NAME

    @staticmethod
    def eval_name(model: str, stage: str | None = None) -> str:
        return ORIGINAL if model == ORIGINAL else f"{model}__{stage}"

    @property
    def eval_dir(self) -> Path:
        return self.root / "eval"

    def eval_json(self, model: str, stage: str | None = None) -> Path:
        return self.eval_dir / f"{self.eval_name(model, stage)}.json"

    # --- export ----------------------------------------------------------------------
    @property
    def onnx_dir(self) -> Path:
        return self.root / "onnx"

    def onnx_model(self, model: str, stage: str | None = None) -> Path:
        """The ONNX export of a model (``unetprune export``), named like its evaluation."""
        return self.onnx_dir / f"{self.eval_name(model, stage)}.onnx"

    # --- report ----------------------------------------------------------------------
    @property
    def tables_dir(self) -> Path:
        return self.root / "tables"

    def table(self, name: str, ext: str = "csv") -> Path:
        return self.tables_dir / f"{name}.{ext}"

    @property
    def figures_dir(self) -> Path:
        return self.root / "figures"

    def figure(self, name: str) -> Path:
        return self.figures_dir / f"{name}.png"

    @property
    def metrics_json(self) -> Path:
        return self.root / "metrics.json"

    @property
    def plots_dir(self) -> Path:
        return self.root / "plots"

    def plot(self, name: str) -> Path:
        return self.plots_dir / f"{name}.csv"

    @property
    def report_md(self) -> Path:
        return self.root / "report.md"

    @property
    def mlflow_json(self) -> Path:
        return self.root / "mlflow.json"

    # --- what the workflow's final targets are ---------------------------------------
    REPORT_TABLES = ("main", "sensitivity")
    REPORT_FIGURES = ("sensitivity", "tradeoff", "samples", "learning_curve")

    def report_outputs(self) -> list[Path]:
        """The files the report job declares (the rest of tables/ and figures/ come with them)."""
        return (
            [self.report_md]
            + [self.table(t) for t in self.REPORT_TABLES]
            + [self.figure(f) for f in self.REPORT_FIGURES]
            + [self.metrics_json, self.plot("sensitivity")]
        )
