"""FID and KID through torch-fidelity's feature extractors, with a fast in-memory path.

Backends (``evaluate.fid_backend``)
-----------------------------------
* ``inception-v3-compat`` — torch-fidelity's port of the TF-slim Inception-v3 of the
  original FID paper (2048-d pool features of images resized to 299x299).  Weights come
  from torch-fidelity's own download (``torch.hub`` cache) or from a local file
  (``evaluate.inception_weights``: ``weights-inception-2015-12-05-6726825d.pth``).
* ``pytorch-fid-compat`` — the *same* network and weights with pytorch-fid's preprocessing
  (mseitzer/pytorch-fid ``InceptionV3``, which GAN Compression, OMGD and Wav2Lip's evaluation
  use): uint8 pixels ``/ 255`` (``ToTensor``), ``F.interpolate(..., (299, 299), "bilinear",
  align_corners=False)``, then ``2x - 1``.  torch-fidelity resizes TF1-style on the 0..255
  values and scales ``(x - 128) / 128``, so the network inputs differ slightly (0.02 on average
  on a 256 px image) and so do FIDs; this backend sets numbers beside those papers'.  The
  weights file is the one of ``inception-v3-compat`` (pytorch-fid's
  ``pt_inception-2015-12-05-6726825d.pth`` has the same key layout and loads too).
* ``standin`` — for machines that cannot get those weights.  The *same* Inception-v3
  architecture, registered with torch-fidelity as :data:`STANDIN_NAME`, but
  (a) re-initialised deterministically from ``evaluate.standin_seed`` (Kaiming-normal
  convolutions, identity BatchNorm; the default PyTorch init makes the features collapse
  and FID ~ 0), and (b) fed :data:`STANDIN_INPUT_SIZE` (96) pixel inputs instead of 299,
  which makes it ~15x cheaper on a CPU (a 64x64 demo image is upsampled either way).
  Its weights are written once to a local file (``standin-inception-v3-s96-seed<N>.pt``
  in the cache folder) and loaded by the same extractor class on the folder path and the
  fast path, so both use the very same network.

Weight files are never unpickled: torch-fidelity's own extractors ``torch.load`` a weights
path with ``weights_only=False`` (a crafted file would run code), so both backends use
subclasses registered here (:func:`_safe_extractor_cls`) that read every weights file, the
download included, with ``weights_only=True`` (:func:`load_weights_file`, through
:func:`unetprune.weights.load_weights`) and refuse
anything that is not a plain state dict of the network with a one-line :class:`FIDError`.  Its values are only
  comparable with other values of the same backend and seed: every result carries the
  backend, and :func:`check_same_backend` refuses to mix them.

Fast path
---------
The Evaluator hands the generated images to the extractor in memory, quantised to uint8
exactly as a saved PNG would hold them (``data.aligned.quantize_uint8``), batched
(:func:`features_from_uint8`); real-image features are computed once per (dataset, split,
direction, size, count, file-list hash, backend) and cached as ``.pt`` (:func:`real_stats`).
:func:`fidelity_folder_metrics` is torch-fidelity's own computation on PNG folders with the
same extractor: the reference the fast path is tested and benchmarked against.  Means and covariances are float64;
the trace term ``tr sqrt(S1 S2)`` is computed exactly as the nuclear norm of a factor
product (``S = F^T F``), which equals torch-fidelity's ``sum(sqrt(eigvals(S1 @ S2)))``
without a 2048x2048 non-symmetric eigen-decomposition (milliseconds instead of seconds).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..fileio import atomic_torch_save, atomic_write_text
from ..fileio import sha256_file as file_sha256
from ..devices import resolve_device
from ..errors import UserFacingError
from ..weights import WeightsFileError, load_weights, shape_mismatch

BACKENDS = ("inception-v3-compat", "pytorch-fid-compat", "standin")
INCEPTION_BACKENDS = ("inception-v3-compat", "pytorch-fid-compat")  # the real 2015-12-05 FID weights
PYTORCH_FID_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
STANDIN_NAME = "unetprune-standin-inception-v3"
STANDIN_INPUT_SIZE = 96
FEATURE_LAYER = "2048"
INCEPTION_WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"
STATS_FORMAT_VERSION = 2  # 2: torch file (.pt) instead of .npz


class FIDError(UserFacingError):
    """FID cannot be computed as configured (missing weights, mixed backends, bad images)."""


# --------------------------------------------------------------------------------------
# Feature extractors
# --------------------------------------------------------------------------------------


def _inception_cls():
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    return FeatureExtractorInceptionV3


SAFE_INCEPTION_NAME = "unetprune-inception-v3-compat"  # inception-v3-compat, weights read safely
PYTORCH_FID_NAME = "unetprune-inception-v3-pytorch-fid"  # same network, pytorch-fid's preprocessing
PYTORCH_FID_PREPROCESSING = (
    "pytorch-fid: uint8/255, F.interpolate bilinear to 299x299 (align_corners=False), 2x-1; float32"
)
TORCH_FIDELITY_PREPROCESSING = (
    "torch-fidelity: TF1-style bilinear resize of the 0..255 values to 299x299, (x-128)/128; float32"
)


def load_weights_file(path: Path | str, key: str = "evaluate.inception_weights") -> dict[str, torch.Tensor]:
    """The state dict in the weights file ``path``, read with ``torch.load(weights_only=True)``:
    a pickle that would build other objects (run code) is refused with a one-line FIDError."""
    return load_weights(
        path,
        error=FIDError,
        missing=None,
        unreadable=f"refusing the FID weights file {{path}} ({key}): not a plain tensor state "
        f"dict readable with weights_only=True ({{kind}}: {{first}})",
        not_state_dict=f"refusing the FID weights file {{path}} ({key}): it does not hold a "
        f"state dict of tensors",
    )


def _inception_mismatch(own: dict, state: dict) -> str | None:
    """Why ``state`` does not fit the Inception-v3 state dict ``own`` (keys and shapes; missing
    BatchNorm ``num_batches_tracked`` counters are fine), or None when it fits."""
    parts = shape_mismatch(
        {k: tuple(v.shape) for k, v in own.items()},
        {k: tuple(v.shape) for k, v in state.items()},
        optional=lambda k: k.endswith("num_batches_tracked"),
    )
    if not parts:
        return None
    fc = state.get("fc.weight")
    if any(k.startswith("AuxLogits.") for k in state) or (torch.is_tensor(fc) and fc.shape[0] == 1000):
        parts.append(
            "it looks like torchvision's ImageNet Inception-v3 (1000 classes, AuxLogits), "
            "a different network from the 2015-12-05 FID Inception (1008 classes)"
        )
    return "; ".join(parts)


def _load_into(module: torch.nn.Module, state: dict, path: Path | str | None, key: str) -> None:
    where = f"the FID weights file {path}" if path is not None else "torch-fidelity's Inception download"
    own = torch.nn.Module.state_dict(module)
    why = _inception_mismatch(own, state)
    if why is not None:
        raise FIDError(
            f"{where} ({key}) is not the 2015-12-05 FID Inception-v3 (expected {len(own)} tensors, "
            f"1008-class fc: torch-fidelity's {INCEPTION_WEIGHTS_FILE} or pytorch-fid's "
            f"{PYTORCH_FID_WEIGHTS_FILE}): {why}"
        )
    state = dict(state)
    for k, v in own.items():  # files saved before BatchNorm counted batches lack these (unused at eval)
        if k.endswith("num_batches_tracked") and k not in state:
            state[k] = torch.zeros_like(v)
    try:
        torch.nn.Module.load_state_dict(module, state, strict=True)
    except RuntimeError as e:
        first = (str(e).strip().splitlines() or ["mismatch"])[0]
        raise FIDError(f"{where} ({key}) does not fit the Inception-v3 network: {first}") from e


def _safe_extractor_cls(name: str, input_size: int, require_path: bool) -> type:
    """An Inception-v3 extractor class registered with torch-fidelity as ``name`` that reads its
    weights itself (``weights_only=True``), never through torch-fidelity's ``torch.load``."""
    import io

    import torch_fidelity
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    if name in FEATURE_EXTRACTORS_REGISTRY:
        return FEATURE_EXTRACTORS_REGISTRY[name]
    base = _inception_cls()

    class SafeInceptionV3(base):
        INPUT_IMAGE_SIZE = input_size

        def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
            key = "evaluate.standin_seed" if require_path else "evaluate.inception_weights"
            path = feature_extractor_weights_path
            if path is None and require_path:
                raise ValueError(
                    f"{name} needs feature_extractor_weights_path: create the file "
                    f"with unetprune.metrics.fid.standin_weights(seed, folder)"
                )
            if path is None:
                from torch.hub import load_state_dict_from_url

                try:
                    state = load_state_dict_from_url(_inception_url(), progress=False, weights_only=True)
                except FIDError:
                    raise
                except pickle.UnpicklingError as e:
                    raise FIDError(
                        f"refusing torch-fidelity's cached Inception download (torch hub cache): "
                        f"not a plain state dict ({str(e).strip().splitlines()[0]})"
                    ) from e
            else:
                state = load_weights_file(path, key)
            empty = io.BytesIO()  # torch-fidelity's own load reads this empty dict, nothing else
            torch.save({}, empty)
            empty.seek(0)
            self._unetprune_skip_load = True
            super().__init__(name, features_list, feature_extractor_weights_path=empty, **kwargs)
            self._unetprune_skip_load = False
            _load_into(self, state, path, key)

        def load_state_dict(self, state_dict, strict=True, assign=False):
            if getattr(self, "_unetprune_skip_load", False):
                return None
            return super().load_state_dict(state_dict, strict=strict, assign=assign)

    torch_fidelity.register_feature_extractor(name, SafeInceptionV3)
    return SafeInceptionV3


def _inception_url() -> str:
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    return URL_INCEPTION_V3


def _register_inception() -> type:
    """torch-fidelity's inception-v3-compat network whose weights are read with weights_only=True."""
    return _safe_extractor_cls(SAFE_INCEPTION_NAME, _inception_cls().INPUT_IMAGE_SIZE, require_path=False)


def _register_standin() -> type:
    """Define and register the stand-in extractor class with torch-fidelity (once)."""
    return _safe_extractor_cls(STANDIN_NAME, STANDIN_INPUT_SIZE, require_path=True)


#: the 2048-d trunk of the FID Inception-v3 in forward order (the modules of torch-fidelity's
#: FeatureExtractorInceptionV3; pytorch-fid's InceptionV3 blocks 0-3 run the same layers)
INCEPTION_TRUNK = (
    "Conv2d_1a_3x3",
    "Conv2d_2a_3x3",
    "Conv2d_2b_3x3",
    "MaxPool_1",
    "Conv2d_3b_1x1",
    "Conv2d_4a_3x3",
    "MaxPool_2",
    "Mixed_5b",
    "Mixed_5c",
    "Mixed_5d",
    "Mixed_6a",
    "Mixed_6b",
    "Mixed_6c",
    "Mixed_6d",
    "Mixed_6e",
    "Mixed_7a",
    "Mixed_7b",
    "Mixed_7c",
    "AvgPool",
)


def pytorch_fid_preprocess(x: torch.Tensor, size: int = 299) -> torch.Tensor:
    """pytorch-fid's network input from uint8 images (N, 3, H, W): ``ToTensor``'s ``x / 255`` in
    float32, ``F.interpolate`` bilinear to ``size`` x ``size`` with ``align_corners=False``, ``2x - 1``."""
    import torch.nn.functional as nnf

    x = x.to(torch.float32) / 255.0
    x = nnf.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return 2 * x - 1


def _register_pytorch_fid() -> type:
    """The inception-v3-compat network (weights read safely) with pytorch-fid's preprocessing."""
    import torch_fidelity
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    if PYTORCH_FID_NAME in FEATURE_EXTRACTORS_REGISTRY:
        return FEATURE_EXTRACTORS_REGISTRY[PYTORCH_FID_NAME]
    base = _register_inception()

    class PytorchFidInceptionV3(base):
        def forward(self, x):
            if not (torch.is_tensor(x) and x.dtype == torch.uint8 and x.dim() == 4 and x.shape[1] == 3):
                raise FIDError(
                    f"the pytorch-fid-compat extractor expects uint8 images (N, 3, H, W), got "
                    f"{tuple(x.shape) if torch.is_tensor(x) else type(x).__name__}"
                )
            unsupported = [f for f in self.features_list if f != FEATURE_LAYER]
            if unsupported:
                raise FIDError(
                    f"the pytorch-fid-compat extractor gives only the {FEATURE_LAYER}-d pool features, "
                    f"not {unsupported}"
                )
            x = pytorch_fid_preprocess(x, self.INPUT_IMAGE_SIZE)
            for name in INCEPTION_TRUNK:
                x = getattr(self, name)(x)
            return (torch.flatten(x, 1).to(torch.float32),) * len(self.features_list)

    torch_fidelity.register_feature_extractor(PYTORCH_FID_NAME, PytorchFidInceptionV3)
    return PytorchFidInceptionV3


def _register_backend(backend: str) -> type:
    return {
        "inception-v3-compat": _register_inception,
        "pytorch-fid-compat": _register_pytorch_fid,
        "standin": _register_standin,
    }[backend]()


def _random_inception_state(seed: int) -> dict[str, torch.Tensor]:
    """A Kaiming-initialised Inception-v3 state dict, a pure function of ``seed``."""
    import io

    from torch import nn

    base = _inception_cls()

    class _Unloaded(base):  # build the modules without loading any weights
        def load_state_dict(self, state_dict, strict=True, assign=False):
            return None

    empty = io.BytesIO()
    torch.save({}, empty)
    empty.seek(0)
    net = _Unloaded(STANDIN_NAME, [FEATURE_LAYER], feature_extractor_weights_path=empty)
    g = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for _, m in net.named_modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu", generator=g)
            elif isinstance(m, nn.BatchNorm2d):
                m.reset_parameters()  # weight 1, bias 0, running mean 0 / var 1: ~identity
            elif isinstance(m, nn.Linear):
                m.weight.normal_(0.0, 1.0 / m.in_features**0.5, generator=g)
                m.bias.zero_()
    return {k: v.detach().clone().contiguous() for k, v in net.state_dict().items()}


def standin_weights(seed: int, folder: Path | str) -> Path:
    """Path of the stand-in extractor's weight file for ``seed``, created if missing."""
    folder = Path(folder)
    path = folder / f"standin-inception-v3-s{STANDIN_INPUT_SIZE}-seed{int(seed)}.pt"
    if not path.is_file():
        # saved through a file object, so the archive name is fixed: same seed, same bytes
        atomic_torch_save(_random_inception_state(seed), path)
    return path


@dataclass
class Extractor:
    """A torch-fidelity feature extractor plus the facts that identify it in results."""

    backend: str  # "inception-v3-compat" | "standin"
    fidelity_name: str  # name registered with torch-fidelity
    module: torch.nn.Module
    weights_path: str | None  # weights file, read with weights_only=True (None = download)
    device: torch.device
    info: dict = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Short identity used in cache keys: backend + weights."""
        return f"{self.backend}-{self.info.get('weights_sha256', 'download')[:12]}"

    def describe(self) -> dict:
        return {
            "backend": self.backend,
            "torch_fidelity_extractor": self.fidelity_name,
            "feature_layer": FEATURE_LAYER,
            **self.info,
        }

    def fidelity_kwargs(self) -> dict:
        """kwargs that make ``torch_fidelity.calculate_metrics`` use this very extractor."""
        kw = {
            "feature_extractor": self.fidelity_name,
            "feature_layer_fid": FEATURE_LAYER,
            "feature_layer_kid": FEATURE_LAYER,
        }
        if self.weights_path is not None:
            kw["feature_extractor_weights_path"] = self.weights_path
        return kw


def get_extractor(
    backend: str = "inception-v3-compat",
    weights: str | Path | None = None,
    seed: int = 0,
    device: str | torch.device | None = "cpu",
    cache_dir: Path | str | None = None,
) -> Extractor:
    """Build the FID feature extractor of ``backend`` on ``device``.

    ``inception-v3-compat``: ``weights`` = local file of torch-fidelity's Inception weights,
    or None to use torch-fidelity's download (fails offline with a message saying which
    config key to set).  ``standin``: seeded random weights, written to ``cache_dir``
    (default ``~/.cache/unetprune``) unless ``weights`` names an existing stand-in file.
    """
    dev = resolve_device(device, "evaluate.device")
    info: dict = {}
    if backend in INCEPTION_BACKENDS:
        name = SAFE_INCEPTION_NAME if backend == "inception-v3-compat" else PYTORCH_FID_NAME
        cls = _register_backend(backend)
        info["preprocessing"] = (
            TORCH_FIDELITY_PREPROCESSING if backend == "inception-v3-compat" else PYTORCH_FID_PREPROCESSING
        )
        if weights is not None:
            wp = Path(weights).expanduser()
            if not wp.is_file():
                raise FIDError(
                    f"config error at 'evaluate.inception_weights': Inception weight file {wp} "
                    f"does not exist; give a local copy of torch-fidelity's {INCEPTION_WEIGHTS_FILE}, "
                    f"or set evaluate.inception_weights=null to let torch-fidelity download it, "
                    f"or evaluate.fid_backend=standin on an offline machine"
                )
            weights = str(wp)
            info["weights_file"] = wp.name
            info["weights_sha256"] = file_sha256(wp)
        else:
            info["weights_file"] = INCEPTION_WEIGHTS_FILE + " (torch-fidelity download)"
        try:
            module = cls(name, [FEATURE_LAYER], feature_extractor_weights_path=weights, verbose=False)
        except FIDError:
            raise
        except Exception as e:  # URLError, HTTPError, RuntimeError from a corrupt file, ...
            where = (
                f"the file {weights}" if weights else f"torch-fidelity's download of {INCEPTION_WEIGHTS_FILE}"
            )
            raise FIDError(
                f"cannot load the Inception FID weights from {where}: {e}. Set "
                f"evaluate.inception_weights to a local copy of {INCEPTION_WEIGHTS_FILE}, or "
                f"evaluate.fid_backend=standin for an offline, relative-only FID"
            ) from e
        info["input_size"] = cls.INPUT_IMAGE_SIZE
    elif backend == "standin":
        name = STANDIN_NAME
        cls = _register_standin()
        if weights is not None and Path(weights).is_file():
            wp = Path(weights)
        else:
            folder = Path(cache_dir) if cache_dir is not None else Path.home() / ".cache" / "unetprune"
            wp = standin_weights(seed, folder)
        weights = str(wp)
        try:
            module = cls(name, [FEATURE_LAYER], feature_extractor_weights_path=weights, verbose=False)
        except FIDError as e:
            raise FIDError(
                f"{e}; delete it to let `evaluate` rebuild the stand-in weights from the seed"
            ) from e
        info.update(
            {
                "seed": int(seed),
                "input_size": STANDIN_INPUT_SIZE,
                "weights_file": wp.name,
                "weights_sha256": file_sha256(wp),
                "note": "offline stand-in: Kaiming-initialised Inception-v3 at 96 px input; "
                "values are relative only and not comparable with inception-v3-compat FID",
            }
        )
    else:
        raise FIDError(
            f"config error at 'evaluate.fid_backend': unknown backend {backend!r} "
            f"(allowed: {', '.join(BACKENDS)})"
        )
    module.requires_grad_(False).eval().to(dev)
    return Extractor(backend, name, module, weights, dev, info)


# --------------------------------------------------------------------------------------
# Images → features
# --------------------------------------------------------------------------------------


@torch.no_grad()
def features_from_uint8(
    images: torch.Tensor | Iterable[torch.Tensor], extractor: Extractor, batch_size: int = 32
) -> np.ndarray:
    """Features (N, 2048) float32 of uint8 images (N, 3, H, W) (a tensor or an iterable of batches)."""
    batches = [images] if torch.is_tensor(images) else images
    out: list[torch.Tensor] = []
    for batch in batches:
        if batch.dtype != torch.uint8 or batch.dim() != 4 or batch.shape[1] != 3:
            raise FIDError(
                f"feature extraction expects uint8 images (N, 3, H, W), got {tuple(batch.shape)} "
                f"{batch.dtype}"
            )
        for i in range(0, batch.shape[0], batch_size):
            chunk = batch[i : i + batch_size].to(extractor.device, non_blocking=True)
            out.append(extractor.module(chunk)[0].float().cpu())
    if not out:
        raise FIDError("no images to extract features from")
    return torch.cat(out).numpy()


# --------------------------------------------------------------------------------------
# Statistics and distances
# --------------------------------------------------------------------------------------


@dataclass
class FeatureStats:
    features: np.ndarray | None  # (N, D) float32, kept for KID and the exact trace
    mu: np.ndarray  # (D,) float64
    sigma: np.ndarray  # (D, D) float64

    @property
    def n(self) -> int:
        return 0 if self.features is None else len(self.features)

    @classmethod
    def from_features(cls, features: np.ndarray) -> FeatureStats:
        f = np.asarray(features)
        if f.ndim != 2 or len(f) < 2:
            raise FIDError(f"FID needs at least 2 images, got features of shape {f.shape}")
        f64 = f.astype(np.float64)
        return cls(f.astype(np.float32), f64.mean(0), np.cov(f64, rowvar=False))


def _factor(stats: FeatureStats) -> np.ndarray:
    """F with ``sigma = F^T F``: centred features / sqrt(n-1) when few samples, else eigh."""
    if stats.features is not None and stats.n <= stats.mu.shape[0]:
        f = stats.features.astype(np.float64)
        return (f - f.mean(0)) / np.sqrt(len(f) - 1)
    w, v = np.linalg.eigh(stats.sigma)
    return (v * np.sqrt(np.clip(w, 0, None))).T


def fid_from_stats(s1: FeatureStats, s2: FeatureStats) -> float:
    """Fréchet distance ``|mu1 - mu2|^2 + tr S1 + tr S2 - 2 tr sqrt(S1 S2)`` (float64).

    ``tr sqrt(S1 S2)`` = the sum of singular values of ``F1 F2^T`` for factors ``S = F^T F``
    (exactly torch-fidelity's ``sum(sqrt(eigvals(S1 @ S2)))``, computed stably)."""
    if s1.mu.shape != s2.mu.shape:
        raise FIDError(f"feature sizes differ: {s1.mu.shape} vs {s2.mu.shape} (different backends?)")
    diff = s1.mu - s2.mu
    tr_covmean = np.linalg.svd(_factor(s1) @ _factor(s2).T, compute_uv=False).sum()
    return float(diff @ diff + np.trace(s1.sigma) + np.trace(s2.sigma) - 2.0 * tr_covmean)


def kid_from_features(
    f1: np.ndarray, f2: np.ndarray, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> dict:
    """KID (polynomial kernel, torch-fidelity's estimator); subset size capped at the set sizes.

    When the subset is the whole of both sets (``len(f1) == len(f2) <= subset_size``, e.g. every
    split of up to 1000 images), each of torch-fidelity's ``subsets`` draws is a permutation of
    the same features: the MMD is computed once, by torch-fidelity's own ``kernel_mmd`` on
    the features in their order, and ``std`` is 0 (torch-fidelity's loop would return the same
    mean up to float32 rounding of the reordered sums, and that rounding as its std)."""
    from torch_fidelity.metric_kid import (
        KEY_METRIC_KID_MEAN,
        KEY_METRIC_KID_STD,
        kernel_mmd,
        kid_features_to_metric,
    )

    size = int(min(subset_size, len(f1), len(f2)))
    if size < 2:
        raise FIDError(f"KID needs at least 2 images per set, got {len(f1)} and {len(f2)}")
    if size == len(f1) == len(f2):
        mmd = kernel_mmd(
            np.asarray(f1, dtype=np.float32),
            np.asarray(f2, dtype=np.float32),
            kid_kernel="poly",
            kid_kernel_poly_degree=3,
            kid_kernel_poly_gamma=None,
            kid_kernel_poly_coef0=1,
        )
        return {"mean": float(mmd), "std": 0.0, "subsets": subsets, "subset_size": size}
    out = kid_features_to_metric(
        torch.from_numpy(np.asarray(f1)),
        torch.from_numpy(np.asarray(f2)),
        kid_subsets=subsets,
        kid_subset_size=size,
        rng_seed=seed,
        verbose=False,
    )
    return {
        "mean": out[KEY_METRIC_KID_MEAN],
        "std": out[KEY_METRIC_KID_STD],
        "subsets": subsets,
        "subset_size": size,
    }


def check_same_backend(results: Iterable[dict]) -> str:
    """Refuse to put FID values of different backends (or stand-in seeds) in one table.
    ``results`` are evaluation dicts (with a ``fid`` entry) or ``fid`` entries; returns the backend id."""
    ids = set()
    for r in results:
        fid = r.get("fid", r) if isinstance(r, dict) else None
        if not fid or "backend" not in fid:
            continue
        ids.add((fid["backend"], fid.get("extractor", {}).get("weights_sha256"), fid.get("image_size")))
    if len(ids) > 1:
        raise FIDError(
            f"FID values from different backends / weights / image sizes cannot share a table: "
            f"{sorted(map(str, ids))}"
        )
    return next(iter(ids))[0] if ids else ""


# --------------------------------------------------------------------------------------
# Real-image statistics, cached on disk
# --------------------------------------------------------------------------------------


def file_list_hash(files: Iterable[Path | str]) -> str:
    """sha256 over (name, content hash) of each file, in order."""
    h = hashlib.sha256()
    for f in files:
        f = Path(f)
        h.update(f.name.encode())
        h.update(file_sha256(f).encode())
    return h.hexdigest()


def real_stats_key(
    dataset: str, split: str, direction: str, image_size: int, n: int, files_hash: str, extractor: Extractor
) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in dataset)
    return f"{safe}-{split}-{direction}-{image_size}px-n{n}-{files_hash[:12]}-{extractor.key}"


def real_stats(
    real_uint8: Callable[[], torch.Tensor] | torch.Tensor,
    extractor: Extractor,
    *,
    dataset: str,
    split: str,
    direction: str,
    image_size: int,
    files: list[Path],
    cache_dir: Path | str | None,
    batch_size: int = 32,
    files_hash: str | None = None,
) -> tuple[FeatureStats, dict]:
    """Features/statistics of the real target images, computed once and cached in ``cache_dir``.

    ``real_uint8`` is the (N, 3, H, W) uint8 target images or a callable producing them
    (only called on a cache miss); ``files_hash`` = :func:`file_list_hash` of ``files`` when
    the caller has it already.  Returns the stats and a description of the cache entry.
    """
    fhash = files_hash or file_list_hash(files)
    key = real_stats_key(dataset, split, direction, image_size, len(files), fhash, extractor)
    meta = {
        "key": key,
        "dataset": dataset,
        "split": split,
        "direction": direction,
        "image_size": image_size,
        "n_images": len(files),
        "files_sha256": fhash,
        "extractor": extractor.describe(),
        "format_version": STATS_FORMAT_VERSION,
    }
    path = Path(cache_dir) / f"{key}.pt" if cache_dir is not None else None
    if path is not None and path.is_file():
        try:
            feats = load_weights(path, "cached FID features")["features"].numpy()
            if feats.shape[0] == len(files):
                return FeatureStats.from_features(feats), {**meta, "cache": str(path), "cache_hit": True}
        except (WeightsFileError, KeyError, ValueError, RuntimeError):
            pass  # unreadable cache entry: recompute and overwrite
    images = real_uint8() if callable(real_uint8) else real_uint8
    if images.shape[0] != len(files):
        raise FIDError(f"{len(files)} real files but {images.shape[0]} images")
    feats = features_from_uint8(images, extractor, batch_size)
    stats = FeatureStats.from_features(feats)
    if path is not None:
        atomic_torch_save(
            {
                "features": torch.from_numpy(stats.features),
                "mu": torch.from_numpy(stats.mu),
                "sigma": torch.from_numpy(stats.sigma),
            },
            path,
        )
        atomic_write_text(path.with_suffix(".json"), json.dumps(meta, indent=2))
    return stats, {**meta, "cache": str(path) if path else None, "cache_hit": False}


def fidelity_folder_metrics(
    fake_dir: Path | str,
    real_dir: Path | str,
    extractor: Extractor,
    kid: bool = False,
    batch_size: int = 32,
    seed: int = 0,
    **options,
) -> dict:
    """torch-fidelity's own folder-based computation with the same extractor (the reference path
    of the tests and ``benchmarks/evaluate.py``); ``options`` override ``calculate_metrics`` kwargs."""
    import torch_fidelity

    _register_backend(extractor.backend)
    n = min(len(os.listdir(fake_dir)), len(os.listdir(real_dir)))
    kw = dict(
        input1=str(fake_dir),
        input2=str(real_dir),
        fid=True,
        kid=kid,
        cuda=extractor.device.type == "cuda",
        batch_size=batch_size,
        verbose=False,
        cache=False,
        save_cpu_ram=True,
        rng_seed=seed,
        samples_find_ext="png",
        **extractor.fidelity_kwargs(),
    )
    if kid:
        kw["kid_subset_size"] = min(1000, n)
    return torch_fidelity.calculate_metrics(**{**kw, **options})
