"""Tests of ``lib.color``: agreement with scikit-image, round trips, shapes, dtypes, gradients.

The reference is ``skimage.color.rgb2lab`` / ``lab2rgb`` (DESIGN.md section 2). In float64
the largest difference is about 2e-4 Lab units: scikit-image rounds the CIE constant
kappa / 116 to 7.787 in the linear segment near black, ``lib.color`` uses the exact
24389 / 27 / 116. The tolerance of the issue is 1e-3.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from skimage import color as skcolor
from skimage import data as skdata

from lib.color import (
    AB_SCALE,
    denormalize_ab,
    denormalize_l,
    lab_norm_to_rgb,
    lab_to_rgb,
    normalize_ab,
    normalize_l,
    rgb_to_lab,
    rgb_to_lab_norm,
)

LAB_TOL = {torch.float64: 1e-3, torch.float32: 1e-3}  # max abs error vs skimage, Lab units
RGB_TOL = {torch.float64: 1e-5, torch.float32: 1e-4}  # max abs error vs skimage, sRGB in [0, 1]


# --- helpers --------------------------------------------------------------------------
def _to_torch(img_hwc: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img_hwc)).permute(2, 0, 1).to(dtype)  # (3, H, W)


def _to_numpy(t_chw: torch.Tensor) -> np.ndarray:
    return t_chw.detach().permute(1, 2, 0).double().numpy()  # (H, W, 3)


def _random_rgb(seed: int = 0, size: int = 48) -> np.ndarray:
    return np.random.default_rng(seed).random((size, size, 3))  # (H, W, 3) in [0, 1)


def _cube_corners() -> np.ndarray:
    corners = [[r, g, b] for r in (0.0, 1.0) for g in (0.0, 1.0) for b in (0.0, 1.0)]
    return np.array(corners, dtype=np.float64).reshape(2, 4, 3)  # (H, W, 3)


def _astronaut() -> np.ndarray:
    return skdata.astronaut()[::2, ::2] / 255.0  # (256, 256, 3): a real photo, a face in it


IMAGES = {"random": _random_rgb, "cube_corners": _cube_corners, "astronaut": _astronaut}


def _max_errors(img: np.ndarray, dtype: torch.dtype) -> tuple[float, float]:
    """Max abs error of rgb_to_lab vs rgb2lab (Lab units) and lab_to_rgb vs lab2rgb (sRGB)."""
    ref_lab = skcolor.rgb2lab(img)
    lab = _to_numpy(rgb_to_lab(_to_torch(img, dtype)))
    ref_rgb = skcolor.lab2rgb(ref_lab)
    rgb = _to_numpy(lab_to_rgb(_to_torch(ref_lab, dtype)))
    return float(np.abs(lab - ref_lab).max()), float(np.abs(rgb - ref_rgb).max())


# --- agreement with scikit-image ------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("name", sorted(IMAGES))
def test_matches_skimage(name, dtype):
    img = IMAGES[name]()
    lab_err, rgb_err = _max_errors(img, dtype)
    print(f"\n{name:13s} {str(dtype):14s} rgb2lab max |err| = {lab_err:.2e} Lab; lab2rgb max |err| = {rgb_err:.2e}")
    assert lab_err < LAB_TOL[dtype], f"rgb_to_lab differs from skimage by {lab_err:.3g} Lab units ({name}, {dtype})"
    assert rgb_err < RGB_TOL[dtype], f"lab_to_rgb differs from skimage by {rgb_err:.3g} ({name}, {dtype})"


def test_cube_corners_known_values():
    lab = rgb_to_lab(_to_torch(_cube_corners(), torch.float64))  # (3, 2, 4)
    black, white = lab[:, 0, 0], lab[:, 1, 3]
    assert torch.allclose(black, torch.zeros(3, dtype=torch.float64), atol=1e-10), f"black -> {black}"
    assert abs(white[0].item() - 100.0) < 1e-3 and white[1:].abs().max() < 0.01, f"white -> {white}"
    # the extreme ab of the gamut are reached at the corners: all inside (-AB_SCALE, AB_SCALE)
    assert lab[1:].abs().max() < AB_SCALE
    assert lab[1].max() > 90 and lab[2].min() < -100, "magenta's a and blue's b should be near the gamut extremes"


def test_lab_to_rgb_out_of_gamut_matches_skimage_and_clamps():
    """Random Lab triples, most of them outside the sRGB gamut: clamped to [0, 1] like skimage."""
    rng = np.random.default_rng(1)
    lab = np.stack(
        [rng.uniform(0, 100, (32, 32)), rng.uniform(-128, 127, (32, 32)), rng.uniform(-128, 127, (32, 32))], axis=-1
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skimage warns about negative Z values it clips
        ref = skcolor.lab2rgb(lab)
    out = lab_to_rgb(_to_torch(lab, torch.float64))
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert np.abs(_to_numpy(out) - ref).max() < 1e-5


# --- round trip, shapes and dtypes ------------------------------------------------------
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-9), (torch.float32, 1e-4)], ids=["float64", "float32"])
def test_round_trip(dtype, tol):
    rgb = torch.rand(4, 3, 16, 16, dtype=dtype, generator=torch.Generator().manual_seed(0))  # (B, 3, H, W)
    rgb[0, :, 0, 0] = 0.0  # black
    rgb[0, :, 0, 1] = 1.0  # white
    back = lab_to_rgb(rgb_to_lab(rgb))
    assert back.dtype == dtype
    assert (back - rgb).abs().max() < tol
    l_n, ab_n = rgb_to_lab_norm(rgb)
    assert (lab_norm_to_rgb(l_n, ab_n) - rgb).abs().max() < tol


@pytest.mark.parametrize("shape", [(3, 8, 5), (2, 3, 8, 5), (2, 2, 3, 4, 4)],
                         ids=["unbatched", "batched", "2-batch-dims"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_shapes_and_dtypes(shape, dtype):
    rgb = torch.rand(shape, dtype=dtype, generator=torch.Generator().manual_seed(0))
    lab = rgb_to_lab(rgb)
    assert lab.shape == rgb.shape and lab.dtype == dtype
    assert lab_to_rgb(lab).shape == rgb.shape and lab_to_rgb(lab).dtype == dtype
    l_n, ab_n = rgb_to_lab_norm(rgb)
    assert l_n.shape == (*shape[:-3], 1, *shape[-2:]) and ab_n.shape == (*shape[:-3], 2, *shape[-2:])
    assert l_n.dtype == ab_n.dtype == dtype
    assert l_n.min() >= -1 and l_n.max() <= 1 + 1e-6 and ab_n.abs().max() < 1
    assert lab_norm_to_rgb(l_n, ab_n).shape == rgb.shape


def test_batched_equals_per_image():
    rgb = torch.rand(3, 3, 10, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(2))  # (B, 3, H, W)
    batched = rgb_to_lab(rgb)
    for i in range(rgb.shape[0]):
        assert torch.equal(batched[i], rgb_to_lab(rgb[i])), f"image {i} differs between batched and unbatched"


def test_non_contiguous_input():
    rgb = torch.rand(2, 8, 8, 3, dtype=torch.float64).permute(0, 3, 1, 2)  # channels-last view
    assert torch.allclose(rgb_to_lab(rgb), rgb_to_lab(rgb.contiguous()))


# --- normalisation -------------------------------------------------------------------------
def test_normalisation_values_and_inverses():
    L = torch.tensor([0.0, 50.0, 100.0], dtype=torch.float64)
    assert torch.equal(normalize_l(L), torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64))
    ab = torch.tensor([-110.0, 0.0, 55.0], dtype=torch.float64)
    assert torch.equal(normalize_ab(ab), torch.tensor([-1.0, 0.0, 0.5], dtype=torch.float64))
    x = torch.randn(100, dtype=torch.float64) * 50
    assert torch.allclose(denormalize_l(normalize_l(x)), x)
    assert torch.allclose(normalize_l(denormalize_l(x)), x)
    assert torch.allclose(denormalize_ab(normalize_ab(x)), x)
    assert torch.allclose(normalize_ab(denormalize_ab(x)), x)


def test_normalised_photo_in_range():
    l_n, ab_n = rgb_to_lab_norm(_to_torch(_astronaut(), torch.float32))
    assert l_n.min() >= -1 and l_n.max() <= 1 + 1e-5
    assert ab_n.abs().max() < 1, "every sRGB colour's ab / 110 is inside (-1, 1)"


def test_grey_has_zero_ab():
    grey = torch.linspace(0, 1, 11, dtype=torch.float64).view(1, 1, 11).expand(3, 1, 11)  # (3, 1, W)
    ab = rgb_to_lab(grey)[1:]
    # D65 white of sRGB and the Lab white differ in the 5th decimal: grey is ab ~ 0, not exactly
    assert ab.abs().max() < 0.01


# --- gradients ------------------------------------------------------------------------------
def _small_input_with_black_and_white() -> torch.Tensor:
    rgb = torch.rand(2, 3, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 0.9 + 0.05
    rgb[0, :, 0, 0] = 0.0  # pure black
    rgb[0, :, 0, 1] = 1.0  # pure white
    rgb[1, :, 2, 2] = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)  # a saturated corner
    return rgb  # (2, 3, 3, 3)


def test_gradcheck_rgb_to_lab():
    rgb = _small_input_with_black_and_white().requires_grad_()
    assert torch.autograd.gradcheck(rgb_to_lab, (rgb,))
    assert torch.autograd.gradcheck(lambda x: torch.cat(rgb_to_lab_norm(x), dim=-3), (rgb,))


def test_gradcheck_lab_to_rgb_inside_gamut():
    """Inside the gamut: the clamp to [0, 1] is not active, so lab_to_rgb is smooth."""
    rgb = torch.rand(2, 3, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 0.8 + 0.1
    l_n, ab_n = rgb_to_lab_norm(rgb)
    assert torch.autograd.gradcheck(lab_to_rgb, (rgb_to_lab(rgb).requires_grad_(),))
    # the training path: gradients flow from rebuilt RGB back to the predicted ab only
    assert torch.autograd.gradcheck(lambda ab: lab_norm_to_rgb(l_n, ab), (ab_n.clone().requires_grad_(),))


def test_gradients_finite_at_black_and_white():
    """Black and white sit on the clamp's edges: the gradient there must still be finite."""
    rgb = _small_input_with_black_and_white().requires_grad_()
    l_n, ab_n = rgb_to_lab_norm(rgb)
    ab_pred = ab_n.detach().clone().requires_grad_()
    out = lab_norm_to_rgb(l_n, ab_pred)
    (out.square().sum() + l_n.sum()).backward()
    assert torch.isfinite(rgb.grad).all() and torch.isfinite(ab_pred.grad).all()
    assert rgb.grad.abs().sum() > 0 and ab_pred.grad.abs().sum() > 0


def test_gradients_finite_float32_full_range():
    """Float32 everywhere in [0, 1], including exact 0, 1 and the companding thresholds."""
    values = torch.tensor([0.0, 1e-7, 0.003, 0.04045, 0.0405, 0.5, 0.999, 1.0])
    rgb = torch.stack(torch.meshgrid(values, values, values, indexing="ij")).reshape(3, 8, 64).requires_grad_()
    rgb_to_lab(rgb).sum().backward()
    assert torch.isfinite(rgb.grad).all()
    ab = torch.empty(2, 8, 8).uniform_(-1, 1).requires_grad_()  # many out of gamut
    lab_norm_to_rgb(torch.zeros(1, 8, 8), ab).sum().backward()
    assert torch.isfinite(ab.grad).all()


# --- errors ---------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(4, 4), (1, 4, 4), (2, 4, 4), (2, 4, 4, 3)],
                         ids=["2d", "1ch", "2ch", "channels-last"])
def test_bad_shapes_raise(shape):
    x = torch.rand(shape)
    with pytest.raises(ValueError, match=r"\(\.\.\., 3, H, W\)"):
        rgb_to_lab(x)
    with pytest.raises(ValueError, match=r"\(\.\.\., 3, H, W\)"):
        lab_to_rgb(x)


def test_integer_input_raises():
    with pytest.raises(TypeError, match="floating-point"):
        rgb_to_lab(torch.zeros(3, 4, 4, dtype=torch.uint8))


def test_lab_norm_to_rgb_bad_channels():
    with pytest.raises(ValueError, match="expected L"):
        lab_norm_to_rgb(torch.zeros(2, 4, 4), torch.zeros(2, 4, 4))
    with pytest.raises(ValueError, match="expected L"):
        lab_norm_to_rgb(torch.zeros(1, 4, 4), torch.zeros(3, 4, 4))
    with pytest.raises(ValueError, match="expected L"):  # no channel axis at all: the same message
        lab_norm_to_rgb(torch.zeros(4, 4), torch.zeros(4, 4))
