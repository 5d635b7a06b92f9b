"""The offline demo dataset: a labels → photo translation task built from real photographs.

Why: the paper's benchmarks (facades, cityscapes, ...) need downloads; the default
experiment must run offline on 2 CPU cores.  scikit-image ships a handful of real
photographs inside its wheel (``skimage.data``); this module turns them into a small
pix2pix-style *aligned* dataset, deterministically from a seed.

How a pair is made:

1. A source photo is chosen; a square window of random size (a quarter of the photo's
   short side up to all of it) and random position is cut out and resized to
   ``image_size`` (anti-aliased).  That is the photo, **B**.
2. The photo is *labelled* by :func:`label_photo`: every pixel goes to the nearest of
   ``n_classes`` fixed colour prototypes in CIELAB (dark, bright, grey, red, skin/orange,
   green, blue, ...), comparing Gaussian-smoothed distance maps so regions come out as
   blobs rather than pixel noise.  The classes mean the same thing in every photo.
3. The label map is drawn in a fixed palette (:data:`PALETTE`) unrelated to the photo
   colours.  That is the input, **A**.  Files are ``A|B`` PNGs, as pix2pix expects.

Train, val and test crops come from *different* source photos (:data:`SPLIT_PHOTOS`),
so the generator has to generalise to unseen scenes.  Because the labeller is a fixed
function, a generated photo can be scored offline by labelling it again and comparing
with the input labels (mIoU): ground-truth photos score exactly 1.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from .aligned import DataError

# Source photos per split (names of ``skimage.data`` functions bundled in its wheel).
SPLIT_PHOTOS: dict[str, list[str]] = {
    "train": [
        "astronaut",
        "rocket",
        "immunohistochemistry",
        "hubble_deep_field",
        "retina",
        "stereo_motorcycle",
        "camera",
        "brick",
        "grass",
        "gravel",
    ],
    "val": ["coins", "clock"],
    "test": ["chelsea", "coffee"],
}

# Class prototypes in CIELAB (L, a, b); the first n_classes are used.
PROTOTYPES_LAB = np.array(
    [
        [12.0, 0.0, 0.0],  # 0 dark
        [92.0, 0.0, 0.0],  # 1 bright
        [55.0, 0.0, 0.0],  # 2 mid grey
        [45.0, 55.0, 35.0],  # 3 red
        [70.0, 18.0, 35.0],  # 4 skin / orange
        [55.0, -40.0, 35.0],  # 5 green
        [45.0, 10.0, -50.0],  # 6 blue
        [35.0, 15.0, 25.0],  # 7 brown
        [80.0, -5.0, 70.0],  # 8 yellow
        [40.0, 45.0, -35.0],  # 9 purple
        [70.0, -30.0, -15.0],  # 10 cyan
        [30.0, 0.0, 0.0],  # 11 shadow grey
    ]
)

# Label palette (RGB) used to draw label maps: distinct, saturated, not the photo colours.
PALETTE = np.array(
    [
        [128, 64, 128],
        [244, 35, 232],
        [70, 70, 70],
        [102, 102, 156],
        [190, 153, 153],
        [250, 170, 30],
        [220, 220, 0],
        [107, 142, 35],
        [152, 251, 152],
        [70, 130, 180],
        [220, 20, 60],
        [0, 0, 142],
    ],
    dtype=np.uint8,
)

SMOOTH_SIGMA_FRACTION = 1.0 / 48  # Gaussian sigma of the distance maps, as a fraction of the side


def load_photo(name: str) -> np.ndarray:
    """A ``skimage.data`` photo as uint8 RGB (grey photos are replicated to 3 channels)."""
    from skimage import data as skdata

    fn = getattr(skdata, name, None)
    if fn is None:
        raise DataError(f"scikit-image has no bundled photo named {name!r}")
    try:
        img = fn()
        img = np.asarray(img[0] if isinstance(img, tuple) else img)  # stereo pair → left view
    except Exception as e:  # a photo that skimage would have to download
        raise DataError(f"scikit-image photo {name!r} is not available offline: {e}") from e
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    img = img[..., :3]
    if img.dtype != np.uint8:
        img = (255 * (img.astype(np.float64) / max(float(img.max()), 1e-8))).astype(np.uint8)
    return np.ascontiguousarray(img)


def label_photo(photo: np.ndarray, n_classes: int = 8) -> np.ndarray:
    """Class map (H, W) int64 of a uint8 RGB photo (H, W, 3): nearest CIELAB prototype after
    Gaussian smoothing of the per-class distance maps.  Deterministic, no learned weights."""
    from skimage.color import rgb2lab

    if photo.ndim != 3 or photo.shape[-1] != 3:
        raise DataError(f"label_photo expects an RGB image (H, W, 3), got shape {photo.shape}")
    lab = rgb2lab(photo.astype(np.float64) / 255.0)
    protos = PROTOTYPES_LAB[:n_classes]
    dist = np.linalg.norm(lab[None, :, :, :] - protos[:, None, None, :], axis=-1)  # (K, H, W)
    sigma = max(photo.shape[0], photo.shape[1]) * SMOOTH_SIGMA_FRACTION
    for k in range(n_classes):
        dist[k] = ndimage.gaussian_filter(dist[k], sigma=sigma, mode="reflect")
    return dist.argmin(axis=0)


def draw_labels(labels: np.ndarray) -> np.ndarray:
    """Class map → uint8 RGB image in :data:`PALETTE`."""
    return PALETTE[labels]


def decode_labels(drawn: np.ndarray, n_classes: int = 8) -> np.ndarray:
    """uint8 RGB palette image → class map (nearest palette colour; exact on lossless PNGs)."""
    pal = PALETTE[:n_classes].astype(np.int32)
    d = ((drawn[..., None, :].astype(np.int32) - pal[None, None]) ** 2).sum(-1)
    return d.argmin(-1)


def _random_crop(photo: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    h, w = photo.shape[:2]
    short = min(h, w)
    side = int(rng.integers(max(short // 4, min(size, short)), short + 1))
    y = int(rng.integers(0, h - side + 1))
    x = int(rng.integers(0, w - side + 1))
    crop = Image.fromarray(photo[y : y + side, x : x + side])
    return np.asarray(crop.resize((size, size), Image.LANCZOS))


def build_demo_dataset(
    out: Path | str,
    image_size: int = 64,
    n_train: int = 200,
    n_val: int = 16,
    n_test: int = 32,
    n_classes: int = 8,
    seed: int = 1234,
    progress: bool = True,
) -> dict:
    """Write the demo dataset to ``out/{train,val,test}/*.png`` (A|B) and ``out/demo.json``.

    Returns the manifest (counts, photos per split, parameters).  Rebuilding with the same
    arguments gives byte-identical files.
    """
    from tqdm import tqdm

    if n_classes > len(PALETTE):
        raise DataError(f"demo.n_classes={n_classes} exceeds the {len(PALETTE)} classes defined")
    out = Path(out)
    counts = {"train": n_train, "val": n_val, "test": n_test}
    photos = {split: [load_photo(n) for n in names] for split, names in SPLIT_PHOTOS.items()}
    manifest: dict = {
        "image_size": image_size,
        "n_classes": n_classes,
        "seed": seed,
        "photos": SPLIT_PHOTOS,
        "counts": counts,
        "class_pixels": {},
    }
    for split_idx, split in enumerate(("train", "val", "test")):
        rng = np.random.default_rng([seed, split_idx])
        folder = out / split
        folder.mkdir(parents=True, exist_ok=True)
        hist = np.zeros(n_classes, dtype=np.int64)
        items = range(counts[split])
        for i in tqdm(items, desc=f"demo {split}", disable=not progress, leave=False):
            src = i % len(photos[split])
            photo = _random_crop(photos[split][src], image_size, rng)
            labels = label_photo(photo, n_classes)
            hist += np.bincount(labels.ravel(), minlength=n_classes)
            ab = np.concatenate([draw_labels(labels), photo], axis=1)
            Image.fromarray(ab).save(folder / f"{split}_{i:04d}_{SPLIT_PHOTOS[split][src]}.png")
        manifest["class_pixels"][split] = hist.tolist()
    (out / "demo.json").write_text(json.dumps(manifest, indent=2))
    return manifest
