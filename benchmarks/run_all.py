"""Every benchmark in one command (``make bench``), each printing its table and writing
``results/bench-<name>.json``; under 10 minutes on 2 CPU cores.

In order: the training step (fast vs plain at 64/128/256, each option alone at 128), the
profile of a step (perceptual loss, generator, discriminator, data loader), inference (a
batch of 64 faces at 256x256, one 1024x1024 photo at full resolution), data loading
(epochs 1 and 2 with and without the uint8 cache), the U-Net alone (NCHW vs channels-last)
and the colour conversion (lib.color vs scikit-image). Each runs in its own process with
the same number of torch threads: ``--threads``, by default what the trainer would choose
(``lib.runtime.resolve_threads``: one per core not busy with other processes), so a busy
shared machine does not turn the numbers into a measure of OpenMP threads waiting.

Run: ``python -m benchmarks.run_all [--only train_step,profile] [--threads N]``; also
writes ``results/bench-run-all.json`` (the wall time of each part, the machine, the load).
Taught alongside ``05_training_unet``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import torch

from benchmarks.common import find_faces, machine_info, machine_line, markdown_table, write_result
from lib.runtime import resolve_threads

# name -> (module, arguments): sized so that the whole suite stays under 10 minutes on 2 cores
BENCHMARKS = {
    "train_step": ("benchmarks.bench_train_step", ["--options", "--gan", "--min-time", "4", "--max-iters", "6"]),
    "profile": ("benchmarks.bench_profile", ["--size", "128", "--batch", "16", "--steps", "3"]),
    "inference": ("benchmarks.bench_inference", ["--min-time", "2"]),
    "data": ("benchmarks.bench_data", ["--n", "256", "--epochs", "1"]),
    "model": ("benchmarks.bench_model", ["--min-time", "2"]),
    "color": ("benchmarks.bench_color", ["--repeats", "2"]),
}
QUICK = {  # a smoke run of the same code (seconds), for checking the suite itself
    "train_step": ["--sizes", "32", "--batch", "2", "--min-time", "0", "--max-iters", "1", "--options",
                   "--options-size", "32", "--gan"],
    "profile": ["--size", "32", "--batch", "2", "--steps", "1", "--images", "8"],
    "inference": ["--batch", "2", "--size", "32", "--photo", "64", "--model-size", "32", "--min-time", "0"],
    "data": ["--n", "16", "--epochs", "1"],
    "model": ["--sizes", "32", "--min-time", "0"],
    "color": ["-n", "2", "--size", "32", "--repeats", "1"],
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run_all", description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default=None, help=f"comma list of {', '.join(BENCHMARKS)} (default: all)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads of every benchmark (default: lib.runtime.resolve_threads, as the trainer)")
    p.add_argument("--quick", action="store_true", help="tiny settings: checks that every benchmark runs")
    p.add_argument("--out-dir", default="results", help="folder of the JSON results (default results/)")
    args = p.parse_args(argv)
    names = [n.strip() for n in args.only.split(",")] if args.only else list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        p.error(f"--only: unknown {unknown}; choose from {list(BENCHMARKS)}")
    threads = args.threads or resolve_threads(0, torch.device("cpu"))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "KINETO_LOG_LEVEL": "5"}
    torch.set_num_threads(threads)
    faces = find_faces()  # real faces for the loader benchmarks when there are some
    before = machine_info("cpu")
    print(f"[bench] {machine_line(before)}; every benchmark on {threads} torch thread(s)", flush=True)
    parts, failed = [], []
    t_all = time.perf_counter()
    for name in names:
        module, extra = BENCHMARKS[name]
        extra = QUICK[name] if args.quick else extra
        cmd = [sys.executable, "-m", module, *extra, "--out", os.path.join(args.out_dir, f"bench-{name.replace('_', '-')}.json")]
        if "--threads" in _options_of(module):
            cmd += ["--threads", str(threads)]
        if name in ("profile", "data") and faces is not None:
            cmd += ["--data", str(faces)]
        print(f"\n[bench] === {name}: {' '.join(cmd[1:])}", flush=True)
        t0 = time.perf_counter()
        code = subprocess.call(cmd, env=env)
        sec = time.perf_counter() - t0
        parts.append({"benchmark": name, "seconds": round(sec, 1), "exit_code": code,
                      "load_avg_1min_after": round(os.getloadavg()[0], 2)})
        if code:
            failed.append(name)
    total = time.perf_counter() - t_all
    print("\n[bench] wall time per benchmark\n" + markdown_table(
        ["benchmark", "seconds", "exit", "1-min load after"],
        [[x["benchmark"], f"{x['seconds']:.0f}", x["exit_code"], f"{x['load_avg_1min_after']:.2f}"] for x in parts]
        + [["**all**", f"**{total:.0f}**", len(failed), ""]]))
    path = write_result("run-all", {"machine_before": before, "threads": threads, "quick": args.quick, "parts": parts,
                                    "total_s": round(total, 1), "failed": failed},
                        os.path.join(args.out_dir, "bench-run-all.json"))
    print(f"[bench] {total / 60:.1f} min in all; wrote {path}" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def _options_of(module: str) -> str:
    """The source of a benchmark module (to see whether it takes ``--threads``)."""
    import importlib.util

    spec = importlib.util.find_spec(module)
    return open(spec.origin).read() if spec and spec.origin else ""


if __name__ == "__main__":
    raise SystemExit(main())
