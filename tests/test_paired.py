"""L1 / PSNR / SSIM against hand-computed values and scikit-image."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from unetprune.metrics.paired import PairedAccumulator, gaussian_moments, gaussian_window, l1, psnr, ssim


def test_l1_and_psnr_hand_computed():
    a = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
    b = a.clone()
    b[0] += 5  # constant error 5 everywhere in image 0
    b[1, :, :2] = 255  # half the pixels of image 1 off by 255
    assert l1(b, a).tolist() == pytest.approx([5 / 127.5, 0.5 * 255 / 127.5])
    assert psnr(b, a).tolist() == pytest.approx([10 * math.log10(255**2 / 25), 10 * math.log10(2)])
    assert psnr(a, a)[0].item() == pytest.approx(10 * math.log10(255**2 / 1e-10))  # floored, finite


def test_ssim_identical_is_one_and_constant_shift_hand_computed():
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 256, (1, 3, 16, 16), generator=g, dtype=torch.uint8)
    assert ssim(a, a).item() == pytest.approx(1.0)
    # constant images c and c+d: variances 0, so SSIM = (2 c (c+d) + C1) / (c^2 + (c+d)^2 + C1)
    c, d = 100.0, 20.0
    x = torch.full((1, 1, 12, 12), c)
    y = torch.full((1, 1, 12, 12), c + d)
    c1 = (0.01 * 255) ** 2
    assert ssim(x, y).item() == pytest.approx((2 * c * (c + d) + c1) / (c * c + (c + d) ** 2 + c1))


def test_ssim_psnr_match_skimage():
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    g = torch.Generator().manual_seed(1)
    a = torch.randint(0, 256, (3, 3, 24, 20), generator=g, dtype=torch.uint8)
    b = (a.int() + torch.randint(-30, 31, a.shape, generator=g)).clamp(0, 255).to(torch.uint8)
    ours_s, ours_p = ssim(b, a), psnr(b, a)
    for i in range(3):
        A, B = a[i].permute(1, 2, 0).numpy(), b[i].permute(1, 2, 0).numpy()
        ref = structural_similarity(
            A,
            B,
            channel_axis=-1,
            data_range=255,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
        assert ours_s[i].item() == pytest.approx(ref, abs=1e-10)
        assert ours_p[i].item() == pytest.approx(peak_signal_noise_ratio(A, B, data_range=255), abs=1e-10)


def test_gaussian_moments_shifted_sums_equal_the_grouped_conv():
    """The CPU path (shifted sums) and the GPU path (one grouped conv pair) are the same filter."""
    g = torch.Generator().manual_seed(2)
    a = torch.randint(0, 256, (2, 3, 30, 17), generator=g).double()
    b = torch.randint(0, 256, (2, 3, 30, 17), generator=g).double()
    w = gaussian_window(1.5)
    sums, conv = gaussian_moments(a, b, w, conv=False), gaussian_moments(a, b, w, conv=True)
    assert [tuple(x.shape) for x in conv] == [(2, 3, 20, 7)] * 5
    for x, y in zip(sums, conv):
        torch.testing.assert_close(x, y, rtol=1e-13, atol=1e-9)
    # a map of ones filters to ones; a*a of a constant c filters to c^2
    ones = torch.ones(1, 1, 11, 11, dtype=torch.float64)
    assert gaussian_moments(ones, 3 * ones, w, conv=True)[3].item() == pytest.approx(9.0, rel=1e-14)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_ssim_on_cuda_equals_the_cpu_value():
    g = torch.Generator().manual_seed(3)
    a = torch.randint(0, 256, (4, 3, 64, 48), generator=g, dtype=torch.uint8)
    b = (a.int() + torch.randint(-40, 41, a.shape, generator=g)).clamp(0, 255).to(torch.uint8)
    torch.testing.assert_close(ssim(b.cuda(), a.cuda()).cpu(), ssim(b, a), rtol=0, atol=1e-12)


def test_window_and_errors():
    w = gaussian_window(1.5)
    assert w.numel() == 11 and w.sum().item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="one shape"):
        l1(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 5))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))


def test_accumulator_means_over_images():
    g = torch.Generator().manual_seed(2)
    a = torch.randint(0, 256, (5, 3, 16, 16), generator=g, dtype=torch.uint8)
    b = torch.randint(0, 256, (5, 3, 16, 16), generator=g, dtype=torch.uint8)
    acc = PairedAccumulator()
    acc.update(a[:2], b[:2])
    acc.update(a[2:], b[2:])
    r = acc.result()
    assert r["l1"] == pytest.approx(l1(a, b).mean().item())
    assert r["psnr"] == pytest.approx(psnr(a, b).mean().item())
    assert r["ssim"] == pytest.approx(ssim(a, b).mean().item())
    assert all(math.isnan(v) for v in PairedAccumulator().result().values())
    assert np.isfinite(r["ssim"])
