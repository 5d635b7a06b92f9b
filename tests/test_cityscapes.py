"""Cityscapes preparation on miniature official zips: pair layout, colours and train ids."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unetprune.cli import main
from unetprune.data.aligned import DataError, read_aligned
from unetprune.data.cityscapes import (
    GTFINE_ZIP,
    LABEL_ID_TO_TRAIN_ID,
    LEFTIMG_ZIP,
    TRAIN_CLASS_NAMES,
    TRAIN_ID_COLORS,
    label_ids_to_train_ids,
    label_path,
    load_train_ids,
    prepare_cityscapes,
    train_ids_to_color,
)
from unetprune.data.fetch import LOCK_NAME, read_lock, sha256_file, verify_dataset

# labelId -> colour (cityscapesScripts labels.py), for the ids the miniature uses
COLOR = {
    1: (0, 0, 0),
    7: (128, 64, 128),
    9: (250, 170, 160),
    23: (70, 130, 180),
    26: (0, 0, 142),
    33: (119, 11, 32),
}
IMAGES = {  # split -> [(city, stem, photo left colour, photo right colour)]
    "train": [
        ("aachen", "aachen_000000_000019", (200, 30, 30), (30, 30, 200)),
        ("bochum", "bochum_000000_000313", (30, 200, 30), (220, 220, 40)),
    ],
    "val": [("frankfurt", "frankfurt_000000_000294", (90, 90, 90), (250, 250, 250))],
}


def label_ids() -> np.ndarray:
    """64x32 labelIds: road left, sky top-right, car bottom-right, an ego-vehicle strip at
    x<4, a bicycle block and a parking block."""
    ids = np.full((32, 64), 7, dtype=np.uint8)
    ids[:16, 32:] = 23
    ids[16:, 32:] = 26
    ids[:, :4] = 1
    ids[28:, 40:44] = 33
    ids[28:, 20:24] = 9
    return ids


def _png(arr: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    im = Image.fromarray(arr)
    (im.convert(mode) if mode else im).save(buf, format="PNG")
    return buf.getvalue()


def make_zips(folder: Path, skip_photo: str | None = None) -> Path:
    """The two official zips in miniature, with the official member names (plus files to ignore)."""
    folder.mkdir(parents=True, exist_ok=True)
    ids = label_ids()
    color = np.zeros((32, 64, 3), dtype=np.uint8)
    for i, c in COLOR.items():
        color[ids == i] = c
    with zipfile.ZipFile(folder / GTFINE_ZIP, "w") as gz, zipfile.ZipFile(folder / LEFTIMG_ZIP, "w") as lz:
        gz.writestr("license.txt", "miniature")
        lz.writestr("license.txt", "miniature")
        for split, items in IMAGES.items():
            for city, stem, left, right in items:
                base = f"gtFine/{split}/{city}/{stem}_gtFine"
                gz.writestr(f"{base}_color.png", _png(color, "RGBA"))  # official colour maps are RGBA
                gz.writestr(f"{base}_labelIds.png", _png(ids))
                gz.writestr(f"{base}_instanceIds.png", _png(ids.astype(np.uint16) * 1000))
                gz.writestr(f"{base}_polygons.json", "{}")
                if stem != skip_photo:
                    photo = np.zeros((32, 64, 3), dtype=np.uint8)
                    photo[:, :32], photo[:, 32:] = left, right
                    lz.writestr(f"leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png", _png(photo))
        gz.writestr("gtFine/test/berlin/berlin_000000_000019_gtFine_labelIds.png", _png(ids))  # ignored
        lz.writestr("leftImg8bit/test/berlin/berlin_000000_000019_leftImg8bit.png", _png(color))
    return folder


def _near(pixel, expected, tol=3) -> bool:
    return all(abs(int(a) - int(b)) <= tol for a, b in zip(pixel, expected))


def test_tables_match_cityscapes_scripts():
    assert len(TRAIN_CLASS_NAMES) == 19
    assert TRAIN_CLASS_NAMES[0] == "road" and TRAIN_CLASS_NAMES[18] == "bicycle"
    assert [int(LABEL_ID_TO_TRAIN_ID[i]) for i in (0, 6, 7, 8, 9, 11, 17, 23, 24, 26, 29, 31, 33)] == [
        255,
        255,
        0,
        1,
        255,
        2,
        5,
        10,
        11,
        13,
        255,
        16,
        18,
    ]
    assert sum(int(v) < 19 for v in LABEL_ID_TO_TRAIN_ID) == 19
    assert TRAIN_ID_COLORS[13].tolist() == [0, 0, 142] and TRAIN_ID_COLORS[10].tolist() == [70, 130, 180]
    assert label_ids_to_train_ids(np.array([[7, 26], [-1, 300]])).tolist() == [[0, 13], [255, 255]]
    assert train_ids_to_color(np.array([[0, 255]])).tolist() == [[[128, 64, 128], [0, 0, 0]]]


def test_prepare_builds_pairs_labels_and_lock(tmp_path):
    zips = make_zips(tmp_path / "zips")
    root = tmp_path / "data" / "cityscapes"
    res = prepare_cityscapes(zips, root, progress=False)
    assert res.counts == {"train": 2, "val": 1, "test": 1}
    assert sorted(p.name for p in (root / "train").iterdir()) == [
        "aachen_000000_000019.jpg",
        "bochum_000000_000313.jpg",
    ]
    assert sorted(p.name for p in (root / "test").iterdir()) == ["frankfurt_000000_000294.jpg"]
    assert (root / "test/frankfurt_000000_000294.jpg").read_bytes() == (
        root / "val/frankfurt_000000_000294.jpg"
    ).read_bytes()
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["cityscapes"]  # no temp folder left

    # the pair: A (left) = photo, B (right) = colour label map, each 256x256, as pix2pix's script
    a, b = read_aligned(root / "train/bochum_000000_000313.jpg")
    assert a.size == b.size == (256, 256)
    a, b = np.asarray(a), np.asarray(b)
    assert _near(a[128, 64], (30, 200, 30)) and _near(a[128, 200], (220, 220, 40))  # photo halves
    assert _near(b[128, 64], (128, 64, 128))  # road
    assert _near(b[32, 224], (70, 130, 180))  # sky
    assert _near(b[224, 224], (0, 0, 142))  # car
    assert _near(b[128, 4], (0, 0, 0))  # ego vehicle (x < 4 of 64 -> x < 16 of 256)

    # the full-resolution train-id map of the same image
    lab = load_train_ids(label_path(root, "train", root / "train/bochum_000000_000313.jpg"))
    assert lab.shape == (32, 64) and lab.dtype == np.uint8
    assert lab[10, 10] == 0 and lab[5, 50] == 10 and lab[25, 50] == 13  # road, sky, car
    assert lab[30, 41] == 18 and lab[30, 21] == 255 and lab[0, 0] == 255  # bicycle, parking, ego vehicle
    assert set(np.unique(lab).tolist()) == {0, 10, 13, 18, 255}
    assert np.array_equal(
        load_train_ids(label_path(root, "test", "frankfurt_000000_000294")),
        label_ids_to_train_ids(label_ids()),
    )

    lock = read_lock(root)
    assert lock["dataset"] == "cityscapes" and lock["splits"] == {"train": 2, "val": 1, "test": 1}
    assert lock["inputs"] == {
        GTFINE_ZIP: {"sha256": sha256_file(zips / GTFINE_ZIP), "size": (zips / GTFINE_ZIP).stat().st_size},
        LEFTIMG_ZIP: {"sha256": sha256_file(zips / LEFTIMG_ZIP), "size": (zips / LEFTIMG_ZIP).stat().st_size},
    }
    assert lock["layout"]["A"] == "photo" and lock["layout"]["B"] == "colour label map"
    assert verify_dataset(root, name="cityscapes")["tree_sha256"] == lock["tree_sha256"]
    assert prepare_cityscapes(zips, root, progress=False).skipped


def test_label_side_left_puts_label_map_in_a(tmp_path):
    zips = make_zips(tmp_path / "zips")
    root = tmp_path / "cs"
    prepare_cityscapes(zips, root, label_side="left", size=64, hash_inputs=False, progress=False)
    a, b = (np.asarray(x) for x in read_aligned(root / "val/frankfurt_000000_000294.jpg"))
    assert a.shape == (64, 64, 3)
    assert _near(a[32, 16], (128, 64, 128)) and _near(b[32, 8], (90, 90, 90))
    assert read_lock(root)["layout"]["A"] == "colour label map"


def test_unzipped_folders_work_too(tmp_path):
    zips = make_zips(tmp_path / "zips")
    for z in (GTFINE_ZIP, LEFTIMG_ZIP):
        with zipfile.ZipFile(zips / z) as zf:
            zf.extractall(tmp_path / "unzipped")
    res = prepare_cityscapes(tmp_path / "unzipped", tmp_path / "cs", size=32, progress=False)
    assert res.counts == {"train": 2, "val": 1, "test": 1} and res.lock["inputs"] == {}


def test_missing_zips_say_where_to_get_them(tmp_path):
    (tmp_path / "zips").mkdir()
    with pytest.raises(DataError) as exc:
        prepare_cityscapes(tmp_path / "zips", tmp_path / "cs", progress=False)
    msg = str(exc.value)
    assert "gtFine_trainvaltest.zip and leftImg8bit_trainvaltest.zip not found in" in msg
    assert "https://www.cityscapes-dataset.com/downloads/" in msg
    assert f"put both in {tmp_path / 'zips'}" in msg
    assert not (tmp_path / "cs").exists()


def test_incomplete_zips_named_and_nothing_left(tmp_path):
    zips = make_zips(tmp_path / "zips", skip_photo="bochum_000000_000313")
    with pytest.raises(
        DataError,
        match=r"Cityscapes train image bochum_000000_000313 is incomplete: "
        r"leftImg8bit/train/…/bochum_000000_000313_leftImg8bit.png "
        r"missing",
    ):
        prepare_cityscapes(zips, tmp_path / "out" / "cs", progress=False)
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_cli_prepare_cityscapes(tmp_path, capsys):
    zips = make_zips(tmp_path / "zips")
    root = tmp_path / "cs"
    assert (
        main(
            [
                "data",
                "prepare-cityscapes",
                "--zips",
                str(zips),
                "--root",
                str(root),
                "--size",
                "32",
                "--no-progress",
            ]
        )
        == 0
    )
    assert capsys.readouterr().out == (
        f"cityscapes prepared at {root}: train 2, val 1, test 1 pairs; label maps in {root / 'labels'}\n"
    )
    assert (root / LOCK_NAME).is_file()
    assert (
        main(
            [
                "data",
                "prepare-cityscapes",
                "--zips",
                str(tmp_path / "none"),
                "--root",
                str(tmp_path / "x"),
                "--no-progress",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("unetprune data: error: Cityscapes is licence-gated") and err.count("\n") == 1
