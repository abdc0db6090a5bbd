"""Where and how a run computes: device, precision, memory format, threads, compile,
seeding and RNG state, and the process's place in a ``torchrun`` job.

Taught in ``05_training_unet``. Each ``resolve_*`` turns a config value (often
``auto``) into the concrete choice for the device, the fastest correct one measured
(docs/performance.md); :func:`setup_runtime` makes all of a trainer's choices at once.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import os
import random
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from lib.errors import ConfigError

__all__ = ["pick_device", "cpu_has_native_bf16", "resolve_precision", "resolve_channels_last", "resolve_threads",
           "apply_threads", "resolve_compile", "seed_everything", "worker_init", "rng_state", "set_rng_state",
           "DistInfo", "EpochSampler", "DTYPES", "on_stop_signals", "for_device", "Runtime", "setup_runtime", "autocast"]


def pick_device(requested: str = "auto", local_rank: int = 0) -> torch.device:
    """The device, chosen once: ``auto`` means cuda > mps > cpu. Taught in ``05_training_unet``."""
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(requested)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("option 'device' is 'cuda' but no CUDA GPU is available; use auto or cpu")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("option 'device' is 'mps' but MPS is not available; use auto or cpu")
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", local_rank)
    return dev


def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bf16 natively (AVX512-BF16 or AMX), where bf16 autocast pays."""
    for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        fn = getattr(torch.cpu, name, None)
        try:
            if fn is not None and fn():
                return True
        except Exception:  # noqa: BLE001: a private probe; absent or failing means no
            pass
    return False


def resolve_precision(requested: str, device: torch.device) -> str:
    """The training precision for this device: ``fp32``, ``bf16`` or ``fp16``.

    ``auto``: bf16 autocast on GPUs that support it (Ampere and later), fp16 with a
    ``GradScaler`` on older GPUs; on CPU bf16 autocast where the CPU has native bf16
    (AVX512-BF16 / AMX: measured 1.3x faster per step than fp32 for the seed model at
    64x64 on such a CPU, with the same val PSNR after 150 steps), fp32 elsewhere (emulated
    bf16 is slower); fp32 on MPS. Evaluation always runs in fp32.
    """
    if requested == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        if device.type == "cpu" and cpu_has_native_bf16():
            return "bf16"
        return "fp32"
    if requested == "fp16" and device.type == "cpu":
        raise ConfigError("option 'precision' is 'fp16', which needs a GPU; on CPU use fp32 or bf16")
    if requested == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError("option 'precision' is 'bf16' but this GPU does not support it; use fp16 or auto")
    return requested


def resolve_channels_last(requested: bool | None, device: torch.device) -> bool:
    """Channels-last (NHWC) memory format for the networks and the perceptual loss's VGG.

    ``None`` (auto): on for CUDA (tensor-core convolutions want NHWC) and CPU (oneDNN runs
    NHWC convolutions and pooling without reorders; the seed training step at 128x128
    measured faster so on the 2-core test machine, docs/performance.md); off on MPS (not
    measured). Taught in ``05_training_unet``.
    """
    return bool(requested) if requested is not None else device.type in ("cuda", "cpu")


_DEFAULT_THREADS = torch.get_num_threads()  # torch's own choice (one per core, or $OMP_NUM_THREADS), read at import
_AUTO_THREADS: int | None = None  # the thread count a trainer last chose automatically (not the user's own setting)


def resolve_threads(requested: int, device: torch.device) -> int:
    """Torch CPU threads for a run: ``requested`` when > 0, else (auto) one per core that is
    not already busy.

    OpenMP threads meet at a barrier after every operator; when another process holds one of
    the cores, each barrier waits for a descheduled thread. On the 2-core test machine with
    one other busy process, the seed step at 64x64 took 0.40 s on one thread and 9.7 s on two
    (docs/performance.md). Auto counts the busy cores as the smaller of the 1-minute load
    average and the processes running right now besides this one (``/proc/loadavg``; the
    load average alone would also count this process's own earlier work). It never goes
    above the current ``torch.get_num_threads()`` a user set (only above what an earlier
    auto choice lowered it to), and keeps it when nothing else runs. On a GPU run the CPU
    only feeds data: the current setting is kept. Taught in ``05_training_unet``.
    """
    if requested > 0:
        return requested
    current = torch.get_num_threads()
    default = _DEFAULT_THREADS if current == _AUTO_THREADS else current
    if device.type != "cpu":
        return current
    try:
        load = os.getloadavg()[0]
        with open("/proc/loadavg") as f:
            running_others = int(f.read().split()[3].split("/")[0]) - 1  # this process is running
        busy = min(load, max(running_others, 0))
    except (OSError, ValueError, IndexError, AttributeError):
        return default
    return max(1, min(default, int(default - busy + 0.5)))


def apply_threads(requested: int, device: torch.device) -> int:
    """Set torch's CPU threads to ``resolve_threads(requested, device)`` and return the count.

    An automatic choice (``requested == 0``) is remembered, so a later automatic choice may
    go back up to torch's default instead of staying at what this one lowered it to.
    """
    global _AUTO_THREADS
    threads = resolve_threads(requested, device)
    if threads != torch.get_num_threads():
        torch.set_num_threads(threads)
        if not requested:
            _AUTO_THREADS = threads
    return threads


def resolve_compile(requested: bool | None, device: torch.device) -> bool:
    """Whether to ``torch.compile`` the networks.

    ``None`` (auto): on for CUDA when Triton is importable (fused element-wise kernels; the
    first steps compile for a minute or two); off on CPU, where the seed step with bf16 and
    channels-last measured no faster compiled (docs/performance.md), and off on MPS.
    Taught in ``05_training_unet``.
    """
    if requested is not None:
        return bool(requested)
    if device.type != "cuda":
        return False
    return importlib.util.find_spec("triton") is not None


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def seed_everything(seed: int) -> None:
    """Seed python's ``random``, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def worker_init(worker_id: int) -> None:
    """Seed numpy and ``random`` in a DataLoader worker from torch's per-worker seed."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def rng_state() -> dict:
    """Python, numpy, torch (and CUDA) RNG states as tensors and plain values (a checkpoint's ``rng``)."""
    keys = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"keys": torch.from_numpy(keys[1].astype(np.int64)), "pos": int(keys[2]),
                  "has_gauss": int(keys[3]), "cached_gaussian": float(keys[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore :func:`rng_state` (an exact resume continues the same random streams)."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        with contextlib.suppress(Exception):
            torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class DistInfo:
    """Where this process stands in a ``torchrun`` job (world_size 1 = a plain run)."""

    rank: int = 0  # global rank of this process
    local_rank: int = 0  # rank on this machine (picks the GPU)
    world_size: int = 1  # number of processes

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> "DistInfo":
        """Read ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` as set by ``torchrun``."""
        return cls(int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)),
                   int(os.environ.get("WORLD_SIZE", 1)))

    def init_process_group(self, device: torch.device) -> None:
        """Join the ``torchrun`` job (nccl on GPUs, gloo on CPU); nothing for a plain run."""
        if self.enabled and not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=self.rank,
                                    world_size=self.world_size)

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def all_reduce(self, t: Tensor, op: str = "sum") -> Tensor:
        """Sum (or max) ``t`` over the ranks in place; unchanged in a plain run."""
        if self.enabled:
            dist.all_reduce(t, op={"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}[op])
        return t


@contextlib.contextmanager
def on_stop_signals(handler: Callable[[str], None]):
    """Call ``handler("SIGINT" | "SIGTERM")`` when this process gets one inside the block, instead
    of dying (the training loop then finishes its step and saves). DataLoader workers inherit
    the handler but ignore it; the previous handlers come back after the block. Outside the
    main thread (where Python cannot catch signals) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pid = os.getpid()

    def on_signal(signum, frame):
        if os.getpid() == pid:
            handler(signal.Signals(signum).name)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def for_device(net: nn.Module | None, device: torch.device, info: DistInfo, compile: bool) -> nn.Module | None:
    """What a training step calls: ``net`` (already on ``device``) in DistributedDataParallel
    under ``torchrun``, then compiled with ``torch.compile`` when asked; the plain module keeps the weights."""
    if net is not None and info.enabled:
        net = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    return torch.compile(net) if net is not None and compile else net


class EpochSampler(torch.utils.data.DistributedSampler):
    """This rank's share of an epoch in an order fixed by ``(seed, epoch)`` (also for one
    process), from sample ``start`` on: a run resumed mid-epoch sees what an uninterrupted one would."""

    start = 0

    def __iter__(self):
        return itertools.islice(super().__iter__(), self.start, None)

    def __len__(self) -> int:
        return self.num_samples - self.start


class Runtime(NamedTuple):
    """Where and how one training process computes, resolved from its config by :func:`setup_runtime`."""

    device: torch.device
    precision: str  # fp32, bf16 or fp16 (fp16 with a GradScaler)
    amp_dtype: torch.dtype | None  # the autocast dtype; None for fp32
    channels_last: bool  # networks and inputs in NHWC
    compile: bool  # torch.compile the networks
    threads: int  # torch CPU threads


def setup_runtime(cfg, info: DistInfo) -> Runtime:
    """Resolve a config's ``device``, ``precision``, ``channels_last``, ``compile`` and ``threads``
    for this process and apply them: join the ``torchrun`` job, set torch's threads and, on CUDA,
    the current device, cuDNN autotuning and TF32. Taught in ``05_training_unet``."""
    device = pick_device(cfg.device, info.local_rank)
    info.init_process_group(device)
    precision = resolve_precision(cfg.precision, device)
    threads = apply_threads(cfg.threads, device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    return Runtime(device, precision, None if precision == "fp32" else DTYPES[precision],
                   resolve_channels_last(cfg.channels_last, device), resolve_compile(cfg.compile, device), threads)


def autocast(device: torch.device, dtype: torch.dtype | None):
    """``torch.autocast`` to ``dtype`` on ``device``; a block that changes nothing when ``dtype`` is None (fp32)."""
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)
