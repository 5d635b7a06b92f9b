"""Score a generator on one split: FID/KID, segmentation mIoU, L1/PSNR/SSIM, params/MACs.

Three parts, each loaded or written once:

* :class:`EvalSet` — the split's images, loaded once as uint8 (generator inputs and real
  targets), their files and the hash of those files;
* :meth:`Evaluator.generate` — the generation loop (``translate.generate_batches`` under
  ``evaluate.mode``): generator → uint8 images of the whole split, quantised exactly as the
  project writes PNGs (``data.aligned.quantize_uint8``); every metric sees those images;
* metric plug-ins (:mod:`unetprune.metrics.plugins`: FID, KID, segmentation, paired,
  complexity), each set up once (extractor, cached real statistics, segmenter) and asked
  for its scores per generator.

:class:`Evaluator` ties them together; :meth:`Evaluator.score` then scores any number of
generators (the sensitivity sweep scores dozens of pruned variants of one model)::

    ev = Evaluator(cfg, "test")             # real statistics cached in the experiment's fid_stats/
    for variant in variants:
        result = ev.score(variant)          # dict, JSON-ready

How a generator is run (recorded in every result):

* ``mode``: ``train_bn`` = BatchNorm on the statistics of each batch and dropout active
  (what the pix2pix reference does at test time: its ``--eval`` flag is off by default),
  or ``eval`` = ``model.eval()``.  In ``train_bn`` mode the BatchNorm running statistics
  are restored afterwards, so scoring never changes the model.
* ``seed``: the global ``seed`` of the config; dropout draws from a forked RNG seeded with
  it, so repeated evaluations give identical numbers; KID subsets use it too.
* ``batch_size`` (``evaluate.batch_size``: images per generator call) and ``batch_stats``
  (``evaluate.batch_stats``: in ``train_bn`` mode ``per_image`` gives each image its own
  BatchNorm statistics, the reference's batch-1 behaviour at any batch size; ``batch``
  normalises over the batch), ``amp`` (bf16 autocast of the generator on CUDA, following
  ``train.amp``; never on CPU), device.
* ``quantize`` (``evaluate.quantize``): ``round`` or ``truncate`` (the references' ``tensor2im``),
  applied by :func:`unetprune.data.aligned.quantize_uint8` exactly as ``translate`` writes PNGs.

Every result also carries ``noise`` (the noise level of each quality number: generation
repeats over ``evaluate.noise_seeds`` seeds when generation is stochastic, ``evaluate.bootstrap``
resamples of the test images; :mod:`unetprune.metrics.noise`) and, with
``evaluate.extra_modes``, ``by_mode``: the same image metrics (and their noise) in each other
generator mode, from the same job.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .errors import EvaluationError, UserFacingError  # noqa: F401 (EvaluationError re-exported)
from .provenance import utc_now_iso

# ``cache_dir`` default: the experiment's ``fid_stats/`` folder (from the results layout)
DEFAULT_CACHE_DIR = "experiment"


def to_jsonable(obj):
    """numpy/torch scalars → Python; NaN/inf → None; Paths → str (recursively)."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if torch.is_tensor(obj):
        return to_jsonable(obj.tolist())
    return obj


def versions() -> dict:
    import scipy
    import skimage
    import torch_fidelity

    from .checkpoint import package_versions

    return {
        **package_versions(),
        "torch_fidelity": torch_fidelity.__version__,
        "scipy": scipy.__version__,
        "scikit_image": skimage.__version__,
    }


def resolve_amp(cfg: dict, device: torch.device, amp: bool | None) -> bool:
    if device.type != "cuda":
        return False
    if amp is not None:
        return bool(amp)
    return cfg.get("train", {}).get("amp", "auto") in ("auto", "bf16")


# --------------------------------------------------------------------------------------
# (a) the evaluation set, loaded once
# --------------------------------------------------------------------------------------


@dataclass
class EvalSet:
    """One split as uint8 tensors: generator inputs (N, C, H, W) and real targets (N, 3, H, W)."""

    split: str
    root: Path
    dataset: str  # data.dataset
    direction: str  # data.direction
    image_size: int  # data.crop_size
    files: list[Path]
    inputs: torch.Tensor
    targets: torch.Tensor
    files_sha256: str  # sha256 over (name, content hash) of the files, in order
    quantize: str = "round"  # evaluate.quantize: how outputs become uint8 (data.aligned.quantize_uint8)

    @property
    def n(self) -> int:
        return len(self.files)

    @classmethod
    def load(cls, cfg: dict, split: str, root: Path | str) -> EvalSet:
        """The images of ``split`` under ``root`` as the Evaluator sees them (no crop, no flip:
        resized to ``data.crop_size``), at most ``evaluate.max_images``."""
        from .data.aligned import AlignedDataset
        from .metrics.fid import file_list_hash

        d, root = cfg["data"], Path(root)
        size = int(d["crop_size"])
        ds = AlignedDataset(
            root,
            split,
            d["direction"],
            load_size=max(size, int(d["load_size"])),
            crop_size=size,
            train=False,
            max_items=cfg["evaluate"]["max_images"],
        )
        files = list(ds.files)
        if len(files) < 2:
            raise EvaluationError(
                f"split '{split}' of {root} has {len(files)} image(s); FID needs at least 2 "
                f"(check evaluate.max_images)"
            )
        pairs = [ds.pair_uint8(i) for i in range(len(ds))]
        return cls(
            split=split,
            root=root,
            dataset=d["dataset"],
            direction=d["direction"],
            image_size=size,
            files=files,
            inputs=torch.stack([a for a, _ in pairs]),
            targets=torch.stack([b for _, b in pairs]),
            files_sha256=file_list_hash(files),
            quantize=cfg["evaluate"].get("quantize", "round"),
        )

    def batches(self, batch_size: int, idx=None):
        """The generator's inputs, ``batch_size`` images at a time (all, or the items ``idx`` in
        that order), as float tensors in [-1, 1]."""
        from .data.aligned import from_uint8

        inputs = self.inputs if idx is None else self.inputs[torch.as_tensor(idx, dtype=torch.long)]
        for i in range(0, len(inputs), batch_size):
            yield from_uint8(inputs[i : i + batch_size])

    def display_inputs(self, idx) -> list:
        """The generator inputs of items ``idx`` as (H, W, 3) uint8 images (sample grids)."""
        return [self.inputs[int(i)].permute(1, 2, 0).numpy() for i in idx]

    def quantize_outputs(self, outputs: torch.Tensor) -> torch.Tensor:
        """Generated images in [-1, 1] as the uint8 images every metric sees (and PNGs hold)."""
        from .data.aligned import quantize_uint8

        return quantize_uint8(outputs, self.quantize)


@dataclass
class EvalContext:
    """What metric plug-ins share: the config, the device, the seed, the cache folder, timings."""

    cfg: dict
    device: torch.device
    seed: int
    cache_dir: Path | None  # FID statistics and stand-in weights (None: no statistics cache)
    latency: bool  # measure latency (complexity)
    ort: bool = True  # with latency: also time the generator in ONNX Runtime
    latency_threads: int | None = None  # CPU threads of the latency timings (None: torch's current)
    onnx_file: Path | None = None  # ... this exported file of it (None: export it again)
    metrics: dict = field(default_factory=dict)  # name -> plug-in: the Evaluator's plug-ins
    timing: dict[str, float] = field(default_factory=dict)

    @property
    def ev(self) -> dict:
        """The ``evaluate`` section of the config."""
        return self.cfg["evaluate"]

    @contextmanager
    def timed(self, name: str):
        """Record the wall time of the block as ``timing_s[name]`` (keys in start order)."""
        self.timing[name] = 0.0
        t = time.perf_counter()
        try:
            yield
        finally:
            self.timing[name] = time.perf_counter() - t


# --------------------------------------------------------------------------------------
# The Evaluator: evaluation set + generation loop + metric plug-ins
# --------------------------------------------------------------------------------------


class Evaluator:
    """Holds one split's images and the set-up metric plug-ins; scores generators."""

    def __init__(
        self,
        cfg: dict,
        split: str = "test",
        *,
        cache_dir: Path | str | None = DEFAULT_CACHE_DIR,
        data_root: Path | str | None = None,
        device: str | torch.device | None = None,
        amp: bool | None = None,
        latency: bool = True,
        progress: bool = False,
        metrics: Sequence[str] | None = None,
        ort: bool = True,
        onnx_file: Path | str | None = None,
        latency_threads: int | None = None,
    ):
        from .devices import resolve_device
        from .layout import Layout
        from .metrics.plugins import DEFAULT_METRICS, build_metrics

        t0 = time.perf_counter()
        self.created_at = utc_now_iso()  # the job's start (recorded with every result: MLflow run times)
        ev = cfg["evaluate"]
        self.cfg, self.split = cfg, split
        self.seed = int(cfg.get("seed", 0))
        self.mode = ev["mode"]
        self.batch_size = int(ev["batch_size"])
        self.batch_stats = ev["batch_stats"]  # train_bn: per-image or whole-batch BatchNorm statistics
        self.progress = progress
        self.device = resolve_device(device if device is not None else ev["device"], "evaluate.device")
        self.amp = resolve_amp(cfg, self.device, amp)
        if isinstance(cache_dir, str) and cache_dir == DEFAULT_CACHE_DIR:
            cache_dir = Layout.from_config(cfg).fid_cache
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.root = Path(data_root) if data_root is not None else Layout.from_config(cfg).data_root

        from .family import family_for_config

        family = family_for_config(cfg)
        family.register_metrics()
        self.eval_set = family.eval_set(cfg, split, self.root)
        self.ctx = EvalContext(
            cfg,
            self.device,
            self.seed,
            self.cache_dir,
            latency,
            ort=ort,
            latency_threads=latency_threads,
            onnx_file=Path(onnx_file) if onnx_file is not None else None,
        )
        self.metrics = self.ctx.metrics = build_metrics(
            metrics if metrics is not None else (family.metrics or DEFAULT_METRICS)
        )
        # plug-ins that only check/load user files set up first, so a missing file fails fast
        for plugin in sorted(self.metrics.values(), key=lambda p: p.setup_rank):
            plugin.setup(self.eval_set, self.ctx)
        self.setup_seconds = time.perf_counter() - t0

    # ----------------------------------------------------------------------------------

    def generate(self, generator: torch.nn.Module) -> torch.Tensor:
        """All generated images of the split as uint8 (N, 3, H, W) on the evaluation device."""
        from .translate import generate_batches

        es, bs = self.eval_set, self.batch_size
        g = generator.to(self.device)
        batches = es.batches(bs)
        outs: list[torch.Tensor] = []
        with closing(
            generate_batches(
                g,
                batches,
                self.mode,
                self.seed,
                device=self.device,
                amp=self.amp,
                per_image_stats=self.batch_stats == "per_image",
            )
        ) as ys:
            for y in ys:
                if not outs and tuple(y.shape[-2:]) != tuple(es.targets.shape[-2:]):
                    raise EvaluationError(
                        f"generated images are {y.shape[-1]}x{y.shape[-2]} but the real images are "
                        f"{es.image_size}x{es.image_size} (data.crop_size): mismatched image sizes"
                    )
                outs.append(es.quantize_outputs(y))
        return torch.cat(outs)

    def score(
        self,
        generator: torch.nn.Module,
        checkpoint: str | Path | None = None,
        *,
        noise_seeds: int | None = None,
        bootstrap: int | None = None,
    ) -> dict:
        """Every metric of ``generator`` on this split, as a JSON-ready dict.

        Besides the metrics of one generation (mode ``evaluate.mode``, seed ``seed``): ``noise``,
        the noise level of every quality number (:mod:`unetprune.metrics.noise`; generation
        repeats over ``noise_seeds`` seeds when generation is stochastic, ``bootstrap`` resamples
        of the test images; both default to ``evaluate.noise_seeds`` / ``evaluate.bootstrap``,
        e.g. ``noise_seeds=1`` keeps only the cheap bootstrap), and ``by_mode``: the same metrics
        (and their noise) in every mode of ``evaluate.extra_modes``."""
        es, ctx = self.eval_set, self.ctx
        ev = self.cfg["evaluate"]
        n_seeds = int(ev.get("noise_seeds", 1) if noise_seeds is None else noise_seeds)
        n_boot = int(ev.get("bootstrap", 0) if bootstrap is None else bootstrap)
        ctx.timing = {"setup": self.setup_seconds}
        with ctx.timed("generate"):
            fakes = self.generate(generator)
        result = {
            "split": self.split,
            "n_images": es.n,
            "image_size": es.image_size,
            "mode": self.mode,
            "seed": self.seed,
            "quantize": getattr(es, "quantize", "round"),
            "batch_size": self.batch_size,
            "batch_stats": self.batch_stats,
            "amp": "bf16" if self.amp else "off",
            "device": str(self.device),
            "dataset": {
                "name": es.dataset,
                "root": str(es.root),
                "direction": es.direction,
                "files_sha256": es.files_sha256,
            },
        }
        for name, plugin in self.metrics.items():
            with ctx.timed(name):
                result.update(plugin.score(fakes, generator))
        with ctx.timed("noise"):
            result["noise"] = self._noise(generator, fakes, result, self.mode, n_seeds, n_boot)
        extra = [m for m in dict.fromkeys(ev.get("extra_modes") or []) if m != self.mode]
        if extra:
            with ctx.timed("by_mode"):
                result["by_mode"] = {m: self._score_mode(generator, m, n_seeds, n_boot) for m in extra}
        result.update(
            {
                "checkpoint": str(checkpoint) if checkpoint is not None else None,
                "versions": versions(),
                "timing_s": ctx.timing,
                "started_at": self.created_at,
                "finished_at": utc_now_iso(),
            }
        )
        return to_jsonable(result)

    # --- repeat generations: noise levels and other modes ----------------------------------

    @contextmanager
    def _generation(self, mode: str, seed: int):
        """Inside the block, :meth:`generate` runs in ``mode`` with generation seed ``seed``."""
        saved = self.mode, self.seed
        self.mode, self.seed = mode, int(seed)
        try:
            yield
        finally:
            self.mode, self.seed = saved

    def _rescore(self, fakes: torch.Tensor, generator: torch.nn.Module) -> dict:
        """The numbers of the plug-ins that depend on the images, for repeat generations."""
        out: dict = {}
        for plugin in self.metrics.values():
            if getattr(plugin, "images_dependent", True):
                out.update(plugin.score(fakes, generator))
        return out

    def _noise(
        self,
        generator: torch.nn.Module,
        fakes: torch.Tensor,
        first: dict,
        mode: str,
        n_seeds: int,
        n_boot: int,
    ) -> dict:
        """The ``noise`` block of the images ``fakes`` (generated in ``mode`` with the config seed)
        whose metrics are ``first``: bootstrap of those images, then repeats over seeds."""
        from .metrics.noise import (
            clip_replicates,
            generation_is_stochastic,
            noise_block,
            openness_replicates,
            resample_counts,
        )

        stochastic = generation_is_stochastic(generator, mode)
        replicates: dict = {}
        if n_boot >= 2:
            counts = resample_counts(len(fakes), n_boot, self.seed)
            for plugin in self.metrics.values():
                replicates.update(plugin.bootstrap(fakes, counts))
            replicates.update(clip_replicates(first.get("lse"), n_boot, self.seed))
            replicates.update(openness_replicates(first.get("openness"), n_boot, self.seed))
        scaling = self._noise_scaling(fakes, first, n_boot, replicates) if n_boot >= 2 else {}
        base = self.seed
        seeds = [base + i for i in range(max(1, n_seeds))] if stochastic else [base]
        runs = [first]
        for s in seeds[1:]:
            with self._generation(mode, s):
                again = self.generate(generator)
            runs.append(self._rescore(again, generator))
        block = noise_block(seeds, n_boot, runs, replicates, stochastic)
        if scaling:
            block["scaling"] = scaling
        return block

    def _noise_scaling(self, fakes: torch.Tensor, first: dict, n_boot: int, replicates: dict) -> dict:
        """How each metric's test-set noise scales with the number of images (clips for LSE):
        :mod:`unetprune.metrics.scaling`."""
        from .metrics.scaling import measure_scaling

        clip_keys = ("lse_d", "lse_c")
        images = {k: v for k, v in replicates.items() if k not in (*clip_keys, "openness")}

        def by_images(counts):
            out: dict = {}
            for plugin in self.metrics.values():
                out.update(plugin.bootstrap(fakes, counts))
            return {k: v for k, v in out.items() if k in images}

        scaling = measure_scaling(len(fakes), n_boot, self.seed, by_images, images)
        clips = (first.get("lse") or {}).get("clips") if isinstance(first.get("lse"), dict) else None
        by_clip = {k: v for k, v in replicates.items() if k in clip_keys}
        if clips and by_clip:
            from .metrics.noise import mean_replicates

            def clip_fn(counts):
                return {k: mean_replicates([c.get(k) for c in clips], counts) for k in by_clip}

            scaling.update(measure_scaling(len(clips), n_boot, self.seed, clip_fn, by_clip))
        return scaling

    def _score_mode(self, generator: torch.nn.Module, mode: str, n_seeds: int, n_boot: int) -> dict:
        """The image metrics (and their noise) of ``generator`` generated in another ``mode``."""
        with self._generation(mode, self.seed):
            fakes = self.generate(generator)
        sub = {"mode": mode, "seed": self.seed, **self._rescore(fakes, generator)}
        sub["noise"] = self._noise(generator, fakes, sub, mode, n_seeds, n_boot)
        return sub


def config_for_checkpoint(ckpt: dict, cfg: dict | str | Path | None, overrides: list[str] | None) -> dict:
    """The config to evaluate with: ``cfg`` (a dict or YAML path) or the checkpoint's own, plus overrides."""
    from .config import ConfigError, deep_merge, load_config, parse_overrides, validate

    if isinstance(cfg, dict):
        base = cfg
        return validate(deep_merge(base, parse_overrides(overrides))) if overrides else base
    if cfg is not None:
        return load_config(cfg, overrides)
    embedded = ckpt.get("config") or {}
    if not embedded:
        raise ConfigError("the checkpoint carries no config; pass --config")
    return validate(deep_merge(embedded, parse_overrides(overrides)))


def evaluate_checkpoint(
    path: str | Path,
    cfg: dict | str | Path | None = None,
    split: str = "test",
    out: str | Path | None = None,
    *,
    overrides: list[str] | None = None,
    cache_dir: Path | str | None = DEFAULT_CACHE_DIR,
    data_root: Path | str | None = None,
    latency: bool = True,
    sanity: bool = False,
    ort: bool = True,
    onnx_file: Path | str | None = None,
    latency_threads: int | None = None,
) -> dict:
    """Score the generator of checkpoint ``path``; write the JSON to ``out`` if given.  With
    ``sanity``, the result also carries the scores of the family's trivial generators (the
    ``sanity`` block of :mod:`unetprune.sanity`).  ``ort``: with ``latency``, also time the
    generator in ONNX Runtime - ``onnx_file`` (its ``unetprune export``) where given, else a
    fresh export; ``latency_threads``: the CPU threads of both timings (default: torch's current
    setting, which also runs the scoring)."""
    from .fileio import atomic_write_text
    from .checkpoint import generator_from_checkpoint, load_checkpoint

    ckpt = load_checkpoint(path)
    cfg = config_for_checkpoint(ckpt, cfg, overrides)
    generator = generator_from_checkpoint(ckpt)
    evaluator = Evaluator(
        cfg,
        split,
        cache_dir=cache_dir,
        data_root=data_root,
        latency=latency,
        ort=ort,
        onnx_file=onnx_file,
        latency_threads=latency_threads,
    )
    result = evaluator.score(generator, checkpoint=path)
    if sanity:
        from .sanity import score_trivial

        result["sanity"] = score_trivial(evaluator, cfg, generator)
    result["experiment"] = cfg.get("experiment")
    if out is not None:
        atomic_write_text(out, json.dumps(result, indent=2, allow_nan=False) + "\n")
    return result
