"""sRGB <-> CIE Lab in PyTorch, and the one place where Lab is normalised for the model.

Taught in ``notebooks/01_color_spaces.ipynb``.

The conversion follows the same definitions as ``skimage.color.rgb2lab`` / ``lab2rgb``:
sRGB (IEC 61966-2-1 companding) -> linear RGB -> CIE XYZ (D65) -> CIE Lab (D65, 2 deg).
Every function is batched or unbatched (``(..., 3, H, W)``: the channel axis is the
third from last), works in float32 and float64 on any device, and is differentiable,
so the perceptual loss can push gradients from RGB back to the predicted ab.

Normalisation for the network (DESIGN.md section 2), defined here and nowhere else::

    L_n  = L / 50 - 1          L  in [0, 100]          -> L_n  in [-1, 1]
    ab_n = ab / 110            a in (-86.2, 98.2),
                               b in (-107.9, 94.5)     -> ab_n in (-1, 1)

The generator ends in ``tanh`` so its output lives in the ab_n range.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "L_SCALE",
    "AB_SCALE",
    "rgb_to_lab",
    "lab_to_rgb",
    "normalize_l",
    "denormalize_l",
    "normalize_ab",
    "denormalize_ab",
    "rgb_to_lab_norm",
    "lab_norm_to_rgb",
    "prediction_to_rgb",
    "prediction_target",
]

# --- constants (sRGB / D65, as in scikit-image) -------------------------------------
L_SCALE = 50.0  # L_n = L / L_SCALE - 1
AB_SCALE = 110.0  # ab_n = ab / AB_SCALE

# linear sRGB -> XYZ (D65), rows are X, Y, Z
_RGB_TO_XYZ = (
    (0.412453, 0.357580, 0.180423),
    (0.212671, 0.715160, 0.072169),
    (0.019334, 0.119193, 0.950227),
)
_XYZ_TO_RGB = (  # the inverse of _RGB_TO_XYZ, as skimage computes it (np.linalg.inv)
    (3.2404813432005266, -1.5371515162713185, -0.4985363261688878),
    (-0.9692549499965682, 1.8759900014898907, 0.04155592655829284),
    (0.05564663913517716, -0.20404133836651123, 1.0573110696453443),
)
_WHITE_D65 = (0.95047, 1.0, 1.08883)  # XYZ of the reference white (2 deg observer)
_EPS = 216.0 / 24389.0  # (6/29)^3: below it f(t) is linear
_KAPPA = 24389.0 / 27.0  # 903.3


_CONSTANTS: dict[tuple, Tensor] = {}  # (id of the constant, dtype, device) -> tensor, built once
_CHUNK_ELEMENTS = 1 << 18  # no-grad inputs larger than this are converted in pieces of about this size


def _matrix(values, like: Tensor) -> Tensor:
    """``values`` as a tensor of ``like``'s dtype and device, built once per (dtype, device).

    ``torch.tensor(values, device="cuda")`` at every call would be a blocking host-to-device
    copy (the CPU waits for the GPU queue); the cache removes it. Built outside inference
    mode so a tensor first made under ``torch.inference_mode`` still serves a training step.
    """
    if torch.compiler.is_compiling():  # traced as a graph constant; no Python-side cache
        return torch.tensor(values, dtype=like.dtype, device=like.device)
    key = (id(values), like.dtype, like.device)
    t = _CONSTANTS.get(key)
    if t is None:
        with torch.inference_mode(False), torch.no_grad():
            t = torch.tensor(values, dtype=like.dtype, device=like.device)
        _CONSTANTS[key] = t
    return t


def _chunked(fn, x: Tensor) -> Tensor:
    """``fn`` (a per-pixel conversion ``(..., 3, H, W) -> (..., 3, H, W)``) applied to ``x`` in
    pieces of about ``_CHUNK_ELEMENTS`` values when ``x`` is large and no gradient is needed.

    Same result; the ~20 temporaries of each conversion then stay small (cache-sized, reused
    by the allocator) instead of being fresh 50-100 MB blocks that the kernel must map and
    zero page by page: for 64 images of 256x256 this is several times faster
    (``benchmarks/bench_color.py``). Whole images go together; a large image goes by rows.
    """
    if x.numel() <= _CHUNK_ELEMENTS or (x.requires_grad and torch.is_grad_enabled()) or torch.compiler.is_compiling():
        return fn(x)
    flat = x.reshape(-1, *x.shape[-3:])  # (N, 3, H, W)
    out = torch.empty_like(flat)  # (N, 3, H, W)
    n, c, h, w = flat.shape
    if c * h * w <= _CHUNK_ELEMENTS:
        step = _CHUNK_ELEMENTS // (c * h * w)  # whole images per piece
        for i in range(0, n, step):
            out[i : i + step] = fn(flat[i : i + step])
    else:
        rows = max(1, _CHUNK_ELEMENTS // (c * w))  # rows of one image per piece
        for i in range(n):
            for r in range(0, h, rows):
                out[i, :, r : r + rows] = fn(flat[i, :, r : r + rows])
    return out.reshape(x.shape)


def _check_channels(x: Tensor, name: str) -> None:
    if x.dim() < 3 or x.shape[-3] != 3:
        raise ValueError(f"{name} must have shape (..., 3, H, W), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor (float32/float64), got {x.dtype}")


def _apply_matrix(m: Tensor, x: Tensor) -> Tensor:
    """Mix the channel axis (-3) of ``x`` with the 3x3 matrix ``m``."""
    return torch.einsum("ij,...jhw->...ihw", m, x)  # (..., 3, H, W)


def _srgb_to_linear(c: Tensor) -> Tensor:
    # the clamp keeps the pow's gradient finite on the branch torch.where discards
    return torch.where(c > 0.04045, ((c.clamp_min(0.04045) + 0.055) / 1.055) ** 2.4, c / 12.92)


def _linear_to_srgb(c: Tensor) -> Tensor:
    return torch.where(c > 0.0031308, 1.055 * c.clamp_min(0.0031308) ** (1 / 2.4) - 0.055, c * 12.92)


def _f(t: Tensor) -> Tensor:
    """CIE Lab companding: cube root above (6/29)^3, linear below."""
    return torch.where(t > _EPS, t.clamp_min(_EPS) ** (1.0 / 3.0), (_KAPPA * t + 16.0) / 116.0)


def _f_inv(f: Tensor) -> Tensor:
    return torch.where(f > 6.0 / 29.0, f.clamp_min(6.0 / 29.0) ** 3, (116.0 * f - 16.0) / _KAPPA)


def rgb_to_lab(rgb: Tensor) -> Tensor:
    """sRGB in [0, 1] -> CIE Lab (L in [0, 100]), shape ``(..., 3, H, W)`` kept.

    Matches ``skimage.color.rgb2lab`` (D65, 2 deg). Large inputs that need no gradient are
    converted in cache-sized pieces (same result, faster). Taught in ``01_color_spaces``.
    """
    _check_channels(rgb, "rgb")
    return _chunked(_rgb_to_lab, rgb)


def _rgb_to_lab(rgb: Tensor) -> Tensor:
    lin = _srgb_to_linear(rgb)  # (..., 3, H, W)
    xyz = _apply_matrix(_matrix(_RGB_TO_XYZ, rgb), lin)  # (..., 3, H, W)
    white = _matrix(_WHITE_D65, rgb).view(3, 1, 1)
    fx, fy, fz = _f(xyz / white).unbind(-3)  # 3 x (..., H, W)
    L = 116.0 * fy - 16.0
    a = 500.0 * (fx - fy)
    b = 200.0 * (fy - fz)
    return torch.stack((L, a, b), dim=-3)  # (..., 3, H, W)


def lab_to_rgb(lab: Tensor) -> Tensor:
    """CIE Lab -> sRGB clamped to [0, 1], shape ``(..., 3, H, W)`` kept.

    Matches ``skimage.color.lab2rgb``. Lab colours outside the sRGB gamut give values
    outside [0, 1] before the clamp (e.g. negative sRGB), so the result is clamped.
    Large inputs that need no gradient are converted in cache-sized pieces (same result).
    Taught in ``01_color_spaces``.
    """
    _check_channels(lab, "lab")
    return _chunked(_lab_to_rgb, lab)


def _lab_to_rgb(lab: Tensor) -> Tensor:
    L, a, b = lab.unbind(-3)  # 3 x (..., H, W)
    fy = (L + 16.0) / 116.0
    fx = fy + a / 500.0
    fz = (fy - b / 200.0).clamp_min(0.0)  # as skimage: z < 0 is invalid
    white = _matrix(_WHITE_D65, lab).view(3, 1, 1)
    xyz = _f_inv(torch.stack((fx, fy, fz), dim=-3)) * white  # (..., 3, H, W)
    lin = _apply_matrix(_matrix(_XYZ_TO_RGB, lab), xyz)  # (..., 3, H, W)
    return _linear_to_srgb(lin).clamp(0.0, 1.0)


# --- normalisation: the single definition the whole project uses -----------------------
def normalize_l(L: Tensor) -> Tensor:
    """L in [0, 100] -> [-1, 1]."""
    return L / L_SCALE - 1.0


def denormalize_l(l_n: Tensor) -> Tensor:
    """[-1, 1] -> L in [0, 100]."""
    return (l_n + 1.0) * L_SCALE


def normalize_ab(ab: Tensor) -> Tensor:
    """ab (Lab units) -> ab / 110, inside (-1, 1) for every sRGB colour."""
    return ab / AB_SCALE


def denormalize_ab(ab_n: Tensor) -> Tensor:
    """ab / 110 -> ab in Lab units."""
    return ab_n * AB_SCALE


def rgb_to_lab_norm(rgb: Tensor) -> tuple[Tensor, Tensor]:
    """sRGB in [0, 1] ``(..., 3, H, W)`` -> normalised ``(L_n (..., 1, H, W), ab_n (..., 2, H, W))``.

    The model's input and target. Taught in ``01_color_spaces``.
    """
    lab = rgb_to_lab(rgb)  # (..., 3, H, W)
    return normalize_l(lab[..., :1, :, :]), normalize_ab(lab[..., 1:, :, :])


def lab_norm_to_rgb(l_n: Tensor, ab_n: Tensor) -> Tensor:
    """Rebuild sRGB in [0, 1] from normalised L ``(..., 1, H, W)`` and ab ``(..., 2, H, W)``.

    Metrics and the perceptual loss see RGB rebuilt from the *true* L and the *predicted*
    ab (DESIGN.md section 2). Taught in ``01_color_spaces``.
    """
    if l_n.dim() < 3 or ab_n.dim() < 3 or l_n.shape[-3] != 1 or ab_n.shape[-3] != 2:
        raise ValueError(f"expected L (..., 1, H, W) and ab (..., 2, H, W), got {tuple(l_n.shape)} and {tuple(ab_n.shape)}")
    lab = torch.cat((denormalize_l(l_n), denormalize_ab(ab_n)), dim=-3)  # (..., 3, H, W)
    return lab_to_rgb(lab)


def prediction_to_rgb(l_n: Tensor, pred: Tensor) -> Tensor:
    """sRGB in [0, 1] of a generator's output ``pred``.

    ``pred`` (..., 2, H, W) is ab_n, the method: RGB is rebuilt from the true L and the
    predicted ab. ``pred`` (..., 3, H, W) is the RGB mode of the ``colorspace`` ablation
    (``model.out_channels: 3``): the network predicts the colour *and* the lightness as RGB in
    (-1, 1), and that image is used as it is, true L discarded. Taught in ``08_ablation_study``.
    """
    if pred.dim() >= 3 and pred.shape[-3] == 3:
        return ((pred + 1.0) / 2.0).clamp(0.0, 1.0)  # (..., 3, H, W)
    return lab_norm_to_rgb(l_n, pred)


def prediction_target(l_n: Tensor, ab_n: Tensor, channels: int) -> Tensor:
    """The true image in the generator's output space: ``ab_n`` itself for 2 channels, the
    true RGB mapped to (-1, 1) for the RGB mode (3 channels). What the pixel loss compares with."""
    if channels == 3:
        return lab_norm_to_rgb(l_n, ab_n) * 2.0 - 1.0  # (..., 3, H, W)
    return ab_n
