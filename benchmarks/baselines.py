"""The grey and mean-face baselines on the CelebA-HQ test split, measured by ``MetricSuite``.

Grey predicts ab = 0; the mean face predicts the per-pixel mean ab of the *train* split
(read without flips, cached). Both are evaluated on the *test* split at ``--size``
(default 128x128) by the same suite that evaluates models: per-image PSNR/SSIM on rebuilt
RGB and on scaled Lab, PSNR pooled over groups of 64 (the reference table's kind), dCF,
and FID and KID over the whole split (``--no-fid`` skips them), and the paired-bootstrap
95 % interval of the mean face's PSNR margin over grey. Also reports the wall time of each
evaluation, on ``--threads`` CPU threads (default 2).

Run: ``python -m benchmarks.baselines [--data DIR]`` (default ``$CELEBAHQ_DIR``, then
``data/celeba_hq/``). Prints a table and writes ``results/baselines.json``.
Taught alongside ``07_evaluation``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from lib.data import open_splits
from lib.metrics import MetricSuite, grey_predictor, mean_face_ab, mean_face_predictor, paired_bootstrap
from lib.utils import write_text_atomic

COLUMNS = ("psnr_rgb", "ssim_rgb", "psnr_lab", "ssim_lab", "psnr_rgb_pooled64", "delta_cf", "fid", "kid", "n_images",
           "seconds")


def table(results: dict[str, dict]) -> str:
    """Markdown table, one row per baseline."""
    cols = [c for c in COLUMNS if any(c in r for r in results.values())]
    lines = ["| baseline | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, r in results.items():
        cells = []
        for c in cols:
            v = r.get(c)
            cells.append("" if v is None else f"{v:d}" if isinstance(v, int) else f"{v:.4f}" if c.startswith("ssim") else f"{v:.2f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.baselines", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=None, help="CelebA-HQ folder (default: $CELEBAHQ_DIR, then data/celeba_hq/)")
    parser.add_argument("--size", type=int, default=128, help="evaluation size (default 128)")
    parser.add_argument("--batch-size", type=int, default=64, help="evaluation batch size (default 64)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--no-fid", action="store_true", help="skip FID (the slow part on CPU)")
    parser.add_argument("--out", default="results/baselines.json", help="JSON output (default results/baselines.json)")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    sets, source = open_splits(args.data, "folder", args.size, ("train", "test"))  # DataError without a folder
    train, test = sets["train"], sets["test"]
    train.flip = False
    t_index = time.perf_counter() - t0
    t0 = time.perf_counter()
    mean_ab = mean_face_ab(train, batch_size=args.batch_size)  # (2, S, S), cached after the first run
    t_mean = time.perf_counter() - t0

    loader = DataLoader(test, batch_size=args.batch_size, shuffle=False, num_workers=0)
    suite = MetricSuite(fid=not args.no_fid, device="cpu")
    results = {"grey": suite.evaluate(grey_predictor(), loader, desc="grey")}
    grey_psnr = suite.last_per_image["psnr_rgb"]
    results["mean_face"] = suite.evaluate(mean_face_predictor(mean_ab), loader, desc="mean face")
    margin = paired_bootstrap(suite.last_per_image["psnr_rgb"], grey_psnr)  # (mean, low, high) in dB

    report = {
        "data": source.describe(),
        "split": "test",
        "image_size": args.size,
        "n_train_images_mean_face": len(train),
        "n_test_images": len(test),
        "metric_kinds": "psnr_rgb/ssim_rgb: per-image mean on RGB rebuilt from true L + predicted ab; "
        "psnr_lab/ssim_lab: per-image mean on Lab scaled L/100, (ab+128)/255; "
        "psnr_rgb_pooled64: squared error pooled over groups of 64 images (torchmetrics default)",
        "torch_threads": args.threads,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "seconds_index_files": t_index,
        "seconds_mean_face": t_mean,
        "results": results,
        "mean_face_minus_grey_psnr_rgb_95ci": margin,
    }
    out = write_text_atomic(Path(args.out), json.dumps(report, indent=2) + "\n")
    print(f"{source.describe()}; test split at {args.size}x{args.size}, mean face from the train split")
    print(table(results))
    print(f"mean face - grey, psnr_rgb: {margin[0]:+.2f} dB (95 % paired bootstrap {margin[1]:+.2f} .. {margin[2]:+.2f})")
    print(f"seconds: indexing {t_index:.1f}, mean face {t_mean:.1f}; wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
