"""Tests of ``lib.data``: open_splits / reopen_splits, the hash split, preparing a folder (checks,
cache, temp files), ToyFaces.

Odd files are made in ``tmp_path`` with PIL (and a hand-written 16-bit RGB PNG, which PIL
cannot write). Real-face tests are marked ``realdata`` and use the ``celebahq_dir`` fixture.
"""

from __future__ import annotations

import ast
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
    DataSource,
    DataWarning,
    FaceFolder,
    ToyFaces,
    check_face,
    decode_rgb,
    open_splits,
    reopen_splits,
    resolve_data_root,
    split_of,
)
from lib.errors import ConfigError, DataError

S = 32  # image size for the synthetic-folder tests: small keeps them fast
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch):
    """Every test writes its caches under its own temporary folder, never ~/.cache."""
    monkeypatch.setenv("FACECOLOR_CACHE", str(tmp_path / "facecolor-cache"))


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
BAD = {"truncated.jpg": "truncated", "text.jpg": "not an image", "empty.jpg": "empty",
       "grey.jpg": "grayscale", "grey16.png": "grayscale", "dot.png": "too small: 1x1", "strip.png": "too small: 200x3"}


@pytest.fixture
def odd_folder(tmp_path) -> Path:
    """A folder with every kind of file the issues name, plus distractors."""
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
    (root / "empty.jpg").write_bytes(b"")
    Image.fromarray(_photo(seed=10)).convert("L").save(root / "grey.jpg")
    Image.fromarray(_photo(seed=11)[..., 0].astype(np.uint16) * 257).save(root / "grey16.png")  # mode I;16
    Image.fromarray(_photo(1, 1, seed=12)).save(root / "dot.png")  # a 1x1 image is no face
    Image.fromarray(_photo(3, 200, seed=13)).save(root / "strip.png")
    (root / "notes.txt").write_text("not an image, not counted")
    Image.fromarray(_photo(seed=14)).save(root / ".hidden.jpg")  # hidden: ignored
    return root


def _build(*args, **kw) -> tuple[FaceFolder, list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = FaceFolder(*args, **kw)
    return ds, [w for w in caught if issubclass(w.category, DataWarning)]


# --- the split is pinned ------------------------------------------------------------------------
# Computed with the code as it was before the redesign (commit cf2c85c): the same files must
# stay in the same splits, or checkpoints would be reported on faces they were trained on.
PINNED_SPLITS = {
    "00000.jpg": "train", "00001.jpg": "val", "00002.jpg": "train", "00022.jpg": "val", "00031.jpg": "test",
    "00036.jpg": "val", "00107.jpg": "test", "00116.jpg": "test", "sub/a.jpg": "train", "dir\\b.png": "train",
    "caf\u00e9.jpg": "train", "cafe\u0301.jpg": "train",
}
PINNED_HALF = {"00000.jpg": "val", "00001.jpg": "test", "00002.jpg": "train", "00003.jpg": "test",
               "00011.jpg": "val", "sub/a.jpg": "val"}  # fractions (0.5, 0.25, 0.25)
# usable files of ../shared/data/celebahq-5k per split: count and sha256 of the sorted names joined by "\n"
PINNED_REAL = {
    "train": (4484, "8de0c6d6c146284be954c7a1c88dcce8eec2cd5d589c432aa304ed3e7b38d18c"),
    "val": (248, "f73ce29ade3387a8fcf1ec70349585203b3e053bc8860141e9766db97e0b2854"),
    "test": (260, "4f6069ce1a25badd48b83806a8c75e896186fd36706052e6f393d3e18ce5f365"),
}


def test_split_of_pinned():
    assert {n: split_of(n) for n in PINNED_SPLITS} == PINNED_SPLITS
    assert {n: split_of(n, (0.5, 0.25, 0.25)) for n in PINNED_HALF} == PINNED_HALF


@pytest.mark.realdata
def test_real_folder_splits_pinned(celebahq_dir):
    """The same real files land in the same splits (and the same one grayscale face is left out).

    The listing and hash are checked for all 4,993 files; decoding is checked on a few (the
    full prepare, run once by hand on this change, gave the same names and the same pixels).
    """
    listed = data.list_image_files(celebahq_dir)[0]
    assert check_face(celebahq_dir / "00380.jpg")[1].startswith("grayscale")
    for sp, (n, digest) in PINNED_REAL.items():
        names = [r for r in listed if split_of(r) == sp and r != "00380.jpg"]
        assert len(names) == n and hashlib.sha256("\n".join(names).encode()).hexdigest() == digest, sp
    sets, source = open_splits(celebahq_dir, "folder", image_size=32, splits=("val", "test"), max_images=4)
    assert sets["val"].names == [r for r in listed if split_of(r) == "val"][:4]
    assert source.describe() == f"{celebahq_dir.name} at {celebahq_dir.resolve()}: 4 val / 4 test images"
    l_n, ab_n = sets["val"][0]
    assert l_n.shape == (1, 32, 32) and ab_n.shape == (2, 32, 32) and ab_n[0].mean() > 0.02, "faces are reddish"


def test_split_stable_under_rename_and_shuffled_listing(tmp_path, monkeypatch):
    root = _small_folder(tmp_path / "before")
    first = _split_map(root, fractions=(0.5, 0.25, 0.25))
    assert len(first) == 30 and set(first.values()) == {"train", "val", "test"}, "splits must partition the folder"
    moved = root.rename(tmp_path / "renamed-parent")
    assert _split_map(moved, fractions=(0.5, 0.25, 0.25)) == first, "renaming the folder changed the split"

    real_walk, rng = os.walk, random.Random(0)

    def shuffled_walk(top, *a, **kw):  # the OS may list files in any order
        entries = list(real_walk(top, *a, **kw))
        rng.shuffle(entries)
        for dirpath, dirnames, filenames in entries:
            rng.shuffle(filenames)
            yield dirpath, dirnames, filenames

    monkeypatch.setattr(data.os, "walk", shuffled_walk)
    assert _split_map(moved, fractions=(0.5, 0.25, 0.25), cache=False) == first, "the listing order changed the split"
    names = FaceFolder(moved, "train", 32, fractions=(0.5, 0.25, 0.25), cache=False).names
    assert names == sorted(r for r, sp in first.items() if sp == "train")


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


def test_split_ignores_separators_and_lib_toyfaces_does_not_import_lib_data():
    """(Python's hash seed cannot matter: the pinned values above hold in every session.)"""
    names = [f"dir/{i}.jpg" for i in range(300)]
    assert [split_of(n.replace("/", "\\")) for n in names] == [split_of(n) for n in names]
    tree = ast.parse((REPO / "lib" / "toyfaces.py").read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert "lib.data" not in imported and "lib" not in imported, "no import circle data <-> toyfaces"


# --- bad input -----------------------------------------------------------------------------------
def test_odd_files_named_with_their_reason_in_one_warning(odd_folder):
    ds, warned = _build(odd_folder, split="all", image_size=S)
    assert ds.names == sorted(GOOD), "usable files, in sorted order"
    assert len(warned) == 1, f"expected exactly one DataWarning, got {[str(w.message) for w in warned]}"
    msg = str(warned[0].message)
    assert f"skipped {len(BAD)} of {len(BAD) + len(GOOD)} image files" in msg and str(odd_folder) in msg
    reasons = dict(ds.skipped)
    assert set(reasons) == set(BAD)
    for name, why in BAD.items():
        assert reasons[name].startswith(why), (name, reasons[name])
        assert f"{name}: {why}" in msg
    assert ".hidden" not in msg and "notes.txt" not in msg


def test_check_face(odd_folder):
    rgb, why = check_face(odd_folder / "cmyk.jpg")
    assert why == "" and rgb.shape == (3, 48, 48) and rgb.dtype == torch.uint8
    assert check_face(odd_folder / "dot.png") == (None, "too small: 1x1, a face needs at least 32 px a side")
    assert check_face(odd_folder / "text.jpg")[1].startswith("not an image (")
    assert check_face(odd_folder / "empty.jpg") == (None, "empty (0 bytes)")


def test_too_many_pixels_refused(tmp_path, monkeypatch):
    Image.fromarray(_photo(64, 64)).save(tmp_path / "big.png")
    monkeypatch.setattr(data, "MAX_PIXELS", 63 * 64)
    rgb, why = check_face(tmp_path / "big.png")
    assert rgb is None and why.startswith("64x64 = 0.0 megapixels, above the limit") and "not decoded" in why


def test_odd_files_items(odd_folder):
    ds, _ = _build(odd_folder, split="all", image_size=S)
    for i in range(len(ds)):
        l_n, ab_n = ds[i]
        assert l_n.shape == (1, S, S) and ab_n.shape == (2, S, S), ds.names[i]
        assert l_n.dtype == ab_n.dtype == torch.float32
        assert -1.0 <= l_n.min() and l_n.max() <= 1.0 + 1e-5 and ab_n.abs().max() < 1.0
        assert ab_n.abs().mean() > 0.02, f"{ds.names[i]} lost its colour"
        rgb = ds.rgb_uint8(i)
        assert rgb.shape == (3, S, S) and rgb.dtype == torch.uint8
        assert torch.equal(rgb, data.resize_square(decode_rgb(ds.files[i]), S)), "prepared pixels = decode + resize"
    assert len(list(ds)) == len(ds), "iterating the dataset must stop at its end"
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_decoding_is_lib_images(odd_folder):
    """One decoder in the project: lib.images.load_rgb (its own tests cover the modes)."""
    from lib.images import load_rgb

    for name in ("rgba.png", "rgb16.png", "cmyk.jpg", "palette.png", "photo.webp"):
        assert np.array_equal(decode_rgb(odd_folder / name).permute(1, 2, 0).numpy(), load_rgb(odd_folder / name))
    assert np.array_equal(decode_rgb(odd_folder / "rgb16.png").permute(1, 2, 0).numpy(), _photo(seed=5)), "16-bit scales"


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


# --- open_splits -----------------------------------------------------------------------------------
def _small_folder(root: Path, n: int = 30) -> Path:
    (root / "x").mkdir(parents=True)
    for i in range(n):
        sub = root / "x" if i % 3 == 0 else root
        Image.fromarray(_photo(32, 32, seed=i)).save(sub / f"img{i:03d}.png")
    return root


def _split_map(root: Path, **kw) -> dict[str, str]:
    return {rel: sp for sp in ("train", "val", "test") for rel in FaceFolder(root, sp, 32, **kw).names}


@pytest.fixture
def no_default_data(tmp_path, monkeypatch):
    monkeypatch.delenv("CELEBAHQ_DIR", raising=False)
    monkeypatch.setattr(data, "REPO_ROOT", tmp_path / "repo")  # no data/celeba_hq/ there


def test_open_splits_on_a_folder(tmp_path):
    root = _small_folder(tmp_path / "f", n=30)
    sets, source = open_splits(root, image_size=S, progress=False)
    assert set(sets) == {"train", "val", "test"} and source.kind == "folder" and source.root == str(root.resolve())
    assert source.counts == {sp: len(ds) for sp, ds in sets.items()} and sum(source.counts.values()) == 30
    assert sets["train"].flip and not sets["val"].flip and not sets["test"].flip
    assert source.fingerprint == data.folder_fingerprint(root)
    assert DataSource.from_dict(source.to_dict()) == source
    assert source.describe().startswith(f"f at {root.resolve()}: {source.counts['train']} train / ")
    only, _ = open_splits(root, image_size=S, splits=("val",), max_images=1, progress=False)
    assert list(only) == ["val"] and len(only["val"]) == 1


def test_open_splits_toy_fallback_and_choices(no_default_data, capsys):
    sets, source = open_splits(image_size=S, toy_images=40, max_images=20)
    assert all(isinstance(ds, ToyFaces) for ds in sets.values())
    assert {sp: len(ds) for sp, ds in sets.items()} == {"train": 20, "val": 16, "test": 16}
    assert source == DataSource("toy", None, None, {"train": 20, "val": 16, "test": 16})
    assert source.describe() == "ToyFaces (generated stand-in faces, not real photos)"
    out = capsys.readouterr().out
    assert "ToyFaces" in out and "stand-in" in out and len(out.strip().splitlines()) == 1
    open_splits(dataset="toy", image_size=S)
    assert capsys.readouterr().out == "", "asking for toy faces needs no notice"
    with pytest.raises(DataError, match="'folder' but no face folder"):
        open_splits(dataset="folder", image_size=S)
    with pytest.raises(ConfigError, match="auto, folder, toy"):
        open_splits(dataset="celeba", image_size=S)
    with pytest.raises(ConfigError, match="train, val, test"):
        open_splits(dataset="toy", splits=("all",))
    with pytest.raises(DataError, match="is not a folder"):
        open_splits("/nonexistent/faces")


def test_no_usable_image_is_a_data_error_naming_the_folder(tmp_path):
    root = tmp_path / "nothing-here"
    root.mkdir()
    (root / "text.jpg").write_text("not an image")
    Image.fromarray(_photo(seed=1)).convert("L").save(root / "grey.jpg")
    (root / "readme.txt").write_text("hello")
    with pytest.raises(DataError) as err:
        open_splits(root, "folder", S)
    msg = str(err.value)
    assert str(root) in msg and "2 files with an image extension" in msg and "1 .txt" in msg
    assert "1 not an image" in msg and "1 grayscale" in msg and "'all'" not in msg
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="0 files"):
        open_splits(tmp_path / "empty", "folder", S)


def test_tiny_folder_gives_what_exists(tmp_path):
    Image.fromarray(_photo()).save(tmp_path / "only.jpg")
    home = split_of("only.jpg")
    sets, source = open_splits(tmp_path, "folder", S)
    assert {sp: len(ds) for sp, ds in sets.items()} == {sp: int(sp == home) for sp in ("train", "val", "test")}
    other = "val" if home == "train" else "train"
    with pytest.raises(DataError) as err:
        open_splits(tmp_path, "folder", S, splits=(other,))
    assert "a hash of each file's path" in str(err.value) and "'all'" not in str(err.value)


def test_reopen_splits(tmp_path, no_default_data):
    root = _small_folder(tmp_path / "r", n=12)
    sets, source = open_splits(root, "folder", S, progress=False)
    again, same = reopen_splits(source.to_dict(), S, ("train",), progress=False)
    assert same.root == source.root and again["train"].names == sets["train"].names
    Image.fromarray(_photo(seed=77)).save(root / "new.png")
    with pytest.warns(DataWarning, match="changed since the checkpoint"):
        reopen_splits(source.to_dict(), S, ("train",), progress=False)
    root.rename(tmp_path / "moved")
    with pytest.raises(DataError, match="--data-root"):
        reopen_splits(source.to_dict(), S)
    toy, toy_source = reopen_splits(DataSource("toy").to_dict(), S, ("val",), toy_images=64, seed=3)
    assert isinstance(toy["val"], ToyFaces) and toy["val"].seed == 3 and toy_source.kind == "toy"


def test_the_same_files_provisioned_again_are_the_same_data(tmp_path, no_default_data):
    """New mtimes (a copy, a re-provisioned read-only folder) are not a change; a new size is. A checkpoint
    whose key still hashed the mtimes (before FINGERPRINT_PREFIX) is checked the old way."""
    root = _small_folder(tmp_path / "p", n=12)
    _, source = open_splits(root, "folder", S, progress=False)
    old = {**source.to_dict(), "fingerprint": data.folder_fingerprint(root, mtimes=True)}
    assert source.fingerprint.startswith(data.FINGERPRINT_PREFIX) and not old["fingerprint"].startswith("n+s:")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        reopen_splits(old, S, ("train",), progress=False)  # the old key, unchanged folder: no warning
        for f in root.iterdir():
            os.utime(f, ns=(10**18, 10**18))
        reopen_splits(source.to_dict(), S, ("train",), progress=False)  # new mtimes: the same data
    with pytest.warns(DataWarning, match="changed since the checkpoint"):
        reopen_splits(old, S, ("train",), progress=False)  # the old key saw the mtimes
    victim = sorted(root.iterdir())[0]
    victim.write_bytes(victim.read_bytes() + b"\0")
    with pytest.warns(DataWarning, match="changed since the checkpoint"):
        reopen_splits(source.to_dict(), S, ("train",), progress=False)


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
    with pytest.raises(FileNotFoundError, match="data_root"):
        resolve_data_root(tmp_path / "missing")
    monkeypatch.setenv("CELEBAHQ_DIR", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="CELEBAHQ_DIR"):
        resolve_data_root()


# --- the prepared cache --------------------------------------------------------------------------------
@pytest.fixture
def count_decodes(monkeypatch):
    calls = Counter()
    real = data.decode_rgb

    def counting(path):
        calls["decode"] += 1
        return real(path)

    monkeypatch.setattr(data, "decode_rgb", counting)
    return calls


def test_prepared_once_reused_and_rebuilt(tmp_path, count_decodes):
    root = tmp_path / "cached"
    root.mkdir()
    for i in range(6):
        Image.fromarray(_photo(40, 48, seed=i)).save(root / f"{i}.jpg")
    cache = Path(os.environ["FACECOLOR_CACHE"])

    plain = FaceFolder(root, "all", S, cache=False)
    assert count_decodes["decode"] == 6 and not cache.exists(), "cache=False writes nothing"
    ds = FaceFolder(root, "all", S)
    assert count_decodes["decode"] == 12 and ds._path.is_file(), "preparing decodes each image once"
    for _epoch in range(2):
        for batch_l, batch_ab in DataLoader(ds, batch_size=4):
            assert batch_l.shape[1:] == (1, S, S) and batch_ab.shape[1:] == (2, S, S)
    assert count_decodes["decode"] == 12, "epochs on the prepared array decode nothing"
    assert all(torch.equal(ds.rgb_uint8(i), plain.rgb_uint8(i)) for i in range(6)), "cached and in-memory differ"

    count_decodes.clear()
    again = FaceFolder(root, "all", S)
    assert again._path == ds._path and count_decodes["decode"] == 0, "an unchanged folder reuses the array"
    assert FaceFolder(root, "all", S + 8)._path != ds._path
    count_decodes.clear()
    Image.fromarray(_photo(40, 48, seed=99)).save(root / "new.jpg")
    grown = FaceFolder(root, "all", S)
    assert len(grown) == 7 and count_decodes["decode"] == 7 and grown._path != ds._path, "a new file: prepared again"
    os.utime(root / "0.jpg", ns=(1, 1))  # a changed file (new mtime) also counts
    assert FaceFolder(root, "all", S)._path != grown._path
    assert not list((cache / "faces").glob(".*.tmp-*")), "temporary files left behind"


def test_temp_files_of_a_killed_run_are_cleaned(tmp_path):
    root = _small_folder(tmp_path / "k", n=3)
    faces = Path(os.environ["FACECOLOR_CACHE"]) / "faces"
    faces.mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = faces / f".k-train-32px-0.u8.tmp-{int(dead.stdout)}"  # as a kill -9 mid-prepare leaves it
    mine = faces / f".other.u8.tmp-{os.getpid()}"  # a live process's temp file is kept
    stale.write_bytes(b"x" * 100)
    mine.write_bytes(b"y")
    FaceFolder(root, "all", S)
    assert not stale.exists() and mine.exists()


def test_half_written_cache_is_prepared_again(tmp_path):
    root = _small_folder(tmp_path / "h", n=4)
    ds = FaceFolder(root, "all", S)
    ds._path.write_bytes(ds._path.read_bytes()[:100])  # a truncated array (disk full, say)
    again = FaceFolder(root, "all", S)
    assert torch.equal(again.rgb_uint8(3), ds.rgb_uint8(3)) and again._path.stat().st_size == 4 * 3 * S * S


def test_cached_dataset_pickles_without_its_pixels(tmp_path):
    root = _small_folder(tmp_path / "p", n=12)
    ds = FaceFolder(root, "all", S)
    ds[0]  # maps the file
    blob = pickle.dumps(ds)
    assert len(blob) < 12 * 3 * S * S, "the memory map must not travel to DataLoader workers"
    assert torch.equal(pickle.loads(blob).rgb_uint8(5), ds.rgb_uint8(5))


def test_max_images_stops_decoding_early(tmp_path, count_decodes):
    root = tmp_path / "many"
    root.mkdir()
    (root / "000.png").write_text("broken")
    for i in range(1, 40):
        Image.fromarray(_photo(32, 32, seed=i)).save(root / f"{i:03d}.png")
    ds = FaceFolder(root, "all", S, max_images=5)
    assert ds.names == [f"{i:03d}.png" for i in range(1, 6)] and [r for r, _ in ds.skipped] == ["000.png"]
    assert count_decodes["decode"] == 6, "with max_images=5 only the first files are decoded"


def test_flip_only_for_training(tmp_path):
    root = _small_folder(tmp_path / "f", n=3)
    assert FaceFolder(root, "all", S, flip=True).flip and not FaceFolder(root, "all", S).flip
    ds = FaceFolder(root, "all", S, flip=True)
    torch.manual_seed(0)
    plain = data.rgb_uint8_to_lab_norm(ds.rgb_uint8(0))[0]
    seen = {torch.equal(ds[0][0], plain) for _ in range(20)}
    assert seen == {True, False}, "flip=True should mirror some draws and not others"
    assert ToyFaces(8, 32, split="train").flip and not ToyFaces(8, 32, split="val").flip


# --- ToyFaces ------------------------------------------------------------------------------------------
def test_toyfaces_deterministic():
    a, b = ToyFaces(6, 64, seed=3), ToyFaces(6, 64, seed=3)
    for i in range(6):
        assert torch.equal(a.rgb_uint8(i), b.rgb_uint8(i)), f"image {i} differs between two instances"
    assert not torch.equal(a.rgb_uint8(0), ToyFaces(6, 64, seed=4).rgb_uint8(0)), "the seed must matter"
    assert not torch.equal(a.rgb_uint8(0), ToyFaces(6, 64, seed=3, split="val").rgb_uint8(0)), "splits must differ"
    l_n, ab_n = ToyFaces(6, 64, split="test")[1]
    assert l_n.shape == (1, 64, 64) and ab_n.shape == (2, 64, 64) and l_n.dtype == torch.float32
    with pytest.raises(IndexError):
        a.rgb_uint8(6)


def test_toyfaces_varied_and_colourful(tmp_path):
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
    for i in range(4):
        Image.fromarray(rgb[i].permute(1, 2, 0).numpy()).save(tmp_path / f"{i}.png")
        assert check_face(tmp_path / f"{i}.png")[1] == "", "toy faces must pass as faces (not grayscale)"


@pytest.mark.realdata
def test_the_shipped_models_face_folder_is_recognised_as_unchanged(celebahq_dir):
    """The shipped checkpoint names the celebahq-5k folder it was trained on; provisioned afresh (new mtimes)
    it is the same data, so evaluating the shipped model on it warns nothing."""
    import lib.checkpoint

    source = lib.checkpoint.load_checkpoint(lib.checkpoint.SHIPPED)["data_source"]
    if Path(source["root"]).resolve() != celebahq_dir.resolve():
        pytest.skip(f"the shipped model was trained on {source['root']}, not {celebahq_dir}")
    assert source["fingerprint"] == data.folder_fingerprint(celebahq_dir)
