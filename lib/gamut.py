"""The sRGB gamut in the CIE ab plane at one lightness L, drawn, and an L slider that redraws it.

Taught in ``01_lab_color_space``: why the model's ab target is divided by 110 (every sRGB
colour fits in the square ``|a|, |b| < 110``), and how little of that square one lightness
can actually reach.
"""

from __future__ import annotations

import io

import ipywidgets as widgets
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from lib.color import AB_SCALE, lab_to_rgb, rgb_to_lab

__all__ = ["ab_plane", "draw_ab_plane", "gamut_widget"]

_OUTSIDE = 0.92  # grey level drawn where no sRGB colour exists


def ab_plane(L: float, n: int = 221, limit: float = AB_SCALE) -> tuple[Tensor, Tensor]:
    """The colours of the square ``a, b in [-limit, limit]`` at lightness ``L`` (0..100).

    Returns ``rgb (n, n, 3)`` in [0, 1] (rows: b from +limit at the top to -limit; columns: a
    from -limit to +limit) and ``inside (n, n)`` bool: whether that Lab colour exists in sRGB.
    A colour is inside when ``lab_to_rgb`` did not have to clamp it, i.e. converting its RGB
    back to Lab gives the same Lab (float64, so in-gamut colours agree to ~1e-10).
    Taught in ``01_lab_color_space``.
    """
    a = torch.linspace(-limit, limit, n, dtype=torch.float64)  # (n,)
    b = torch.linspace(limit, -limit, n, dtype=torch.float64)  # (n,): top row = +limit
    bb, aa = torch.meshgrid(b, a, indexing="ij")  # (n, n) each
    lab = torch.stack((torch.full_like(aa, float(L)), aa, bb))  # (3, n, n)
    rgb = lab_to_rgb(lab)  # (3, n, n), clamped to [0, 1]
    inside = (rgb_to_lab(rgb) - lab).abs().amax(dim=0) < 1e-6  # (n, n)
    return rgb.permute(1, 2, 0), inside  # (n, n, 3), (n, n)


def draw_ab_plane(ax: Axes, L: float, n: int = 221, limit: float = AB_SCALE) -> float:
    """Draw the sRGB colours of the ab plane at lightness ``L`` on ``ax`` (grey where none
    exists), with labelled axes and a title; return the fraction of the square inside the gamut."""
    rgb, inside = ab_plane(L, n, limit)  # (n, n, 3), (n, n)
    img = torch.where(inside[..., None], rgb, torch.full_like(rgb, _OUTSIDE))  # (n, n, 3)
    ax.imshow(img.numpy(), extent=(-limit, limit, -limit, limit), interpolation="nearest")
    ax.axhline(0, color="k", lw=0.5, alpha=0.4)
    ax.axvline(0, color="k", lw=0.5, alpha=0.4)
    ax.set_xlabel("a*  (green − / red +)")
    ax.set_ylabel("b*  (blue − / yellow +)")
    share = float(inside.double().mean())
    ax.set_title(f"L = {L:g}: {100 * share:.0f}% of the square")
    return share


def _render(L: float, n: int) -> tuple[bytes, float]:
    fig = Figure(figsize=(4.2, 4.2))
    share = draw_ab_plane(fig.add_subplot(), L, n)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    return buf.getvalue(), share


def gamut_widget(L: int = 50, n: int = 161) -> widgets.VBox:
    """An L slider over the ab-plane gamut: moving it redraws the sRGB colours at that lightness.

    Children: ``IntSlider`` (L, 0..100), ``Image`` (the PNG of :func:`draw_ab_plane`) and an
    ``HTML`` line with the share of the ab square that is inside the gamut. Redraws on release
    (``continuous_update=False``); renders its default state at once, so an executed notebook
    shows it. Taught in ``01_lab_color_space``.
    """
    slider = widgets.IntSlider(value=L, min=0, max=100, step=1, description="L", continuous_update=False)
    image = widgets.Image(format="png")
    line = widgets.HTML()

    def update(_change=None) -> None:
        image.value, share = _render(slider.value, n)
        line.value = (f"L = {slider.value}: {100 * share:.1f}% of the square |a|, |b| &lt; {AB_SCALE:g} "
                      f"holds an sRGB colour")

    slider.observe(update, names="value")
    update()
    return widgets.VBox([slider, image, line])
