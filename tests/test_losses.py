"""lib.losses: pixel, perceptual (frozen VGG16), adversarial terms and their weighted sum."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from skimage import data
from torch import nn

import lib.pretrained
from lib.color import rgb_to_lab_norm
from lib.losses import ColorizationLoss, GANLoss, PerceptualLoss, PixelLoss, term_shares


@pytest.fixture(scope="module")
def faces() -> tuple[torch.Tensor, torch.Tensor]:
    """Two 64x64 crops of skimage's astronaut photo (public domain) as normalised (L, ab)."""
    rgb = torch.from_numpy(data.astronaut()).permute(2, 0, 1).float() / 255  # (3, 512, 512)
    crops = torch.stack([rgb[:, 0:256, 128:384], rgb[:, 256:512, 0:256]])  # (2, 3, 256, 256)
    rgb = F.interpolate(crops, size=(64, 64), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
    return rgb_to_lab_norm(rgb)  # (2, 1, 64, 64), (2, 2, 64, 64)


def test_pixel_loss_is_l1_or_l2_on_normalised_ab():
    a, b = torch.randn(2, 2, 8, 8), torch.randn(2, 2, 8, 8)
    assert torch.isclose(PixelLoss("l1")(a, b), (a - b).abs().mean())
    assert torch.isclose(PixelLoss("l2")(a, b), ((a - b) ** 2).mean())
    with pytest.raises(ValueError, match="l1"):
        PixelLoss("huber")


def test_perceptual_loss_zero_for_identical_positive_otherwise(perceptual, faces):
    l_n, ab = faces
    assert perceptual(l_n, ab, ab).item() == 0.0
    assert perceptual(l_n, torch.zeros_like(ab), ab).item() > 0.0
    # a bigger colour error costs more
    assert perceptual(l_n, torch.zeros_like(ab), ab) > perceptual(l_n, 0.5 * ab, ab)


def test_perceptual_vgg_is_truncated_frozen_and_stays_in_eval(perceptual):
    assert len(perceptual.vgg) == 16  # relu3_3 is features[15]
    assert not any(p.requires_grad for p in perceptual.vgg.parameters())
    wrapper = nn.ModuleDict({"loss": perceptual})
    wrapper.train()
    assert perceptual.training and not perceptual.vgg.training
    perceptual.eval()


def test_perceptual_gradient_reaches_the_generator_only(perceptual, faces):
    l_n, ab = faces
    torch.manual_seed(0)
    generator = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Tanh())
    loss = perceptual(l_n, 0.3 * generator(l_n), ab)
    loss.backward()
    grads = [p.grad for p in generator.parameters()]
    assert all(g is not None and torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)
    assert all(p.grad is None for p in perceptual.vgg.parameters())


def test_perceptual_layer_weights_select_layers(perceptual, faces):
    l_n, ab = faces
    only_first = PerceptualLoss(layers=("relu1_2",), features=perceptual.vgg)
    weighted = PerceptualLoss(layer_weights=(1.0, 0.0, 0.0), features=perceptual.vgg)
    pred = torch.zeros_like(ab)
    torch.testing.assert_close(weighted(l_n, pred, ab), only_first(l_n, pred, ab))
    terms = weighted.layer_terms(l_n, pred, ab)  # unweighted, whatever the weights
    assert list(terms) == ["relu1_2", "relu2_2", "relu3_3"] and all(t > 0 for t in terms.values())
    torch.testing.assert_close(PerceptualLoss(layer_weights=(1.0, 2.0, 0.5), features=perceptual.vgg)(l_n, pred, ab),
                               terms["relu1_2"] + 2 * terms["relu2_2"] + 0.5 * terms["relu3_3"])
    l2 = PerceptualLoss(layers=("relu1_2",), kind="l2", features=perceptual.vgg)
    assert l2(l_n, pred, ab) > 0 and not torch.isclose(l2(l_n, pred, ab), only_first(l_n, pred, ab))
    with pytest.raises(AssertionError, match="unknown VGG16 layers"):
        PerceptualLoss(layers=("relu9_9",), features=perceptual.vgg)


@pytest.mark.parametrize("mode", GANLoss.MODES)
def test_gan_losses_have_the_right_signs(mode):
    gan = GANLoss(mode)
    high, low = torch.ones(4, 1, 3, 3), torch.zeros(4, 1, 3, 3)  # lsgan's targets; D(x) = 1 / 0
    # D is happy (low loss) when it scores real high and fake low
    assert gan.discriminator_loss(high, low) < gan.discriminator_loss(low, high)
    assert gan.discriminator_loss(high, high) < gan.discriminator_loss(low, high)  # real scored high is better
    assert gan.discriminator_loss(high, low) < gan.discriminator_loss(high, high)  # fake scored low is better
    # G is happy when D scores its output high
    assert gan.generator_loss(high) < gan.generator_loss(low)
    # D's gradient pushes real logits up and fake logits down
    real, fake = torch.full((4, 1, 3, 3), 0.1, requires_grad=True), torch.full((4, 1, 3, 3), 0.1, requires_grad=True)
    gan.discriminator_loss(real, fake).backward()
    assert (real.grad < 0).all() and (fake.grad > 0).all()
    # G's gradient pushes fake logits up
    fake_g = torch.full((4, 1, 3, 3), 0.1, requires_grad=True)
    gan.generator_loss(fake_g).backward()
    assert (fake_g.grad < 0).all()


def test_gan_losses_reach_their_minimum():
    ones, zeros = torch.ones(2, 1, 4, 4), torch.zeros(2, 1, 4, 4)
    assert GANLoss("lsgan").discriminator_loss(ones, zeros) == 0 and GANLoss("lsgan").generator_loss(ones) == 0
    assert GANLoss("hinge").discriminator_loss(ones, -ones) == 0
    assert GANLoss("hinge").generator_loss(2 * ones) == -2
    vanilla = GANLoss("vanilla").discriminator_loss(10 * ones, -10 * ones)
    assert 0 < vanilla < 1e-4


def test_colorization_loss_is_the_weighted_sum(perceptual, faces, monkeypatch):
    l_n, ab = faces
    loss_fn = ColorizationLoss(alpha=100, beta=1, theta=0.08, pixel="l1")
    pred = (0.5 * ab).requires_grad_()
    logits = torch.randn(2, 1, 6, 6)
    total, terms = loss_fn(l_n, pred, ab, fake_logits=logits)
    pix = (pred - ab).abs().mean()
    perc = perceptual(l_n, pred, ab)
    gan = ((logits - 1) ** 2).mean()
    torch.testing.assert_close(total, 100 * pix + 1 * perc + 0.08 * gan)
    torch.testing.assert_close(terms["pixel"], pix)
    torch.testing.assert_close(terms["perceptual_weighted"], perc)
    torch.testing.assert_close(terms["gan_weighted"], 0.08 * gan)
    layers = [f"perceptual/{name}" for name in perceptual.layers]
    assert set(terms) == {"pixel", "perceptual", "gan", "pixel_weighted", "perceptual_weighted", "gan_weighted", "total", *layers}
    # one unweighted term per VGG16 layer, each the loss of that layer alone; their sum is "perceptual"
    for name in perceptual.layers:
        alone = PerceptualLoss(layers=(name,), features=perceptual.vgg)(l_n, pred, ab)
        torch.testing.assert_close(terms[f"perceptual/{name}"], alone.detach())
    torch.testing.assert_close(sum(terms[k] for k in layers), terms["perceptual"])
    assert len({terms[k].item() for k in layers}) == len(layers), "the layers see different errors"
    assert not any(t.requires_grad for t in terms.values()) and total.requires_grad
    loss_fn.train()
    assert not loss_fn.perceptual.vgg.training


def test_colorization_loss_without_perceptual_loads_no_vgg(monkeypatch, faces):
    def refuse(*args, **kwargs):
        raise AssertionError("VGG16 must not be loaded when beta == 0")

    monkeypatch.setattr(lib.pretrained, "vgg16_features", refuse)
    l_n, ab = faces
    loss_fn = ColorizationLoss(beta=0, pixel="l2")
    assert loss_fn.perceptual is None
    total, terms = loss_fn(l_n, torch.zeros_like(ab), ab)  # no logits: generator-only training
    assert set(terms) == {"pixel", "pixel_weighted", "total"}
    torch.testing.assert_close(total, 100 * (ab**2).mean())


def test_term_shares_are_the_weighted_terms_of_the_loss(perceptual, faces):
    l_n, ab = faces
    loss_fn = ColorizationLoss(alpha=100, beta=1, theta=0.08)
    _, terms = loss_fn(l_n, 0.5 * ab, ab, fake_logits=torch.randn(2, 1, 6, 6))
    shares = term_shares(terms, 100, 1, 0.08)
    for k in ("pixel", "perceptual", "gan"):
        torch.testing.assert_close(shares[k], (terms[f"{k}_weighted"] / terms["total"]).item())
    assert abs(sum(shares.values()) - 1) < 1e-9
    assert term_shares(terms, 100, 1, 0.0)["gan"] == 0 and term_shares(terms, 100, 1, 1.0)["gan"] > shares["gan"]
    assert term_shares({"pixel": 0.1}, 100, 1, 0.08) == {"pixel": 1.0, "perceptual": 0.0, "gan": 0.0}  # beta = 0, no D
    assert term_shares({"pixel": 0.0}, 1, 1, 1) == {"pixel": 0.0, "perceptual": 0.0, "gan": 0.0}


def test_loss_share_widget_redraws_when_a_weight_moves():
    from lib.models.widgets import loss_share_widget

    terms = {"grey": {"pixel": 0.1, "perceptual": 1.2, "gan": 1.0}, "model": {"pixel": 0.03, "perceptual": 0.4, "gan": 1.0}}
    w = loss_share_widget(terms, alpha=100, beta=1, theta=0.08)
    (pick, a), (b, t) = w.children[0].children, w.children[1].children
    image, line = w.children[2], w.children[3]
    first = image.value
    assert pick.value == "model" and first[:8] == b"\x89PNG\r\n\x1a\n"
    assert line.value == " · ".join(f"{k} {100 * v:.1f}%" for k, v in term_shares(terms["model"], 100, 1, 0.08).items())
    t.value = 0.0  # what a reader's drag does, headless
    assert image.value != first and line.value.endswith("gan 0.0%")
    pick.value = "grey"
    assert line.value == " · ".join(f"{k} {100 * v:.1f}%" for k, v in term_shares(terms["grey"], a.value, b.value, 0.0).items())
