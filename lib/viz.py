"""Figures: the data tour (RGB, L, a, b of real or toy faces), colorization grids, training curves.

Taught in ``notebooks/01_lab_color_space.ipynb`` (the data tour, the a/b colormaps); the grids
reappear in every notebook from ``05_training_unet`` on, the curves in ``05_training_unet``.

Figures are built on ``matplotlib.figure.Figure`` directly, not ``pyplot``: no global state,
no display needed (works headless, like the Agg backend), and a returned figure still
shows inline in Jupyter. ``make demo`` writes ``figures/data_samples.png`` with ``save_data_samples``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import torch
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.figure import Figure
from torch import Tensor

from lib.color import denormalize_l, lab_norm_to_rgb, prediction_to_rgb, rgb_to_lab
from lib.data import open_splits
from lib.metrics import psnr_rgb

__all__ = ["AB_RANGE", "ab_colormaps", "save_figure", "save_data_samples", "show_colorization_grid",
           "save_sample_grid", "plot_training_curves"]

AB_RANGE = 40.0  # a and b maps are drawn on the fixed range [-AB_RANGE, AB_RANGE] Lab units


def ab_colormaps() -> tuple[LinearSegmentedColormap, LinearSegmentedColormap]:
    """Diverging colormaps for the a and b channels, light grey at 0 (no colour).

    ``a``: green (-) .. magenta-red (+); ``b``: blue (-) .. yellow (+): the hues at the two
    ends of each Lab axis, so a map reads like the colour it stands for. Used on the fixed
    range ``+-AB_RANGE``.
    """
    a = LinearSegmentedColormap.from_list("lab_a", ["#00876c", "#f0f0f0", "#d0237a"])
    b = LinearSegmentedColormap.from_list("lab_b", ["#1f5fb0", "#f0f0f0", "#d99a00"])
    return a, b


def save_figure(fig: Figure, path: str | Path, dpi: int = 120) -> Path:
    """Write ``fig`` to ``path`` (folders created), return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight", facecolor="white")
    return path


def _image(ax, img_hwc: np.ndarray, **kw):
    ax.imshow(img_hwc, interpolation="nearest", **kw)
    ax.set_xticks([])
    ax.set_yticks([])
    for side in ax.spines.values():
        side.set_visible(False)
    return ax.images[-1]


def _hwc(x: Tensor) -> np.ndarray:
    return x.detach().float().cpu().permute(1, 2, 0).clamp(0, 1).numpy()  # (H, W, 3)


# --- the data tour --------------------------------------------------------------------------
def save_data_samples(path: str | Path = "figures/data_samples.png", root: str | Path | None = None, n: int = 6,
                      image_size: int = 128, split: str = "train") -> Path:
    """A grid of ``n`` faces of the data ``lib.data.open_splits(root)`` finds, and their L, a, b channels.

    Rows: the RGB photo, L (0..100, grey), a and b (fixed range +-AB_RANGE, diverging Lab
    colormaps), each with a colorbar; the title names the data source (real CelebA-HQ or
    the ToyFaces stand-in). Images are spread evenly over the first 64 of the split. Taught in
    ``01_lab_color_space``.
    """
    ds = open_splits(root, "auto", image_size, (split,), max_images=max(n, 64), progress=False)[0][split]
    idx = np.linspace(0, len(ds) - 1, min(n, len(ds))).round().astype(int)
    rgb = torch.stack([ds.rgb_uint8(int(i)) for i in idx]).float() / 255.0  # (n, 3, S, S)
    lab = rgb_to_lab(rgb)  # (n, 3, S, S)
    cmap_a, cmap_b = ab_colormaps()

    n = len(idx)
    fig = Figure(figsize=(1.6 * n + 0.9, 1.6 * 4 + 0.6), layout="constrained")
    gs = fig.add_gridspec(4, n + 1, width_ratios=[1] * n + [0.07])
    channels = [("L", "gray", 0.0, 100.0), ("a", cmap_a, -AB_RANGE, AB_RANGE), ("b", cmap_b, -AB_RANGE, AB_RANGE)]
    for c in range(n):
        ax = fig.add_subplot(gs[0, c])
        _image(ax, _hwc(rgb[c]))
        ax.set_ylabel("RGB" if c == 0 else "", fontsize=12)
    for r, (name, cmap, vmin, vmax) in enumerate(channels, start=1):
        for c in range(n):
            ax = fig.add_subplot(gs[r, c])
            im = _image(ax, lab[c, r - 1].numpy(), cmap=cmap, vmin=vmin, vmax=vmax)  # (S, S) Lab units
            ax.set_ylabel(name if c == 0 else "", fontsize=12)
        cb = fig.colorbar(im, cax=fig.add_subplot(gs[r, n]), extend="neither" if name == "L" else "both")
        cb.ax.tick_params(labelsize=8)
    fig.suptitle(f"{ds.source}\nsRGB and its CIE Lab channels (a, b drawn on a fixed range ±{AB_RANGE:g})",
                 fontsize=10)
    return save_figure(fig, path)


# --- colorization grids -----------------------------------------------------------------------
def show_colorization_grid(
    l_n: Tensor,
    ab_hat: Tensor | dict[str, Tensor],
    ab: Tensor | None = None,
    *,
    n: int = 8,
    captions: list[str] | None = None,
    title: str | None = None,
    path: str | Path | None = None,
) -> Figure:
    """Rows: the grey input, one row per prediction, the truth; one column per image.

    ``l_n (B, 1, H, W)``, the predicted ``ab_hat (B, 2, H, W)`` (or ``{label: ab_hat}`` to
    compare several models, one row each) and the true ``ab (B, 2, H, W)``, all normalised as
    in ``lib.color``; RGB is rebuilt from the true L and each ab (DESIGN.md section 2). The
    first ``n`` images are shown; ``captions`` (one per image, e.g. a PSNR) go under the first
    prediction row. Saved to ``path`` when given. Taught in ``05_training_unet`` onwards.
    """
    preds = ab_hat if isinstance(ab_hat, dict) else {"prediction": ab_hat}
    assert l_n.dim() == 4 and l_n.shape[1] == 1, f"l_n must be (B, 1, H, W), got {tuple(l_n.shape)}"
    for name, pred in preds.items():
        assert pred.shape[0] >= min(n, len(l_n)) and pred.shape[1] in (2, 3) and pred.shape[-2:] == l_n.shape[-2:], (
            f"{name}: ab must be (B, 2, H, W) (or RGB-mode (B, 3, H, W)) matching L {tuple(l_n.shape)}, got {tuple(pred.shape)}")
    n = min(n, len(l_n))
    l_n = l_n[:n].detach().float().cpu()  # (n, 1, H, W)
    rows = [("grey input", (denormalize_l(l_n) / 100.0).expand(-1, 3, -1, -1))]
    rows += [(name, prediction_to_rgb(l_n, pred[:n].detach().float().cpu())) for name, pred in preds.items()]
    if ab is not None:
        rows.append(("truth", lab_norm_to_rgb(l_n, ab[:n].detach().float().cpu())))

    fig = Figure(figsize=(1.5 * n + 0.6, 1.5 * len(rows) + (0.5 if title else 0.1)), layout="constrained")
    axes = fig.subplots(len(rows), n, squeeze=False)
    for r, (name, rgb) in enumerate(rows):  # rgb: (n, 3, H, W) in [0, 1]
        for c in range(n):
            _image(axes[r, c], _hwc(rgb[c]))
            if c == 0:
                axes[r, c].set_ylabel(name, fontsize=10)
            if captions is not None and r == 1:
                axes[r, c].set_xlabel(captions[c], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    if path is not None:
        save_figure(fig, path)
    return fig


def save_sample_grid(predict, l_n: Tensor, ab: Tensor, path: str | Path, title: str | None = None) -> Figure:
    """The fixed faces a training run draws after each evaluation (``samples/epoch_NNNN.png``):
    grey input | ``predict(l_n)`` captioned with its PSNR_rgb | truth. Taught in ``05_training_unet``."""
    ab_hat = predict(l_n).cpu()  # (N, 2, H, W)
    psnr = psnr_rgb(prediction_to_rgb(l_n, ab_hat), lab_norm_to_rgb(l_n, ab))  # (N,)
    return show_colorization_grid(l_n, ab_hat, ab, n=len(l_n), captions=[f"{v:.1f} dB" for v in psnr.tolist()],
                                  title=title, path=path)


def plot_training_curves(run_dir: str | Path, metric: str = "psnr_rgb", path: str | Path | None = None) -> Figure:
    """Train loss and val ``metric`` per epoch of a run folder, beside the test baselines.

    Reads ``history_epochs.csv`` (written by ``lib.train.Trainer`` each epoch) and, when the
    run has finished, ``test_metrics.json`` (best checkpoint and the grey / mean-face
    baselines on the **test** split, drawn as horizontal lines and labelled so). Taught in
    ``notebooks/05_training_unet.ipynb``.
    """
    run_dir = Path(run_dir)
    with open(run_dir / "history_epochs.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get(f"val_{metric}")]
    if not rows:
        raise ValueError(f"{run_dir / 'history_epochs.csv'} has no epoch with val_{metric} yet")
    epoch = [int(r["epoch"]) for r in rows]
    fig = Figure(figsize=(10, 3.6))
    ax_loss, ax_val = fig.subplots(1, 2)
    ax_loss.plot(epoch, [float(r["train_loss_G"]) for r in rows], "o-", ms=3, color="#444")
    ax_loss.set(xlabel="epoch", ylabel="generator loss (weighted sum)", title="train loss")
    ax_val.plot(epoch, [float(r[f"val_{metric}"]) for r in rows], "o-", ms=3, color="#1f5fb0", label="model, val")
    test_file = run_dir / "test_metrics.json"
    if test_file.is_file():
        test = json.loads(test_file.read_text())
        styles = {"mean_face": ("#d99a00", "mean face"), "grey": ("#888", "grey (ab = 0)")}
        for name, (colour, label) in styles.items():
            if name in test:
                ax_val.axhline(test[name][metric], color=colour, ls="--", label=f"{label}, test")
        if "model" in test:
            best = test.get("best_epoch", epoch[-1])
            ax_val.plot([best], [test["model"][metric]], "*", ms=12, color="#d0237a", label="best.pt, test")
    ax_val.set(xlabel="epoch", ylabel=f"{metric} (per-image mean)", title=metric)
    ax_val.legend(fontsize=8, loc="lower right")
    for ax in (ax_loss, ax_val):
        ax.grid(alpha=0.3)
    fig.suptitle(f"{run_dir.name}: {len(rows)} epochs", fontsize=11)
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path)
    return fig


# --- ablation differences ---------------------------------------------------------------------
def plot_differences(panels: dict[str, dict[str, tuple[float, float, float]]], *, spread: float | None = None,
                     baselines: tuple[str, ...] = ("grey", "mean face"), repeats: tuple[str, ...] = (),
                     xlabel: str = "Δ PSNR rgb (dB)", path: str | Path | None = None) -> Figure:
    """One panel per grid: each row's mean difference from the grid's reference run with its 95 %
    interval, as horizontal bars (``lib.ablation.differences`` gives one panel's rows). ``spread``:
    the seed-to-seed difference measured at the same budget, shaded as +-spread around 0 (a
    difference inside it is not a finding). Rows named in ``baselines`` are grey bars, in ``repeats``
    (a run trained again with another seed) orange. Taught in
    ``08_ablation_study``."""
    heights = [0.42 * len(rows) + 0.9 for rows in panels.values()]
    fig = Figure(figsize=(8, sum(heights)), layout="constrained")
    axes = fig.subplots(len(panels), 1, squeeze=False, gridspec_kw={"height_ratios": heights})[:, 0]
    for ax, (title, rows) in zip(axes, panels.items()):
        names = list(rows)[::-1]
        d = np.array([rows[n][0] for n in names])
        err = np.array([[rows[n][0] - rows[n][1], rows[n][2] - rows[n][0]] for n in names]).T  # (2, rows)
        ax.barh(names, d, xerr=err, capsize=3, color=["0.75" if n in baselines else "C1" if n in repeats else "C0" for n in names])
        if spread is not None:
            ax.axvspan(-spread, spread, color="C1", alpha=0.15, lw=0)
        ax.axvline(0, color="k", lw=1)
        ax.set_title(title, fontsize=10, loc="left")
        ax.tick_params(labelsize=8)
    axes[-1].set_xlabel(xlabel + ("" if spread is None else f"; shaded: ± the seed-to-seed spread ({spread:.2f} dB)"))
    if path is not None:
        save_figure(fig, path)
    return fig
