"""The training configuration: every option of a run, its default, its allowed values.

Taught in ``05_training_unet``. ``TrainConfig`` is a dataclass whose groups are dataclasses
too: ``model`` (``lib.models.UNetConfig``), ``discriminator`` (``DiscriminatorConfig``) and
``loss`` (:class:`LossConfig`). OmegaConf's structured configs read YAML/JSON files and
``--set loss.theta=0.08`` overrides against these dataclasses and convert each value to
the field's type; :meth:`TrainConfig.validate` checks the allowed values. Every failure is a
:class:`lib.errors.ConfigError` naming the option (and the allowed values, or the closest
option names), raised before any work. ``--help`` is made from the fields' own comments.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import inspect
import io
import json
import math
import os
import re
import textwrap
import tokenize
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lib.errors import ConfigError
from lib.models import DiscriminatorConfig, UNetConfig
from lib.models.discriminator import layer_specs
from lib.pretrained import VGG16_LAYERS
from lib.utils import write_text_atomic

__all__ = ["TrainConfig", "LossConfig", "option_help", "flat_dict", "REPO_ROOT", "DEVICE_PATTERN", "SELECT_METRICS",
           "is_better"]

REPO_ROOT = Path(__file__).resolve().parents[1]
DEVICE_PATTERN = r"auto|cpu|mps|cuda(:\d+)?"
SELECT_METRICS = {  # metrics a run can pick its best checkpoint by: is higher better?
    "psnr_rgb": True, "ssim_rgb": True, "psnr_lab": True, "ssim_lab": True, "psnr_rgb_pooled64": True,
    "delta_cf": False, "lpips": False, "fid": False,
}
CHOICES = {  # options with a fixed set of values
    "dataset": ("auto", "folder", "toy"),
    "loss.pixel": ("l1", "l2"),
    "loss.gan_mode": ("lsgan", "vanilla", "hinge"),
    "lr_schedule": ("none", "cosine"),
    "precision": ("auto", "fp32", "bf16", "fp16"),
    "select_metric": tuple(SELECT_METRICS),
}
AT_LEAST = {  # numeric options and their smallest allowed value
    "toy_images": 1, "image_size": 16, "workers": 0, "threads": 0, "batch_size": 1, "epochs": 1, "seed": 0,
    "eval_every": 1, "eval_batch_size": 1, "num_samples": 0, "d_collapse_patience": 1, "d_collapse_threshold": 0,
    "ema": 0, "loss.alpha": 0, "loss.beta": 0, "loss.theta": 0,
}


def is_better(metric: str, value: float | None, best: float | None) -> bool:
    """Whether ``value`` of ``metric`` (a :data:`SELECT_METRICS` key) beats ``best`` (None: no best yet);
    a missing or non-finite value never does."""
    if value is None or not math.isfinite(value):
        return False
    return best is None or (value > best if SELECT_METRICS[metric] else value < best)


RUN_FILES = ("config.yaml", "last.pt", "best.pt", "history.json", "history_steps.csv", "test_metrics.json")


@dataclass
class LossConfig:
    """The generator's objective ``L_G = alpha * pixel + beta * perceptual + theta * adversarial``
    (``lib.losses.ColorizationLoss``). Taught in ``04_loss_functions``."""

    pixel: str = "l1"  # pixel loss on ab_n: "l1" | "l2"
    alpha: float = 100.0  # weight of the pixel loss
    beta: float = 1.0  # weight of the VGG16 perceptual loss (0 = no VGG is loaded)
    theta: float = 0.0  # weight of the adversarial loss (0 = no discriminator is built)
    perceptual_layers: tuple[str, ...] = ("relu1_2", "relu2_2", "relu3_3")  # VGG16 layers compared by the perceptual loss
    gan_mode: str = "lsgan"  # adversarial loss: "lsgan" | "vanilla" | "hinge"


@dataclass
class TrainConfig:
    """Everything a training run depends on, with laptop-sized defaults.

    ``TrainConfig.load("configs/seed.yaml")``, ``.with_overrides(["loss.theta=0.08"])``,
    ``.save(path)``; ``TrainConfig.from_dict(d)`` for nested dicts. Taught in ``05_training_unet``.
    """

    # data
    data_root: str | None = None  # folder of face photos; None: $CELEBAHQ_DIR, then data/celeba_hq/
    dataset: str = "auto"  # "auto" (the folder if found, else ToyFaces) | "folder" (must exist) | "toy" (ToyFaces)
    toy_images: int = 512  # ToyFaces images in the train split (val and test get an eighth, at least 16)
    image_size: int = 64  # square training and evaluation size; divisible by 2**model.depth
    max_images: int | None = None  # at most this many images per split (quick runs); None = all
    cache: bool = True  # decode each photo once into a uint8 cache (~/.cache/facecolor or $FACECOLOR_CACHE)
    workers: int = 0  # DataLoader worker processes (0 = load in the main process)
    threads: int = 0  # torch CPU threads, at most the number of cores; 0 = auto: one per core not busy with other processes
    # networks and loss
    model: UNetConfig = field(default_factory=UNetConfig)  # the generator: lib.models.UNetConfig (--set model.ndims=32)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)  # the PatchGAN, built when loss.theta > 0
    loss: LossConfig = field(default_factory=LossConfig)  # loss terms and weights (--set loss.theta=0.08)
    init_from: str | None = None  # start G from this checkpoint's weights (its EMA weights when it has them); None = random
    ema: float = 0.0  # decay of an average of G's weights, evaluated and saved as model_ema (e.g. 0.999); 0 = off
    # optimisation
    batch_size: int = 16  # images per step, summed over all processes
    epochs: int = 10  # passes over the train split
    lr: float = 2e-4  # Adam learning rate of the generator
    betas: tuple[float, float] = (0.5, 0.999)  # Adam (beta1, beta2) of both networks
    d_lr: float = 2e-4  # Adam learning rate of the discriminator
    lr_schedule: str = "none"  # "none" | "cosine" (follows the fraction of training done, down to 0 at the end)
    grad_clip: float | None = None  # clip the gradient norm of each network to this; None = no clipping
    # run
    seed: int = 0  # seeds python, numpy, torch and the data-loader workers
    device: str = "auto"  # "auto" (cuda > mps > cpu) | "cpu" | "cuda" | "cuda:N" | "mps"
    precision: str = "auto"  # "auto" (bf16 on recent GPUs and bf16-capable CPUs, fp16 + scaler on older GPUs, else fp32) | "fp32" | "bf16" | "fp16"
    channels_last: bool | None = None  # channels-last memory format; None = auto: on for CUDA and CPU (faster convolutions), off on MPS
    compile: bool | None = None  # torch.compile the networks; None = auto: on for CUDA, off on CPU/MPS (no faster there: docs/performance.md)
    out_dir: str = "runs/default"  # where checkpoints, history, samples and test metrics go (never the project root)
    resume: str | None = None  # a checkpoint to continue from, or "auto" (out_dir/last.pt if it exists)
    overwrite: bool = False  # a fresh run may replace the earlier run in out_dir (else that is refused)
    # evaluation and logging
    eval_every: int = 1  # evaluate on val every N epochs (and always after the last epoch)
    select_metric: str = "psnr_rgb"  # val metric that picks best.pt (psnr/ssim: higher is better; delta_cf/lpips/fid: lower)
    eval_batch_size: int = 64  # batch size of evaluation
    bn_batches: int = 32  # before each evaluation, BatchNorm statistics recomputed over this many train batches for the evaluated weights (0 = keep the running averages, which lag: see 05_training_unet)
    eval_fid: bool = False  # also compute FID at each evaluation (Inception weights, slower)
    eval_lpips: bool = False  # also compute LPIPS at each evaluation
    num_samples: int = 8  # fixed val faces drawn in samples/epoch_NNNN.png (0 = no figures)
    test_at_end: bool = True  # evaluate best.pt once on the test split at the end (the reported numbers)
    progress: bool = True  # tqdm progress bars (rank 0 only)
    d_collapse_threshold: float = 0.01  # warn when the discriminator loss stays below this ...
    d_collapse_patience: int = 200  # ... for this many consecutive steps (D has won: G gets no signal)

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Check every value; raise :class:`ConfigError` naming the option and what is allowed."""
        flat = flat_dict(dataclasses.asdict(self))
        for name, allowed in CHOICES.items():
            if flat[name] not in allowed:
                raise ConfigError(f"option {name!r} must be one of {', '.join(allowed)}; got {flat[name]!r}")
        for name, low in AT_LEAST.items():
            if not flat[name] >= low:
                raise ConfigError(f"option {name!r} must be >= {low}; got {flat[name]!r}")
        if not re.fullmatch(DEVICE_PATTERN, self.device):
            raise ConfigError(f"option 'device' must be one of auto, cpu, cuda, cuda:N, mps; got {self.device!r}")
        for name in ("lr", "d_lr", "grad_clip", "max_images"):
            if flat[name] is not None and not flat[name] > 0:
                raise ConfigError(f"option {name!r} must be > 0{' or null' if name in ('grad_clip', 'max_images') else ''}"
                                  f"; got {flat[name]!r}")
        if not (self.ema < 1 and all(0 <= b < 1 for b in self.betas)):
            raise ConfigError(f"options 'ema' and 'betas' must be in [0, 1); got {self.ema!r}, {list(self.betas)!r}")
        loss = self.loss
        if loss.alpha == loss.beta == loss.theta == 0:
            raise ConfigError("options 'loss.alpha', 'loss.beta', 'loss.theta' are all 0: G would learn nothing")
        for layer in loss.perceptual_layers:
            if layer not in VGG16_LAYERS:
                raise ConfigError(f"option 'loss.perceptual_layers': {layer!r} is not a VGG16 layer; "
                                  f"allowed: {', '.join(VGG16_LAYERS)}")
        if loss.beta > 0 and not loss.perceptual_layers:
            raise ConfigError("option 'loss.perceptual_layers' is empty while loss.beta > 0; name a VGG16 layer")
        if self.model.out_channels == 3 and loss.theta > 0:
            raise ConfigError("option 'model.out_channels' is 3 (the RGB mode of the colorspace ablation), which "
                              "trains without the GAN term: set loss.theta=0")
        if self.select_metric in ("fid", "lpips") and not getattr(self, f"eval_{self.select_metric}"):
            raise ConfigError(f"option 'select_metric' is {self.select_metric!r} but 'eval_{self.select_metric}' "
                              f"is false: set eval_{self.select_metric}=true")
        for name in ("data_root", "init_from", "resume"):
            if getattr(self, name) == "":
                raise ConfigError(f"option {name!r} is empty: name a {'folder' if name == 'data_root' else 'file'}, "
                                  "or set it to null")
        if self.resume not in (None, "auto") and not self.resume.endswith((".pt", ".pth")):
            raise ConfigError(f"option 'resume' must be 'auto', null or a .pt checkpoint path; got {self.resume!r}")
        if self.image_size % self.model.multiple:
            raise ConfigError(f"option 'image_size' ({self.image_size}) must be divisible by 2**model.depth = "
                              f"{self.model.multiple} (try {max(1, round(self.image_size / self.model.multiple)) * self.model.multiple})")
        side = self.image_size
        for _, _, kernel, stride in layer_specs(self.discriminator) if loss.theta > 0 else ():
            side = (side + 2 - kernel) // stride + 1
        if side < 1:
            raise ConfigError(f"option 'image_size' ({self.image_size}) is too small for a discriminator with "
                              f"discriminator.n_layers={self.discriminator.n_layers}: lower n_layers or raise image_size")

    def check(self) -> None:
        """Check what the config names outside itself (folders, checkpoints, this machine's
        cores, out_dir) before any work; :class:`ConfigError` otherwise. Separate from
        :meth:`validate` so a config read from a checkpoint made elsewhere still loads."""
        if self.data_root is not None and not Path(self.data_root).expanduser().is_dir():
            raise ConfigError(f"option 'data_root': {self.data_root!r} is not a folder")
        for name in ("resume", "init_from"):
            value = getattr(self, name)
            if value not in (None, "auto") and not Path(value).is_file():
                raise ConfigError(f"option {name!r}: checkpoint {value!r} does not exist")
        cores = os.cpu_count() or 1
        if self.threads > cores:
            raise ConfigError(f"option 'threads' is {self.threads} but this machine has {cores} core(s): "
                              f"use at most {cores}, or 0 (auto)")
        if not self.out_dir.strip():
            raise ConfigError("option 'out_dir' is empty: name a folder for this run, e.g. runs/my_run")
        out = Path(self.out_dir).expanduser().resolve()
        if out == REPO_ROOT or out in REPO_ROOT.parents or out == Path.home():
            raise ConfigError(f"option 'out_dir' ({self.out_dir!r}) is {out}, a folder that holds other work; "
                              "name a folder for this run, e.g. runs/my_run")
        if out.exists() and not out.is_dir():
            raise ConfigError(f"option 'out_dir': {str(out)!r} is a file, not a folder")
        earlier = [name for name in RUN_FILES if (out / name).exists()]
        if earlier and self.resume is None and not self.overwrite:
            raise ConfigError(f"option 'out_dir': {str(out)!r} holds an earlier run ({', '.join(earlier)}); continue "
                              "it with --set resume=auto, replace it with --set overwrite=true, or choose another out_dir")

    # ---- (de)serialisation -------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Nested plain dicts, lists and scalars (YAML/JSON-safe; ``weights_only``-safe in checkpoints)."""
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Build from nested dicts (a YAML file, a checkpoint); every value is converted to its
        field's type, and an unknown name or a wrong type raises :class:`ConfigError`."""
        if not isinstance(d, dict):
            raise ConfigError(f"a training config must be a mapping of option: value, got {type(d).__name__}")
        return _build(OmegaConf.structured(cls), [d])

    @classmethod
    def load(cls, path: str | os.PathLike) -> TrainConfig:
        """Read a ``.yaml``/``.yml`` or ``.json`` file."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist")
        suffix = path.suffix.lower()
        if suffix not in (".json", ".yaml", ".yml"):
            raise ConfigError(f"config file {str(path)!r} must end in .yaml, .yml or .json")
        try:
            data = json.loads(path.read_text()) if suffix == ".json" else yaml.safe_load(path.read_text()) or {}
        except (json.JSONDecodeError, yaml.YAMLError, UnicodeDecodeError) as e:
            raise ConfigError(f"config file {str(path)!r} is not valid {suffix[1:].upper()}: "
                              f"{' '.join(str(e).split())}") from None
        return cls.from_dict(data)

    def save(self, path: str | os.PathLike) -> Path:
        """Write as YAML (``.yaml``/``.yml``) or JSON (``.json``), atomically."""
        data = self.to_dict()
        text = json.dumps(data, indent=2) + "\n" if str(path).endswith(".json") else yaml.safe_dump(data, sort_keys=False)
        return write_text_atomic(path, text)

    def with_overrides(self, overrides: list[str] | None) -> TrainConfig:
        """A copy with ``["epochs=5", "loss.theta=0.08", "betas=[0.9,0.99]"]`` applied (the CLI's ``--set``)."""
        items = []
        for item in overrides or []:
            key, sep, value = (s.strip() for s in item.partition("="))
            if not sep or not key:
                raise ConfigError(f"--set expects key=value (e.g. --set epochs=5), got {item!r}")
            items.append((key, value))
        return _build(OmegaConf.structured(self), items)

    def diff(self, other: TrainConfig | dict) -> dict[str, tuple[Any, Any]]:
        """``{option: (self's value, other's value)}`` for every option that differs."""
        a = flat_dict(self.to_dict())
        b = flat_dict(other.to_dict() if isinstance(other, TrainConfig) else other)
        return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def _build(base, items: list[tuple[str, str] | dict]) -> TrainConfig:
    """Merge each item (a ``("key", "value")`` of ``--set``, or a nested dict) onto the
    structured config ``base`` and build the dataclasses; OmegaConf's and the model configs'
    errors become one-line :class:`ConfigError`\\ s naming the option."""
    names = list(option_help())
    for item in items:
        key = item[0] if isinstance(item, tuple) else None
        try:
            if key is None:
                layer = item
            elif item[1].lower() in ("none", "null", "~", ""):
                layer = OmegaConf.from_dotlist([f"{key}=null" if item[1] else f"{key}=''"])  # key= is ''
            else:
                layer = OmegaConf.from_dotlist([f"{key}={item[1]}"])
            base = OmegaConf.merge(base, layer)
        except OmegaConfBaseException as e:
            key = getattr(e, "full_key", None) or key or "?"
            if any(n.startswith(f"{key}.") for n in names):
                example = next(n for n in names if n.startswith(f"{key}."))
                raise ConfigError(f"option {key!r} is a group of options: set one of them, e.g. {example}=VALUE") from None
            if key not in names:
                same = [n for n in names if n.rsplit(".", 1)[-1] == key.rsplit(".", 1)[-1]]  # theta -> loss.theta
                close = same + [n for n in difflib.get_close_matches(key, names, n=3, cutoff=0.6) if n not in same]
                hint = f" (did you mean {', '.join(close)}?)" if close else ""
                raise ConfigError(f"unknown option {key!r}{hint}; `python -m lib train --help` lists them") from None
            raise ConfigError(f"option {key!r}: {str(e).splitlines()[0]}") from None
    for group in ("model", "discriminator"):  # their own checks (asserts in lib.models), named by group
        try:
            OmegaConf.to_object(base[group])
        except (AssertionError, TypeError, ValueError) as e:
            raise ConfigError(f"option {group!r}: {e}") from None
    return OmegaConf.to_object(base)


def field_comments(cls) -> dict[str, str]:
    """``{field: the comment at the end of its line}`` of a dataclass, read with ``tokenize``."""
    source = textwrap.dedent(inspect.getsource(cls))
    comments = {tok.start[0]: tok.string.lstrip("#").strip()
                for tok in tokenize.generate_tokens(io.StringIO(source).readline) if tok.type == tokenize.COMMENT}
    body = ast.parse(source).body[0].body
    return {n.target.id: comments.get(n.end_lineno, "") for n in body if isinstance(n, ast.AnnAssign)}


def option_help(cls=None, prefix: str = "") -> dict[str, str]:
    """``{"epochs": its comment, "loss.theta": ..., "model.ndims": ...}`` for every option (``--help``)."""
    cls = cls or TrainConfig
    out = {}
    comments = field_comments(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(f.default_factory if f.default_factory is not dataclasses.MISSING else None):
            out.update(option_help(f.default_factory, f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = comments.get(f.name, "")
    return out


def _plain(x: Any) -> Any:
    """Tuples -> lists, recursively: JSON/YAML-safe and weights_only-safe."""
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return {str(k): _plain(v) for k, v in x.items()} if isinstance(x, dict) else x


def flat_dict(d: dict, prefix: str = "") -> dict[str, Any]:
    """``{"loss": {"theta": 0.08}}`` -> ``{"loss.theta": 0.08}`` (diffs and mismatch messages)."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flat_dict(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
