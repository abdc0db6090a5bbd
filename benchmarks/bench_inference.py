"""Inference speed: the generator on a batch of faces, and one large photo at full resolution.

1. The seed U-Net (ndims 16, depth 4, one ViT block) in eval mode without gradients on a
   batch of 64 faces of 256x256: plain (fp32, NCHW) and fast (bf16 autocast where the
   device computes bf16 natively, channels-last) side by side, wall time per batch, img/s
   and the largest difference between the two outputs.
2. ``lib.colorize.colorize`` on one 1024x1024 photo (the astronaut, upscaled): the whole call
   (Lab of the photo, L resized to the model's 128x128, the model, ab upsampled and merged
   with the full-resolution L, out-of-gamut colours brought inside, uint8), the model alone,
   and the whole with ``lib.color``'s chunking switched off (one pass per tile).
3. With ``--faces N``: the ``colorize`` command (``lib.colorize.run``: decode, colorize,
   encode and write a PNG each) on the first N files of a face folder (``--data``, else
   ``$CELEBAHQ_DIR`` / ``../shared/data/celebahq-5k``), once, into a temporary folder.

Weights do not change the speed: a checkpoint (``--checkpoint``) is used when given, else
random weights. Run: ``python -m benchmarks.bench_inference``. Prints the tables and writes
``results/bench-inference.json``. Taught alongside ``09_interactive_demo``.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from skimage import data as skdata

import lib.color
import lib.colorize
from benchmarks.common import (bf16_supported, find_faces, machine_info, machine_line, markdown_table, timed,
                               write_result)
from lib.checkpoint import load_generator
from lib.colorize import colorize, model_input_size
from lib.images import IMAGE_EXTENSIONS
from lib.models import UNet, UNetConfig
from lib.runtime import pick_device

SEED_MODEL = {"ndims": 16, "depth": 4, "num_blocks": 1}


def load_model(checkpoint: str | None, device: torch.device) -> UNet:
    if checkpoint:
        return load_generator(checkpoint, device=device)[0]
    torch.manual_seed(0)
    return UNet(UNetConfig(**SEED_MODEL)).to(device).eval()


def photo_1024(device: torch.device) -> torch.Tensor:
    """The astronaut (512x512) upscaled to 1024x1024, uint8 ``(3, 1024, 1024)``."""
    x = torch.from_numpy(skdata.astronaut()).permute(2, 0, 1)[None].float()  # (1, 3, 512, 512)
    x = F.interpolate(x, size=(1024, 1024), mode="bicubic", align_corners=False)  # (1, 3, 1024, 1024)
    return x[0].round().clamp(0, 255).to(torch.uint8).to(device)  # (3, 1024, 1024)


@contextlib.contextmanager
def unchunked_color():
    """``lib.color`` converting in one pass (its behaviour before chunking), for the comparison."""
    old = lib.color._CHUNK_ELEMENTS
    lib.color._CHUNK_ELEMENTS = 1 << 62
    try:
        yield
    finally:
        lib.color._CHUNK_ELEMENTS = old


def run(batch: int = 64, size: int = 256, model_size: int = 128, photo: int = 1024, device: str = "auto",
        checkpoint: str | None = None, min_time: float = 3.0, faces: int = 0, data: str | None = None) -> dict:
    dev = pick_device(device)
    model = load_model(checkpoint, dev)
    fast_bf16 = bf16_supported(dev)
    g = torch.Generator().manual_seed(0)
    l_n = (torch.rand(batch, 1, size, size, generator=g) * 2 - 1).to(dev)  # (B, 1, S, S)

    rows = []
    outputs = {}
    for name, bf16, cl in (("plain: fp32, NCHW", False, False), ("fast: " + ("bf16, " if fast_bf16 else "fp32, ")
                                                                 + "channels-last", fast_bf16, True)):
        fmt = torch.channels_last if cl else torch.contiguous_format
        model.to(memory_format=fmt)
        x = l_n.contiguous(memory_format=fmt)

        def forward():
            with torch.inference_mode(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                return model(x)

        sec = timed(forward, min_time=min_time, min_iters=2, warmup=1, device=dev)
        outputs[name] = forward().float()
        rows.append({"path": name, "batch": batch, "size": size, "seconds_per_batch": sec, "img_per_s": batch / sec})
    model.to(memory_format=torch.contiguous_format)
    names = list(outputs)
    max_diff = float((outputs[names[0]] - outputs[names[1]]).abs().max())
    rows[1]["speedup"] = rows[1]["img_per_s"] / rows[0]["img_per_s"]

    # one photo through colorize(), and the model alone at the size it sees there
    img = photo_1024(dev) if photo == 1024 else F.interpolate(photo_1024(dev)[None].float(), size=(photo, photo))[0].to(torch.uint8)
    m = model.config.multiple
    h, w = (-(-n // m) * m for n in model_input_size(photo, photo, model_size))  # padded to 2**depth
    small = torch.zeros(1, 1, h, w, device=dev)  # (1, 1, h, w)

    def run_model():
        with torch.inference_mode():
            return model(small)  # (1, 2, h, w)

    model_s = timed(run_model, min_time=1.0, device=dev)
    whole = timed(lambda: colorize(img, model, size=model_size), min_time=min_time, min_iters=3, device=dev)
    with unchunked_color():
        whole_unchunked = timed(lambda: colorize(img, model, size=model_size), min_time=min_time, min_iters=3, device=dev)
    result = {"benchmark": "inference", "machine": machine_info(dev), "batch_rows": rows,
              "fast_vs_plain_max_abs_diff_ab_n": max_diff,
              "photo": {"size": photo, "model_size": model_size, "parts_s": {f"model at {h}x{w}": model_s},
                        "total_s": whole, "img_per_s": 1 / whole, "total_s_unchunked_color": whole_unchunked,
                        "chunking_speedup": whole_unchunked / whole},
              "weights": checkpoint or f"random {SEED_MODEL} (speed does not depend on them)"}
    if faces:
        result["faces"] = time_command(model, faces, data, model_size)
    return result


def time_command(model: UNet, n: int, data: str | None, size: int) -> dict:
    """Seconds for ``python -m lib colorize`` (its ``run``) on the first ``n`` faces, once."""
    root = find_faces(data)
    if root is None:
        raise SystemExit("--faces needs a face folder: --data DIR or $CELEBAHQ_DIR")
    files = sorted(p for p in Path(root).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)[:n]
    with tempfile.TemporaryDirectory() as tmp:
        args = argparse.Namespace(inputs=[str(p) for p in files], out=tmp, checkpoint=model, size=size, chroma=1.0,
                                  overwrite=False, max_megapixels=50.0, batch_size=8, device="auto")
        start = time.perf_counter()
        lib.colorize.run(args)
        sec = time.perf_counter() - start
        shape = Image.open(files[0]).size
    return {"folder": str(root), "n": len(files), "first_size": list(shape), "model_size": size, "total_s": sec,
            "img_per_s": len(files) / sec}


def format_tables(r: dict) -> str:
    b = r["batch_rows"]
    text = (f"Generator (seed U-Net) inference, eval mode, no grad; {machine_line(r['machine'])}\n"
            + markdown_table(["path", "batch", "size", "s / batch", "img/s", "vs plain"],
                             [[x["path"], x["batch"], f"{x['size']}x{x['size']}", f"{x['seconds_per_batch']:.2f}",
                               f"{x['img_per_s']:.1f}", f"{x.get('speedup', 1.0):.2f}x"] for x in b])
            + f"\nlargest |ab_n| difference fast vs plain: {r['fast_vs_plain_max_abs_diff_ab_n']:.3g} "
              f"(x110 in Lab units)\n\n")
    p = r["photo"]
    rows = [[name, f"{sec * 1e3:.0f}"] for name, sec in p["parts_s"].items()]
    rows.append(["**whole colorize()** (chunked colour conversion, the default)", f"**{p['total_s'] * 1e3:.0f}**"])
    rows.append(["whole colorize(), colour conversion in one pass per tile", f"{p['total_s_unchunked_color'] * 1e3:.0f}"])
    text += (f"Full-resolution path, one {p['size']}x{p['size']} photo, model at {p['model_size']}x{p['model_size']}: "
             f"{p['img_per_s']:.2f} photos/s; chunked vs one-pass colour conversion {p['chunking_speedup']:.2f}x\n"
             + markdown_table(["part", "ms"], rows))
    if "faces" in r:
        f = r["faces"]
        text += (f"\n\n`colorize` command on {f['n']} faces of {f['first_size'][0]}x{f['first_size'][1]} "
                 f"({f['folder']}), model at {f['model_size']}: {f['total_s']:.1f} s ({f['img_per_s']:.1f} img/s, "
                 "decode + colorize + PNG write)")
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_inference", description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--size", type=int, default=256, help="face size of the batch (default 256)")
    p.add_argument("--photo", type=int, default=1024, help="side of the full-resolution photo (default 1024)")
    p.add_argument("--model-size", type=int, default=128, help="size the model runs at for the photo (default 128)")
    p.add_argument("--checkpoint", default=None, help="a training checkpoint (default: random weights)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--min-time", type=float, default=3.0)
    p.add_argument("--faces", type=int, default=0, help="also time the colorize command on the first N faces")
    p.add_argument("--data", default=None, help="face folder for --faces (default: $CELEBAHQ_DIR, shared faces)")
    p.add_argument("--out", default=None, help="JSON path (default results/bench-inference.json)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    r = run(args.batch, args.size, args.model_size, args.photo, args.device, args.checkpoint, args.min_time,
            args.faces, args.data)
    print(format_tables(r))
    print(f"wrote {write_result('inference', r, args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
