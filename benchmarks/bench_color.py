"""sRGB <-> Lab: ``lib.color`` on a whole batch vs ``skimage.color`` one image at a time.

64 images of 256x256 (crops of ``skimage.data.astronaut()``), both directions, timed side by
side in the same run; also the largest difference between the two (Lab units / sRGB).
``lib.color`` runs in float32 and float64, with torch's default threads and with one thread
(scikit-image is single-threaded numpy, so the one-thread rows are the like-for-like ones),
on the whole batch and image by image (same work, smaller temporaries: on a CPU a one-pass
batch conversion is limited by memory traffic, each intermediate of 64x3x256x256 being
50-100 MB; with glibc, most of that is page faults on freshly mapped memory: compare a run
under ``MALLOC_MMAP_THRESHOLD_=2000000000``). ``lib.color`` therefore converts large no-grad
inputs in cache-sized pieces; the batch is also timed in one pass (the state before) beside it.

Run: ``python -m benchmarks.bench_color`` (``--help`` for options). Prints a table and writes
``results/bench-color.json``. Taught alongside ``01_lab_color_space``.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from skimage import color as skcolor
from skimage import data as skdata

import lib.color
from benchmarks.common import machine_info, timed, write_result
from lib.color import lab_to_rgb, rgb_to_lab


def _timed(fn, repeats: int) -> float:
    """Median seconds of ``repeats`` calls after one warm-up call (``benchmarks.common.timed``)."""
    return timed(fn, min_time=0.0, min_iters=repeats, warmup=1, max_iters=repeats)


def make_images(n: int = 64, size: int = 256, seed: int = 0) -> np.ndarray:
    """``n`` random ``size`` crops of the astronaut photo, some mirrored: (n, size, size, 3) float64 in [0, 1]."""
    photo = skdata.astronaut() / 255.0  # (512, 512, 3)
    rng = np.random.default_rng(seed)
    out = np.empty((n, size, size, 3))
    for i in range(n):
        y, x = rng.integers(0, photo.shape[0] - size + 1), rng.integers(0, photo.shape[1] - size + 1)
        crop = photo[y : y + size, x : x + size]
        out[i] = crop[:, ::-1] if rng.random() < 0.5 else crop
    return out


def run(n: int = 64, size: int = 256, repeats: int = 3) -> dict:
    """Time both directions; returns the figures as a dict (seconds per batch of ``n``)."""
    imgs = make_images(n, size)  # (n, H, W, 3) float64
    labs = np.stack([skcolor.rgb2lab(im) for im in imgs])  # (n, H, W, 3)
    sk = {
        "rgb2lab": _timed(lambda: [skcolor.rgb2lab(im) for im in imgs], repeats),
        "lab2rgb": _timed(lambda: [skcolor.lab2rgb(lab) for lab in labs], repeats),
    }
    rows = []
    default_threads = torch.get_num_threads()
    for threads in sorted({default_threads, 1}, reverse=True):
        torch.set_num_threads(threads)
        for dtype in (torch.float32, torch.float64):
            rgb_t = torch.from_numpy(imgs).permute(0, 3, 1, 2).to(dtype).contiguous()  # (n, 3, H, W)
            lab_t = torch.from_numpy(labs).permute(0, 3, 1, 2).to(dtype).contiguous()  # (n, 3, H, W)
            with torch.no_grad():
                t_fwd = _timed(lambda: rgb_to_lab(rgb_t), repeats)
                t_inv = _timed(lambda: lab_to_rgb(lab_t), repeats)
                chunk = lib.color._CHUNK_ELEMENTS
                lib.color._CHUNK_ELEMENTS = 1 << 62  # the whole batch in one pass: lib.color before chunking
                try:
                    t_fwd_one = _timed(lambda: rgb_to_lab(rgb_t), repeats)
                    t_inv_one = _timed(lambda: lab_to_rgb(lab_t), repeats)
                finally:
                    lib.color._CHUNK_ELEMENTS = chunk
                t_fwd_each = _timed(lambda: [rgb_to_lab(x) for x in rgb_t], repeats)  # same work, image by image
                t_inv_each = _timed(lambda: [lab_to_rgb(x) for x in lab_t], repeats)
                err_fwd = np.abs(rgb_to_lab(rgb_t).double().permute(0, 2, 3, 1).numpy() - labs).max()
                ref_inv = np.stack([skcolor.lab2rgb(lab) for lab in labs[:4]])
                err_inv = np.abs(lab_to_rgb(lab_t[:4]).double().permute(0, 2, 3, 1).numpy() - ref_inv).max()
            pairs = (("rgb->lab", t_fwd, t_fwd_one, t_fwd_each, sk["rgb2lab"], err_fwd),
                     ("lab->rgb", t_inv, t_inv_one, t_inv_each, sk["lab2rgb"], err_inv))
            for name, t, t_one, t_each, sk_t, err in pairs:
                rows.append({"direction": name, "dtype": str(dtype).replace("torch.", ""), "torch_threads": threads,
                             "skimage_s": sk_t, "lib_color_s": t, "speedup": sk_t / t,
                             "lib_color_one_pass_s": t_one, "chunking_speedup": t_one / t,
                             "lib_color_per_image_s": t_each, "speedup_per_image": sk_t / t_each,
                             "max_abs_err": float(err)})
    torch.set_num_threads(default_threads)
    return {"n_images": n, "size": size, "repeats": repeats, "rows": rows}


def format_table(result: dict) -> str:
    head = (f"{result['n_images']} images {result['size']}x{result['size']}: skimage image by image (float64) "
            f"vs lib.color on the whole batch and image by image; median of {result['repeats']} runs; "
            f"speed-up = skimage time / lib.color time\n")
    lines = ["| direction | lib.color dtype | torch threads | skimage, per image (s) | lib.color, batch (s) "
             "| speed-up | batch in one pass, before chunking (s) | lib.color, per image (s) | speed-up "
             "| max abs err vs skimage |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        unit = "Lab" if r["direction"] == "rgb->lab" else "sRGB"
        lines.append(f"| {r['direction']} | {r['dtype']} | {r['torch_threads']} | {r['skimage_s']:.3f} | "
                     f"{r['lib_color_s']:.3f} | {r['speedup']:.2f}x | {r['lib_color_one_pass_s']:.3f} | "
                     f"{r['lib_color_per_image_s']:.3f} | "
                     f"{r['speedup_per_image']:.2f}x | {r['max_abs_err']:.1e} {unit} |")
    return head + "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_color", description=__doc__.split("\n\n")[0])
    p.add_argument("-n", type=int, default=64, help="images per batch (default 64)")
    p.add_argument("--size", type=int, default=256, help="image side (default 256)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=None, help="JSON path (default: results/bench-color.json)")
    args = p.parse_args(argv)
    result = run(args.n, args.size, args.repeats)
    result["machine"] = machine_info()
    print(format_table(result))
    print(f"wrote {write_result('color', result, args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
