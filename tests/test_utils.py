"""lib.utils: atomic writes leave nothing half-written, stale temp files of dead processes go."""

import os
import subprocess
import sys

import pytest
import torch.nn as nn

from lib.utils import atomic_write, clean_stale_temp_files, eval_mode, write_text_atomic


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "a.txt"
    write_text_atomic(target, "old")
    with pytest.raises(RuntimeError):
        atomic_write(target, lambda f: (f.write(b"partial"), (_ for _ in ()).throw(RuntimeError("boom"))), mode="wb")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_clean_stale_temp_files_removes_dead_processes_files_only(tmp_path):
    dead, alive = _dead_pid(), os.getpid()
    stale = [f".last.pt.tmp-{dead}", f".last.pt.tmp{dead}", f"train_64.npy.tmp-{dead}"]
    kept = [f".best.pt.tmp-{alive}", "notes.tmp-x", "last.pt"]
    for name in stale + kept:
        (tmp_path / name).write_bytes(b"x")
    removed = clean_stale_temp_files(tmp_path)
    assert sorted(p.name for p in removed) == sorted(stale)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)


def test_eval_mode_restores_each_models_state():
    a, b = nn.BatchNorm2d(2).train(), nn.BatchNorm2d(2).eval()
    with eval_mode(a, b, None):
        assert not a.training and not b.training
    assert a.training and not b.training
