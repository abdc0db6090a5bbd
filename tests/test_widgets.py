"""The demo of ``09_interactive_demo`` (``lib.widgets.ColorizeDemo``), driven headless: tests set
the controls' ``.value`` (what a reader's click does) and check the images, scores and messages."""

from __future__ import annotations

import datetime
import io

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

import lib.checkpoint
from lib.colorize import colorize
from lib.models import UNet, UNetConfig
from lib.widgets import ColorizeDemo

pytestmark = pytest.mark.usefixtures("one_thread")


def _tiny(seed: int, **kw) -> UNet:
    torch.manual_seed(seed)
    model = UNet(UNetConfig(ndims=8, depth=2, num_blocks=0, **kw))
    for p in model.head.parameters():  # an untrained head gives ab ~ 0; make the colours visible
        torch.nn.init.normal_(p, std=0.5)
    return model.eval()


def _export(model: UNet, path, image_size: int = 64):
    """A generator export of ``model``, trained (so it says) at ``image_size``."""
    lib.checkpoint.save_checkpoint({"format": lib.checkpoint.CHECKPOINT_FORMAT, "kind": "generator",
                                    "model": model.state_dict(), "model_config": model.config.to_dict(),
                                    "train_config": {"image_size": image_size}}, path)
    return path


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt")
    return _export(_tiny(0), folder / "a.pt"), _export(_tiny(1), folder / "b.pt")


@pytest.fixture
def demo(ckpts, tmp_path):
    return ColorizeDemo(ckpts[0], save_dir=tmp_path / "saved", data_root=None, source="astronaut")


def _upload(name: str, content: bytes) -> tuple[dict, ...]:
    return ({"name": name, "type": "", "size": len(content), "content": memoryview(content),
             "last_modified": datetime.datetime.now(datetime.timezone.utc)},)


def _decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)))


def test_default_state_is_the_colorize_output_with_scores(demo, ckpts):
    out = demo.outputs["A"]
    want = colorize(skimage.data.astronaut(), lib.checkpoint.load_generator(ckpts[0])[0], size=64)
    np.testing.assert_array_equal(out, want)  # the widget shows what lib.colorize makes, at the trained size
    assert out.shape == (512, 512, 3) and demo.original is not None
    s = demo.scores["A"]
    assert 5 < s["psnr_rgb"] < 60 and 0 < s["ssim_rgb"] <= 1 and s["delta_cf"] >= 0, s
    assert _decode(demo.image.value).ndim == 3 and "B" not in demo.outputs
    assert "error" not in demo.message.value.lower()


def test_chroma_slider_scales_the_colours_and_redraws(demo):
    first_png, first = demo.image.value, demo.outputs["A"].copy()
    demo.chroma.value = 0.0
    out = demo.outputs["A"].astype(int)
    assert np.abs(out - out.mean(axis=2, keepdims=True)).max() <= 2, "chroma 0 is grey"
    assert demo.image.value != first_png and not np.array_equal(out, first)
    demo.chroma.value = 1.0
    np.testing.assert_array_equal(demo.outputs["A"], first)


def test_every_bundled_source_renders(demo):
    shapes = {}
    for key in ("grace_hopper", "camera", "toy_face", "test_face"):
        demo.source.value = key
        shapes[key] = demo.outputs["A"].shape
        assert demo.photo.shape == demo.outputs["A"].shape
    assert shapes["grace_hopper"] == (600, 512, 3)
    demo.source.value = "camera"
    assert demo.original is None and demo.scores == {}, "a black-and-white photo has nothing to score against"
    assert "black-and-white" in demo.message.value
    demo.source.value = "toy_face"
    first = demo.photo.copy()
    assert "ToyFace" in demo.message.value and not demo.another.disabled
    demo.another.click()
    assert not np.array_equal(first, demo.photo), "'another face' draws another one"


def test_random_test_face_comes_from_the_folder_found(ckpts, celebahq_dir, tmp_path):
    demo = ColorizeDemo(ckpts[0], save_dir=tmp_path, data_root=str(celebahq_dir), source="test_face")
    assert demo.photo.shape[2] == 3 and demo.original is not None and "A" in demo.scores
    assert "test face" in demo.message.value and celebahq_dir.name in demo.message.value


def test_two_checkpoints_side_by_side(demo, ckpts):
    demo.model_b.value = str(ckpts[1])
    assert set(demo.outputs) == {"A", "B"} and set(demo.scores) == {"A", "B"}
    assert not np.array_equal(demo.outputs["A"], demo.outputs["B"])
    assert _decode(demo.image.value).shape[1] > 3 * 200, "four panels: grey, A, B, original"
    demo.model_b.value = str(ckpts[1].parent / "missing.pt")
    assert set(demo.outputs) == {"A"} and "model B" in demo.message.value and "does not exist" in demo.message.value
    demo.model_b.value = ""
    assert set(demo.outputs) == {"A"} and "model B" not in demo.message.value


def test_gate_toggle_overlays_each_level(demo):
    plain = _decode(demo.image.value)
    demo.gates.value = True
    assert len(demo.gate_maps) == 2, "depth 2: one gate per level"
    assert all(m.shape == (64, 64) and 0 < m.min() and m.max() < 1 for m in demo.gate_maps)
    assert _decode(demo.image.value).shape[0] > plain.shape[0], "a second row of gate maps"


def test_model_without_gates_says_so(tmp_path):
    demo = ColorizeDemo(_tiny(2, attention_gates=False), save_dir=tmp_path)
    demo.gates.value = True
    assert demo.gate_maps == [] and "no attention gates" in demo.message.value


def test_missing_shipped_model_is_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.setattr(lib.checkpoint, "SHIPPED", tmp_path / "nothing.pt")
    demo = ColorizeDemo(None, save_dir=tmp_path)
    assert demo.outputs == {} and demo.photo is not None and demo.image.value
    assert "model A" in demo.message.value and "shipped model" in demo.message.value
    assert demo.save_result() is None and "nothing to save" in demo.message.value


def test_upload_of_a_photo_is_colorized(demo):
    rgb = np.random.default_rng(0).integers(0, 256, (40, 70, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    demo.upload.value = _upload("mine.png", buf.getvalue())
    assert demo.source.value == "upload" and demo.photo_name == "mine"
    np.testing.assert_array_equal(demo.photo, rgb)
    assert demo.outputs["A"].shape == (40, 70, 3) and "A" in demo.scores


def test_upload_that_is_not_an_image_says_why(demo):
    demo.upload.value = _upload("notes.txt", b"these are my notes, not a photo\n")
    assert demo.source.value == "upload" and demo.photo is None and demo.outputs == {}
    assert "notes.txt is not an image" in demo.message.value and "Upload a JPEG" in demo.message.value


def test_upload_over_the_size_limit_is_refused_unread(ckpts, tmp_path):
    demo = ColorizeDemo(ckpts[0], save_dir=tmp_path, max_upload_bytes=1000)
    demo.upload.value = _upload("big.png", b"\x89PNG" + bytes(5000))
    assert demo.photo is None and "big.png is 5.0 kB, above the upload limit of 1.0 kB: not read" in demo.message.value
    demo2 = ColorizeDemo(ckpts[0], save_dir=tmp_path, max_upload_pixels=100)
    buf = io.BytesIO()
    Image.new("RGB", (20, 20)).save(buf, format="PNG")
    demo2.upload.value = _upload("wide.png", buf.getvalue())
    assert demo2.photo is None and "above the limit" in demo2.message.value


def test_save_writes_a_fresh_file_each_time(demo):
    first = demo.save_result()
    demo.save.click()
    second = sorted(demo.save_dir.iterdir())[-1]
    assert first.name == "astronaut_colorized_001.png" and second.name == "astronaut_colorized_002.png"
    np.testing.assert_array_equal(np.asarray(Image.open(first)), demo.outputs["A"])
    assert str(second) in demo.message.value
    before = first.read_bytes()
    demo.chroma.value = 0.5
    demo.save_result()
    assert first.read_bytes() == before, "an earlier result is never overwritten"
