"""Loss terms of the colorization generator and their weighted sum.

Taught in ``notebooks/04_loss_functions.ipynb``. The generator predicts normalised ``ab_hat``
from normalised L (``lib.color``); its loss is

    L_G = alpha * L_pixel + beta * L_perceptual + theta * L_GAN

with ``alpha = 100``, ``beta = 1``, ``theta = 0.08`` by default. Each term is a small
``nn.Module`` with its equation in the docstring. Our perceptual term uses ImageNet VGG16
features (``lib.pretrained``); the reference study used FaceNet (InceptionResnetV1,
VGGFace2) features at 160x160, whose weights cannot be had offline here, so perceptual
numbers are not directly comparable with theirs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lib import pretrained
from lib.color import lab_norm_to_rgb, prediction_target, prediction_to_rgb
from lib.pretrained import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["PixelLoss", "PerceptualLoss", "GANLoss", "ColorizationLoss", "term_shares"]


def _distance(kind: str):
    if kind not in ("l1", "l2"):
        raise ValueError(f"kind must be 'l1' or 'l2', got {kind!r}")
    return _l1 if kind == "l1" else _l2


def _l1(a: Tensor, b: Tensor) -> Tensor:
    """Mean absolute difference. Two bf16 tensors (VGG features under bf16 autocast) stay bf16
    for the element-wise part and are summed in fp32: autocast would otherwise copy both to
    fp32 first (``l1_loss`` is on its fp32 list), 13% of the perceptual loss's time at 128x128
    on a CPU, for the same value (docs/performance.md)."""
    if a.dtype == b.dtype == torch.bfloat16:
        return (a - b).abs().mean(dtype=torch.float32)
    return F.l1_loss(a, b)


def _l2(a: Tensor, b: Tensor) -> Tensor:
    """Mean squared difference; two bf16 tensors as in ``_l1`` (bf16 has fp32's range: no overflow)."""
    if a.dtype == b.dtype == torch.bfloat16:
        return (a - b).square().mean(dtype=torch.float32)
    return F.mse_loss(a, b)


class PixelLoss(nn.Module):
    r"""Pixel loss on the normalised ab channels.

    $$\mathcal{L}_{pixel} = \frac{1}{N}\sum_i |\hat{ab}_i - ab_i| \quad (\text{l1}) \qquad
      \text{or} \qquad \frac{1}{N}\sum_i (\hat{ab}_i - ab_i)^2 \quad (\text{l2})$$

    averaged over every pixel and both channels of the batch. L1 is the usual choice for
    colorization: L2 punishes large errors so hard that the model hedges towards grey.
    Taught in ``notebooks/04_loss_functions.ipynb``.
    """

    def __init__(self, kind: str = "l1"):
        super().__init__()
        self.kind = kind
        self._dist = _distance(kind)

    def forward(self, ab_hat: Tensor, ab: Tensor) -> Tensor:
        assert ab_hat.shape == ab.shape, f"ab_hat {tuple(ab_hat.shape)} and ab {tuple(ab.shape)} must match"
        return self._dist(ab_hat, ab)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}"


class PerceptualLoss(nn.Module):
    r"""Perceptual (feature) loss through a frozen ImageNet VGG16.

    Both images share the true L; only their ab differ:
    $\hat{x} = \mathrm{rgb}(L, \hat{ab})$, $x = \mathrm{rgb}(L, ab)$. With $\phi_j$ the VGG16
    activation at layer $j$ (after ImageNet normalisation) and $w_j$ its weight,

    $$\mathcal{L}_{perc} = \sum_j w_j \, \mathcal{L}_j, \qquad
      \mathcal{L}_j = \frac{1}{N_j} \lVert \phi_j(\hat{x}) - \phi_j(x) \rVert_1
      \quad (\text{or the mean squared error for } \texttt{kind="l2"}).$$

    ``layer_terms(l_n, ab_hat, ab)`` returns the unweighted ``L_j`` by layer name; ``forward``
    their weighted sum.

    The target features are computed under ``no_grad``; VGG16 is truncated after the
    deepest layer used, frozen (``requires_grad=False``) and stays in eval mode even when
    the parent module is switched to ``.train()``, so gradients reach only the generator.
    ``features`` lets tests or notebooks pass their own (frozen) feature extractor.
    Taught in ``notebooks/04_loss_functions.ipynb``.
    """

    def __init__(
        self,
        layers: Sequence[str] = ("relu1_2", "relu2_2", "relu3_3"),
        layer_weights: Sequence[float] | None = None,
        kind: str = "l1",
        weights_path: str | None = None,
        features: nn.Module | None = None,
    ):
        super().__init__()
        unknown = [name for name in layers if name not in pretrained.VGG16_LAYERS]
        assert not unknown, f"unknown VGG16 layers {unknown}; choose from {list(pretrained.VGG16_LAYERS)}"
        assert len(layers) > 0, "PerceptualLoss needs at least one layer"
        layer_weights = tuple(1.0 for _ in layers) if layer_weights is None else tuple(float(w) for w in layer_weights)
        assert len(layer_weights) == len(layers), f"{len(layer_weights)} layer weights for {len(layers)} layers"
        self.layers = tuple(layers)
        self.layer_weights = layer_weights
        self.kind = kind
        self._dist = _distance(kind)
        self._index = {pretrained.VGG16_LAYERS[name]: name for name in layers}  # features index -> layer name
        cut = max(self._index)
        self.vgg = features if features is not None else pretrained.vgg16_features(weights_path, cut=cut)
        for m in self.vgg.modules():
            if isinstance(m, nn.ReLU):
                m.inplace = False  # an in-place ReLU would overwrite a captured conv output
        self.vgg.eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def _channels_last(self) -> bool:
        w = next((m.weight for m in self.vgg.modules() if isinstance(m, nn.Conv2d)), None)
        return w is not None and w.dim() == 4 and w.is_contiguous(memory_format=torch.channels_last) \
            and not w.is_contiguous()

    def train(self, mode: bool = True) -> PerceptualLoss:
        super().train(mode)
        self.vgg.eval()  # frozen feature extractor: always eval
        return self

    def features(self, rgb: Tensor) -> dict[str, Tensor]:
        """VGG16 activations of RGB in [0, 1] ``(B, 3, H, W)`` at the configured layers.

        When the VGG's weights are channels-last (``loss.to(memory_format=torch.channels_last)``,
        as the trainer does on the fast path) the input is made channels-last too, so every
        convolution and pooling runs in that layout without reorders (on a CPU with native
        bf16, 1.4x faster than NCHW for the perceptual loss at 128x128: docs/performance.md).
        """
        x = (rgb - self.mean) / self.std  # (B, 3, H, W)
        if self._channels_last:
            x = x.contiguous(memory_format=torch.channels_last)  # (B, 3, H, W), NHWC in memory
        out = {}
        for i, layer in enumerate(self.vgg):
            x = layer(x)  # (B, C_i, H_i, W_i)
            if i in self._index:
                out[self._index[i]] = x
            if len(out) == len(self._index):
                break
        return out

    def layer_terms(self, l_n: Tensor, ab_hat: Tensor, ab: Tensor) -> dict[str, Tensor]:
        """The unweighted term ``L_j`` of every configured layer, by name (``"relu1_2"``, ...)."""
        rgb_hat = prediction_to_rgb(l_n, ab_hat)  # (B, 3, H, W), differentiable w.r.t. ab_hat
        with torch.no_grad():
            target = self.features(lab_norm_to_rgb(l_n, ab))  # name -> (B, C_j, h_j, w_j)
        pred = self.features(rgb_hat)  # name -> (B, C_j, h_j, w_j)
        return {name: self._dist(pred[name], target[name]) for name in self.layers}

    def weighted_sum(self, layer_terms: dict[str, Tensor]) -> Tensor:
        """``sum_j w_j L_j`` of ``layer_terms()``'s output."""
        return sum(w * layer_terms[name] for name, w in zip(self.layers, self.layer_weights))

    def forward(self, l_n: Tensor, ab_hat: Tensor, ab: Tensor) -> Tensor:
        return self.weighted_sum(self.layer_terms(l_n, ab_hat, ab))

    def extra_repr(self) -> str:
        return f"layers={self.layers}, layer_weights={self.layer_weights}, kind={self.kind!r}"


class GANLoss(nn.Module):
    r"""Adversarial loss on discriminator logits $D(\cdot)$, for D and for G.

    | mode      | discriminator, real $x$ / fake $\hat{x}$                       | generator                          |
    |-----------|----------------------------------------------------------------|------------------------------------|
    | `lsgan`   | $(D(x)-1)^2$ / $D(\hat{x})^2$                                   | $(D(\hat{x})-1)^2$                 |
    | `vanilla` | $-\log\sigma(D(x))$ / $-\log(1-\sigma(D(\hat{x})))$ (BCE with logits) | $-\log\sigma(D(\hat{x}))$     |
    | `hinge`   | $\max(0, 1-D(x))$ / $\max(0, 1+D(\hat{x}))$                     | $-D(\hat{x})$                      |

    each averaged over the logits (a PatchGAN gives one per patch):
    ``discriminator_loss(real_logits, fake_logits)`` (half the sum of its two columns, as
    pix2pix) and ``generator_loss(fake_logits)``.
    Taught in ``notebooks/04_loss_functions.ipynb`` and ``notebooks/06_gan_training.ipynb``.
    """

    MODES = ("lsgan", "vanilla", "hinge")

    def __init__(self, mode: str = "lsgan"):
        super().__init__()
        assert mode in self.MODES, f"gan mode must be one of {self.MODES}, got {mode!r}"
        self.mode = mode

    def _scored(self, logits: Tensor, real: bool) -> Tensor:
        """D's loss for logits that should say ``real`` (also G's loss for lsgan and vanilla)."""
        if self.mode == "lsgan":
            return F.mse_loss(logits, torch.full_like(logits, float(real)))
        if self.mode == "vanilla":
            return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, float(real)))
        return F.relu(1.0 - logits).mean() if real else F.relu(1.0 + logits).mean()  # hinge

    def generator_loss(self, fake_logits: Tensor) -> Tensor:
        """What G minimises: make D call its output real."""
        return -fake_logits.mean() if self.mode == "hinge" else self._scored(fake_logits, True)

    def discriminator_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        """What D minimises: 0.5 * (loss on real as real + loss on fake as fake)."""
        return 0.5 * (self._scored(real_logits, True) + self._scored(fake_logits, False))

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"


class ColorizationLoss(nn.Module):
    r"""The generator objective: weighted sum of pixel, perceptual and adversarial terms.

    $$\mathcal{L}_G = \alpha\,\mathcal{L}_{pixel} + \beta\,\mathcal{L}_{perc} + \theta\,\mathcal{L}_{GAN}$$

    ``forward(l_n, ab_hat, ab, fake_logits=None)`` returns ``(total, terms)``; ``terms``
    holds detached scalars for logging: ``pixel``, ``perceptual``, ``gan`` (unweighted),
    one ``perceptual/<layer>`` per VGG16 layer (unweighted ``L_j``; ``perceptual`` is their
    ``layer_weights``-weighted sum), ``pixel_weighted``, ``perceptual_weighted``,
    ``gan_weighted`` and ``total``. A term is
    left out when it is off: ``beta == 0`` (no VGG is even loaded: ``self.perceptual is
    None``), or ``theta == 0`` / no ``fake_logits`` (generator-only training). The
    discriminator's own loss is ``self.gan.discriminator_loss(real_logits, fake_logits)``.
    An RGB-mode prediction ``(B, 3, H, W)`` (the colorspace ablation of ``08_ablation_study``)
    is compared as RGB in (-1, 1) by the pixel term and seen as it is by the perceptual term
    (``lib.color.prediction_target`` / ``prediction_to_rgb``).
    Taught in ``notebooks/04_loss_functions.ipynb``.
    """

    def __init__(
        self,
        alpha: float = 100.0,
        beta: float = 1.0,
        theta: float = 0.08,
        pixel: str = "l1",
        perceptual_layers: Sequence[str] = ("relu1_2", "relu2_2", "relu3_3"),
        gan_mode: str = "lsgan",
    ):
        super().__init__()
        assert min(alpha, beta, theta) >= 0, f"loss weights must be >= 0, got alpha={alpha}, beta={beta}, theta={theta}"
        self.alpha, self.beta, self.theta = float(alpha), float(beta), float(theta)
        self.pixel = PixelLoss(pixel)
        self.perceptual = PerceptualLoss(perceptual_layers) if beta > 0 else None
        self.gan = GANLoss(gan_mode)

    def forward(self, l_n: Tensor, ab_hat: Tensor, ab: Tensor, fake_logits: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        raw = {"pixel": self.pixel(ab_hat, prediction_target(l_n, ab, ab_hat.shape[1]))}  # ab_n, or RGB (RGB mode)
        weights = {"pixel": self.alpha}
        layers = {}
        if self.perceptual is not None:
            layers = self.perceptual.layer_terms(l_n, ab_hat, ab)
            raw["perceptual"] = self.perceptual.weighted_sum(layers)
            weights["perceptual"] = self.beta
        if fake_logits is not None and self.theta > 0:
            raw["gan"] = self.gan.generator_loss(fake_logits)
            weights["gan"] = self.theta
        total = sum(weights[k] * v for k, v in raw.items())
        terms = {k: v.detach() for k, v in raw.items()}
        terms.update({f"perceptual/{name}": v.detach() for name, v in layers.items()})
        terms.update({f"{k}_weighted": (weights[k] * v).detach() for k, v in raw.items()})
        terms["total"] = total.detach()
        return total, terms

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}, theta={self.theta}"


def term_shares(terms: dict, alpha: float, beta: float, theta: float) -> dict[str, float]:
    """Each weighted term's share of ``L_G`` for the unweighted ``terms`` of ``ColorizationLoss``
    (floats or scalar tensors; a missing term counts 0) under weights ``alpha, beta, theta``:
    ``{"pixel": alpha * pixel / L_G, "perceptual": ..., "gan": ...}``, summing to 1 (all 0 when
    ``L_G = 0``). Taught in ``notebooks/04_loss_functions.ipynb`` (the loss-weight sliders)."""
    weighted = {"pixel": alpha * float(terms.get("pixel", 0.0)), "perceptual": beta * float(terms.get("perceptual", 0.0)),
                "gan": theta * float(terms.get("gan", 0.0))}
    total = sum(weighted.values())
    return {k: v / total if total > 0 else 0.0 for k, v in weighted.items()}
