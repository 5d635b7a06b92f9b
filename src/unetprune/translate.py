"""Running a generator on images: the one generation loop, splits, folders, sample grids.

Evaluation modes (recorded with every result):
* ``train_bn`` — BatchNorm uses batch statistics and dropout is on, which is what the
  pix2pix reference does at test time (its ``--eval`` flag is off, batch 1); dropout is
  seeded so the outputs are repeatable.  By default each image of a batch is normalised with
  its own statistics and draws its own dropout masks (``per_image_stats``: the reference's
  batch-1 behaviour, several images per call, outputs independent of the batch size);
  ``per_image_stats=False`` normalises over the whole batch.
* ``eval`` — ``model.eval()``: running BatchNorm statistics, no dropout.

:func:`generate_batches` is the only loop that runs a generator over images; the
Evaluator, the trainer's checks, the sample grids and ``unetprune translate`` all use it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager, nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from .checkpoint import CheckpointError, generator_from_checkpoint, load_checkpoint
from .data.aligned import QUANTIZE_METHODS, DataError, list_images, open_rgb, to_tensor, to_uint8
from .fileio import clashing_input

MODES = ("train_bn", "eval")


@contextmanager
def _patched_forwards(G: torch.nn.Module, wanted, make_forward):
    """Inside the block, each module ``m`` of ``G`` with ``wanted(m)`` runs
    ``make_forward(m, own_forward)`` instead of its forward (modules already patched are left
    alone); the class's forward is back afterwards."""
    patched = [m for m in G.modules() if wanted(m) and "forward" not in vars(m)]
    for m in patched:
        m.forward = make_forward(m, m.forward)
    try:
        yield G
    finally:
        for m in patched:
            del m.forward


def per_image_batchnorm(G: torch.nn.Module):
    """Context manager: inside the block, every BatchNorm of ``G`` in train mode normalises
    each image of a batch with that image's own statistics (per channel over H x W, biased
    variance: what BatchNorm computes on a batch of one, as ``F.instance_norm`` with the
    layer's affine parameters), so a batch of N gives the N batch-1 outputs in one call.  A
    batch of one runs the layer's own forward (the same numbers as without the block, bit for
    bit); eval mode is untouched.  Running statistics are not updated for N > 1
    (``generation_mode`` restores them anyway)."""

    def make(m, own):
        def forward(x):
            if not m.training or x.shape[0] == 1:
                return own(x)
            return F.instance_norm(x, None, None, m.weight, m.bias, True, 0.0, m.eps)

        return forward

    return _patched_forwards(G, lambda m: isinstance(m, nn.modules.batchnorm._BatchNorm), make)


def image_seed(seed: int, index: int) -> int:
    """The dropout seed of image ``index`` of a run seeded with ``seed`` (independent streams)."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1, dtype=np.uint64)[0] >> 1)


class DropoutStreams:
    """One dropout RNG per image: image ``k`` of a generation run draws its masks, layer after
    layer, from a generator seeded with :func:`image_seed` ``(seed, k)``, so its output does
    not depend on which images share its batch."""

    def __init__(self, seed: int):
        self.seed = int(seed)
        self.current: list[torch.Generator] | None = None

    def set_images(self, first: int, n: int, device: torch.device) -> None:
        self.current = [
            torch.Generator(device=device).manual_seed(image_seed(self.seed, k))
            for k in range(first, first + n)
        ]


def per_image_dropout(G: torch.nn.Module, streams: DropoutStreams | None):
    """Context manager: inside the block, every ``nn.Dropout`` of ``G`` in train mode draws
    each image's mask from that image's generator in ``streams`` (``None``: nothing changes)."""

    def make(m, own):
        def forward(x):
            gens = streams.current
            if not m.training or m.p == 0 or gens is None:
                return own(x)
            if len(gens) != x.shape[0]:
                raise RuntimeError(f"dropout streams for {len(gens)} images, batch of {x.shape[0]}")
            keep = 1.0 - m.p
            mask = torch.stack(
                [
                    torch.empty(x.shape[1:], dtype=x.dtype, device=x.device).bernoulli_(keep, generator=g)
                    for g in gens
                ]
            )
            return x * mask / keep

        return forward

    if streams is None:
        return nullcontext(G)
    return _patched_forwards(G, lambda m: type(m) is nn.Dropout, make)


@contextmanager
def generation_mode(G: torch.nn.Module, mode: str, seed: int = 0, per_image_stats: bool = True):
    """Run ``G`` in an evaluation mode inside the block, then leave it exactly as it was.

    ``train_bn`` uses batch statistics (and dropout), so BatchNorm running buffers are
    saved and restored; with ``per_image_stats`` (default) each image of a batch gets its own
    statistics (:func:`per_image_batchnorm`), else the batch's.  Dropout draws from a forked
    RNG seeded with ``seed`` (CPU and the model's CUDA device), so outputs are repeatable and
    the caller's RNG is untouched (the masks depend on the batching: batching changes the
    draws, not their distribution)."""
    if mode not in MODES:
        raise ValueError(f"evaluation mode must be one of {MODES}, got {mode!r}")
    was_training = G.training
    buffers = {
        k: v.detach().clone()
        for k, v in G.state_dict().items()
        if k.endswith(("running_mean", "running_var", "num_batches_tracked"))
    }
    devices = sorted({p.device.index or 0 for p in G.parameters() if p.device.type == "cuda"})
    G.train(mode == "train_bn")
    stats = per_image_batchnorm(G) if mode == "train_bn" and per_image_stats else nullcontext(G)
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad(), stats:
            torch.manual_seed(seed)
            yield G
    finally:
        state = G.state_dict()
        for k, v in buffers.items():
            state[k].copy_(v)
        G.train(was_training)


def generate_batches(
    G: torch.nn.Module,
    batches: Iterable[torch.Tensor],
    mode: str = "train_bn",
    seed: int = 0,
    *,
    device: torch.device | str | None = None,
    amp: bool = False,
    per_image_stats: bool = True,
) -> Iterator[torch.Tensor]:
    """Yield ``G(x)`` (on ``device``, in [-1, 1]) for every input batch ``x`` (N, C, H, W) in [-1, 1].

    The whole iteration runs inside :func:`generation_mode` (``mode``, dropout seeded with
    ``seed``).  In ``train_bn`` mode with ``per_image_stats`` (default) each image has its own
    BatchNorm statistics and its own dropout stream (:class:`DropoutStreams`: image ``k`` of the
    run, seeded with ``(seed, k)``), so an image's output depends on the model, its input, its
    place in the run and the seed, not on the batch size (up to float rounding of the batched
    kernels); without it, on the batching too.
    ``amp`` = bf16 autocast (CUDA only); ``per_image_stats``: see :func:`generation_mode`.
    ``device`` defaults to the model's.  The model is
    restored when the iteration ends or the iterator is closed: consumers wrap it in
    ``contextlib.closing`` so that an early exit or an error restores it at once.  Consumer code between batches runs inside the mode (no grad,
    forked RNG): do not draw random numbers there."""
    if device is None:
        device = next(G.parameters()).device
    device = torch.device(device)
    streams = DropoutStreams(seed) if mode == "train_bn" and per_image_stats else None
    with generation_mode(G, mode, seed, per_image_stats), per_image_dropout(G, streams):
        first = 0
        for x in batches:
            xs = tuple(x) if isinstance(x, (tuple, list)) else (x,)  # several inputs (e.g. face, mel)
            xs = tuple(t.to(device, non_blocking=True) for t in xs)
            n = int(xs[0].shape[0])
            if streams is not None:
                streams.set_images(first, n, device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda"):
                yield G(*xs)
            first += n


def generate_split(
    G: torch.nn.Module,
    dataset,
    mode: str = "train_bn",
    seed: int = 0,
    device: torch.device | str | None = None,
    batch_size: int = 16,
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """[(A, G(A), B)] for every item of an AlignedDataset, CPU tensors in [-1, 1]; ``batch_size``
    images per call (the batch-1 outputs: per-image statistics and dropout streams)."""
    items = [dataset[i] for i in range(len(dataset))]
    batches = (
        torch.stack([it["A"] for it in items[i : i + batch_size]]) for i in range(0, len(items), batch_size)
    )
    with closing(generate_batches(G, batches, mode, seed, device=device)) as outs:
        ys = [y.float().cpu() for out in outs for y in out]
    return [(item["A"], y, item["B"]) for y, item in zip(ys, items)]


def config_quantize(cfg: dict | None) -> str:
    """``evaluate.quantize`` of a config (``round`` when the config or the key is absent)."""
    return ((cfg or {}).get("evaluate") or {}).get("quantize") or "round"


def save_sample_grid(
    G: torch.nn.Module,
    dataset,
    path: Path | str,
    cfg: dict | None = None,
    n: int = 8,
    mode: str | None = None,
    seed: int | None = None,
) -> Path:
    """PNG with one row per image: input | output | target (outputs quantised per ``evaluate.quantize``)."""
    mode = mode or (cfg["evaluate"]["mode"] if cfg else "train_bn")
    seed = seed if seed is not None else (cfg["seed"] if cfg else 0)
    q = config_quantize(cfg)
    from torch.utils.data import Subset

    triples = generate_split(G, Subset(dataset, range(min(n, len(dataset)))), mode, seed)
    rows = [np.concatenate([to_uint8(a), to_uint8(o, q), to_uint8(b)], axis=1) for a, o, b in triples]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)
    return path


def _folder_input(f: Path, size: int, direction: str) -> torch.Tensor:
    """One input image of a folder as a (1, 3, size, size) batch in [-1, 1] (A|B files: the input half)."""
    im = open_rgb(f)
    w, h = im.size
    if w == 2 * h:
        im = im.crop((0, 0, h, h)) if direction == "AtoB" else im.crop((h, 0, w, h))
    return to_tensor(im.resize((size, size), Image.BICUBIC)).unsqueeze(0)


def translate_folder(
    checkpoint: Path | str,
    input_dir: Path | str,
    output_dir: Path | str,
    mode: str = "train_bn",
    direction: str | None = None,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = True,
    quantize: str | None = None,
) -> list[Path]:
    """Run a checkpoint's generator on every image of ``input_dir``; write ``<stem>.png``.

    Inputs may be aligned A|B files (width = 2 x height: the input half is taken by
    ``direction``, default the checkpoint config's) or plain images.  Images are resized
    to the checkpoint's crop size; outputs keep that size.  An ``output_dir`` equal to or
    inside ``input_dir`` is refused (the outputs would overwrite or join the inputs), and so
    are two inputs with the same stem (``a.png`` and ``a.jpg`` would both become ``a.png``) and
    an output that is, or leads through a link to, one of the inputs (an input folder of links
    into the output folder).
    Pixels are quantised by ``quantize`` (``round`` | ``truncate``; default: the checkpoint
    config's ``evaluate.quantize``) through :func:`unetprune.data.aligned.quantize_uint8`, the
    function the Evaluator's in-memory metrics use.
    """
    from tqdm import tqdm

    ckpt = load_checkpoint(checkpoint)
    in_real, out_real = Path(input_dir).resolve(), Path(output_dir).resolve()
    if out_real == in_real or in_real in out_real.parents:
        raise DataError(
            f"--output {output_dir} is {'the' if out_real == in_real else 'inside the'} input "
            f"folder {input_dir}: the generated PNGs would overwrite or mix with the inputs; "
            f"choose another output folder"
        )
    files = list_images(input_dir)
    stems: dict[str, Path] = {}
    for f in files:
        if f.stem in stems:
            raise DataError(
                f"{stems[f.stem]} and {f} have the same name stem, so both would be written "
                f"to {Path(output_dir) / (f.stem + '.png')}; rename one of them"
            )
        stems[f.stem] = f
    clash = clashing_input((Path(output_dir) / f"{f.stem}.png" for f in files), files)
    if clash is not None:
        raise DataError(
            f"{clash[0]} would replace the input {clash[1]} (the same file through a link); "
            f"choose an output folder that holds none of the inputs"
        )

    try:
        G = generator_from_checkpoint(ckpt).to(device)
    except CheckpointError as e:
        raise CheckpointError(str(e).replace("checkpoint:", f"checkpoint {checkpoint}:", 1)) from e
    cfg = ckpt.get("config") or {}
    size = cfg.get("data", {}).get("crop_size", 2**G.num_downs)
    if size % (2**G.num_downs):
        size = 2**G.num_downs
    direction = direction or cfg.get("data", {}).get("direction", "AtoB")
    quantize = quantize or config_quantize(cfg)
    if quantize not in QUANTIZE_METHODS:
        raise DataError(f"quantize must be one of {', '.join(QUANTIZE_METHODS)}, got {quantize!r}")
    out_dir = Path(output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    inputs = (_folder_input(f, size, direction) for f in files)
    with closing(generate_batches(G, inputs, mode, seed, device=device)) as outs:
        for y, f in zip(tqdm(outs, desc="translate", total=len(files), disable=not progress), files):
            dst = out_dir / f"{f.stem}.png"
            Image.fromarray(to_uint8(y[0], quantize)).save(dst)
            written.append(dst)
    return written
