"""The training step of the seed configuration: img/s, FLOPs, achieved GFLOP/s, fast vs plain.

The step is ``lib.train.Trainer.train_step`` itself (``generator_step``, and
``discriminator_step`` for the GAN variant; U-Net ndims 16, depth 4, one ViT block; L1 +
VGG16 perceptual loss, alpha 100, beta 1, no discriminator; Adam), on
batches already in memory (the data loader is ``bench_profile``'s and ``bench_data``'s
business). Two paths side by side at each size, in the same run:

* **plain**: eager fp32, NCHW (``precision=fp32 channels_last=false compile=false``);
* **fast**: the trainer's defaults for the device (``precision/channels_last/compile``
  ``auto``: bf16 autocast where the hardware has it natively, channels-last, and
  ``torch.compile`` on CUDA), i.e. what ``python -m lib train`` does.

FLOPs per image come from ``torch.utils.flop_counter`` over one whole step (G forward and
backward, the VGG16 on the prediction (forward and backward) and on the target (forward);
a multiply-add counts 2); achieved GFLOP/s = FLOPs/img x img/s, compared with this device's
fp32 (and bf16) matmul rate measured in the same run. ``--options`` adds a table at one size
with each optimisation alone and combined (``--with-compile``: also the compiled variants,
minutes of compilation each on a CPU).

Run: ``python -m benchmarks.bench_train_step`` (``--help``). Prints the tables and writes
``results/bench-train-step.json``. Taught alongside ``05_training_unet``.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
import warnings

import torch
from torch.utils.data import Dataset

from benchmarks.common import bf16_supported, machine_info, machine_line, markdown_table, matmul_gflops, timed, write_result
from lib.models.summary import count_flops
from lib.runtime import pick_device
from lib.train import TrainConfig, Trainer

SEED_MODEL = {"ndims": 16, "depth": 4, "num_blocks": 1}  # configs/seed.yaml
DEFAULT_BATCH = {"cpu": 16, "cuda": 64}  # the batch sizes; other devices use the CPU one
PLAIN = {"precision": "fp32", "channels_last": False, "compile": False}
FAST = {"precision": "auto", "channels_last": None, "compile": None}  # the trainer's defaults


class RandomFaces(Dataset):
    """``n`` fixed random ``(L_n (1,S,S), ab_n (2,S,S))`` pairs: the step's cost does not depend
    on the pixels, and nothing has to be decoded. Taught with ``05_training_unet``."""

    def __init__(self, n: int, image_size: int, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.l = torch.rand(n, 1, image_size, image_size, generator=g) * 2 - 1  # (n, 1, S, S)
        self.ab = (0.3 * torch.randn(n, 2, image_size, image_size, generator=g)).clamp(-1, 1)  # (n, 2, S, S)
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.l)

    def __getitem__(self, i: int):
        return self.l[i], self.ab[i]


def make_trainer(size: int, batch: int, device: str = "cpu", theta: float = 0.0, datasets: dict | None = None,
                 **options) -> Trainer:
    """A ``Trainer`` of the seed configuration at ``size`` with ``options`` (precision,
    channels_last, compile, ...) on in-memory random faces (or ``datasets``)."""
    cfg = TrainConfig.from_dict({
        "dataset": "toy", "image_size": size, "batch_size": batch, "model": dict(SEED_MODEL), "device": device,
        "loss": {"pixel": "l1", "alpha": 100.0, "beta": 1.0, "theta": theta}, "workers": 0, "progress": False,
        "num_samples": 0, "test_at_end": False, "out_dir": tempfile.mkdtemp(prefix="bench_step_"),
        "threads": torch.get_num_threads(), **options})  # the benchmark's threads, not auto
    if datasets is None:
        small = RandomFaces(2, size, seed=1)
        datasets = {"train": RandomFaces(batch, size), "val": small, "test": small}
    return Trainer(cfg, datasets=datasets)


def first_batch(tr: Trainer):
    """One training batch, pinned on the host for a GPU (the step copies it as training does)."""
    l_n, ab_n = next(iter(tr.train_loader))
    return l_n, ab_n


def time_step(tr: Trainer, batch, min_time: float, warmup: int, max_iters: int | None = None) -> dict:
    """Seconds per ``train_step`` (median after ``warmup`` steps; the first ones include
    torch.compile's compilation, reported separately)."""

    def step():
        tr.train_step(*batch)  # its records end with .tolist(): the device has finished the step

    t0 = time.perf_counter()
    step()
    first = time.perf_counter() - t0
    sec = timed(step, min_time=min_time, min_iters=3, warmup=max(0, warmup - 1), device=tr.device, max_iters=max_iters)
    return {"seconds_per_step": sec, "img_per_s": tr.local_batch / sec, "first_step_s": first,
            "precision": tr.precision, "channels_last": tr.channels_last, "compile": tr.compile}


def flops_per_image(size: int, device: str = "cpu", batch: int = 2, theta: float = 0.0) -> int:
    """FLOPs of one training step per image (eager fp32; ``torch.utils.flop_counter``)."""
    tr = make_trainer(size, batch, device, theta=theta, **PLAIN)
    l_n, ab = first_batch(tr)
    return count_flops(lambda: tr.train_step(l_n, ab)) // batch


def _describe(r: dict) -> str:
    return (f"{r['precision']}{' CL' if r['channels_last'] else ''}{' compiled' if r['compile'] else ''}")


def _measure_row(size: int, batch: int, dev: torch.device, min_time: float, max_iters: int | None,
                 theta: float = 0.0) -> dict:
    """Plain and fast paths at one size, side by side (``theta > 0``: the GAN variant)."""
    flops = flops_per_image(size, str(dev), theta=theta)
    row = {"size": size, "batch": batch, "theta": theta, "flops_per_img": flops}
    for name, opts in (("plain", PLAIN), ("fast", FAST)):
        tr = make_trainer(size, batch, str(dev), theta=theta, **opts)
        warmup = (3 if dev.type == "cuda" else 1) if name == "fast" else 1  # compiled/autotuned steps need a few
        r = time_step(tr, first_batch(tr), min_time, warmup, max_iters)
        r["gflops_per_s"] = flops * r["img_per_s"] / 1e9
        row[name] = r
        del tr
    row["speedup"] = row["fast"]["img_per_s"] / row["plain"]["img_per_s"]
    return row


def _before_rows(size: int, batch: int, dev: torch.device, min_time: float, max_iters: int | None,
                 precision: str) -> list[dict]:
    """The fast eager path with one of this project's optimisations undone, for a side-by-side
    "before": the VGG16 of the perceptual loss left in NCHW while the networks are channels-last,
    and the feature L1 through ``F.l1_loss`` (autocast copies bf16 features to fp32 first)."""
    import torch.nn.functional as F

    rows = []
    for what in ("VGG16 kept NCHW (before)", "feature L1 in fp32 via autocast (before)"):
        tr = make_trainer(size, batch, str(dev), precision=precision, channels_last=True, compile=False)
        if what.startswith("VGG16"):
            tr.criterion.to(memory_format=torch.contiguous_format)
        elif tr.criterion.perceptual is not None:
            tr.criterion.perceptual._dist = F.l1_loss
        r = time_step(tr, first_batch(tr), min_time, 1, max_iters)
        r["variant"] = what
        rows.append(r)
        del tr
    return rows


def run(sizes=(64, 128, 256), batch: int | None = None, device: str = "auto", min_time: float = 4.0,
        options: bool = False, options_size: int = 128, with_compile: bool = False, max_iters: int | None = None,
        gan: bool = False) -> dict:
    """Measure everything; returns the result dict (see ``format_tables``)."""
    dev = pick_device(device)
    batch = batch or DEFAULT_BATCH.get(dev.type, 16)
    info = machine_info(dev)
    has_bf16 = bf16_supported(dev)
    peaks = {"fp32": [matmul_gflops(torch.float32, dev)]}
    if has_bf16:
        peaks["bf16"] = [matmul_gflops(torch.bfloat16, dev)]
    rows = []
    for size in sizes:
        rows.append(_measure_row(size, batch, dev, min_time, max_iters))
        peaks["fp32"].append(matmul_gflops(torch.float32, dev, min_time=0.5))  # drift check on a shared machine
    gan_rows = [_measure_row(options_size, batch, dev, min_time, max_iters, theta=0.08)] if gan else []
    option_rows = []
    if options:
        precisions = ["fp32"] + (["bf16"] if has_bf16 else [])
        compiles = [False, True] if with_compile else [False]
        for comp, prec, cl in itertools.product(compiles, precisions, (False, True)):
            tr = make_trainer(options_size, batch, str(dev), precision=prec, channels_last=cl, compile=comp)
            r = time_step(tr, first_batch(tr), min_time, 3 if comp else 1, max_iters)
            option_rows.append(r)
            del tr
        if has_bf16 or dev.type == "cuda":  # this project's own changes, undone one at a time ("before")
            option_rows += _before_rows(options_size, batch, dev, min_time, max_iters,
                                        "bf16" if has_bf16 else "fp32")
        base = option_rows[0]["img_per_s"]
        for r in option_rows:
            r["speedup"] = r["img_per_s"] / base
    peak = {k: max(v) for k, v in peaks.items()}
    for row in rows + gan_rows:
        for name in ("plain", "fast"):
            for k, p in peak.items():
                row[name][f"of_{k}_mm"] = row[name]["gflops_per_s"] / p
    info["load_avg_1min_end"] = round(__import__("os").getloadavg()[0], 2)
    return {"benchmark": "train_step", "machine": info, "batch": batch, "min_time_s": min_time,
            "config": {"model": SEED_MODEL, "loss": "100 * L1 + 1 * VGG16 perceptual (relu1_2, relu2_2, relu3_3)",
                       "discriminator": None, "optimizer": "Adam"},
            "matmul_gflops": peak, "matmul_gflops_measurements": peaks, "rows": rows, "gan_rows": gan_rows,
            "options_size": options_size if options else None, "options": option_rows}


def format_tables(result: dict) -> str:
    """The step table (and the options table when measured), markdown."""
    peak = result["matmul_gflops"]
    kinds = [k for k in ("fp32", "bf16") if k in peak]
    header = ["size", "batch", "GFLOP/img", "plain img/s", "plain GFLOP/s", "fast path", "fast img/s", "fast GFLOP/s"]
    header += [f"fast / {k} mm" for k in kinds] + ["fast / plain"]
    body = []
    for r in result["rows"] + result.get("gan_rows", []):
        p, f = r["plain"], r["fast"]
        body.append([f"{r['size']}" + (" GAN" if r.get("theta") else ""), r["batch"], f"{r['flops_per_img'] / 1e9:.1f}", f"{p['img_per_s']:.2f}",
                     f"{p['gflops_per_s']:.0f}", _describe(f), f"{f['img_per_s']:.2f}", f"{f['gflops_per_s']:.0f}"]
                    + [f"{f[f'of_{k}_mm']:.0%}" for k in kinds] + [f"**{r['speedup']:.2f}x**"])
    mm = ", ".join(f"{k} {peak[k]:.0f} GFLOP/s" for k in kinds)
    text = (f"Training step of the seed config (L1 + VGG16 perceptual, Adam), "
            f"{machine_line(result['machine'])}\nmatmul reference (fastest call, this run): {mm}; "
            f"plain = eager fp32 NCHW; fast = the trainer's defaults; median step time"
            + ("; GAN = the l1_p_g variant (+ PatchGAN, theta 0.08)" if result.get("gan_rows") else "") + "\n")
    text += markdown_table(header, body)
    if result["options"]:
        text += f"\n\nEach option at {result['options_size']}x{result['options_size']}, batch {result['batch']}\n"
        text += markdown_table(
            ["precision", "channels-last", "compile", "img/s", "s/step", "first step (s)", "vs eager fp32 NCHW"],
            [[r["precision"], ("yes" if r["channels_last"] else "no") + (f", {r['variant']}" if "variant" in r else ""),
              "yes" if r["compile"] else "no",
              f"{r['img_per_s']:.2f}", f"{r['seconds_per_step']:.3f}", f"{r['first_step_s']:.1f}",
              f"{r['speedup']:.2f}x"] for r in result["options"]])
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_train_step", description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    p.add_argument("--batch", type=int, default=None, help="batch size (default 16 on CPU, 64 on a GPU)")
    p.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda")
    p.add_argument("--min-time", type=float, default=4.0, help="seconds of timed steps per measurement")
    p.add_argument("--max-iters", type=int, default=None, help="at most this many timed steps per measurement")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--options", action="store_true", help="also time each optimisation alone and combined")
    p.add_argument("--options-size", type=int, default=128)
    p.add_argument("--with-compile", action="store_true", help="include torch.compile in --options (slow on CPU)")
    p.add_argument("--gan", action="store_true", help="also the GAN variant (theta 0.08) at --options-size")
    p.add_argument("--out", default=None, help="JSON path (default results/bench-train-step.json)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message=".*TF32.*")
    result = run(args.sizes, args.batch, args.device, args.min_time, args.options, args.options_size,
                 args.with_compile, args.max_iters, args.gan)
    print(format_tables(result))
    print(f"wrote {write_result('train-step', result, args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
