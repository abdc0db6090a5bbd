"""Colorizing images of any size (lib.colorize) and the ``python -m lib colorize`` command."""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from skimage import data as skdata

import lib.checkpoint
import lib.colorize
from lib.color import rgb_to_lab
from lib.colorize import MAX_ASPECT, OUTPUT_SUFFIX, add_arguments, colorize, colorize_batch, model_input_size, run
from lib.errors import ConfigError, UserError
from lib.models import UNet, UNetConfig

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_model() -> UNet:
    torch.manual_seed(0)
    return UNet(UNetConfig(ndims=8, depth=2, num_blocks=0)).eval()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tiny_model) -> Path:
    """A generator export of the tiny model, trained (so it says) at 32x32."""
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    lib.checkpoint.save_checkpoint({"format": lib.checkpoint.CHECKPOINT_FORMAT, "kind": "generator",
                                    "model": tiny_model.state_dict(),
                                    "model_config": tiny_model.config.to_dict(),
                                    "train_config": {"image_size": 32}}, path)
    return path


def astronaut(h: int = 200, w: int = 150) -> np.ndarray:
    return skdata.astronaut()[:h, 100 : 100 + w].copy()  # (h, w, 3) uint8, a real photo


def lab_of(rgb_u8: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(rgb_u8)).double() / 255
    return rgb_to_lab(x.permute(2, 0, 1) if x.dim() == 3 else x.expand(3, -1, -1))  # (3, H, W)


def rounding_bound() -> float:
    """The largest change of Lab L that rounding sRGB to uint8 (half a step) can make."""
    g = torch.arange(0, 255.01, 0.01, dtype=torch.float64) / 255
    L = rgb_to_lab(g.view(1, -1, 1).expand(3, -1, 1))[0, :, 0]
    return float((L[50:] - L[:-50]).abs().max()) + 1e-6


def model_inputs(model, fn):
    seen = []
    handle = model.register_forward_pre_hook(lambda m, args: seen.append(tuple(args[0].shape)))
    try:
        fn()
    finally:
        handle.remove()
    return seen


# --- the function -------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(50, 77, 3), (64, 64, 3), (33, 20), (8, 300, 3), (1, 1, 3), (3, 4000, 3)])
def test_output_is_uint8_rgb_of_the_input_size(tiny_model, shape):
    img = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    out = colorize(img, tiny_model, size=16)
    assert out.dtype == np.uint8 and out.shape == (*shape[:2], 3)


def test_every_input_type_gives_the_same_colours(tiny_model, tmp_path):
    img = astronaut(60, 40)  # (60, 40, 3)
    ref = colorize(img, tiny_model, size=16)
    Image.fromarray(img).save(tmp_path / "a.png")
    t = torch.from_numpy(img).permute(2, 0, 1)  # (3, 60, 40)
    same = {
        "path": colorize(tmp_path / "a.png", tiny_model, size=16),
        "str path": colorize(str(tmp_path / "a.png"), tiny_model, size=16),
        "bytes": colorize((tmp_path / "a.png").read_bytes(), tiny_model, size=16),
        "PIL": colorize(Image.fromarray(img), tiny_model, size=16),
        "tensor uint8": colorize(t, tiny_model, size=16),
        "RGBA numpy, opaque": colorize(np.dstack([img, np.full(img.shape[:2], 255, np.uint8)]), tiny_model, size=16),
        "uint16 numpy": colorize(img.astype(np.uint16) * 257, tiny_model, size=16),
    }
    for name, out in same.items():
        np.testing.assert_array_equal(out, ref, err_msg=name)
    close = colorize(t.float() / 255, tiny_model, size=16)  # float inputs: same up to float rounding
    assert np.abs(close.astype(int) - ref).max() <= 1


def test_output_lightness_is_the_inputs_up_to_uint8_rounding(tiny_model):
    img = skdata.astronaut()  # (512, 512, 3): saturated colours, black and white areas
    bound = rounding_bound()  # ~0.26 L units
    for chroma in (1.0, 3.0):
        out = colorize(img, tiny_model, size=32, chroma=chroma)
        err = (lab_of(out)[0] - lab_of(img)[0]).abs()
        assert err.max() <= bound, f"chroma {chroma}: L differs by up to {err.max():.3f} > {bound:.3f}"
    # the test has teeth: at chroma 3 plain clamping of sRGB would change L far more
    with torch.inference_mode():
        L = lab_of(img)[0].float()
        x, (top, left, h, w) = lib.colorize._model_input(L, 32, 4)
        ab = tiny_model(x[None])[0, :, top : top + h, left : left + w] * 110 * 3
        ab = F.interpolate(ab[None], size=L.shape, mode="bilinear", align_corners=False)[0]
        clamped = lib.colorize.lab_to_rgb(torch.cat([L[None], ab]))  # (3, H, W), clamped per channel
    naive = (rgb_to_lab(clamped.double())[0] - L.double()).abs()
    assert (naive > 1).float().mean() > 0.05, "the model's colours should often leave the gamut at chroma 3"
    assert lab_of(out)[1:].norm(dim=0).mean() > 20, "the colours must survive the gamut mapping"


def test_out_of_gamut_colours_keep_their_hue_and_lightness():
    """A model that predicts one loud colour everywhere: on a grey ramp from black to white,
    most of it is outside the gamut; the output keeps the ramp's L and the colour's hue, with as
    much chroma as each L allows."""
    class Loud(torch.nn.Module):
        config = UNetConfig(depth=1)

        def forward(self, x):
            return torch.tensor([0.6, -0.5]).view(1, 2, 1, 1).expand(x.shape[0], 2, *x.shape[2:])  # ab (66, -55)

    ramp = np.tile(np.arange(256, dtype=np.uint8), (4, 1))  # (4, 256)
    out = lab_of(colorize(ramp, Loud(), size=4))
    assert (out[0] - lab_of(ramp)[0]).abs().max() <= rounding_bound()
    chroma = out[1:].norm(dim=0)
    hue = torch.rad2deg(torch.atan2(out[2], out[1]))
    coloured = chroma > 15
    assert coloured.float().mean() > 0.5 and chroma.max() < 87, "loud where the gamut allows, never above |ab| = 85.9"
    assert (chroma > 84).float().mean() > 0.1, "in the middle of the ramp the colour fits whole"
    assert (hue[coloured] - np.rad2deg(np.arctan2(-55, 66))).abs().max() < 2, "the hue is kept"
    peak = int(chroma.mean(0).argmax())
    assert 0.2 < peak / 255 < 0.8 and chroma[:, 0].max() < 3 and chroma[:, -1].max() < 3, "no colour at black/white"


def test_grey_input_equals_its_rgb_copy_and_gets_colour(tiny_model):
    grey = astronaut().mean(-1).round().astype(np.uint8)  # (200, 150)
    out = colorize(grey, tiny_model, size=32)
    np.testing.assert_array_equal(out, colorize(np.repeat(grey[..., None], 3, -1), tiny_model, size=32))
    np.testing.assert_array_equal(out, colorize(torch.from_numpy(grey)[None], tiny_model, size=32))
    assert lab_of(out)[1:].norm(dim=0).mean() > 3, "a grey photo should come out coloured"
    assert (lab_of(out)[0] - lab_of(grey)[0]).abs().max() <= rounding_bound()


class _LeftRight(torch.nn.Module):
    """A stand-in generator that is not mirror-symmetric: a = a ramp from left to right, b = 0.2 L_n."""

    def forward(self, l_n):
        ramp = torch.linspace(-0.2, 0.2, l_n.shape[-1]).expand_as(l_n)  # (B, 1, H, W)
        return torch.cat([ramp, 0.2 * l_n], dim=1)  # (B, 2, H, W)


def test_flip_averages_the_prediction_with_that_of_the_mirrored_photo():
    img, model = astronaut(64, 48), _LeftRight()
    plain, flipped = lab_of(colorize(img, model, size=32)), lab_of(colorize(img, model, size=32, flip=True))
    assert plain[1, :, 0].mean() < -15 and plain[1, :, -1].mean() > 15, "a: the ramp"
    assert flipped[1].abs().max() < 2.5, "the ramp and its mirror image cancel"
    assert torch.allclose(flipped[2], plain[2], atol=2.5), "b follows L, which mirrors with the photo: it stays"
    assert (flipped[0] - lab_of(img)[0]).abs().max() <= rounding_bound(), "L is still the photo's"


def test_chroma_scales_the_colours(tiny_model):
    img = astronaut()
    grey = colorize(img, tiny_model, size=32, chroma=0.0)
    assert np.abs(grey.astype(int) - grey[..., :1]).max() <= 1, "chroma 0 must give grey"
    # the random model's colours are loud: at chroma 0.3 most stay inside the gamut
    full, half = lab_of(colorize(img, tiny_model, size=32, chroma=0.3)), lab_of(colorize(img, tiny_model, size=32, chroma=0.15))
    c_full, c_half = full[1:].norm(dim=0), half[1:].norm(dim=0)
    ok = (c_full > 5) & (c_full < 25)  # clearly coloured, away from the gamut's edge
    assert ok.float().mean() > 0.3
    ratio = (c_half[ok] / c_full[ok]).median()
    assert abs(ratio - 0.5) < 0.03, f"half the chroma gave {ratio:.3f} of the colour"
    with pytest.raises(ConfigError, match="chroma"):
        colorize(img, tiny_model, chroma=-1)


def test_the_model_sees_the_training_scale_padded_and_bounded(tiny_model):
    m = tiny_model.config.multiple  # 4
    shapes = model_inputs(tiny_model, lambda: [
        colorize(np.zeros((100, 100), np.uint8), tiny_model, size=32),
        colorize(np.zeros((768, 1024), np.uint8), tiny_model, size=32),
        colorize(np.zeros((4000, 3), np.uint8), tiny_model, size=64),
        colorize(np.zeros((5, 5), np.uint8), tiny_model, size=30),
    ])
    assert model_input_size(768, 1024, 32) == (32, 43)  # the aspect kept, not rounded to a multiple
    assert shapes[0] == (1, 1, 32, 32)
    assert shapes[1] == (1, 1, 32, 44), "43 padded to the next multiple of 2**depth"
    assert model_input_size(4000, 3, 64) == (MAX_ASPECT * 64, 1), "the long side bounded, not 85,333"
    assert shapes[2] == (1, 1, MAX_ASPECT * 64, m)
    assert shapes[3] == (1, 1, 32, 32), "a tiny image goes up to the size, padded to 32"


def test_padding_does_not_shift_the_colours():
    """A model that echoes its input as a and -b: each output pixel must get the ab of its own
    place, not of a place shifted by the padding."""
    class Echo(torch.nn.Module):
        config = UNetConfig(depth=3)

        def forward(self, x):
            return torch.cat([x, -x], 1) * 0.3  # (B, 2, H, W)

    img = np.full((37, 50), 80, np.uint8)
    img[:, 25:] = 170  # a step: dark left half, bright right half
    shapes = model_inputs(Echo(), lambda: None)
    out = lab_of(colorize(img, Echo(), size=37))  # the model at 37x50 (no resize), padded to 40x56
    a = out[1]  # (37, 50)
    assert shapes == [] and (a[:, :25] < -5).all() and (a[:, 25:] > 5).all(), a[0]


def test_tiles_give_the_same_image(tiny_model, monkeypatch):
    img = astronaut(120, 90)
    whole = colorize(img, tiny_model, size=16)
    monkeypatch.setattr(lib.colorize, "TILE_PIXELS", 1000)  # tiles of 11 x 90, and 1000-wide strips
    np.testing.assert_array_equal(colorize(img, tiny_model, size=16), whole)
    wide = np.random.default_rng(0).integers(0, 256, (3, 2500, 3), dtype=np.uint8)
    tiled = colorize(wide, tiny_model, size=8)
    monkeypatch.setattr(lib.colorize, "TILE_PIXELS", 1 << 18)
    np.testing.assert_array_equal(tiled, colorize(wide, tiny_model, size=8))


@pytest.mark.parametrize("src, dst", [((7, 9), (50, 33)), ((40, 30), (7, 5)), ((4, 4), (4, 4))])
def test_tile_upsampling_matches_interpolate(src, dst):
    ab = torch.randn(2, *src)
    whole = F.interpolate(ab[None], size=dst, mode="bilinear", align_corners=False)[0]
    tile = lib.colorize._upsample_tile(ab, *dst, slice(1, dst[0]), slice(2, dst[1] - 1))
    torch.testing.assert_close(tile, whole[:, 1:, 2 : dst[1] - 1], atol=1e-5, rtol=0)


def test_batch_equals_one_by_one_and_restores_the_mode(tiny_model):
    imgs = [astronaut(64, 64), astronaut(100, 80), astronaut(64, 64)[:, ::-1], astronaut(30, 90)[..., 0]]
    tiny_model.train()
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    try:
        shapes = model_inputs(tiny_model, lambda: colorize_batch(imgs, tiny_model, size=16, batch_size=2))
        batched = colorize_batch(imgs, tiny_model, size=16, batch_size=2)
        assert tiny_model.training, "colorize_batch must put the model back in training mode"
    finally:
        tiny_model.eval()
    assert shapes[0][0] == 2, "the two 64x64 images share one model call"
    for k, v in tiny_model.state_dict().items():
        assert torch.equal(v, before[k]), f"{k} changed: inference must not touch BatchNorm statistics"
    for img, out in zip(imgs, batched):
        np.testing.assert_array_equal(out, colorize(img, tiny_model, size=16))


def test_bad_arrays_raise_clear_errors(tiny_model):
    with pytest.raises(ValueError, match=r"\(3, H, W\), \(1, H, W\) or \(H, W\)"):
        colorize(torch.zeros(2, 16, 16), tiny_model)
    with pytest.raises(ValueError, match=r"channels-first images as torch tensors"):
        colorize(np.zeros((3, 16, 16, 2)), tiny_model)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        colorize(torch.full((3, 16, 16), 255.0), tiny_model)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        colorize(np.full((4, 4), np.nan, np.float32), tiny_model)
    with pytest.raises(TypeError, match="uint8, uint16, bool or floating"):
        colorize(torch.zeros(3, 16, 16, dtype=torch.int64), tiny_model)
    with pytest.raises(ConfigError, match="size must be a positive integer"):
        colorize(np.zeros((4, 4), np.uint8), tiny_model, size=0)


def test_a_checkpoint_path_is_loaded_once_with_its_training_size(tiny_model, checkpoint, monkeypatch):
    loads = []
    real = lib.colorize.load_generator
    monkeypatch.setattr(lib.colorize, "load_generator", lambda *a, **k: loads.append(a) or real(*a, **k))
    lib.colorize._load_cached.cache_clear()
    img = astronaut()
    shapes = model_inputs(tiny_model, lambda: colorize(img, tiny_model))
    assert shapes == [(1, 1, 172, 128)], "a bare model runs at DEFAULT_SIZE: 200x150 -> 171x128, padded"
    out = colorize(img, checkpoint, device="cpu")
    np.testing.assert_array_equal(out, colorize(img, tiny_model, size=32), "the checkpoint's size is 32")
    colorize(img, checkpoint, device="cpu")
    assert len(loads) == 1, "the second call uses the cached model"
    os.utime(checkpoint, ns=(1, 1))  # a new version of the file is loaded again
    colorize(img, checkpoint, device="cpu")
    assert len(loads) == 2


@pytest.mark.skipif(not hasattr(lib.checkpoint, "SHIPPED"), reason="lib.checkpoint.SHIPPED not there yet (helper A)")
def test_no_checkpoint_means_the_shipped_model(tiny_model, checkpoint, monkeypatch):
    monkeypatch.setattr(lib.checkpoint, "SHIPPED", checkpoint)
    lib.colorize._load_cached.cache_clear()
    np.testing.assert_array_equal(colorize(astronaut(), device="cpu"), colorize(astronaut(), tiny_model, size=32))


# --- the command ----------------------------------------------------------------------------
def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims ``width x height`` RGB, with 1 KB of data (cheap to build)."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b""))


def save(path: Path, rgb: np.ndarray, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path, format=fmt)
    return path


def checksums(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()}


def cli(*argv, model) -> int:
    """Run the colorize command as the dispatcher does: parse, run, UserError -> exit 2."""
    parser = argparse.ArgumentParser(prog="python -m lib colorize")
    add_arguments(parser)
    args = parser.parse_args([str(a) for a in argv])
    if args.checkpoint is None:
        args.checkpoint = model  # a loaded UNet: no file needed for most tests
    return run(args)


def assert_kept(before: dict, after: dict, replaced=()) -> None:
    """Every file present before is still there with the same bytes (except ``replaced``)."""
    for name, digest in before.items():
        assert name in after, f"{name} was lost"
        if name not in replaced:
            assert after[name] == digest, f"{name} was replaced"


def test_folders_are_mirrored_and_no_name_collides(tiny_model, tmp_path, capsys):
    src = tmp_path / "in"
    face = astronaut(64, 48)
    save(src / "face.jpg", face)
    save(src / "face.png", face)
    save(src / "a" / "x.jpg", face)
    save(src / "b" / "x.jpg", face[::-1])
    save(src / "b" / "deep" / "grey.png", face[..., 0])
    (src / "notes.txt").write_text("not an image, and not named like one")
    before = checksums(tmp_path)
    assert cli(src, "--out", tmp_path / "out", model=tiny_model) == 0
    after = checksums(tmp_path)
    assert_kept(before, after)
    assert sorted(set(after) - set(before)) == sorted(f"out/{n}{OUTPUT_SUFFIX}" for n in
                                                      ["face.jpg", "face.png", "a/x.jpg", "b/x.jpg", "b/deep/grey.png"])
    printed = capsys.readouterr()
    assert "wrote 5 colorized image(s)" in printed.out and "1 file(s) in the folders passed over" in printed.out
    out = np.asarray(Image.open(tmp_path / "out" / "b" / "x.jpg.color.png"))
    np.testing.assert_array_equal(out, colorize(src / "b" / "x.jpg", tiny_model, size=128))


def test_files_from_two_folders_with_one_name(tiny_model, tmp_path):
    a, b = save(tmp_path / "a" / "x.jpg", astronaut(40, 40)), save(tmp_path / "b" / "x.jpg", astronaut(40, 40)[::-1])
    before = checksums(tmp_path)
    assert cli(a, b, "--out", tmp_path / "out", model=tiny_model) == 0
    after = checksums(tmp_path)
    assert_kept(before, after)
    assert {"out/a/x.jpg.color.png", "out/b/x.jpg.color.png"} == set(after) - set(before)
    assert after["out/a/x.jpg.color.png"] != after["out/b/x.jpg.color.png"]


def test_out_equal_to_the_input_folder_never_touches_inputs(tiny_model, tmp_path, capsys):
    save(tmp_path / "face.jpg", astronaut(40, 40))
    save(tmp_path / "face_color.png", astronaut(40, 40)[::-1])  # the old scheme's output name, now an input
    before = checksums(tmp_path)
    assert cli(tmp_path, "--out", tmp_path, model=tiny_model) == 0
    first = checksums(tmp_path)
    assert_kept(before, first)
    assert set(first) - set(before) == {"face.jpg.color.png", "face_color.png.color.png"}
    capsys.readouterr()

    with pytest.raises(UserError) as e:  # a rerun: every output exists
        cli(tmp_path, "--out", tmp_path, model=tiny_model)
    assert str(e.value) == (f"nothing was written: 2 output(s) already in {tmp_path} kept (--overwrite "
                            "replaces them); 2 file(s) in the folders passed over (no image extension, or an earlier "
                            "output)")
    assert capsys.readouterr().err == "", "kept outputs are counted, not listed one by one"
    assert checksums(tmp_path) == first, "earlier outputs are not read as inputs, nor replaced"

    os.utime(tmp_path / "face.jpg.color.png", ns=(1, 1))
    assert cli(tmp_path, "--out", tmp_path, "--overwrite", "--chroma", "0", model=tiny_model) == 0
    assert_kept(before, checksums(tmp_path), replaced=())  # inputs untouched by --overwrite
    grey = np.asarray(Image.open(tmp_path / "face.jpg.color.png")).astype(int)
    assert np.abs(grey - grey[..., :1]).max() <= 1, "--overwrite replaced the earlier output"


def test_an_output_name_that_is_an_input_is_never_written(tiny_model, tmp_path, capsys):
    x = save(tmp_path / "x.jpg", astronaut(40, 40))
    y = save(tmp_path / "x.jpg.color.png", astronaut(40, 40)[::-1])  # given explicitly: an input
    before = checksums(tmp_path)
    assert cli(x, y, "--out", tmp_path, "--overwrite", model=tiny_model) == 0
    after = checksums(tmp_path)
    assert_kept(before, after)
    assert set(after) - set(before) == {"x.jpg.color.png.color.png"}
    err = capsys.readouterr().err
    assert f"skipped: {x}: its output {y} is one of the inputs (inputs are never replaced)" in err


def test_a_symlinked_output_that_leads_to_an_input_is_not_followed(tiny_model, tmp_path, capsys):
    keep = save(tmp_path / "in" / "keep.png", astronaut(30, 30))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.png.color.png").symlink_to(keep)
    before = checksums(tmp_path)
    with pytest.raises(UserError, match="nothing was written"):
        cli(keep, "--out", tmp_path / "out", "--overwrite", model=tiny_model)
    assert "is one of the inputs" in capsys.readouterr().err
    assert checksums(tmp_path) == before


def test_hostile_inputs_are_skipped_with_their_reason(tiny_model, tmp_path, capsys):
    src = tmp_path / "in"
    good = {"strip.png": np.random.default_rng(0).integers(0, 256, (3, 4000, 3), dtype=np.uint8),
            "grey.jpg": astronaut(50, 40)[..., 1], "rgba.png": np.dstack([astronaut(20, 20), np.full((20, 20), 9, np.uint8)])}
    for name, rgb in good.items():
        save(src / name, rgb)
    jpeg = io.BytesIO()
    Image.fromarray(astronaut()).save(jpeg, "JPEG")
    (src / "truncated.jpg").write_bytes(jpeg.getvalue()[:2000])
    (src / "text.jpg").write_text("hello\n")
    (src / "empty.png").touch()
    (src / "bomb.png").write_bytes(png_claiming(20000, 20000))
    (src / "big.png").write_bytes(png_claiming(12000, 12000))
    (src / "folder.jpg").mkdir()  # a folder with an image's name, inside a folder: walked, holds nothing
    (tmp_path / "empty_dir").mkdir()
    before = checksums(tmp_path)
    code = cli(src, tmp_path / "missing.jpg", tmp_path / "empty_dir", "--out", tmp_path / "out", "--size", "64",
               model=tiny_model)
    assert code == 0
    after = checksums(tmp_path)
    assert_kept(before, after)
    assert set(after) - set(before) == {f"out/{n}{OUTPUT_SUFFIX}" for n in good}
    err = capsys.readouterr()
    expected = [
        f"{tmp_path / 'missing.jpg'} does not exist",
        f"{tmp_path / 'empty_dir'} is a folder without image files",
        f"{src / 'truncated.jpg'} is truncated (the file ends before the image does)",
        f"{src / 'text.jpg'} is not an image (PIL knows no image format that starts like its bytes)",
        f"{src / 'empty.png'} is empty (0 bytes)",
        f"{src / 'bomb.png'} claims more than 179 megapixels, above the limit of 50.0 MP (not decoded)",
        f"{src / 'big.png'} is 12000x12000 = 144.0 megapixels, above the limit of 50.0 MP (not decoded)",
    ]
    for line in expected:
        assert f"skipped: {line}" in err.err, f"{line!r} not in\n{err.err}"
    assert "wrote 3 colorized image(s)" in err.out and "7 skipped" in err.out
    strip = np.asarray(Image.open(tmp_path / "out" / "strip.png.color.png"))
    assert strip.shape == (3, 4000, 3)


def test_nothing_written_is_an_error_and_creates_nothing(tiny_model, tmp_path, capsys):
    (tmp_path / "text.jpg").write_text("hello\n")
    before = checksums(tmp_path)
    with pytest.raises(UserError, match=r"^nothing was written: 2 skipped \(reasons above\)$"):
        cli(tmp_path / "text.jpg", tmp_path / "nope.png", "--out", tmp_path / "out", model=tiny_model)
    assert not (tmp_path / "out").exists()
    assert checksums(tmp_path) == before


def test_out_that_is_a_file_is_refused(tiny_model, tmp_path):
    save(tmp_path / "x.jpg", astronaut(20, 20))
    (tmp_path / "out.png").write_bytes(b"precious")
    before = checksums(tmp_path)
    with pytest.raises(UserError, match=r"--out .*out.png is a file; give a folder"):
        cli(tmp_path / "x.jpg", "--out", tmp_path / "out.png", model=tiny_model)
    assert checksums(tmp_path) == before


def test_an_unwritable_place_skips_that_file_only(tiny_model, tmp_path, capsys):
    save(tmp_path / "in" / "a" / "x.jpg", astronaut(20, 20))
    save(tmp_path / "in" / "y.jpg", astronaut(20, 20))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a").write_text("a file where the output folder a/ should go")
    before = checksums(tmp_path)
    assert cli(tmp_path / "in", "--out", tmp_path / "out", model=tiny_model) == 0
    after = checksums(tmp_path)
    assert_kept(before, after)
    assert set(after) - set(before) == {"out/y.jpg.color.png"}
    assert "cannot write" in capsys.readouterr().err
    assert not [p for p in (tmp_path / "out").iterdir() if ".tmp-" in p.name], "no temp file left"


def test_options_are_checked_by_the_parser(tiny_model, tmp_path, capsys):
    for bad in (["--chroma", "-1"], ["--chroma", "nan"], ["--size", "0"], ["--size", "1.5"]):
        with pytest.raises(SystemExit) as e:
            cli(tmp_path, "--out", tmp_path / "o", *bad, model=tiny_model)
        assert e.value.code == 2
    assert "must be a number >= 0" in capsys.readouterr().err


def test_the_command_with_a_checkpoint_file_and_a_pixel_limit(checkpoint, tiny_model, tmp_path, capsys):
    big = save(tmp_path / "big.png", skdata.astronaut())  # 512x512 = 0.26 MP
    small = save(tmp_path / "small.png", astronaut(100, 100))
    assert cli(big, small, "--out", tmp_path / "out", "--checkpoint", checkpoint, "--max-megapixels", "0.1",
               "--device", "cpu", model=None) == 0
    assert "big.png is 512x512 = 0.3 megapixels, above the limit of 0.1 MP" in capsys.readouterr().err
    out = np.asarray(Image.open(tmp_path / "out" / "small.png.color.png"))
    np.testing.assert_array_equal(out, colorize(astronaut(100, 100), tiny_model, size=32))


def test_two_inputs_never_share_an_output_even_with_overwrite(tiny_model, tmp_path, monkeypatch, capsys):
    """Should two inputs ever map to one output (a case-insensitive disk, say), the second is
    refused at write time, even with --overwrite and within one batch."""
    a, b = save(tmp_path / "a.png", astronaut(20, 20)), save(tmp_path / "b.png", astronaut(20, 20)[::-1])
    monkeypatch.setattr(lib.colorize, "output_path", lambda src, base, out: out / "same.png")
    assert cli(a, b, "--out", tmp_path / "out", "--overwrite", model=tiny_model) == 0
    assert f"skipped: {b}: its output {tmp_path / 'out' / 'same.png'} was just written for another input" \
        in capsys.readouterr().err
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out" / "same.png")),
                                  colorize(a, tiny_model, size=128))


def test_python_m_lib_colorize_exit_codes(checkpoint, tmp_path, capsys):
    from lib.__main__ import main

    photo = save(tmp_path / "in" / "p.jpg", astronaut(40, 30))
    (tmp_path / "in" / "bad.jpg").write_text("no")
    code = main(["colorize", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--checkpoint", str(checkpoint),
                 "--device", "cpu"])
    captured = capsys.readouterr()
    assert code == 0 and (tmp_path / "out" / "p.jpg.color.png").is_file()
    assert f"skipped: {tmp_path / 'in' / 'bad.jpg'} is not an image" in captured.err
    assert "wrote 1 colorized image(s)" in captured.out and "1 skipped" in captured.out
    before = checksums(tmp_path)
    assert main(["colorize", str(photo), "--out", str(tmp_path / "out"), "--checkpoint", str(checkpoint)]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == \
        f"error: nothing was written: 1 output(s) already in {tmp_path / 'out'} kept (--overwrite replaces them)"
    assert main(["colorize", str(photo), "--out", str(photo), "--checkpoint", str(checkpoint)]) == 2
    assert capsys.readouterr().err == f"error: --out {photo} is a file; give a folder for the colorized images\n"
    assert main(["colorize", str(photo), "--out", str(tmp_path / "o2"), "--checkpoint", str(tmp_path / "no.pt")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: checkpoint ") and "no.pt" in err and err.count("\n") == 1, err
    assert checksums(tmp_path) == before
    with pytest.raises(SystemExit) as e:
        main(["colorize", str(photo), "--out", str(tmp_path / "o3"), "--device", "gpu"])
    assert e.value.code == 2 and "must be one of auto, cpu" in capsys.readouterr().err
