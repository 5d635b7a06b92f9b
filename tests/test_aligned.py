import numpy as np
import pytest
import torch
from PIL import Image

from unetprune.data.aligned import AlignedDataset, DataError, check_aligned_layout, read_aligned, to_uint8


def _write_ab(path, h=8):
    """A = horizontal ramp, B = vertical ramp: crops and flips are recognisable."""
    a = np.zeros((h, h, 3), np.uint8)
    a[..., 0] = np.arange(h)[None, :] * (255 // (h - 1))
    b = np.zeros((h, h, 3), np.uint8)
    b[..., 1] = np.arange(h)[:, None] * (255 // (h - 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate([a, b], axis=1)).save(path)
    return a, b


def test_split_halves_and_direction(tmp_path):
    a, b = _write_ab(tmp_path / "test" / "x.png")
    ds = AlignedDataset(tmp_path, "test", "AtoB", load_size=8, crop_size=8)
    item = ds[0]
    assert item["A"].shape == (3, 8, 8)
    assert np.array_equal(to_uint8(item["A"]), a) and np.array_equal(to_uint8(item["B"]), b)
    assert item["A"].min() >= -1 and item["A"].max() <= 1
    ds_rev = AlignedDataset(tmp_path, "test", "BtoA", load_size=8, crop_size=8)
    assert torch.equal(ds_rev[0]["A"], item["B"]) and torch.equal(ds_rev[0]["B"], item["A"])


def test_train_crop_and_flip_are_shared_and_deterministic(tmp_path):
    for i in range(3):
        _write_ab(tmp_path / "train" / f"{i}.png", h=16)
    ds = AlignedDataset(tmp_path, "train", load_size=20, crop_size=12, seed=3)
    seen_flip = set()
    for epoch in range(6):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            x, y, flip = ds.transform_params(i)
            assert 0 <= x <= 8 and 0 <= y <= 8
            seen_flip.add(flip)
            item = ds[i]
            assert item["A"].shape == (3, 12, 12) and item["B"].shape == (3, 12, 12)
            # A's red channel is a left→right ramp: flipped iff it decreases
            red = to_uint8(item["A"])[..., 0].astype(int)
            assert (red[:, -1] < red[:, 0]).all() == flip
            # the same flip applies to B (its green ramp is vertical, unchanged by a flip)
            # and the same crop: rebuilding by hand gives the same pixels
            a_img, b_img = read_aligned(ds.files[i])
            ref = b_img.resize((20, 20), Image.BICUBIC).crop((x, y, x + 12, y + 12))
            if flip:
                ref = ref.transpose(Image.FLIP_LEFT_RIGHT)
            assert np.array_equal(np.asarray(ref), to_uint8(item["B"]))
    assert seen_flip == {True, False}
    ds.set_epoch(2)
    first = ds[1]["A"]
    ds.set_epoch(5)
    ds.set_epoch(2)
    assert torch.equal(ds[1]["A"], first)  # pure function of (seed, epoch, index)


def test_eval_has_no_crop_no_flip(tmp_path):
    _write_ab(tmp_path / "val" / "0.png", h=16)
    ds = AlignedDataset(tmp_path, "val", load_size=20, crop_size=8)
    assert not ds.train and ds.transform_params(0) == (0, 0, False)
    _, b = read_aligned(ds.files[0])
    assert np.array_equal(to_uint8(ds[0]["B"]), np.asarray(b.resize((8, 8), Image.BICUBIC)))


def test_no_flip_option(tmp_path):
    _write_ab(tmp_path / "train" / "0.png", h=16)
    ds = AlignedDataset(tmp_path, "train", load_size=16, crop_size=16, flip=False)
    flips = []
    for epoch in range(20):
        ds.set_epoch(epoch)
        flips.append(ds.transform_params(0)[2])
    assert not any(flips)


def test_corrupt_image_error_names_file(tmp_path):
    bad = tmp_path / "train" / "broken.png"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    ds = AlignedDataset(tmp_path, "train", load_size=8, crop_size=8)
    with pytest.raises(DataError, match=r"cannot decode image .*broken\.png"):
        ds[0]


def test_wrong_size_error_names_file(tmp_path):
    p = tmp_path / "train" / "square.png"
    p.parent.mkdir(parents=True)
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(p)
    with pytest.raises(DataError, match=r"square\.png: .*width = 2 x height, got 10x10"):
        read_aligned(p)
    with pytest.raises(DataError, match="square.png"):
        check_aligned_layout(tmp_path)


def test_missing_and_empty_split(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        AlignedDataset(tmp_path, "train")
    (tmp_path / "train").mkdir()
    with pytest.raises(DataError, match="holds no images"):
        AlignedDataset(tmp_path, "train")
    with pytest.raises(DataError, match="crop_size"):
        _write_ab(tmp_path / "test" / "0.png")
        AlignedDataset(tmp_path, "test", load_size=8, crop_size=16)
