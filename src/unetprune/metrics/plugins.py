"""The Evaluator's metrics as plug-ins, registered in one place.

A plug-in is a small class; the Evaluator builds one instance per evaluation split::

    @register_metric
    class LSE(Metric):
        name = "lse"                  # registry name and its entry in the result's timing_s
        keys = ("lse",)               # the result keys it fills (None where it does not apply)

        def setup(self, eval_set, ctx):      # once: load extractors, real statistics, segmenters
            ...

        def score(self, fakes, generator):   # per generator: {key: JSON-ready value}
            return {"lse": ...}

``eval_set`` is the :class:`unetprune.evaluate.EvalSet` (uint8 inputs and targets, files,
split facts), ``ctx`` the :class:`unetprune.evaluate.EvalContext` (config, device, seed,
cache folder, latency flag, and ``ctx.metrics``: the Evaluator's other plug-ins, for a
plug-in that reuses another's work, as KID reuses FID's features).  ``fakes`` are the
generated images of the whole split, uint8 (N, 3, H, W) on the evaluation device, made
once per generator by the Evaluator's one generation loop; every plug-in scores those very
pixels.  The result holds the plug-ins' keys in registry order.

Noise levels (:mod:`unetprune.metrics.noise`): a plug-in whose numbers depend on the generated
images (``images_dependent = True``, the default) is scored again on every repeat generation
(other seeds, ``evaluate.extra_modes``); ``bootstrap(fakes, counts)`` gives its metrics' bootstrap
replicates on the images it scored last (``counts``: (B, N) multiplicities of the N images in
each resample, :func:`unetprune.metrics.noise.resample_counts`), keyed by the names of
:data:`unetprune.metrics.noise.NOISE_METRICS`; the default has none.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import ClassVar

import torch


class Metric:
    """Base class of a metric plug-in (see the module docstring)."""

    name: ClassVar[str]
    keys: ClassVar[tuple[str, ...]]
    setup_rank: ClassVar[int] = 1  # lower ranks set up first (cheap checks of user files: rank 0)
    images_dependent: ClassVar[bool] = True  # re-scored for repeat generations (seeds, extra modes)

    def setup(self, eval_set, ctx) -> None:
        self.eval_set, self.ctx = eval_set, ctx

    def score(self, fakes: torch.Tensor, generator: torch.nn.Module) -> dict:
        raise NotImplementedError

    def bootstrap(self, fakes: torch.Tensor, counts) -> dict:
        """Bootstrap replicates {metric: (B,) array} of this plug-in's numbers on ``fakes``."""
        return {}


METRICS: dict[str, type[Metric]] = {}
# pix2pix's metrics, in result order
DEFAULT_METRICS = ("fid", "kid", "segmentation", "paired", "diversity", "complexity")


def register_metric(cls: type[Metric]) -> type[Metric]:
    """Class decorator: make ``cls`` available to the Evaluator under ``cls.name``."""
    if cls.name in METRICS and METRICS[cls.name] is not cls:
        raise ValueError(f"a metric named {cls.name!r} is already registered ({METRICS[cls.name].__name__})")
    METRICS[cls.name] = cls
    return cls


def build_metrics(names: Sequence[str]) -> dict[str, Metric]:
    """Fresh instances of the named plug-ins, in the given order."""
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {', '.join(unknown)} (registered: {', '.join(METRICS)})")
    return {n: METRICS[n]() for n in names}


# --------------------------------------------------------------------------------------
# The plug-ins of the U-Net GAN family
# --------------------------------------------------------------------------------------


@register_metric
class FIDMetric(Metric):
    """FID against the split's targets: extractor built and real statistics computed (or read
    from the cache) once; the fake features of the last scored images are kept for KID."""

    name, keys = "fid", ("fid",)

    def setup(self, eval_set, ctx):
        from . import fid as F

        super().setup(eval_set, ctx)
        ev = ctx.ev
        self._last: tuple[weakref.ref, object] | None = None
        self.batch_size = int(ev["feature_batch_size"])
        self.extractor = F.get_extractor(
            ev["fid_backend"],
            ev["inception_weights"],
            ev["standin_seed"],
            ctx.device,
            cache_dir=ctx.cache_dir,
        )
        es = eval_set
        self.real, self.real_info = F.real_stats(
            es.targets,
            self.extractor,
            dataset=es.dataset,
            split=es.split,
            direction=es.direction,
            image_size=es.image_size,
            files=es.files,
            files_hash=es.files_sha256,
            cache_dir=ctx.cache_dir,
            batch_size=self.batch_size,
        )

    def features(self, fakes: torch.Tensor):
        """Extractor features (N, D) of ``fakes``; computed once per tensor of generated images."""
        from . import fid as F

        if self._last is not None and self._last[0]() is fakes:
            return self._last[1]
        feats = F.features_from_uint8(fakes, self.extractor, self.batch_size)
        self._last = (weakref.ref(fakes), feats)
        return feats

    def score(self, fakes, generator):
        from . import fid as F

        es = self.eval_set
        feats = self.features(fakes)
        return {
            "fid": {
                "value": F.fid_from_stats(F.FeatureStats.from_features(feats), self.real),
                "backend": self.extractor.backend,
                "extractor": self.extractor.describe(),
                "n_images": es.n,
                "image_size": es.image_size,
                "split": es.split,
                "dataset": es.dataset,
                "real_stats": {k: self.real_info[k] for k in ("key", "cache", "cache_hit", "files_sha256")},
            }
        }

    def bootstrap(self, fakes, counts):
        from .noise import FEATURE_BOOTSTRAP_MAX, fid_replicates

        if len(fakes) > FEATURE_BOOTSTRAP_MAX:
            return {}
        return {"fid": fid_replicates(self.features(fakes), self.real.features, counts)}


@register_metric
class KIDMetric(Metric):
    """KID (``evaluate.kid``; None when off) on the FID plug-in's features: same extractor, same
    real features, the fake features computed once for both."""

    name, keys = "kid", ("kid",)
    setup_rank = 2  # after the FID plug-in it reuses

    def setup(self, eval_set, ctx):
        super().setup(eval_set, ctx)
        self.enabled = bool(ctx.ev["kid"])
        self.fid = ctx.metrics.get("fid")
        if self.fid is None:
            raise ValueError("the kid metric reuses the fid metric's features: evaluate both")

    def score(self, fakes, generator):
        from . import fid as F

        if not self.enabled:
            return {"kid": None}
        kid = F.kid_from_features(self.fid.features(fakes), self.fid.real.features, seed=self.ctx.seed)
        return {"kid": {**kid, "backend": self.fid.extractor.backend}}

    def bootstrap(self, fakes, counts):
        from .noise import FEATURE_BOOTSTRAP_MAX, kid_replicates

        if not self.enabled or len(fakes) > FEATURE_BOOTSTRAP_MAX:
            return {}
        return {"kid": kid_replicates(self.fid.features(fakes), self.fid.real.features, counts)}


def resolve_segmentation(cfg: dict) -> str:
    """``evaluate.segmentation``, with ``auto`` resolved from the dataset: demo | cityscapes | none."""
    seg = cfg["evaluate"]["segmentation"]
    if seg != "auto":
        return seg
    d = cfg["data"]
    if d["dataset"] == "demo":
        return "demo" if d["direction"] == "AtoB" else "none"
    if d["dataset"] == "cityscapes":
        return "cityscapes"
    return "none"


@register_metric
class SegmentationMetric(Metric):
    """mIoU of the generated photos: the demo relabeller, or DRN-D-105 on Cityscapes (or none)."""

    name, keys = "segmentation", ("segmentation",)
    setup_rank = 0  # a missing DRN weight file fails before the FID statistics are computed

    def setup(self, eval_set, ctx):
        super().setup(eval_set, ctx)
        self.kind = resolve_segmentation(ctx.cfg)
        if self.kind == "cityscapes":
            from ..errors import EvaluationError
            from .segmentation import (
                FULL_RES_LABELS,
                colour_to_train_ids,
                expected_label_file,
                find_label_file,
                load_drn,
                read_train_ids,
            )

            es = eval_set
            self.drn = load_drn(ctx.ev["drn_weights"], ctx.device)
            found = [find_label_file(es.root, es.split, f) for f in es.files]
            if all(p is not None for p in found):
                self.labels = [read_train_ids(p) for p in found]
                self.label_source = FULL_RES_LABELS
            elif any(p is not None for p in found):
                missing = es.files[[p is None for p in found].index(True)]
                raise EvaluationError(
                    f"no full-resolution label map for {missing}: expected "
                    f"{expected_label_file(es.root, es.split, missing)}"
                )
            else:
                self.labels = [colour_to_train_ids(x) for x in es.inputs]
                self.label_source = "input colour label maps (nearest Cityscapes colour, generated size)"
        elif self.kind == "demo":
            self.n_classes = int(ctx.cfg["demo"]["n_classes"])
        self._last: tuple[weakref.ref, object] | None = None  # (images, per-image confusion matrices)

    def score(self, fakes, generator):
        if self.kind == "demo":
            from .segmentation import demo_confusions, demo_result

            confs = demo_confusions(fakes.cpu(), self.eval_set.inputs, self.n_classes)
            self._last = (weakref.ref(fakes), confs)
            return {"segmentation": demo_result(confs.sum(0))}
        if self.kind == "cityscapes":
            import numpy as np

            from .segmentation import CityscapesScorer

            scorer = CityscapesScorer(self.drn, self.ctx.device)
            for i in range(len(fakes)):
                scorer.update(fakes[i : i + 1], [self.labels[i]])
            self._last = (weakref.ref(fakes), np.stack(scorer.per_image))
            return {"segmentation": scorer.result(self.label_source)}
        return {"segmentation": None}

    def bootstrap(self, fakes, counts):
        from .noise import miou_replicates

        if self.kind not in ("demo", "cityscapes"):
            return {}
        if self._last is None or self._last[0]() is not fakes:
            self.score(fakes, None)
        return {"miou": miou_replicates(self._last[1], counts)}


@register_metric
class PairedMetric(Metric):
    """L1 / PSNR / SSIM of each generated image against its target, averaged over the split."""

    name, keys = "paired", ("l1", "psnr", "ssim", "paired_definitions")
    chunk = 64

    def score(self, fakes, generator):
        from .paired import PAIRED_DEFINITIONS, PairedAccumulator

        targets, fakes_in = self.eval_set.targets, fakes
        rows = getattr(self.eval_set, "paired_rows", None)  # e.g. the lower half of a talking face
        if rows is not None:
            fakes, targets = fakes[:, :, rows], targets[:, :, rows]
        acc = PairedAccumulator()
        for i in range(0, len(fakes), self.chunk):
            acc.update(fakes[i : i + self.chunk], targets[i : i + self.chunk])
        pm = acc.result()
        self._last = (weakref.ref(fakes_in), acc.per_image())
        defs = dict(PAIRED_DEFINITIONS)
        if rows is not None:
            defs["region"] = (
                f"image rows {rows.start}..{rows.stop - 1} only ({getattr(self.eval_set, 'paired_region', '')})"
            )
        return {"l1": pm["l1"], "psnr": pm["psnr"], "ssim": pm["ssim"], "paired_definitions": defs}

    def bootstrap(self, fakes, counts):
        from .noise import mean_replicates

        last = getattr(self, "_last", None)
        if last is None or last[0]() is not fakes:
            self.score(fakes, None)
            last = self._last
        return {k: mean_replicates(v.numpy(), counts) for k, v in last[1].items()}


#: what ``diversity`` measures (recorded with every value)
DIVERSITY_DEFINITION = (
    "ratio = mean over pixels and channels of the standard deviation across the split's images of "
    "the generated images, divided by the same for the real target images (uint8 pixels scaled to "
    "[0, 1]); collapsed = ratio < evaluate.collapse_threshold"
)


def output_spread(images: torch.Tensor, chunk: int = 64) -> float:
    """Mean per-pixel standard deviation across images (N, C, H, W) of uint8 pixels scaled to [0, 1]:
    0 for a generator whose output does not depend on its input.

    uint8 images: from exact sums (``N * sum(x^2) - sum(x)^2``): ``chunk`` (<= 258) images at a
    time summed in float32, exact for integers below 2^24, accumulated in float64, exact below
    2^53; no float copy of the whole split is made and the variance is exact before its square
    root.  Other dtypes: ``std`` of the float64 values."""
    x = images.detach()
    n = len(x)
    if n < 2:
        return 0.0
    if x.dtype != torch.uint8:
        return float((x.to(torch.float64) / 255.0).std(dim=0, unbiased=False).mean())
    chunk = min(int(chunk), 258)  # 258 * 255^2 < 2^24
    s1 = torch.zeros(x.shape[1:], dtype=torch.float64, device=x.device)
    s2 = torch.zeros_like(s1)
    for i in range(0, n, chunk):
        c = x[i : i + chunk].to(torch.float32)
        s1 += c.sum(0)
        s2 += (c * c).sum(0)
    var = (n * s2 - s1 * s1) / (float(n) * n * 255.0 * 255.0)
    return float(var.sqrt().mean())


def collapsed(ratio: float | None, threshold: float) -> bool | None:
    """Whether a diversity ratio marks a collapsed generator (None: not measurable)."""
    return None if ratio is None else bool(ratio < threshold)


@register_metric
class DiversityMetric(Metric):
    """Collapse check: how much the generated images vary across the split's inputs, relative
    to how much the real targets vary (``DIVERSITY_DEFINITION``).  A generator that outputs
    (nearly) the same image for every input scores ~0 and is flagged ``collapsed``; paired
    metrics (L1/PSNR/SSIM) can reward such a mean prediction, a distribution metric cannot."""

    name, keys = "diversity", ("diversity",)

    def setup(self, eval_set, ctx):
        super().setup(eval_set, ctx)
        self.threshold = float(ctx.ev.get("collapse_threshold", 0.1))
        self.real_std = output_spread(eval_set.targets)

    def score(self, fakes, generator):
        fake_std = output_spread(fakes)
        ratio = fake_std / self.real_std if self.real_std > 0 else None
        return {
            "diversity": {
                "ratio": ratio,
                "fake_std": fake_std,
                "real_std": self.real_std,
                "threshold": self.threshold,
                "collapsed": collapsed(ratio, self.threshold),
                "n_images": int(len(fakes)),
                "definition": DIVERSITY_DEFINITION,
            }
        }


@register_metric
class ComplexityMetric(Metric):
    """Parameters, MACs in both conventions and (unless disabled) batch-1 latency at the split's size."""

    name, keys = "complexity", ("complexity",)
    images_dependent = False  # the same for every generation: not repeated for seeds / extra modes

    def setup(self, eval_set, ctx):
        super().setup(eval_set, ctx)
        self.image_size = eval_set.image_size
        inputs = getattr(eval_set, "inputs", None)
        self.default_shape = (
            1,
            int(inputs.shape[1]) if inputs is not None else 3,
            self.image_size,
            self.image_size,
        )

    def score(self, fakes, generator):
        from ..family import family_of
        from .complexity import complexity_report

        try:  # the family's counting shape (a Wav2Lip generator: a 96x96 face and its mel window)
            self.input_shape = family_of(generator).counting_shape(generator, self.image_size)
        except TypeError:
            self.input_shape = self.default_shape
        report = complexity_report(
            generator,
            self.input_shape,
            latency=self.ctx.latency,
            threads=self.ctx.latency_threads,
            onnx=self.ctx.ort,
            onnx_file=self.ctx.onnx_file,
        )
        return {"complexity": report}
