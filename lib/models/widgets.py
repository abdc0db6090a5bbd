"""The two small ipywidgets controls of notebooks 03 and 04: pick a U-Net level and a face to see
its attention-gate map (``notebooks/03_attention_gates_and_vit.ipynb``); move the loss weights to
see each weighted term's share of the generator loss (``notebooks/04_loss_functions.ipynb``).

Each draws its default state when built (an executed notebook shows it) and redraws when a control
is released; the picture is a PNG in an ``ipywidgets.Image``, drawn on a ``matplotlib.figure.Figure``
(no pyplot state). Not imported by ``lib.models``: training never loads ipywidgets.
"""

from __future__ import annotations

import io

import ipywidgets as widgets
from matplotlib.figure import Figure
from torch import Tensor

from lib.losses import term_shares

__all__ = ["gate_map_widget", "loss_share_widget"]

SHARE_COLORS = {"pixel": "#4C72B0", "perceptual": "#55A868", "gan": "#C44E52"}


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, facecolor="white")
    return buf.getvalue()


def _hwc(x: Tensor):
    return x.detach().float().cpu().permute(1, 2, 0).clamp(0, 1).numpy()  # (3, H, W) -> (H, W, 3)


def gate_map_widget(grey: Tensor, rgb_hat: Tensor, maps: list[Tensor], face: int = 0) -> widgets.VBox:
    """A face slider and a level picker over the gate maps of one forward pass.

    ``grey`` and ``rgb_hat`` ``(n, 3, S, S)`` in [0, 1]: the input (L with ab = 0) and the model's
    colours; ``maps``: ``UNet.attention_maps()``, outermost first, each ``(n, 1, S / 2^i, S / 2^i)``.
    Shows the input, the map alpha of the chosen level, and alpha over the colours.
    Children: ``HBox(IntSlider "face", ToggleButtons "level")``, ``Image``.
    """
    n, S = grey.shape[0], grey.shape[-1]
    face_slider = widgets.IntSlider(value=min(face, n - 1), min=0, max=n - 1, description="face", continuous_update=False)
    level = widgets.ToggleButtons(options=[(f"level {i}", i) for i in range(len(maps))], value=0, description="level")
    image = widgets.Image(format="png")

    def draw(_change=None) -> None:
        f, i = face_slider.value, level.value
        alpha = maps[i][f, 0].detach().float().cpu().numpy()  # (S / 2^i, S / 2^i)
        fig = Figure(figsize=(8, 3), layout="constrained")
        axes = fig.subplots(1, 3)
        axes[0].imshow(_hwc(grey[f]))
        axes[0].set_title("input L")
        im = axes[1].imshow(alpha, cmap="magma", vmin=0, vmax=1, interpolation="nearest")
        axes[1].set_title(f"α at level {i} ({alpha.shape[0]}×{alpha.shape[1]})")
        fig.colorbar(im, ax=axes[1], shrink=0.8, label="α")
        axes[2].imshow(_hwc(rgb_hat[f]))
        axes[2].imshow(alpha, cmap="magma", vmin=0, vmax=1, alpha=0.55, extent=(0, S, S, 0), interpolation="nearest")
        axes[2].set_title("α over the model's colours")
        for ax in axes:
            ax.set_xticks([]), ax.set_yticks([])
        fig.suptitle(f"face {f}: mean α {alpha.mean():.3f} at level {i}", fontsize=10)
        image.value = _png(fig)

    face_slider.observe(draw, names="value")
    level.observe(draw, names="value")
    draw()
    return widgets.VBox([widgets.HBox([face_slider, level]), image])


def loss_share_widget(terms: dict[str, dict[str, float]], alpha: float = 100.0, beta: float = 1.0,
                      theta: float = 0.08) -> widgets.VBox:
    """Sliders for ``alpha`` (log scale), ``beta``, ``theta`` and a choice among ``terms``
    (prediction name -> the unweighted terms ``ColorizationLoss`` returned for it); a bar shows
    ``lib.losses.term_shares``: each weighted term's share of ``L_G``, and an HTML line the numbers.
    Children: ``HBox(Dropdown "prediction", FloatLogSlider "α")``, ``HBox(FloatSlider "β", FloatSlider "θ")``,
    ``Image``, ``HTML``.
    """
    pick = widgets.Dropdown(options=list(terms), value=list(terms)[-1], description="prediction")
    a = widgets.FloatLogSlider(value=alpha, base=10, min=0, max=3, step=0.05, description="α (pixel)", continuous_update=False)
    b = widgets.FloatSlider(value=beta, min=0, max=5, step=0.1, description="β (perceptual)", continuous_update=False)
    t = widgets.FloatSlider(value=theta, min=0, max=2, step=0.01, description="θ (GAN)", continuous_update=False)
    image, line = widgets.Image(format="png"), widgets.HTML()

    def draw(_change=None) -> None:
        shares = term_shares(terms[pick.value], a.value, b.value, t.value)
        fig = Figure(figsize=(7.5, 2.4), layout="constrained")
        ax = fig.subplots()
        left = 0.0
        for k, v in shares.items():
            ax.barh([0], [v], left=left, color=SHARE_COLORS[k], label=k)
            left += v
        ax.set(xlim=(0, 1), yticks=[], xlabel="share of the generator loss L_G",
               title=f"{pick.value}: α·pixel + β·perceptual + θ·GAN at α={a.value:g}, β={b.value:g}, θ={t.value:g}")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.5), ncol=3, frameon=False)
        image.value = _png(fig)
        line.value = " · ".join(f"{k} {100 * v:.1f}%" for k, v in shares.items())

    for control in (pick, a, b, t):
        control.observe(draw, names="value")
    draw()
    return widgets.VBox([widgets.HBox([pick, a]), widgets.HBox([b, t]), image, line])
