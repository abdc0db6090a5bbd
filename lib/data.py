"""Face photos in, normalised ``(L, ab)`` tensors out: prepare a folder once, then a small Dataset.

Taught in ``notebooks/05_training_unet.ipynb`` (the data the U-Net trains on); the data tour
figure (``lib.viz.save_data_samples``) in ``notebooks/01_lab_color_space.ipynb``.

The way from an image file to the model's input and target::

    file --decode_rgb--> uint8 (3, h, w) --resize_square--> uint8 (3, S, S)   [prepare, once]
         --[random flip, train only]--> rgb_uint8_to_lab_norm --> l_n (1, S, S), ab_n (2, S, S)

* ``open_splits``: the one place that decides where the data come from (a face folder, else
  the generated ``ToyFaces``) and returns the datasets of the splits with a ``DataSource``
  that a checkpoint stores; ``reopen_splits`` opens them again from it.
* ``split_of``: the train / val / test split is a stable hash of each file's relative path,
  so it is the same on every machine, whatever the order of the listing.
* Preparing a split (nanoGPT's ``prepare.py``): each file is checked (``check_face``) and
  resized once into one uint8 array per split and size, cached under a key of the folder's
  state (files, sizes, mtimes, image size); skipped files are named with their reason in one
  ``DataWarning``. Later runs map the array from disk: no JPEG decoded.
* ``check_splits`` and ``training_loaders``: what a training run checks of the splits and the
  loaders it reads them with (this rank's share of each epoch, resumable mid-epoch).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import unicodedata
import warnings
from collections import Counter
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from lib.color import rgb_to_lab, rgb_to_lab_norm
from lib.errors import ConfigError, DataError, ImageError
from lib.images import MAX_PIXELS, load_rgb
from lib.runtime import EpochSampler, worker_init
from lib.toyfaces import render_toy_face
from lib.utils import atomic_write, cache_dir, clean_stale_temp_files, write_text_atomic

__all__ = [
    "IMAGE_EXTENSIONS", "SPLITS", "FRACTIONS", "GRAYSCALE_CHROMA", "MIN_SIDE", "DataWarning", "DataSource", "FaceFolder", "ToyFaces",
    "open_splits", "reopen_splits", "split_of", "list_image_files", "check_face", "decode_rgb",
    "resize_square", "rgb_uint8_to_lab_norm", "resolve_data_root", "folder_fingerprint", "check_splits",
    "training_loaders",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")  # matched case-insensitively
SPLITS = ("train", "val", "test")
FRACTIONS = (0.9, 0.05, 0.05)  # train / val / test shares of the hash split
GRAYSCALE_CHROMA = 2.0  # mean chroma sqrt(a^2 + b^2) below this (Lab units): a grayscale photo
MIN_SIDE = 32  # a "face" with a shorter side than this (a 1x1 image, an icon) is not a training face
_PREPARE_VERSION = 3  # bump when the prepared pixels would change (resize method, checks, ...)
REPO_ROOT = Path(__file__).resolve().parents[1]


class DataWarning(UserWarning):
    """Files skipped while preparing a folder."""


# --- splits ----------------------------------------------------------------------------
def split_of(relpath: str, fractions: tuple[float, float, float] = FRACTIONS) -> str:
    """The split ("train" | "val" | "test") of a file, from a stable hash of its relative path.

    The path is taken relative to the dataset root, with "/" separators and Unicode NFC
    (macOS writes names decomposed), so the answer is the same on every machine and does
    not depend on where the folder lives or the order in which files are listed. SHA-1's
    first 8 bytes give a number u uniform in [0, 1): train if u < f_train, val if
    u < f_train + f_val, else test. Taught in ``05_training_unet``.
    """
    _check_fractions(fractions)
    key = unicodedata.normalize("NFC", str(relpath).replace("\\", "/"))
    u = int.from_bytes(hashlib.sha1(key.encode("utf-8")).digest()[:8], "big") / 2**64
    if u < fractions[0]:
        return "train"
    return "val" if u < fractions[0] + fractions[1] else "test"


def _check_fractions(fractions) -> None:
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"fractions must be three non-negative numbers (train, val, test) summing to 1, "
                         f"got {fractions}")


def list_image_files(root: Path) -> tuple[list[str], Counter]:
    """Relative POSIX paths of the image files under ``root`` (recursive, sorted).

    Hidden files and folders (``.name``, e.g. macOS ``._x.jpg`` resource forks) are left
    out. Also returns a count of the other files by extension, for error messages.
    """
    images, others = [], Counter()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if name.startswith("."):
                continue
            rel = Path(dirpath, name).relative_to(root).as_posix()
            ext = os.path.splitext(name)[1].lower()
            if ext in IMAGE_EXTENSIONS:
                images.append(rel)
            else:
                others[ext or "(no extension)"] += 1
    return sorted(images), others


def _stamps(root: Path, relpaths: list[str]) -> list[tuple[str, int, int]]:
    """``(relpath, size, mtime_ns)`` of each file; -1, -1 for one that cannot be stat'ed."""
    out = []
    for rel in relpaths:
        try:
            st = (root / rel).stat()
            out.append((rel, st.st_size, st.st_mtime_ns))
        except OSError:
            out.append((rel, -1, -1))
    return out


def _digest(*parts, stamps=()) -> str:
    h = hashlib.sha256(" ".join(map(str, parts)).encode() + b"\n")
    for rel, size, mtime in stamps:
        h.update(f"{rel}\t{size}\t{mtime}\n".encode())
    return h.hexdigest()[:16]


FINGERPRINT_PREFIX = "n+s:"  # names and sizes; fingerprints without it (older checkpoints) also hashed the mtimes


def folder_fingerprint(root: str | Path, mtimes: bool = False) -> str:
    """A key that changes whenever a face folder's image files or their sizes change.

    Not their mtimes: a copy of the folder, or the same folder provisioned again, is the same
    data. ``mtimes=True`` gives the older key that hashed them too (what checkpoints stored
    before ``FINGERPRINT_PREFIX``), so those can still be checked."""
    root = Path(root)
    stamps = _stamps(root, list_image_files(root)[0])
    if mtimes:
        return _digest("facecolor folder", stamps=stamps)
    return FINGERPRINT_PREFIX + _digest("facecolor folder", stamps=[(rel, size, 0) for rel, size, _ in stamps])


# --- decoding and checking ----------------------------------------------------------------
def decode_rgb(path: str | Path) -> Tensor:
    """An image file as uint8 RGB ``(3, h, w)``, decoded by ``lib.images.load_rgb`` (EXIF
    orientation applied, alpha over white, 16-bit scaled; ``ImageError`` naming why not)."""
    rgb = np.require(load_rgb(path, max_pixels=MAX_PIXELS), requirements="W")  # (h, w, 3), a writable copy if needed
    return torch.from_numpy(rgb).permute(2, 0, 1)  # (3, h, w)


def resize_square(img: Tensor, size: int) -> Tensor:
    """Resize the short side to ``size`` (antialiased), then centre-crop to ``size x size``."""
    from torchvision.transforms.v2 import functional as TF  # here: importing torchvision costs ~3 s, paid only when resizing

    if min(img.shape[-2:]) != size:
        img = TF.resize(img, [size], antialias=True)  # (3, size, >=size) or (3, >=size, size)
    if img.shape[-2] != size or img.shape[-1] != size:
        img = TF.center_crop(img, [size, size])  # (3, size, size)
    return img


def check_face(path: str | Path) -> tuple[Tensor | None, str]:
    """Decode a file and check it can serve as a training face: ``(rgb (3, h, w) uint8, "")``
    or ``(None, reason)``.

    The header is read first (PIL reads no pixels for it): an image with a side below
    ``MIN_SIDE`` pixels (a 1x1 image) is refused undecoded, one above ``lib.images.MAX_PIXELS``
    too (by ``load_rgb``). Then the decode finds empty, unreadable and truncated files. Last,
    a grayscale photo (mean chroma of a 16x16 thumbnail below ``GRAYSCALE_CHROMA`` Lab units,
    even when stored as RGB) has no colour to learn or measure. Taught in ``05_training_unet``.
    """
    try:
        with Image.open(path) as im:
            w, h = im.size
        if min(w, h) < MIN_SIDE:
            return None, f"too small: {w}x{h}, a face needs at least {MIN_SIDE} px a side"
    except Exception:  # noqa: BLE001: no header: load_rgb says why in its own words
        pass
    try:
        rgb = decode_rgb(path)  # (3, h, w) uint8
    except ImageError as e:  # "<path> is truncated (...)" -> "truncated (...)"
        return None, str(e).removeprefix(f"{path} ").removeprefix("is ")
    thumb = F.adaptive_avg_pool2d(rgb.float()[None] / 255.0, 16)  # (1, 3, 16, 16)
    chroma = float(rgb_to_lab(thumb)[0, 1:].square().sum(0).sqrt().mean())
    if chroma < GRAYSCALE_CHROMA:
        return None, f"grayscale: mean chroma {chroma:.2f}, no colour to learn from"
    return rgb, ""


@contextmanager
def _one_torch_thread():
    """One image's work on one torch thread (as in DataLoader workers), then torch's setting back:
    on 2 busy cores, 40-100 ms per 128x128 image on 2 threads, 1 ms on one (measured here)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def rgb_uint8_to_lab_norm(rgb: Tensor) -> tuple[Tensor, Tensor]:
    """uint8 RGB ``(..., 3, H, W)`` -> float32 ``(l_n (..., 1, H, W), ab_n (..., 2, H, W))``.

    A single image ``(3, H, W)`` is converted on one thread (see ``_one_torch_thread``).
    Taught in ``01_lab_color_space``.
    """
    with _one_torch_thread() if rgb.dim() == 3 else nullcontext():
        return rgb_to_lab_norm(rgb.float() / 255.0)


# --- the datasets ---------------------------------------------------------------------------
class _Faces(Dataset):
    """uint8 faces (``rgb_uint8(i)``) as ``(l_n (1, S, S), ab_n (2, S, S))`` items, flipped at random
    when ``flip`` (the training split)."""

    flip = False

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        rgb = self.rgb_uint8(i)  # (3, S, S) uint8
        if self.flip and torch.rand(()) < 0.5:
            rgb = rgb.flip(-1)
        return rgb_uint8_to_lab_norm(rgb)  # (1, S, S), (2, S, S)

    def _check_index(self, i: int) -> int:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} images")
        return i % len(self)


class FaceFolder(_Faces):
    """One split of a folder of face photos, prepared once into a uint8 array ``(N, 3, S, S)``.

    Files: ``.jpg .jpeg .png .webp`` anywhere under ``root`` (hidden ones left out), sorted
    by relative path; ``split`` keeps those that ``split_of`` assigns to it ("all": every
    file, for library use). Each is checked by ``check_face`` (skipped files are named with
    their reason in one ``DataWarning``), resized (short side, antialiased) and
    centre-cropped to ``image_size``. ``max_images`` keeps the first N usable files.
    ``cache=True`` writes the array to the cache folder (``lib.utils.cache_dir("faces")``),
    keyed by the split's files, sizes, mtimes and the size, and later runs map it from
    there; ``cache=False`` keeps it in memory only. ``flip`` (default: training split only)
    mirrors half of the items at random. A split may be empty. Taught in ``05_training_unet``.
    """

    def __init__(self, root: str | Path, split: str = "train", image_size: int = 64, flip: bool | None = None,
                 cache: bool = True, fractions: tuple[float, float, float] = FRACTIONS,
                 max_images: int | None = None, progress: bool = True):
        self.root = Path(root).expanduser().resolve()
        if not self.root.is_dir():
            raise DataError(f"{self.root} is not a folder (see data/README.md)")
        if split not in (*SPLITS, "all"):
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        _check_fractions(fractions)
        self.split, self.image_size, self.max_images = split, int(image_size), max_images
        self.flip = (split == "train") if flip is None else bool(flip)
        listed = list_image_files(self.root)[0]
        stamps = _stamps(self.root, [r for r in listed if split == "all" or split_of(r, fractions) == split])
        self.cache_key = _digest(f"v{_PREPARE_VERSION}", self.image_size, fractions, max_images, split,
                                 stamps=stamps)  # also keys caches derived from it (the mean face)
        self.names, self.skipped, self._path, self._images = self._prepare(stamps, cache, progress)
        if self.skipped:
            shown = [f"{r}: {why}" for r, why in self.skipped]
            warnings.warn(f"FaceFolder({str(self.root)!r}, split={split!r}): skipped {len(shown)} of "
                          f"{len(shown) + len(self.names)} image files checked; " + _name_some(shown),
                          DataWarning, stacklevel=2)

    def _prepare(self, stamps, cache: bool, progress: bool):
        """Load the prepared split, or check, decode and resize its files into one (atomically)."""
        folder = cache_dir("faces") if cache else None
        tag = f"{self.root.name}-{hashlib.sha1(str(self.root).encode()).hexdigest()[:8]}"
        stem = f"{tag}-{self.split}-{self.image_size}px-{self.cache_key}"
        if folder is not None:
            clean_stale_temp_files(folder)  # what a killed run left behind
            index, path = folder / f"{stem}.json", folder / f"{stem}.u8"
            try:
                meta = json.loads(index.read_text())
                if path.stat().st_size == len(meta["names"]) * 3 * self.image_size**2:
                    return meta["names"], [tuple(s) for s in meta["skipped"]], path, None
            except (OSError, ValueError, KeyError):
                pass  # not prepared yet (or half): prepare it
        names, skipped = [], []
        limit = len(stamps) if self.max_images is None else int(self.max_images)
        desc = f"preparing {self.root.name} {self.split} at {self.image_size}px"

        def write(f) -> None:
            for rel, size, _ in tqdm(stamps, desc=desc, unit="file", mininterval=1.0,
                                     disable=not progress or len(stamps) < 200):
                if len(names) >= limit:
                    break
                rgb, why = check_face(self.root / rel) if size >= 0 else (None, "cannot stat")
                if rgb is None:
                    skipped.append((rel, why))
                    continue
                with _one_torch_thread():
                    row = resize_square(rgb, self.image_size).numpy()  # (3, S, S) uint8
                f.write(row.tobytes())
                names.append(rel)

        if folder is None:
            write(buf := io.BytesIO())
            images = np.frombuffer(buf.getbuffer(), np.uint8).reshape(-1, 3, self.image_size, self.image_size)
            return names, skipped, None, images  # (N, 3, S, S), read-only
        atomic_write(path, write)  # readers see no file or the complete one, never half
        write_text_atomic(index, json.dumps({"root": str(self.root), "names": names, "skipped": skipped}))
        return names, skipped, path, None

    @property
    def images(self) -> np.ndarray:
        """The prepared uint8 images ``(N, 3, S, S)`` (a read-only memory map when cached)."""
        if self._images is None:
            shape = (len(self.names), 3, self.image_size, self.image_size)
            self._images = np.memmap(self._path, np.uint8, "r", shape=shape) if shape[0] else np.zeros(shape, np.uint8)
        return self._images

    @property
    def files(self) -> list[Path]:
        """Absolute paths of the usable files of this split, in dataset order."""
        return [self.root / r for r in self.names]

    @property
    def source(self) -> str:
        """One line naming the data, for figure titles and logs."""
        return f"{self.root.name} ({self.split} split, {len(self):,} images, {self.image_size}px)"

    def __len__(self) -> int:
        return len(self.names)

    def rgb_uint8(self, i: int) -> Tensor:
        """Image ``i`` as uint8 RGB ``(3, S, S)``, never flipped (figures, baselines)."""
        return torch.from_numpy(np.array(self.images[self._check_index(i)]))  # copied out of the map

    def __getstate__(self):
        state = self.__dict__.copy()
        if self._path is not None:
            state["_images"] = None  # each DataLoader worker maps the file itself
        return state


class ToyFaces(_Faces):
    """A generated **stand-in** for face photos, same items as ``FaceFolder``.

    ``num_images`` images per split; image ``i`` of ``split`` depends only on
    ``(seed, split, i)`` (drawn on demand by ``lib.toyfaces.render_toy_face``, nothing
    stored). ``flip`` (default: training split only) mirrors half of the items at random.
    ``open_splits`` uses it when no face folder is found: numbers measured on it say
    nothing about real faces. Taught in ``05_training_unet``.
    """

    cache_key = None  # nothing to cache: drawing is as fast as reading

    def __init__(self, num_images: int = 512, image_size: int = 128, split: str = "train", seed: int = 0,
                 flip: bool | None = None):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        assert num_images > 0, f"num_images must be positive, got {num_images}"
        assert image_size >= 16, f"image_size must be at least 16, got {image_size}"
        self.num_images, self.image_size, self.split, self.seed = int(num_images), int(image_size), split, int(seed)
        self.flip = (split == "train") if flip is None else bool(flip)

    @property
    def source(self) -> str:
        """One line naming the data, for figure titles and logs."""
        return f"ToyFaces, a generated stand-in for face photos ({self.split}, {len(self)} images, seed {self.seed})"

    def __len__(self) -> int:
        return self.num_images

    def rgb_uint8(self, i: int) -> Tensor:
        """Image ``i`` as uint8 RGB ``(3, S, S)``, never flipped."""
        rng = np.random.default_rng([self.seed, SPLITS.index(self.split), self._check_index(i)])
        return torch.from_numpy(render_toy_face(rng, self.image_size))  # (3, S, S) uint8


def _name_some(names: list[str], limit: int = 10) -> str:
    shown = "; ".join(names[:limit])
    return shown + (f", ... and {len(names) - limit} more" if len(names) > limit else "")


# --- where the data come from ----------------------------------------------------------------
@dataclass
class DataSource:
    """What a run was trained on, stored in its checkpoint: a face folder or ToyFaces."""

    kind: str  # "folder" | "toy"
    root: str | None = None  # absolute path of the folder (None for ToyFaces)
    fingerprint: str | None = None  # folder_fingerprint(root) when opened (None for ToyFaces)
    counts: dict[str, int] = field(default_factory=dict)  # images per split opened

    def describe(self) -> str:
        """One line: "celebahq-5k at /abs/path: 4,484 train / 248 val / 260 test images"."""
        if self.kind == "toy":
            return "ToyFaces (generated stand-in faces, not real photos)"
        counts = " / ".join(f"{n:,} {sp}" for sp, n in self.counts.items())
        return f"{Path(self.root).name} at {self.root}: {counts} images"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DataSource:
        return cls(kind=d["kind"], root=d.get("root"), fingerprint=d.get("fingerprint"),
                   counts=dict(d.get("counts") or {}))


def resolve_data_root(root: str | Path | None = None) -> Path | None:
    """The face folder to use: ``root`` if given, else ``$CELEBAHQ_DIR``, else
    ``data/celeba_hq/`` in the repository when it holds files, else None (use ToyFaces).

    A path given explicitly (argument or variable) that is not a folder is an error
    (``FileNotFoundError``), not a silent fall-back to toy data.
    """
    for given, what in ((root, "data_root"), (os.environ.get("CELEBAHQ_DIR") or None, "$CELEBAHQ_DIR")):
        if given is not None:
            path = Path(given).expanduser()
            if not path.is_dir():
                raise FileNotFoundError(f"{what} = {str(given)!r} is not a folder (see data/README.md)")
            return path
    default = REPO_ROOT / "data" / "celeba_hq"
    return default if default.is_dir() and any(default.iterdir()) else None


def _toy_count(split: str, toy_images: int, max_images: int | None) -> int:
    n = toy_images if split == "train" else max(16, toy_images // 8)
    return n if max_images is None else min(n, max_images)


def open_splits(data_root: str | Path | None = None, dataset: str = "auto", image_size: int = 64,
                splits: tuple[str, ...] = SPLITS, *, max_images: int | None = None, toy_images: int = 512,
                cache: bool = True, seed: int = 0, progress: bool = True) -> tuple[dict[str, Dataset], DataSource]:
    """The datasets of ``splits`` and where they come from: ``({split: dataset}, DataSource)``.

    The one place the folder-or-ToyFaces decision is made. ``data_root`` None looks at
    ``$CELEBAHQ_DIR``, then ``data/celeba_hq/``; with none found ``dataset="auto"`` uses
    ``ToyFaces`` (said in one line), ``dataset="folder"`` is a ``DataError``;
    ``dataset="toy"`` always uses ToyFaces (``toy_images`` in train, an eighth, at least 16,
    in val and test; ``seed`` draws them). A split may be empty (callers decide); a folder
    with no usable image in any of ``splits`` is a ``DataError`` naming the folder and what
    was found. Items: ``(l_n (1, S, S), ab_n (2, S, S))`` float32; the train split flips.
    Taught in ``05_training_unet``.
    """
    if dataset not in ("auto", "folder", "toy"):
        raise ConfigError(f"option 'dataset' must be one of auto, folder, toy; got {dataset!r}")
    unknown = [s for s in splits if s not in SPLITS]
    if unknown or not splits:
        raise ConfigError(f"splits must be some of {', '.join(SPLITS)}; got {tuple(splits)!r}")
    root = None
    if dataset != "toy":
        try:
            root = resolve_data_root(data_root)
        except FileNotFoundError as e:
            raise DataError(f"{e}: pass an existing folder of face photos as data_root") from None
        if root is None and dataset == "folder":
            raise DataError("option 'dataset' is 'folder' but no face folder was found (data_root, $CELEBAHQ_DIR, "
                            "data/celeba_hq/): set data_root to a folder of face photos, or use dataset=toy or auto")
    if root is None:
        if dataset == "auto":
            print("[data] no face folder (data_root, $CELEBAHQ_DIR or data/celeba_hq/): using ToyFaces, generated "
                  "stand-in faces; numbers on them say nothing about real faces (see data/README.md)")
        sets = {sp: ToyFaces(_toy_count(sp, toy_images, max_images), image_size, sp, seed) for sp in splits}
        return sets, DataSource("toy", counts={sp: len(ds) for sp, ds in sets.items()})
    root = root.resolve()
    sets = {sp: FaceFolder(root, sp, image_size, cache=cache, max_images=max_images, progress=progress)
            for sp in splits}
    if not any(len(ds) for ds in sets.values()):
        raise DataError(_nothing_usable(root, sets))
    return sets, DataSource("folder", str(root), folder_fingerprint(root), {sp: len(ds) for sp, ds in sets.items()})


def _nothing_usable(root: Path, sets: dict[str, FaceFolder]) -> str:
    listed, others = list_image_files(root)
    why = Counter(reason.split(":")[0] for ds in sets.values() for _, reason in ds.skipped)
    found = ", ".join(f"{n} {w}" for w, n in why.most_common()) or "none skipped"
    other = ", ".join(f"{n} {ext}" for ext, n in others.most_common(5)) or "none"
    msg = (f"no usable image in {root} for the {'/'.join(sets)} split(s): {len(listed)} files with an image "
           f"extension {IMAGE_EXTENSIONS} ({found}); other files: {other}.")
    if listed and not why:
        msg += (" Splits are a hash of each file's path (90/5/5 %), so a folder of a few images can leave a"
                " split empty: add images (val and test each get about 5 % of them).")
    return msg


def reopen_splits(source: dict, image_size: int, splits: tuple[str, ...] = SPLITS, **kwargs
                  ) -> tuple[dict[str, Dataset], DataSource]:
    """Open the splits a checkpoint was trained on, from its ``DataSource.to_dict()``.

    A folder that is gone is a ``DataError`` (evaluating on other data must be asked for:
    ``--data-root DIR``); a folder whose files changed since is opened with a
    ``DataWarning``. ``kwargs`` as for ``open_splits`` (``toy_images``, ``seed`` for ToyFaces).
    """
    src = DataSource.from_dict(source)
    if src.kind == "toy":
        return open_splits(None, "toy", image_size, splits, **kwargs)
    if not src.root or not Path(src.root).is_dir():
        raise DataError(f"the checkpoint was trained on the face folder {src.root}, which is not there now: "
                        "restore it, or evaluate on another folder with --data-root DIR (said in the report)")
    old_key = src.fingerprint is not None and not src.fingerprint.startswith(FINGERPRINT_PREFIX)
    if src.fingerprint is not None and folder_fingerprint(src.root, mtimes=old_key) != src.fingerprint:
        warnings.warn(f"{src.root}: its image files changed since the checkpoint was trained "
                      f"({src.describe()} then)", DataWarning, stacklevel=2)
    return open_splits(src.root, "folder", image_size, splits, **kwargs)


def check_splits(datasets: dict, batch_size: int, test_at_end: bool = True) -> None:
    """Refuse splits a training run cannot use, with the fix: a train split smaller than one
    batch, an empty val split (it picks best.pt), an empty test split when the run ends on it."""
    train = datasets["train"]
    if len(train) < batch_size:
        raise DataError(f"the train split has {len(train)} images, fewer than option 'batch_size' "
                        f"({batch_size}): lower batch_size, or use a folder with more images")
    for split, why in (("val", "it picks best.pt"), ("test", "test_at_end=true evaluates on it")):
        if (split == "val" or test_at_end) and not len(datasets.get(split) or ()):
            raise DataError(f"the {split} split is empty ({why}): use a folder with more images"
                            + (", or set test_at_end=false" if split == "test" else ""))


def training_loaders(datasets: dict, batch_size: int, eval_batch_size: int, rank: int = 0, world_size: int = 1,
                     seed: int = 0, **loader_kw) -> dict[str, DataLoader]:
    """The loaders of one training process: ``train`` gives this rank's share of every epoch in
    an order fixed by ``(seed, epoch)`` (its sampler: ``lib.runtime.EpochSampler``), in whole
    batches of ``batch_size``; every other non-empty split gets one that reads every
    ``world_size``-th image from ``rank`` on, in order. Taught in ``05_training_unet``."""
    kw = dict(worker_init_fn=worker_init, **loader_kw)
    train = datasets["train"]
    sampler = EpochSampler(train, world_size, rank, shuffle=True, seed=seed)
    loaders = {"train": DataLoader(train, batch_size=batch_size, sampler=sampler, drop_last=True,
                                   generator=torch.Generator(), **kw)}
    for split, ds in datasets.items():
        if split != "train" and len(ds):
            loaders[split] = DataLoader(ds, batch_size=eval_batch_size, sampler=range(rank, len(ds), world_size), **kw)
    return loaders
