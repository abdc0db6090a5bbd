"""``make demo``'s last step (lib.demo.colorize_photos): the bundled photos colorized with the shipped model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import lib.checkpoint
import lib.demo
from lib.color import rgb_to_lab
from lib.demo import PHOTOS, bundled_photos, colorize_photos

pytestmark = pytest.mark.usefixtures("one_thread")


def lightness(rgb_u8: np.ndarray) -> torch.Tensor:
    return rgb_to_lab(torch.from_numpy(np.ascontiguousarray(rgb_u8)).permute(2, 0, 1).double() / 255)[0]  # (H, W)


def rounding_bound() -> float:
    """The largest change of Lab L that rounding sRGB to uint8 (half a step) can make."""
    g = torch.arange(0, 255.01, 0.01, dtype=torch.float64) / 255
    L = rgb_to_lab(g.view(1, -1, 1).expand(3, -1, 1))[0, :, 0]
    return float((L[50:] - L[:-50]).abs().max()) + 1e-6


def test_bundled_photos_are_colour_portraits_shrunk_on_request():
    full, small = bundled_photos(), bundled_photos(max_side=96)
    assert tuple(full) == tuple(small) == PHOTOS
    assert full["astronaut"].shape == (512, 512, 3) and full["grace_hopper"].shape == (600, 512, 3)
    assert small["astronaut"].shape == (96, 96, 3) and small["grace_hopper"].shape == (96, 82, 3), "aspect kept"
    assert all(np.ptp(p.astype(int), axis=2).max() > 50 for p in small.values()), "colour photos: a ground truth"


@pytest.mark.skipif(not lib.checkpoint.SHIPPED.is_file(), reason=f"no shipped model at {lib.checkpoint.SHIPPED}")
def test_colorize_photos_writes_the_images_and_keeps_the_lightness(tmp_path, capsys):
    paths = colorize_photos(tmp_path / "figs", max_side=96, device="cpu")  # the shipped model (default)
    names = [f"demo_{n}.color.png" for n in PHOTOS] + ["demo_bundled_photos.png"]
    assert [p.name for p in paths] == names and all(p.parent == tmp_path / "figs" for p in paths)
    out = capsys.readouterr().out
    for path in paths:
        assert sum(str(path) in line and " s -> " in line for line in out.splitlines()) == 1, out  # time and path
    assert "celebahq128_l1p.pt" in out, "names the model"
    for name, rgb in bundled_photos(max_side=96).items():
        colour = np.asarray(Image.open(tmp_path / "figs" / f"demo_{name}.color.png"))
        assert colour.shape == rgb.shape and colour.dtype == np.uint8
        diff = (lightness(colour) - lightness(rgb)).abs().max()
        assert diff <= rounding_bound(), f"{name}: Lab L moved by {diff:.3f} (> uint8 rounding)"
        assert np.ptp(colour.astype(int), axis=2).max() > 5, f"{name}: the output has colours"
    fig = Image.open(paths[-1])
    assert fig.width > 600 and fig.height > 400


def test_cli_ends_with_the_photos_and_runs_them_alone(monkeypatch):
    calls = []
    monkeypatch.setattr(lib.demo, "run_notebooks", lambda *a, **k: calls.append("notebooks") or 0)
    monkeypatch.setattr(lib.demo, "main", lambda *a, **k: calls.append("figures") or 0)
    monkeypatch.setattr(lib.demo, "colorize_photos", lambda *a, **k: calls.append("photos") or [])
    assert lib.demo.cli(["--profile", "demo"]) == 0 and calls == ["notebooks", "figures", "photos"]
    calls.clear()
    assert lib.demo.cli(["--only-photos"]) == 0 and calls == ["photos"]
    calls.clear()
    assert lib.demo.cli(["--profile", "smoke"]) == 0 and calls == ["notebooks"], "smoke writes no README figures"
