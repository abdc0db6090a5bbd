"""Small helpers every module shares: atomic file writes, eval mode, freezing, the cache folder.

One implementation of each, so a crash never leaves a half-written checkpoint, config, cache
or metrics file (the write goes to a temp file beside the target, then one ``os.replace``),
and temp files a killed process left behind are recognisable (``.NAME.tmp-PID``) and cleaned.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import torch.nn as nn
from torch import Tensor

__all__ = ["atomic_write", "write_text_atomic", "clean_stale_temp_files", "eval_mode", "frozen", "mirror_averaged",
           "cache_dir"]

_TMP_INFIX = ".tmp-"
_STALE = re.compile(r"\.tmp-?(\d+)$")


def _temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}{_TMP_INFIX}{os.getpid()}")


def atomic_write(path: str | os.PathLike, write: Callable[[IO], None], mode: str = "wb") -> Path:
    """Call ``write(f)`` on a temp file beside ``path``, then rename it onto ``path`` atomically.

    Readers see the old file or the new one, never a partial one; the temp file is removed if
    ``write`` raises. ``mode`` is ``"wb"`` (bytes) or ``"w"`` (text, newline="" for CSV).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_path(path)
    try:
        with open(tmp, mode, **({"newline": ""} if "b" not in mode else {})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Atomically replace ``path`` with ``text`` (UTF-8)."""
    return atomic_write(path, lambda f: f.write(text), mode="w")


def clean_stale_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Remove the temp files of :func:`atomic_write` left in ``folder`` by processes no longer alive.

    A ``kill -9`` during a save leaves ``.NAME.tmp-PID``; the next start calls this. Files of a
    process that still runs are kept (it may be writing them now). Returns what was removed.
    """
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        m = _STALE.search(p.name)  # also NAME.tmp-PID and .NAME.tmpPID, the schemes of older versions
        if m is None or not p.is_file() or _pid_alive(int(m.group(1))):
            continue
        p.unlink(missing_ok=True)
        removed.append(p)
    return removed


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def frozen(net: nn.Module | None) -> Iterator[None]:
    """No gradient reaches ``net``'s parameters inside the block (the discriminator during the
    generator step of ``06_gan_training``); ``None`` freezes nothing."""
    params = [p for p in net.parameters() if p.requires_grad] if net is not None else []
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def mirror_averaged(fn: Callable, x: Tensor) -> Tensor:
    """``(fn(x) + mirror(fn(mirror(x)))) / 2``, mirroring the last (width) axis: test-time mirror
    averaging of a prediction (a face is about left-right symmetric). Used by
    ``lib.evaluate.predictor(flip=True)`` and ``lib.colorize``; taught in ``07_evaluation``."""
    return 0.5 * (fn(x) + fn(x.flip(-1)).flip(-1))


@contextlib.contextmanager
def eval_mode(*models: nn.Module | None) -> Iterator[None]:
    """Put ``models`` in eval mode for the block and restore each one's train/eval state after.

    ``with eval_mode(G): ab_hat = G(l_n)`` is how evaluation, sampling and colorize run a
    network that may be mid-training (BatchNorm uses its running statistics inside).
    """
    nets = [m for m in models if m is not None]
    states = [m.training for m in nets]
    for m in nets:
        m.eval()
    try:
        yield
    finally:
        for m, was in zip(nets, states):
            m.train(was)


def cache_dir(*parts: str) -> Path:
    """The project's cache folder (``$FACECOLOR_CACHE``, else ``~/.cache/facecolor``), created.

    ``cache_dir("faces")`` is a subfolder. Data caches, mean faces and converted weights live here.
    """
    root = Path(os.environ.get("FACECOLOR_CACHE") or Path.home() / ".cache" / "facecolor")
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
