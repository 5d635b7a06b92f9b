import hashlib

import numpy as np
from PIL import Image

from unetprune.data.aligned import check_aligned_layout, read_aligned
from unetprune.data.demo import PALETTE, SPLIT_PHOTOS, build_demo_dataset, decode_labels, label_photo


def _digest(root):
    h = hashlib.sha256()
    for f in sorted(root.rglob("*.png")):
        h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()


def test_layout_counts_and_disjoint_sources(tiny_demo):
    assert check_aligned_layout(tiny_demo, ("train", "val", "test")) == {"train": 6, "val": 2, "test": 4}
    names = {s: {f.stem.split("_", 2)[2] for f in (tiny_demo / s).glob("*.png")} for s in ("train", "test")}
    assert names["train"] <= set(SPLIT_PHOTOS["train"]) and names["test"] <= set(SPLIT_PHOTOS["test"])
    assert not set(SPLIT_PHOTOS["train"]) & set(SPLIT_PHOTOS["test"])
    assert not set(SPLIT_PHOTOS["val"]) & (set(SPLIT_PHOTOS["train"]) | set(SPLIT_PHOTOS["test"]))


def test_deterministic_from_seed(tmp_path, tiny_demo):
    build_demo_dataset(tmp_path / "a", image_size=32, n_train=6, n_val=2, n_test=4, progress=False)
    assert _digest(tmp_path / "a") == _digest(tiny_demo)
    build_demo_dataset(tmp_path / "b", image_size=32, n_train=6, n_val=2, n_test=4, seed=99, progress=False)
    assert _digest(tmp_path / "b") != _digest(tiny_demo)


def test_labels_are_the_labeller_of_the_photo(tiny_demo):
    """A is exactly label_photo(B) drawn in the palette: a real labels→photo task whose
    ground truth can be re-scored offline."""
    for f in sorted((tiny_demo / "test").glob("*.png")):
        a, b = (np.asarray(x) for x in read_aligned(f))
        labels = decode_labels(a)
        assert {tuple(c) for c in a.reshape(-1, 3)} <= {tuple(c) for c in PALETTE[:8]}
        assert np.array_equal(labels, label_photo(b, 8))


def test_labeller_classes_mean_colours():
    dark = np.full((16, 16, 3), 5, np.uint8)
    bright = np.full((16, 16, 3), 250, np.uint8)
    green = np.zeros((16, 16, 3), np.uint8)
    green[..., 1] = 160
    blue = np.zeros((16, 16, 3), np.uint8)
    blue[..., 2] = 200
    assert (label_photo(dark) == 0).all() and (label_photo(bright) == 1).all()
    assert (label_photo(green) == 5).all() and (label_photo(blue) == 6).all()


def test_demo_images_are_not_trivial(tiny_demo):
    f = sorted((tiny_demo / "train").glob("*.png"))[0]
    img = np.asarray(Image.open(f))
    assert img.shape == (32, 64, 3)
    assert img[:, 32:].std() > 5  # a real photo crop, not a flat colour
