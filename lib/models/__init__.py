"""Colorization models: the U-Net generator (ViT bottleneck, attention gates) and the
PatchGAN discriminator, with a summary and an architecture figure drawn from the config.

Taught in ``notebooks/03_unet.ipynb``, ``notebooks/04_attention_and_vit.ipynb`` and
``notebooks/06_gan.ipynb``.
"""

from lib.models.discriminator import DiscriminatorConfig, PatchDiscriminator, receptive_field
from lib.models.summary import model_summary, save_architecture_figure
from lib.models.unet import UNet, UNetConfig

__all__ = [
    "UNetConfig",
    "UNet",
    "DiscriminatorConfig",
    "PatchDiscriminator",
    "receptive_field",
    "model_summary",
    "save_architecture_figure",
]
