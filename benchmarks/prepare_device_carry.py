"""Write what ``benchmarks/gpu_bench.py`` needs on a machine without network or ../shared.

Into ``device_carry/`` (ignored by git), small enough to travel with the working tree:

* ``celebahq-128/``: a 128x128 JPEG copy of the face folder's usable images (the uint8
  images ``lib.data.FaceFolder`` prepares, quality 95), **same relative file names**, so the hash
  splits (``lib.data.split_of``) are the same as on the original folder;
* ``vgg16_features_relu3_3.pt``: the VGG16 ImageNet features cut after relu3_3 (the
  deepest layer the perceptual loss uses), with its content sha256 in ``.sha256``.

Run: ``python -m benchmarks.prepare_device_carry [--data DIR] [--out device_carry]``
(default data: ``$CELEBAHQ_DIR``, ``data/celeba_hq/``, then ``../shared/data/celebahq-5k``). Existing files are kept, so a
second run is instant. The faces stay under the CelebA-HQ licence: never commit them.
Taught alongside ``05_training_unet``.
"""

from __future__ import annotations

import argparse
import io
import warnings
from pathlib import Path

import torch
from PIL import Image
from tqdm.auto import tqdm

from benchmarks.common import find_faces
from lib.data import DataWarning, FaceFolder
from lib.pretrained import VGG16_LAYERS, state_dict_sha256, vgg16_features

CARRY_LIMIT = 64 * 2**20  # what a device run can carry in all


def write_faces(root: Path, out: Path, size: int = 128, quality: int = 95) -> int:
    """JPEG copies at ``size`` of every usable image of ``root`` (all splits); returns the count."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        faces = FaceFolder(root, split="all", image_size=size, flip=False)  # checked, resized, cached once
    for rel, img in tqdm(zip(faces.names, faces.images), total=len(faces), desc=f"{root.name} -> {out.name}",
                         unit="img", mininterval=1.0):
        target = (out / rel).with_suffix(".jpg")
        if target.is_file():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        Image.fromarray(img.transpose(1, 2, 0)).save(buf, format="JPEG", quality=quality)  # (size, size, 3) uint8
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_bytes(buf.getvalue())
        tmp.replace(target)
    return len(faces)


def write_vgg(out: Path, layer: str = "relu3_3") -> Path:
    """The VGG16 features up to ``layer`` as a state dict, plus its content sha256."""
    path = out / f"vgg16_features_{layer}.pt"
    if not path.is_file():
        features = vgg16_features(cut=VGG16_LAYERS[layer])
        state = {k: v.contiguous() for k, v in features.state_dict().items()}
        torch.save(state, path)
        path.with_name(path.name + ".sha256").write_text(f"{state_dict_sha256(state)}  {path.name}\n")
    return path


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.prepare_device_carry", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=None, help="face folder (default $CELEBAHQ_DIR, data/celeba_hq/, ../shared/data/celebahq-5k)")
    p.add_argument("--out", default="device_carry", help="output folder (default device_carry/, ignored by git)")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--quality", type=int, default=95)
    args = p.parse_args(argv)
    root = find_faces(args.data)
    if root is None:
        p.error("no face folder: pass --data DIR or set CELEBAHQ_DIR")
    out = Path(args.out)
    faces = out / f"{root.name.split('-')[0]}-{args.size}"
    n = write_faces(root, faces, args.size, args.quality)
    vgg = write_vgg(out)
    total = folder_bytes(out)
    print(f"{faces}: {n} JPEGs at {args.size}x{args.size}, {folder_bytes(faces) / 2**20:.1f} MiB; "
          f"{vgg}: {vgg.stat().st_size / 2**20:.1f} MiB; {out} in all {total / 2**20:.1f} MiB")
    if total > CARRY_LIMIT:
        print(f"warning: {out} is over the {CARRY_LIMIT // 2**20} MiB a device run can carry; lower --quality")
    print("run on the GPU machine (docs/performance.md):\n  PYTHONPATH=. python benchmarks/gpu_bench.py "
          f"--data {faces} --vgg {vgg} --out $OUT/gpu-bench.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
