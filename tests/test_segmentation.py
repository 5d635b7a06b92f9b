"""mIoU: hand-computed confusion, the demo scorer, the DRN-D architecture and the
Cityscapes protocol's resizing/ignore handling (with a stub segmenter)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from unetprune.data.aligned import AlignedDataset, read_aligned
from unetprune.data.demo import build_demo_dataset
from unetprune.metrics import segmentation as S
from unetprune.metrics.drn import DRNSeg, bilinear_up_weight


def test_miou_hand_computed_with_ignore():
    target = np.array([[0, 0, 1, 1], [2, 2, 255, 255]])
    pred = np.array([[0, 1, 1, 1], [2, 0, 2, 1]])
    r = S.summarize(S.confusion(pred, target, n_classes=3))
    # class 0: TP 1, FP 1 (pixel 5), FN 1 (pixel 1) -> 1/3; class 1: TP 2, FP 1 -> 2/3; class 2: TP 1, FN 1 -> 1/2
    assert r["per_class_iou"] == pytest.approx([1 / 3, 2 / 3, 1 / 2])
    assert r["miou"] == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert r["pixel_accuracy"] == pytest.approx(4 / 6)
    # a class absent from target and prediction is NaN (null in JSON) and not averaged
    r4 = S.summarize(S.confusion(pred, target, n_classes=4))
    assert r4["per_class_iou"][3] is None and r4["miou"] == pytest.approx(r["miou"])


@pytest.fixture(scope="module")
def demo_test(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    build_demo_dataset(root, image_size=32, n_train=2, n_val=1, n_test=6, progress=False)
    ds = AlignedDataset(root, "test", "AtoB", load_size=32, crop_size=32, train=False)
    pairs = [read_aligned(f) for f in ds.files]
    labels = np.stack([np.asarray(a, dtype=np.uint8) for a, _ in pairs])
    photos = np.stack([np.asarray(b, dtype=np.uint8) for _, b in pairs])
    return labels, photos


def test_demo_ground_truth_scores_one_and_noise_low(demo_test):
    labels, photos = demo_test
    gt = S.demo_miou(photos, labels, n_classes=8)
    assert gt["miou"] == pytest.approx(1.0)
    assert gt["name"] == "demo" and "label_photo" in gt["protocol"]
    noise = np.random.default_rng(0).integers(0, 256, photos.shape, dtype=np.uint8)
    bad = S.demo_miou(noise, labels, n_classes=8)
    assert bad["miou"] < 0.3
    # CHW tensors work the same
    chw = S.demo_miou(
        torch.from_numpy(photos).permute(0, 3, 1, 2), torch.from_numpy(labels).permute(0, 3, 1, 2), 8
    )
    assert chw["miou"] == pytest.approx(1.0)


def test_drn_d_105_layout_matches_published_weights_names():
    m = DRNSeg("drn_d_105", classes=19)
    sd = m.state_dict()
    assert sd["base.0.0.weight"].shape == (16, 3, 7, 7)
    assert sd["base.2.0.weight"].shape == (32, 16, 3, 3)
    assert sd["base.3.0.downsample.0.weight"].shape == (256, 32, 1, 1)
    assert sd["base.5.22.conv3.weight"].shape == (1024, 256, 1, 1)  # 23 blocks in stage 5
    assert "base.5.23.conv1.weight" not in sd
    assert sd["base.6.0.downsample.0.weight"].shape == (2048, 1024, 1, 1)
    assert sd["base.7.0.weight"].shape == (512, 2048, 3, 3)
    assert sd["base.8.0.weight"].shape == (512, 512, 3, 3)
    assert sd["seg.weight"].shape == (19, 512, 1, 1) and sd["up.weight"].shape == (19, 1, 16, 16)
    assert m.base[5][1].conv2.dilation == (2, 2) and m.base[6][1].conv2.dilation == (4, 4)
    assert m.base[7][0].dilation == (2, 2)


def test_drn_forward_shape_and_bilinear_up():
    m = DRNSeg("drn_d_22", classes=19).eval()
    with torch.no_grad():
        logp, scores = m(torch.randn(1, 3, 32, 32))
    assert logp.shape == (1, 19, 32, 32) and scores.shape == (1, 19, 4, 4)
    assert torch.allclose(logp.exp().sum(1), torch.ones(1, 32, 32), atol=1e-5)
    w = bilinear_up_weight(1)[0, 0]
    assert w.max() == pytest.approx((15 / 16) ** 2) and torch.allclose(w, w.T)
    assert w.sum() == pytest.approx(64.0)  # an 8x bilinear kernel


def test_load_drn_errors_name_key_and_file(tmp_path):
    with pytest.raises(S.SegmentationError, match="evaluate.drn_weights.*drn-d-105_ms_cityscapes.pth"):
        S.load_drn(None)
    missing = tmp_path / "drn-d-105_ms_cityscapes.pth"
    with pytest.raises(S.SegmentationError, match="evaluate.drn_weights") as e:
        S.load_drn(missing)
    assert str(missing) in str(e.value)
    torch.save({"module.seg.weight": torch.zeros(19, 512, 1, 1)}, missing)
    with pytest.raises(S.SegmentationError, match="not a drn_d_105"):
        S.load_drn(missing)


def test_load_drn_accepts_dataparallel_prefix(tmp_path):
    src = DRNSeg("drn_d_105")
    path = tmp_path / "drn.pth"
    torch.save({f"module.{k}": v for k, v in src.state_dict().items()}, path)
    m = S.load_drn(path)
    assert torch.equal(m.seg.weight, src.seg.weight) and not m.training


class _RedThreshold(nn.Module):
    """Stub segmenter: class 1 where the (normalised) red channel is high, else class 0."""

    def forward(self, x):
        p1 = (x[:, :1] > 0).float()
        logits = torch.cat([1 - p1, p1, torch.zeros_like(p1).expand(-1, 17, -1, -1)], 1) * 10
        return torch.log_softmax(logits, 1), logits


def _cityscapes(photos, labels, label_source=S.FULL_RES_LABELS):
    scorer = S.CityscapesScorer(_RedThreshold())
    scorer.update(photos, labels)
    return scorer.result(label_source)


def test_cityscapes_scorer_resizes_to_label_size_and_ignores_255():
    photo = torch.zeros(1, 3, 8, 8, dtype=torch.uint8)
    photo[:, 0, :, 4:] = 255  # right half red -> class 1
    label = np.zeros((16, 16), dtype=np.uint8)
    label[:, 8:] = 1
    label[0, :] = 255  # ignored row
    r = _cityscapes(photo, [label])
    assert r["per_class_iou"][0] == pytest.approx(1.0) and r["per_class_iou"][1] == pytest.approx(1.0)
    assert r["miou"] == pytest.approx(1.0) and r["n_classes"] == 19 and r["n_classes_present"] == 2
    assert "GAN Compression" in r["protocol"] and "DEVIATION" not in r["protocol"]
    assert r["class_names"][0] == "road" and len(r["class_names"]) == 19
    wrong = np.ones((16, 16), dtype=np.uint8)
    r2 = _cityscapes(photo, [wrong], label_source="input colour label maps")
    assert r2["per_class_iou"][1] == pytest.approx(0.5) and "DEVIATION" in r2["protocol"]
    assert math.isclose(r2["miou"], 0.25)


def test_colour_to_train_ids():
    img = np.array([[[128, 64, 128], [0, 0, 142], [0, 0, 0], [119, 11, 32]]], dtype=np.uint8)
    assert S.colour_to_train_ids(img).tolist() == [[0, 13, 255, 18]]
    noisy = (img.astype(int) + 3).clip(0, 255).astype(np.uint8)  # JPEG-like perturbation
    assert S.colour_to_train_ids(noisy).tolist() == [[0, 13, 255, 18]]
