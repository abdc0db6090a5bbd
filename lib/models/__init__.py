"""Colorization models: the U-Net generator (ViT bottleneck, attention gates) and the
PatchGAN discriminator, with a summary and an architecture figure drawn from the config.

Taught in ``notebooks/02_unet_building_blocks.ipynb`` (blocks, U-Net, summary),
``notebooks/03_attention_gates_and_vit.ipynb`` (attention gates, ViT bottleneck) and
``notebooks/06_gan_training.ipynb`` (PatchGAN).
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
