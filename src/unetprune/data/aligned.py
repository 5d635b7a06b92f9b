"""Paired images in the pix2pix "aligned" format: each file holds A|B side by side.

Layout: ``<root>/{train,val,test}/*.{png,jpg,jpeg}``; image width = 2 x height; the
left half is A, the right half B.  ``direction="AtoB"`` maps A → B.

Augmentation follows the reference ``AlignedDataset`` (pix2pix ``resize_and_crop``):
both halves resized to ``load_size`` (bicubic), the same random ``crop_size`` crop and
the same random horizontal flip applied to both; at evaluation they are resized to
``crop_size`` with no crop and no flip.  Randomness is a pure function of
``(seed, epoch, index)``, so an epoch's samples are identical after a resume and with
any number of loader workers.

Image policy (:func:`open_rgb`, used for every dataset image and every ``translate`` input;
errors are one-line :class:`DataError` naming the file):

* **accepted as is**: 8-bit RGB (JPEG, PNG, ...);
* **converted exactly**: 8-bit grayscale and 1-bit images (R = G = B), palette images
  without transparency, **16-bit** grayscale PNGs (scaled to 8 bits, ``round(v / 257)``;
  Pillow's plain ``convert("RGB")`` clips them to white), RGBA / LA images whose alpha is
  255 everywhere (the alpha channel carries nothing);
* **refused**: images with transparent pixels (what colour lies behind is unknown), CMYK
  and other colour spaces (no calibrated conversion), 32-bit integer or float images,
  images larger than :data:`MAX_PIXELS` (decompression bombs; Pillow's own
  ``DecompressionBombError`` is reported the same way), files that do not decode, and
  aligned files whose width is not 2 x height.  Aligned files of different sizes are
  fine: both halves are resized to ``load_size`` / ``crop_size`` (as pix2pix does).
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
SPLITS = ("train", "val", "test")
MAX_PIXELS = 64_000_000  # far above any benchmark image (Cityscapes: 2048 x 1024 = 2.1 M)


class DataError(ValueError):
    """A dataset file or folder is missing, corrupt or wrongly sized (the message names it)."""


def list_images(folder: Path | str) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"image folder {folder} does not exist")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise DataError(f"image folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def _to_rgb(im: Image.Image, path: Path) -> Image.Image:
    """``im`` as 8-bit RGB per the module's image policy, or DataError naming ``path``."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode in ("1", "L") or (mode == "P" and "transparency" not in im.info):
        return im.convert("RGB")
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        a = np.asarray(im).astype(np.int64)
        if a.size and (a.min() < 0 or a.max() > 65535):
            raise DataError(
                f"{path}: {mode} image with values outside 0..65535 is not supported "
                f"(image policy: 8- or 16-bit RGB/grayscale); convert it to 8-bit RGB"
            )
        g = ((a * 255 + 32767) // 65535).astype(np.uint8)  # round(v / 257)
        return Image.fromarray(np.repeat(g[..., None], 3, axis=2), "RGB")
    if mode in ("RGBA", "LA", "PA", "P", "La", "RGBa"):
        rgba = im.convert("RGBA")
        lo, _ = rgba.getchannel("A").getextrema()
        if lo < 255:
            raise DataError(
                f"{path}: has transparent pixels ({mode} with alpha < 255); image policy: "
                f"flatten it onto a background and save it as RGB"
            )
        return rgba.convert("RGB")
    raise DataError(
        f"{path}: colour mode {mode} is not supported (image policy: RGB, grayscale, "
        f"16-bit grayscale or opaque RGBA); convert it to 8-bit RGB"
    )


def open_rgb(path: Path | str) -> Image.Image:
    """Decode ``path`` as an 8-bit RGB image per the module's image policy; DataError (one
    line, naming the file) for undecodable, oversized (decompression bomb) or refused images."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h > MAX_PIXELS:
                raise DataError(
                    f"{path}: {w}x{h} = {w * h} pixels, more than the {MAX_PIXELS} allowed "
                    f"(a decompression bomb or not a dataset image); delete this file"
                )
            im.load()
            return _to_rgb(im, path).copy()
    except DataError:
        raise
    except Image.DecompressionBombError as e:
        raise DataError(f"{path}: refused as a decompression bomb ({e})".replace("\n", " ")) from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, MemoryError) as e:
        msg = " ".join(str(e).split())
        raise DataError(f"cannot decode image {path}: {msg}. Re-create or delete this file.") from e


def read_aligned(path: Path | str) -> tuple[Image.Image, Image.Image]:
    """Read one A|B file and return its two halves (RGB); errors name the file."""
    path = Path(path)
    ab = open_rgb(path)
    w, h = ab.size
    if w != 2 * h:
        raise DataError(
            f"{path}: an aligned image must hold A|B side by side with width = 2 x height, "
            f"got {w}x{h}. Check the dataset's format (pix2pix 'aligned')."
        )
    half = w // 2
    return ab.crop((0, 0, half, h)), ab.crop((half, 0, w, h))


# --- uint8 <-> [-1, 1]: the project's one image quantisation ------------------------------


def pil_to_uint8(im: Image.Image) -> torch.Tensor:
    """PIL RGB → uint8 tensor (3, H, W)."""
    return torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1)


#: the 256 float32 values of ``v / 127.5 - 1``, computed once on the CPU
_LEVELS = torch.arange(256, dtype=torch.float32).div_(127.5).sub_(1.0)
_LEVELS_ON: dict[torch.device, torch.Tensor] = {}


def from_uint8(u8: torch.Tensor) -> torch.Tensor:
    """uint8 images (any shape, e.g. (3, H, W) or (N, 3, H, W)) → float32 in [-1, 1]: ``u8 / 127.5 - 1``.

    A lookup in the CPU-computed table of the 256 values, so the result is bit for bit the
    same on every device (CUDA's scalar division multiplies by the reciprocal, which can
    differ from the CPU's division in the last bit)."""
    if u8.device.type == "cpu":
        return u8.float().div_(127.5).sub_(1.0)
    levels = _LEVELS_ON.get(u8.device)
    if levels is None:
        levels = _LEVELS_ON[u8.device] = _LEVELS.to(u8.device)
    return levels[u8.long()]


def to_tensor(im: Image.Image) -> torch.Tensor:
    """PIL RGB → float tensor (3, H, W) in [-1, 1]."""
    return from_uint8(pil_to_uint8(im))


#: ``evaluate.quantize``: how generator outputs in [-1, 1] become 8-bit pixels
QUANTIZE_METHODS = ("round", "truncate")


def quantize_uint8(x: torch.Tensor, method: str = "round") -> torch.Tensor:
    """Images in [-1, 1] (any shape, any device: a generator's batch) → uint8 on the same device.

    * ``round`` (default): ``round((clamp(x, -1, 1) + 1) * 127.5)``; unbiased, and
      ``quantize_uint8(from_uint8(u8)) == u8`` exactly.
    * ``truncate``: the pix2pix / GAN Compression ``tensor2im``: ``(x + 1) / 2 * 255`` in
      float32, clipped to [0, 255], then cast to uint8 (which truncates: a floor, the values being
      non-negative).  Every pixel is on average half a level darker than with ``round``; use it
      to compare with published numbers made by those code bases.

    This is the one quantisation used wherever the project turns a generator output into
    pixels (PNG files, sample grids, in-memory FID and every other metric), so all paths see
    identical pixels for one ``method``."""
    x = x.detach().float()
    if method == "round":
        return ((x.clamp(-1, 1) + 1) * 127.5).round_().to(torch.uint8)
    if method == "truncate":
        # the reference's order of float32 operations, so values on a level boundary match it
        return ((x + 1) / 2.0 * 255.0).clamp_(0, 255).floor_().to(torch.uint8)
    raise ValueError(f"evaluate.quantize must be one of {QUANTIZE_METHODS}, got {method!r}")


def to_uint8(t: torch.Tensor, method: str = "round") -> np.ndarray:
    """One image (3, H, W) in [-1, 1] → uint8 HWC numpy array (what a PNG holds); see :func:`quantize_uint8`."""
    return np.ascontiguousarray(quantize_uint8(t.detach().cpu(), method).permute(1, 2, 0).numpy())


class AlignedDataset(Dataset):
    """One split of an aligned dataset; items are ``{"A", "B", "path"}`` in [-1, 1]."""

    def __init__(
        self,
        root: Path | str,
        split: str = "train",
        direction: str = "AtoB",
        load_size: int = 286,
        crop_size: int = 256,
        train: bool | None = None,
        flip: bool = True,
        seed: int = 0,
        max_items: int | None = None,
    ):
        if direction not in ("AtoB", "BtoA"):
            raise DataError(f"direction must be 'AtoB' or 'BtoA', got {direction!r}")
        if crop_size > load_size:
            raise DataError(f"crop_size ({crop_size}) must not exceed load_size ({load_size})")
        self.root, self.split = Path(root), split
        self.files = list_images(self.root / split)
        if max_items is not None:
            self.files = self.files[:max_items]
        self.direction = direction
        self.load_size, self.crop_size = load_size, crop_size
        self.train = (split == "train") if train is None else train
        self.flip = flip
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.files)

    def transform_params(self, index: int) -> tuple[int, int, bool]:
        """(x, y, flip) for item ``index`` in the current epoch (deterministic)."""
        if not self.train:
            return 0, 0, False
        rng = random.Random(f"{self.seed}/{self.epoch}/{index}")
        span = self.load_size - self.crop_size
        x, y = rng.randint(0, span), rng.randint(0, span)
        return x, y, self.flip and rng.random() > 0.5

    def _apply(self, im: Image.Image, x: int, y: int, flip: bool) -> Image.Image:
        if not self.train:
            return im.resize((self.crop_size, self.crop_size), Image.BICUBIC)
        im = im.resize((self.load_size, self.load_size), Image.BICUBIC)
        im = im.crop((x, y, x + self.crop_size, y + self.crop_size))
        return im.transpose(Image.FLIP_LEFT_RIGHT) if flip else im

    def pair_uint8(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Item ``index`` as uint8 tensors (input A, target B), each (3, H, W), after the transform."""
        a, b = read_aligned(self.files[index])
        x, y, flip = self.transform_params(index)
        a, b = self._apply(a, x, y, flip), self._apply(b, x, y, flip)
        if self.direction == "BtoA":
            a, b = b, a
        return pil_to_uint8(a), pil_to_uint8(b)

    def __getitem__(self, index: int) -> dict:
        a, b = self.pair_uint8(index)
        return {"A": from_uint8(a), "B": from_uint8(b), "path": str(self.files[index])}


def check_aligned_layout(root: Path | str, splits: tuple[str, ...] = ("train",)) -> dict[str, int]:
    """Check that ``root`` is an aligned dataset: the splits exist and every image decodes
    with width = 2 x height.  Returns image counts per split present; raises DataError."""
    root = Path(root)
    counts: dict[str, int] = {}
    for split in SPLITS:
        if not (root / split).is_dir():
            if split in splits:
                raise DataError(
                    f"{root} has no '{split}/' folder; an aligned dataset needs {', '.join(splits)}"
                )
            continue
        files = list_images(root / split)
        for f in files:
            read_aligned(f)
        counts[split] = len(files)
    return counts
