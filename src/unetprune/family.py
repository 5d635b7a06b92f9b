"""The model-family protocol: everything the core (pruning, training, evaluation, report,
tracking, config, workflow, CLI) needs from a kind of generator.  The core asks a
:class:`ModelFamily` and never compares a family's name.

A family answers, for its models:

* **build from a spec** — a spec is a small dataclass that rebuilds a generator of any widths
  (``spec_from_config``, ``spec_to_dict``/``spec_from_dict`` for self-describing checkpoints,
  ``build``, ``input_shape(s)``);
* **prunable channel groups** — stable layer names ordered outer → inner → outer (``groups``),
  each group's width and the conv (+ norm) whose filters score it (``layer_width``,
  ``layer_filters``), levels, default inner levels, cut depths (``cut_ks``) and widths; the
  operations that *change* a generator are its :class:`~unetprune.pruning.ops.PruningOps`
  (``pruning_ops()``), imported only when asked for;
* **a training step** — the non-generator models (``build_discriminator``,
  ``discriminator_from_entry``), a trainer of the :class:`unetprune.trainer.Trainer` protocol
  (``trainer``), its data (``train_dataset``, ``check_dataset``, ``check_score``);
* **evaluation** — its evaluation set (``eval_set``), the metric plug-ins that apply
  (``metrics``, ``register_metrics()``), sample rendering (``render_samples``);
* **config, CLI, workflow, report, tracking** — a schema fragment for its own keys under
  ``model.<name>`` and semantic checks (``schema_fragment``, ``check_config``), its own
  commands (``command_modules``), extra Snakemake jobs and inputs (``workflow_rules``,
  ``job_inputs``, ``final_outputs``, ``data_marker``), the report's wording and published
  results (``report_text``, ``comparability_rows``), the logged and exported model's inputs
  (``pyfunc_inputs``, ``export_inputs``).

Families are found through the entry-point group :data:`ENTRY_POINT_GROUP`
(``unetprune.families``): each entry point names a :class:`ModelFamily` instance (or class)
by the family's name, so a package outside this repository adds a family by declaring one
(``docs/extending.md``).  Checkpoints record ``"family": <name>`` (one without it is read as
:data:`DEFAULT_FAMILY`); :func:`family_of` finds the family of a checkpoint, a spec or a
generator, :func:`get_family` of a name, :func:`family_for_config` of a config
(``model.family``).
"""

from __future__ import annotations

import importlib.metadata
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

DEFAULT_FAMILY = "pix2pix"


class ModelFamily(ABC):
    """One kind of prunable U-Net GAN generator (see the module doc)."""

    name: str  # recorded in checkpoints as "family"
    metrics: tuple[str, ...]  # metric plug-in names the evaluator runs for this family
    spec_type: type  # the spec dataclass; its instances identify the family

    # --- build from a spec ----------------------------------------------------------
    @abstractmethod
    def spec_from_config(self, cfg: dict) -> Any:
        """The unpruned generator's spec for a validated config."""

    def spec_to_dict(self, spec) -> dict:
        return spec.to_dict()

    def spec_from_dict(self, d: Mapping) -> Any:
        return self.spec_type.from_dict(d)

    @abstractmethod
    def build(self, spec, init: bool = True, seed: int | None = None) -> nn.Module:
        """A generator of ``spec`` (``spec`` may be its dict); ``init`` = the family's init."""

    @abstractmethod
    def input_shape(self, generator: nn.Module) -> tuple[int, ...]:
        """The smallest batch-1 input ``generator`` accepts (MAC counting by default)."""

    def input_shapes(self, generator, input_shape) -> list[tuple[int, ...]]:
        """The shapes of every forward argument of ``generator``, in the order of its ``forward``,
        for a batch whose main input (the one :meth:`input_shape` describes) has ``input_shape``
        (MAC counting, latency): one tensor by default."""
        return [tuple(int(s) for s in input_shape)]

    def counting_shape(self, generator, image_size: int | None = None) -> tuple[int, ...]:
        """The batch-1 first-input shape at which an experiment counts MACs: ``image_size`` (the
        configured crop) where the family takes any size, else :meth:`input_shape`."""
        return tuple(self.input_shape(generator))

    def eval_set(self, cfg: dict, split: str, root):
        """The evaluation set of ``split`` under ``root`` (:class:`unetprune.evaluate.EvalSet`
        protocol: ``n``, ``targets`` (uint8 RGB), ``batches(bs)`` of generator arguments,
        ``quantize_outputs(outputs)``, ``display_inputs(idx)``); families without one cannot be evaluated."""
        from .errors import UserFacingError

        raise UserFacingError(f"model family {self.name!r} has no evaluation set")

    def register_metrics(self) -> None:
        """Register the metric plug-ins this family brings (those of :attr:`metrics` that are not
        built in); called before the evaluator builds its metrics."""

    def trivial_generators(self, cfg: dict, generator: nn.Module, root) -> dict[str, tuple]:
        """The trivial generators of this family's task that the sanity gate
        (:mod:`unetprune.sanity`) scores the original against: ``{name: (module, what it does)}``
        or ``{name: (module, what it does, {metric: why it is not compared})}``, each module
        taking the generator's inputs (the batches of :meth:`eval_set`) and returning outputs of
        the generator's range.  The optional third item names the metrics on which the trivial
        generator is the floor by construction (e.g. FID of outputs that are real frames) and
        so is scored but not compared.  ``root`` = the dataset folder.  Default: ``untrained``,
        the original's architecture freshly initialised (the config seed + 1)."""
        seed = int(cfg.get("seed", 0)) + 1
        return {
            "untrained": (
                self.build(generator.spec, init=True, seed=seed),
                f"the original's architecture, freshly initialised (seed {seed}), never trained",
            )
        }

    def sanity_metrics(self, cfg: dict) -> list[str]:
        """Metrics the sanity gate checks besides the verdict metric (``report.quality_metric``),
        e.g. a lip-sync score; keys of :data:`unetprune.report.verdicts.METRICS`.  Default: none."""
        return []

    def owns(self, obj) -> bool:
        """Whether ``obj`` (a spec or a generator with ``.spec``) belongs to this family:
        its spec is exactly of ``spec_type`` (a subclass may belong to another family)."""
        return type(getattr(obj, "spec", obj)) is self.spec_type

    # --- prunable channel groups ------------------------------------------------------
    @abstractmethod
    def groups(self, spec_or_generator) -> list[str]:
        """Stable layer names of the prunable channel groups, ordered outer → inner → outer
        (the x-axis of the sensitivity figure); a spec suffices."""

    @abstractmethod
    def layer_width(self, generator: nn.Module, layer: str) -> int:
        """Number of filters (output channels) of the group ``layer``."""

    @abstractmethod
    def layer_filters(self, generator: nn.Module, layer: str) -> tuple[nn.Module, nn.Module | None]:
        """The conv whose output filters make up ``layer`` and the norm that follows it."""

    @abstractmethod
    def default_inner_levels(self, spec) -> list[int]:
        """The inner levels pruned by default (the paper's "inner pruning")."""

    def layer_position(self, spec, layer: str) -> tuple[str, int | None]:
        """``(part, level)`` of a prunable layer: part ``encoder`` / ``decoder`` (or another
        branch, e.g. ``audio``, ``output``), level its resolution level (None outside the U)."""
        raise NotImplementedError(f"model family {self.name!r} does not place layers in levels")

    def levels(self, spec) -> list[int]:
        """The levels an inner-pruning variant may name (default: none)."""
        return []

    def cut_ks(self, spec) -> dict[int, str | None]:
        """``{k: None}`` for every cut-k that fits ``spec``, ``{k: reason}`` for one that is refused."""
        return {}

    def pruning_ops(self):
        """The :class:`~unetprune.pruning.ops.PruningOps` that change this family's generators
        (channel removal, cut, width cost); ``None`` = this family cannot be pruned."""
        return None

    def has_residual_blocks(self, spec) -> bool:
        """Whether cut-res (removing the residual blocks of inner stages) applies."""
        return False

    @abstractmethod
    def widths(self, generator: nn.Module) -> dict:
        """JSON-serialisable widths of the architecture (for ``info`` and reports)."""

    # --- training ---------------------------------------------------------------------
    @abstractmethod
    def build_discriminator(self, cfg: dict, generator: nn.Module) -> nn.Module:
        """The fresh (initialised) non-generator model(s) the training step needs."""

    @abstractmethod
    def discriminator_from_entry(self, entry: dict) -> nn.Module:
        """Rebuild them from a checkpoint's ``discriminator`` entry (``arch`` + ``state_dict``)."""

    @abstractmethod
    def trainer(self, generator: nn.Module, discriminator: nn.Module, tcfg: dict, device: torch.device):
        """The trainer: ``.G``, ``.losses`` (names), ``set_lr``, ``set_train_mode``,
        ``step(batch) -> {loss: detached tensor}``, ``state()``/``load_state(ckpt)`` (the
        non-generator checkpoint entries: discriminator, optimizers); optionally ``bind(cfg)``,
        called once with the run's whole config before training starts."""

    @abstractmethod
    def train_dataset(self, cfg: dict):
        """The training set (a map-style dataset with ``set_epoch``)."""

    @abstractmethod
    def check_dataset(self, cfg: dict):
        """The small set of the trainer's learning check (``len`` and a ``split`` name), or ``None``."""

    @abstractmethod
    def check_score(self, generator: nn.Module, dataset, cfg: dict) -> float:
        """The learning check (lower is better), e.g. the mean L1 to the targets."""

    # --- samples ----------------------------------------------------------------------
    @abstractmethod
    def render_samples(self, generator: nn.Module, dataset, path: Path | str, cfg: dict) -> Path:
        """Write a sample image of ``generator`` on ``dataset`` to ``path``."""

    # --- config -----------------------------------------------------------------------
    def schema_fragment(self) -> Path | None:
        """A YAML JSON-Schema fragment (an object schema) for the keys only this family reads,
        validated under ``model.<family name>`` when the config uses this family; ``None`` = the
        family has none.  A key of the fragment written directly under ``model`` is refused
        with an error naming its new place."""
        return None

    def check_config(self, cfg: dict) -> None:
        """Semantic checks of a schema-valid config that uses this family (after the core's);
        raise :class:`~unetprune.errors.ConfigError` naming the key."""

    def describe(self, spec) -> str:
        """How config errors name a model of ``spec`` (e.g. ``num_downs=6``)."""
        return f"this {self.name} model"

    # --- command line and workflow ----------------------------------------------------
    def command_modules(self) -> list[str]:
        """Modules with a ``register(subparsers)`` adding this family's own ``unetprune`` commands
        (registered after the core's, in this order)."""
        return []

    def workflow_rules(self) -> list[Path]:
        """Snakemake files with this family's extra jobs, included after the core rules; they
        may use the names of ``workflow/rules/common.smk`` (``LAYOUT``, ``FAMILY``, ``code``, ...)."""
        return []

    def job_inputs(self, job: str, layout, cfg: dict) -> dict[str, tuple[Path, str | None]]:
        """Extra inputs of the core job ``job`` (``train``, ``finetune``, ``evaluate``, ``sweep``):
        ``{input name: (path, config key the path is passed as with --set, or None)}``."""
        return {}

    def import_released(
        self,
        source: Path | str,
        *,
        cfg: dict | None = None,
        discriminator: Path | str | None = None,
        expert: Path | str | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> tuple[dict, dict]:
        """``unetprune import --family <name>``: the released weights file ``source`` of this
        family's reference code as a unetprune checkpoint dict, and its import record (a JSON
        dict with at least ``sha256`` and ``summary``, one line for the user).  ``cfg`` (validated)
        states what the file must be; ``discriminator`` and ``expert`` are further released files
        the checkpoint carries; ``options`` the family's own expectations (e.g. a depth).  Files
        are read with ``torch.load(weights_only=True)`` only; anything else is refused with a
        one-line :class:`~unetprune.errors.UserFacingError`.  Default: this family imports nothing."""
        from .errors import UserFacingError

        raise UserFacingError(
            f"model family {self.name!r} cannot import released weights (unetprune import --family)"
        )

    def final_outputs(self, layout, cfg: dict) -> list[Path]:
        """Files this family adds to the workflow's final targets (e.g. a sample video)."""
        return []

    def demo_manifest(self, layout) -> Path:
        """The manifest that :meth:`build_demo` writes into the data root (the ``demo_data``
        job's output): the aligned image demo's ``demo.json`` by default."""
        return layout.data_file("demo.json")

    def data_marker(self, layout, cfg: dict) -> Path | None:
        """The file that proves the experiment's dataset is in place (an input of training and
        of the data-reading jobs): the demo's manifest, nothing for a ready folder
        (``data.dataset: folder``), else the marker of a fetched dataset checked against its lock."""
        dataset = cfg["data"]["dataset"]
        if dataset == "demo":
            return self.demo_manifest(layout)
        if dataset == "folder":
            return None
        return layout.dataset_verified

    def build_demo(self, cfg: dict, out: Path, force: bool = False) -> str:
        """Build the offline demo data of a config under ``out`` (idempotent unless ``force``)
        and return a one-line summary: by default the aligned labels → photo image pairs
        (:mod:`unetprune.data.demo`, the ``demo`` config section)."""
        import json

        from .data.aligned import check_aligned_layout
        from .data.demo import build_demo_dataset

        params = {
            k: cfg["demo"][k] for k in ("image_size", "n_train", "n_val", "n_test", "n_classes", "seed")
        }
        manifest = out / "demo.json"
        if manifest.exists() and not force:
            old = json.loads(manifest.read_text())
            counts = {"train": params["n_train"], "val": params["n_val"], "test": params["n_test"]}
            if (
                all(old.get(k) == v for k, v in params.items() if k not in ("n_train", "n_val", "n_test"))
                and old.get("counts") == counts
            ):
                return f"demo dataset at {out} is up to date"
        build_demo_dataset(out, **params)
        counts = check_aligned_layout(out, splits=("train", "test"))
        return f"demo dataset written to {out}: " + ", ".join(f"{k} {v}" for k, v in counts.items())

    # --- report and tracking ----------------------------------------------------------
    def comparability_rows(self, cfg: dict) -> list:
        """The published numbers (:class:`unetprune.report.comparability.Published`) that an
        experiment of this family (config ``cfg``) may be set beside; none by default."""
        return []

    def report_text(self):
        """What ``report.md`` says about this family's models (the learning check, the generator,
        its assumptions, the sample grid): a subclass of :class:`unetprune.report_text.ReportText`,
        or ``None`` for its generic text."""
        return None

    def pyfunc_inputs(self, image_size: int) -> list[tuple[str, tuple[int, ...]]]:
        """``(name, per-item shape)`` of each of the generator's forward arguments, in order, for
        the logged MLflow model at ``image_size`` (float32 batches; a single input is passed as a
        plain array, several as a dict by name): one ``(3, size, size)`` image by default."""
        return [("input", (3, image_size, image_size))]

    def export_inputs(self, generator, image_size: int | None = None) -> list[tuple[str, tuple[int, ...]]]:
        """``(name, batch-1 shape)`` of each of ``generator``'s forward arguments, in order, for its
        ONNX export at ``image_size`` (:mod:`unetprune.export`): the shapes of
        :meth:`input_shapes` at :meth:`counting_shape`, named as :meth:`pyfunc_inputs` names them."""
        shapes = self.input_shapes(generator, self.counting_shape(generator, image_size))
        names = [n for n, _ in self.pyfunc_inputs(int(shapes[0][-1]))]
        if len(names) != len(shapes):
            raise TypeError(
                f"model family {self.name!r} names {len(names)} input(s) but its generator takes "
                f"{len(shapes)}: override export_inputs"
            )
        return [(n, tuple(int(x) for x in s)) for n, s in zip(names, shapes)]


ENTRY_POINT_GROUP = "unetprune.families"

_FAMILIES: dict[str, ModelFamily] = {}  # loaded (or registered in this process), by name


def _entry_points() -> dict:
    """``{name: entry point}`` of the ``unetprune.families`` group of every installed distribution."""
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def _load(name: str, ep) -> ModelFamily:
    obj = ep.load()
    family = obj() if isinstance(obj, type) else obj
    if not isinstance(family, ModelFamily) or family.name != name:
        raise TypeError(
            f"entry point {ep.value!r} of group {ENTRY_POINT_GROUP!r} must give a ModelFamily "
            f"named {name!r}, got {family!r}"
        )
    return family


def register_family(family: ModelFamily) -> ModelFamily:
    """Make ``family`` known in this process by its name, over an installed one of that name
    (installed families come from entry points; this is for interactive use and tests)."""
    _FAMILIES[family.name] = family
    return family


def unregister_family(name: str) -> None:
    """Forget a family registered in this process (an installed one is loaded again on demand)."""
    _FAMILIES.pop(name, None)


def family_names() -> list[str]:
    """Every installed or registered family name (nothing is imported to list them)."""
    return sorted(set(_entry_points()) | set(_FAMILIES))


def get_family(name: str | None = None) -> ModelFamily:
    """The family called ``name`` (``None`` = :data:`DEFAULT_FAMILY`), loading its entry point
    the first time it is asked for."""
    name = DEFAULT_FAMILY if name is None else str(name)
    if name not in _FAMILIES:
        eps = _entry_points()
        if name not in eps:
            from .errors import UserFacingError

            known = ", ".join(family_names()) or "none: install the package (pip install -e .)"
            raise UserFacingError(f"unknown model family {name!r}; known: {known}")
        _FAMILIES[name] = _load(name, eps[name])
    return _FAMILIES[name]


def all_families() -> list[ModelFamily]:
    """Every installed or registered family, loaded."""
    return [get_family(n) for n in family_names()]


def family_for_config(cfg: dict) -> ModelFamily:
    """The family chosen by ``model.family`` (default :data:`DEFAULT_FAMILY`)."""
    return get_family((cfg.get("model") or {}).get("family"))


def family_of(obj) -> ModelFamily:
    """The family of a checkpoint dict (its ``family`` key; absent = :data:`DEFAULT_FAMILY`),
    a family name, a spec, or a generator (by its ``.spec``)."""
    if isinstance(obj, ModelFamily):
        return obj
    if isinstance(obj, str):
        return get_family(obj)
    if isinstance(obj, Mapping):
        return get_family(obj.get("family"))
    fams = all_families()
    for fam in fams:
        if fam.owns(obj):
            return fam
    raise TypeError(
        f"{type(obj).__name__} belongs to no registered model family ({', '.join(f.name for f in fams)})"
    )


__all__ = [
    "DEFAULT_FAMILY",
    "ENTRY_POINT_GROUP",
    "ModelFamily",
    "all_families",
    "family_for_config",
    "family_names",
    "family_of",
    "get_family",
    "register_family",
    "unregister_family",
]
