"""Data loading speed at 128x128: preparing a face folder once, then reading the prepared
uint8 images (0 and 2 workers), beside ToyFaces.

A subset of the face folder (``--n`` images, default 512, split "all") goes through
``lib.data.FaceFolder``: the first time it is prepared (each file checked, decoded, resized
and centre-cropped into one uint8 array in the cache folder: a one-off cost, timed), a later
run only opens that cache (timed too). Then a ``DataLoader`` (batch 64) yields ``(L, ab)``
pairs from it: once per setting as warm-up (workers started, pages mapped), then timed over
``--epochs`` epochs. ``ToyFaces`` (drawn instead of read) is timed the same way. Caches go to
a temporary folder, not ~/.cache.

Run: ``python -m benchmarks.bench_data [--data DIR]`` (default: ``$CELEBAHQ_DIR``,
``data/celeba_hq/``, else ToyFaces only). Prints the table and writes
``results/bench-data.json``. Taught alongside ``05_training_unet``.
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
    for _ in loader:  # warm-up: starts the workers, maps the pages
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
                    FaceFolder(root, split="all", image_size=image_size, max_images=n, flip=False, progress=False)
                    one_off["prepare_s"] = time.perf_counter() - t0
                    t0 = time.perf_counter()
                    ds = FaceFolder(root, split="all", image_size=image_size, max_images=n, flip=False)
                    one_off["open_cached_s"] = time.perf_counter() - t0
                one_off["n_prepared"] = len(ds)
                for w in workers:
                    rows.append({"path": "prepared uint8 (cache, memory-mapped)", "workers": w,
                                 "img_per_s": images_per_second(ds, w, epochs)})
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


def format_table(result: dict) -> str:
    src = result["root"] or "no face folder (ToyFaces only)"
    head = (f"{result['n_images']} images at {result['image_size']}x{result['image_size']} from {src}; "
            f"batch 64, mean of {result['epochs']} epochs after a warm-up\n")
    lines = ["| path | workers | img/s |", "|---|---|---|"]
    lines += [f"| {r['path']} | {r['workers']} | {r['img_per_s']:.0f} |" for r in result["rows"]]
    text = head + "\n".join(lines)
    if "prepare_s" in result:
        text += (f"\none-off: preparing {result['n_prepared']} files (check, decode, resize; first run) "
                 f"{result['prepare_s']:.2f} s ({result['n_prepared'] / result['prepare_s']:.0f} img/s); "
                 f"a later run opens the cache in {result['open_cached_s']:.3f} s")
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_data", description=__doc__.split("\n\n")[0])
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
    print(f"wrote {write_result('data', result, args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
