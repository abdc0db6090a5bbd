"""The files a training run keeps in its ``out_dir``, besides the checkpoints.

Taught in ``05_training_unet``. ``config.yaml`` (the resolved config), ``history_steps.csv``
(one row per step: losses, gradient norms, learning rate, time; buffered and appended every
``flush_every`` steps and at each checkpoint, never opened per step), ``history.json`` and
``history_epochs.csv`` (one row per epoch), ``test_metrics.json``. Every whole-file write is
atomic (``lib.utils``); the history files are written with each checkpoint
(:meth:`RunDir.save`), and a run resumed from a checkpoint first drops the step rows written
after it, so history and checkpoint always agree.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from lib.checkpoint import save_checkpoint
from lib.config import RUN_FILES
from lib.utils import atomic_write, clean_stale_temp_files, write_text_atomic

__all__ = ["RunDir", "write_json"]


def write_json(path: str | Path, obj) -> Path:
    """Atomically write ``obj`` as indented JSON (numbers that are tensors or numpy become floats)."""
    return write_text_atomic(path, json.dumps(obj, indent=2, default=float) + "\n")


def _write_csv(f, fields: list[str], rows: list[dict], header: bool = True) -> None:
    w = csv.DictWriter(f, fieldnames=fields, restval="", extrasaction="ignore")
    if header:
        w.writeheader()
    w.writerows(rows)


class RunDir:
    """``out_dir`` of one run: prepared once, then the step and epoch history written into it."""

    def __init__(self, path: str | Path, flush_every: int = 50):
        self.path, self.flush_every = Path(path), flush_every
        self.steps: list[dict] = []  # step rows not yet appended to history_steps.csv

    def prepare(self, fresh: bool, step: int, config=None) -> list[Path]:
        """Create the folder, remove temp files that killed processes left, and either clear
        an earlier run (``fresh``: ``overwrite=true`` was given) or drop the step rows after
        ``step`` (a resume); then write ``config`` (a ``TrainConfig``) to ``config.yaml``.
        Returns the temp files removed."""
        self.path.mkdir(parents=True, exist_ok=True)
        removed = clean_stale_temp_files(self.path)
        if fresh:
            for p in [*(self.path / n for n in (*RUN_FILES, "history_epochs.csv")), *self.path.glob("samples/*.png")]:
                p.unlink(missing_ok=True)
        steps = self.path / "history_steps.csv"
        if steps.is_file():
            with open(steps, newline="") as f:
                rows = list(csv.DictReader(f))
            keep = [r for r in rows if int(r["step"]) <= step]
            if len(keep) < len(rows):
                atomic_write(steps, lambda f: _write_csv(f, list(rows[0]), keep), mode="w")
        if config is not None:
            config.save(self.path / "config.yaml")
        return removed

    def add_step(self, row: dict) -> None:
        self.steps.append(row)
        if len(self.steps) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        """Append the buffered step rows to history_steps.csv."""
        if self.steps:
            path = self.path / "history_steps.csv"
            header = not path.is_file()
            with open(path, "a", newline="") as f:
                _write_csv(f, list(self.steps[0]), self.steps, header=header)
            self.steps = []

    def write_epochs(self, history: list[dict]) -> None:
        """``history.json`` and ``history_epochs.csv`` from the epoch rows so far."""
        write_json(self.path / "history.json", history)
        fields = list(dict.fromkeys(k for row in history for k in row))
        atomic_write(self.path / "history_epochs.csv", lambda f: _write_csv(f, fields, history), mode="w")

    def save(self, name: str, state: dict, history: list[dict]) -> Path:
        """The checkpoint ``state`` as ``name`` (``last.pt``, ``best.pt``), with the step rows so
        far and the epoch files: a checkpoint and the history beside it always agree."""
        self.flush()
        path = save_checkpoint(state, self.path / name)
        self.write_epochs(history)
        return path
