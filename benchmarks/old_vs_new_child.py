"""One side of ``bench_old_vs_new``: time the training step and batch inference of whichever
``lib`` is first on ``PYTHONPATH`` (the old tree or the new one), print one JSON line.

Run only by ``python -m benchmarks.bench_old_vs_new``, as a script (not ``-m``), so that
``lib`` comes from ``PYTHONPATH`` and not from this file's repository. Both trees are driven
through their own public API with the same work: the seed model (U-Net ndims 16, depth 4,
one ViT block), 100 L1 + 1 VGG16 perceptual, Adam, no discriminator, the trainer's default
(fast) settings for the CPU, on fixed in-memory random batches:

* old main: ``Trainer.set_input(batch); Trainer.optimize_parameters()``;
* new: ``Trainer.train_step(l_n, ab)`` (``discriminator_step``/``generator_step``).

Inference: the U-Net forward in eval mode under ``inference_mode`` (batch of L), and
``lib.colorize.colorize_batch`` on the same number of uint8 face-sized images (the old one
returns float RGB tensors, the new one uint8 arrays after gamut mapping). Taught alongside
``05_training_unet``.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import statistics
import tempfile
import time

import torch

import lib
from lib.colorize import colorize_batch
from lib.train import TrainConfig, Trainer

SEED_MODEL = {"ndims": 16, "depth": 4, "num_blocks": 1}  # configs/seed.yaml


class RandomFaces(torch.utils.data.Dataset):
    """``n`` fixed random ``(l_n (1,S,S), ab_n (2,S,S))`` pairs (the step's cost does not depend on pixels)."""

    def __init__(self, n: int, size: int, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.l = torch.rand(n, 1, size, size, generator=g) * 2 - 1  # (n, 1, S, S)
        self.ab = (0.3 * torch.randn(n, 2, size, size, generator=g)).clamp(-1, 1)  # (n, 2, S, S)

    def __len__(self) -> int:
        return len(self.l)

    def __getitem__(self, i: int):
        return self.l[i], self.ab[i]


def make_trainer(size: int, batch: int, threads: int) -> tuple[Trainer, str]:
    """The seed config's Trainer in this tree's config layout (flat in old main, nested in the new)."""
    common = {"dataset": "toy", "image_size": size, "batch_size": batch, "device": "cpu", "workers": 0,
              "threads": threads, "progress": False, "num_samples": 0, "test_at_end": False, "seed": 0,
              "out_dir": tempfile.mkdtemp(prefix="bench_old_vs_new_")}
    loss = {"pixel": "l1", "alpha": 100.0, "beta": 1.0, "theta": 0.0}
    nested = "loss" in {f.name for f in dataclasses.fields(TrainConfig)}
    cfg = TrainConfig.from_dict({**common, "model": dict(SEED_MODEL), **({"loss": loss} if nested else loss)})
    small = RandomFaces(2, size, seed=1)
    tr = Trainer(cfg, datasets={"train": RandomFaces(batch, size), "val": small, "test": small})
    return tr, "new" if hasattr(tr, "train_step") else "old"


def median_seconds(fn, warmup: int, iters: int) -> tuple[float, list[float], float]:
    """Median wall seconds per call, all of them, and the median CPU seconds of this process
    per call (on one thread: the work itself, much less moved by other processes sharing the core)."""
    for _ in range(warmup):
        fn()
    times, cpu = [], []
    for _ in range(iters):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(times), times, statistics.median(cpu)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=3, help="timed training steps (after one warm-up step)")
    p.add_argument("--infer-iters", type=int, default=5, help="timed inference calls (after one warm-up call)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    tr, api = make_trainer(args.size, args.batch, args.threads)
    l_n, ab = next(iter(tr.train_loader))  # (B, 1, S, S), (B, 2, S, S)
    if api == "new":
        def step():
            g, _ = tr.train_step(l_n, ab)
            return g.loss
    else:
        def step():
            tr.set_input((l_n, ab))
            return tr.optimize_parameters()["loss_G"]
    train_s, train_all, train_cpu = median_seconds(step, 1, args.steps)
    fast_path = {"precision": tr.precision, "channels_last": tr.channels_last, "compile": tr.compile,
                 "threads": torch.get_num_threads()}

    model = tr.G.eval()  # the trained-for-a-few-steps seed U-Net, in the trainer's memory format
    x = l_n.to(memory_format=torch.channels_last) if tr.channels_last else l_n  # (B, 1, S, S)

    def forward():
        with torch.inference_mode():
            return model(x)  # (B, 2, S, S)

    fwd_s, fwd_all, fwd_cpu = median_seconds(forward, 1, args.infer_iters)
    g = torch.Generator().manual_seed(2)
    images = [torch.randint(0, 256, (3, args.size, args.size), generator=g, dtype=torch.uint8) for _ in range(args.batch)]
    old_colorize = next(iter(inspect.signature(colorize_batch).parameters)) == "model"  # old: (model, images, size, batch_size)
    if old_colorize:
        def colorize():
            return colorize_batch(model, images, size=args.size, batch_size=args.batch)
    else:
        def colorize():
            return colorize_batch(images, model, size=args.size, batch_size=args.batch)
    col_s, col_all, col_cpu = median_seconds(colorize, 1, args.infer_iters)
    print(json.dumps({"api": api, "lib": lib.__file__, "torch": torch.__version__, "fast_path": fast_path,
                      "size": args.size, "batch": args.batch, "train_step_s": train_s, "train_step_all_s": train_all,
                      "train_step_cpu_s": train_cpu, "forward_s": fwd_s, "forward_all_s": fwd_all, "forward_cpu_s": fwd_cpu,
                      "colorize_batch_s": col_s, "colorize_batch_all_s": col_all, "colorize_batch_cpu_s": col_cpu}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
