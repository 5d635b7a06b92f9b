"""Paired (aligned) metrics of generated images against their targets: L1, PSNR, SSIM.

All three are computed on the uint8 images (what a saved PNG holds), per image, then
averaged over the images of a split:

* ``l1``   — mean absolute difference in the [-1, 1] scale of the generator's output
  (``|a - b| / 127.5``), i.e. the units of pix2pix's L1 loss.
* ``psnr`` — ``10 log10(255^2 / MSE)`` in dB over all pixels and channels of one image
  (MSE floored at 1e-10, so identical images give ~148 dB instead of infinity).
* ``ssim`` — Wang et al. (2004) SSIM with an 11x11 Gaussian window (sigma 1.5, truncated at
  3.5 sigma), K1 = 0.01, K2 = 0.03, data range 255, population (co)variances, averaged over
  the "valid" window positions and the channels.  This equals
  ``skimage.metrics.structural_similarity(a, b, channel_axis=-1, data_range=255,
  gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``.
"""

from __future__ import annotations

import math

import torch

PAIRED_DEFINITIONS = {
    "l1": "mean |fake - real| of the uint8 images in [-1, 1] units (/127.5), per image then averaged",
    "psnr": "10*log10(255^2/MSE) dB per uint8 image (MSE floored at 1e-10), averaged over images",
    "ssim": "Gaussian SSIM (11x11, sigma 1.5, K1 0.01, K2 0.03, range 255, population covariance; "
    "= skimage structural_similarity gaussian_weights=True), per image then averaged",
}


def _check(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    if a.shape != b.shape:
        raise ValueError(
            f"paired metrics need images of one shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    if a.dim() == 3:
        a, b = a[None], b[None]
    if a.dim() != 4:
        raise ValueError(f"expected images (N, C, H, W) or (C, H, W), got {tuple(a.shape)}")
    return a.double(), b.double()


def l1(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Per-image L1 (N,) of uint8-valued images (N, C, H, W), in [-1, 1] units."""
    a, b = _check(fake, real)
    return (a - b).abs().flatten(1).mean(1) / 127.5


def psnr(fake: torch.Tensor, real: torch.Tensor, data_range: float = 255.0) -> torch.Tensor:
    """Per-image PSNR (N,) in dB."""
    a, b = _check(fake, real)
    mse = ((a - b) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return 10.0 * torch.log10(data_range**2 / mse)


def gaussian_window(sigma: float = 1.5, truncate: float = 3.5) -> torch.Tensor:
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    return g / g.sum()


def gaussian_moments(a: torch.Tensor, b: torch.Tensor, g: torch.Tensor, conv: bool):
    """The "valid" separable Gaussian filter ``g`` of a, b, a*a, b*b and a*b (float64, NCHW).
    ``conv=False``: weighted sums of shifted views, the fast way on a CPU, where float64
    convolutions have no fast kernels (~3x a grouped conv2d there).  ``conv=True``: one pair of
    grouped conv2d calls for all five maps, the fast way on a GPU, where the 2k shifted adds per
    map are launch-bound.  Both are the same sums up to rounding (~1e-16);
    benchmarks/evaluate.py --kernels measures them."""
    c, k = a.shape[1], g.numel()
    if conv:
        x = torch.cat([a, b, a * a, b * b, a * b], 1)
        gk = g.to(device=x.device, dtype=x.dtype)
        x = torch.nn.functional.conv2d(x, gk.view(1, 1, k, 1).expand(5 * c, 1, k, 1), groups=5 * c)
        x = torch.nn.functional.conv2d(x, gk.view(1, 1, 1, k).expand(5 * c, 1, 1, k), groups=5 * c)
        return x.split(c, 1)
    taps = g.tolist()

    def filt(x: torch.Tensor) -> torch.Tensor:
        hv, wv = x.shape[-2] - k + 1, x.shape[-1] - k + 1
        y = x[..., 0:hv, :] * taps[0]
        for t in range(1, k):
            y.add_(x[..., t : t + hv, :], alpha=taps[t])
        z = y[..., 0:wv] * taps[0]
        for t in range(1, k):
            z.add_(y[..., t : t + wv], alpha=taps[t])
        return z

    return filt(a), filt(b), filt(a * a), filt(b * b), filt(a * b)


def ssim(
    fake: torch.Tensor,
    real: torch.Tensor,
    data_range: float = 255.0,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """Per-image SSIM (N,), Gaussian window, mean over valid positions and channels."""
    a, b = _check(fake, real)
    h, w = a.shape[-2:]
    g = gaussian_window(sigma)
    k = g.numel()
    if h < k or w < k:
        raise ValueError(f"SSIM needs images of at least {k}x{k} pixels, got {h}x{w}")
    mu_a, mu_b, ea2, eb2, eab = gaussian_moments(a, b, g, conv=a.device.type != "cpu")
    var_a = ea2 - mu_a**2
    var_b = eb2 - mu_b**2
    cov = eab - mu_a * mu_b
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.flatten(1).mean(1)


class PairedAccumulator:
    """Sums per-image L1 / PSNR / SSIM over batches; ``result()`` gives the means."""

    def __init__(self) -> None:
        self.sums = {"l1": 0.0, "psnr": 0.0, "ssim": 0.0}
        self.values: dict[str, list[torch.Tensor]] = {k: [] for k in self.sums}
        self.n = 0

    def update(self, fake_uint8: torch.Tensor, real_uint8: torch.Tensor) -> None:
        real_uint8 = real_uint8.to(fake_uint8.device)
        for name, fn in (("l1", l1), ("psnr", psnr), ("ssim", ssim)):
            v = fn(fake_uint8, real_uint8)
            self.values[name].append(v.detach().cpu())
            self.sums[name] += float(v.sum())
        self.n += int(fake_uint8.shape[0])

    def per_image(self) -> dict[str, torch.Tensor]:
        """The per-image values (N,) (float64) of every metric, in update order."""
        return {
            k: (torch.cat(v) if v else torch.zeros(0, dtype=torch.float64)) for k, v in self.values.items()
        }

    def result(self) -> dict:
        if not self.n:
            return {k: math.nan for k in self.sums}
        return {k: v / self.n for k, v in self.sums.items()}
