"""An encoder initialised from the ImageNet VGG16 (the ``components`` ablation's ``vgg_encoder`` run).

Pretrained encoders are what the best-known colorization tutorials credit for their quality
(a ResNet or VGG U-Net, fine-tuned). This puts the VGG16 that the perceptual loss already loads
offline (``lib.pretrained.vgg16_features``) in place of the U-Net's own encoder, so the claim is
measured on this task and budget. Level ``i`` runs VGG16's conv block ``i + 1`` (the max-pool
that starts it included, for ``i > 0``) on the grey face, and a 1x1 conv (+ norm, activation)
maps its ``64, 128, 256, 512, 512`` channels to the U-Net's ``ndims * 2**i``, so the bottleneck,
the gates and the decoder are the seed's. The VGG weights are fine-tuned with the rest.
Taught in ``08_ablation_study``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lib import pretrained
from lib.color import lab_norm_to_rgb
from lib.models.blocks import make_activation, make_norm

__all__ = ["VGG16_BLOCKS", "VGG16Encoder"]

# torchvision vgg16().features index range of each level: conv block i + 1, with the pool before it
VGG16_BLOCKS = ((0, 4, 64), (4, 9, 128), (9, 16, 256), (16, 23, 512), (23, 30, 512))  # (start, stop, channels)


class VGG16Encoder(nn.Module):
    """``L_n (B, 1, H, W) -> [E_0, ..., E_depth]``, ``E_i (B, ndims * 2**i, H / 2**i, W / 2**i)``.

    The grey input is the sRGB of the true L with a = b = 0, ImageNet-normalised, as VGG16 saw
    its training images. ``depth`` is at most 4 (VGG16 has five conv blocks).
    """

    def __init__(self, depth: int, channels: list[int], norm: str, activation: str, weights_path: str | None = None):
        super().__init__()
        assert 1 <= depth < len(VGG16_BLOCKS), f"a VGG16 encoder has at most {len(VGG16_BLOCKS) - 1} levels down, got depth {depth}"
        features = pretrained.vgg16_features(weights_path, cut=VGG16_BLOCKS[depth][1] - 1)
        self.blocks = nn.ModuleList([features[start:stop] for start, stop, _ in VGG16_BLOCKS[: depth + 1]])
        self.adapters = nn.ModuleList([
            nn.Sequential(nn.Conv2d(c_vgg, c, 1, bias=False), make_norm(norm, c), make_activation(activation))
            for (_, _, c_vgg), c in zip(VGG16_BLOCKS, channels)
        ])
        self.register_buffer("mean", torch.tensor(pretrained.IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(pretrained.IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, l_n: Tensor) -> list[Tensor]:
        grey = lab_norm_to_rgb(l_n, torch.zeros_like(l_n).expand(-1, 2, -1, -1))  # (B, 3, H, W) in [0, 1]
        x = (grey - self.mean) / self.std  # (B, 3, H, W)
        skips = []
        for block, adapter in zip(self.blocks, self.adapters):
            x = block(x)  # (B, 64..512, H / 2**i, W / 2**i): VGG16 features
            skips.append(adapter(x))  # (B, ndims * 2**i, H / 2**i, W / 2**i)
        return skips
