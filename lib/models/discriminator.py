"""PatchGAN discriminator (pix2pix, Isola et al., 2017) conditioned on the lightness L.

Taught in ``notebooks/06_gan_training.ipynb``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from lib.models.blocks import NORMS, make_norm

__all__ = ["DiscriminatorConfig", "PatchDiscriminator", "receptive_field", "layer_specs"]


@dataclass
class DiscriminatorConfig:
    """Everything needed to rebuild a ``PatchDiscriminator``; saved inside checkpoints.

    Taught in ``notebooks/06_gan_training.ipynb``.
    """

    in_channels: int = 3  # cat(L_n, ab_n): 1 + 2 channels
    ndf: int = 64  # channels of the first conv; doubles per layer, capped at 8 * ndf
    n_layers: int = 3  # stride-2 convs (3 = pix2pix's 70x70 PatchGAN)
    norm: str = "batch"  # "batch" | "instance" | "group" | "none" (never on the first and last conv)

    def __post_init__(self):
        assert self.n_layers >= 1, f"n_layers must be >= 1, got {self.n_layers}"
        assert self.norm in NORMS, f"norm {self.norm!r} is not one of {NORMS}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def layer_specs(config: DiscriminatorConfig) -> list[tuple[int, int, int, int]]:
    """``(in_channels, out_channels, kernel, stride)`` of every conv, input to output (padding 1)."""
    ndf, n = config.ndf, config.n_layers
    specs = [(config.in_channels, ndf, 4, 2)]
    mult = 1
    for i in range(1, n):
        prev, mult = mult, min(2**i, 8)
        specs.append((ndf * prev, ndf * mult, 4, 2))
    prev, mult = mult, min(2**n, 8)
    specs.append((ndf * prev, ndf * mult, 4, 1))
    specs.append((ndf * mult, 1, 4, 1))
    return specs


def receptive_field(config: DiscriminatorConfig) -> int:
    r"""Side, in input pixels, of the square patch that one output logit sees.

    Walking the conv stack from the output back to the input, a window of ``r`` positions
    after a layer with kernel ``k`` and stride ``s`` covers

    $$ r_{\text{before}} = s\,(r_{\text{after}} - 1) + k $$

    positions before it, starting from ``r = 1`` at the logit. For pix2pix's default
    (``n_layers=3``: three 4x4 stride-2 convs, two 4x4 stride-1 convs) this gives
    ``1 -> 4 -> 7 -> 16 -> 34 -> 70``: the "70x70 PatchGAN". ``n_layers`` = 1, 2, 4 give
    16, 34, 142. Taught in ``notebooks/04_loss_functions.ipynb`` (drawn on a face) and
    ``notebooks/06_gan_training.ipynb``.
    """
    r = 1
    for _, _, k, s in reversed(layer_specs(config)):
        r = s * (r - 1) + k
    return r


class PatchDiscriminator(nn.Module):
    r"""PatchGAN: a fully convolutional classifier that says "real" or "fake" for every
    overlapping patch of ``receptive_field(config)`` pixels, not once per image.

    $$ D(L, ab) = \big(\ell_{uv}\big)_{u,v}, \qquad \ell_{uv} = \text{logit that patch } (u, v)
       \text{ of } [L, ab] \text{ is a real photograph} $$

    Conditioned on ``L``: it sees ``cat(L_n, ab_n)``, so it judges whether the colours fit this
    grey image, not just whether they look like colours. Layers: 4x4 convs (stride 2, then
    two with stride 1), LeakyReLU(0.2), norm on all but the first and the last conv; the
    output is a map of raw logits ``(B, 1, h, w)`` (the loss applies the sigmoid, if any).
    Taught in ``notebooks/06_gan_training.ipynb``.
    """

    def __init__(self, config: DiscriminatorConfig | None = None):
        super().__init__()
        cfg = self.config = config or DiscriminatorConfig()
        specs = layer_specs(cfg)
        layers: list[nn.Module] = []
        for idx, (c_in, c_out, k, s) in enumerate(specs):
            first, last = idx == 0, idx == len(specs) - 1
            use_norm = not (first or last) and cfg.norm != "none"
            layers.append(nn.Conv2d(c_in, c_out, k, stride=s, padding=1, bias=not use_norm))
            if use_norm:
                layers.append(make_norm(cfg.norm, c_out))
            if not last:
                layers.append(nn.LeakyReLU(0.2, inplace=True))
        self.net = nn.Sequential(*layers)

    @property
    def receptive_field(self) -> int:
        return receptive_field(self.config)

    def forward(self, l_n: Tensor, ab_n: Tensor) -> Tensor:
        if l_n.shape[-2:] != ab_n.shape[-2:] or l_n.shape[0] != ab_n.shape[0]:
            raise ValueError(f"L {tuple(l_n.shape)} and ab {tuple(ab_n.shape)} must share batch and spatial size")
        x = torch.cat([l_n, ab_n], dim=1)  # (B, 3, H, W)
        if x.shape[1] != self.config.in_channels:
            raise ValueError(f"cat(L, ab) has {x.shape[1]} channels, config expects {self.config.in_channels}")
        return self.net(x)  # (B, 1, h, w) logits
