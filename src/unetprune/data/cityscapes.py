"""Cityscapes for pix2pix: aligned label <-> photo pairs and train-id maps for mIoU.

Cityscapes is licence-gated, so it cannot be downloaded for the user.  From the user's
official ``gtFine_trainvaltest.zip`` and ``leftImg8bit_trainvaltest.zip`` (read in place,
nothing is unzipped; already-unzipped ``gtFine/`` and ``leftImg8bit/`` folders next to
them work too), :func:`prepare_cityscapes` builds, in ``root``:

* ``train/<city>_<seq>_<frame>.jpg``, ``val/…``, ``test/…`` - aligned 512x256 pairs as
  pix2pix's ``datasets/prepare_cityscapes_dataset.py`` makes them: the photo
  (``*_leftImg8bit.png``) and the colour label map (``*_gtFine_color.png``), each converted to
  RGB and resized to 256x256 with Pillow's default filter for RGB (bicubic), side by side,
  saved as JPEG quality 100 without chroma subsampling.  **Layout: left (A) = photo,
  right (B) = colour label map** - the reference script pastes the photo at x=0 and the
  label map at x=256, the pix2pix ``cityscapes.tar.gz`` is laid out the same way, and
  pix2pix trains labels -> photo with ``--direction BtoA``; so use ``direction: BtoA`` for
  labels -> photo.  ``label_side="left"`` swaps the halves (A = label map) if wanted.
* ``labels/<split>/<city>_<seq>_<frame>_gtFine_trainIds.png`` - the full-resolution
  (2048x1024) ``gtFine_labelIds`` maps converted to the 19 train ids of cityscapesScripts'
  ``labels.py`` (0 road … 18 bicycle; every other label = 255, ignored), for the mIoU
  evaluation (:func:`label_path` finds the map of a pair).
* ``dataset.lock.json`` - the zips' sha256, counts and a hash of the files written.

Splits: Cityscapes train (2975 images) -> ``train/``; Cityscapes val (500) -> ``val/`` and
also ``test/`` (hard links to the same files), because the Cityscapes test labels are not
public and pix2pix evaluates on val (the reference script writes val as its test phase;
the pix2pix tarball calls it val).  Pair file names keep the Cityscapes id
(``aachen_000000_000019``) instead of the reference's running number, so a pair's label map
is found by name; sorted by name, the order is the reference's order.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import zipfile
from collections import namedtuple
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .aligned import DataError, check_aligned_layout
from .fetch import (
    CITYSCAPES_DOWNLOADS,
    LOCK_NAME,
    install_dir,
    read_lock,
    sha256_file,
    write_lock,
)

__all__ = [
    "GTFINE_ZIP",
    "IGNORE_INDEX",
    "LABELS",
    "LABEL_ID_TO_TRAIN_ID",
    "LEFTIMG_ZIP",
    "NUM_CLASSES",
    "TRAIN_CLASS_NAMES",
    "TRAIN_ID_COLORS",
    "CityscapesLabel",
    "PreparedCityscapes",
    "label_ids_to_train_ids",
    "label_path",
    "load_train_ids",
    "prepare_cityscapes",
    "train_ids_to_color",
]

CityscapesLabel = namedtuple("CityscapesLabel", "name id train_id category color")

# cityscapesScripts/cityscapesscripts/helpers/labels.py: (name, labelId, trainId, category, colour).
LABELS: tuple[CityscapesLabel, ...] = tuple(
    CityscapesLabel(*row)
    for row in (
        ("unlabeled", 0, 255, "void", (0, 0, 0)),
        ("ego vehicle", 1, 255, "void", (0, 0, 0)),
        ("rectification border", 2, 255, "void", (0, 0, 0)),
        ("out of roi", 3, 255, "void", (0, 0, 0)),
        ("static", 4, 255, "void", (0, 0, 0)),
        ("dynamic", 5, 255, "void", (111, 74, 0)),
        ("ground", 6, 255, "void", (81, 0, 81)),
        ("road", 7, 0, "flat", (128, 64, 128)),
        ("sidewalk", 8, 1, "flat", (244, 35, 232)),
        ("parking", 9, 255, "flat", (250, 170, 160)),
        ("rail track", 10, 255, "flat", (230, 150, 140)),
        ("building", 11, 2, "construction", (70, 70, 70)),
        ("wall", 12, 3, "construction", (102, 102, 156)),
        ("fence", 13, 4, "construction", (190, 153, 153)),
        ("guard rail", 14, 255, "construction", (180, 165, 180)),
        ("bridge", 15, 255, "construction", (150, 100, 100)),
        ("tunnel", 16, 255, "construction", (150, 120, 90)),
        ("pole", 17, 5, "object", (153, 153, 153)),
        ("polegroup", 18, 255, "object", (153, 153, 153)),
        ("traffic light", 19, 6, "object", (250, 170, 30)),
        ("traffic sign", 20, 7, "object", (220, 220, 0)),
        ("vegetation", 21, 8, "nature", (107, 142, 35)),
        ("terrain", 22, 9, "nature", (152, 251, 152)),
        ("sky", 23, 10, "sky", (70, 130, 180)),
        ("person", 24, 11, "human", (220, 20, 60)),
        ("rider", 25, 12, "human", (255, 0, 0)),
        ("car", 26, 13, "vehicle", (0, 0, 142)),
        ("truck", 27, 14, "vehicle", (0, 0, 70)),
        ("bus", 28, 15, "vehicle", (0, 60, 100)),
        ("caravan", 29, 255, "vehicle", (0, 0, 90)),
        ("trailer", 30, 255, "vehicle", (0, 0, 110)),
        ("train", 31, 16, "vehicle", (0, 80, 100)),
        ("motorcycle", 32, 17, "vehicle", (0, 0, 230)),
        ("bicycle", 33, 18, "vehicle", (119, 11, 32)),
        ("license plate", -1, -1, "vehicle", (0, 0, 142)),
    )
)

NUM_CLASSES = 19
IGNORE_INDEX = 255
_TRAIN = sorted((lab for lab in LABELS if 0 <= lab.train_id < NUM_CLASSES), key=lambda lab: lab.train_id)
TRAIN_CLASS_NAMES: tuple[str, ...] = tuple(lab.name for lab in _TRAIN)
TRAIN_ID_COLORS = np.array([lab.color for lab in _TRAIN], dtype=np.uint8)  # (19, 3)
LABEL_ID_TO_TRAIN_ID = np.full(256, IGNORE_INDEX, dtype=np.uint8)  # lookup table, unknown ids -> 255
for _lab in LABELS:
    if _lab.id >= 0:
        LABEL_ID_TO_TRAIN_ID[_lab.id] = _lab.train_id if _lab.train_id >= 0 else IGNORE_INDEX

GTFINE_ZIP = "gtFine_trainvaltest.zip"
LEFTIMG_ZIP = "leftImg8bit_trainvaltest.zip"
PAIR_SPLITS = ("train", "val")

_GT = re.compile(r"(?:^|/)gtFine/(train|val)/([A-Za-z0-9-]+)/(\2_\d{6}_\d{6})_gtFine_(color|labelIds)\.png$")
_IMG = re.compile(r"(?:^|/)leftImg8bit/(train|val)/([A-Za-z0-9-]+)/(\2_\d{6}_\d{6})_leftImg8bit\.png$")


def label_ids_to_train_ids(ids: np.ndarray) -> np.ndarray:
    """Cityscapes labelIds (any integer array) -> train ids 0..18, 255 for ignored/unknown."""
    ids = np.asarray(ids)
    safe = np.where((ids >= 0) & (ids < 256), ids, 0).astype(np.intp)
    out = LABEL_ID_TO_TRAIN_ID[safe]
    out[(ids < 0) | (ids >= 256)] = IGNORE_INDEX
    return out


def train_ids_to_color(train_ids: np.ndarray) -> np.ndarray:
    """Train-id map (H, W) -> RGB uint8 (H, W, 3) in the Cityscapes colours; ignored = black."""
    train_ids = np.asarray(train_ids)
    out = np.zeros(train_ids.shape + (3,), dtype=np.uint8)
    valid = train_ids < NUM_CLASSES
    out[valid] = TRAIN_ID_COLORS[train_ids[valid]]
    return out


def label_path(root: Path | str, split: str, image: Path | str) -> Path:
    """The full-resolution train-id map of the pair ``image`` (a path or stem) in ``split``."""
    return Path(root) / "labels" / split / f"{Path(image).stem}_gtFine_trainIds.png"


def load_train_ids(path: Path | str) -> np.ndarray:
    """Read a ``*_gtFine_trainIds.png`` as a uint8 (H, W) array (0..18, 255 = ignore)."""
    try:
        with Image.open(path) as im:
            return np.asarray(im, dtype=np.uint8).copy()
    except (OSError, UnidentifiedImageError) as e:
        raise DataError(f"cannot read the label map {path}: {e}") from e


@dataclass
class PreparedCityscapes:
    """What :func:`prepare_cityscapes` built: image counts per split and the lock record."""

    root: Path
    counts: dict[str, int]
    skipped: bool = False
    lock: dict = field(default_factory=dict)


MAX_MEMBER_BYTES = 256 << 20  # one Cityscapes PNG is ~2-3 MB (2048 x 1024)
MAX_MEMBER_RATIO = 100.0  # PNGs do not compress further; a bomb does, by ~1000x


class _Source:
    """Members of one input: an official zip read in place (member by member, streaming), or
    its unzipped folder."""

    def __init__(self, path: Path):
        self.path = path
        self.zip = zipfile.ZipFile(path) if path.is_file() else None

    def names(self) -> list[str]:
        if self.zip is not None:
            return self.zip.namelist()
        return [p.relative_to(self.path.parent).as_posix() for p in self.path.rglob("*.png")]

    def open(self, name: str):
        """A binary stream of member ``name``; DataError (one line) when it is too large or
        compressed suspiciously well (a decompression bomb)."""
        if self.zip is None:
            p = self.path.parent / name
            if p.is_symlink():
                raise DataError(f"{p} is a symbolic link; Cityscapes folders hold plain files only")
            return open(p, "rb")
        info = self.zip.getinfo(name)
        if info.file_size > MAX_MEMBER_BYTES:
            raise DataError(
                f"refusing {name} in {self.path.name}: it unpacks to {info.file_size} bytes, more "
                f"than the {MAX_MEMBER_BYTES} allowed for one image (a decompression bomb?)"
            )
        if info.file_size > (1 << 20) and info.file_size > MAX_MEMBER_RATIO * max(info.compress_size, 1):
            raise DataError(
                f"refusing {name} in {self.path.name}: {info.compress_size} bytes unpack to "
                f"{info.file_size}, more than {MAX_MEMBER_RATIO:g}x (a decompression bomb?)"
            )
        return self.zip.open(info)

    def close(self) -> None:
        if self.zip is not None:
            self.zip.close()


def _open_inputs(zips_dir: Path, root: Path) -> tuple[_Source, _Source]:
    found, missing = [], []
    for zname, folder in ((GTFINE_ZIP, "gtFine"), (LEFTIMG_ZIP, "leftImg8bit")):
        if (zips_dir / zname).is_file():
            found.append(zips_dir / zname)
        elif (zips_dir / folder).is_dir():
            found.append(zips_dir / folder)
        else:
            missing.append(zname)
    if missing:
        raise DataError(
            f"Cityscapes is licence-gated: {' and '.join(missing)} not found in {zips_dir}. Register and "
            f"log in at {CITYSCAPES_DOWNLOADS}, download {GTFINE_ZIP} (241 MB) and {LEFTIMG_ZIP} (11 GB), "
            f"put both in {zips_dir} (do not unzip), then run "
            f"`unetprune data prepare-cityscapes --zips {zips_dir} --root {root}`"
        )
    try:
        return _Source(found[0]), _Source(found[1])
    except zipfile.BadZipFile as e:
        raise DataError(f"{found[0]} or {found[1]} is not a valid zip ({e}); download it again") from e


def _collect_pairs(gt: _Source, img: _Source) -> dict[str, list[tuple[str, dict[str, str]]]]:
    """split -> sorted [(stem, {"color", "labelIds", "photo": member name})]; DataError on gaps."""
    items: dict[tuple[str, str], dict[str, str]] = {}
    for name in gt.names():
        m = _GT.search(name)
        if m:
            items.setdefault((m.group(1), m.group(3)), {})[m.group(4)] = name
    for name in img.names():
        m = _IMG.search(name)
        if m:
            items.setdefault((m.group(1), m.group(3)), {})["photo"] = name
    pairs: dict[str, list] = {s: [] for s in PAIR_SPLITS}
    for (split, stem), parts in sorted(items.items()):
        lacking = [k for k in ("color", "labelIds", "photo") if k not in parts]
        if lacking:
            want = {
                "color": f"gtFine/{split}/…/{stem}_gtFine_color.png",
                "labelIds": f"gtFine/{split}/…/{stem}_gtFine_labelIds.png",
                "photo": f"leftImg8bit/{split}/…/{stem}_leftImg8bit.png",
            }
            raise DataError(
                f"Cityscapes {split} image {stem} is incomplete: "
                f"{', '.join(want[k] for k in lacking)} missing from the zips; "
                f"download them again"
            )
        pairs[split].append((stem, parts))
    for split in PAIR_SPLITS:
        if not pairs[split]:
            raise DataError(
                f"no Cityscapes {split} images found: expected gtFine/{split}/<city>/"
                f"<city>_xxxxxx_yyyyyy_gtFine_color.png in {gt.path.name} and "
                f"leftImg8bit/{split}/<city>/<city>_xxxxxx_yyyyyy_leftImg8bit.png in "
                f"{img.path.name}"
            )
    return pairs


def _decode(src: _Source, name: str) -> Image.Image:
    from .aligned import MAX_PIXELS

    try:
        with src.open(name) as stream, Image.open(stream) as im:
            w, h = im.size
            if w * h > MAX_PIXELS:
                raise DataError(
                    f"refusing {name} in {src.path.name}: {w}x{h} pixels, more than the "
                    f"{MAX_PIXELS} allowed (a decompression bomb?)"
                )
            im.load()
            return im.copy()
    except DataError:
        raise
    except Image.DecompressionBombError as e:
        raise DataError(f"refusing {name} in {src.path.name} as a decompression bomb ({e})") from e
    except (OSError, UnidentifiedImageError, KeyError, zipfile.BadZipFile, ValueError, EOFError) as e:
        raise DataError(f"cannot decode {name} in {src.path.name}: {' '.join(str(e).split())}") from e


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def prepare_cityscapes(
    zips_dir: Path | str,
    root: Path | str,
    *,
    size: int = 256,
    label_side: str = "right",
    force: bool = False,
    hash_inputs: bool = True,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> PreparedCityscapes:
    """Build the pix2pix Cityscapes dataset in ``root`` from the official zips in ``zips_dir``.

    See the module docstring for the layout (A = photo | B = colour label map by default,
    train -> train, val -> val and test) and the label maps.  ``size`` is the side of each
    half (256 as pix2pix).  The result is written to a temporary folder beside ``root`` and
    renamed into place only when complete.  A ``root`` already holding a prepared Cityscapes
    is left alone unless ``force``.  Missing zips raise a DataError saying where to get them.
    """
    if label_side not in ("left", "right"):
        raise DataError(f"label_side must be 'left' or 'right', got {label_side!r}")
    if size < 8:
        raise DataError(f"size must be at least 8, got {size}")
    zips_dir, root = Path(zips_dir), Path(root)
    say = log or (lambda msg: None)
    old = read_lock(root) if root.is_dir() else None
    if root.exists() and not force:
        if old is not None and old.get("dataset") == "cityscapes":
            say(f"cityscapes already prepared at {root}; --force rebuilds it")
            return PreparedCityscapes(root, dict(old.get("splits", {})), skipped=True, lock=old)
        if root.is_file() or any(root.iterdir()):
            raise DataError(
                f"{root} already exists and is not a prepared Cityscapes (no {LOCK_NAME}); "
                f"choose another --root or pass --force to replace it"
            )
    gt, img = _open_inputs(zips_dir, root)
    try:
        pairs = _collect_pairs(gt, img)
        inputs = {}
        if hash_inputs:
            for src in (gt, img):
                if src.zip is not None:
                    say(f"hashing {src.path.name}")
                    inputs[src.path.name] = {"sha256": sha256_file(src.path), "size": src.path.stat().st_size}
        root.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.partial-", dir=root.parent))
        try:
            from tqdm import tqdm

            total = sum(len(v) for v in pairs.values())
            with tqdm(total=total, desc="cityscapes", unit="img", disable=not progress, leave=False) as bar:
                for split, items in pairs.items():
                    (tmp / split).mkdir()
                    (tmp / "labels" / split).mkdir(parents=True)
                    for stem, parts in items:
                        _write_pair(gt, img, parts, tmp / split / f"{stem}.jpg", size, label_side)
                        ids = np.asarray(_decode(gt, parts["labelIds"]))
                        if ids.ndim != 2:
                            raise DataError(f"{parts['labelIds']} is not a single-channel label map")
                        Image.fromarray(label_ids_to_train_ids(ids)).save(
                            label_path(tmp, split, stem), format="PNG"
                        )
                        bar.update(1)
            # Cityscapes test labels are not public: val doubles as the test split.
            for sub in ("", "labels/"):
                (tmp / f"{sub}test").mkdir()
                for f in sorted((tmp / f"{sub}val").iterdir()):
                    _link_or_copy(f, tmp / f"{sub}test" / f.name)
            counts = check_aligned_layout(tmp, splits=("train", "val", "test"))
            a, b = ("photo", "colour label map") if label_side == "right" else ("colour label map", "photo")
            lock = write_lock(
                tmp,
                {
                    "dataset": "cityscapes",
                    "source": f"prepare-cityscapes {zips_dir}",
                    "splits": counts,
                    "inputs": inputs,
                    "size": size,
                    "layout": {
                        "A": a,
                        "B": b,
                        "test": "copy of val",
                        "labels": "labels/<split>/<stem>_gtFine_trainIds.png (19 train ids, 255 ignore)",
                    },
                },
            )
            install_dir(tmp, root)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    finally:
        gt.close()
        img.close()
    return PreparedCityscapes(root, counts, lock=lock)


def _write_pair(
    gt: _Source, img: _Source, parts: dict[str, str], out: Path, size: int, label_side: str
) -> None:
    color = _decode(gt, parts["color"]).convert("RGB")
    photo = _decode(img, parts["photo"]).convert("RGB")
    if color.size != photo.size:
        raise DataError(
            f"{parts['color']} is {color.size[0]}x{color.size[1]} but {parts['photo']} is "
            f"{photo.size[0]}x{photo.size[1]}; the zips do not match"
        )
    # The reference's `.resize((256, 256))` on an RGB image: bicubic in Pillow >= 7.
    color = color.resize((size, size), Image.BICUBIC)
    photo = photo.resize((size, size), Image.BICUBIC)
    left, right = (photo, color) if label_side == "right" else (color, photo)
    pair = Image.new("RGB", (2 * size, size))
    pair.paste(left, (0, 0))
    pair.paste(right, (size, 0))
    pair.save(out, format="JPEG", quality=100, subsampling=0)
