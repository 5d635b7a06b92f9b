"""What ``report.md`` says about one model family's models: the generic text, which a family
refines by returning a subclass from :meth:`unetprune.family.ModelFamily.report_text`.

Every method has a default that holds for any family and reads only the core config keys
(``data.dataset``, ``train.*``, ``evaluate.*``), so a family that describes nothing still gets
a complete report.  The report calls each method once per ``report.md``::

    text = report_text(family_for_config(cfg))
    text.generator(cfg)          # ("U-Net (num_downs 8, ...)", "unet", 64): comparability
    text.config_rows(cfg, "3 run (2 + 1 configured)")

This module imports nothing from the package.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable


@dataclass(frozen=True)
class Published:
    """A published number and the protocol it was measured with (docs/method.md); a model family
    lists those its experiments may stand beside (:meth:`~unetprune.family.ModelFamily.comparability_rows`)."""

    key: str
    source: str
    numbers: str  # as quoted
    metric: str  # fid | miou | lse
    dataset: str  # data.dataset of a run that reproduces it
    split: str  # evaluate.split of such a run
    n_images: int | None  # None: not stated in the quote
    image_size: int | None  # None: not stated
    generator: str  # description
    generator_kind: str  # matched against the kind of the family's ReportText.generator
    generator_ngf: int | None  # generator width, where the comparison depends on it
    mode: str  # train_bn | eval
    quantize: str  # round | truncate
    implementation: str  # the metric's implementation (FID backend name for FIDs)
    values: tuple[tuple[str, float], ...] = ()  # (label, value) in the metric's published unit


DRN_PROTOCOL = "DRN-D-105 mIoU (drn-d-105_ms_cityscapes.pth, full-resolution gtFine trainIds)"


#: The repository document that states the method, the decisions where the paper is silent
#: and the check numbers.  A report lives in the results folder, which may be anywhere, so it
#: names the document by its path in the repository instead of a relative link.
METHOD_DOC = "docs/method.md"
REPOSITORY = "the unetprune repository"


def method_ref(anchor: str = "") -> str:
    """``docs/method.md#anchor`` in the unetprune repository, as report.md cites it."""
    return f"`{METHOD_DOC}{'#' + anchor if anchor else ''}` in {REPOSITORY}"


class ReportText:
    """The generic description of a family's models in ``report.md`` (see the module doc)."""

    #: the sample grid's rows are spread over the first this-many items of the split (e.g. the
    #: first seconds of a clip); None = the first ``report.sample_images`` items
    sample_span: int | None = None

    def __init__(self, family):
        self.family = family

    @property
    def name(self) -> str:
        return self.family.name

    # --- training ---------------------------------------------------------------------
    def check_score(self) -> str:
        """What the trainer's learning check (``ModelFamily.check_score``) measures, as a phrase."""
        return f"the `{self.name}` family's check score"

    # --- what was run -----------------------------------------------------------------
    def generator(self, cfg: dict) -> tuple[str, str, int | None]:
        """``(description, kind, width)`` of the experiment's unpruned generator: the description
        is shown, ``kind`` and ``width`` (None: not compared) are matched against a published
        number's generator (:mod:`unetprune.report.comparability`)."""
        return f"`{self.name}` generator", self.name, None

    def original_line(self, lay, folder: Callable[[Path], str]) -> str:
        """The "What was run" bullet of the original (``folder(path)`` formats a results folder)."""
        return f"* the **original** (unpruned) `{self.name}` generator ({folder(lay.original_dir)});\n"

    def config_rows(self, cfg: dict, epochs: str) -> list[tuple[str, str]]:
        """The configuration table's rows on the data, the model and the original's training
        (``epochs``: the epochs run and configured, already phrased)."""
        t = cfg["train"]
        return [
            ("dataset", str(cfg["data"]["dataset"])),
            ("generator", f"{self.name} family"),
            ("original training", f"epochs {epochs}, batch {t['batch_size']}, lr {t['lr']}"),
        ]

    def evaluation_row(self, cfg: dict) -> str:
        """The configuration table's ``evaluation`` value."""
        e = cfg["evaluate"]
        return f"mode {e['mode']}, FID backend {e['fid_backend']}, max_images {e['max_images']}"

    # --- assumptions ------------------------------------------------------------------
    def evaluation_mode(self, cfg: dict) -> str:
        """What ``evaluate.mode`` means for this family's generators."""
        if cfg["evaluate"]["mode"] == "train_bn":
            return "BatchNorm on batch statistics and dropout on, seeded"
        return "`model.eval()`: running BatchNorm statistics, no dropout"

    def inner_levels(self, cfg: dict, levels: str, layers: str, variants: str) -> str:
        """The **Inner levels** assumption (``levels``, ``layers``, ``variants``: already listed)."""
        return (
            f"**Inner levels**: level(s) {levels} of this `{self.name}` generator (the family's default "
            f"inner levels); their layers are {layers}. Inner variants: {variants}."
        )

    def cut_layers(self, cfg: dict, variants: str) -> str:
        """The **Cut inner layers** assumption (``variants``: the cut variants, already listed)."""
        return (
            "**Cut inner layers**: remove the innermost k levels, every surviving weight copied from the "
            f"original model. Cut variants: {variants}."
        )

    def bias(self, cfg: dict) -> str | None:
        """The **Bias mode** assumption, or None where the family has no bias choice."""
        return None

    # --- samples ----------------------------------------------------------------------
    def samples_note(self, lay, here: Callable[[Path], str]) -> str:
        """Text after the sample grids (``here(path)``: a path as report.md links it); "" = none."""
        return ""


def report_text(family) -> "ReportText":
    """The report text of ``family``: its own (:meth:`~unetprune.family.ModelFamily.report_text`)
    or the generic :class:`ReportText`."""
    return family.report_text() or ReportText(family)
