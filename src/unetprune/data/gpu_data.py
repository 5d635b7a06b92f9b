"""A training split held on the training device (``data.on_device``): uint8 images there,
the per-epoch random crop and flip done there, batches in the CPU loader's order.

At the paper's batch 1 a captured training step of ``unet_256`` takes a few milliseconds on a
GPU, less than decoding, resizing and copying one JPEG pair: the loader would set the pace.
Small benchmark splits fit on the device as uint8 (facades: 400 pairs x 2 x 3 x 286² ≈ 196 MB),
so :class:`DeviceAlignedDataset` decodes every pair once and keeps it there.

**Same samples as the CPU loader** (:class:`~unetprune.data.aligned.AlignedDataset`):

* the resize to ``load_size`` (bicubic) is done **once, on the host, by the CPU loader's own
  PIL call** (``resize="host"``, the default): the resized pixels are the CPU loader's, bit
  for bit, every epoch (the CPU loader repeats the same deterministic resize each epoch);
* the crop offsets and flips come from the CPU loader's own
  :meth:`~unetprune.data.aligned.AlignedDataset.transform_params` (a pure function of
  ``(seed, epoch, index)``), applied on the device by slicing and ``flip``: so a batch is
  **bit-identical** to the CPU loader's, on any device (tests/test_gpu_data.py checks it on
  the CPU);
* :meth:`DeviceAlignedDataset.batch_loader` draws the order with the same
  ``RandomSampler``/``BatchSampler`` and the trainer's seeded generator as the CPU
  ``DataLoader(shuffle=True)``, so the batches come in the same order;
* ``[-1, 1]`` conversion is the project's :func:`~unetprune.data.aligned.from_uint8`.

``resize="device"`` instead keeps the images at their stored size and resizes each batch on
the device, emulating PIL's two-pass bicubic (horizontal pass rounded to uint8, then vertical,
PIL's ``a = -0.5`` kernel = torch's antialiased bicubic).  This saves memory when
``load_size`` is larger than the images (facades: 256 → 286 stores 80 % of the bytes), at a
documented cost: samples are not bit-identical.  Pixels differ from PIL's by one level on about
1 % of the values and by two on about 0.01 % (PIL rounds its passes with fixed-point weights;
measured on the demo's label maps and photographs and on noise); tests/test_gpu_data.py bounds
it (at most 2 levels, > 0 on at most 2 %, > 1 on at most 0.1 %).  It needs every image of the split to have the same size.  The trainer uses
``resize="host"``.

Evaluation-mode sets (``train=False``) are resized to ``crop_size`` without crop or flip, as
the CPU loader does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import BatchSampler, DataLoader, RandomSampler

from .aligned import AlignedDataset, DataError, from_uint8, pil_to_uint8, read_aligned

#: ``data.on_device: auto`` puts a split on a CUDA device only up to this many bytes
AUTO_MAX_BYTES = 4 * 1024**3
RESIZE_MODES = ("host", "device")


def _pil_like_resize(u8: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 images (N, 3, H, W) → (N, 3, size, size) uint8, as PIL's bicubic ``resize``:
    two separable passes (horizontal first), each rounded and clipped to uint8."""
    h, w = u8.shape[-2:]
    if (h, w) == (size, size):
        return u8
    x = u8.float()
    if w != size:
        x = F.interpolate(x, size=(h, size), mode="bicubic", antialias=True, align_corners=False)
        x = x.round_().clamp_(0, 255)
    if h != size:
        x = F.interpolate(x, size=(size, size), mode="bicubic", antialias=True, align_corners=False)
        x = x.round_().clamp_(0, 255)
    return x.to(torch.uint8)


class DeviceAlignedDataset:
    """One aligned split on ``device`` (see the module doc).

    Items (``ds[i]``) are the CPU loader's ``{"A", "B", "path"}``; ``ds[[i, j, ...]]`` is a
    batch ``{"A": (B, 3, c, c), "B": ..., "path": [...]}`` in [-1, 1] on the device.
    """

    def __init__(self, base: AlignedDataset, device: torch.device | str, resize: str = "host"):
        if resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
        self.base, self.device, self.resize = base, torch.device(device), resize
        self.files = list(base.files)
        self.train = base.train
        side = base.load_size if base.train else base.crop_size
        a_list, b_list = [], []
        for f in self.files:
            a, b = read_aligned(f)
            if resize == "host":  # the CPU loader's PIL call (AlignedDataset._apply)
                a, b = (im.resize((side, side), Image.BICUBIC) for im in (a, b))
            a_list.append(pil_to_uint8(a))
            b_list.append(pil_to_uint8(b))
        if resize == "device" and len({tuple(t.shape) for t in a_list + b_list}) > 1:
            raise DataError(
                f"{base.root / base.split}: resize='device' needs images of one size; use resize='host'"
            )
        if base.direction == "BtoA":
            a_list, b_list = b_list, a_list
        self.A = torch.stack(a_list).to(self.device)
        self.B = torch.stack(b_list).to(self.device)
        self.side = side

    # --- the Dataset interface the trainer uses ------------------------------------------
    @property
    def nbytes(self) -> int:
        return self.A.numel() + self.B.numel()

    def set_epoch(self, epoch: int) -> None:
        self.base.set_epoch(epoch)

    @property
    def epoch(self) -> int:
        return self.base.epoch

    def __len__(self) -> int:
        return len(self.files)

    def pair_uint8(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 (B, 3, c, c) inputs and targets of ``indices`` in the current epoch."""
        c = self.base.crop_size
        a_all, b_all = self.A[indices], self.B[indices]
        if self.resize == "device":
            a_all, b_all = _pil_like_resize(a_all, self.side), _pil_like_resize(b_all, self.side)
        if not self.train:
            return a_all, b_all
        out_a, out_b = [], []
        for k, i in enumerate(indices):
            x, y, flip = self.base.transform_params(i)
            a, b = a_all[k, :, y : y + c, x : x + c], b_all[k, :, y : y + c, x : x + c]
            if flip:
                a, b = a.flip(-1), b.flip(-1)
            out_a.append(a)
            out_b.append(b)
        return torch.stack(out_a), torch.stack(out_b)

    def __getitem__(self, index):
        if isinstance(index, int):
            a, b = self.pair_uint8([index])
            return {"A": from_uint8(a[0]), "B": from_uint8(b[0]), "path": str(self.files[index])}
        indices = [int(i) for i in index]
        a, b = self.pair_uint8(indices)
        return {"A": from_uint8(a), "B": from_uint8(b), "path": [str(self.files[i]) for i in indices]}

    def batch_loader(
        self, batch_size: int, generator: torch.Generator, batches: list[list[int]] | None = None
    ) -> DataLoader:
        """Batches in the order of ``DataLoader(self.base, batch_size, shuffle=True,
        generator=generator, drop_last=False)``: the same samplers over the same generator (drawn
        when iteration starts, like the CPU loader), each batch made on the device in one call.
        ``batches``: these index batches instead (the rest of an epoch, when a run resumes mid-epoch)."""
        sampler = (
            batches
            if batches is not None
            else BatchSampler(
                RandomSampler(range(len(self)), generator=generator), batch_size, drop_last=False
            )
        )
        # generator= too: each iteration draws its base seed from it, as the CPU loader's does
        return DataLoader(
            self, sampler=sampler, batch_size=None, num_workers=0, collate_fn=_identity, generator=generator
        )


def _identity(batch):
    return batch


def on_device_for(cfg: dict, n_items: int | None = None) -> torch.device | None:
    """The device a pix2pix config's training split should live on (``data.on_device``), or
    None for the CPU DataLoader.  ``auto``: the training device when it is CUDA and the split
    (``n_items`` pairs at ``load_size``, uint8) needs at most :data:`AUTO_MAX_BYTES`."""
    from ..devices import resolve_device

    setting = cfg["data"].get("on_device", False)
    if setting is False or setting is None:
        return None
    device = resolve_device(cfg["train"]["device"], key="train.device")
    if setting is True:
        return device
    if device.type != "cuda":
        return None
    if n_items is not None and n_items * 2 * 3 * cfg["data"]["load_size"] ** 2 > AUTO_MAX_BYTES:
        return None
    return device


def maybe_on_device(dataset: AlignedDataset, cfg: dict):
    """``dataset`` itself, or held on the device :func:`on_device_for` names."""
    device = on_device_for(cfg, len(dataset))
    return dataset if device is None else DeviceAlignedDataset(dataset, device)


__all__ = ["AUTO_MAX_BYTES", "DeviceAlignedDataset", "maybe_on_device", "on_device_for"]
