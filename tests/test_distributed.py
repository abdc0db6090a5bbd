"""Distributed training: the same ``python -m lib train`` under ``torchrun`` with 2 CPU
processes (gloo backend), a tiny GAN run on ToyFaces; its rank-0 checkpoint must load in
a single process, and the val metrics it logged (each rank evaluated half the split, then
the means were reduced) must equal a single-process evaluation of the same checkpoint.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from lib.checkpoint import load_checkpoint, load_generator
from lib.evaluate import evaluate_checkpoint

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_torchrun_two_cpu_processes_gloo(tmp_path, monkeypatch):
    monkeypatch.setenv("FACECOLOR_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    cfg = dict(dataset="toy", toy_images=32, image_size=32, batch_size=8, epochs=2, loss={"beta": 0.0, "theta": 0.08},
               discriminator={"ndf": 8, "n_layers": 2}, lr=2e-3, model={"ndims": 8, "depth": 2, "num_blocks": 0},
               num_samples=2, progress=False, device="cpu", threads=1, out_dir=str(out))
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "FACECOLOR_CACHE": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "lib", "train", "--config", str(path)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert "2 process(es)" in log, log[-4000:]
    assert log.count("[train] epoch 2/2") == 1, f"rank 0 alone should log:\n{log[-4000:]}"

    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["world_size"] == 2 and ckpt["epoch"] == 2
    assert ckpt["step"] == 2 * (32 // 8), "each step takes batch_size images over both ranks"
    assert ckpt["discriminator"] is not None
    model, _ = load_generator(out / "best.pt")  # a single process, no process group
    assert model(torch.zeros(1, 1, 32, 32)).shape == (1, 2, 32, 32)

    best = load_checkpoint(out / "best.pt")
    logged = next(h for h in best["history"] if h["epoch"] == best["best"]["epoch"])
    assert logged["val_n_images"] == 16, "the reduced metrics must cover the whole val split"
    single = evaluate_checkpoint(out / "best.pt", split="val", baselines=False, device="cpu", progress=False)
    for key in ("psnr_rgb", "ssim_rgb", "psnr_lab", "delta_cf"):
        assert single["model"][key] == pytest.approx(logged[f"val_{key}"], rel=1e-5), (key, single["model"], logged)

    test = json.loads((out / "test_metrics.json").read_text())
    assert test["model"]["n_images"] == 16 and {"grey", "mean_face"} <= set(test)
    assert len(list((out / "samples").glob("*.png"))) == 2
