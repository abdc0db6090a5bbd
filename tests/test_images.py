"""Safe decoding (lib.images): every mode to uint8 RGB, the pixel limit read from the header, and
a clear ImageError for every file that is not a decodable image."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from lib.errors import ImageError
from lib.images import load_rgb, pil_to_rgb


def png_claiming(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR that claims ``width x height`` RGB, with 1 KB of pixel data:
    a few hundred bytes that would ask a decoder for width * height * 3 bytes."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1000))
            + chunk(b"IEND", b""))


def encoded(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


ASTRONAUT = Image.fromarray(skdata.astronaut())  # (512, 512) RGB


def test_rgb_and_grey_files_decode_to_uint8_rgb(tmp_path):
    (tmp_path / "a.png").write_bytes(encoded(ASTRONAUT, "PNG"))
    out = load_rgb(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == (512, 512, 3)
    np.testing.assert_array_equal(out, skdata.astronaut())
    grey = ASTRONAUT.convert("L")
    out = load_rgb(encoded(grey, "PNG"))
    assert out.shape == (512, 512, 3)
    np.testing.assert_array_equal(out[..., 0], np.asarray(grey))
    np.testing.assert_array_equal(out[..., 0], out[..., 2])


def test_alpha_is_composited_over_white():
    rgba = np.zeros((4, 6, 4), np.uint8)
    rgba[..., 0] = 200  # red under the alpha
    rgba[:, :3, 3] = 0  # left half transparent
    rgba[:, 3:, 3] = 255  # right half opaque
    out = load_rgb(encoded(Image.fromarray(rgba, "RGBA"), "PNG"))
    np.testing.assert_array_equal(out[:, :3], 255)  # transparent -> white, not the hidden red
    assert (out[:, 3:] == [200, 0, 0]).all()
    la = Image.fromarray(np.stack([np.full((4, 4), 10, np.uint8), np.full((4, 4), 128, np.uint8)], -1), "LA")
    assert abs(int(load_rgb(encoded(la, "PNG"))[0, 0, 0]) - (10 * 128 + 255 * 127) // 255) <= 1


def test_palette_with_transparency_and_one_bit():
    p = Image.new("P", (5, 5), 1)
    p.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    assert (load_rgb(encoded(p, "PNG")) == [0, 255, 0]).all()
    p.info["transparency"] = 1
    assert (load_rgb(encoded(p, "PNG", transparency=1)) == 255).all()
    bw = Image.fromarray(np.eye(8, dtype=bool))
    out = load_rgb(encoded(bw, "PNG"))
    assert out[0, 0].tolist() == [255, 255, 255] and out[0, 1].tolist() == [0, 0, 0]


def test_16_bit_grey_is_scaled_not_clipped():
    a = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
    out = load_rgb(encoded(Image.fromarray(a), "PNG"))
    assert out[0, :, 0].tolist() == [0, 1, 128, 255]
    assert pil_to_rgb(Image.fromarray(a.astype(np.int32), "I"))[0, :, 0].tolist() == [0, 1, 128, 255]


def test_cmyk_jpeg_is_converted():
    cmyk = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # full magenta + yellow = red
    out = load_rgb(encoded(cmyk, "JPEG", quality=95))
    r, g, b = out[4, 4].astype(int)
    assert r > 200 and g < 60 and b < 60, out[4, 4]


def test_exif_orientation_is_applied():
    im = Image.fromarray(skdata.astronaut()[:100, :60])  # (100, 60): portrait
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view"
    out = load_rgb(encoded(im, "JPEG", exif=exif))
    assert out.shape == (60, 100, 3)


def test_a_long_strip_decodes():
    strip = Image.fromarray(np.random.default_rng(0).integers(0, 256, (3, 4000, 3), dtype=np.uint8))
    assert load_rgb(encoded(strip, "PNG")).shape == (3, 4000, 3)


def test_pixel_limit_is_read_from_the_header_before_decoding(tmp_path):
    claim = tmp_path / "claims_12000x12000.png"
    claim.write_bytes(png_claiming(12000, 12000))  # 144 MP: under PIL's own error threshold
    with pytest.raises(ImageError) as e:
        load_rgb(claim)
    # the 1 KB of data would decode as "truncated": this message proves nothing was decoded
    assert str(e.value) == (f"{claim} is 12000x12000 = 144.0 megapixels, above the limit of 50.0 MP (not decoded); "
                            "shrink it first or raise the limit")
    bomb = tmp_path / "claims_20000x20000.png"
    bomb.write_bytes(png_claiming(20000, 20000))  # 400 MP: PIL's guard answers first
    with pytest.raises(ImageError, match=r"claims_20000x20000.png claims more than 179 megapixels, above the "
                                         r"limit of 50.0 MP \(not decoded\)"):
        load_rgb(bomb)
    with pytest.raises(ImageError, match=r"is 512x512 = 0.3 megapixels, above the limit of 0.1 MP"):
        load_rgb(encoded(ASTRONAUT, "PNG"), max_pixels=100_000)
    assert load_rgb(encoded(ASTRONAUT, "PNG"), max_pixels=None).shape == (512, 512, 3)
    with pytest.raises(ImageError, match="truncated"):  # within the limit, the same file is decoded
        load_rgb(png_claiming(300, 200))


@pytest.mark.parametrize("case, expected", [
    ("truncated_jpeg", "is truncated (the file ends before the image does)"),
    ("truncated_png", "is truncated (the file ends before the image does)"),
    ("text", "is not an image (PIL knows no image format that starts like its bytes)"),
    ("empty", "is empty (0 bytes)"),
    ("folder", "is a folder, not an image file"),
    ("missing", "does not exist"),
])
def test_bad_files_raise_image_error_naming_the_file(tmp_path, case, expected):
    jpeg, png = encoded(ASTRONAUT, "JPEG"), encoded(ASTRONAUT, "PNG")
    path = tmp_path / f"{case}.jpg"
    if case == "truncated_jpeg":
        path.write_bytes(jpeg[: len(jpeg) // 2])
    elif case == "truncated_png":
        path.write_bytes(png[: len(png) // 2])
    elif case == "text":
        path.write_text("this is a text file with an image's name\n")
    elif case == "empty":
        path.touch()
    elif case == "folder":
        path.mkdir()
    with pytest.raises(ImageError) as e:
        load_rgb(path)
    assert str(e.value) == f"{path} {expected}"


def test_uploaded_bytes_are_named_in_messages():
    with pytest.raises(ImageError, match=r"^the uploaded image is not an image"):
        load_rgb(b"GIF? no, plain text")
    with pytest.raises(ImageError, match=r"^face.jpg is empty"):
        load_rgb(b"", name="face.jpg")
