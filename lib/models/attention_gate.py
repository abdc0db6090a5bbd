"""Additive attention gate on a U-Net skip connection (Oktay et al., 2018, "Attention U-Net").

Taught in ``notebooks/03_attention_gates_and_vit.ipynb``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lib.models.blocks import make_activation

__all__ = ["AttentionGate"]


class AttentionGate(nn.Module):
    r"""Let the decoder decide, pixel by pixel, how much of a skip connection to pass on.

    $$ \alpha = \sigma\Big(\psi^\top \phi\big(W_x^\top x + W_g^\top g + b_g\big) + b_\psi\Big)
       \in (0, 1)^{1 \times H \times W}, \qquad \hat{x} = \alpha \odot x $$

    ``x`` is the encoder's skip feature map ``(B, C_x, H, W)``; ``g`` the gating signal from the
    decoder, here the upsampled coarser decoder features at the same resolution
    ``(B, C_g, H, W)``; ``W_x, W_g, psi`` are 1x1 convolutions into ``inter_channels`` and then
    to one channel; ``phi`` is ReLU as in the paper. One scalar per pixel scales every channel
    of ``x``.

    After each forward the detached map ``alpha`` ``(B, 1, H, W)`` is kept in ``self.alpha``
    (``None`` before the first call) so a notebook can show where the gate looks;
    ``UNet.attention_maps()`` collects them.
    Taught in ``notebooks/03_attention_gates_and_vit.ipynb``.
    """

    def __init__(self, x_channels: int, g_channels: int, inter_channels: int | None = None, activation: str = "relu"):
        super().__init__()
        inter = inter_channels or max(x_channels // 2, 1)
        self.w_x = nn.Conv2d(x_channels, inter, 1, bias=False)  # W_x
        self.w_g = nn.Conv2d(g_channels, inter, 1, bias=True)  # W_g, b_g
        self.act = make_activation(activation)  # phi
        self.psi = nn.Conv2d(inter, 1, 1, bias=True)  # psi, b_psi
        self.alpha: Tensor | None = None

    def forward(self, x: Tensor, g: Tensor) -> Tensor:
        if x.shape[-2:] != g.shape[-2:]:
            raise ValueError(f"skip {tuple(x.shape)} and gating signal {tuple(g.shape)} must share their spatial size")
        a = self.act(self.w_x(x) + self.w_g(g))  # (B, C_int, H, W)
        alpha = torch.sigmoid(self.psi(a))  # (B, 1, H, W), in (0, 1)
        self.alpha = alpha.detach()
        return x * alpha  # (B, C_x, H, W)
