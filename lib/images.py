"""Decode one image file (or its bytes) safely into uint8 RGB, or say in one line why not.

Taught in ``09_interactive_demo`` (uploads) and used by ``lib.colorize``.
PIL reads the header first, so an image above ``max_pixels`` is refused *before* its pixels
are decoded: a 1 MB PNG can claim 20000x20000 pixels (1.2 GB of RGB), and torchvision's
decoder skips PIL's decompression-bomb guard. Every mode comes out as ``(H, W, 3)`` uint8:

- EXIF orientation is applied (what a photo viewer shows);
- alpha (RGBA, LA, PA, palette with transparency) is composited over white, so transparent
  areas come out white as on a web page, not whatever colour hides under alpha = 0;
- 16-bit and 32-bit grey are scaled to 0-255 (not clipped); CMYK, YCbCr, palette, 1-bit and
  grey are converted by PIL (ICC profiles are not applied); a multi-frame file gives frame 0.

Anything that is not a decodable image (missing, a folder, empty, text named ``.jpg``,
truncated, too large) raises :class:`lib.errors.ImageError` naming the file and the reason.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from lib.errors import ImageError

__all__ = ["MAX_PIXELS", "IMAGE_EXTENSIONS", "load_rgb", "pil_to_rgb"]

MAX_PIXELS = 50_000_000  # default limit: 50 MP is 150 MB of RGB; a phone photo is 12-50 MP
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")  # what folders are scanned for


def pil_to_rgb(im: Image.Image) -> np.ndarray:
    """Any PIL image -> uint8 ``(H, W, 3)`` RGB: alpha over white, 16/32-bit grey scaled."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):  # high bit-depth grey: scale, do not clip
        a = np.asarray(im, dtype=np.float64)
        scale = 65535.0 if im.mode.startswith("I;16") or a.max(initial=0) > 255 else 255.0
        grey = np.clip(a / scale * 255.0 + 0.5, 0, 255).astype(np.uint8)  # (H, W)
        return np.repeat(grey[..., None], 3, axis=2)  # (H, W, 3)
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        im = im.convert("RGBA")
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, im)
    return np.asarray(im.convert("RGB"))  # (H, W, 3) uint8


def load_rgb(source: str | os.PathLike | bytes, *, max_pixels: int | None = MAX_PIXELS,
             name: str | None = None) -> np.ndarray:
    """Decode an image file (a path, or the bytes of an upload) to uint8 RGB ``(H, W, 3)``.

    The header is read first: more than ``max_pixels`` pixels (``None``: no limit of ours;
    PIL's own bomb guard at ~179 MP still holds) raises :class:`ImageError` before decoding.
    ``name`` is how messages call the source (default: the path, or "the uploaded image").
    Taught in ``09_interactive_demo``.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        name = name or "the uploaded image"
        if len(source) == 0:
            raise ImageError(f"{name} is empty (0 bytes)")
        fp = io.BytesIO(source)
    else:
        path = Path(source)
        name = name or str(path)
        if not path.exists():
            raise ImageError(f"{name} does not exist")
        if path.is_dir():
            raise ImageError(f"{name} is a folder, not an image file")
        if path.stat().st_size == 0:
            raise ImageError(f"{name} is empty (0 bytes)")
        fp = path
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our limit decides
            with Image.open(fp) as im:
                w, h = im.size
                if max_pixels is not None and w * h > max_pixels:
                    raise ImageError(f"{name} is {w}x{h} = {w * h / 1e6:.1f} megapixels, above the limit of "
                                     f"{max_pixels / 1e6:.1f} MP (not decoded); shrink it first or raise the limit")
                im.load()  # decodes now: a truncated or corrupt file fails here
                try:
                    im = ImageOps.exif_transpose(im)
                except Exception:  # noqa: BLE001: a broken EXIF block is no reason to refuse the pixels
                    pass
                return pil_to_rgb(im)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{name} is not an image (PIL knows no image format that starts like its bytes)") from None
    except PermissionError:
        raise ImageError(f"{name} cannot be read (permission denied)") from None
    except Image.DecompressionBombError:  # PIL's own guard, above 2 * Image.MAX_IMAGE_PIXELS
        limit = f"the limit of {max_pixels / 1e6:.1f} MP" if max_pixels else "no limit of ours, but PIL's"
        raise ImageError(f"{name} claims more than {2 * Image.MAX_IMAGE_PIXELS / 1e6:.0f} megapixels, above "
                         f"{limit} (not decoded)") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as e:  # what PIL raises on corrupt data
        reason = "truncated (the file ends before the image does)" if "truncat" in str(e).lower() else f"corrupt ({e})"
        raise ImageError(f"{name} is {reason}") from None

