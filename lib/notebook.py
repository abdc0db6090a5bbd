"""What every notebook does first: check the profile, seed, pick the device, say where figures
go; then open the faces and say which data it found.

The conventions behind it are in ``notebooks/README.md``: the first code cell is tagged
``parameters`` and holds flat scalars (``profile``, ``data_root``, ``device``, ``seed``,
``figures_dir`` and the notebook's own knobs); the next cell derives everything else::

    nb = start(profile, device, seed, figures_dir)
    image_size = per_profile(profile, smoke=64, demo=128, full=128)
    sets, source = open_data(data_root, image_size, ("train", "test"), max_images=64, seed=seed)

Used by every notebook of the series, first in ``01_lab_color_space``.
"""

from __future__ import annotations

import textwrap
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from matplotlib.figure import Figure

from lib.data import DataSource, DataWarning, open_splits
from lib.runtime import pick_device, seed_everything
from lib.viz import save_figure

__all__ = ["PROFILES", "REPO", "per_profile", "Notebook", "start", "open_data"]

PROFILES = ("smoke", "demo", "full")  # smoke: CI, seconds; demo: a few minutes; full: the real thing
REPO = Path(__file__).resolve().parents[1]


def per_profile(profile: str, *, smoke, demo, full):
    """The value of a size or count for ``profile``, e.g. ``per_profile(p, smoke=64, demo=128, full=128)``."""
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    return {"smoke": smoke, "demo": demo, "full": full}[profile]


@dataclass(frozen=True)
class Notebook:
    """A notebook's run: its profile, device, seed and figure folder (from :func:`start`)."""

    profile: str
    device: torch.device
    seed: int
    figures: Path  # folder the notebook's figures are saved into

    def save(self, fig: Figure, name: str, caption: str) -> Path:
        """Put ``caption`` (one or two sentences) under ``fig``, save it as ``figures/<name>``, return the path.

        The caption travels with the PNG, so a figure shown in the README explains itself too.
        """
        fig.text(0.5, 0.0, textwrap.fill(caption, 130), ha="center", va="top", fontsize=9, style="italic")
        return save_figure(fig, self.figures / name)


def start(profile: str = "demo", device: str = "auto", seed: int = 0, figures_dir: str | None = None) -> Notebook:
    """Check ``profile``, seed python/numpy/torch, pick ``device`` ("auto": cuda > mps > cpu),
    create the figure folder (None: the repository's ``figures/``) and print one line saying so."""
    per_profile(profile, smoke=None, demo=None, full=None)  # validates the name
    seed_everything(seed)
    figures = Path(figures_dir).expanduser().resolve() if figures_dir else REPO / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    nb = Notebook(profile, pick_device(device), seed, figures)
    print(f"profile {profile!r} · device {nb.device} · seed {seed} · torch threads {torch.get_num_threads()} "
          f"· figures -> {figures}")
    return nb


def open_data(data_root: str | None, image_size: int, splits: tuple[str, ...], max_images: int | None = None,
              seed: int = 0) -> tuple[dict, DataSource]:
    """``lib.data.open_splits`` without progress bars, then which data was found
    (``DataSource.describe()``) and whether these are real photographs or ToyFaces. Files the
    loader skipped (e.g. a grey photo) are said in a ``[data] note:`` line, not as a warning."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataWarning)
        sets, source = open_splits(data_root, image_size=image_size, splits=splits, max_images=max_images, seed=seed,
                                   progress=False)
    for w in caught:
        if issubclass(w.category, DataWarning):
            print(f"[data] note: {w.message}")
        else:  # anything else is a real problem: let the reader (and the tests) see it
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    print(source.describe())  # for ToyFaces, open_splits has said already that they are not real photos
    if source.kind == "folder":
        print("real photographs")
    return sets, source
