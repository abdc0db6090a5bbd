"""Tests of ``lib.data`` (FaceFolder, splits, cache, data roots), ``lib.toyfaces`` and the data tour.

Odd files are made in ``tmp_path`` with PIL (and a hand-written 16-bit RGB PNG, which PIL
cannot write). Real-face tests use the ``celebahq_dir`` fixture and skip without it.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import random
import struct
import subprocess
import sys
import warnings
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

import lib.data as data
from lib.data import (
    DataWarning,
    FaceFolder,
    NoUsableImageError,
    ToyFaces,
    decode_rgb,
    make_dataset,
    probe_image,
    resolve_data_root,
    split_of,
)

S = 32  # image size for the synthetic-folder tests: small keeps them fast


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path_factory, monkeypatch):
    """Every test writes its caches under a temporary folder, never ~/.cache."""
    monkeypatch.setenv("FACECOLOR_CACHE", str(tmp_path_factory.getbasetemp() / "facecolor-cache"))


# --- making test images ---------------------------------------------------------------------
def _photo(h: int = 48, w: int = 48, seed: int = 0) -> np.ndarray:
    """A smooth, colourful uint8 (h, w, 3) image: survives JPEG with its colour intact."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    chans = [np.sin(rng.uniform(2, 6) * xx + rng.uniform(1, 5) * yy + rng.uniform(0, 6)) for _ in range(3)]
    return (127.5 + 110 * np.stack(chans, axis=-1)).astype(np.uint8)


def _write_png16(path: Path, rgb16: np.ndarray) -> None:
    """A 16-bit-per-channel RGB PNG, written by hand (PIL cannot write 48-bit RGB)."""
    h, w, _ = rgb16.shape
    raw = b"".join(b"\x00" + rgb16[i].astype(">u2").tobytes() for i in range(h))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)  # 16 bits, colour type 2 (RGB)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)


GOOD = ["a.jpg", "b.JPEG", "sub/deeper/c.jpg", "rgba.png", "rgb16.png", "cmyk.jpg", "palette.png", "photo.webp",
        "wide.jpg"]
BAD = ["truncated.jpg", "text.jpg"]
GREY = ["grey.jpg", "grey16.png"]


@pytest.fixture
def odd_folder(tmp_path) -> Path:
    """A folder with every kind of file the issue names, plus distractors."""
    root = tmp_path / "faces"
    (root / "sub" / "deeper").mkdir(parents=True)
    Image.fromarray(_photo(seed=1)).save(root / "a.jpg", quality=95)
    Image.fromarray(_photo(seed=2)).save(root / "b.JPEG", quality=95)
    Image.fromarray(_photo(seed=3)).save(root / "sub" / "deeper" / "c.jpg", quality=95)
    rgba = np.dstack([_photo(seed=4), np.full((48, 48), 100, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(root / "rgba.png")
    _write_png16(root / "rgb16.png", _photo(seed=5).astype(np.uint16) * 257)
    Image.fromarray(_photo(seed=6)).convert("CMYK").save(root / "cmyk.jpg", quality=95)
    Image.fromarray(_photo(seed=7)).convert("P", palette=Image.Palette.ADAPTIVE).save(root / "palette.png")
    Image.fromarray(_photo(seed=8)).save(root / "photo.webp", quality=95)
    Image.fromarray(_photo(40, 64, seed=9)).save(root / "wide.jpg", quality=95)
    full = (root / "a.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(full[: len(full) // 2])
    (root / "text.jpg").write_text("this is not a JPEG")
    Image.fromarray(_photo(seed=10)).convert("L").save(root / "grey.jpg")
    Image.fromarray(_photo(seed=11)[..., 0].astype(np.uint16) * 257).save(root / "grey16.png")  # mode I;16
    (root / "notes.txt").write_text("not an image, not counted")
    Image.fromarray(_photo(seed=12)).save(root / ".hidden.jpg")  # hidden: ignored
    return root


def _build(*args, **kw) -> tuple[FaceFolder, list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = FaceFolder(*args, **kw)
    return ds, [w for w in caught if issubclass(w.category, DataWarning)]


# --- bad input --------------------------------------------------------------------------
def test_odd_files_counted_and_warned_once(odd_folder):
    ds, warned = _build(odd_folder, split="all", image_size=S)
    assert sorted(ds.relpaths) == sorted(GOOD)
    assert ds.relpaths == sorted(ds.relpaths), "files must be in sorted order"
    assert len(warned) == 1, f"expected exactly one DataWarning, got {[str(w.message) for w in warned]}"
    msg = str(warned[0].message)
    n_listed = len(GOOD) + len(BAD) + len(GREY)
    assert f"skipped {len(BAD) + len(GREY)} of {n_listed} image files" in msg
    assert f"{len(BAD)} unreadable" in msg and f"{len(GREY)} grayscale" in msg
    for name in BAD + GREY:
        assert name in msg, f"{name} should be named in the warning: {msg}"
    assert "truncated.jpg (truncated)" in msg and "text.jpg (not an image)" in msg
    assert str(odd_folder) in msg
    assert ".hidden" not in msg and "notes.txt" not in msg
    assert probe_image(odd_folder / "text.jpg") == ("bad", "not an image")
    assert probe_image(odd_folder / "grey16.png")[0] == "grayscale" and probe_image(odd_folder / "cmyk.jpg")[0] == "ok"


def test_odd_files_items(odd_folder):
    ds, _ = _build(odd_folder, split="all", image_size=S)
    for i in range(len(ds)):
        l_n, ab_n = ds[i]
        assert l_n.shape == (1, S, S) and ab_n.shape == (2, S, S), ds.relpaths[i]
        assert l_n.dtype == ab_n.dtype == torch.float32
        assert -1.0 <= l_n.min() and l_n.max() <= 1.0 + 1e-5 and ab_n.abs().max() < 1.0
        assert ab_n.abs().mean() > 0.02, f"{ds.relpaths[i]} lost its colour"
        rgb = ds.rgb_uint8(i)
        assert rgb.shape == (3, S, S) and rgb.dtype == torch.uint8
    assert len(list(ds)) == len(ds), "iterating the dataset must stop at its end"
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_conversions_match_the_source(odd_folder):
    """RGBA drops alpha, 16-bit scales to 8, palette and CMYK convert, as PIL would."""
    ref = {
        "rgba.png": _photo(seed=4),
        "rgb16.png": _photo(seed=5),
        "palette.png": np.asarray(Image.open(odd_folder / "palette.png").convert("RGB")),
    }
    for name, expected in ref.items():
        got = decode_rgb(odd_folder / name).permute(1, 2, 0).numpy()
        assert np.array_equal(got, expected), f"{name} decoded differently"
    cmyk = decode_rgb(odd_folder / "cmyk.jpg").permute(1, 2, 0).numpy().astype(int)
    assert np.abs(cmyk - _photo(seed=6)).mean() < 6, "CMYK JPEG colours should survive (up to JPEG loss)"
    grey16 = decode_rgb(odd_folder / "grey16.png")
    assert torch.equal(grey16[0], torch.from_numpy(_photo(seed=11)[..., 0])), "16-bit grey must scale, not clip"


def test_pil_fallback_gives_the_same_pixels(odd_folder, monkeypatch):
    names = ["a.jpg", "rgba.png", "rgb16.png", "cmyk.jpg", "palette.png", "photo.webp", "grey16.png"]
    fast = {n: decode_rgb(odd_folder / n) for n in names}

    def refuse(*args, **kw):
        raise RuntimeError("torchvision cannot decode this (simulated)")

    monkeypatch.setattr(data, "decode_image", refuse)
    for n in names:
        slow = decode_rgb(odd_folder / n)
        assert torch.equal(slow, fast[n]), f"PIL fallback differs from torchvision on {n}"


def test_exif_orientation_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    Image.fromarray(_photo(40, 64)).save(tmp_path / "rotated.jpg", exif=exif)
    assert decode_rgb(tmp_path / "rotated.jpg").shape == (3, 64, 40)


def test_non_square_resized_and_centre_cropped(tmp_path):
    img = np.zeros((40, 80, 3), np.uint8)
    img[:, :20] = (255, 0, 0)  # red strip on the left quarter: cropped away
    img[:, 20:60] = (0, 0, 255)  # blue centre: kept
    img[:, 60:] = (0, 255, 0)
    Image.fromarray(img).save(tmp_path / "wide.png")
    ds, _ = _build(tmp_path, split="all", image_size=20)
    rgb = ds.rgb_uint8(0)  # (3, 20, 20)
    assert rgb.shape == (3, 20, 20)
    assert (rgb[2, :, 2:-2] > 200).all() and (rgb[:2, :, 2:-2] < 60).all(), "the centre square should be blue"


def test_no_usable_image_error(tmp_path):
    root = tmp_path / "nothing-here"
    root.mkdir()
    (root / "text.jpg").write_text("not an image")
    Image.fromarray(_photo(seed=1)).convert("L").save(root / "grey.jpg")
    (root / "readme.txt").write_text("hello")
    with pytest.raises(NoUsableImageError) as err:
        _build(root, split="all", image_size=S)
    msg = str(err.value)
    assert str(root) in msg and "found 2 files" in msg and "1 unreadable" in msg and "1 grayscale" in msg
    assert "1 .txt" in msg
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(NoUsableImageError, match="found 0 files"):
        FaceFolder(empty, split="all")
    with pytest.raises(FileNotFoundError, match="not a folder"):
        FaceFolder(tmp_path / "missing")


def test_empty_split_of_tiny_folder_says_why(tmp_path):
    Image.fromarray(_photo()).save(tmp_path / "only.jpg")
    other = "val" if split_of("only.jpg") == "train" else "train"
    with pytest.raises(NoUsableImageError, match="split='all'"):
        FaceFolder(tmp_path, split=other)


def test_file_broken_after_indexing_does_not_crash_the_epoch(odd_folder):
    ds, _ = _build(odd_folder, split="all", image_size=S)
    i = ds.relpaths.index("a.jpg")
    (odd_folder / "a.jpg").write_bytes(b"broken after indexing")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        items = [ds[j] for j in range(len(ds))] + [ds[i]]  # the broken one twice: warned once
    warned = [w for w in caught if issubclass(w.category, DataWarning)]
    assert len(items) == len(ds) + 1
    assert len(warned) == 1 and "a.jpg" in str(warned[0].message)
    assert torch.equal(items[i][0], ds[i + 1][0]), "the next image stands in for the broken one"


# --- splits -------------------------------------------------------------------------------------
def _small_folder(root: Path, n: int = 60) -> Path:
    (root / "x").mkdir(parents=True)
    for i in range(n):
        sub = root / "x" if i % 3 == 0 else root
        Image.fromarray(_photo(16, 16, seed=i)).save(sub / f"img{i:03d}.png")
    return root


def _split_map(root: Path, **kw) -> dict[str, str]:
    return {rel: sp for sp in ("train", "val", "test")
            for rel in FaceFolder(root, split=sp, image_size=16, **kw).relpaths}


def test_split_stable_under_rename_and_shuffled_listing(tmp_path, monkeypatch):
    root = _small_folder(tmp_path / "before")
    first = _split_map(root, fractions=(0.5, 0.25, 0.25))
    assert len(first) == 60 and set(first.values()) == {"train", "val", "test"}, "splits must partition the folder"

    moved = root.rename(tmp_path / "renamed-parent")
    assert _split_map(moved, fractions=(0.5, 0.25, 0.25)) == first, "renaming the folder changed the split"

    real_walk = os.walk
    rng = random.Random(0)

    def shuffled_walk(top, *a, **kw):  # the OS may list files in any order
        entries = list(real_walk(top, *a, **kw))
        rng.shuffle(entries)
        for dirpath, dirnames, filenames in entries:
            rng.shuffle(filenames)
            yield dirpath, dirnames, filenames

    monkeypatch.setattr(data.os, "walk", shuffled_walk)
    shuffled = _split_map(moved, fractions=(0.5, 0.25, 0.25))
    assert shuffled == first, "the listing order changed the split"
    assert FaceFolder(moved, split="train", image_size=16, fractions=(0.5, 0.25, 0.25)).relpaths == sorted(
        r for r, sp in first.items() if sp == "train"
    )


def test_split_fractions_on_5k_names():
    names = [f"{i:05d}.jpg" for i in range(5000)]
    for fractions in [(0.9, 0.05, 0.05), (0.8, 0.1, 0.1), (0.5, 0.3, 0.2)]:
        counts = Counter(split_of(n, fractions) for n in names)
        for sp, f in zip(("train", "val", "test"), fractions):
            sigma = (5000 * f * (1 - f)) ** 0.5
            assert abs(counts[sp] - 5000 * f) < 4 * sigma, f"{sp}: {counts[sp]} of 5000 for fraction {f}"
    assert {split_of(n, (1.0, 0.0, 0.0)) for n in names[:200]} == {"train"}
    with pytest.raises(ValueError, match="summing to 1"):
        split_of("a.jpg", (0.9, 0.1, 0.1))


def test_split_independent_of_python_hash_seed_and_separators():
    names = [f"dir/{i}.jpg" for i in range(300)]
    code = "import sys; from lib.data import split_of; print(','.join(split_of(n) for n in sys.argv[1:]))"
    out = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONHASHSEED": "12345"}, cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip().split(",") == [split_of(n) for n in names]
    assert [split_of(n.replace("/", "\\")) for n in names] == [split_of(n) for n in names]


# --- the cache ------------------------------------------------------------------------------------
@pytest.fixture
def count_decodes(monkeypatch):
    calls = Counter()
    real = data.decode_rgb

    def counting(path):
        calls["decode"] += 1
        return real(path)

    monkeypatch.setattr(data, "decode_rgb", counting)
    return calls


def test_cache_built_once_reused_and_rebuilt(tmp_path, count_decodes):
    root = tmp_path / "cached"
    root.mkdir()
    for i in range(6):
        Image.fromarray(_photo(40, 48, seed=i)).save(root / f"{i}.jpg")

    plain = FaceFolder(root, split="all", image_size=S)
    for _ in DataLoader(plain, batch_size=4):
        pass
    assert count_decodes["decode"] == 6, "the decode path decodes every image every epoch"

    count_decodes.clear()
    ds = FaceFolder(root, split="all", image_size=S, cache=True)
    assert count_decodes["decode"] == 6 and ds.cache_path.exists(), "building the cache decodes each image once"
    for _epoch in range(2):
        for batch_l, batch_ab in DataLoader(ds, batch_size=4):
            assert batch_l.shape[1:] == (1, S, S) and batch_ab.shape[1:] == (2, S, S)
    assert count_decodes["decode"] == 6, "epochs on the cache must not decode"
    assert all(torch.equal(ds.rgb_uint8(i), plain.rgb_uint8(i)) for i in range(6)), "cache and decode path differ"
    count_decodes.clear()  # (the plain dataset just decoded again)

    again = FaceFolder(root, split="all", image_size=S, cache=True)
    assert again.cache_path == ds.cache_path and count_decodes["decode"] == 0, "an unchanged folder reuses the cache"
    assert FaceFolder(root, split="all", image_size=S + 8, cache=True).cache_path != ds.cache_path
    count_decodes.clear()

    Image.fromarray(_photo(40, 48, seed=99)).save(root / "new.jpg")
    grown = FaceFolder(root, split="all", image_size=S, cache=True)
    assert len(grown) == 7 and count_decodes["decode"] == 7, "adding a file rebuilds the cache"
    assert grown.cache_path != ds.cache_path

    count_decodes.clear()
    os.utime(root / "0.jpg", ns=(1, 1))  # a changed file (new mtime) also invalidates it
    assert FaceFolder(root, split="all", image_size=S, cache=True).cache_path != grown.cache_path
    assert count_decodes["decode"] == 7
    assert not list(Path(os.environ["FACECOLOR_CACHE"]).glob("*.tmp-*")), "temporary files left behind"


def test_cached_dataset_pickles_without_its_pixels(tmp_path):
    root = _small_folder(tmp_path / "p", n=12)
    ds = FaceFolder(root, split="all", image_size=S, cache=True)
    ds[0]  # opens the memmap
    blob = pickle.dumps(ds)
    assert len(blob) < 12 * 3 * S * S, "the memmap must not travel to DataLoader workers"
    clone = pickle.loads(blob)
    assert torch.equal(clone.rgb_uint8(5), ds.rgb_uint8(5))


def test_index_probe_remembered(tmp_path, monkeypatch):
    root = _small_folder(tmp_path / "q", n=9)
    FaceFolder(root, split="all", image_size=S)
    calls = Counter()
    real = data._probe_pixels
    monkeypatch.setattr(data, "_probe_pixels", lambda p: (calls.update([1]), real(p))[1])
    FaceFolder(root, split="all", image_size=S)
    assert sum(calls.values()) == 0, "unchanged files must not be probed again"
    Image.fromarray(_photo(16, 16, seed=50)).save(root / "extra.png")
    FaceFolder(root, split="all", image_size=S)
    assert sum(calls.values()) == 1, "only the new file is probed"


def test_max_images_stops_probing_early(tmp_path, monkeypatch):
    root = tmp_path / "many"
    root.mkdir()
    for i in range(300):
        Image.fromarray(_photo(8, 8, seed=i)).save(root / f"{i:03d}.png")
    calls = Counter()
    real = data._probe_pixels
    monkeypatch.setattr(data, "_probe_pixels", lambda p: (calls.update([1]), real(p))[1])
    ds = FaceFolder(root, split="all", image_size=8, max_images=5)
    assert ds.relpaths == [f"{i:03d}.png" for i in range(5)]
    assert sum(calls.values()) == 256, "with max_images=5 only the first chunk of files is probed"


# --- flips -----------------------------------------------------------------------------------------
def test_flip_only_for_training(tmp_path):
    root = _small_folder(tmp_path / "f", n=3)
    assert FaceFolder(root, split="all", image_size=S, flip=True).flip
    assert not FaceFolder(root, split="all", image_size=S).flip
    ds = FaceFolder(root, split="all", image_size=S, flip=True)
    torch.manual_seed(0)
    plain = ds.rgb_uint8(0)
    seen = {torch.equal(ds[0][0], data.rgb_uint8_to_lab_norm(plain)[0]) for _ in range(20)}
    assert seen == {True, False}, "flip=True should mirror some draws and not others"
    assert ToyFaces(8, 32, split="train").flip and not ToyFaces(8, 32, split="val").flip


# --- data roots ---------------------------------------------------------------------------------------
def test_resolve_data_root(tmp_path, monkeypatch):
    monkeypatch.delenv("CELEBAHQ_DIR", raising=False)
    monkeypatch.setattr(data, "REPO_ROOT", tmp_path / "repo")
    assert resolve_data_root() is None
    default = tmp_path / "repo" / "data" / "celeba_hq"
    default.mkdir(parents=True)
    assert resolve_data_root() is None, "an empty data/celeba_hq/ is not data"
    (default / "0.jpg").write_bytes(b"")
    assert resolve_data_root() == default
    env_dir = tmp_path / "env"
    env_dir.mkdir()
    monkeypatch.setenv("CELEBAHQ_DIR", str(env_dir))
    assert resolve_data_root() == env_dir
    assert resolve_data_root(tmp_path) == tmp_path, "an explicit path wins"
    with pytest.raises(FileNotFoundError, match="root"):
        resolve_data_root(tmp_path / "missing")
    monkeypatch.setenv("CELEBAHQ_DIR", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="CELEBAHQ_DIR"):
        resolve_data_root()


def test_make_dataset_falls_back_to_toyfaces(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("CELEBAHQ_DIR", raising=False)
    monkeypatch.setattr(data, "REPO_ROOT", tmp_path)
    ds = make_dataset(split="val", image_size=32, max_images=5, cache=True)
    assert isinstance(ds, ToyFaces) and len(ds) == 5 and ds.split == "val" and ds.image_size == 32
    out = capsys.readouterr().out
    assert "ToyFaces" in out and "stand-in" in out and len(out.strip().splitlines()) == 1
    with pytest.raises(TypeError, match="unknown"):
        make_dataset(image_size=32, colour="blue")
    folder = make_dataset(_small_folder(tmp_path / "m", n=6), split="all", image_size=16, num_images=3)
    assert isinstance(folder, FaceFolder) and len(folder) == 6, "ToyFaces-only arguments are ignored for folders"


# --- ToyFaces ------------------------------------------------------------------------------------------
def test_toyfaces_deterministic():
    a, b = ToyFaces(6, 64, seed=3), ToyFaces(6, 64, seed=3)
    for i in range(6):
        assert torch.equal(a.rgb_uint8(i), b.rgb_uint8(i)), f"image {i} differs between two instances"
    assert torch.equal(a.rgb_uint8(2), a.rgb_uint8(2)), "drawing twice must give the same image"
    assert not torch.equal(a.rgb_uint8(0), ToyFaces(6, 64, seed=4).rgb_uint8(0)), "the seed must matter"
    assert not torch.equal(a.rgb_uint8(0), ToyFaces(6, 64, seed=3, split="val").rgb_uint8(0)), "splits must differ"
    l_n, ab_n = ToyFaces(6, 64, split="test")[1]
    assert l_n.shape == (1, 64, 64) and ab_n.shape == (2, 64, 64) and l_n.dtype == torch.float32
    with pytest.raises(IndexError):
        a.rgb_uint8(6)


def test_toyfaces_varied_and_colourful():
    ds = ToyFaces(24, 64, split="val")
    rgb = torch.stack([ds.rgb_uint8(i) for i in range(len(ds))])  # (24, 3, 64, 64)
    l_n, ab_n = data.rgb_uint8_to_lab_norm(rgb)
    assert len({hashlib.sha1(x.numpy().tobytes()).hexdigest() for x in rgb}) == 24
    centre = ab_n[:, :, 24:40, 24:40].mean((2, 3)) * 110  # (24, 2) mean ab of the face centre, Lab units
    assert (centre[:, 0] > 3).float().mean() > 0.8, "face centres should be skin-coloured (a > 0)"
    assert (centre[:, 1] > 3).float().mean() > 0.8, "face centres should be skin-coloured (b > 0)"
    whole = (ab_n * 110).mean((2, 3))  # (24, 2): backgrounds and clothes make images differ
    assert whole.std(0).min() > 2, f"mean ab barely varies between images: std {whole.std(0)}"
    assert (l_n.amax((1, 2, 3)) - l_n.amin((1, 2, 3))).min() > 0.5, "each image needs light and dark parts"
    verdicts = [probe_image_from_tensor(x) for x in rgb[:6]]
    assert all(v == "ok" for v in verdicts), "toy faces must not look grayscale"


def probe_image_from_tensor(rgb: torch.Tensor) -> str:
    return data._grayscale_verdicts([rgb.permute(1, 2, 0).numpy()])[0][0]


# --- the data tour -----------------------------------------------------------------------------------------
def test_save_data_samples_writes_a_figure(tmp_path, monkeypatch):
    from lib.viz import save_data_samples

    monkeypatch.delenv("CELEBAHQ_DIR", raising=False)
    monkeypatch.setattr(data, "REPO_ROOT", tmp_path)
    path = save_data_samples(tmp_path / "fig" / "samples.png", n=2, image_size=32)
    img = Image.open(path)
    assert img.format == "PNG" and img.width > 200 and img.height > 300


def test_colorization_grid(tmp_path):
    from lib.viz import show_colorization_grid

    l_n, ab_n = data.rgb_uint8_to_lab_norm(torch.stack([ToyFaces(3, 32).rgb_uint8(i) for i in range(3)]))
    fig = show_colorization_grid(l_n, {"grey": torch.zeros_like(ab_n), "model": ab_n * 0.5}, ab_n,
                                 captions=["a", "b", "c"], title="t", path=tmp_path / "grid.png")
    assert len(fig.axes) == 4 * 3 and (tmp_path / "grid.png").exists()
    with pytest.raises(AssertionError, match="must be"):
        show_colorization_grid(ab_n, ab_n)


# --- real faces ------------------------------------------------------------------------------------------------
@pytest.mark.realdata
def test_real_faces_load(celebahq_dir):
    ds = FaceFolder(celebahq_dir, split="val", image_size=128, max_images=8)
    assert len(ds) == 8
    for i in range(len(ds)):
        l_n, ab_n = ds[i]
        assert l_n.shape == (1, 128, 128) and ab_n.shape == (2, 128, 128)
        assert -1 <= l_n.min() and l_n.max() <= 1 + 1e-5 and ab_n.abs().max() < 1
        assert ab_n[0].mean() > 0.02, "faces are reddish: mean a > 0"
    assert ds.rgb_uint8(0).shape == (3, 128, 128)


@pytest.mark.realdata
def test_real_faces_split_counts(celebahq_dir):
    """Counts usable images per split (printed: run with -s to see them)."""
    listed, _ = data.list_image_files(celebahq_dir)
    counts = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        for sp in ("train", "val", "test"):
            counts[sp] = len(FaceFolder(celebahq_dir, split=sp))
    print(f"\nusable images in {celebahq_dir.name}: {counts} of {len(listed)} listed")
    total = sum(counts.values())
    assert 0.98 * len(listed) <= total <= len(listed), "more than 2 % of the real faces were skipped"
    assert 0.87 < counts["train"] / total < 0.93 and 0.03 < counts["val"] / total < 0.07
