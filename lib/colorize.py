"""Colorize photos of any size with a trained generator: full-resolution L, upsampled ab.

Taught in ``notebooks/08_inference.ipynb``; the command is
``python -m lib colorize runs/seed/best.pt photo.jpg [more.jpg ...] --out colorized/``.

The generator was trained on square faces of one size (128x128 for the seed config). A
photo of any size goes through it like this::

    rgb or grey (C, H, W) --rgb_to_lab--> L (1, H, W)           full resolution, kept
    L --resize (antialiased) to the training scale--> L_s (1, h, w)
    L_s --normalise, model--> ab_n (2, h, w) --bilinear upsample--> ab (2, H, W)
    [L, ab] --lab_to_rgb--> rgb (3, H, W)

so every detail of the output comes from the photo's own lightness, and the model only
decides the colours, which vary slowly (chroma is low-frequency: JPEG stores it at half
resolution for the same reason). The short side is resized to ``size`` and the long
side to the nearest multiple of ``2**depth``, so a non-square photo keeps its aspect.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lib.color import denormalize_ab, lab_to_rgb, normalize_l, rgb_to_lab

__all__ = ["prepare_input", "model_input_size", "colorize", "colorize_batch", "to_uint8", "main"]


def _as_float_rgb(image: Tensor) -> Tensor:
    """uint8 or float ``(3 or 1, H, W)`` -> float32 RGB in [0, 1] ``(3, H, W)`` (grey repeated)."""
    if image.dim() != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"expected an image (3, H, W) or (1, H, W), got shape {tuple(image.shape)}")
    if image.dtype == torch.uint8:
        x = image.float() / 255.0
    elif image.is_floating_point():
        x = image.float()
        lo, hi = float(x.min()), float(x.max())
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise ValueError(f"a float image must lie in [0, 1], got values in [{lo:.3g}, {hi:.3g}] "
                             "(pass uint8 for 0-255 images)")
        x = x.clamp(0.0, 1.0)
    else:
        raise TypeError(f"image must be uint8 or floating point, got {image.dtype}")
    return x.expand(3, -1, -1) if x.shape[0] == 1 else x  # (3, H, W): an sRGB grey has a = b = 0


def model_input_size(height: int, width: int, size: int, multiple: int) -> tuple[int, int]:
    """``(h, w)`` the model sees: short side ``size``, long side scaled alike, both rounded to
    a multiple of ``multiple`` (``2**depth``). Taught in ``notebooks/08_inference.ipynb``."""
    assert size % multiple == 0, f"size {size} must be divisible by 2**depth = {multiple}"
    scale = size / min(height, width)
    h = max(multiple, round(height * scale / multiple) * multiple)
    w = max(multiple, round(width * scale / multiple) * multiple)
    return h, w


def prepare_input(image: Tensor, size: int, multiple: int) -> tuple[Tensor, Tensor]:
    """Full-resolution ``L`` ``(1, H, W)`` (Lab units) and the model's input ``L_n`` ``(1, h, w)``.

    ``image``: ``(3, H, W)`` RGB or ``(1, H, W)`` grey, uint8 or float in [0, 1].
    Taught in ``notebooks/08_inference.ipynb``.
    """
    rgb = _as_float_rgb(image)  # (3, H, W)
    L = rgb_to_lab(rgb)[:1]  # (1, H, W), L in [0, 100]
    h, w = model_input_size(L.shape[-2], L.shape[-1], size, multiple)
    small = F.interpolate(L[None], size=(h, w), mode="bilinear", align_corners=False,
                          antialias=(h < L.shape[-2] or w < L.shape[-1]))[0]  # (1, h, w)
    return L, normalize_l(small.clamp(0.0, 100.0))  # (1, H, W), (1, h, w)


def _device_of(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


@torch.no_grad()
def colorize_batch(model: nn.Module, images: Sequence[Tensor], size: int = 128, batch_size: int = 16) -> list[Tensor]:
    """Colorize many images of any sizes; returns float32 RGB ``(3, H_i, W_i)`` in [0, 1] each,
    on the device each input came from.

    Images whose model inputs have the same shape (all squares, say) share batches of up to
    ``batch_size``; the model runs in eval mode (BatchNorm running statistics) on its own
    device, in fp32, and is put back in the mode it was in. Taught in
    ``notebooks/08_inference.ipynb``.
    """
    assert batch_size >= 1, f"batch_size must be >= 1, got {batch_size}"
    device = _device_of(model)
    multiple = getattr(getattr(model, "config", None), "multiple", 1)
    prepared = [prepare_input(img.to(device), size, multiple) for img in images]  # [(L (1,H,W), L_n (1,h,w))]
    groups: dict[tuple[int, int], list[int]] = {}
    for i, (_, l_n) in enumerate(prepared):
        groups.setdefault(tuple(l_n.shape[-2:]), []).append(i)
    ab_small: list[Tensor | None] = [None] * len(images)
    was_training = model.training
    model.eval()
    try:
        for indices in groups.values():
            for start in range(0, len(indices), batch_size):
                chunk = indices[start : start + batch_size]
                l_n = torch.stack([prepared[i][1] for i in chunk])  # (b, 1, h, w)
                ab_n = model(l_n).float()  # (b, 2, h, w) in (-1, 1)
                for i, ab in zip(chunk, ab_n):
                    ab_small[i] = ab
    finally:
        model.train(was_training)
    out = []
    for img, (L, _), ab_n in zip(images, prepared, ab_small):
        ab = F.interpolate(ab_n[None], size=L.shape[-2:], mode="bilinear", align_corners=False)[0]  # (2, H, W)
        rgb = lab_to_rgb(torch.cat([L, denormalize_ab(ab)], dim=0))  # (3, H, W) in [0, 1]
        out.append(rgb.to(img.device))
    return out


def colorize(model: nn.Module, image: Tensor, size: int = 128) -> Tensor:
    """Colorize one image of any size: ``(3 or 1, H, W)`` uint8 or float in [0, 1] -> RGB
    ``(3, H, W)`` float32 in [0, 1], whose L channel is the input's own.

    The model runs at its training scale ``size`` on the resized L; its ab is upsampled
    (bilinear) to ``H x W`` and merged with the full-resolution L. Device-agnostic: the
    model's device does the work. Taught in ``notebooks/08_inference.ipynb``.
    """
    return colorize_batch(model, [image], size=size, batch_size=1)[0]


def to_uint8(rgb: Tensor) -> Tensor:
    """Float RGB in [0, 1] -> uint8 (rounded), for saving."""
    return (rgb.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8)


def main(checkpoint: str, images: Sequence[str], out: str, size: int | None = None, device: str = "auto",
         batch_size: int = 8) -> int:
    """``python -m lib colorize CKPT IMAGE... --out DIR``: write ``DIR/<name>_color.png`` for each image."""
    from torchvision.io import write_png

    from lib.data import decode_rgb
    from lib.train import load_generator, pick_device

    dev = pick_device(device)
    model, ckpt = load_generator(checkpoint, device=dev)
    size = size or int(ckpt.get("train_config", {}).get("image_size", 128))
    multiple = model.config.multiple
    if size % multiple:
        raise ValueError(f"--size {size} must be divisible by 2**depth = {multiple}")
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [Path(p) for p in images]
    for start in range(0, len(paths), batch_size):  # decode a batch at a time: bounded memory
        chunk = paths[start : start + batch_size]
        rgbs = colorize_batch(model, [decode_rgb(p) for p in chunk], size=size, batch_size=batch_size)
        for path, rgb in zip(chunk, rgbs):
            target = out_dir / f"{path.stem}_color.png"
            write_png(to_uint8(rgb.cpu()), str(target))
            h, w = model_input_size(rgb.shape[-2], rgb.shape[-1], size, multiple)
            print(f"{path} -> {target} ({rgb.shape[-2]}x{rgb.shape[-1]}, the model at {h}x{w})")
    return 0
