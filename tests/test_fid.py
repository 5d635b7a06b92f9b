"""FID/KID: the Evaluator's in-memory path against torch-fidelity's own computation on PNG
folders of the same images, sanity values, caching and error messages.  All on the offline
stand-in backend."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from unetprune.config import load_config
from unetprune.data.aligned import AlignedDataset, from_uint8, quantize_uint8, read_aligned, to_uint8
from unetprune.data.demo import build_demo_dataset
from unetprune.devices import DeviceError
from unetprune.evaluate import Evaluator
from unetprune.metrics import fid as F
from unetprune.families.pix2pix.unet import UNetSpec, build_generator


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


def _fid(f1, f2):
    return F.fid_from_stats(F.FeatureStats.from_features(f1), F.FeatureStats.from_features(f2))


def test_quantize_equals_png_roundtrip(tmp_path):
    torch.manual_seed(0)
    x = torch.rand(4, 3, 16, 16) * 2.4 - 1.2  # includes out-of-range values
    q = quantize_uint8(x)
    assert q.dtype == torch.uint8 and int(q.min()) == 0 and int(q.max()) == 255
    for i in range(4):
        ref = to_uint8(x[i])  # the single-image entry point (PNG writer, sample grids)
        assert np.array_equal(q[i].permute(1, 2, 0).numpy(), ref)
        _save(q[i], tmp_path / f"{i}.png")
        back = np.asarray(Image.open(tmp_path / f"{i}.png"))
        assert np.array_equal(back, ref)
    u8 = torch.randint(0, 256, (2, 3, 5, 5), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(quantize_uint8(from_uint8(u8)), u8)  # exact round trip


def test_evaluator_fid_kid_equal_torch_fidelity_on_png_folders(tmp_path, demo_root, weights_dir):
    """Acceptance: the FID/KID that `Evaluator.score` reports (in memory: generation loop →
    uint8 → batched features → cached real statistics → nuclear-norm trace) equal torch-fidelity's
    own folder computation on PNG files of the very same uint8 images, same extractor weights."""
    cfg = load_config(
        None,
        {
            "data": {"root": str(demo_root), "crop_size": 32, "load_size": 32},
            "demo": {"image_size": 32},
            "model": {"pix2pix": {"num_downs": 5, "ngf": 8}},
            "evaluate": {"fid_backend": "standin", "segmentation": "none"},
        },
    )
    ev = Evaluator(cfg, "test", cache_dir=weights_dir, latency=False)
    g = build_generator(UNetSpec.reference(num_downs=5, ngf=8), seed=1)
    result = ev.score(g)
    fakes, real = ev.generate(g), ev.eval_set.targets
    assert result["fid"]["n_images"] == len(fakes) == len(real) == 16

    (tmp_path / "fake").mkdir()
    (tmp_path / "real").mkdir()
    for i in range(len(fakes)):
        _save(fakes[i], tmp_path / "fake" / f"{i:03d}.png")
        _save(real[i], tmp_path / "real" / f"{i:03d}.png")
    # the real PNGs are the dataset's target halves, pixel for pixel
    assert np.array_equal(
        np.asarray(Image.open(tmp_path / "real" / "000.png")),
        np.asarray(read_aligned(ev.eval_set.files[0])[1]),
    )
    ref = F.fidelity_folder_metrics(
        tmp_path / "fake", tmp_path / "real", ev.metrics["fid"].extractor, kid=True, seed=cfg["seed"]
    )

    assert result["fid"]["value"] > 1.0
    assert result["fid"]["value"] == pytest.approx(ref["frechet_inception_distance"], rel=1e-5)
    assert result["kid"]["mean"] == pytest.approx(ref["kernel_inception_distance_mean"], rel=1e-5)
    # 16 images, subset size 16: every subset is the whole set, so the spread is 0 (torch-fidelity's
    # loop reports the float32 rounding of reordered sums, ~1e-5 of the mean, as its std)
    assert result["kid"]["std"] == 0.0 and result["kid"]["subset_size"] == 16
    assert ref["kernel_inception_distance_std"] < 1e-4 * abs(ref["kernel_inception_distance_mean"])
    # a different generator gives a clearly different value (the comparison can fail)
    other = ev.score(build_generator(UNetSpec.reference(num_downs=5, ngf=8), seed=2))["fid"]["value"]
    assert other != pytest.approx(ref["frechet_inception_distance"], rel=1e-3)


def test_fid_self_zero_and_noise_large(demo_root, extractor):
    real, _ = _real_uint8(demo_root, "test")
    val, _ = _real_uint8(demo_root, "val")
    f_real = F.features_from_uint8(real, extractor)
    g = torch.Generator().manual_seed(0)
    noise = torch.randint(0, 256, real.shape, generator=g, dtype=torch.uint8)
    f_noise = F.features_from_uint8(noise, extractor)
    f_val = F.features_from_uint8(val, extractor)
    self_fid = _fid(f_real, f_real)
    other = _fid(f_real, f_val)
    noisy = _fid(f_real, f_noise)
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
    ours = _fid(a, b)
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


def test_cuda_on_a_cpu_machine_names_key(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError, match="config error at 'evaluate.device': 'cuda' requested"):
        F.get_extractor("standin", device="cuda")


def test_features_need_uint8_images(extractor):
    with pytest.raises(F.FIDError, match=r"expects uint8 images \(N, 3, H, W\)"):
        F.features_from_uint8(torch.zeros(2, 3, 32, 32), extractor)
