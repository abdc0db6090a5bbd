"""Data loading speed at 128x128: the decode path vs the memory-mapped cache, 0 and 2 workers.

A subset of the face folder (``--n`` images, default 512, split "all") is loaded through a
``DataLoader`` (batch 64) as ``(L, ab)`` pairs: once per setting as warm-up (workers started,
files in the OS page cache), then timed over ``--epochs`` epochs. ``ToyFaces`` (drawing
instead of decoding) is timed the same way. Also reports the one-off costs: indexing the
files (first time) and building the cache. Caches go to a temporary folder, not ~/.cache.

A second table follows one training run's view: epoch 1 and epoch 2 img/s of the same
subset, without the cache (every epoch decodes every JPEG) and with it (epoch 1 builds the
cache, then reads it; epoch 2 only reads the memory map), main process, batch 64.

Run: ``python -m benchmarks.bench_data [--data DIR]`` (default: ``$CELEBAHQ_DIR``,
``data/celeba_hq/``, else ToyFaces only). Prints the tables and writes
``results/bench-data.json``. Taught alongside ``notebooks/02_data.ipynb``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from benchmarks.common import machine_info, write_result
from lib.data import DataWarning, FaceFolder, ToyFaces, resolve_data_root


def images_per_second(ds, workers: int, epochs: int, batch_size: int = 64) -> float:
    """Steady-state images/s of a full pass over ``ds`` (after one warm-up pass)."""
    loader = DataLoader(ds, batch_size=batch_size, num_workers=workers, persistent_workers=workers > 0)
    for _ in loader:  # warm-up: starts the workers, fills the page cache
        pass
    t0 = time.perf_counter()
    for _ in range(epochs):
        for l_n, ab_n in loader:
            assert l_n.shape[1:] == (1, ds.image_size, ds.image_size) and ab_n.shape[1] == 2
    return epochs * len(ds) / (time.perf_counter() - t0)


def run(root: Path | None, n: int = 512, image_size: int = 128, epochs: int = 2, workers=(0, 2)) -> dict:
    rows, one_off = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        old = os.environ.get("FACECOLOR_CACHE")
        os.environ["FACECOLOR_CACHE"] = tmp
        try:
            if root is not None:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DataWarning)
                    t0 = time.perf_counter()
                    decode = FaceFolder(root, split="all", image_size=image_size, max_images=n, flip=False)
                    one_off["index_s"] = time.perf_counter() - t0
                    t0 = time.perf_counter()
                    cached = FaceFolder(root, split="all", image_size=image_size, max_images=n, flip=False, cache=True)
                    one_off["cache_build_s"] = time.perf_counter() - t0
                for name, ds in (("decode (torchvision.io)", decode), ("cached (memmap)", cached)):
                    for w in workers:
                        rows.append({"path": name, "workers": w, "img_per_s": images_per_second(ds, w, epochs)})
            toy = ToyFaces(num_images=n, image_size=image_size, split="val")  # val: no flips, like the others
            for w in workers:
                rows.append({"path": "ToyFaces (drawn)", "workers": w, "img_per_s": images_per_second(toy, w, epochs)})
        finally:
            if old is None:
                os.environ.pop("FACECOLOR_CACHE", None)
            else:
                os.environ["FACECOLOR_CACHE"] = old
    return {"root": str(root) if root else None, "n_images": n, "image_size": image_size, "epochs": epochs,
            "torch_threads": torch.get_num_threads(), "rows": rows, **one_off}


def _one_pass(ds, batch_size: int = 64) -> float:
    """Seconds of one pass over ``ds`` in the main process."""
    t0 = time.perf_counter()
    for l_n, ab_n in DataLoader(ds, batch_size=batch_size, num_workers=0):
        assert l_n.shape[1:] == (1, ds.image_size, ds.image_size) and ab_n.shape[1] == 2
    return time.perf_counter() - t0


def epoch_rates(root: Path, n: int = 512, image_size: int = 128) -> dict:
    """Epoch 1 and epoch 2 img/s with and without the uint8 cache (a fresh cache folder; the
    files themselves may already sit in the OS page cache, as they do after any earlier run)."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        old = os.environ.get("FACECOLOR_CACHE")
        os.environ["FACECOLOR_CACHE"] = tmp
        try:
            ds = FaceFolder(root, split="all", image_size=image_size, max_images=n, flip=False)  # indexes (once)
            e1, e2 = _one_pass(ds), _one_pass(ds)
            rows.append({"path": "no cache (decode + resize every epoch)", "epoch1_img_s": len(ds) / e1,
                         "epoch2_img_s": len(ds) / e2})
            t0 = time.perf_counter()
            ds = FaceFolder(root, split="all", image_size=image_size, max_images=n, flip=False, cache=True)
            build = time.perf_counter() - t0
            e1, e2 = build + _one_pass(ds), _one_pass(ds)
            rows.append({"path": "uint8 cache (epoch 1 builds it)", "epoch1_img_s": len(ds) / e1,
                         "epoch2_img_s": len(ds) / e2, "cache_build_s": build})
        finally:
            if old is None:
                os.environ.pop("FACECOLOR_CACHE", None)
            else:
                os.environ["FACECOLOR_CACHE"] = old
    for r in rows:
        r["epoch2_vs_no_cache"] = r["epoch2_img_s"] / rows[0]["epoch2_img_s"]
    return {"n_images": n, "image_size": image_size, "rows": rows}


def format_epochs_table(result: dict) -> str:
    head = (f"Epochs 1 and 2 of {result['n_images']} images at {result['image_size']}x{result['image_size']}, "
            f"main process, batch 64, (L, ab) pairs out\n")
    lines = ["| path | epoch 1 img/s | epoch 2 img/s | epoch 2 vs no cache |", "|---|---|---|---|"]
    lines += [f"| {r['path']} | {r['epoch1_img_s']:.0f} | {r['epoch2_img_s']:.0f} | {r['epoch2_vs_no_cache']:.1f}x |"
              for r in result["rows"]]
    return head + "\n".join(lines)


def format_table(result: dict) -> str:
    src = result["root"] or "no face folder (ToyFaces only)"
    head = (f"{result['n_images']} images at {result['image_size']}x{result['image_size']} from {src}; "
            f"batch 64, mean of {result['epochs']} epochs after a warm-up\n")
    lines = ["| path | workers | img/s |", "|---|---|---|"]
    lines += [f"| {r['path']} | {r['workers']} | {r['img_per_s']:.0f} |" for r in result["rows"]]
    text = head + "\n".join(lines)
    if "index_s" in result:
        text += (f"\none-off: indexing {result['n_images']} files (first time) {result['index_s']:.2f} s, "
                 f"building the cache {result['cache_build_s']:.2f} s")
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_data", description=__doc__.split("\n")[0])
    p.add_argument("--data", default=None, help="face folder (default: $CELEBAHQ_DIR, data/celeba_hq/)")
    p.add_argument("--n", type=int, default=512, help="images in the subset (default 512)")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--out", default=None, help="JSON path (default: results/bench-data.json)")
    args = p.parse_args(argv)
    root = resolve_data_root(args.data)
    result = run(root, args.n, args.size, args.epochs)
    result["machine"] = machine_info()
    print(format_table(result))
    if root is not None:
        result["epochs"] = epoch_rates(root, args.n, args.size)
        print(format_epochs_table(result["epochs"]))
    print(f"wrote {write_result('data', result, args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
