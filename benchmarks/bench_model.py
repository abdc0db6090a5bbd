"""Throughput of the seed U-Net on this machine: forward+backward images/s and FLOPs at
64/128/256, the achieved GFLOP/s and its ratio to the machine's fp32 matmul GFLOP/s measured
in the same run, for contiguous (NCHW) and channels-last tensors side by side.

Run: ``python -m benchmarks.bench_model`` (``--help`` for options). Prints a table and writes
``results/bench-model.json``. Taught alongside ``02_unet_building_blocks``.

Model rows use the median step time; the matmul reference uses its fastest call (a peak).
FLOPs come from ``torch.utils.flop_counter`` (a multiply-add counts 2). On a machine shared with
other busy processes, ``--threads`` below the core count avoids OpenMP threads waiting on each
other; the table prints the load average so a reader can judge the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import torch

from benchmarks.common import matmul_gflops
from benchmarks.common import timed
from lib.models import UNet, UNetConfig
from lib.models.summary import count_flops

DEFAULT_BATCH = {64: 16, 128: 8, 256: 2}


def bench_size(cfg: UNetConfig, size: int, batch: int, channels_last: bool, min_time: float) -> dict:
    """Forward+backward of a batch of ``batch`` random L images of ``size`` x ``size``."""
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = UNet(cfg).train().to(memory_format=fmt)
    x = torch.randn(batch, cfg.in_channels, size, size).contiguous(memory_format=fmt)

    def step():
        model.zero_grad(set_to_none=True)
        model(x).square().mean().backward()

    sec = timed(step, min_time)  # median seconds per step
    return {"batch": batch, "seconds_per_step": sec, "img_per_s": batch / sec}


def flops_fwd_bwd(cfg: UNetConfig, size: int) -> int:
    """FLOPs of one image's forward + backward (torch.utils.flop_counter)."""
    model = UNet(cfg).train()
    x = torch.randn(2, cfg.in_channels, size, size)  # batch 2: BatchNorm needs > 1 value per channel
    return count_flops(lambda: model(x).square().mean().backward()) // 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_model", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--batch", type=int, default=None, help="batch size for every size (default: 16/8/2 for 64/128/256)")
    parser.add_argument("--min-time", type=float, default=3.0, help="seconds of timed steps per measurement")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--out", default="results/bench-model.json")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    cfg = UNetConfig()  # the seed configuration
    load_before = os.getloadavg()[0]  # other processes on the machine skew every number below
    peaks = [matmul_gflops(torch.float32, "cpu")]  # fastest call: the machine's practical fp32 peak
    rows = []
    for size in args.sizes:
        batch = args.batch or DEFAULT_BATCH.get(size, 4)
        flops = flops_fwd_bwd(cfg, size)
        row = {"size": size, "flops_fwd_bwd_per_img": flops}
        for name, cl in (("nchw", False), ("channels_last", True)):
            r = bench_size(cfg, size, batch, cl, args.min_time)
            r["gflops_per_s"] = flops * r["img_per_s"] / 1e9
            row[name] = r
        rows.append(row)
        peaks.append(matmul_gflops(torch.float32, "cpu", min_time=0.5))  # re-measured: a shared machine's speed drifts
    # the reference is the best matmul rate seen in this run (the machine's practical fp32 peak)
    peak = max(peaks)
    for row in rows:
        for name in ("nchw", "channels_last"):
            row[name]["ratio_to_matmul"] = row[name]["gflops_per_s"] / peak

    header = (
        f"{'size':>5} {'batch':>5} {'GFLOP/img':>10} | {'img/s':>7} {'GFLOP/s':>8} {'of mm':>6} | "
        f"{'img/s CL':>8} {'GFLOP/s':>8} {'of mm':>6} | {'CL/NCHW':>7}"
    )
    lines = [
        f"seed U-Net {UNetConfig()} ",
        f"forward+backward, float32, CPU ({platform.processor() or platform.machine()}), "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}",
        f"fp32 matmul 1024x1024: {peak:.1f} GFLOP/s (fastest call, best of {len(peaks)} runs in this run; "
        f"'of mm' = achieved / this; CL = channels-last)",
        header,
        "-" * len(header),
    ]
    for row in rows:
        a, b = row["nchw"], row["channels_last"]
        lines.append(
            f"{row['size']:>5} {a['batch']:>5} {row['flops_fwd_bwd_per_img'] / 1e9:>10.2f} | "
            f"{a['img_per_s']:>7.2f} {a['gflops_per_s']:>8.1f} {a['ratio_to_matmul']:>6.1%} | "
            f"{b['img_per_s']:>8.2f} {b['gflops_per_s']:>8.1f} {b['ratio_to_matmul']:>6.1%} | "
            f"{b['img_per_s'] / a['img_per_s']:>7.2f}"
        )
    lines.append(f"fp32 matmul GFLOP/s, first and after each size (drift check): {', '.join(f'{p:.1f}' for p in peaks)}")
    load_after = os.getloadavg()[0]
    lines.append(f"1-min load average before / after: {load_before:.2f} / {load_after:.2f} (on {os.cpu_count()} CPUs)")
    print("\n".join(lines))

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "config": cfg.to_dict(),
        "parameters": UNet(cfg).num_parameters(),
        "device": "cpu",
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "matmul_gflops": peak,
        "matmul_gflops_measurements": peaks,
        "load_average_1min": [load_before, load_after],
        "rows": rows,
    }
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
