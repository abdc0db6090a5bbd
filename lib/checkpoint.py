"""Checkpoints: written atomically, loaded safely (``weights_only=True``), checked against the
model they are loaded into, and exported as a small generator-only file.

Taught in ``05_training_unet``. Two kinds of file, both dicts of tensors and plain values:

* a **training** checkpoint (``last.pt``, ``best.pt``): ``format``, ``kind="training"``, the
  weights (``model``, ``model_ema`` when ``ema > 0``, ``discriminator``), optimizer and
  scaler states, ``train_config``/``model_config``/``disc_config`` as dicts, the
  ``data_source`` (``lib.data.DataSource.to_dict()``), progress, history and RNG states;
* a **generator** export (``python -m lib export RUN/best.pt OUT.pt``): ``format``,
  ``kind="generator"``, ``model_config``, ``model`` (fp16 by default), ``train_config``,
  ``data_source``, ``history`` and ``test_metrics`` when known.

Files of the first format (``facecolor-checkpoint-v1``: a flat ``train_config``) load too:
their config is rewritten into today's nested layout on load.
"""

from __future__ import annotations

import json
import os
import pickle
import warnings
from pathlib import Path

import torch
from torch import nn

from lib.config import REPO_ROOT, flat_dict
from lib.data import DataSource
from lib.errors import CheckpointError, DataError
from lib.models import UNet, UNetConfig
from lib.utils import atomic_write

__all__ = ["CHECKPOINT_FORMAT", "SHIPPED", "CheckpointMismatchError", "save_checkpoint", "load_checkpoint",
           "load_state_checked", "load_generator", "load_generator_weights", "export_generator", "resume_point",
           "training_checkpoint", "load_training_state"]

CHECKPOINT_FORMAT = "facecolor-checkpoint-v2"
_V1 = "facecolor-checkpoint-v1"
SHIPPED = REPO_ROOT / "checkpoints" / "celebahq128_l1p.pt"  # the model the README and colorize use by default
_NEEDS = {"training": ("model", "model_config", "train_config", "epoch", "step"), "generator": ("model", "model_config")}


class CheckpointMismatchError(CheckpointError):
    """A checkpoint does not fit the model it is loaded into (another architecture)."""


def save_checkpoint(state: dict, path: str | os.PathLike) -> Path:
    """Write ``state`` atomically (temp file, fsync, rename): a kill mid-write keeps the old file."""
    return atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint of this project with ``weights_only=True`` (no code in the file runs).

    Anything else (a missing, empty, truncated or foreign file; pickled objects other than
    tensors and plain values; missing keys) is a :class:`CheckpointError` that names the file.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {str(path)!r} is a folder; name a .pt file in it (e.g. best.pt)")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {str(path)!r} is empty (0 bytes): an interrupted copy? Copy it again")
    try:
        with warnings.catch_warnings():  # garbage can look like a pickle of an unknown protocol
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if "GLOBAL" not in str(e):  # not a pickle of names torch refuses: garbage, or text
            raise CheckpointError(f"{str(path)!r} is not a PyTorch checkpoint (truncated, or another kind of "
                                  "file); give a .pt file written by `python -m lib train` or `export`") from None
        raise CheckpointError(f"{str(path)!r} holds Python objects other than tensors and plain values; it was not "
                              "loaded (weights_only=True: no code in it ran). Use a checkpoint written by this "
                              "project") from None
    except Exception as e:  # noqa: BLE001 - random bytes make the unpickler fail in any way (IndexError, KeyError, ...)
        raise CheckpointError(f"{str(path)!r} is not a readable PyTorch checkpoint (truncated, or another kind of "
                              f"file): {str(e).split('. ')[0] if str(e) else type(e).__name__}") from None
    if not isinstance(state, dict) or state.get("format") not in (CHECKPOINT_FORMAT, _V1):
        raise CheckpointError(f"{str(path)!r} is not a checkpoint of this project (no format "
                              f"{CHECKPOINT_FORMAT!r}); train one with `python -m lib train`")
    if state["format"] == _V1:
        state = _upgrade_v1(state)
    kind = state.get("kind", "training")
    missing = [k for k in _NEEDS.get(kind, ("model",)) if k not in state]
    if missing:
        raise CheckpointError(f"{str(path)!r} is an incomplete {kind} checkpoint: no {', '.join(missing)}")
    return state


def _upgrade_v1(state: dict) -> dict:
    """A v1 checkpoint (flat ``train_config``: ``theta``, ``d_width``, ``model`` overrides) in
    today's layout (``loss.theta``, ``discriminator.ndf``, the full ``model``)."""
    old = dict(state.get("train_config") or {})
    loss = {k: old.pop(k) for k in ("pixel", "alpha", "beta", "theta", "perceptual_layers", "gan_mode") if k in old}
    disc = {**(old.pop("discriminator", None) or {}), **({"ndf": old.pop("d_width")} if "d_width" in old else {})}
    old.pop("model", None)
    new = {**state, "format": CHECKPOINT_FORMAT, "kind": "training", "data_source": state.get("data_source")}
    new["train_config"] = {**old, "model": state.get("model_config", {}), "discriminator": disc, "loss": loss}
    return new


def load_state_checked(module: nn.Module, state_dict: dict, *, what: str = "model",
                       saved_config: dict | None = None, current_config: dict | None = None) -> None:
    """``module.load_state_dict(state_dict)``, but a mismatch raises :class:`CheckpointMismatchError`
    listing the missing and unexpected keys, the shape differences and the config differences."""
    own = module.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [(k, tuple(state_dict[k].shape), tuple(v.shape)) for k, v in own.items()
              if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)]
    if not (missing or unexpected or shapes):
        module.load_state_dict(state_dict)
        return

    def some(keys, n=12):
        return ", ".join(keys[:n]) + (f", ... ({len(keys) - n} more)" if len(keys) > n else "")

    lines = [f"the checkpoint's {what} does not fit this {what} (another architecture):"]
    if shapes:
        lines.append(f"  {len(shapes)} shape mismatch(es) (checkpoint vs current):")
        lines += [f"    {k}: {a} vs {b}" for k, a, b in shapes[:12]] + ([f"    ... ({len(shapes) - 12} more)"]
                                                                          if len(shapes) > 12 else [])
    if missing:
        lines.append(f"  {len(missing)} key(s) missing from the checkpoint: {some(missing)}")
    if unexpected:
        lines.append(f"  {len(unexpected)} unexpected key(s) in the checkpoint: {some(unexpected)}")
    if saved_config is not None and current_config is not None:
        a, b = flat_dict(saved_config), flat_dict(current_config)
        diffs = [f"    {k}: {a.get(k)!r} (checkpoint) vs {b.get(k)!r} (current)"
                 for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        lines += (["  config differences:"] + diffs) if diffs else ["  the configs are equal (the code changed?)"]
    raise CheckpointMismatchError("\n".join(lines))


def generator_weights(ckpt: dict) -> dict:
    """The generator weights to use from a checkpoint: its EMA weights when it has them, as fp32."""
    state = ckpt.get("model_ema") or ckpt["model"]
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def load_generator(path: str | os.PathLike | None = None, device: str | torch.device = "cpu"):
    """The generator of a checkpoint (training or export), built from its stored config, in eval mode.

    ``path`` None: the shipped model :data:`SHIPPED`. Returns ``(model, checkpoint_dict)``.
    Taught in ``05_training_unet``.
    """
    if path is None:
        if not SHIPPED.is_file():
            raise CheckpointError(
                f"no checkpoint given and the shipped model {SHIPPED} is not there: pass one "
                "(e.g. runs/cpu64/best.pt after `python -m lib train --config configs/cpu_64px.yaml`), "
                "or put a checkpoint there")
        path = SHIPPED
    ckpt = load_checkpoint(path)
    try:
        model = UNet(UNetConfig.from_dict(ckpt["model_config"]))
    except (AssertionError, TypeError, ValueError) as e:
        raise CheckpointError(f"{str(path)!r}: its model_config does not build a UNet ({e})") from None
    load_generator_weights(model, ckpt)
    return model.to(device).eval(), ckpt


def load_generator_weights(model: UNet, ckpt: dict) -> None:
    """Load the generator weights of ``ckpt`` (its EMA weights when it has them) into ``model``;
    another architecture raises :class:`CheckpointMismatchError`. ``init_from`` starts a run so."""
    _load_net(model, generator_weights(ckpt), ckpt["model_config"], "generator")


def _load_net(net: nn.Module, state: dict, saved_config: dict, what: str) -> None:
    load_state_checked(net, state, what=what, saved_config=saved_config, current_config=net.config.to_dict())


def export_generator(src: str | os.PathLike, dst: str | os.PathLike, dtype: torch.dtype = torch.float16,
                     overwrite: bool = False) -> Path:
    """Write the generator of training checkpoint ``src`` (its EMA weights when present) to
    ``dst`` as a small file that ``torch.load(weights_only=True)`` and :func:`load_generator` read.

    Also keeps the config, the data source, the history and ``test_metrics.json`` of the run
    when it is beside ``src``. An existing ``dst`` is replaced only with ``overwrite``.
    """
    src, dst = Path(src), Path(dst)
    if dst.exists() and (not overwrite or dst.resolve() == src.resolve()):
        raise CheckpointError(f"{str(dst)!r} exists; choose another file name"
                              + (" (or pass --overwrite)" if dst.resolve() != src.resolve() else ""))
    model, ckpt = load_generator(src)
    tests = src.parent / "test_metrics.json"
    export = {
        "format": CHECKPOINT_FORMAT, "kind": "generator", "model_config": model.config.to_dict(),
        "model": {k: v.to(dtype) if v.is_floating_point() else v for k, v in model.state_dict().items()},
        "train_config": ckpt.get("train_config"), "data_source": ckpt.get("data_source"),
        "history": ckpt.get("history"), "test_metrics": json.loads(tests.read_text()) if tests.is_file() else None,
    }
    return save_checkpoint(export, dst)


def resume_point(ckpt: dict, world_size: int, source: DataSource | None) -> int:
    """Where a training checkpoint continues in its epoch: the images each rank had already
    trained on (0: at an epoch's start). A change of batch size continues the epoch image for
    image; other data, or another number of processes mid-epoch, is refused with the reason."""
    saved = ckpt.get("data_source")
    if saved and source and (saved["kind"], saved.get("root")) != (source.kind, source.root):
        raise DataError(f"the checkpoint was trained on {DataSource.from_dict(saved).describe()}, this run would "
                        f"use {source.describe()}: set data_root (and dataset) to the checkpoint's data")
    old_world = ckpt.get("world_size", 1)
    samples = int(ckpt.get("samples_in_epoch", ckpt.get("batch_in_epoch", 0) * ckpt["train_config"]["batch_size"]
                           // old_world))  # v1 checkpoints count batches
    if samples and old_world != world_size:
        raise CheckpointError(f"the checkpoint stopped mid-epoch with {old_world} process(es); resume with as many "
                              f"(this run has {world_size}): each process's share of the epoch differs")
    return samples


def training_checkpoint(cfg, G: UNet, D: nn.Module | None, ema: UNet | None, opt_G, opt_D, scaler,
                        source: DataSource | None, **progress) -> dict:
    """A training checkpoint's dict: ``cfg`` (a ``TrainConfig``), the networks' configs, the data
    source, the weights of ``G``, its ``ema`` and ``D``, the optimizer and scaler states, then
    ``progress`` (epoch, step, history, RNG states, ...). Tensors and plain values only, so
    :func:`load_checkpoint` reads it with ``weights_only``. Taught in ``05_training_unet``."""
    return {"format": CHECKPOINT_FORMAT, "kind": "training", "train_config": cfg.to_dict(),
            "model_config": G.config.to_dict(), "disc_config": D and D.config.to_dict(),
            "data_source": source and source.to_dict(),
            "model": G.state_dict(), "model_ema": ema and ema.state_dict(), "discriminator": D and D.state_dict(),
            "opt_G": opt_G.state_dict(), "opt_D": opt_D and opt_D.state_dict(), "scaler": scaler.state_dict(),
            **progress, "torch_version": str(torch.__version__)}


def load_training_state(ckpt: dict, G: UNet, D: nn.Module | None, ema: UNet | None, opt_G, opt_D, scaler,
                        theta: float) -> None:
    """Load what :func:`training_checkpoint` saved of the networks into a run's own: weights,
    optimizer and scaler states (a checkpoint without EMA weights starts ``ema`` at G's).
    Another architecture raises :class:`CheckpointMismatchError`, a discriminator in only one of
    the two (``theta``: this run's ``loss.theta``) a :class:`CheckpointError`."""
    _load_net(G, ckpt["model"], ckpt["model_config"], "generator")
    if (D is None) != (ckpt.get("discriminator") is None):
        raise CheckpointError(f"the checkpoint {'has a' if D is None else 'has no'} discriminator but this run "
                              f"{'does not build one' if D is None else 'builds one'} (loss.theta "
                              f"{ckpt['train_config']['loss'].get('theta')!r} in the checkpoint vs {theta!r} now)")
    if D is not None:
        _load_net(D, ckpt["discriminator"], ckpt["disc_config"], "discriminator")
        opt_D.load_state_dict(ckpt["opt_D"])
    opt_G.load_state_dict(ckpt["opt_G"])
    scaler.load_state_dict(ckpt["scaler"])
    if ema is not None:
        ema.load_state_dict(ckpt.get("model_ema") or ckpt["model"])
