"""evaluate.fid_backend: pytorch-fid-compat: the FID Inception weights with pytorch-fid's
preprocessing, checked against a direct re-implementation on a synthetic state dict in the released
files' key layout; wrong Inception files give one line naming the file and what was expected."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as nnf
import torchvision
from PIL import Image
from torch import nn
from torchvision.transforms.functional import to_tensor

from unetprune.config import load_config
from unetprune.evaluate import Evaluator
from unetprune.metrics import fid as F
from unetprune.families.pix2pix.unet import UNetSpec, build_generator


def _pt_inception_layout() -> dict[str, tuple[int, ...]]:
    """Keys and shapes of pytorch-fid's pt_inception-2015-12-05 file: torchvision's Inception3 with
    1008 classes and no auxiliary head (what pytorch-fid's fid_inception_v3 loads it into)."""
    net = torchvision.models.inception_v3(
        weights=None, num_classes=1008, aux_logits=False, init_weights=False
    )
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A synthetic FID Inception file in the released layout (seeded Kaiming weights; without the
    BatchNorm ``num_batches_tracked`` counters, as files saved by old PyTorch versions)."""
    state = F._random_inception_state(7)
    layout = _pt_inception_layout()
    assert {
        k: tuple(v.shape) for k, v in state.items()
    } == layout  # one layout: torch-fidelity = pt_inception
    path = tmp_path_factory.mktemp("inception") / F.PYTORCH_FID_WEIGHTS_FILE
    torch.save({k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}, path)
    return path, state


def _reference_features(pngs, state) -> torch.Tensor:
    """pytorch-fid, re-implemented: PIL image → ToTensor (x/255) → F.interpolate(299, bilinear,
    align_corners=False) → 2x-1 → InceptionV3 blocks 0-3 (the same modules, in pytorch-fid's order,
    with its own max-pool and average-pool layers) → (N, 2048)."""
    net = F._inception_cls()
    import io

    empty = io.BytesIO()
    torch.save(state, empty)
    empty.seek(0)
    m = net("ref", ["2048"], feature_extractor_weights_path=empty).eval()
    blocks = nn.Sequential(
        m.Conv2d_1a_3x3,
        m.Conv2d_2a_3x3,
        m.Conv2d_2b_3x3,
        nn.MaxPool2d(kernel_size=3, stride=2),
        m.Conv2d_3b_1x1,
        m.Conv2d_4a_3x3,
        nn.MaxPool2d(kernel_size=3, stride=2),
        m.Mixed_5b,
        m.Mixed_5c,
        m.Mixed_5d,
        m.Mixed_6a,
        m.Mixed_6b,
        m.Mixed_6c,
        m.Mixed_6d,
        m.Mixed_6e,
        m.Mixed_7a,
        m.Mixed_7b,
        m.Mixed_7c,
        nn.AdaptiveAvgPool2d(output_size=(1, 1)),
    )
    x = torch.stack([to_tensor(Image.open(p).convert("RGB")) for p in pngs])
    x = nnf.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
    x = 2 * x - 1
    with torch.no_grad():
        return blocks(x).squeeze(3).squeeze(2)


def test_pytorch_fid_compat_features_equal_reimplementation(weights, tmp_path):
    path, state = weights
    g = torch.Generator().manual_seed(0)
    imgs = torch.randint(0, 256, (2, 3, 40, 56), dtype=torch.uint8, generator=g)
    pngs = []
    for i, im in enumerate(imgs):
        pngs.append(tmp_path / f"{i}.png")
        Image.fromarray(im.permute(1, 2, 0).numpy()).save(pngs[-1])
    ex = F.get_extractor("pytorch-fid-compat", path, device="cpu")
    assert (
        ex.backend == "pytorch-fid-compat" and ex.describe()["preprocessing"] == F.PYTORCH_FID_PREPROCESSING
    )
    ours = F.features_from_uint8(imgs, ex)
    ref = _reference_features(pngs, state).numpy()
    assert ours.shape == (2, 2048)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6)
    # the same weights with torch-fidelity's preprocessing give other features (the comparison can fail)
    tf = F.features_from_uint8(imgs, F.get_extractor("inception-v3-compat", path, device="cpu"))
    assert float(np.abs(tf - ref).mean()) > 1e-3
    # the network input: PyTorch's half-pixel bilinear resize of x/255, then 2x-1
    x = F.pytorch_fid_preprocess(torch.tensor([0, 255], dtype=torch.uint8).expand(1, 3, 2, 2), 4)
    assert x[0, 0, 0].tolist() == [-1.0, -0.5, 0.5, 1.0]


def test_pytorch_fid_compat_in_evaluator_and_torch_fidelity(weights, tiny_demo, tmp_path):
    path, _ = weights
    cfg = load_config(
        None,
        {
            "data": {"root": str(tiny_demo), "crop_size": 32, "load_size": 32},
            "demo": {"image_size": 32},
            "model": {"pix2pix": {"num_downs": 5, "ngf": 8}},
            "evaluate": {
                "fid_backend": "pytorch-fid-compat",
                "inception_weights": str(path),
                "segmentation": "none",
                "noise_seeds": 1,
                "bootstrap": 0,
                "max_images": 2,
            },
        },
    )
    ev = Evaluator(cfg, "test", cache_dir=tmp_path / "cache", latency=False)
    g = build_generator(UNetSpec.reference(num_downs=5, ngf=8), seed=1)
    r = ev.score(g)
    assert r["fid"]["backend"] == "pytorch-fid-compat" and r["kid"]["backend"] == "pytorch-fid-compat"
    assert r["fid"]["extractor"]["preprocessing"] == F.PYTORCH_FID_PREPROCESSING
    assert r["fid"]["real_stats"]["key"].endswith(
        "pytorch-fid-compat-" + r["fid"]["extractor"]["weights_sha256"][:12]
    )
    # torch-fidelity's own folder computation with the registered extractor gives the same FID
    fakes = ev.generate(g)
    for name, imgs in (("fake", fakes), ("real", ev.eval_set.targets)):
        (tmp_path / name).mkdir()
        for i, im in enumerate(imgs):
            Image.fromarray(im.permute(1, 2, 0).numpy()).save(tmp_path / name / f"{i}.png")
    ref = F.fidelity_folder_metrics(tmp_path / "fake", tmp_path / "real", ev.metrics["fid"].extractor)
    assert r["fid"]["value"] == pytest.approx(ref["frechet_inception_distance"], rel=1e-5)
    with pytest.raises(F.FIDError, match="pytorch-fid-compat, standin"):
        F.get_extractor("pytorch-fid", path)


def _shapes_only(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same keys and shapes, stored in a few bytes (stride-0 views of one zero)."""
    return {k: (torch.zeros((), dtype=v.dtype).expand(v.shape) if v.dim() else v) for k, v in state.items()}


@pytest.mark.parametrize("backend", ["inception-v3-compat", "pytorch-fid-compat"])
def test_wrong_inception_files_give_one_line(tmp_path, backend):
    imagenet = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False)
    bad = tmp_path / "inception_v3_google.pth"
    torch.save(_shapes_only(imagenet.state_dict()), bad)
    with pytest.raises(F.FIDError) as e:
        F.get_extractor(backend, bad)
    msg = str(e.value)
    assert "\n" not in msg and str(bad) in msg and "evaluate.inception_weights" in msg
    assert "is not the 2015-12-05 FID Inception-v3" in msg and F.PYTORCH_FID_WEIGHTS_FILE in msg
    assert "torchvision's ImageNet Inception-v3 (1000 classes, AuxLogits)" in msg
    assert "wrong shapes (e.g. fc.weight: (1000, 2048), expected (1008, 2048))" in msg
    partial = tmp_path / "partial.pth"
    state = F._random_inception_state(0)
    torch.save(_shapes_only({k: v for k, v in state.items() if not k.startswith("Mixed_7c.")}), partial)
    with pytest.raises(
        F.FIDError, match=r"partial\.pth .*: 45 missing keys \(e\.g\. Mixed_7c\.branch1x1\.conv\.weight\)$"
    ):
        F.get_extractor(backend, partial)
