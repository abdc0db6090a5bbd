"""Model summary (parameters per part, output shape per level, FLOPs per image) and the
U-Net architecture figure, both generated from the model / its config.

Taught in ``notebooks/02_unet_building_blocks.ipynb``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch, Patch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from lib.models.discriminator import PatchDiscriminator
from lib.models.unet import UNet, UNetConfig
from lib.utils import eval_mode

__all__ = ["ModelSummary", "model_summary", "count_flops", "save_architecture_figure"]


@dataclass
class ModelSummary:
    """What ``model_summary`` measured; ``str(summary)`` is a readable table."""

    model: str  # class name
    image_size: tuple[int, int]  # (H, W) of the input used for shapes and FLOPs
    parameters: dict[str, int]  # parameters per top-level part, in definition order
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)  # output shape per module, in call order (B=1)
    flops: int = 0  # forward FLOPs for one image (a multiply-add counts 2), torch.utils.flop_counter

    @property
    def total_parameters(self) -> int:
        return sum(self.parameters.values())

    def __str__(self) -> str:
        H, W = self.image_size
        lines = [f"{self.model} at {H}x{W}", f"{'part':<20}{'parameters':>14}{'share':>8}"]
        total = max(self.total_parameters, 1)
        for name, n in self.parameters.items():
            lines.append(f"{name:<20}{n:>14,}{100 * n / total:>7.1f}%")
        lines.append(f"{'total':<20}{self.total_parameters:>14,}")
        lines.append("")
        lines.append(f"{'module (call order)':<24}output shape (B=1)")
        for name, shape in self.shapes.items():
            lines.append(f"{name:<24}{' x '.join(str(s) for s in shape)}")
        lines.append("")
        lines.append(f"forward FLOPs per image: {self.flops / 1e9:.3f} GFLOP")
        return "\n".join(lines)


def _size(image_size: int | tuple[int, int]) -> tuple[int, int]:
    return (image_size, image_size) if isinstance(image_size, int) else (int(image_size[0]), int(image_size[1]))


def _example_inputs(model: nn.Module, H: int, W: int) -> tuple[Tensor, ...]:
    """One random input of the right shapes for ``model`` (``UNet``: ``(L_n,)``; ``PatchDiscriminator``:
    ``(L_n, ab_n)``), on the model's device."""
    p = next(model.parameters())
    kw = dict(device=p.device, dtype=p.dtype)
    if isinstance(model, PatchDiscriminator):
        return torch.randn(1, 1, H, W, **kw), torch.randn(1, model.config.in_channels - 1, H, W, **kw)
    c = model.config.in_channels if isinstance(model, UNet) else 1
    return (torch.randn(1, c, H, W, **kw),)


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of everything ``fn()`` runs (forward, and backward if it calls it), counted by
    ``torch.utils.flop_counter.FlopCounterMode`` (matmuls, convolutions, attention)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def _hooked_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    if isinstance(model, UNet):
        levels = range(model.config.depth + 1)
        names = [f"encoder.{i}" if model.config.encoder == "conv" else f"encoder.adapters.{i}" for i in levels]
        names.append("bottleneck")
        for i in reversed(range(model.config.depth)):
            names += [f"decoder.{i}.up"] + ([f"gates.{i}"] if model.config.attention_gates else []) + [f"decoder.{i}.block"]
        names.append("head")
        mods = dict(model.named_modules())
        return [(n, mods[n]) for n in names]
    if isinstance(model, PatchDiscriminator):
        return [(f"net.{n}", m) for n, m in model.net.named_children() if isinstance(m, nn.Conv2d)]
    return list(model.named_children())


def model_summary(model: nn.Module, image_size: int | tuple[int, int] = 128) -> ModelSummary:
    """Parameters per part, output shape of every level (forward hooks) and forward FLOPs for
    one ``image_size`` image. The model is run once in eval mode without gradients (so
    BatchNorm statistics are untouched) and put back in its previous mode.
    Taught in ``notebooks/02_unet_building_blocks.ipynb``."""
    params = {name: sum(p.numel() for p in child.parameters()) for name, child in model.named_children()}
    shapes: dict[str, tuple[int, ...]] = {}
    record = lambda name: lambda _m, _inp, out: shapes.__setitem__(name, tuple(out.shape))  # noqa: E731
    handles = [module.register_forward_hook(record(name)) for name, module in _hooked_modules(model)]
    inputs = _example_inputs(model, *_size(image_size))
    with eval_mode(model), torch.no_grad():
        try:
            model(*inputs)
        finally:
            for h in handles:  # shapes are known now; count FLOPs without hooks in the way
                h.remove()
        flops = count_flops(lambda: model(*inputs))
    return ModelSummary(type(model).__name__, _size(image_size), params, shapes, flops)


# --- architecture figure -------------------------------------------------------------------

_COLORS = {
    "enc": "#4C72B0",  # encoder conv blocks
    "dec": "#55A868",  # decoder conv blocks
    "vit": "#8172B3",  # transformer bottleneck
    "gate": "#DD8452",  # attention gates
    "io": "#8C8C8C",  # input / output
    "down": "#C44E52",  # downsampling arrows
    "up": "#55A868",  # upsampling arrows
}


def save_architecture_figure(
    config: UNetConfig | None = None, path: str | Path = "figures/unet_architecture.png", image_size: int = 128
) -> Path:
    """Draw the U-Net described by ``config`` (levels with channels and spatial size for an
    ``image_size`` input, attention-gated skips, the bottleneck) with matplotlib and save it.
    Nothing is hard-coded: change the config and the figure follows.
    Taught in ``notebooks/02_unet_building_blocks.ipynb``; regenerated by ``make demo``."""
    cfg = config or UNetConfig()
    d = cfg.depth
    n_params = UNet(cfg).num_parameters()
    size = lambda i: image_size // 2**i  # noqa: E731
    dy, dx = 1.5, 1.05  # vertical step per level, horizontal shift per level
    width = lambda i: 0.95 + 0.1 * i  # box width grows with the channels (log scale)  # noqa: E731
    height = lambda i: 0.5 + 0.5 * (size(i) / image_size) ** 0.5  # box height shrinks with the size  # noqa: E731
    x_mid = 2.0 + d * dx + 2.2  # centre line of the U
    enc_x = lambda i: 2.0 + i * dx  # noqa: E731
    dec_x = lambda i: 2 * x_mid - enc_x(i)  # noqa: E731
    y = lambda i: -i * dy  # noqa: E731

    fig = Figure(figsize=(2 * x_mid * 0.9, 1.6 + (d + 1) * dy * 0.9))
    ax = fig.subplots()
    ax.set_aspect("equal")
    ax.axis("off")

    def box(cx, cy, w, h, color, title, sub, alpha=1.0):
        ax.add_patch(
            FancyBboxPatch(
                (cx - w / 2, cy - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.08",
                fc=color, ec="black", lw=0.8, alpha=alpha, zorder=3,
            )
        )
        ax.text(cx, cy + 0.1, title, ha="center", va="center", fontsize=9, color="white", weight="bold", zorder=4)
        ax.text(cx, cy - 0.15, sub, ha="center", va="center", fontsize=7.5, color="white", zorder=4)

    def arrow(p, q, color="black", style="-|>", ls="-", lw=1.4, rad=0.0, z=2):
        ax.add_patch(
            FancyArrowPatch(p, q, arrowstyle=style, mutation_scale=11, color=color, lw=lw, ls=ls,
                            connectionstyle=f"arc3,rad={rad}", zorder=z, shrinkA=0, shrinkB=0)
        )

    def label(i):
        return f"{cfg.channels(i)} ch", f"{size(i)}×{size(i)}"

    # input and output
    in_x, io_y = enc_x(0) - 2.0, y(0)
    box(in_x, io_y, 1.05, 0.7, _COLORS["io"], "L", f"{cfg.in_channels}×{image_size}×{image_size}")
    arrow((in_x + 0.525, io_y), (enc_x(0) - width(0) / 2, io_y))
    out_x = dec_x(0) + 2.0
    box(out_x, io_y, 1.05, 0.7, _COLORS["io"], "ab" if cfg.out_channels == 2 else "RGB", f"{cfg.out_channels}×{image_size}×{image_size}")
    arrow((dec_x(0) + width(0) / 2, io_y), (out_x - 0.525, io_y))
    ax.text((dec_x(0) + width(0) / 2 + out_x - 0.525) / 2, io_y - 0.08, "1×1 conv\n+ tanh", ha="center", va="top", fontsize=7)

    # encoder, down arrows, skips with gates, decoder, up arrows
    for i in range(d + 1):
        ch, sp = label(i)
        box(enc_x(i), y(i), width(i), height(i), _COLORS["enc"], ch, sp)
        if i == d:
            break
        p = (enc_x(i) + 0.15, y(i) - height(i) / 2)
        q = (enc_x(i + 1) - 0.15, y(i + 1) + height(i + 1) / 2)
        arrow(p, q, _COLORS["down"], lw=2.2)
        box(dec_x(i), y(i), width(i), height(i), _COLORS["dec"], ch, sp)
        p = (dec_x(i + 1) + 0.15, y(i + 1) + height(i + 1) / 2)
        q = (dec_x(i) - 0.15, y(i) - height(i) / 2)
        arrow(p, q, _COLORS["up"], lw=2.2)
        xs, xe = enc_x(i) + width(i) / 2, dec_x(i) - width(i) / 2
        if cfg.attention_gates:
            gx, r = (xs + xe) / 2, 0.24
            arrow((xs, y(i)), (gx - r, y(i)), "black", style="-", ls="--", lw=1.1)
            arrow((gx + r, y(i)), (xe, y(i)), "black", ls="--", lw=1.1)
            ax.add_patch(Circle((gx, y(i)), r, fc=_COLORS["gate"], ec="black", lw=0.8, zorder=3))
            ax.text(gx, y(i), "AG", ha="center", va="center", fontsize=7.5, color="white", weight="bold", zorder=4)
            # gating signal g: the upsampled decoder map (taken from the middle of the up arrow)
            mx, my = (p[0] + q[0]) / 2, (p[1] + q[1]) / 2
            arrow((mx, my), (gx + r * 0.7, y(i) - r * 0.7), _COLORS["gate"], lw=1.1, rad=-0.2)
            ax.text((mx + gx) / 2 + 0.1, (my + y(i)) / 2 - 0.25, "g", fontsize=8, color=_COLORS["gate"], style="italic")
        else:
            arrow((xs, y(i)), (xe, y(i)), "black", ls="--", lw=1.1)

    # bottleneck: innermost encoder map -> ViT (or conv block) -> innermost decoder map
    by = y(d)
    x0, x1 = enc_x(d) + width(d) / 2, dec_x(d) - width(d) / 2
    bw, bh = x1 - x0 - 0.7, max(height(d), 0.85)
    if cfg.num_blocks > 0:
        dim = cfg.vit_dim or cfg.channels(d)
        box(x_mid, by + 0.08, bw, bh, _COLORS["vit"], f"ViT × {cfg.num_blocks}",
            f"{size(d) ** 2} tokens × {dim}, {cfg.vit_heads} heads")
        ax.text(x_mid, by - 0.3, f"{'sin-cos' if cfg.pos_encoding == 'sincos' else 'learned'} PE · pre-norm · SDPA", ha="center", va="center",
                fontsize=6.5, color="white", style="italic", zorder=4)
        p, q = (enc_x(d) + 0.2, by - height(d) / 2), (dec_x(d) - 0.2, by - height(d) / 2)
        arrow(p, q, "black", ls="--", lw=1.1, rad=0.3)
        ax.text(x_mid, by - height(d) / 2 - 0.3 * (q[0] - p[0]) / 2 - 0.05, "+ residual", ha="center", va="top", fontsize=7)
    else:
        box(x_mid, by, bw, height(d), _COLORS["vit"], "conv block", f"{cfg.channels(d)} ch")
    arrow((x0, by), (x_mid - bw / 2, by), _COLORS["vit"], lw=1.6)
    arrow((x_mid + bw / 2, by), (x1, by), _COLORS["vit"], lw=1.6)
    box(dec_x(d), by, width(d), height(d), _COLORS["dec"], *label(d), alpha=0.6)

    handles = [
        Patch(fc=_COLORS["enc"], ec="black", label="encoder: 2 × (3×3 conv, norm, act)" if cfg.encoder == "conv"
              else "encoder: ImageNet VGG16 conv block → 1×1 conv to these widths"),
        Patch(fc=_COLORS["dec"], ec="black", label=f"decoder: cat({'gated ' if cfg.attention_gates else ''}skip, g) → 2 × (3×3 conv)"),
        Patch(fc=_COLORS["vit"], ec="black", label="pixel-wise ViT bottleneck" if cfg.num_blocks else "conv bottleneck"),
        Line2D([], [], color=_COLORS["down"], lw=2.2, label="3×3 conv, stride 2" if cfg.encoder == "conv" else "2×2 max-pool"),
        Line2D([], [], color=_COLORS["up"], lw=2.2, label=f"2× upsample ({cfg.upsample}) → g"),
        Line2D([], [], color="black", lw=1.1, ls="--", label="skip connection"),
    ]
    if cfg.attention_gates:
        handles.insert(3, Patch(fc=_COLORS["gate"], ec="black", label="attention gate: α(x, g) · x"))
    ax.legend(handles=handles, loc="upper center", fontsize=7.5, frameon=False, ncol=4, bbox_to_anchor=(0.5, 0.0))
    ax.set_title(
        f"U-Net generator  (ndims={cfg.ndims}, depth={cfg.depth}, num_blocks={cfg.num_blocks}, norm={cfg.norm})"
        f"  ·  {n_params / 1e6:.2f} M parameters  ·  shapes for a {image_size}×{image_size} input",
        fontsize=10,
    )
    ax.set_xlim(in_x - 0.6, out_x + 0.6)
    ax.set_ylim(y(d) - height(d) / 2 - 0.9, y(0) + height(0) / 2 + 0.3)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150, bbox_inches="tight", facecolor="white")
    return path
