"""The training configuration: every option of a run, its default, its allowed values.

Taught in ``notebooks/08_training.ipynb``. ``TrainConfig`` loads from and saves to YAML or
JSON, takes ``--set key=value`` overrides from the command line, and validates itself at
construction, so a wrong option fails before any work with a message naming the option
and the allowed values (:class:`ConfigError`). Saved inside every checkpoint as plain
Python values.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["TrainConfig", "ConfigError", "config_help", "DATASETS", "PIXEL_LOSSES", "GAN_MODES", "LR_SCHEDULES",
           "PRECISIONS", "DEVICE_PATTERN", "SELECT_METRICS"]

# --- allowed values (one place; the config, the CLI and the error messages use them) ------
DATASETS = ("auto", "folder", "toy")
PIXEL_LOSSES = ("l1", "l2")
GAN_MODES = ("lsgan", "vanilla", "hinge")
LR_SCHEDULES = ("none", "cosine")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICE_PATTERN = r"auto|cpu|mps|cuda(:\d+)?"
# metrics a run can select its best checkpoint by, and whether higher is better
SELECT_METRICS = {
    "psnr_rgb": True,
    "ssim_rgb": True,
    "psnr_lab": True,
    "ssim_lab": True,
    "psnr_rgb_pooled64": True,
    "delta_cf": False,
    "lpips": False,
    "fid": False,
}


class ConfigError(ValueError):
    """An invalid option or value; the message names the option and the allowed values."""



@dataclass
class TrainConfig:
    """Everything a training run depends on, with laptop-sized defaults.

    Load from and save as YAML or JSON (``TrainConfig.load`` / ``.save``); override on the
    command line with ``--set key=value`` (``--set model.ndims=32`` for nested model fields).
    Invalid names or values raise :class:`ConfigError` at construction, before any work.
    Taught in ``notebooks/08_training.ipynb``.
    """

    # data
    data_root: str | None = None  # folder of face photos; None: $CELEBAHQ_DIR, then data/celeba_hq/
    dataset: str = "auto"  # "auto" (the folder if found, else ToyFaces) | "folder" (must exist) | "toy" (ToyFaces)
    toy_images: int = 512  # ToyFaces images in the train split (val and test get an eighth, at least 16)
    image_size: int = 64  # square training and evaluation size; divisible by 2**model.depth
    max_images: int | None = None  # at most this many images per split (quick runs); None = all
    cache: bool = True  # decode each photo once into a uint8 cache (~/.cache/facecolor or $FACECOLOR_CACHE)
    workers: int = 0  # DataLoader worker processes (0 = load in the main process)
    threads: int = 0  # torch CPU threads; 0 = auto: one per core not busy with other processes (2 threads on a half-busy 2-core CPU: 24x slower)
    # model
    model: dict = field(default_factory=lambda: {"ndims": 16, "depth": 4, "num_blocks": 1})  # UNetConfig fields that differ from its defaults
    d_width: int = 64  # discriminator width: channels of its first conv (DiscriminatorConfig.ndf)
    discriminator: dict = field(default_factory=dict)  # other DiscriminatorConfig fields (n_layers, norm)
    # loss: L_G = alpha * pixel + beta * perceptual + theta * adversarial
    pixel: str = "l1"  # pixel loss on ab_n: "l1" | "l2"
    alpha: float = 100.0  # weight of the pixel loss
    beta: float = 1.0  # weight of the VGG16 perceptual loss (0 = no VGG is loaded)
    theta: float = 0.0  # weight of the adversarial loss (0 = no discriminator is built)
    perceptual_layers: tuple[str, ...] = ("relu1_2", "relu2_2", "relu3_3")  # VGG16 layers compared by the perceptual loss
    gan_mode: str = "lsgan"  # adversarial loss: "lsgan" | "vanilla" | "hinge"
    # optimisation
    batch_size: int = 16  # images per step, summed over all processes
    epochs: int = 10  # passes over the train split
    lr: float = 2e-4  # Adam learning rate of the generator
    betas: tuple[float, float] = (0.5, 0.999)  # Adam (beta1, beta2) of both networks
    d_lr: float = 2e-4  # Adam learning rate of the discriminator
    lr_schedule: str = "none"  # "none" | "cosine" (per step, down to 0 at the end of the last epoch)
    grad_clip: float | None = None  # clip the gradient norm of each network to this; None = no clipping
    # run
    seed: int = 0  # seeds python, numpy, torch and the data-loader workers
    device: str = "auto"  # "auto" (cuda > mps > cpu) | "cpu" | "cuda" | "cuda:N" | "mps"
    precision: str = "auto"  # "auto" (bf16 on recent GPUs and bf16-capable CPUs, fp16 + scaler on older GPUs, else fp32) | "fp32" | "bf16" | "fp16"
    channels_last: bool | None = None  # channels-last memory format; None = auto: on for CUDA and CPU (faster convolutions), off on MPS
    compile: bool | None = None  # torch.compile the networks; None = auto: on for CUDA, off on CPU/MPS (no faster there: docs/performance.md)
    out_dir: str = "runs/default"  # where checkpoints, history, samples and test metrics go
    resume: str | None = None  # a checkpoint to continue from, or "auto" (out_dir/last.pt if it exists)
    # evaluation and logging
    eval_every: int = 1  # evaluate on val every N epochs (and always after the last epoch)
    select_metric: str = "psnr_rgb"  # val metric that picks best.pt (psnr/ssim: higher is better; delta_cf/lpips/fid: lower)
    eval_batch_size: int = 64  # batch size of evaluation
    eval_fid: bool = False  # also compute FID at each evaluation (Inception weights, slower)
    eval_lpips: bool = False  # also compute LPIPS at each evaluation
    num_samples: int = 8  # fixed val faces drawn in samples/epoch_NNNN.png (0 = no figures)
    test_at_end: bool = True  # evaluate best.pt once on the test split at the end (the reported numbers)
    progress: bool = True  # tqdm progress bars (rank 0 only)
    d_collapse_threshold: float = 0.01  # warn when the discriminator loss stays below this ...
    d_collapse_patience: int = 200  # ... for this many consecutive steps (D has won: G gets no signal)

    def __post_init__(self):
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            setattr(self, f.name, _coerce(f.name, getattr(self, f.name), hints[f.name]))
        self.validate()

    # ---- validation --------------------------------------------------------------------
    def validate(self) -> None:
        """Check every value; raise :class:`ConfigError` naming the option and what is allowed."""
        _choice("dataset", self.dataset, DATASETS)
        _choice("pixel", self.pixel, PIXEL_LOSSES)
        _choice("gan_mode", self.gan_mode, GAN_MODES)
        _choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        _choice("precision", self.precision, PRECISIONS)
        _choice("select_metric", self.select_metric, tuple(SELECT_METRICS))
        if not re.fullmatch(DEVICE_PATTERN, self.device):
            raise ConfigError(f"option 'device' must be one of auto, cpu, cuda, cuda:N, mps; got {self.device!r}")
        for name in ("image_size", "batch_size", "epochs", "eval_every", "eval_batch_size", "toy_images", "d_width",
                     "d_collapse_patience"):
            if getattr(self, name) < 1:
                raise ConfigError(f"option {name!r} must be an integer >= 1; got {getattr(self, name)!r}")
        for name in ("workers", "num_samples", "seed", "threads"):
            if getattr(self, name) < 0:
                raise ConfigError(f"option {name!r} must be an integer >= 0; got {getattr(self, name)!r}")
        if self.max_images is not None and self.max_images < 1:
            raise ConfigError(f"option 'max_images' must be >= 1 or none; got {self.max_images!r}")
        for name in ("lr", "d_lr"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"option {name!r} must be > 0; got {getattr(self, name)!r}")
        for name in ("alpha", "beta", "theta", "d_collapse_threshold"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"option {name!r} must be >= 0; got {getattr(self, name)!r}")
        if self.alpha == 0 and self.beta == 0 and self.theta == 0:
            raise ConfigError("options 'alpha', 'beta', 'theta' are all 0: the generator would learn nothing")
        if not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"option 'betas' must be two numbers in [0, 1); got {self.betas!r}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ConfigError(f"option 'grad_clip' must be > 0 or none; got {self.grad_clip!r}")
        if self.select_metric == "fid" and not self.eval_fid:
            raise ConfigError("option 'select_metric' is 'fid' but 'eval_fid' is false: set eval_fid=true")
        if self.select_metric == "lpips" and not self.eval_lpips:
            raise ConfigError("option 'select_metric' is 'lpips' but 'eval_lpips' is false: set eval_lpips=true")
        if self.beta > 0 and not self.perceptual_layers:
            raise ConfigError("option 'perceptual_layers' is empty while beta > 0; name at least one VGG16 layer")
        from lib.pretrained import VGG16_LAYERS

        for layer in self.perceptual_layers:
            _choice("perceptual_layers", layer, tuple(VGG16_LAYERS))
        if self.resume is not None and self.resume != "auto" and not self.resume.endswith((".pt", ".pth")):
            raise ConfigError(f"option 'resume' must be 'auto', none or a .pt checkpoint path; got {self.resume!r}")
        ucfg = self.unet_config()
        if self.image_size % ucfg.multiple:
            raise ConfigError(
                f"option 'image_size' ({self.image_size}) must be divisible by 2**model.depth = {ucfg.multiple}"
            )
        self.disc_config()

    def check_paths(self) -> None:
        """Check the files and folders the config names (data root, resume checkpoint) exist;
        :class:`ConfigError` otherwise. Separate from ``validate`` so a config read from a
        checkpoint made elsewhere still loads."""
        if self.dataset != "toy":
            from lib.data import resolve_data_root

            try:
                root = resolve_data_root(self.data_root)
            except FileNotFoundError as e:
                raise ConfigError(f"option 'data_root': {e}") from None
            if root is None and self.dataset == "folder":
                raise ConfigError("option 'dataset' is 'folder' but no face folder was found (data_root, "
                                  "$CELEBAHQ_DIR, data/celeba_hq/); set data_root or use dataset=toy or auto")
        if self.resume not in (None, "auto") and not Path(self.resume).is_file():
            raise ConfigError(f"option 'resume': checkpoint {self.resume!r} does not exist")

    def unet_config(self):
        """The generator's ``UNetConfig``: its defaults overridden by ``self.model``."""
        from lib.models import UNetConfig

        return _nested_config("model", UNetConfig, self.model)

    def disc_config(self):
        """The discriminator's ``DiscriminatorConfig`` (``ndf = d_width`` plus ``self.discriminator``)."""
        from lib.models import DiscriminatorConfig

        if "ndf" in self.discriminator:
            raise ConfigError("set the discriminator width with option 'd_width', not 'discriminator.ndf'")
        return _nested_config("discriminator", DiscriminatorConfig, {"ndf": self.d_width, **self.discriminator})

    # ---- (de)serialisation -------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain python values only (so a checkpoint holding it loads with ``weights_only=True``)."""
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """Build from a dict; unknown keys raise :class:`ConfigError` with the closest valid names."""
        if not isinstance(d, dict):
            raise ConfigError(f"a training config must be a mapping of option: value, got {type(d).__name__}")
        known = [f.name for f in dataclasses.fields(cls)]
        for key in d:
            if key not in known:
                raise ConfigError(_unknown_option(key, known))
        return cls(**d)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TrainConfig":
        """Read a ``.yaml``/``.yml`` or ``.json`` file."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist")
        text = path.read_text()
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        elif path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            raise ConfigError(f"config file {str(path)!r} must end in .yaml, .yml or .json")
        return cls.from_dict(data)

    def save(self, path: str | os.PathLike) -> Path:
        """Write as YAML (``.yaml``/``.yml``) or JSON (``.json``), atomically."""
        path = Path(path)
        data = self.to_dict()
        if path.suffix.lower() == ".json":
            text = json.dumps(data, indent=2) + "\n"
        else:
            import yaml

            text = yaml.safe_dump(data, sort_keys=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        tmp.write_text(text)
        os.replace(tmp, path)
        return path

    def with_overrides(self, overrides: list[str] | None) -> "TrainConfig":
        """A copy with ``["key=value", "model.ndims=32", ...]`` applied (the CLI's ``--set``)."""
        data = self.to_dict()
        for item in overrides or []:
            if "=" not in item:
                raise ConfigError(f"--set expects key=value, got {item!r}")
            key, value = (s.strip() for s in item.split("=", 1))
            top, _, sub = key.partition(".")
            if top not in data:
                raise ConfigError(_unknown_option(top, list(data)))
            if sub:
                if not isinstance(data[top], dict):
                    raise ConfigError(f"option {top!r} has no sub-options; use --set {top}=VALUE")
                data[top] = {**data[top], sub: _yaml_scalar(value)}
            else:
                data[top] = value  # coerced to the field's type by __post_init__
        return TrainConfig.from_dict(data)

    def diff(self, other: "TrainConfig | dict") -> dict[str, tuple[Any, Any]]:
        """``{option: (self's value, other's value)}`` for every option that differs."""
        a = _flatten(self.to_dict())
        b = _flatten(other.to_dict() if isinstance(other, TrainConfig) else _plain(other))
        return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def config_help() -> dict[str, str]:
    """``{option: its one-line comment}`` read from the ``TrainConfig`` source (for ``--help``)."""
    import inspect

    out = {}
    for line in inspect.getsource(TrainConfig).splitlines():
        m = re.match(r"\s{4}(\w+): [^=]+=.*?  # (.*)$", line)
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


def _choice(name: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ConfigError(f"option {name!r} must be one of {', '.join(map(str, allowed))}; got {value!r}")


def _unknown_option(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return f"unknown option {key!r}{hint}; allowed options: {', '.join(known)}"


def _nested_config(prefix: str, cls, overrides: dict):
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in overrides.items():
        if key not in known:
            raise ConfigError(_unknown_option(f"{prefix}.{key}", [f"{prefix}.{k}" for k in known]))
        kwargs[key] = _coerce(f"{prefix}.{key}", value, hints[key])
    try:
        return cls(**kwargs)
    except (AssertionError, ValueError, TypeError) as e:
        raise ConfigError(f"option {prefix!r}: {e}") from None


def _yaml_scalar(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def _coerce(name: str, value: Any, tp: Any) -> Any:
    """Convert ``value`` (from YAML, JSON or the command line) to the annotated type ``tp``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", "~", "")):
            if type(None) in args:
                return None
            raise ConfigError(f"option {name!r} cannot be none")
        inner = [a for a in args if a is not type(None)]
        return _coerce(name, value, inner[0])
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        raise ConfigError(f"option {name!r} must be true or false; got {value!r}")
    if tp is int:
        try:
            if isinstance(value, bool):
                raise ValueError
            f = float(value)
            if not f.is_integer():
                raise ValueError
            return int(f)
        except (TypeError, ValueError):
            raise ConfigError(f"option {name!r} must be an integer; got {value!r}") from None
    if tp is float:
        try:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"option {name!r} must be a number; got {value!r}") from None
    if tp is str:
        if isinstance(value, (dict, list, tuple)):
            raise ConfigError(f"option {name!r} must be a string; got {value!r}")
        return str(value)
    if origin is tuple:
        if isinstance(value, str):
            parsed = _yaml_scalar(value)
            value = parsed if isinstance(parsed, list) else [v for v in value.strip("()[] ").split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"option {name!r} must be a list (e.g. a,b); got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(name, v, args[0]) for v in value)
        if len(value) != len(args):
            raise ConfigError(f"option {name!r} must have {len(args)} values; got {list(value)!r}")
        return tuple(_coerce(name, v, t) for v, t in zip(value, args))
    if tp is dict or origin is dict:
        if isinstance(value, str):
            value = _yaml_scalar(value)
        if not isinstance(value, dict):
            raise ConfigError(f"option {name!r} must be a mapping (e.g. {{ndims: 32}}); got {value!r}")
        return dict(value)
    return value


def _plain(x: Any) -> Any:
    """Tuples -> lists, recursively: JSON/YAML-safe and weights_only-safe."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
