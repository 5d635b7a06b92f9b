"""FID/KID: the fast in-memory path against torch-fidelity's own folder computation,
sanity values, caching and error messages.  All on the offline stand-in backend."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from unetprune.data.aligned import AlignedDataset, DataError, read_aligned, to_uint8
from unetprune.data.demo import build_demo_dataset
from unetprune.metrics import fid as F
from unetprune.models.unet import UNetSpec, build_generator


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    return tmp_path_factory.getbasetemp() / "fid-cache"  # stand-in weights shared across modules


@pytest.fixture(scope="module")
def extractor(weights_dir):
    return F.get_extractor("standin", seed=0, device="cpu", cache_dir=weights_dir)


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    build_demo_dataset(root, image_size=32, n_train=4, n_val=8, n_test=16, progress=False)
    return root


def _real_uint8(root, split):
    """Target photos (B halves) straight from the files, as uint8 (N, 3, H, W)."""
    ds = AlignedDataset(root, split, "AtoB", load_size=32, crop_size=32, train=False)
    arrs = [np.asarray(read_aligned(f)[1], dtype=np.uint8) for f in ds.files]
    return torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).contiguous(), ds


def _save(img_chw_uint8, path):
    Image.fromarray(img_chw_uint8.permute(1, 2, 0).numpy()).save(path)


def test_quantize_equals_png_roundtrip(tmp_path):
    torch.manual_seed(0)
    x = torch.rand(4, 3, 16, 16) * 2.4 - 1.2  # includes out-of-range values
    q = F.quantize_uint8(x)
    for i in range(4):
        ref = to_uint8(x[i])  # the project's PNG quantisation
        assert np.array_equal(q[i].permute(1, 2, 0).numpy(), ref)
        _save(q[i], tmp_path / f"{i}.png")
        back = np.asarray(Image.open(tmp_path / f"{i}.png"))
        assert np.array_equal(back, ref)


def test_fast_path_equals_torch_fidelity_folders(tmp_path, demo_root, extractor):
    """Acceptance: in-memory FID/KID == torch-fidelity on PNG folders (same weights), 1e-3 rel."""
    real, ds = _real_uint8(demo_root, "test")
    g = build_generator(UNetSpec.reference(num_downs=5, ngf=8), seed=1).eval()
    inputs = [ds[i]["A"][None] for i in range(len(ds))]

    fake_feats = F.features_from_generator(g, inputs, extractor, batch_size=8)
    real_stats, _ = F.real_stats(real, extractor, dataset="demo", split="test", direction="AtoB",
                                    image_size=32, files=ds.files, cache_dir=tmp_path / "stats")
    fast_fid = F.fid_from_stats(F.FeatureStats.from_features(fake_feats), real_stats)
    fast_kid = F.kid_from_features(fake_feats, real_stats.features, seed=0)

    # the straightforward path: generator → tensor2im → PNG files; real photos → PNG files
    (tmp_path / "fake").mkdir()
    (tmp_path / "real").mkdir()
    with torch.no_grad():
        for i, x in enumerate(inputs):
            Image.fromarray(to_uint8(g(x)[0])).save(tmp_path / "fake" / f"{i:03d}.png")
    for i in range(len(real)):
        _save(real[i], tmp_path / "real" / f"{i:03d}.png")
    ref = F.fidelity_folder_metrics(tmp_path / "fake", tmp_path / "real", extractor, kid=True, seed=0)

    assert fast_fid > 1.0
    assert fast_fid == pytest.approx(ref["frechet_inception_distance"], rel=1e-3)
    assert fast_kid["mean"] == pytest.approx(ref["kernel_inception_distance_mean"], rel=1e-3)
    # features from the folder through our own reader are the same as well
    assert np.allclose(F.features_from_folder(tmp_path / "fake", extractor), fake_feats, rtol=1e-4, atol=1e-5)


def test_fid_self_zero_and_noise_large(demo_root, extractor):
    real, _ = _real_uint8(demo_root, "test")
    val, _ = _real_uint8(demo_root, "val")
    f_real = F.features_from_uint8(real, extractor)
    g = torch.Generator().manual_seed(0)
    noise = torch.randint(0, 256, real.shape, generator=g, dtype=torch.uint8)
    f_noise = F.features_from_uint8(noise, extractor)
    f_val = F.features_from_uint8(val, extractor)
    self_fid = F.fid_from_features(f_real, f_real)
    other = F.fid_from_features(f_real, f_val)
    noisy = F.fid_from_features(f_real, f_noise)
    assert abs(self_fid) < 1e-6 * max(noisy, 1.0)
    assert noisy > 3 * other > 0
    assert F.kid_from_features(f_real, f_noise)["mean"] > F.kid_from_features(f_real, f_val)["mean"]


@pytest.mark.parametrize("n", [12, 40])
def test_trace_term_matches_torch_fidelity_formula(n):
    """Both factor routes (n <= D: features, n > D: eigh) equal torch-fidelity's eigvals formula."""
    from torch_fidelity.metric_fid import fid_statistics_to_metric

    rng = np.random.default_rng(n)
    a = rng.standard_normal((n, 24)).astype(np.float32)
    b = (rng.standard_normal((n, 24)) * 1.5 + 0.3).astype(np.float32)
    ours = F.fid_from_features(a, b)
    sa, sb = F.FeatureStats.from_features(a), F.FeatureStats.from_features(b)
    ref = fid_statistics_to_metric({"mu": sa.mu, "sigma": sa.sigma}, {"mu": sb.mu, "sigma": sb.sigma}, False)
    assert ours == pytest.approx(ref["frechet_inception_distance"], rel=1e-6)
    only_stats = F.FeatureStats(None, sa.mu, sa.sigma)  # no features: the eigh factor
    assert F.fid_from_stats(only_stats, sb) == pytest.approx(ours, rel=1e-8)


def test_standin_weights_deterministic_and_not_collapsed(tmp_path, weights_dir, extractor):
    p0 = F.standin_weights(0, weights_dir)
    again = F.standin_weights(0, tmp_path / "other")
    p1 = F.standin_weights(1, tmp_path / "other")
    assert F.file_sha256(p0) == F.file_sha256(again) != F.file_sha256(p1)
    assert extractor.describe()["backend"] == "standin"
    assert extractor.describe()["seed"] == 0
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    feats = F.features_from_uint8(x, extractor)
    assert feats.shape == (4, 2048)
    assert feats.std(0).mean() > 1e-3  # a default-initialised Inception collapses here


def test_real_stats_cache_hit_and_key(tmp_path, demo_root, extractor):
    real, ds = _real_uint8(demo_root, "test")
    kw = {"dataset": "demo", "split": "test", "direction": "AtoB", "image_size": 32, "cache_dir": tmp_path}
    s1, i1 = F.real_stats(real, extractor, files=ds.files, **kw)
    calls = []
    s2, i2 = F.real_stats(lambda: calls.append(1) or real, extractor, files=ds.files, **kw)
    assert not i1["cache_hit"] and i2["cache_hit"] and not calls
    assert np.array_equal(s1.mu, s2.mu)
    _, i3 = F.real_stats(real[:8], extractor, files=ds.files[:8], **kw)
    assert i3["key"] != i1["key"] and "-n8-" in i3["key"] and not i3["cache_hit"]
    assert (tmp_path / f"{i1['key']}.json").is_file()


def test_check_same_backend():
    a = {"fid": {"backend": "standin", "extractor": {"weights_sha256": "x"}, "image_size": 32}}
    b = {"fid": {"backend": "inception-v3-compat", "extractor": {"weights_sha256": "y"}, "image_size": 32}}
    assert F.check_same_backend([a, a]) == "standin"
    with pytest.raises(F.FIDError, match="different backends"):
        F.check_same_backend([a, b])


def test_missing_inception_weight_file_is_named(tmp_path):
    missing = tmp_path / "weights-inception-2015-12-05-6726825d.pth"
    with pytest.raises(F.FIDError, match="evaluate.inception_weights") as e:
        F.get_extractor("inception-v3-compat", weights=missing)
    assert str(missing) in str(e.value)


def test_offline_inception_download_error_says_what_to_do(monkeypatch):
    import urllib.error

    import torch_fidelity.feature_extractor_inceptionv3 as fi

    def offline(*a, **k):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(fi, "load_state_dict_from_url", offline)
    with pytest.raises(F.FIDError, match="evaluate.inception_weights.*standin|standin"):
        F.get_extractor("inception-v3-compat", weights=None)


def test_unknown_backend_names_key():
    with pytest.raises(F.FIDError, match="evaluate.fid_backend"):
        F.get_extractor("vgg", device="cpu")


def test_empty_folder_and_mismatched_sizes(tmp_path, extractor):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no images"):
        F.features_from_folder(tmp_path / "empty", extractor)
    (tmp_path / "mixed").mkdir()
    Image.new("RGB", (32, 32)).save(tmp_path / "mixed" / "a.png")
    Image.new("RGB", (40, 32)).save(tmp_path / "mixed" / "b.png")
    with pytest.raises(DataError, match="b.png is 40x32"):
        F.features_from_folder(tmp_path / "mixed", extractor)
