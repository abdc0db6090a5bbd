"""Helpers every benchmark shares: timing, the matmul reference rate, machine facts, tables, JSON.

One place for what each ``benchmarks/bench_*.py`` needs, so the numbers of different
benchmarks are measured the same way:

* ``timed(fn, ...)``: median (or fastest) seconds per call, after warm-up calls, with a
  device synchronisation around each call on a GPU;
* ``matmul_gflops(dtype, ...)``: the ``n x n`` matmul rate of this device in this run,
  the practical peak that achieved GFLOP/s are compared with (fp32, and bf16 where the
  hardware computes it natively);
* ``machine_info()``: CPU model, cores, threads, load average, torch version, GPU name;
* ``markdown_table(header, rows)`` and ``write_result(name, result)`` (``results/bench-<name>.json``).

Taught alongside ``05_training_unet`` (how fast is a training step, and why).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable, Sequence

import torch

__all__ = [
    "RESULTS_DIR",
    "sync",
    "timed",
    "matmul_gflops",
    "bf16_supported",
    "cpu_model",
    "machine_info",
    "machine_line",
    "markdown_table",
    "write_result",
    "find_faces",
]

RESULTS_DIR = Path("results")
SHARED_FACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "celebahq-5k"  # this project's machines


def sync(device: torch.device | str | None = None) -> None:
    """Wait for queued GPU work (no-op on CPU), so wall-clock times cover the work itself."""
    device = torch.device(device) if device is not None else None
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device is not None and device.type == "mps":
        torch.mps.synchronize()


def timed(fn: Callable[[], object], min_time: float = 1.0, min_iters: int = 3, warmup: int = 1,
          best: bool = False, device: torch.device | str | None = None, max_iters: int | None = None) -> float:
    """Median (or, with ``best``, the fastest) seconds per call of ``fn``: ``warmup`` untimed
    calls, then at least ``min_iters`` calls and ``min_time`` seconds (at most ``max_iters``)."""
    for _ in range(warmup):
        fn()
    sync(device)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_iters or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
        if max_iters is not None and len(times) >= max_iters:
            break
    return min(times) if best else statistics.median(times)


def bf16_supported(device: torch.device | str = "cpu") -> bool:
    """bf16 computed natively: CUDA GPUs from Ampere on, CPUs with AVX512-BF16 or AMX."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        from lib.runtime import cpu_has_native_bf16

        return cpu_has_native_bf16()
    return False


def matmul_gflops(dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu", n: int | None = None,
                  min_time: float = 1.0) -> float:
    """``n x n`` matmul GFLOP/s (2 n^3 FLOPs per product) of the fastest call: the practical peak
    of ``device`` in ``dtype`` (n: 1024 on CPU, 8192 on a GPU). TF32 stays off for fp32 here."""
    device = torch.device(device)
    n = n or (8192 if device.type == "cuda" else 1024)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    out = torch.empty(n, n, device=device, dtype=dtype)
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        sec = timed(lambda: torch.mm(a, b, out=out), min_time, min_iters=5, warmup=2, best=True, device=device)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    return 2 * n**3 / sec / 1e9


def cpu_model() -> str:
    """The CPU's marketing name (``model name`` of /proc/cpuinfo), else ``platform.processor()``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: torch.device | str = "cpu") -> dict:
    """Facts a reader needs to judge the numbers: hardware, threads, load, versions."""
    device = torch.device(device)
    info = {
        "device": str(device),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_native_bf16": bf16_supported("cpu"),
        "load_avg_1min": round(os.getloadavg()[0], 2),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


def machine_line(info: dict) -> str:
    """One line naming the machine, for the head of a table."""
    where = info.get("gpu") or f"{info['cpu']} ({info['cpu_count']} CPUs, {info['torch_threads']} torch threads)"
    return (f"{where}, torch {info['torch']}, 1-min load average {info['load_avg_1min']:.2f}"
            + (", native bf16" if info["device"] == "cpu" and info["cpu_native_bf16"] else ""))


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A markdown table (the format docs/performance.md quotes verbatim)."""
    lines = ["| " + " | ".join(str(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_result(name: str, result: dict, out: str | os.PathLike | None = None) -> Path:
    """Write ``result`` as JSON to ``out`` (default ``results/bench-<name>.json``); return the path."""
    path = Path(out) if out is not None else RESULTS_DIR / f"bench-{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=float) + "\n")
    return path


def find_faces(data: str | None = None) -> Path | None:
    """The face folder a benchmark reads: ``data``, ``$CELEBAHQ_DIR``, ``data/celeba_hq/``
    (``lib.data.resolve_data_root``), then ``../shared/data/celebahq-5k``; None: ToyFaces."""
    from lib.data import resolve_data_root

    root = resolve_data_root(data)
    if root is None and SHARED_FACES.is_dir():
        root = SHARED_FACES
    return root
