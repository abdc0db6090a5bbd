"""Colorizing images of any size (lib.colorize) and the ``python -m lib colorize`` command."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data as skdata

from lib.__main__ import main as cli_main
from lib.color import rgb_to_lab
from lib.colorize import colorize, colorize_batch, model_input_size, to_uint8
from lib.models import UNet, UNetConfig
from lib.train import TrainConfig, Trainer, load_generator


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def tiny_model() -> UNet:
    """A tiny U-Net whose head is scaled down, so its ab stay inside the sRGB gamut mostly."""
    torch.manual_seed(0)
    model = UNet(UNetConfig(ndims=8, depth=2, num_blocks=0))
    with torch.no_grad():
        model.head[0].weight.mul_(0.2)
    return model.eval()


def astronaut(h: int = 200, w: int = 150) -> torch.Tensor:
    img = torch.from_numpy(skdata.astronaut()[:h, 100 : 100 + w].copy())  # (h, w, 3) uint8
    return img.permute(2, 0, 1).contiguous()  # (3, h, w)


def lightness(rgb_float: torch.Tensor) -> torch.Tensor:
    return rgb_to_lab(rgb_float.double())[0]  # (H, W)


@pytest.mark.parametrize("shape", [(3, 50, 77), (3, 64, 64), (1, 33, 20), (3, 8, 300)])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_output_size_equals_input_size(tiny_model, shape, dtype):
    g = torch.Generator().manual_seed(1)
    img = torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)
    if dtype != torch.uint8:
        img = img.float() / 255
    out = colorize(tiny_model, img, size=16)
    assert out.shape == (3, *shape[1:]), f"output {tuple(out.shape)} for input {shape}"
    assert out.dtype == torch.float32 and out.min() >= 0 and out.max() <= 1


def test_output_lightness_is_the_inputs(tiny_model):
    img = astronaut()  # (3, 200, 150) uint8, a real photo
    out = colorize(tiny_model, img, size=32)
    L_in, L_out = lightness(img.float() / 255), lightness(out)
    in_gamut = ((out > 1e-4) & (out < 1 - 1e-4)).all(0)  # clamped pixels may lose some L
    assert in_gamut.float().mean() > 0.75, "the test model should keep most colours inside the gamut"
    err = (L_out - L_in).abs()
    assert err[in_gamut].max() < 0.05, f"L differs by up to {err[in_gamut].max():.3f} on in-gamut pixels"
    assert err.mean() < 0.5, f"mean |L difference| {err.mean():.3f}"
    assert (out[0] - out[1]).abs().mean() > 1e-3, "the model's colours should reach the output (not grey)"


def test_grayscale_input_is_accepted_and_equals_its_rgb_copy(tiny_model):
    grey = astronaut().float().mean(0, keepdim=True).round().to(torch.uint8)  # (1, 200, 150)
    out = colorize(tiny_model, grey, size=32)
    same = colorize(tiny_model, grey.expand(3, -1, -1), size=32)
    assert out.shape == (3, 200, 150)
    torch.testing.assert_close(out, same)
    in_gamut = ((out > 1e-4) & (out < 1 - 1e-4)).all(0)
    err = (lightness(out) - lightness(grey.expand(3, -1, -1).float() / 255)).abs()
    assert err[in_gamut].max() < 0.05


def test_model_runs_at_the_training_scale_and_keeps_the_aspect(tiny_model):
    seen = []
    handle = tiny_model.register_forward_pre_hook(lambda m, args: seen.append(tuple(args[0].shape)))
    try:
        colorize(tiny_model, torch.zeros(3, 100, 100, dtype=torch.uint8), size=32)
        colorize(tiny_model, torch.zeros(3, 768, 1024, dtype=torch.uint8), size=32)
    finally:
        handle.remove()
    assert seen[0] == (1, 1, 32, 32), seen
    assert seen[1] == (1, 1, 32, 44), f"short side 32, long side 1024 * 32 / 768 rounded to a multiple of 4: {seen}"
    assert model_input_size(768, 1024, 32, 4) == (32, 44)


def test_batch_equals_one_by_one_and_restores_the_mode(tiny_model):
    imgs = [astronaut(64, 64), astronaut(100, 80), astronaut(64, 64).flip(-1), astronaut(30, 90)[:1]]
    tiny_model.train()
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    batched = colorize_batch(tiny_model, imgs, size=16, batch_size=2)
    assert tiny_model.training, "colorize_batch must put the model back in training mode"
    for k, v in tiny_model.state_dict().items():
        assert torch.equal(v, before[k]), f"{k} changed: inference must not touch BatchNorm statistics"
    for img, out in zip(imgs, batched):
        torch.testing.assert_close(out, colorize(tiny_model, img, size=16), atol=1e-5, rtol=0)


def test_bad_inputs_raise_clear_errors(tiny_model):
    with pytest.raises(ValueError, match=r"\(3, H, W\) or \(1, H, W\)"):
        colorize(tiny_model, torch.zeros(2, 16, 16))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        colorize(tiny_model, torch.full((3, 16, 16), 255.0))
    with pytest.raises(TypeError, match="uint8 or floating"):
        colorize(tiny_model, torch.zeros(3, 16, 16, dtype=torch.int64))


def test_cli_colorizes_a_photo_with_a_trainer_checkpoint(tmp_path, capsys, monkeypatch):
    from PIL import Image

    monkeypatch.setenv("FACECOLOR_CACHE", str(tmp_path / "cache"))
    cfg = TrainConfig(dataset="toy", toy_images=16, image_size=32, batch_size=8, epochs=1, beta=0.0,
                      model={"ndims": 8, "depth": 2, "num_blocks": 0}, num_samples=0, progress=False,
                      device="cpu", out_dir=str(tmp_path / "run"))
    ckpt = Trainer(cfg).save("best.pt")  # saved exactly as training saves it
    model, _ = load_generator(ckpt)
    photo = tmp_path / "astronaut.png"
    Image.fromarray(skdata.astronaut()).save(photo)  # (512, 512, 3)
    grey = tmp_path / "grey.png"
    Image.fromarray(skdata.astronaut()[:300, :200].mean(-1).astype(np.uint8)).save(grey)

    code = cli_main(["colorize", str(ckpt), str(photo), str(grey), "--out", str(tmp_path / "out")])
    assert code == 0
    printed = capsys.readouterr().out
    assert "the model at 32x32" in printed and "the model at 48x32" in printed, printed
    out = np.asarray(Image.open(tmp_path / "out" / "astronaut_color.png"))
    assert out.shape == (512, 512, 3)
    expected = to_uint8(colorize(model, torch.from_numpy(skdata.astronaut()).permute(2, 0, 1), size=32))
    assert np.abs(out.astype(int) - expected.permute(1, 2, 0).numpy().astype(int)).max() <= 1
    assert np.asarray(Image.open(tmp_path / "out" / "grey_color.png")).shape == (300, 200, 3)


def test_cli_reports_a_missing_file(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli_main(["colorize", str(tmp_path / "none.pt"), str(tmp_path / "x.png"), "--out", str(tmp_path)])
    assert e.value.code == 2
    assert "does not exist" in capsys.readouterr().err
