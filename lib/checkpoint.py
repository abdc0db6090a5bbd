"""Checkpoints: written atomically, loaded safely (``weights_only=True``), checked against
the model they are loaded into.

Taught in ``notebooks/08_training.ipynb``. A checkpoint is a dict of plain values and
tensors: the model and optimizer states, the configs as dicts, the epoch and step, the
RNG states; ``CHECKPOINT_FORMAT`` names its layout.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from lib.config import _plain, _flatten

__all__ = ["CHECKPOINT_FORMAT", "CheckpointMismatchError", "save_checkpoint", "load_checkpoint",
           "load_state_checked", "load_generator"]

CHECKPOINT_FORMAT = "facecolor-checkpoint-v1"


class CheckpointMismatchError(RuntimeError):
    """A checkpoint does not fit the model it is loaded into (another architecture)."""


def save_checkpoint(state: dict, path: str | os.PathLike) -> Path:
    """Write ``state`` atomically: a temporary file in the same folder, fsync, then rename.

    A crash or a kill mid-write leaves the previous checkpoint intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint with ``weights_only=True`` (no arbitrary code runs on load)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    state = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{str(path)!r} is not a training checkpoint of this project (format {CHECKPOINT_FORMAT})")
    return state


def load_state_checked(module: nn.Module, state_dict: dict, *, what: str = "model",
                       saved_config: dict | None = None, current_config: dict | None = None) -> None:
    """``module.load_state_dict(state_dict)``, but a mismatch raises :class:`CheckpointMismatchError`
    listing the missing and unexpected keys, the shape differences, and the config differences.
    """
    own = module.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [(k, tuple(state_dict[k].shape), tuple(v.shape)) for k, v in own.items()
              if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)]
    if missing or unexpected or shapes:
        lines = [f"the checkpoint's {what} does not fit this {what} (another architecture):"]

        def _some(keys, n=12):
            return ", ".join(keys[:n]) + (f", ... ({len(keys) - n} more)" if len(keys) > n else "")

        if shapes:
            lines.append(f"  {len(shapes)} shape mismatch(es) (checkpoint vs current):")
            lines += [f"    {k}: {a} vs {b}" for k, a, b in shapes[:12]]
            if len(shapes) > 12:
                lines.append(f"    ... ({len(shapes) - 12} more)")
        if missing:
            lines.append(f"  {len(missing)} key(s) missing from the checkpoint: {_some(missing)}")
        if unexpected:
            lines.append(f"  {len(unexpected)} unexpected key(s) in the checkpoint: {_some(unexpected)}")
        if saved_config is not None and current_config is not None:
            a, b = _flatten(_plain(saved_config)), _flatten(_plain(current_config))
            diffs = [f"    {k}: {a.get(k)!r} (checkpoint) vs {b.get(k)!r} (current)"
                     for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
            lines.append("  config differences:" if diffs else "  the configs are equal (the code changed?)")
            lines += diffs
        raise CheckpointMismatchError("\n".join(lines))
    module.load_state_dict(state_dict)


def load_generator(path: str | os.PathLike, device: str | torch.device = "cpu"):
    """The generator of a checkpoint, built from the config stored inside it, in eval mode.

    Returns ``(model, checkpoint_dict)``. Taught in ``notebooks/08_training.ipynb``.
    """
    from lib.models import UNet, UNetConfig

    ckpt = load_checkpoint(path)
    model = UNet(UNetConfig.from_dict(ckpt["model_config"]))
    load_state_checked(model, ckpt["model"], what="generator", saved_config={"model": ckpt["model_config"]},
                       current_config={"model": _plain(model.config.to_dict())})
    return model.to(device).eval(), ckpt
