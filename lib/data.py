"""Face photos in, normalised ``(L, ab)`` tensors out: folders, splits, bad files, a cache.

Taught in ``notebooks/02_data.ipynb``.

The way from an image file to the model's input and target::

    file --decode_rgb--> uint8 (3, h, w) --resize_square--> uint8 (3, S, S)
         --[random flip, train only]--> rgb_to_lab_norm --> L_n (1, S, S), ab_n (2, S, S)

* ``FaceFolder``: any folder of face photos (CelebA-HQ in this project), recursive.
  Files are indexed once when the dataset is built: broken files and grayscale photos
  are found then, skipped, and reported in one warning, so nothing fails mid-epoch.
* ``split_of``: the train / val / test split is a stable hash of each file's relative
  path, so it is the same on every machine, whatever the order of the listing.
* ``cache=True`` keeps the resized uint8 images in one memory-mapped ``.npy`` per split
  and size (under ``~/.cache/facecolor`` or ``$FACECOLOR_CACHE``): later epochs decode
  no JPEG at all.
* ``ToyFaces`` (from ``lib/toyfaces.py``): a generated *stand-in* for face photos, used
  when no CelebA-HQ folder is available; ``make_dataset`` chooses between the two.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import unicodedata
import warnings
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.io import ImageReadMode, decode_image, read_file
from torchvision.transforms.v2 import functional as TF
from tqdm.auto import tqdm

from lib.color import rgb_to_lab, rgb_to_lab_norm
from lib.toyfaces import ToyFaces

# torchvision 0.29 marks its image decoders deprecated (in favour of TorchCodec) but they are
# what this project pins and uses; say it once here instead of on every decode.
warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision",
                        category=DeprecationWarning)

__all__ = [
    "IMAGE_EXTENSIONS",
    "SPLITS",
    "GRAYSCALE_CHROMA",
    "DataWarning",
    "NoUsableImageError",
    "FaceFolder",
    "ToyFaces",
    "split_of",
    "list_image_files",
    "probe_image",
    "decode_rgb",
    "resize_square",
    "rgb_uint8_to_lab_norm",
    "cache_dir",
    "resolve_data_root",
    "make_dataset",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")  # matched case-insensitively
SPLITS = ("train", "val", "test")
GRAYSCALE_CHROMA = 2.0  # mean chroma sqrt(a^2 + b^2) below this (Lab units): a grayscale photo
_PROBE_SIZE = 64  # the probe decodes JPEGs at a reduced scale, at least this many pixels a side
_CACHE_VERSION = 1  # bump when the cached pixels would change (resize method, ...)
REPO_ROOT = Path(__file__).resolve().parents[1]


class DataWarning(UserWarning):
    """Files skipped while indexing, or replaced while loading."""


class NoUsableImageError(RuntimeError):
    """A folder (or one of its splits) holds no image the dataset can use."""


# --- splits ----------------------------------------------------------------------------
def split_of(relpath: str, fractions: tuple[float, float, float] = (0.9, 0.05, 0.05)) -> str:
    """The split ("train" | "val" | "test") of a file, from a stable hash of its relative path.

    The path is taken relative to the dataset root, with "/" separators and Unicode NFC
    (macOS writes names decomposed), so the answer is the same on every machine and does
    not depend on where the folder lives or the order in which files are listed. SHA-1's
    first 8 bytes give a number u uniform in [0, 1): train if u < f_train, val if
    u < f_train + f_val, else test. Taught in ``02_data``.
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


# --- listing and probing ----------------------------------------------------------------
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


def _pil_to_rgb_array(im: Image.Image) -> np.ndarray:
    """Any PIL image (RGBA, CMYK, palette, 16-bit, ...) -> uint8 (h, w, 3) RGB."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16-bit or 32-bit grey: scale, do not clip
        a = np.asarray(im, dtype=np.float64)
        scale = 65535.0 if im.mode.startswith("I;16") or a.max() > 255 else 255.0
        a = np.clip(a / scale * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(a[..., None], 3, axis=2)
    return np.asarray(im.convert("RGB"))  # drops alpha; converts CMYK, palette, L, LA


def _probe_pixels(path: str | Path) -> tuple[str, str, np.ndarray | None]:
    """Decode cheaply: ("ok", "", 16x16 uint8 RGB thumbnail) or ("bad", reason, None)."""
    try:
        with Image.open(path) as im:
            im.draft("RGB", (_PROBE_SIZE, _PROBE_SIZE))  # only JPEG decoders act on this
            im.load()  # reads the whole file: a truncated one fails here
            rgb = _pil_to_rgb_array(im)  # (h, w, 3) uint8
    except Image.UnidentifiedImageError:
        return "bad", "not an image", None
    except Exception as e:  # truncated, unreadable, unsupported: all reasons to skip the file
        return "bad", "truncated" if "truncated" in str(e) else f"{type(e).__name__}: {e}", None
    thumb = np.asarray(Image.fromarray(rgb).resize((16, 16), Image.Resampling.BOX))  # (16, 16, 3)
    return "ok", "", thumb


def _grayscale_verdicts(thumbs: list[np.ndarray]) -> list[tuple[str, str]]:
    """Mean chroma sqrt(a^2 + b^2) of each thumbnail, in one batched Lab conversion."""
    x = torch.from_numpy(np.stack(thumbs)).permute(0, 3, 1, 2).float() / 255.0  # (N, 3, 16, 16)
    chroma = rgb_to_lab(x)[:, 1:].square().sum(1).sqrt().mean((1, 2))  # (N,)
    return [("grayscale" if c < GRAYSCALE_CHROMA else "ok", f"mean chroma {c:.2f}") for c in chroma.tolist()]


def probe_image(path: str | Path) -> tuple[str, str]:
    """Check a file cheaply: ``("ok" | "grayscale" | "bad", detail)``.

    PIL reads the header and decodes the pixels, JPEGs at 1/2 to 1/8 scale (``draft``:
    several times faster than a full decode of a large image), which still reads the whole
    file and so finds truncated ones. Grayscale means a mean chroma below
    ``GRAYSCALE_CHROMA`` Lab units (a black-and-white photo, even one stored as RGB).
    Taught in ``02_data``.
    """
    status, detail, thumb = _probe_pixels(path)
    return (status, detail) if thumb is None else _grayscale_verdicts([thumb])[0]


def cache_dir() -> Path:
    """Where caches go: ``$FACECOLOR_CACHE`` if set, else ``~/.cache/facecolor``."""
    return Path(os.environ.get("FACECOLOR_CACHE") or Path.home() / ".cache" / "facecolor").expanduser()


def _root_tag(root: Path) -> str:
    return f"{root.name}-{hashlib.sha1(str(root).encode()).hexdigest()[:8]}"


def _atomic_write_json(path: Path, obj) -> None:
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj))
    os.replace(tmp, path)


def _probe_all(root: Path, relpaths: list[str], stats: dict[str, os.stat_result]) -> dict[str, tuple[str, str]]:
    """``probe_image`` for each file, remembered in a JSON file keyed by (size, mtime)."""
    store = cache_dir() / f"probe-{_root_tag(root)}.json"
    try:
        known = json.loads(store.read_text())
    except (OSError, ValueError):
        known = {}
    results, todo = {}, []
    for rel in relpaths:
        st = stats.get(rel)
        hit = known.get(rel)
        if st is None:
            results[rel] = ("bad", "cannot stat (broken link or no permission)")
        elif hit is not None and hit[:2] == [st.st_size, st.st_mtime_ns]:
            results[rel] = (hit[2], hit[3])
        else:
            todo.append(rel)
    decoded = []  # (relpath, thumbnail) of the files that decoded
    for rel in tqdm(todo, desc=f"indexing {root.name}", unit="file", disable=len(todo) < 500, mininterval=1.0):
        status, detail, thumb = _probe_pixels(root / rel)
        if thumb is None:
            results[rel] = (status, detail)
        else:
            decoded.append((rel, thumb))
    if decoded:
        for (rel, _), verdict in zip(decoded, _grayscale_verdicts([t for _, t in decoded])):
            results[rel] = verdict
    for rel in todo:
        known[rel] = [stats[rel].st_size, stats[rel].st_mtime_ns, *results[rel]]
    if todo:
        try:
            store.parent.mkdir(parents=True, exist_ok=True)
            _atomic_write_json(store, known)
        except OSError:
            pass  # a read-only cache folder only costs the next indexing some time
    return results


def _stat_all(root: Path, relpaths: list[str]) -> dict[str, os.stat_result]:
    stats = {}
    for rel in relpaths:
        try:
            stats[rel] = (root / rel).stat()
        except OSError:
            pass
    return stats


# --- decoding ---------------------------------------------------------------------------
def decode_rgb(path: str | Path) -> Tensor:
    """Decode an image file to uint8 RGB ``(3, h, w)``, EXIF orientation applied.

    ``torchvision.io`` (libjpeg-turbo / libpng / libwebp) first; it also converts
    grayscale, palette, RGBA (alpha dropped) and CMYK, and 16-bit PNGs are scaled to 8
    bits. Whatever it cannot decode goes through PIL, which gives the same pixels.
    Taught in ``02_data``.
    """
    try:
        img = decode_image(read_file(str(path)), mode=ImageReadMode.RGB, apply_exif_orientation=True)
    except RuntimeError:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            return torch.from_numpy(_pil_to_rgb_array(im).copy()).permute(2, 0, 1).contiguous()  # (3, h, w)
    if img.dtype == torch.uint16:  # 16-bit PNG: round(x * 255 / 65535)
        img = ((img.to(torch.int32) * 255 + 32767) // 65535).to(torch.uint8)
    return img  # (3, h, w) uint8


def resize_square(img: Tensor, size: int) -> Tensor:
    """Resize the short side to ``size`` (antialiased), then centre-crop to ``size x size``."""
    if min(img.shape[-2:]) != size:
        img = TF.resize(img, [size], antialias=True)  # (3, size, >=size) or (3, >=size, size)
    if img.shape[-2] != size or img.shape[-1] != size:
        img = TF.center_crop(img, [size, size])  # (3, size, size)
    return img


@contextmanager
def _one_torch_thread():
    """Run a small tensor computation on one thread, then restore torch's setting.

    One 128x128 image is too small to gain from torch's intra-op threads, and on a busy
    machine waiting for them costs far more than the work (measured here on 2 shared
    cores: 40-100 ms per image on 2 threads, 1 ms on one). DataLoader workers already run
    on one thread; this gives ``num_workers=0`` the same.
    """
    n = torch.get_num_threads()
    if n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def rgb_uint8_to_lab_norm(rgb: Tensor) -> tuple[Tensor, Tensor]:
    """uint8 RGB ``(..., 3, H, W)`` -> float32 ``(L_n (..., 1, H, W), ab_n (..., 2, H, W))``.

    A single image ``(3, H, W)`` is converted on one thread (see ``_one_torch_thread``).
    """
    if rgb.dim() > 3:
        return rgb_to_lab_norm(rgb.float() / 255.0)
    with _one_torch_thread():
        return rgb_to_lab_norm(rgb.float() / 255.0)


# --- the dataset --------------------------------------------------------------------------
class FaceFolder(Dataset):
    """A folder of face photos as ``(L_n (1, S, S), ab_n (2, S, S))`` float32 pairs.

    Files: ``.jpg .jpeg .png .webp`` anywhere under ``root`` (hidden ones left out), sorted
    by relative path; ``split`` keeps those that ``split_of`` assigns to it ("all": every
    file). Indexing probes each file (``probe_image``; results remembered between runs):
    unreadable, truncated and non-image files, and grayscale photos (nothing to learn or
    measure colour on: left out of every split), are skipped and reported in one
    ``DataWarning``. ``max_images`` keeps the first N usable files of the split.
    Images are resized (short side, antialiased) and centre-cropped to ``image_size``;
    ``flip`` (default: training split only) mirrors half of them at random.
    ``cache=True``: resized uint8 images kept in a memory-mapped file, built once per
    split, size and folder state (a tqdm bar shows it), so later epochs decode nothing.
    Taught in ``02_data``.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        image_size: int = 128,
        flip: bool | None = None,
        cache: bool = False,
        fractions: tuple[float, float, float] = (0.9, 0.05, 0.05),
        max_images: int | None = None,
    ):
        self.root = Path(root).expanduser().resolve()
        if not self.root.is_dir():
            raise FileNotFoundError(f"FaceFolder: {self.root} is not a folder")
        if split not in (*SPLITS, "all"):
            raise ValueError(f"split must be one of {SPLITS + ('all',)}, got {split!r}")
        _check_fractions(fractions)
        assert image_size >= 8, f"image_size {image_size} is too small"
        self.split, self.image_size, self.fractions = split, int(image_size), tuple(fractions)
        self.flip = (split == "train") if flip is None else bool(flip)

        listed, others = list_image_files(self.root)
        in_split = [r for r in listed if split == "all" or split_of(r, fractions) == split]
        # probe the files in order; with max_images, stop once enough usable ones are found
        stats, probes = {}, {}
        first = len(in_split) if max_images is None else max(256, 2 * int(max_images))
        for chunk in (in_split[:first], in_split[first:]):
            enough = max_images is not None and sum(v[0] == "ok" for v in probes.values()) >= max_images
            if chunk and not enough:
                stats.update(_stat_all(self.root, chunk))
                probes.update(_probe_all(self.root, chunk, stats))
        checked = in_split[: len(probes)]
        usable = [r for r in checked if probes[r][0] == "ok"]
        self._report_skipped(checked, probes)
        if not usable:
            raise NoUsableImageError(self._nothing_usable_message(listed, in_split, probes, others))
        self.max_images = max_images
        self.relpaths = usable if max_images is None else usable[: int(max_images)]
        self._stamps = [(stats[r].st_size, stats[r].st_mtime_ns) for r in self.relpaths]
        self._mm = None  # the opened memmap (per process; not pickled to DataLoader workers)
        self._warned_load = False
        self.cache_path = None  # set by _build_cache: then items come from the memmap
        if cache:
            self.cache_path = self._build_cache()

    # -- public ---------------------------------------------------------------------------
    @property
    def files(self) -> list[Path]:
        """Absolute paths of the usable files of this split, in dataset order."""
        return [self.root / r for r in self.relpaths]

    @property
    def source(self) -> str:
        """One line naming the data, for figure titles and logs."""
        return f"{self.root.name} ({self.split} split, {len(self):,} images, {self.image_size}px)"

    def __len__(self) -> int:
        return len(self.relpaths)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        rgb = self._load(i)  # (3, S, S) uint8
        if self.flip and torch.rand(()) < 0.5:
            rgb = rgb.flip(-1)
        return rgb_uint8_to_lab_norm(rgb)  # (1, S, S), (2, S, S)

    def rgb_uint8(self, i: int) -> Tensor:
        """Image ``i`` as uint8 RGB ``(3, S, S)``, never flipped (figures, baselines)."""
        return self._load(i)

    # -- loading ---------------------------------------------------------------------------
    def _decode_one(self, i: int) -> Tensor:
        with _one_torch_thread():
            return resize_square(decode_rgb(self.root / self.relpaths[i]), self.image_size)  # (3, S, S)

    def _load(self, i: int) -> Tensor:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} images")
        if self.cache_path is not None:
            if self._mm is None:
                self._mm = np.load(self.cache_path, mmap_mode="r")
            return torch.from_numpy(np.array(self._mm[i]))  # (3, S, S) uint8, copied out of the map
        for attempt in range(len(self)):  # a file that broke after indexing: use the next one
            j = (i + attempt) % len(self)
            try:
                return self._decode_one(j)
            except Exception as e:
                if not self._warned_load:
                    warnings.warn(
                        f"FaceFolder: could not decode {self.relpaths[j]} ({type(e).__name__}: {e}); "
                        "using the next image instead (warned once)",
                        DataWarning,
                        stacklevel=2,
                    )
                    self._warned_load = True
        raise NoUsableImageError(f"FaceFolder: none of the {len(self)} files of {self.root} can be decoded now")

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_mm"] = None  # each DataLoader worker opens its own map
        return state

    def fingerprint(self) -> str:
        """A key that changes whenever the pixels this dataset yields could change: the
        folder, the split's files with their sizes and modification times, the image size.
        Caches derived from the dataset (the uint8 cache, the mean face) are keyed by it."""
        return f"{_root_tag(self.root)}-{self.split}-{self.image_size}px-{self._cache_key()}"

    # -- the cache -------------------------------------------------------------------------
    def _cache_key(self) -> str:
        h = hashlib.sha256(f"facecolor v{_CACHE_VERSION} {self.image_size}px\n".encode())
        for rel, (size, mtime) in zip(self.relpaths, self._stamps):
            h.update(f"{rel}\t{size}\t{mtime}\n".encode())
        return h.hexdigest()[:16]

    def _build_cache(self) -> Path:
        """Load the cache that matches the folder's current state, or build it (atomically)."""
        folder = cache_dir()
        path = folder / f"{self.fingerprint()}.npy"
        if path.exists():
            mm = np.load(path, mmap_mode="r")
            if mm.shape == (len(self), 3, self.image_size, self.image_size):
                return path
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
        shape = (len(self), 3, self.image_size, self.image_size)
        try:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)  # (N, 3, S, S)
            desc = f"caching {self.root.name} {self.split} at {self.image_size}px"
            for i in tqdm(range(len(self)), desc=desc, unit="img", mininterval=1.0):
                out[i] = self._load(i).numpy()  # a file failing here is replaced by the next (warned)
            out.flush()
            del out
            os.replace(tmp, path)  # readers see the old state or the complete new file, never half
        finally:
            tmp.unlink(missing_ok=True)
        return path

    # -- messages --------------------------------------------------------------------------
    def _report_skipped(self, checked: list[str], probes: dict[str, tuple[str, str]]) -> None:
        bad = [(r, probes[r][1]) for r in checked if probes[r][0] == "bad"]
        grey = [r for r in checked if probes[r][0] == "grayscale"]
        if not bad and not grey:
            return
        parts = []
        if bad:
            parts.append(f"{len(bad)} unreadable: " + _name_some([f"{r} ({why})" for r, why in bad]))
        if grey:
            parts.append(f"{len(grey)} grayscale (no colour to learn from): " + _name_some(grey))
        warnings.warn(
            f"FaceFolder({str(self.root)!r}, split={self.split!r}): skipped {len(bad) + len(grey)} of "
            f"{len(checked)} image files; " + "; ".join(parts),
            DataWarning,
            stacklevel=3,
        )

    def _nothing_usable_message(self, listed, in_split, probes, others: Counter) -> str:
        found = Counter(v[0] for v in probes.values())
        other = ", ".join(f"{n} {ext}" for ext, n in others.most_common(5)) or "none"
        msg = (
            f"no usable image in {self.root} (split={self.split!r}): found {len(listed)} files with an image "
            f"extension {IMAGE_EXTENSIONS}, {len(in_split)} of them in this split "
            f"({found['bad']} unreadable, {found['grayscale']} grayscale); other files: {other}."
        )
        if listed and not in_split:
            msg += " The split is a hash of each path, so a tiny folder can leave a split empty: try split='all'."
        return msg


def _name_some(names: list[str], limit: int = 10) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... and {len(names) - limit} more" if len(names) > limit else "")


# --- where the data comes from --------------------------------------------------------------
def resolve_data_root(root: str | Path | None = None) -> Path | None:
    """The CelebA-HQ folder to use: ``root`` if given, else ``$CELEBAHQ_DIR``, else
    ``data/celeba_hq/`` in the repository when it exists, else None (use ToyFaces).

    A path given explicitly (argument or variable) that is not a folder is an error, not
    a silent fall-back to toy data. Taught in ``02_data``.
    """
    for given, what in ((root, "root"), (os.environ.get("CELEBAHQ_DIR") or None, "$CELEBAHQ_DIR")):
        if given is not None:
            path = Path(given).expanduser()
            if not path.is_dir():
                raise FileNotFoundError(f"{what} = {str(given)!r} is not a folder (see data/README.md)")
            return path
    default = REPO_ROOT / "data" / "celeba_hq"
    return default if default.is_dir() and any(default.iterdir()) else None


def make_dataset(root: str | Path | None = None, split: str = "train", image_size: int = 128, **kw):
    """``FaceFolder`` on the folder ``resolve_data_root`` finds, else ``ToyFaces`` with a notice.

    Keyword arguments go to whichever class is built, if it takes them (``max_images``
    becomes ToyFaces' ``num_images``). Taught in ``02_data``.
    """
    folder = resolve_data_root(root)
    cls = FaceFolder if folder is not None else ToyFaces
    if folder is None:
        print("[data] no CelebA-HQ folder (argument, $CELEBAHQ_DIR or data/celeba_hq/): using ToyFaces, "
              "generated stand-in faces; see data/README.md for the real data")
        if kw.get("max_images") is not None:
            kw.setdefault("num_images", kw["max_images"])
    known = set(inspect.signature(FaceFolder).parameters) | set(inspect.signature(ToyFaces).parameters)
    unknown = set(kw) - known
    if unknown:
        raise TypeError(f"make_dataset: unknown arguments {sorted(unknown)}")
    accepted = inspect.signature(cls).parameters
    kw = {k: v for k, v in kw.items() if k in accepted}
    if folder is not None:
        return FaceFolder(folder, split=split, image_size=image_size, **kw)
    return ToyFaces(split=split, image_size=image_size, **kw)
