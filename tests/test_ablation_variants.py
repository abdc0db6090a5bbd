"""The model variants that only the ablations of 08 train: the RGB mode of the ``colorspace`` grid
(the network predicts RGB, lightness included) and the VGG16-initialised encoder of the
``components`` grid; and a run shared by several grids, trained once."""

from __future__ import annotations

import json

import pytest
import torch

import lib.pretrained
from lib.ablation import finished_twin, run_config, run_grid, Grid
from lib.color import lab_norm_to_rgb, prediction_target, prediction_to_rgb
from lib.colorize import colorize
from lib.config import TrainConfig
from lib.errors import ConfigError
from lib.losses import ColorizationLoss
from lib.metrics import image_metrics
from lib.models import UNet, UNetConfig


def _faces(n=2, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    l_n = torch.rand(n, 1, size, size, generator=g) * 1.6 - 0.8  # (n, 1, S, S)
    ab = (torch.rand(n, 2, size, size, generator=g) - 0.5) * 0.4  # (n, 2, S, S): inside the gamut mostly
    return l_n, ab


def test_a_prediction_is_ab_with_the_true_l_or_an_rgb_image_as_it_is():
    l_n, ab = _faces()
    assert torch.equal(prediction_to_rgb(l_n, ab), lab_norm_to_rgb(l_n, ab)), "2 channels: the true L + ab"
    assert torch.equal(prediction_target(l_n, ab, 2), ab)
    target = prediction_target(l_n, ab, 3)  # (n, 3, S, S) in [-1, 1]
    assert target.shape == (2, 3, 32, 32) and target.min() >= -1 and target.max() <= 1
    assert torch.allclose(prediction_to_rgb(l_n, target), lab_norm_to_rgb(l_n, ab), atol=1e-6), "3 channels: RGB itself"
    # the RGB mode keeps no true L: a darker RGB prediction is measured darker
    dark = prediction_to_rgb(l_n, target - 0.2)
    assert (dark < lab_norm_to_rgb(l_n, ab) - 0.05).float().mean() > 0.9


def test_metrics_and_loss_measure_an_rgb_prediction_as_its_own_image(perceptual):
    l_n, ab = _faces(size=64)
    rgb_n = prediction_target(l_n, ab, 3)  # (2, 3, 64, 64): the truth in the RGB mode's output space
    exact = image_metrics(l_n, rgb_n, ab)
    assert (exact["psnr_rgb"] > 60).all() and torch.allclose(exact["ssim_rgb"], torch.ones(2), atol=1e-4)
    assert (exact["psnr_lab"] > 40).all(), "its Lab is converted from its RGB: equal to the truth's"
    off = image_metrics(l_n, (rgb_n + 0.1).clamp(-1, 1), ab)  # lighter in every channel: L is wrong too
    assert (off["psnr_rgb"] < 30).all() and (off["psnr_lab"] < exact["psnr_lab"] - 10).all()
    # a perfect ab prediction scores like a perfect RGB prediction
    assert (image_metrics(l_n, ab, ab)["psnr_rgb"] > 60).all()

    loss = ColorizationLoss(alpha=100, beta=1, theta=0)
    loss.perceptual = perceptual
    total, terms = loss(l_n, rgb_n, ab)
    assert terms["pixel"].item() < 1e-6 and terms["perceptual"].item() < 1e-3
    pred = (rgb_n + 0.2 * torch.randn_like(rgb_n)).clamp(-1, 1).requires_grad_()
    total, terms = loss(l_n, pred, ab)
    total.backward()
    assert torch.isclose(terms["pixel"], (pred - rgb_n).abs().mean()) and pred.grad.abs().sum() > 0


def test_the_rgb_mode_trains_without_a_discriminator_and_colorize_refuses_it(tmp_path):
    cfg = TrainConfig(out_dir=str(tmp_path / "r")).with_overrides(["model.out_channels=3"])
    assert UNet(cfg.model).eval()(torch.zeros(1, 1, 16, 16)).shape == (1, 3, 16, 16)
    with pytest.raises(ConfigError, match="loss.theta=0"):
        cfg.with_overrides(["loss.theta=0.08"])
    with pytest.raises(ConfigError, match="out_channels"):
        cfg.with_overrides(["model.out_channels=4"])
    with pytest.raises(ConfigError, match="predicts RGB"):
        colorize(torch.rand(3, 32, 32), UNet(UNetConfig(out_channels=3, depth=2)).eval())


def test_the_vgg16_encoder_starts_from_imagenet_and_feeds_the_seed_decoder():
    try:
        vgg = lib.pretrained.vgg16_features(cut=29)
    except lib.pretrained.WeightsUnavailableError as e:
        pytest.skip(str(e))
    cfg = UNetConfig(encoder="vgg16", depth=4, ndims=16)
    model = UNet(cfg)
    blocks = model.encoder.blocks
    assert torch.equal(blocks[0][0].weight, vgg[0].weight) and torch.equal(blocks[4][-2].weight, vgg[28].weight)
    assert isinstance(blocks[1][0], torch.nn.MaxPool2d), "each level below the first starts with VGG16's pool"
    l_n = torch.rand(2, 1, 32, 32) * 2 - 1
    skips = model.encode(l_n)
    assert [tuple(s.shape) for s in skips] == [(2, 16 * 2**i, 32 // 2**i, 32 // 2**i) for i in range(5)]
    out = model(l_n)
    assert out.shape == (2, 2, 32, 32)
    out.abs().mean().backward()
    assert blocks[0][0].weight.grad.abs().sum() > 0, "the VGG16 weights are fine-tuned"
    # the same decoder, gates and bottleneck as the seed: their weights have the seed's shapes
    seed = {k: v.shape for k, v in UNet(UNetConfig()).state_dict().items() if not k.startswith("encoder.")}
    assert seed == {k: v.shape for k, v in model.state_dict().items() if not k.startswith("encoder.")}
    from lib.models import model_summary
    summary = model_summary(model, 32)
    assert summary.shapes["encoder.adapters.4"] == (1, 256, 2, 2) and summary.parameters["encoder"] > 14_000_000
    with pytest.raises(AssertionError, match="depth <= 4"):
        UNetConfig(encoder="vgg16", depth=5)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_run_shared_by_several_grids_is_trained_once(tmp_path):
    runs = {"seed": {"loss.beta": 0.0}}
    first = run_grid(Grid("z", "configs/seed.yaml", runs), "smoke", results=tmp_path, runner="train",
                     extra=["dataset=toy"], log=lambda s: None)
    assert first["done"] == ["seed"]
    other = Grid("m", "configs/seed.yaml", {"same": {"loss.beta": 0.0}, "different": {"loss.beta": 0.0, "seed": 3}})
    assert finished_twin(run_config(other, "same", "smoke", tmp_path / "x", ["dataset=toy"]), tmp_path, "smoke") \
        == tmp_path / "z-smoke" / "seed"
    assert finished_twin(run_config(other, "different", "smoke", tmp_path / "x", ["dataset=toy"]), tmp_path, "smoke") is None
    lines = []
    second = run_grid(other, "smoke", results=tmp_path, runner="train", extra=["dataset=toy"], only=["same"],
                      log=lines.append)
    assert second["done"] == ["same"] and "reused, not retrained" in lines[0]
    a, b = (json.loads((tmp_path / f / "metrics.json").read_text()) for f in ("z-smoke/seed", "m-smoke/same"))
    assert a["per_image"] == b["per_image"] and b["reused_from"] == "z-smoke/seed" and b["run"] == "same"
    assert (tmp_path / "m-smoke" / "same" / "run" / "best.pt").stat().st_ino == \
        (tmp_path / "z-smoke" / "seed" / "run" / "best.pt").stat().st_ino, "hard-linked, not copied"
    assert "`same` is z-smoke/seed" in (tmp_path / "m-smoke.md").read_text()
    # a third grid finds the reused copy first (m < z) and still names the run that trained
    run_grid(Grid("a", "configs/seed.yaml", {"again": {"loss.beta": 0.0}}), "smoke", results=tmp_path,
             runner="train", extra=["dataset=toy"], log=lambda s: None)
    assert json.loads((tmp_path / "a-smoke/again/metrics.json").read_text())["reused_from"] == "z-smoke/seed"


def test_differences_are_paired_against_the_grids_reference_run_and_drawn_one_panel_per_grid(tmp_path):
    import numpy as np

    from lib.ablation import differences
    from lib.viz import plot_differences

    rng = np.random.default_rng(0)
    base = rng.normal(25, 2, 100)  # per-face difficulty shared by every run
    folder = tmp_path / "g-smoke"
    for name, shift in (("ref", 0.0), ("better", 0.3)):
        (folder / name).mkdir(parents=True)
        psnr = base + shift + rng.normal(0, 0.05, 100)
        (folder / name / "metrics.json").write_text(json.dumps(
            {"summary": {"psnr_rgb": float(psnr.mean())}, "per_image": {"psnr_rgb": psnr.tolist()}}))
    (folder / "baselines.json").write_text(json.dumps(
        {"mean face": {"summary": {}, "per_image": {"psnr_rgb": (base - 1).tolist()}}, "data": "x", "image_size": 32}))
    grid = Grid("g", "configs/seed.yaml", {"ref": {}, "better": {}})
    rows = differences(grid, "smoke", results=tmp_path, n_resamples=500)
    assert set(rows) == {"better", "mean face"}, "every row but the reference itself"
    d, lo, hi = rows["better"]
    assert 0.25 < lo < d < hi < 0.35 and abs(rows["mean face"][0] + 1) < 0.05
    with pytest.raises(ConfigError, match="not finished"):
        differences(grid, "smoke", "missing", results=tmp_path)
    fig = plot_differences({"g": rows, "h": {"x": (0.1, -0.1, 0.3)}}, spread=0.2)
    assert len(fig.axes) == 2 and len(fig.axes[0].patches) == 2 + 1, "two bars and the shaded spread"
