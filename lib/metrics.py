"""Metric definitions for colorization and the two baselines.

Taught in ``notebooks/07_evaluation.ipynb``. Definitions (DESIGN.md section 2):

* ``psnr_rgb`` / ``ssim_rgb``: on RGB in [0, 1] rebuilt from the *true* L and the
  *predicted* ab, data range 1 (what the reference table reports, at 128x128);
* ``psnr_lab`` / ``ssim_lab``: on Lab with channels scaled to [0, 1] as L/100, (ab+128)/255;
* SSIM: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03, population covariances, mean
  over the map without the 5-pixel border, i.e. exactly
  ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=1, channel_axis=...)``;
* every metric is computed per image (``image_metrics``), then averaged over the split
  (``summarize``). ``psnr_rgb_pooled64`` instead pools the squared error over consecutive
  groups of 64 images before the log (torchmetrics' default, as the reference table was
  measured; reads 1-1.5 dB lower);
* colorfulness (Hasler & Suesstrunk 2003) on RGB in [0, 255], ``delta_cf`` = |CF(pred) - CF(true)|;
* FID: TF-FID Inception-v3 pool3 features at 299x299, Frechet distance of the two feature
  sets' Gaussians (biased upward on a few hundred images: always state the count); KID on
  the same features: unbiased MMD^2, cubic polynomial kernel, averaged over subsets;
* LPIPS: AlexNet backbone with the ``lpips`` package's v0.1 linear layers;
* ``paired_bootstrap``: a 95 % interval for the mean difference of two predictors on the
  same faces.

All per-image functions take batched tensors on any device and return ``(B,)`` tensors.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import warnings
import weakref
from collections.abc import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from lib.color import denormalize_ab, denormalize_l, lab_norm_to_rgb, prediction_to_rgb, rgb_to_lab
from lib.pretrained import alexnet_features, fid_inception
from lib.utils import atomic_write, cache_dir, clean_stale_temp_files, eval_mode

__all__ = [
    "lab_to_unit", "psnr", "ssim", "psnr_rgb", "ssim_rgb", "psnr_lab", "ssim_lab", "pooled_psnr",
    "psnr_rgb_pooled64", "colorfulness", "delta_cf", "image_metrics", "summarize", "frechet_distance",
    "fid_from_features", "kid", "paired_bootstrap", "FID", "LPIPS", "MetricSuite", "grey_predictor",
    "mean_face_ab", "mean_face_predictor",
]

SSIM_SIGMA = 1.5  # Gaussian window of SSIM (Wang et al. 2004; skimage gaussian_weights=True)
SSIM_TRUNCATE = 3.5  # skimage's truncation: radius = int(3.5 * 1.5 + 0.5) = 5 -> 11x11 window
SSIM_K1, SSIM_K2 = 0.01, 0.03
PSNR_MAX_DB = 120.0  # identical images give mse = 0; their PSNR is capped here instead of inf
FID_SIZE = 299  # Inception input size


def _check_pair(pred: Tensor, target: Tensor) -> None:
    assert pred.shape == target.shape, f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must have the same shape"
    assert pred.dim() == 4, f"expected batched images (B, C, H, W), got {tuple(pred.shape)}"


def _precise(x: Tensor) -> Tensor:
    """float64 where the device has it (CPU, CUDA), float32 on MPS."""
    return x.to(torch.float32 if x.device.type == "mps" else torch.float64)


# --- PSNR / SSIM --------------------------------------------------------------------------
def lab_to_unit(lab: Tensor) -> Tensor:
    """Lab ``(B, 3, H, W)`` -> channels scaled to [0, 1]: L/100, (a+128)/255, (b+128)/255."""
    return torch.cat((lab[:, :1] / 100.0, (lab[:, 1:] + 128.0) / 255.0), dim=1)  # (B, 3, H, W)


def psnr(pred: Tensor, target: Tensor, data_range: float = 1.0) -> Tensor:
    """Per-image PSNR in dB, ``10 log10(data_range^2 / MSE)``, MSE over (C, H, W): ``(B,)``.

    Matches ``skimage.metrics.peak_signal_noise_ratio`` (capped at ``PSNR_MAX_DB`` for
    identical images). Taught in ``notebooks/07_evaluation.ipynb``.
    """
    _check_pair(pred, target)
    mse = (_precise(pred) - _precise(target)).pow(2).mean(dim=(1, 2, 3))  # (B,)
    return (10.0 * torch.log10(data_range**2 / mse)).clamp(max=PSNR_MAX_DB).float()


def _gaussian_window(sigma: float, truncate: float, device, dtype) -> Tensor:
    radius = int(truncate * sigma + 0.5)  # as scipy.ndimage / skimage
    x = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    w = torch.exp(-0.5 * (x / sigma) ** 2)
    return w / w.sum()  # (2r+1,)


def ssim(pred: Tensor, target: Tensor, data_range: float = 1.0, dtype: torch.dtype = torch.float32) -> Tensor:
    """Per-image SSIM ``(B,)``: mean over channels of the mean SSIM map.

    Gaussian window 11x11 (sigma 1.5), K1 = 0.01, K2 = 0.03, population (co)variances.
    The map is computed only where the window fits inside the image, which is exactly the
    region skimage keeps after cropping (win_size - 1) // 2 = 5 pixels from each border.
    float32 (the default, twice as fast as float64 on CPU) stays within 1e-5 of skimage's
    float64 result on images in [0, 1]. Taught in ``notebooks/07_evaluation.ipynb``.
    """
    _check_pair(pred, target)
    b, c, h, w = pred.shape
    x, y = pred.to(dtype), target.to(dtype)
    win = _gaussian_window(SSIM_SIGMA, SSIM_TRUNCATE, x.device, x.dtype)  # (11,)
    k = win.numel()
    assert h >= k and w >= k, f"SSIM needs images of at least {k}x{k}, got {h}x{w}"
    stack = torch.stack((x, y, x * x, y * y, x * y), dim=2).reshape(b * c * 5, 1, h, w)  # (B*C*5, 1, H, W)
    blur = F.conv2d(stack, win.view(1, 1, 1, k))  # (B*C*5, 1, H, W-10), separable Gaussian, valid
    blur = F.conv2d(blur, win.view(1, 1, k, 1))  # (B*C*5, 1, H-10, W-10)
    ux, uy, uxx, uyy, uxy = blur.view(b, c, 5, h - k + 1, w - k + 1).unbind(2)  # 5 x (B, C, h', w')
    vx, vy, vxy = uxx - ux * ux, uyy - uy * uy, uxy - ux * uy
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))  # (B, C, h', w')
    return s.mean(dim=(1, 2, 3)).float()  # equal-size channels: mean of channel means


def psnr_rgb(pred_rgb: Tensor, true_rgb: Tensor) -> Tensor:
    """PSNR on RGB in [0, 1] (rebuilt from true L and predicted ab), data range 1: ``(B,)``."""
    return psnr(pred_rgb, true_rgb, 1.0)


def ssim_rgb(pred_rgb: Tensor, true_rgb: Tensor) -> Tensor:
    """SSIM on RGB in [0, 1], data range 1: ``(B,)``."""
    return ssim(pred_rgb, true_rgb, 1.0)


def psnr_lab(pred_lab: Tensor, true_lab: Tensor) -> Tensor:
    """PSNR on Lab (natural units) scaled to [0, 1] by ``lab_to_unit``, data range 1: ``(B,)``."""
    return psnr(lab_to_unit(pred_lab), lab_to_unit(true_lab), 1.0)


def ssim_lab(pred_lab: Tensor, true_lab: Tensor) -> Tensor:
    """SSIM on Lab (natural units) scaled to [0, 1] by ``lab_to_unit``, data range 1: ``(B,)``."""
    return ssim(lab_to_unit(pred_lab), lab_to_unit(true_lab), 1.0)


def pooled_psnr(mse: Tensor, group: int = 64, data_range: float = 1.0) -> Tensor:
    """Mean over consecutive groups of ``group`` images of the PSNR of the group's pooled MSE.

    ``mse``: per-image MSE ``(N,)`` in dataset order (equal-size images, so a group's pooled
    MSE is the mean of its images' MSE); the last group may be smaller, like the last batch
    of a loader. This is what torchmetrics' PSNR with its defaults returns per batch of 64.
    """
    assert mse.dim() == 1 and mse.numel() > 0, f"expected per-image MSE (N,), got {tuple(mse.shape)}"
    groups = torch.split(mse.double(), group)
    values = torch.stack([10.0 * torch.log10(data_range**2 / g.mean()) for g in groups])  # (n_groups,)
    return values.clamp(max=PSNR_MAX_DB).mean().float()


def psnr_rgb_pooled64(pred_rgb: Tensor, true_rgb: Tensor, group: int = 64) -> Tensor:
    """``pooled_psnr`` of RGB in [0, 1] over consecutive groups of 64 images: a scalar.

    How the reference table was measured; compare it only with its own kind (DESIGN.md 2).
    """
    _check_pair(pred_rgb, true_rgb)
    mse = (_precise(pred_rgb) - _precise(true_rgb)).pow(2).mean(dim=(1, 2, 3))  # (N,)
    return pooled_psnr(mse, group)


# --- colorfulness ---------------------------------------------------------------------------
def colorfulness(rgb: Tensor) -> Tensor:
    r"""Hasler & Suesstrunk (2003) colorfulness of RGB in [0, 1] (scaled to [0, 255]): ``(B,)``.

    $rg = R - G$, $yb = (R + G)/2 - B$,
    $CF = \sqrt{\sigma_{rg}^2 + \sigma_{yb}^2} + 0.3\sqrt{\mu_{rg}^2 + \mu_{yb}^2}$
    (population standard deviations over the pixels). Grey images score 0.
    Taught in ``notebooks/07_evaluation.ipynb``.
    """
    assert rgb.dim() == 4 and rgb.shape[1] == 3, f"expected (B, 3, H, W), got {tuple(rgb.shape)}"
    r, g, b = (_precise(rgb) * 255.0).unbind(1)  # 3 x (B, H, W)
    rg = (r - g).flatten(1)  # (B, H*W)
    yb = (0.5 * (r + g) - b).flatten(1)  # (B, H*W)
    std = torch.sqrt(rg.var(dim=1, unbiased=False) + yb.var(dim=1, unbiased=False))
    mean = torch.sqrt(rg.mean(dim=1) ** 2 + yb.mean(dim=1) ** 2)
    return (std + 0.3 * mean).float()


def delta_cf(pred_rgb: Tensor, true_rgb: Tensor) -> Tensor:
    """|CF(pred) - CF(true)| per image ``(B,)``; its mean over a split is dCF."""
    _check_pair(pred_rgb, true_rgb)
    return (colorfulness(pred_rgb) - colorfulness(true_rgb)).abs()


# --- FID ---------------------------------------------------------------------------------------
def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    r"""Frechet distance of two Gaussians, the core of FID:

    $$d^2 = \lVert \mu_1 - \mu_2 \rVert^2 + \mathrm{Tr}\big(\Sigma_1 + \Sigma_2 - 2(\Sigma_1\Sigma_2)^{1/2}\big)$$

    The trace of the matrix square root is taken from eigenvalues of a symmetric matrix:
    with $\Sigma_1 = R R^\top$ ($R = V\Lambda^{1/2}$ from the eigendecomposition, keeping
    the eigenvalues above $10^{-12}\lambda_{max}$), $\Sigma_1\Sigma_2$ has the same non-zero
    eigenvalues as the PSD matrix $R^\top \Sigma_2 R$, so
    $\mathrm{Tr}(\Sigma_1\Sigma_2)^{1/2} = \sum_i \sqrt{\lambda_i(R^\top\Sigma_2 R)}$.
    Stable for rank-deficient covariances (fewer images than the 2048 feature dimensions:
    then $R$ is thin and the small matrix is cheap), and faster than ``scipy.linalg.sqrtm``.
    Taught in ``notebooks/07_evaluation.ipynb``.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    assert mu1.shape == mu2.shape and sigma1.shape == sigma2.shape == (mu1.size, mu1.size), "mean/covariance shapes disagree"
    w, v = np.linalg.eigh(sigma1)
    keep = w > max(w.max(), 0.0) * 1e-12
    r = v[:, keep] * np.sqrt(w[keep])  # (D, k): sigma1 = r r^T
    m = r.T @ sigma2 @ r  # (k, k), symmetric PSD
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh(0.5 * (m + m.T)), 0.0, None)).sum() if keep.any() else 0.0
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean)


# --- per image, then over the split -------------------------------------------------------------
def _check_prediction(ab_hat: Tensor, ab: Tensor) -> None:
    ok = ab_hat.shape[0] == ab.shape[0] and ab_hat.shape[2:] == ab.shape[2:] and ab_hat.shape[1] in (2, 3)
    assert ok, f"prediction {tuple(ab_hat.shape)} must be ab (B, 2, H, W) or RGB (B, 3, H, W) like ab {tuple(ab.shape)}"


def image_metrics(l_n: Tensor, ab_hat: Tensor, ab: Tensor) -> dict[str, Tensor]:
    """Every per-image metric of one batch: ``{name: (B,)}``, the definitions in one place.

    ``l_n (B, 1, H, W)``, ``ab_hat`` and ``ab (B, 2, H, W)`` normalised as in ``lib.color``;
    both RGB images are rebuilt from the true L. Gives ``psnr_rgb``, ``ssim_rgb``,
    ``psnr_lab``, ``ssim_lab``, ``mse_rgb`` (for the pooled PSNR), ``colorfulness_pred``
    and ``colorfulness_true``. An RGB-mode prediction ``(B, 3, H, W)`` (the colorspace
    ablation, ``lib.color.prediction_to_rgb``) is measured as the image it is, its Lab
    converted from it. Taught in ``07_evaluation``.
    """
    _check_prediction(ab_hat, ab)
    rgb_true = lab_norm_to_rgb(l_n, ab)  # (B, 3, H, W) in [0, 1]
    rgb_pred = prediction_to_rgb(l_n, ab_hat)  # (B, 3, H, W): true L + predicted ab (or the predicted RGB)
    L = denormalize_l(l_n)  # (B, 1, H, W)
    lab_true = torch.cat((L, denormalize_ab(ab)), dim=1)  # (B, 3, H, W)
    rgb_mode = ab_hat.shape[1] == 3
    lab_pred = rgb_to_lab(rgb_pred) if rgb_mode else torch.cat((L, denormalize_ab(ab_hat)), dim=1)  # (B, 3, H, W)
    return {
        "psnr_rgb": psnr_rgb(rgb_pred, rgb_true),
        "ssim_rgb": ssim_rgb(rgb_pred, rgb_true),
        "psnr_lab": psnr_lab(lab_pred, lab_true),
        "ssim_lab": ssim_lab(lab_pred, lab_true),
        "mse_rgb": (_precise(rgb_pred) - _precise(rgb_true)).pow(2).mean(dim=(1, 2, 3)),
        "colorfulness_pred": colorfulness(rgb_pred),
        "colorfulness_true": colorfulness(rgb_true),
    }


def summarize(per_image: dict[str, Tensor], pooled_group: int = 64) -> dict[str, float]:
    """Split-level numbers from per-image values ``{name: (N,)}`` in dataset order.

    Means of every per-image metric (``mse_rgb`` left out), ``psnr_rgb_pooled64`` (the MSE
    pooled over consecutive groups of ``pooled_group`` images), ``delta_cf`` (the mean of
    |CF(pred) - CF(true)|) and ``n_images``.
    """
    cat = {k: v.double().cpu() for k, v in per_image.items()}
    out: dict[str, float] = {"n_images": int(cat["psnr_rgb"].numel())}
    out.update({k: float(v.mean()) for k, v in cat.items() if k != "mse_rgb"})
    out["psnr_rgb_pooled64"] = float(pooled_psnr(cat["mse_rgb"], pooled_group))
    out["delta_cf"] = float((cat["colorfulness_pred"] - cat["colorfulness_true"]).abs().mean())
    return out


# --- FID and KID ------------------------------------------------------------------------------------
def fid_from_features(real: Tensor, fake: Tensor) -> float:
    r"""FID of two feature sets ``(N, D)``, ``(M, D)``: Frechet distance of their Gaussians
    (means and unbiased covariances in float64).

    With fewer images than dimensions (a few hundred faces, 2048 Inception features) it never
    forms a ``D x D`` matrix: with the centred features scaled as $A = (X - \mu_X)/\sqrt{N-1}$
    ``(N, D)`` and $B$ likewise, $\Sigma_1 = A^\top A$, $\Sigma_2 = B^\top B$, and
    $\Sigma_1\Sigma_2$ has the non-zero eigenvalues of $(A B^\top)(A B^\top)^\top$, so
    $\mathrm{Tr}(\Sigma_1\Sigma_2)^{1/2}$ is the sum of the singular values of the ``(N, M)``
    matrix $A B^\top$ and $\mathrm{Tr}\,\Sigma_1 = \lVert A \rVert_F^2$: the same
    number as :func:`frechet_distance` of the covariances, many times faster. Taught in
    ``07_evaluation``.
    """
    assert len(real) >= 2 and len(fake) >= 2, f"FID needs at least 2 images per side, got {len(real)} and {len(fake)}"
    x, y = real.double().cpu().numpy(), fake.double().cpu().numpy()  # (N, D), (M, D)
    if min(len(x), len(y)) >= x.shape[1]:
        return frechet_distance(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))
    a, b = ((f - f.mean(0)) / np.sqrt(len(f) - 1) for f in (x, y))  # (N, D), (M, D)
    tr_covmean = np.linalg.svd(a @ b.T, compute_uv=False).sum()  # nuclear norm of the (N, M) cross product
    diff = x.mean(0) - y.mean(0)
    return float(diff @ diff + (a * a).sum() + (b * b).sum() - 2.0 * tr_covmean)


def kid(real: Tensor, fake: Tensor, subsets: int = 100, subset_size: int = 100, seed: int = 0,
        paired: bool = False) -> tuple[float, float]:
    r"""Kernel Inception Distance (Binkowski et al. 2018): ``(mean, std)`` over ``subsets``.

    For each subset, ``m = min(subset_size, N, M)`` features drawn without replacement from
    each side give the unbiased estimate of the squared MMD with the cubic polynomial kernel
    $k(x, y) = (x \cdot y / d + 1)^3$:

    $$\widehat{\mathrm{MMD}}^2 = \frac{\sum_{i \ne j} k(x_i, x_j) + \sum_{i \ne j} k(y_i, y_j)}{m(m-1)}
      - \frac{2}{m^2}\sum_{i, j} k(x_i, y_j)$$

    Unbiased at small sample sizes (it can come out slightly negative), so it is the fairer
    comparison on a few hundred test faces; report it beside FID. Unbiased only when the two
    samples are independent: colorizations are not, row ``i`` of ``fake`` is the colorization of
    row ``i`` of ``real``, and such a pair's large ``k(x_i, y_i)`` in the cross term pulls the
    estimate down (by about ``1/m`` of its size when a subset holds every pair). ``paired=True``
    says the rows correspond and draws each subset's real and fake rows from *disjoint* faces
    (``m <= N // 2``). Taught in ``07_evaluation``.
    """
    x, y = real.double().cpu(), fake.double().cpu()
    if paired:
        assert len(x) == len(y), f"paired KID needs one fake per real image, got {len(x)} and {len(y)}"
        m = min(subset_size, len(x) // 2)
    else:
        m = min(subset_size, len(x), len(y))
    d = x.shape[1]
    assert m >= 2, f"KID needs at least 2 images per side, got {len(x)} and {len(y)} (paired: {paired})"
    gen = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(subsets):
        if paired:
            faces = torch.randperm(len(x), generator=gen)  # real from the first m faces, fake from the next m
            xs, ys = x[faces[:m]], y[faces[m:2 * m]]
        else:
            xs, ys = x[torch.randperm(len(x), generator=gen)[:m]], y[torch.randperm(len(y), generator=gen)[:m]]
        kxx, kyy, kxy = ((a @ b.T / d + 1) ** 3 for a, b in ((xs, xs), (ys, ys), (xs, ys)))  # 3 x (m, m)
        same = (kxx.sum() - kxx.diagonal().sum() + kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
        values.append(float(same - 2 * kxy.mean()))
    return float(np.mean(values)), float(np.std(values))


class FID:
    """Inception features of real and generated (colorized) images, then FID and KID.

    ``update(rgb_real=..., rgb_fake=...)`` with RGB in [0, 1] ``(B, 3, H, W)`` (either or
    both), ``compute()`` (FID) and ``kid()`` after the whole split; ``reset()`` starts over.
    Images are resized to 299x299 (bilinear) and scaled as the TF-FID Inception expects,
    ``(x*255 - 128)/128``. ``model`` replaces the Inception (any ``(B, 3, s, s) -> (B, D)``
    module; ``image_size`` then sets ``s``, None keeps the input size).
    Taught in ``notebooks/07_evaluation.ipynb``.
    """

    def __init__(self, device: str | torch.device | None = None, model: nn.Module | None = None,
                 image_size: int | None = FID_SIZE):
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.model = (model if model is not None else fid_inception()).to(self.device).eval()
        self.image_size = image_size
        self.reset()

    def reset(self) -> None:
        self.real: list[Tensor] = []  # (B, D) float64 feature batches, on the CPU
        self.fake: list[Tensor] = []

    @torch.no_grad()
    def features(self, rgb: Tensor) -> Tensor:
        """Features ``(B, D)`` of RGB in [0, 1] ``(B, 3, H, W)``."""
        x = rgb.to(self.device, torch.float32).clamp(0, 1)  # (B, 3, H, W)
        if self.image_size is not None and tuple(x.shape[-2:]) != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        x = (x * 255.0 - 128.0) / 128.0  # (B, 3, 299, 299), the TF Inception's input range [-1, 127/128]
        # TorchScript's profiling executor re-specialises for every new batch shape and ran
        # several times slower on CPU here; the plain interpreter is as fast as eager mode
        with torch.jit.optimized_execution(False):
            return self.model(x).flatten(1)  # (B, D)

    def update(self, rgb_real: Tensor | None = None, rgb_fake: Tensor | None = None) -> None:
        for side, rgb in ((self.real, rgb_real), (self.fake, rgb_fake)):
            if rgb is not None:
                side.append(self.features(rgb).to("cpu", torch.float64))

    def compute(self) -> float:
        return fid_from_features(torch.cat(self.real), torch.cat(self.fake))

    def kid(self, subsets: int = 100, subset_size: int = 100, paired: bool = False) -> tuple[float, float]:
        return kid(torch.cat(self.real), torch.cat(self.fake), subsets, subset_size, paired=paired)


# --- uncertainty -------------------------------------------------------------------------------------
def paired_bootstrap(a: Tensor | np.ndarray, b: Tensor | np.ndarray, n_resamples: int = 2000,
                     seed: int = 0) -> tuple[float, float, float]:
    """Mean difference ``mean(a - b)`` of two predictors' per-image values on the same faces, and
    its 95 % interval ``(mean, low, high)`` from a paired bootstrap.

    The faces are resampled with replacement ``n_resamples`` times (the same faces for both
    predictors: paired), the mean difference recomputed each time, and its 2.5 and 97.5
    percentiles taken. Taught in ``07_evaluation``; seed-to-seed variation is measured by
    rerunning, not by this.
    """
    diff = np.asarray(a, np.float64) - np.asarray(b, np.float64)  # (N,)
    assert diff.ndim == 1 and diff.size >= 2, f"expected two paired (N,) arrays, got shape {diff.shape}"
    idx = np.random.default_rng(seed).integers(0, diff.size, size=(n_resamples, diff.size))  # (R, N)
    means = diff[idx].mean(axis=1)  # (R,)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(diff.mean()), float(low), float(high)


# --- LPIPS ---------------------------------------------------------------------------------------
class LPIPS(nn.Module):
    """LPIPS distance (AlexNet, v0.1 linear layers) between RGB images in [0, 1]: ``(B,)``.

    The ``lpips`` package provides the network and its learned linear layers; the AlexNet
    backbone is built with random weights (``pnet_rand=True``) and then loaded with the
    offline ImageNet weights from ``lib.pretrained.alexnet_features``. Frozen, always in eval
    mode. Taught in ``notebooks/07_evaluation.ipynb``.
    """

    def __init__(self, weights_path: str | None = None):
        super().__init__()
        import lpips  # here, not at the top: it imports scikit-image (seconds), needed only for LPIPS

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torchvision's "pretrained is deprecated"
            net = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False)
        backbone = alexnet_features(weights_path).state_dict()  # keys "N.weight", torchvision indices
        # lpips splits features into slices that keep torchvision's indices: "slice2.3.weight"
        state = {k: backbone[k.split(".", 1)[1]] for k in net.net.state_dict()}
        net.net.load_state_dict(state, strict=True)
        self.net = net.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> LPIPS:
        super().train(mode)
        self.net.eval()
        return self

    def forward(self, pred_rgb: Tensor, true_rgb: Tensor) -> Tensor:
        _check_pair(pred_rgb, true_rgb)
        return self.net(pred_rgb, true_rgb, normalize=True).flatten()  # (B,), inputs mapped to [-1, 1]


# --- the evaluation loop (to move to lib/evaluate.py) ----------------------------------------------------
class MetricSuite:
    """Evaluate a predictor ``l_n (B,1,H,W) -> ab_hat (B,2,H,W)`` on a loader of ``(l_n, ab)``.

    ``evaluate`` returns ``summarize`` of ``image_metrics`` over the loader (plus ``lpips``
    when on; ``fid``, ``kid`` and ``kid_std`` over the whole split when ``fid`` is on) and
    ``seconds``; the per-image values stay in ``last_per_image``. ``device`` None: the
    predictor's (its parameters'), else CPU. A module predictor runs in eval mode
    (``lib.utils.eval_mode``). With FID on, the real images' Inception features of a full
    pass over a dataset are kept (per dataset object, while it lives) and reused: a model
    and its two baselines pay for the real images once. Taught in ``07_evaluation``.
    """

    def __init__(self, fid: bool = False, lpips: bool = False, device: str | torch.device | None = None,
                 pooled_group: int = 64, progress: bool = True):
        self.use_fid, self.use_lpips = fid, lpips  # FID (+ KID): Inception at 299x299, slow on CPU; LPIPS: AlexNet
        self.device = torch.device(device) if device is not None else None
        self.pooled_group, self.progress = pooled_group, progress
        self._fid: FID | None = None
        self._lpips: LPIPS | None = None
        self._real_feats: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # dataset -> (key, features)
        self.last_per_image: dict[str, Tensor] = {}

    @torch.no_grad()
    def evaluate(self, predict_fn: Callable[[Tensor], Tensor], loader: Iterable, max_batches: int | None = None,
                 desc: str = "evaluate") -> dict:
        module = predict_fn if isinstance(predict_fn, nn.Module) else None
        device = self.device
        if device is None and module is not None:  # the predictor's own device
            device = next((p.device for p in module.parameters()), None)
        device = device or torch.device("cpu")
        key, cached = (_real_features_key(loader, max_batches) if self.use_fid else None), None
        if self.use_fid:
            self._fid = self._fid if self._fid is not None else FID(device)
            self._fid.model.to(device)
            self._fid.device = device
            self._fid.reset()
            entry = self._real_feats.get(loader.dataset) if key is not None else None
            if entry is not None and entry[0] == key:
                cached = entry[1]
                self._fid.real = list(cached)
        if self.use_lpips:
            self._lpips = (self._lpips if self._lpips is not None else LPIPS()).to(device)
        per: dict[str, list[Tensor]] = {}
        total = len(loader) if hasattr(loader, "__len__") else None
        total = max_batches if total is None else min(total, max_batches or total)
        start = time.perf_counter()
        with eval_mode(module):
            for i, (l_n, ab) in enumerate(tqdm(loader, total=total, desc=desc, disable=not self.progress)):
                if max_batches is not None and i >= max_batches:
                    break
                l_n, ab = l_n.to(device), ab.to(device)  # (B, 1, H, W), (B, 2, H, W)
                ab_hat = predict_fn(l_n).to(device, ab.dtype)  # (B, 2, H, W)
                _check_prediction(ab_hat, ab)
                values = image_metrics(l_n, ab_hat, ab)
                if self.use_lpips or self.use_fid:
                    rgb_true, rgb_pred = lab_norm_to_rgb(l_n, ab), prediction_to_rgb(l_n, ab_hat)  # (B, 3, H, W)
                if self.use_lpips:
                    values["lpips"] = self._lpips(rgb_pred, rgb_true)
                if self.use_fid:
                    self._fid.update(rgb_real=None if cached is not None else rgb_true, rgb_fake=rgb_pred)
                for k, v in values.items():
                    per.setdefault(k, []).append(v.detach().cpu())
        assert per, "the loader gave no batches"
        self.last_per_image = {k: torch.cat(v).float() for k, v in per.items()}
        out = summarize({k: torch.cat(v) for k, v in per.items()}, self.pooled_group)
        if self.use_fid:
            out["fid"] = self._fid.compute()
            # fake i colorizes real i: KID's two sides from different faces, which needs 4 or more
            enough = sum(len(f) for f in self._fid.fake) >= 4
            out["kid"], out["kid_std"] = self._fid.kid(paired=True) if enough else (math.nan, math.nan)
            if key is not None and cached is None:
                self._real_feats[loader.dataset] = (key, list(self._fid.real))
        out["seconds"] = time.perf_counter() - start
        return out


def _real_features_key(loader, max_batches: int | None):
    """What identifies the real images of a full pass over ``loader``, or None when they may change."""
    ds = getattr(loader, "dataset", None)
    if ds is None or max_batches is not None or getattr(ds, "flip", False):
        return None  # a partial pass, or random flips: nothing to reuse
    try:
        weakref.ref(ds), hash(ds)
    except TypeError:  # not weak-referenceable or not hashable: no cache
        return None
    sampler = getattr(loader, "sampler", None)
    if getattr(sampler, "shuffle", False) and hasattr(sampler, "num_replicas"):
        return None  # a shuffled DistributedSampler gives each rank another subset every epoch
    desc = {"class": type(ds).__name__, "len": len(ds), "sampler": type(sampler).__name__,
            "rank": getattr(sampler, "rank", None), "n": len(sampler) if hasattr(sampler, "__len__") else None}
    for attr in ("root", "split", "image_size", "max_images", "num_images", "seed", "cache_key"):
        desc[attr] = str(getattr(ds, attr, None))
    return hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()[:20]


# --- baselines ---------------------------------------------------------------------------------------
def grey_predictor() -> Callable[[Tensor], Tensor]:
    """The grey baseline: ab = 0 everywhere (the L channel alone). Taught in ``07_evaluation``."""

    def predict(l_n: Tensor) -> Tensor:
        return l_n.new_zeros(l_n.shape[0], 2, *l_n.shape[-2:])  # (B, 2, H, W)

    return predict


def mean_face_ab(dataset, batch_size: int = 64, num_workers: int = 0, progress: bool = True) -> Tensor:
    """Per-pixel mean normalised ab ``(2, H, W)`` over a (train) dataset: the "mean face".

    CelebA-HQ faces are aligned, so the average face colour map is a strong baseline.
    Computed once and cached (``lib.utils.cache_dir("mean_face")``) when the dataset has a
    ``cache_key`` (``FaceFolder``: its files, sizes, mtimes and image size); others
    (``ToyFaces``) are recomputed each time. Build the dataset without random flips
    (``flip=False``) so the mean is deterministic. Taught in ``notebooks/07_evaluation.ipynb``.
    """
    if getattr(dataset, "flip", False):
        raise ValueError("mean_face_ab needs a deterministic dataset: build it with flip=False")
    key = getattr(dataset, "cache_key", None)  # only datasets that can say when their pixels change
    path = cache_dir("mean_face") / f"{type(dataset).__name__}-{key}.pt" if key else None
    clean_stale_temp_files(cache_dir("mean_face"))  # what a killed run left behind
    if path is not None and path.is_file():
        return torch.load(path, map_location="cpu", weights_only=True)
    total, n = 0.0, 0
    for _, ab in tqdm(DataLoader(dataset, batch_size=batch_size, num_workers=num_workers), desc="mean face",
                      disable=not progress):
        total, n = total + ab.double().sum(0), n + ab.shape[0]  # (2, H, W)
    assert n > 0, "mean_face_ab got an empty dataset"
    mean = (total / n).float()  # (2, H, W)
    if path is not None:
        atomic_write(path, lambda f: torch.save(mean, f))
    return mean


def mean_face_predictor(mean_ab: Tensor) -> Callable[[Tensor], Tensor]:
    """The mean-face baseline: predicts ``mean_ab`` ``(2, H, W)`` for every image."""
    assert mean_ab.dim() == 3 and mean_ab.shape[0] == 2, f"mean_ab must be (2, H, W), got {tuple(mean_ab.shape)}"

    def predict(l_n: Tensor) -> Tensor:
        assert l_n.shape[-2:] == mean_ab.shape[-2:], f"image size {tuple(l_n.shape[-2:])} != mean face {tuple(mean_ab.shape[-2:])}"
        return mean_ab.to(l_n).expand(l_n.shape[0], -1, -1, -1)  # (B, 2, H, W)

    return predict
