"""Convolutional building blocks of the U-Net: norm/activation factories, the conv block
(with optional ECA channel attention), learnable down- and upsampling.

Taught in ``notebooks/02_unet_building_blocks.ipynb``.

Every block maps ``(B, C_in, H, W) -> (B, C_out, H', W')`` with convolutions, norms and
element-wise ops only, so it runs unchanged in ``torch.channels_last`` memory format,
under ``torch.autocast`` and under ``torch.compile``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = [
    "NORMS",
    "ACTIVATIONS",
    "make_norm",
    "make_activation",
    "ECA",
    "ConvBlock",
    "Downsample",
    "Upsample",
]

NORMS = ("batch", "instance", "group", "none")
ACTIVATIONS = ("relu", "leaky_relu", "gelu", "silu")


def make_norm(kind: str, channels: int, groups: int = 8) -> nn.Module:
    """Return a 2-D normalisation layer over ``channels`` feature maps.

    ``kind`` is one of ``"batch"`` (BatchNorm2d), ``"instance"`` (InstanceNorm2d with a
    learnable affine, as in pix2pix), ``"group"`` (GroupNorm with ``gcd(channels, groups)``
    groups, so any width works) or ``"none"`` (identity).
    Taught in ``notebooks/02_unet_building_blocks.ipynb``.
    """
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "group":
        return nn.GroupNorm(math.gcd(channels, groups), channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; choose one of {NORMS}")


def make_activation(kind: str) -> nn.Module:
    """Return a fresh activation module: ``relu``, ``leaky_relu`` (slope 0.2, as in pix2pix),
    ``gelu`` or ``silu``. Taught in ``notebooks/02_unet_building_blocks.ipynb``."""
    if kind == "relu":
        return nn.ReLU(inplace=True)
    if kind == "leaky_relu":
        return nn.LeakyReLU(0.2, inplace=True)
    if kind == "gelu":
        return nn.GELU()
    if kind == "silu":
        return nn.SiLU(inplace=True)
    raise ValueError(f"unknown activation {kind!r}; choose one of {ACTIVATIONS}")


class ECA(nn.Module):
    r"""Efficient Channel Attention (Wang et al., 2020): re-weight channels by a gate computed
    from their global averages with a tiny 1-D convolution across neighbouring channels.

    $$ y = x \odot \sigma\big(\mathrm{conv1d}_k(\mathrm{GAP}(x))\big), \qquad
       k = \mathrm{odd}\Big(\Big|\tfrac{\log_2 C + 1}{2}\Big|\Big) $$

    Adds only ``k`` (3 to 5) parameters per block. Taught in ``notebooks/02_unet_building_blocks.ipynb``.
    """

    def __init__(self, channels: int):
        super().__init__()
        k = int(abs((math.log2(channels) + 1) / 2))
        k = k if k % 2 else k + 1  # odd kernel: the window is centred on each channel
        self.conv = nn.Conv1d(1, 1, kernel_size=k, padding=k // 2, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        w = x.mean(dim=(2, 3))  # (B, C): global average pooling
        w = self.conv(w.unsqueeze(1)).squeeze(1)  # (B, C): each channel looks at its k neighbours
        return x * torch.sigmoid(w)[:, :, None, None]  # (B, C, H, W)


class ConvBlock(nn.Module):
    r"""Two 3x3 convolutions, each followed by a norm and an activation (the U-Net's unit):

    $$ y = \mathrm{ECA}\Big(\phi\big(N_2(W_2 * \mathrm{drop}(\phi(N_1(W_1 * x))))\big)\Big) $$

    ``W * x`` is a 3x3 convolution with padding 1 (the spatial size is kept), ``N`` the norm,
    ``phi`` the activation; dropout and ECA are optional. Convolutions have no bias when a
    norm follows (the norm's shift replaces it).
    Taught in ``notebooks/02_unet_building_blocks.ipynb``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        norm: str = "batch",
        activation: str = "leaky_relu",
        dropout: float = 0.0,
        eca: bool = False,
    ):
        super().__init__()
        bias = norm == "none"
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias),
            make_norm(norm, out_channels),
            make_activation(activation),
            nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=bias),
            make_norm(norm, out_channels),
            make_activation(activation),
            ECA(out_channels) if eca else nn.Identity(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)  # (B, C_out, H, W)


class Downsample(nn.Sequential):
    r"""Learnable 2x downsampling: a 3x3 convolution with stride 2, then norm and activation.

    $$ y = \phi\big(N(W *_{s=2} x)\big), \qquad (B, C, H, W) \to (B, C, H/2, W/2) $$

    Unlike max-pooling, the network learns what to keep. Taught in ``notebooks/02_unet_building_blocks.ipynb``.
    """

    def __init__(self, channels: int, norm: str = "batch", activation: str = "leaky_relu"):
        super().__init__(
            nn.Conv2d(channels, channels, 3, stride=2, padding=1, bias=norm == "none"),
            make_norm(norm, channels),
            make_activation(activation),
        )


class Upsample(nn.Sequential):
    r"""Learnable 2x upsampling, ``(B, C_in, H, W) -> (B, C_out, 2H, 2W)``.

    ``mode="bilinear"``: bilinear interpolation then a 3x3 convolution (no checkerboard
    artefacts); ``mode="transpose"``: a 4x4 transposed convolution with stride 2 (pix2pix).
    Both are followed by norm and activation. Taught in ``notebooks/02_unet_building_blocks.ipynb``.
    """

    def __init__(
        self, in_channels: int, out_channels: int, mode: str = "bilinear", norm: str = "batch", activation: str = "leaky_relu"
    ):
        bias = norm == "none"
        if mode == "bilinear":
            layers = [
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias),
            ]
        elif mode == "transpose":
            layers = [nn.ConvTranspose2d(in_channels, out_channels, 4, stride=2, padding=1, bias=bias)]
        else:
            raise ValueError(f"unknown upsample mode {mode!r}; choose 'bilinear' or 'transpose'")
        super().__init__(*layers, make_norm(norm, out_channels), make_activation(activation))
