"""Where a training step's time goes: data loader, generator, perceptual loss, discriminator.

``torch.profiler`` over a few steps of the trainer, each part of the step inside its own
``record_function`` label. The step is the GAN variant of the seed config (``l1_p_g``:
U-Net ndims 16, depth 4, one ViT block; 100 L1 + 1 VGG16 perceptual + 0.08 LSGAN with a
PatchGAN) with the trainer's default (fast) settings for the device, fed by the real
``DataLoader`` (the uint8-prepared face folder when one is found, else ToyFaces). The D
update is ``lib.train.discriminator_step`` itself. To give the perceptual loss and the
adversarial term their own share of the backward pass, the generator step is cut at
``ab_hat`` (the chain rule makes this the same computation as ``generator_step``): each loss
term is computed on a detached copy of ``ab_hat`` and back-propagated to it (its "fwd +
bwd"), then the summed gradient goes back through the generator ("generator backward").

Run: ``python -m benchmarks.bench_profile [--data DIR]``. Prints the share table and the
operators that dominate, and writes ``results/bench-profile.json``.
Taught alongside ``05_training_unet`` and ``06_gan_training``.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from benchmarks.bench_train_step import make_trainer
from benchmarks.common import find_faces, machine_info, machine_line, markdown_table, sync, write_result
from lib.data import DataWarning, ToyFaces, open_splits
from lib.train import discriminator_step

PARTS = (
    "data loader (next batch)",
    "copy to device",
    "generator forward",
    "discriminator update (fwd + bwd + Adam)",
    "pixel loss (fwd + bwd)",
    "perceptual loss (VGG16 fwd + bwd)",
    "adversarial term for G (D fwd + bwd)",
    "generator backward",
    "generator Adam step",
)


def profiled_step(tr, it) -> None:
    """One optimisation step of ``tr`` cut into the labelled parts of ``PARTS`` (bf16 or fp32:
    the fp16 gradient scaler of older GPUs is left out)."""
    dev, crit = tr.device, tr.criterion
    fmt = torch.channels_last if tr.channels_last else torch.contiguous_format

    def part(i):
        return record_function(PARTS[i])

    def autocast():
        return torch.autocast(dev.type, dtype=tr.amp_dtype, enabled=tr.amp_dtype is not None)

    with part(0):
        l_n, ab = next(it)
    with part(1):
        l_n = l_n.to(dev, non_blocking=True).contiguous(memory_format=fmt)  # (B, 1, H, W)
        ab = ab.to(dev, non_blocking=True).contiguous(memory_format=fmt)  # (B, 2, H, W)
        sync(dev)
    tr.G.train()
    with part(2):
        with autocast():
            ab_hat = tr.G_run(l_n)  # (B, 2, H, W), attached to G's graph
        sync(dev)
    if tr.D is not None:
        with part(3):
            tr.D.train()
            discriminator_step(tr.D_run, tr.opt_D, crit.gan, (l_n, ab), ab_hat, grad_clip=tr.cfg.grad_clip,
                               amp_dtype=tr.amp_dtype)
            sync(dev)
    tr.opt_G.zero_grad(set_to_none=True)
    leaf = ab_hat.detach().requires_grad_()  # (B, 2, H, W): each loss term back-propagates to here
    with part(4):
        with autocast():
            pixel = crit.alpha * crit.pixel(leaf, ab)
        pixel.backward()
        sync(dev)
    if crit.perceptual is not None:
        with part(5):
            with autocast():
                perc = crit.beta * crit.perceptual(l_n, leaf, ab)
            perc.backward()
            sync(dev)
    if tr.D is not None and crit.theta > 0:
        with part(6):
            tr.D.requires_grad_(False)  # frozen, as in generator_step
            with autocast():
                adv = crit.theta * crit.gan.generator_loss(tr.D(l_n, leaf))
            adv.backward()
            tr.D.requires_grad_(True)
            sync(dev)
    with part(7):
        ab_hat.backward(leaf.grad.to(ab_hat.dtype))
        sync(dev)
    with part(8):
        if tr.cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(tr.G.parameters(), tr.cfg.grad_clip)
        tr.opt_G.step()
        sync(dev)


def make_loader_sets(size: int, n: int, data: str | None):
    """Train/val/test sets for the profile: the prepared face folder (``n`` train images) or ToyFaces."""
    root = find_faces(data)
    if root is None:
        toy = ToyFaces(num_images=n, image_size=size, split="train")
        small = ToyFaces(num_images=16, image_size=size, split="val")
        return {"train": toy, "val": small, "test": small}, "ToyFaces (drawn on the fly)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        train = open_splits(root, "folder", size, ("train",), max_images=n, progress=False)[0]["train"]
        val = open_splits(root, "folder", size, ("val",), max_images=16, progress=False)[0]["val"]
    return {"train": train, "val": val, "test": val}, f"{root.name}, {len(train)} train images, uint8 cache"


def run(size: int = 128, batch: int = 16, steps: int = 4, theta: float = 0.08, n_images: int = 256,
        data: str | None = None, device: str = "auto", **options) -> dict:
    sets, desc = make_loader_sets(size, max(n_images, batch * (steps + 2)), data)
    tr = make_trainer(size, batch, device, theta=theta, datasets=sets, **options)
    it = iter(tr.train_loader)
    profiled_step(tr, it)  # warm-up: allocations, oneDNN primitives, autotuning
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if tr.device.type == "cuda" else [])
    t0 = time.perf_counter()
    with profile(activities=activities) as prof:
        for _ in range(steps):
            profiled_step(tr, it)
    wall = (time.perf_counter() - t0) / steps
    events = {e.key: e for e in prof.key_averages()}
    parts = []
    for name in PARTS:
        e = events.get(name)
        if e is not None:
            parts.append({"part": name, "ms_per_step": e.cpu_time_total / 1e3 / steps})
    total = sum(p["ms_per_step"] for p in parts)
    for p in parts:
        p["share"] = p["ms_per_step"] / total
    top = sorted((e for e in prof.key_averages() if e.key not in PARTS and not e.key.startswith("ProfilerStep")),
                 key=lambda e: e.self_cpu_time_total, reverse=True)[:12]
    ops = [{"op": e.key, "self_ms_per_step": e.self_cpu_time_total / 1e3 / steps, "calls_per_step": e.count / steps,
            "self_share": e.self_cpu_time_total / 1e3 / steps / total} for e in top]
    return {"benchmark": "profile", "machine": machine_info(tr.device), "size": size, "batch": batch, "steps": steps,
            "theta": theta, "data": desc, "precision": tr.precision, "channels_last": tr.channels_last,
            "compile": tr.compile, "wall_ms_per_step": wall * 1e3, "profiled_ms_per_step": total,
            "img_per_s_profiled": batch / wall, "parts": parts, "top_ops": ops}


def format_tables(r: dict) -> str:
    variant = f"l1_p_g (theta {r['theta']})" if r["theta"] > 0 else "l1_p (seed, no discriminator)"
    head = (f"Profile of the {variant} training step at {r['size']}x{r['size']}, batch {r['batch']}, {r['precision']}"
            f"{' channels-last' if r['channels_last'] else ''}{' compiled' if r['compile'] else ''}, data: {r['data']}; "
            f"{machine_line(r['machine'])}\n{r['steps']} profiled steps, {r['wall_ms_per_step']:.0f} ms per step "
            f"wall-clock under the profiler ({r['img_per_s_profiled']:.1f} img/s)\n")
    t1 = markdown_table(["part of the step", "ms / step", "share"],
                        [[p["part"], f"{p['ms_per_step']:.0f}", f"{p['share']:.1%}"] for p in r["parts"]])
    t2 = markdown_table(["operator (self time)", "ms / step", "calls / step", "share of step"],
                        [[o["op"][:60], f"{o['self_ms_per_step']:.0f}", f"{o['calls_per_step']:.0f}",
                          f"{o['self_share']:.1%}"] for o in r["top_ops"]])
    return head + t1 + "\n\nOperators that dominate (self CPU time, all parts together)\n" + t2


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_profile", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=None, help="face folder (default $CELEBAHQ_DIR, data/celeba_hq/, ../shared/data/celebahq-5k, else ToyFaces)")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=4, help="profiled steps (after one warm-up step)")
    p.add_argument("--images", type=int, default=256, help="images of the face folder to load from")
    p.add_argument("--theta", type=float, default=0.08, help="adversarial weight (0: no discriminator)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--plain", action="store_true", help="profile the plain eager fp32 NCHW step instead")
    p.add_argument("--out", default=None, help="JSON path (default results/bench-profile.json)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    opts = {"precision": "fp32", "channels_last": False, "compile": False} if args.plain else {}
    r = run(args.size, args.batch, args.steps, args.theta, args.images, args.data, args.device, **opts)
    print(format_tables(r))
    print(f"wrote {write_result('profile', r, args.out)}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("KINETO_LOG_LEVEL", "5")  # keep the profiler's start/stop lines out of the table
    raise SystemExit(main())
