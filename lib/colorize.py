"""Colorize photos of any size, grey or colour, with a trained generator: full-resolution L, upsampled ab.

Taught in ``09_interactive_demo``; the command is
``python -m lib colorize photo.jpg old_photos/ --out colorized/`` (the shipped model unless
``--checkpoint`` names another).

The generator was trained on square faces of one size (128x128 for the shipped model). A
photo of any size goes through it like this::

    rgb or grey (C, H, W) --rgb_to_lab--> L (1, H, W)           full resolution, kept
    L --resize (antialiased) to the training scale--> L_s (1, h, w)
    L_s --normalise, pad to 2**depth, model, crop--> ab_hat (2, h, w) --bilinear upsample--> ab (2, H, W)
    [L, chroma * ab] --lab_to_rgb, inside the sRGB gamut--> rgb (H, W, 3) uint8

so every detail of the output comes from the photo's own lightness, and the model only
decides the colours, which vary slowly (chroma is low-frequency: JPEG stores it at half
resolution for the same reason). The short side is resized to ``size``, the long side
alike but to at most ``MAX_ASPECT * size`` (a 4000x3 strip does not become an 85,000-pixel
tensor), and the model's input is padded (edge pixels repeated) to a multiple of ``2**depth``.
A colour the sRGB gamut cannot show at its lightness keeps its L and hue and loses chroma
until it fits, so the output's Lab L is the input's own up to uint8 rounding. The
full-resolution steps run in tiles of ``TILE_PIXELS``: memory stays ~10 bytes per pixel.
"""

from __future__ import annotations

import argparse
import functools
import io
import math
import os
import re
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn
from tqdm.auto import tqdm

import lib.checkpoint
from lib.checkpoint import load_generator
from lib.config import DEVICE_PATTERN
from lib.color import AB_SCALE, denormalize_ab, lab_to_rgb, normalize_l, rgb_to_lab
from lib.errors import ConfigError, ImageError, UserError
from lib.images import IMAGE_EXTENSIONS, MAX_PIXELS, load_rgb, pil_to_rgb
from lib.runtime import pick_device
from lib.utils import atomic_write, eval_mode, mirror_averaged

__all__ = ["DEFAULT_SIZE", "MAX_ASPECT", "OUTPUT_SUFFIX", "model_input_size", "colorize", "colorize_batch",
           "output_path", "add_arguments", "run"]

DEFAULT_SIZE = 128  # short side the model sees when neither size nor the checkpoint says
MAX_ASPECT = 4  # the model's long side is at most MAX_ASPECT * size
TILE_PIXELS = 1 << 18  # full-resolution work goes in tiles of about this many pixels
OUTPUT_SUFFIX = ".color.png"  # x.jpg -> x.jpg.color.png: appending keeps every output name distinct
_PIXEL_BUDGET = MAX_PIXELS  # the command decodes images ahead of the model up to about this many pixels


# --- the model -----------------------------------------------------------------------
@functools.lru_cache(maxsize=4)
def _load_cached(path: str | None, stamp: tuple | None, device: str) -> tuple[nn.Module, int]:
    model, ckpt = load_generator(path, device=device)
    size = (ckpt.get("train_config") or {}).get("image_size") or DEFAULT_SIZE
    return model.eval(), int(size)


def _generator(checkpoint, device: str | torch.device) -> tuple[nn.Module, int]:
    """``(model, training size)``: a model passed in runs where it is; a path (``None``: the
    shipped model) is loaded once per file version and device (cached)."""
    if isinstance(checkpoint, nn.Module):
        return checkpoint, DEFAULT_SIZE
    path = Path(checkpoint if checkpoint is not None else lib.checkpoint.SHIPPED)
    stamp = (path.stat().st_mtime_ns, path.stat().st_size) if path.is_file() else None
    key = None if checkpoint is None else str(path.resolve())
    return _load_cached(key, stamp, str(pick_device(str(device))))


def _device_of(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


# --- full-resolution steps, in tiles ----------------------------------------------------
def _tiles(height: int, width: int):
    """``(rows, cols)`` slices covering an ``height x width`` image in tiles of ~TILE_PIXELS."""
    tw = min(width, TILE_PIXELS)
    th = max(1, TILE_PIXELS // tw)
    for r in range(0, height, th):
        for c in range(0, width, tw):
            yield slice(r, min(r + th, height)), slice(c, min(c + tw, width))


def _as_image(image) -> Tensor:
    """path | PIL | numpy ``(H, W[, 1|3|4])`` | tensor ``([1|3, ]H, W)`` -> ``(1 or 3, H, W)`` uint8 or
    float32 in [0, 1], on the CPU (a view where possible)."""
    if isinstance(image, (str, os.PathLike, bytes)):
        image = load_rgb(image)  # (H, W, 3) uint8
    elif isinstance(image, Image.Image):
        image = pil_to_rgb(image)  # (H, W, 3) uint8
    if isinstance(image, np.ndarray):
        if image.ndim == 2:
            image = image[..., None]
        if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
            raise ValueError(f"a numpy image must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {image.shape} "
                             "(pass channels-first images as torch tensors)")
        if image.shape[2] == 4:  # RGBA: over white, as lib.images does for files
            if image.dtype != np.uint8:
                raise ValueError(f"an RGBA numpy image must be uint8, got {image.dtype}")
            image = pil_to_rgb(Image.fromarray(np.ascontiguousarray(image), "RGBA"))  # (H, W, 3)
        with warnings.catch_warnings():  # PIL's arrays are read-only; this tensor is only read
            warnings.filterwarnings("ignore", "The given NumPy array is not writable")
            image = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)  # (C, H, W)
    if not isinstance(image, Tensor):
        raise TypeError(f"image must be a path, PIL image, numpy array or tensor, got {type(image).__name__}")
    x = image.detach()
    if x.dim() == 2:
        x = x[None]
    if x.dim() != 3 or x.shape[0] not in (1, 3) or 0 in x.shape:
        raise ValueError(f"expected an image (3, H, W), (1, H, W) or (H, W), got shape {tuple(image.shape)}")
    if x.dtype == torch.bool:
        x = x.to(torch.uint8) * 255
    elif x.dtype == torch.uint16:
        x = x.float() / 65535.0
    elif x.is_floating_point():
        lo, hi = float(x.min()), float(x.max())
        if not (lo >= -1e-3 and hi <= 1 + 1e-3):
            raise ValueError(f"a float image must lie in [0, 1], got values in [{lo:.3g}, {hi:.3g}] "
                             "(pass uint8 for 0-255 images)")
        x = x.float().clamp(0.0, 1.0)
    elif x.dtype != torch.uint8:
        raise TypeError(f"image must be uint8, uint16, bool or floating point, got {x.dtype}")
    return x.cpu()


def _lightness(image: Tensor, device: torch.device) -> Tensor:
    """CIE L ``(H, W)`` float32 of a ``(1 or 3, H, W)`` image, on ``device``, computed tile by tile."""
    _, height, width = image.shape
    L = torch.empty(height, width, device=device)  # (H, W)
    for rows, cols in _tiles(height, width):
        x = image[:, rows, cols].to(device)
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x  # (C, th, tw)
        L[rows, cols] = rgb_to_lab(x.expand(3, -1, -1))[0]  # an sRGB grey has a = b = 0
    return L


def model_input_size(height: int, width: int, size: int, max_side: int | None = None) -> tuple[int, int]:
    """``(h, w)`` the model sees before padding: short side ``size``, the aspect kept, the long
    side at most ``max_side`` (default ``MAX_ASPECT * size``). Taught in ``09_interactive_demo``."""
    max_side = max_side or MAX_ASPECT * size
    scale = min(size / min(height, width), max_side / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def _model_input(L: Tensor, size: int, multiple: int) -> tuple[Tensor, tuple[int, int, int, int]]:
    """Resized, normalised, padded L_n ``(1, h', w')`` and ``(top, left, h, w)`` of the picture in it."""
    height, width = L.shape
    h, w = model_input_size(height, width, size)
    x = L[None, None]  # (1, 1, H, W)
    if height > 8 * h or width > 8 * w:  # a huge reduction: box-average first (no large filter tables)
        x = F.interpolate(x, size=(min(height, 8 * h), min(width, 8 * w)), mode="area")
    x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)  # (1, 1, h, w)
    ph, pw = -h % multiple, -w % multiple
    x = F.pad(normalize_l(x.clamp(0.0, 100.0)), (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), mode="replicate")
    return x[0], (ph // 2, pw // 2, h, w)  # (1, h + ph, w + pw)


def _bilinear_index(n_out: int, n_in: int, sl: slice, device) -> tuple[Tensor, Tensor, Tensor]:
    """Source indices and weights of outputs ``sl`` of a bilinear resize n_in -> n_out, exactly as
    ``F.interpolate(mode="bilinear", align_corners=False)`` computes them."""
    s = ((torch.arange(sl.start, sl.stop, device=device) + 0.5) * (n_in / n_out) - 0.5).clamp_min(0)
    i0 = s.floor().long().clamp_max(n_in - 1)
    return i0, (i0 + 1).clamp_max(n_in - 1), s - i0


def _upsample_tile(ab: Tensor, height: int, width: int, rows: slice, cols: slice) -> Tensor:
    """The tile ``rows x cols`` of ``ab (2, h, w)`` resized bilinearly to ``(2, H, W)``: ``(2, th, tw)``."""
    y0, y1, wy = _bilinear_index(height, ab.shape[1], rows, ab.device)
    x0, x1, wx = _bilinear_index(width, ab.shape[2], cols, ab.device)
    ab = ab[:, y0] * (1 - wy)[:, None] + ab[:, y1] * wy[:, None]  # (2, th, w)
    return ab[:, :, x0] * (1 - wx) + ab[:, :, x1] * wx  # (2, th, tw)


def _inside(lab: Tensor) -> tuple[Tensor, Tensor]:
    """sRGB of Lab ``(3, N, 1)`` and whether each colour is strictly inside the gamut (its sRGB was
    not clamped) ``(N,)``. Greys at L = 0 or 100 read as outside; chroma 0 is right for them anyway."""
    rgb = lab_to_rgb(lab)  # (3, N, 1)
    return rgb, ((rgb > 0) & (rgb < 1)).all(0)[:, 0]


@functools.cache
def _chroma_table(device: str) -> Tensor:
    """The largest chroma inside the sRGB gamut at L = 0, 1, ..., 100 (rows) and hue 0, 1, ..., 359
    degrees (columns), by bisection in float64: ``(101, 360)``, built once per device."""
    L = torch.arange(101.0, dtype=torch.float64)[:, None].expand(101, 360)
    hue = torch.deg2rad(torch.arange(360.0, dtype=torch.float64)).expand(101, 360)
    lo, hi = torch.zeros_like(L), torch.full_like(L, 2 * AB_SCALE)
    for _ in range(30):
        mid = (lo + hi) / 2
        fits = _inside(torch.stack([L, mid * hue.cos(), mid * hue.sin()]).reshape(3, -1, 1))[1].view(101, 360)
        lo, hi = torch.where(fits, mid, lo), torch.where(fits, hi, mid)
    return lo.float().to(device)


def _chroma_limit(L: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """The table's largest in-gamut chroma at each colour's L and hue, interpolated bilinearly: ``(N,)``."""
    table = _chroma_table(str(L.device))  # (101, 360)
    l = L.clamp(0, 100)
    l0 = l.floor().long().clamp_max(99)
    wl = l - l0
    h = torch.rad2deg(torch.atan2(b, a)) % 360
    h0 = h.floor().long() % 360
    wh, h1 = h - h.floor(), (h0 + 1) % 360
    row0 = table[l0, h0] * (1 - wh) + table[l0, h1] * wh
    row1 = table[l0 + 1, h0] * (1 - wh) + table[l0 + 1, h1] * wh
    return row0 * (1 - wl) + row1 * wl


def _to_srgb(lab: Tensor) -> Tensor:
    """Lab ``(3, th, tw)`` -> sRGB in [0, 1]; a colour outside the gamut keeps its L and hue and
    loses chroma until it fits, so the output's L stays the input's. The chroma limit comes from
    a table of the gamut (L x hue); where interpolating it overshoots (near the gamut's
    corners), bisection (8 steps) finds the limit."""
    rgb = lab_to_rgb(lab)  # (3, th, tw), clamped to [0, 1]
    edge = ((rgb <= 0) | (rgb >= 1)).any(0)  # (th, tw): clamped (or exactly on the gamut's boundary)
    if not edge.any():
        return rgb
    L, ab = lab[:1, edge][..., None], lab[1:, edge][..., None]  # (1, N, 1), (2, N, 1)
    chroma = torch.hypot(ab[0, :, 0], ab[1, :, 0]).clamp_min(1e-6)  # (N,)
    t = (0.99 * _chroma_limit(L[0, :, 0], ab[0, :, 0], ab[1, :, 0]) / chroma).clamp(max=1.0)  # (N,) chroma factors
    fixed, fits = _inside(torch.cat([L, ab * t[None, :, None]]))  # (3, N, 1), (N,)
    bad = ~fits & (t > 0)  # t = 0 (grey: L at 0 or 100) is always right
    if bad.any():
        Lb, abb = L[:, bad], ab[:, bad]  # (1, M, 1), (2, M, 1)
        lo, hi = torch.zeros_like(t[bad]), t[bad]  # (M,)
        for _ in range(8):
            mid = (lo + hi) / 2
            ok = _inside(torch.cat([Lb, abb * mid[None, :, None]]))[1]
            lo, hi = torch.where(ok, mid, lo), torch.where(ok, hi, mid)
        fixed[:, bad] = lab_to_rgb(torch.cat([Lb, abb * lo[None, :, None]]))
    rgb[:, edge] = fixed[..., 0]  # (3, N)
    return rgb


def _merge(L: Tensor, ab: Tensor) -> np.ndarray:
    """Full-resolution ``L (H, W)`` + small ``ab (2, h, w)`` (Lab units) -> uint8 RGB ``(H, W, 3)``."""
    height, width = L.shape
    out = np.empty((height, width, 3), dtype=np.uint8)
    for rows, cols in _tiles(height, width):
        lab = torch.cat([L[None, rows, cols], _upsample_tile(ab, height, width, rows, cols)])  # (3, th, tw)
        rgb = (_to_srgb(lab) * 255.0 + 0.5).to(torch.uint8)  # (3, th, tw)
        out[rows, cols] = rgb.permute(1, 2, 0).cpu().numpy()
    return out


# --- the public functions --------------------------------------------------------------
@torch.inference_mode()
def colorize_batch(images: Sequence, checkpoint=None, *, size: int | None = None, chroma: float = 1.0,
                   device: str = "auto", batch_size: int = 8, flip: bool = False) -> list[np.ndarray]:
    """Colorize many images (each as :func:`colorize` takes it); one uint8 ``(H, W, 3)`` array each.

    Images whose model inputs have the same shape (all 1024x1024 faces, say) share model calls
    of up to ``batch_size``; the model runs in eval mode (BatchNorm running statistics) and is
    put back in the mode it was in. ``flip``: each ab is averaged with the mirrored prediction of
    the mirrored input (``lib.evaluate.predictor``), twice the time. Taught in ``09_interactive_demo``.
    """
    model, trained_size = _generator(checkpoint, device)
    size = trained_size if size is None else size
    if not (isinstance(size, int) and size >= 1):
        raise ConfigError(f"size must be a positive integer (the short side the model sees), got {size!r}")
    if not (math.isfinite(chroma) and chroma >= 0):
        raise ConfigError(f"chroma must be a finite number >= 0 (1 = the model's colours, 0 = grey), got {chroma!r}")
    dev = _device_of(model)
    multiple = getattr(getattr(model, "config", None), "multiple", 1)  # 2**depth
    if getattr(getattr(model, "config", None), "out_channels", 2) != 2:
        raise ConfigError("this checkpoint predicts RGB (model.out_channels 3, the colorspace ablation's RGB mode); "
                          "colorize keeps the photo's own lightness and needs a model that predicts ab")
    Ls, inputs, groups = [], [], {}
    for i, image in enumerate(images):
        Ls.append(_lightness(_as_image(image), dev))  # (H, W)
        inputs.append(_model_input(Ls[-1], size, multiple))
        groups.setdefault(tuple(inputs[-1][0].shape), []).append(i)
    ab_hat: list[Tensor | None] = [None] * len(Ls)
    with eval_mode(model):
        for indices in groups.values():
            for start in range(0, len(indices), batch_size):
                chunk = indices[start : start + batch_size]
                x = torch.stack([inputs[i][0] for i in chunk])  # (b, 1, h', w'): padded to 2**depth
                out = (mirror_averaged(model, x) if flip else model(x)).float()  # (b, 2, h', w') in (-1, 1)
                for i, ab in zip(chunk, out):
                    top, left, h, w = inputs[i][1]
                    ab_hat[i] = ab[:, top : top + h, left : left + w]  # (2, h, w)
    return [_merge(L, denormalize_ab(ab) * chroma) for L, ab in zip(Ls, ab_hat)]


def colorize(image, checkpoint=None, *, size: int | None = None, chroma: float = 1.0,
             device: str = "auto", flip: bool = False) -> np.ndarray:
    """Colorize one image of any size and aspect, grey or colour -> uint8 RGB ``(H, W, 3)``.

    ``image``: a path (decoded by :func:`lib.images.load_rgb`, pixel limit included), a PIL
    image, a numpy array ``(H, W[, C])`` or a tensor ``([C, ]H, W)``, uint8 or float in [0, 1].
    ``checkpoint``: ``None`` (the shipped model), a checkpoint path, or a loaded UNet (which runs
    on its own device; ``device`` picks where a path is loaded). ``size``: the short side the
    model sees (default: the checkpoint's training size, 128 for a bare model). ``chroma``
    scales the predicted ab (0 = grey, 1 = as predicted, >1 more saturated). The output's Lab L
    is the input's (up to uint8 rounding). ``flip``: mirror averaging (:func:`colorize_batch`).
    Taught in ``09_interactive_demo``.
    """
    return colorize_batch([image], checkpoint, size=size, chroma=chroma, device=device, batch_size=1, flip=flip)[0]


# --- the command -----------------------------------------------------------------------
def output_path(source: Path, base: Path, out: Path) -> Path:
    """Where the colorized ``source`` goes: its path below ``base`` mirrored under ``out``, with
    ``OUTPUT_SUFFIX`` appended (``base/a/x.jpg`` -> ``out/a/x.jpg.color.png``): distinct inputs
    get distinct outputs, and no output name is an image name the command reads from a folder."""
    return out / source.relative_to(base).parent / (source.name + OUTPUT_SUFFIX)


def _collect(inputs: Sequence[str]) -> tuple[list[Path], Path, list[str], int]:
    """The files to colorize (folders walked recursively and sorted; a file reached twice
    counts once), the folder their output names are relative to (the deepest one holding every
    input folder and the folders of the input files), one message per input that holds no
    image file, and how many files in the folders were passed over (no image extension, or an
    earlier output)."""
    files, roots, bad, seen, passed = [], [], [], set(), 0
    for arg in inputs:
        p = Path(arg)
        if p.is_dir():
            found = []
            for folder, dirs, names in os.walk(p):  # symlinked folders are not followed (no loops)
                dirs.sort()
                for n in sorted(names):
                    if n.lower().endswith(IMAGE_EXTENSIONS) and not n.endswith(OUTPUT_SUFFIX):
                        found.append(Path(folder, n))
                    else:
                        passed += 1
            if not found:
                bad.append(f"{arg} is a folder without image files ({', '.join(IMAGE_EXTENSIONS)}) in it")
        elif p.exists():
            found = [p]
        else:
            bad.append(f"{arg} does not exist")
            continue
        roots += [_absolute(p) if p.is_dir() else _absolute(p).parent] if found else []
        for f in found:
            if f.resolve() not in seen:
                seen.add(f.resolve())
                files.append(f)
    return files, Path(os.path.commonpath(roots)) if roots else Path.cwd(), bad, passed


def _absolute(path: Path) -> Path:
    """Absolute, with ``..`` removed textually (symlinks kept), so no output escapes ``--out``."""
    return Path(os.path.abspath(path))


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return int(text)


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return value


def _device(text: str) -> str:
    if not re.fullmatch(DEVICE_PATTERN, text):
        raise argparse.ArgumentTypeError(f"must be one of auto, cpu, cuda, cuda:N, mps; got {text!r}")
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m lib colorize`` (``lib/__main__.py`` dispatches to :func:`run`)."""
    parser.description = (
        "Colorize photos of any size, colour or grey: the model runs at its training size on the lightness, "
        f"its colours are upsampled and merged with the full-resolution lightness. IMAGE/a/x.jpg -> "
        f"OUT/a/x.jpg{OUTPUT_SUFFIX}; existing files and inputs are never replaced; bad images are skipped "
        "with the reason; exit 0 when at least one image was written.")
    parser.add_argument("inputs", metavar="INPUT", nargs="+", help="image files or folders (searched recursively)")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for the colorized PNGs (created)")
    parser.add_argument("--checkpoint", metavar="CKPT", default=None,
                        help="a checkpoint or generator export (default: the shipped model, checkpoints/)")
    parser.add_argument("--size", type=_positive_int, default=None, metavar="PX",
                        help="short side the model sees (default: the checkpoint's training size)")
    parser.add_argument("--chroma", type=_non_negative_float, default=1.0, metavar="F",
                        help="scale the predicted colours: 0 grey, 1 as predicted (default), 1.3 more saturated")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace outputs of an earlier run (inputs are never replaced)")
    parser.add_argument("--max-megapixels", type=_non_negative_float, default=MAX_PIXELS / 1e6, metavar="MP",
                        help=f"refuse images larger than this, read from the header (default: {MAX_PIXELS / 1e6:g})")
    parser.add_argument("--batch-size", type=_positive_int, default=8, metavar="N",
                        help="images per model call (default: 8)")
    parser.add_argument("--device", type=_device, default="auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:N or mps")
    parser.add_argument("--flip", action="store_true",
                        help="average each prediction with the mirrored prediction of the mirrored photo (2x the time)")


def run(args: argparse.Namespace) -> int:
    """``python -m lib colorize INPUT... --out DIR``: colorize every image, skip (and name) bad ones.

    Each file is decoded and checked on its own; a bad one is reported and skipped, every good
    one is written (atomically). No existing file is replaced unless ``--overwrite``, and an
    input never. Returns 0 when at least one image was written; raises :class:`UserError`
    (``error: ...``, exit 2) when ``--out`` is a file or nothing was written.
    """
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {args.out} is a file; give a folder for the colorized images")
    files, base, skipped, passed = _collect(args.inputs)
    for message in skipped:
        print(f"skipped: {message}", file=sys.stderr)
    model, trained_size = _generator(args.checkpoint, args.device) if files else (None, 0)
    size = args.size or trained_size
    inputs = {_identity(f) for f in files} - {None}
    max_pixels = int(args.max_megapixels * 1e6) or None
    written: set = set()
    kept: list[Path] = []  # outputs of an earlier run, left as they are (counted, not listed)
    pending: list[tuple[Path, Path, np.ndarray]] = []

    def skip(message: str) -> None:
        if message == "exists":
            kept.append(message)
            return
        skipped.append(message)
        tqdm.write(f"skipped: {message}", file=sys.stderr)

    def refusal(src: Path, target: Path) -> str | None:
        """Why ``target`` must not be written now (checked before decoding and again just before writing)."""
        if not (target.exists() or target.is_symlink()):
            return None
        if _identity(target) in inputs:
            return f"{src}: its output {target} is one of the inputs (inputs are never replaced)"
        if _identity(target) in written:
            return f"{src}: its output {target} was just written for another input"
        return None if args.overwrite else "exists"

    def flush() -> None:
        rgbs = colorize_batch([rgb for *_, rgb in pending], model, size=size, chroma=args.chroma,
                              batch_size=args.batch_size, flip=args.flip)
        for (src, target, _), rgb in zip(pending, rgbs):
            png = io.BytesIO()
            Image.fromarray(rgb).save(png, format="PNG")
            if reason := refusal(src, target):
                skip(reason)
                continue
            try:
                atomic_write(target, lambda f: f.write(png.getbuffer()))
            except OSError as e:
                skip(f"{src}: cannot write {target} ({e.strerror or e})")
                continue
            written.add(_identity(target))
        pending.clear()

    for src in tqdm(files, desc="colorize", unit="img", disable=None):
        target = output_path(_absolute(src), base, out)
        if reason := refusal(src, target):
            skip(reason)
            continue
        try:
            pending.append((src, target, load_rgb(src, max_pixels=max_pixels)))
        except ImageError as e:
            skip(str(e))
            continue
        if len(pending) >= args.batch_size or sum(r.shape[0] * r.shape[1] for *_, r in pending) >= _PIXEL_BUDGET:
            flush()
    if pending:
        flush()
    notes = [f"{len(skipped)} skipped (reasons above)"] if skipped else []
    notes += [f"{len(kept)} output(s) already in {out} kept (--overwrite replaces them)"] if kept else []
    notes += [f"{passed} file(s) in the folders passed over (no image extension, or an earlier output)"] if passed else []
    if not written:
        raise UserError(f"nothing was written: {'; '.join(notes)}")
    print("; ".join([f"wrote {len(written)} colorized image(s) to {out}", *notes]))
    return 0
