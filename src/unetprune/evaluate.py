"""Score a generator on one split: FID/KID, segmentation mIoU, L1/PSNR/SSIM, params/MACs.

:class:`Evaluator` loads the split, the FID extractor, the cached real-image statistics
and the segmenter **once**; :meth:`Evaluator.score` then scores any number of generators
(the sensitivity sweep scores dozens of pruned variants of one model)::

    ev = Evaluator(cfg, "test", cache_dir="results/fid_stats")
    for variant in variants:
        result = ev.score(variant)          # dict, JSON-ready

How a generator is run (recorded in every result):

* ``mode``: ``train_bn`` = BatchNorm on the statistics of each batch and dropout active
  (what the pix2pix reference does at test time: its ``--eval`` flag is off by default),
  or ``eval`` = ``model.eval()``.  In ``train_bn`` mode the BatchNorm running statistics
  are restored afterwards, so scoring never changes the model.
* ``seed``: the global ``seed`` of the config; dropout draws from a forked RNG seeded with
  it, so repeated evaluations give identical numbers; KID subsets use it too.
* ``batch_size`` (``evaluate.batch_size``; 1 reproduces the reference's per-image
  BatchNorm statistics), ``amp`` (bf16 autocast of the generator on CUDA, following
  ``train.amp``; never on CPU), device.

Generated images are quantised to uint8 exactly as the project writes PNGs
(``data.aligned.to_uint8``), and every metric is computed from those uint8 images.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from .errors import UserFacingError

# ``cache_dir`` default: the experiment's ``fid_stats/`` folder (from the results layout)
DEFAULT_CACHE_DIR = "experiment"


class EvaluationError(UserFacingError):
    """Evaluation cannot run as configured; the message names the key or file."""


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

    return {**package_versions(), "torch_fidelity": torch_fidelity.__version__, "scipy": scipy.__version__,
            "scikit_image": skimage.__version__}


def _to_uint8_from_unit(x: torch.Tensor) -> torch.Tensor:
    """Invert ``data.aligned.to_tensor`` exactly (x = u8 / 127.5 - 1)."""
    return ((x + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)


def _from_uint8(u8: torch.Tensor) -> torch.Tensor:
    """Exactly ``data.aligned.to_tensor`` on a batch: u8 / 127.5 - 1 (float32)."""
    return u8.float().div_(127.5).sub_(1.0)


def resolve_segmentation(cfg: dict) -> str:
    seg = cfg["evaluate"]["segmentation"]
    if seg != "auto":
        return seg
    d = cfg["data"]
    if d["dataset"] == "demo":
        return "demo" if d["direction"] == "AtoB" else "none"
    if d["dataset"] == "cityscapes":
        return "cityscapes"
    return "none"


def resolve_amp(cfg: dict, device: torch.device, amp: bool | None) -> bool:
    if device.type != "cuda":
        return False
    if amp is not None:
        return bool(amp)
    return cfg.get("train", {}).get("amp", "auto") in ("auto", "bf16")


class Evaluator:
    """Holds one split's images, the FID extractor, real statistics and the segmenter."""

    def __init__(self, cfg: dict, split: str = "test", *, cache_dir: Path | str | None = DEFAULT_CACHE_DIR,
                 data_root: Path | str | None = None, device: str | torch.device | None = None,
                 amp: bool | None = None, latency: bool = True, progress: bool = False):
        from .layout import Layout
        from .data.aligned import AlignedDataset
        from .metrics import fid as fidm

        t0 = time.perf_counter()
        self.cfg, self.split = cfg, split
        ev, d = cfg["evaluate"], cfg["data"]
        self.ev = ev
        self.seed = int(cfg.get("seed", 0))
        self.mode = ev["mode"]
        self.batch_size = int(ev["batch_size"])
        self.feature_batch_size = int(ev["feature_batch_size"])
        self.latency = latency
        self.progress = progress
        self.device = fidm.resolve_device(device if device is not None else ev["device"])
        self.amp = resolve_amp(cfg, self.device, amp)
        if isinstance(cache_dir, str) and cache_dir == DEFAULT_CACHE_DIR:
            cache_dir = Layout.from_config(cfg).fid_cache
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.root = Path(data_root) if data_root is not None else Layout.from_config(cfg).data_root
        self.direction = d["direction"]
        self.dataset_name = d["dataset"]
        size = int(d["crop_size"])
        ds = AlignedDataset(self.root, split, self.direction, load_size=max(size, int(d["load_size"])),
                            crop_size=size, train=False, max_items=ev["max_images"])
        self.files = list(ds.files)
        inputs, targets = [], []
        for i in range(len(ds)):
            item = ds[i]
            inputs.append(_to_uint8_from_unit(item["A"]))
            targets.append(_to_uint8_from_unit(item["B"]))
        self.inputs = torch.stack(inputs)      # (N, C, H, W) uint8: generator inputs
        self.targets = torch.stack(targets)    # (N, 3, H, W) uint8: real images
        self.image_size = size
        self.n = len(self.files)
        if self.n < 2:
            raise EvaluationError(f"split '{split}' of {self.root} has {self.n} image(s); FID needs at least 2 "
                                  f"(check evaluate.max_images)")

        # segmentation scorer
        self.segmentation = resolve_segmentation(cfg)
        self.drn = None
        self.labels: list[np.ndarray] | None = None
        self.label_source = None
        if self.segmentation == "cityscapes":
            from .metrics.segmentation import (
                colour_to_train_ids,
                expected_label_file,
                find_label_file,
                load_drn,
                read_train_ids,
            )

            self.drn = load_drn(ev["drn_weights"], self.device)
            found = [find_label_file(self.root, split, f) for f in self.files]
            if all(p is not None for p in found):
                self.labels = [read_train_ids(p) for p in found]
                self.label_source = "gtFine trainIds (full resolution)"
            elif any(p is not None for p in found):
                missing = self.files[[p is None for p in found].index(True)]
                raise EvaluationError(f"no full-resolution label map for {missing}: expected "
                                      f"{expected_label_file(self.root, split, missing)}")
            else:
                self.labels = [colour_to_train_ids(x) for x in self.inputs]
                self.label_source = "input colour label maps (nearest Cityscapes colour, generated size)"
        elif self.segmentation == "demo":
            self.n_classes = int(cfg["demo"]["n_classes"])

        # FID extractor (after the segmenter, so a missing DRN file fails fast) + real statistics (cached on disk)
        self.extractor = fidm.get_extractor(ev["fid_backend"], ev["inception_weights"], ev["standin_seed"],
                                            self.device, cache_dir=self.cache_dir or Path.home() / ".cache/unetprune")
        self.real, self.real_info = fidm.real_stats(
            self.targets, self.extractor, dataset=self.dataset_name, split=split, direction=self.direction,
            image_size=size, files=self.files, cache_dir=self.cache_dir, batch_size=self.feature_batch_size)

        self.setup_seconds = time.perf_counter() - t0

    # ----------------------------------------------------------------------------------

    @torch.no_grad()
    def generate(self, generator: torch.nn.Module) -> torch.Tensor:
        """All generated images of the split as uint8 (N, 3, H, W) on the evaluation device."""
        from .metrics.fid import quantize_uint8

        from .translate import generation_mode

        g = generator.to(self.device)
        outs = []
        with generation_mode(g, self.mode, self.seed):
            for i in range(0, self.n, self.batch_size):
                x = _from_uint8(self.inputs[i:i + self.batch_size]).to(self.device, non_blocking=True)
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
                    y = g(x)
                if i == 0 and tuple(y.shape[-2:]) != tuple(self.targets.shape[-2:]):
                    raise EvaluationError(
                        f"generated images are {y.shape[-1]}x{y.shape[-2]} but the real images are "
                        f"{self.image_size}x{self.image_size} (data.crop_size): mismatched image sizes")
                outs.append(quantize_uint8(y))
        return torch.cat(outs)

    def score(self, generator: torch.nn.Module, checkpoint: str | Path | None = None) -> dict:
        """Every metric of ``generator`` on this split, as a JSON-ready dict."""
        from .metrics import fid as fidm
        from .metrics.paired import PAIRED_DEFINITIONS, PairedAccumulator

        timing: dict[str, float] = {"setup": self.setup_seconds}
        t = time.perf_counter()
        fakes = self.generate(generator)
        timing["generate"] = time.perf_counter() - t

        t = time.perf_counter()
        feats = fidm.features_from_uint8(fakes, self.extractor, self.feature_batch_size)
        fake_stats = fidm.FeatureStats.from_features(feats)
        fid_value = fidm.fid_from_stats(fake_stats, self.real)
        timing["fid"] = time.perf_counter() - t
        fid = {"value": fid_value, "backend": self.extractor.backend, "extractor": self.extractor.describe(),
               "n_images": self.n, "image_size": self.image_size, "split": self.split,
               "dataset": self.dataset_name, "real_stats": {k: self.real_info[k] for k in
                                                              ("key", "cache", "cache_hit", "files_sha256")}}
        kid = None
        if self.ev["kid"]:
            t = time.perf_counter()
            kid = fidm.kid_from_features(feats, self.real.features, seed=self.seed)
            kid["backend"] = self.extractor.backend
            timing["kid"] = time.perf_counter() - t

        t = time.perf_counter()
        seg = None
        if self.segmentation == "demo":
            from .metrics.segmentation import demo_miou

            seg = demo_miou(fakes.cpu(), self.inputs, self.n_classes)
        elif self.segmentation == "cityscapes":
            from .metrics.segmentation import CityscapesScorer

            scorer = CityscapesScorer(self.drn, self.device)
            for i in range(self.n):
                scorer.update(fakes[i:i + 1], [self.labels[i]])
            seg = scorer.result(self.label_source)
        timing["segmentation"] = time.perf_counter() - t

        t = time.perf_counter()
        paired = PairedAccumulator()
        for i in range(0, self.n, 64):
            paired.update(fakes[i:i + 64], self.targets[i:i + 64])
        pm = paired.result()
        timing["paired"] = time.perf_counter() - t

        t = time.perf_counter()
        from .metrics.complexity import complexity_report

        in_shape = (1, int(self.inputs.shape[1]), self.image_size, self.image_size)
        complexity = complexity_report(generator, in_shape, latency=self.latency)
        timing["complexity"] = time.perf_counter() - t

        result = {
            "split": self.split, "n_images": self.n, "image_size": self.image_size,
            "mode": self.mode, "seed": self.seed, "batch_size": self.batch_size,
            "amp": "bf16" if self.amp else "off", "device": str(self.device),
            "dataset": {"name": self.dataset_name, "root": str(self.root), "direction": self.direction,
                        "files_sha256": self.real_info["files_sha256"]},
            "fid": fid, "kid": kid, "segmentation": seg,
            "l1": pm["l1"], "psnr": pm["psnr"], "ssim": pm["ssim"], "paired_definitions": PAIRED_DEFINITIONS,
            "complexity": complexity,
            "checkpoint": str(checkpoint) if checkpoint is not None else None,
            "versions": versions(), "timing_s": timing,
        }
        return to_jsonable(result)


def evaluate_generator(generator: torch.nn.Module, cfg: dict, split: str = "test", *,
                       cache_dir: Path | str | None = DEFAULT_CACHE_DIR, data_root: Path | str | None = None,
                       device: str | None = None, latency: bool = True) -> dict:
    """One-shot convenience: build an :class:`Evaluator` and score ``generator``."""
    return Evaluator(cfg, split, cache_dir=cache_dir, data_root=data_root, device=device,
                     latency=latency).score(generator)


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


def evaluate_checkpoint(path: str | Path, cfg: dict | str | Path | None = None, split: str = "test",
                        out: str | Path | None = None, *, overrides: list[str] | None = None,
                        cache_dir: Path | str | None = DEFAULT_CACHE_DIR, data_root: Path | str | None = None,
                        latency: bool = True) -> dict:
    """Score the generator of checkpoint ``path``; write the JSON to ``out`` if given."""
    from .checkpoint import atomic_write_text, generator_from_checkpoint, load_checkpoint

    ckpt = load_checkpoint(path)
    cfg = config_for_checkpoint(ckpt, cfg, overrides)
    generator = generator_from_checkpoint(ckpt)
    result = Evaluator(cfg, split, cache_dir=cache_dir, data_root=data_root, latency=latency).score(
        generator, checkpoint=path)
    result["experiment"] = cfg.get("experiment")
    if out is not None:
        atomic_write_text(out, json.dumps(result, indent=2, allow_nan=False) + "\n")
    return result
