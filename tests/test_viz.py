"""Tests of ``lib.viz``: the data tour, the colorization grid and the training curves."""

import json

import pytest
import torch
from PIL import Image

import lib.data as data
from lib.data import ToyFaces, rgb_uint8_to_lab_norm
from lib.viz import plot_training_curves, save_data_samples, show_colorization_grid

HEADER = "epoch,step,train_loss_G,val_psnr_rgb\n"


def _run(tmp_path, rows, test=None):
    (tmp_path / "history_epochs.csv").write_text(HEADER + "".join(rows))
    if test is not None:
        (tmp_path / "test_metrics.json").write_text(json.dumps(test))
    return tmp_path


def test_curves_show_val_metric_and_test_baselines(tmp_path):
    run = _run(tmp_path, ["1,10,9.0,24.0\n", "2,20,8.0,25.5\n", "3,30,7.5,25.2\n"],
               {"model": {"psnr_rgb": 25.6}, "grey": {"psnr_rgb": 21.2}, "mean_face": {"psnr_rgb": 25.4}, "best_epoch": 2})
    fig = plot_training_curves(run, path=tmp_path / "curves.png")
    ax_loss, ax_val = fig.axes
    assert list(ax_loss.lines[0].get_ydata()) == [9.0, 8.0, 7.5]
    assert list(ax_val.lines[0].get_ydata()) == [24.0, 25.5, 25.2]
    labels = [line.get_label() for line in ax_val.lines]
    assert labels == ["model, val", "mean face, test", "grey (ab = 0), test", "best.pt, test"]
    star = ax_val.lines[-1]
    assert list(star.get_xdata()) == [2] and list(star.get_ydata()) == [25.6]
    assert (tmp_path / "curves.png").stat().st_size > 0


def test_curves_of_a_run_without_test_results_and_without_epochs(tmp_path):
    fig = plot_training_curves(_run(tmp_path, ["1,10,9.0,24.0\n"]))
    assert [line.get_label() for line in fig.axes[1].lines] == ["model, val"]
    (tmp_path / "history_epochs.csv").write_text(HEADER + "1,10,9.0,\n")  # evaluated nothing yet
    with pytest.raises(ValueError, match="no epoch with val_psnr_rgb"):
        plot_training_curves(tmp_path)


def test_save_data_samples_writes_a_figure_of_toy_faces(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("CELEBAHQ_DIR", raising=False)
    monkeypatch.setattr(data, "REPO_ROOT", tmp_path)  # no data/celeba_hq/ there: ToyFaces
    path = save_data_samples(tmp_path / "fig" / "samples.png", n=2, image_size=32)
    img = Image.open(path)
    assert img.format == "PNG" and img.width > 200 and img.height > 300
    assert "ToyFaces" in capsys.readouterr().out


def test_colorization_grid(tmp_path):
    l_n, ab = rgb_uint8_to_lab_norm(torch.stack([ToyFaces(3, 32).rgb_uint8(i) for i in range(3)]))
    fig = show_colorization_grid(l_n, {"grey": torch.zeros_like(ab), "model": ab * 0.5}, ab,
                                 captions=["a", "b", "c"], title="t", path=tmp_path / "grid.png")
    assert len(fig.axes) == 4 * 3 and (tmp_path / "grid.png").exists()
    assert [ax.get_ylabel() for ax in fig.axes[::3]] == ["grey input", "grey", "model", "truth"]
    assert len(show_colorization_grid(l_n, ab_hat=ab, n=2).axes) == 2 * 2, "input and prediction rows, no truth"
    with pytest.raises(AssertionError, match="must be"):
        show_colorization_grid(ab, ab)
