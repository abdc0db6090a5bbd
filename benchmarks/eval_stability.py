"""Why does val PSNR jump between epochs? BatchNorm running statistics vs the weights themselves.

From one training checkpoint, takes ``--steps`` more optimisation steps at each learning rate
in ``--lrs`` (the Adam state restored, the lr held constant) and, every ``--every`` steps,
measures val PSNR_rgb of the same weights three ways:

* ``running``: eval mode with BatchNorm's running statistics (what evaluation reports);
* ``precise``: eval mode with the statistics recomputed as an exact average over
  ``--bn-batches`` train batches at the current weights ("precise BN");
* ``batch``: BatchNorm in train mode, i.e. the statistics of the val batch itself.

If ``running`` jumps while ``precise`` is steady, the lag of the running averages is the
cause; if ``precise`` jumps as much, the weights themselves move (the learning rate) and the
cure is a decaying lr or an average of the weights (EMA). Taught in ``05_training_unet``.

Run: ``python -m benchmarks.eval_stability RUN/last.pt --data FOLDER`` (prints a table and
writes ``results/eval-stability.json``).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
from pathlib import Path

import torch
import torch.nn as nn

from lib.color import lab_norm_to_rgb
from lib.data import open_splits
from lib.losses import ColorizationLoss
from lib.metrics import psnr_rgb
from lib.models import UNet, UNetConfig


def _batches(ds, batch_size, generator=None, shuffle=False):
    idx = torch.randperm(len(ds), generator=generator).tolist() if shuffle else list(range(len(ds)))
    for i in range(0, len(idx) - batch_size + 1 if shuffle else len(idx), batch_size):
        items = [ds[j] for j in idx[i:i + batch_size]]
        yield torch.stack([a for a, _ in items]), torch.stack([b for _, b in items])  # (B, 1, S, S), (B, 2, S, S)


@torch.no_grad()
def val_psnr(model: nn.Module, val, mode: str, train_ds=None, bn_batches: int = 20, seed: int = 0) -> float:
    m = copy.deepcopy(model)
    if mode == "precise":
        for mod in m.modules():
            if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                mod.reset_running_stats()
                mod.momentum = None  # cumulative average: every batch counts equally
        m.train()
        g = torch.Generator().manual_seed(seed)
        for k, (l_n, _) in enumerate(_batches(train_ds, 16, g, shuffle=True)):
            if k == bn_batches:
                break
            m(l_n)
    m.train(mode == "batch")
    values = []
    for l_n, ab in val:
        ab_hat = m(l_n).float()  # (B, 2, S, S)
        values.append(psnr_rgb(lab_norm_to_rgb(l_n, ab_hat), lab_norm_to_rgb(l_n, ab)))  # (B,)
    return torch.cat(values).mean().item()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("--data", required=True)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--every", type=int, default=5)
    p.add_argument("--lrs", type=float, nargs="+", default=[2e-4, 2e-5])
    p.add_argument("--bn-batches", type=int, default=20)
    p.add_argument("--out", default="results/eval-stability.json")
    a = p.parse_args(argv)
    torch.manual_seed(0)
    ckpt = torch.load(a.checkpoint, map_location="cpu", weights_only=True)
    datasets, _ = open_splits(a.data, "folder", a.size, splits=("train", "val"), progress=False)
    train_ds = datasets["train"]
    val = list(_batches(datasets["val"], 64))
    criterion = ColorizationLoss(alpha=100.0, beta=1.0, theta=0.0, pixel="l1")
    report = {"checkpoint": a.checkpoint, "epoch": ckpt.get("epoch"), "size": a.size, "runs": []}
    for lr in a.lrs:
        G = UNet(UNetConfig.from_dict(ckpt["model_config"]))
        G.load_state_dict(ckpt["model"])
        opt = torch.optim.Adam(G.parameters(), lr=lr, betas=(0.5, 0.999))
        opt.load_state_dict(ckpt["opt_G"])
        for group in opt.param_groups:
            group["lr"] = lr
        g = torch.Generator().manual_seed(1)
        rows = []
        batches = _batches(train_ds, 16, g, shuffle=True)
        for step in range(a.steps + 1):
            if step % a.every == 0:
                row = {"step": step, **{mode: val_psnr(G, val, mode, train_ds, a.bn_batches)
                                        for mode in ("running", "precise", "batch")}}
                rows.append(row)
                print(f"lr {lr:g} step {step:3d}: " + "  ".join(f"{k} {v:.2f}" for k, v in row.items() if k != "step"),
                      flush=True)
            if step == a.steps:
                break
            l_n, ab = next(batches)
            G.train()
            loss, _ = criterion(l_n, G(l_n), ab)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        spread = {mode: {"sd": statistics.pstdev(r[mode] for r in rows),
                         "range": max(r[mode] for r in rows) - min(r[mode] for r in rows)}
                  for mode in ("running", "precise", "batch")}
        gap = statistics.mean(abs(r["running"] - r["precise"]) for r in rows)
        report["runs"].append({"lr": lr, "rows": rows, "spread": spread, "mean_abs_running_minus_precise": gap})
        print(f"lr {lr:g}: spread (sd / range, dB) " + "  ".join(
            f"{m} {s['sd']:.2f}/{s['range']:.2f}" for m, s in spread.items()) + f"; mean |running - precise| {gap:.2f} dB")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
