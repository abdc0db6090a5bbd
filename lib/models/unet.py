"""The colorization generator: a U-Net from L to ab with attention-gated skips and a
pixel-wise ViT bottleneck (UVCGAN-style).

Taught in ``notebooks/02_unet_building_blocks.ipynb`` (encoder, decoder, skips) and
``notebooks/03_attention_gates_and_vit.ipynb`` (attention gates, ViT bottleneck).

Level ``i`` (0 = full resolution, ``depth`` = innermost) has ``ndims * 2**i`` channels at
``H / 2**i x W / 2**i``::

    L_n (B,1,H,W)
      encoder[0]  ConvBlock                 -> skip 0  (ndims,      H,    W)
      encoder[1]  Downsample + ConvBlock    -> skip 1  (2 ndims,    H/2,  W/2)
      ...
      encoder[d]  Downsample + ConvBlock    ->         (2^d ndims,  H/2^d, W/2^d)
      bottleneck  ViT (num_blocks > 0) or ConvBlock (num_blocks = 0)
      decoder[i]  Upsample -> g; gates[i](skip i, g); ConvBlock(cat) for i = d-1 ... 0
      head        1x1 conv + tanh           -> ab_n (B,2,H,W) in (-1, 1)

Two options exist for the ablations of ``08_ablation_study`` only: ``encoder="vgg16"`` (the
encoder is ImageNet VGG16's conv blocks, ``lib.models.vgg_encoder``) and ``out_channels=3``
(the head predicts RGB instead of ab; ``lib.color.prediction_to_rgb``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from lib.models.attention_gate import AttentionGate
from lib.models.blocks import ACTIVATIONS, NORMS, ConvBlock, Downsample, Upsample
from lib.models.vgg_encoder import VGG16Encoder
from lib.models.vit import ViTBottleneck

__all__ = ["ENCODERS", "UNetConfig", "UNet"]

ENCODERS = ("conv", "vgg16")


@dataclass
class UNetConfig:
    """Everything needed to rebuild a ``UNet``; saved inside checkpoints (``asdict`` / ``from_dict``).

    Taught in ``notebooks/02_unet_building_blocks.ipynb``.
    """

    in_channels: int = 1  # input channels: the normalised lightness L_n
    out_channels: int = 2  # 2: the normalised chroma ab_n (the method); 3: RGB in (-1, 1), the colorspace ablation's RGB mode
    ndims: int = 16  # channels of the first (full-resolution) level; doubles at each level down
    depth: int = 4  # number of 2x downsamplings; H and W must be divisible by 2**depth
    num_blocks: int = 1  # transformer blocks in the bottleneck; 0 = a plain conv bottleneck
    attention_gates: bool = True  # gate every skip connection with an additive attention gate
    norm: str = "batch"  # "batch" | "instance" | "group" | "none"
    activation: str = "leaky_relu"  # "relu" | "leaky_relu" | "gelu" | "silu" (conv blocks)
    dropout: float = 0.0  # dropout in decoder conv blocks and transformer blocks (0 = off)
    eca: bool = False  # add ECA channel attention at the end of every conv block
    upsample: str = "bilinear"  # "bilinear" (+3x3 conv) | "transpose" (4x4 transposed conv)
    vit_dim: int | None = None  # token width of the ViT; None = the innermost channels
    vit_heads: int = 4  # attention heads (vit_dim must be divisible by it)
    vit_mlp_ratio: float = 4.0  # hidden width of the transformer MLP, as a multiple of vit_dim
    pos_encoding: str = "sincos"  # "sincos" (fixed, cached per size) | "learned" (resized per size)
    pos_grid: int = 8  # grid side of the learned table (8 = a 128x128 input at depth 4)
    encoder: str = "conv"  # "conv" (learned from scratch) | "vgg16" (ImageNet VGG16 blocks, fine-tuned; depth <= 4)

    def __post_init__(self):
        assert self.depth >= 1, f"depth must be >= 1, got {self.depth}"
        assert self.ndims >= 1 and self.num_blocks >= 0, f"ndims >= 1 and num_blocks >= 0, got {self.ndims}, {self.num_blocks}"
        assert self.norm in NORMS, f"norm {self.norm!r} is not one of {NORMS}"
        assert self.activation in ACTIVATIONS, f"activation {self.activation!r} is not one of {ACTIVATIONS}"
        assert 0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}"
        assert self.out_channels in (2, 3), f"out_channels must be 2 (ab) or 3 (RGB mode), got {self.out_channels}"
        assert self.encoder in ENCODERS, f"encoder {self.encoder!r} is not one of {ENCODERS}"
        assert self.encoder != "vgg16" or self.depth <= 4, f"a VGG16 encoder allows depth <= 4, got {self.depth}"

    def channels(self, level: int) -> int:
        """Channels of level ``level`` (0 = full resolution, ``depth`` = innermost)."""
        return self.ndims * 2**level

    @property
    def multiple(self) -> int:
        """Input height and width must be multiples of this (``2**depth``)."""
        return 2**self.depth

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "UNetConfig":
        """Rebuild from ``to_dict()`` output (e.g. a checkpoint); unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown UNetConfig fields {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)


class _DecoderLevel(nn.Module):
    """Upsample the coarser decoder map, then fuse it with the (gated) skip."""

    def __init__(self, cfg: UNetConfig, level: int):
        super().__init__()
        c_in, c = cfg.channels(level + 1), cfg.channels(level)
        self.up = Upsample(c_in, c, cfg.upsample, cfg.norm, cfg.activation)
        self.block = ConvBlock(2 * c, c, cfg.norm, cfg.activation, cfg.dropout, cfg.eca)


class UNet(nn.Module):
    r"""U-Net generator ``L_n (B, 1, H, W) -> ab_n (B, 2, H, W)`` in ``(-1, 1)``.

    $$ \hat{ab}_n = \tanh\big(W_{head} * D_0\big), \qquad
       D_i = \mathrm{Conv}\big([\,\alpha_i \odot E_i,\; U(D_{i+1})\,]\big), \qquad
       D_{d} = \mathrm{ViT}(E_d) $$

    ``E_i`` are encoder maps, ``U`` the learnable upsampling, ``alpha_i`` the attention-gate maps
    (1 when ``attention_gates=False``), ``[.,.]`` channel concatenation.
    ``attention_maps()`` returns the ``alpha_i`` of the last forward, **outermost first**
    (index 0 = full resolution ``(B, 1, H, W)``, last = ``(B, 1, H/2^{d-1}, W/2^{d-1})``).
    The ViT's attention weights are kept only when asked:
    ``with model.bottleneck.keep_attention(): model(l_n)``, then ``model.bottleneck.attention_weights()``.
    Taught in ``notebooks/02_unet_building_blocks.ipynb`` and ``notebooks/03_attention_gates_and_vit.ipynb``.
    """

    def __init__(self, config: UNetConfig | None = None):
        super().__init__()
        cfg = self.config = config or UNetConfig()
        act, norm = cfg.activation, cfg.norm
        if cfg.encoder == "vgg16":  # the components ablation: lib.models.vgg_encoder
            self.encoder: nn.Module = VGG16Encoder(cfg.depth, [cfg.channels(i) for i in range(cfg.depth + 1)], norm, act)
        else:
            self.encoder = nn.ModuleList([ConvBlock(cfg.in_channels, cfg.channels(0), norm, act, 0.0, cfg.eca)])
            for i in range(1, cfg.depth + 1):
                self.encoder.append(
                    nn.Sequential(
                        Downsample(cfg.channels(i - 1), norm, act),
                        ConvBlock(cfg.channels(i - 1), cfg.channels(i), norm, act, 0.0, cfg.eca),
                    )
                )
        c_bot = cfg.channels(cfg.depth)
        if cfg.num_blocks > 0:
            self.bottleneck: nn.Module = ViTBottleneck(
                c_bot, cfg.vit_dim, cfg.num_blocks, cfg.vit_heads, cfg.vit_mlp_ratio, cfg.dropout, cfg.pos_encoding, cfg.pos_grid
            )
        else:
            self.bottleneck = ConvBlock(c_bot, c_bot, norm, act, cfg.dropout, cfg.eca)
        # gates[i] and decoder[i] work at level i (0 = outermost); forward runs them innermost first
        self.gates = nn.ModuleList(
            [AttentionGate(cfg.channels(i), cfg.channels(i)) for i in range(cfg.depth)] if cfg.attention_gates else []
        )
        self.decoder = nn.ModuleList([_DecoderLevel(cfg, i) for i in range(cfg.depth)])
        self.head = nn.Sequential(nn.Conv2d(cfg.channels(0), cfg.out_channels, 1), nn.Tanh())

    def check_input(self, x: Tensor) -> None:
        """Raise a clear error for a wrong channel count or a size not divisible by ``2**depth``."""
        cfg = self.config
        if x.dim() != 4 or x.shape[1] != cfg.in_channels:
            raise ValueError(f"expected input (B, {cfg.in_channels}, H, W), got {tuple(x.shape)}")
        H, W = x.shape[-2:]
        m = cfg.multiple
        if H % m or W % m:
            fit = f"{-(-H // m) * m}x{-(-W // m) * m}"
            raise ValueError(
                f"input {H}x{W} must be divisible by 2**depth = {m} (depth={cfg.depth}) in height and width; "
                f"pad or resize it, e.g. to {fit}"
            )

    def forward(self, l_n: Tensor) -> Tensor:
        self.check_input(l_n)
        skips = self.encode(l_n)  # E_0 ... E_d
        x = self.bottleneck(skips.pop())  # (B, C_d, H/2^d, W/2^d)
        for level in reversed(range(self.config.depth)):
            dec, skip = self.decoder[level], skips[level]
            g = dec.up(x)  # (B, C_i, H/2^i, W/2^i): gating signal
            if self.config.attention_gates:
                skip = self.gates[level](skip, g)  # (B, C_i, H/2^i, W/2^i)
            x = dec.block(torch.cat([skip, g], dim=1))  # (B, C_i, H/2^i, W/2^i)
        return self.head(x)  # (B, 2, H, W)

    def encode(self, l_n: Tensor) -> list[Tensor]:
        """The encoder maps ``[E_0, ..., E_d]``, ``E_i (B, ndims*2^i, H/2^i, W/2^i)``."""
        if self.config.encoder == "vgg16":
            return self.encoder(l_n)
        skips, x = [], l_n  # x: (B, 1, H, W)
        for enc in self.encoder:
            x = enc(x)  # (B, ndims*2^level, H/2^level, W/2^level)
            skips.append(x)
        return skips

    def attention_maps(self) -> list[Tensor]:
        """The attention-gate maps ``alpha`` of the last forward, outermost (full resolution)
        first, each ``(B, 1, h_i, w_i)`` in ``(0, 1)`` and detached; ``[]`` when the gates are off.
        Taught in ``notebooks/03_attention_gates_and_vit.ipynb``."""
        if not self.config.attention_gates:
            return []
        maps = [g.alpha for g in self.gates]
        if any(m is None for m in maps):
            raise RuntimeError("no attention maps yet: run a forward pass first")
        return maps

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
