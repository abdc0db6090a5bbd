"""Metrics of a checkpoint on a split, beside the grey and mean-face baselines, as JSON.

Taught in ``notebooks/07_evaluation.ipynb``; the command is
``python -m lib evaluate runs/x/best.pt --split test`` (``--help`` lists the options).

Every number comes from ``lib.metrics.MetricSuite``, the same code for the model and the
baselines: *grey* (ab = 0) and *mean face* (the per-pixel mean ab of the train split at
the evaluation size; needs the train split of the same data). Values are per-image
means over the split (``psnr_rgb_pooled64`` pools groups of 64 images, as the reference
table did). Report the test split; val is what picked the checkpoint.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor

from lib.train import DistInfo, TrainConfig, build_datasets, load_generator, pick_device

__all__ = ["evaluate_predictor", "metrics_with_baselines", "evaluate_checkpoint", "format_table", "TABLE_METRICS"]

# columns of the printed table (all in the JSON)
TABLE_METRICS = ("psnr_rgb", "ssim_rgb", "psnr_rgb_pooled64", "psnr_lab", "ssim_lab", "delta_cf", "lpips", "fid")
_NOT_AVERAGED = {"n_images", "seconds", "fid"}


def evaluate_predictor(predict_fn: Callable[[Tensor], Tensor], loader, suite, dist_info: DistInfo | None = None) -> dict:
    """``suite.evaluate(predict_fn, loader)``, reduced across ranks under ``torchrun``.

    Each rank evaluates its shard of the split; per-image means are combined weighted by
    each shard's image count, so the result is the mean over the whole split (for
    ``psnr_rgb_pooled64`` the grouping into 64s follows the shards). FID, which does not
    decompose, is computed by rank 0 over the whole split. Taught in
    ``notebooks/07_evaluation.ipynb``.
    """
    info = dist_info or DistInfo()
    if not info.enabled:
        return suite.evaluate(predict_fn, loader)
    import torch.distributed as dist

    out = suite.evaluate(predict_fn, loader) if len(loader.sampler) else {"n_images": 0}
    gathered: list[Any] = [None] * info.world_size
    dist.all_gather_object(gathered, out)
    parts = [g for g in gathered if g.get("n_images")]
    n = sum(g["n_images"] for g in parts)
    result = {"n_images": n}
    for key in parts[0]:
        if key not in _NOT_AVERAGED:
            result[key] = sum(g[key] * g["n_images"] for g in parts) / n
    result["seconds"] = max(g.get("seconds", 0.0) for g in parts)
    if getattr(suite, "use_fid", False):
        box = [None]
        if info.is_main:
            full = torch.utils.data.DataLoader(loader.dataset, batch_size=loader.batch_size, shuffle=False)
            box[0] = suite.evaluate(predict_fn, full)["fid"]
        dist.broadcast_object_list(box, src=0)
        result["fid"] = box[0]
    return result


def metrics_with_baselines(predict_fn, loader, suite, train_set=None, dist_info: DistInfo | None = None,
                           baselines: bool = True) -> dict:
    """``{"model": metrics, "grey": metrics, "mean_face": metrics}`` on one loader.

    The mean face is the per-pixel mean ab of ``train_set`` (read without flips); it is
    left out when no train set is given or its image size differs from the loader's.
    """
    from lib.metrics import grey_predictor, mean_face_ab, mean_face_predictor

    report = {"model": evaluate_predictor(predict_fn, loader, suite, dist_info)}
    if not baselines:
        return report
    report["grey"] = evaluate_predictor(grey_predictor(), loader, suite, dist_info)
    if train_set is not None and len(train_set):
        info = dist_info or DistInfo()
        plain = copy.copy(train_set)
        plain.flip = False  # the mean face must not depend on random flips
        mean_ab = None
        if info.is_main:  # rank 0 computes (and caches) it first; the others then read the cache
            mean_ab = mean_face_ab(plain)  # (2, H, W)
        if info.enabled:
            import torch.distributed as dist

            dist.barrier()
            if not info.is_main:
                mean_ab = mean_face_ab(plain, progress=False)
        size = getattr(loader.dataset, "image_size", None)
        if size is None or tuple(mean_ab.shape[-2:]) == (size, size):
            report["mean_face"] = evaluate_predictor(mean_face_predictor(mean_ab), loader, suite, dist_info)
            report["mean_face_train_images"] = len(train_set)
    return report


def format_table(report: dict) -> str:
    """The report as a markdown table: one row per predictor (model, grey, mean face)."""
    rows = [k for k in ("model", "grey", "mean_face") if k in report]
    cols = [c for c in TABLE_METRICS if any(c in report[r] for r in rows)]
    lines = ["| predictor | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for r in rows:
        cells = [f"{report[r][c]:.4f}" if c in report[r] else "" for c in cols]
        lines.append(f"| {r.replace('_', ' ')} | " + " | ".join(cells) + " |")
    if "model" in report and "mean_face" in report and "psnr_rgb" in report["model"]:
        gap = report["model"]["psnr_rgb"] - report["mean_face"]["psnr_rgb"]
        lines.append(f"\nmodel - mean face: {gap:+.2f} dB psnr_rgb; model - grey: "
                     f"{report['model']['psnr_rgb'] - report['grey']['psnr_rgb']:+.2f} dB")
    return "\n".join(lines)


def evaluate_checkpoint(checkpoint: str | Path, split: str = "test", image_size: int | None = None,
                        data_root: str | None = None, max_images: int | None = None, batch_size: int = 64,
                        device: str = "auto", baselines: bool = True, fid: bool = False, lpips: bool = False,
                        progress: bool = True) -> dict:
    """Metrics of ``checkpoint``'s generator on ``split`` at ``image_size`` (default: its
    training size), with the grey and mean-face baselines; a JSON-ready dict.

    The data are the checkpoint's own (its config's folder, or ToyFaces) unless
    ``data_root`` names another folder. Taught in ``notebooks/07_evaluation.ipynb``.
    """
    from lib.metrics import MetricSuite
    from lib.train import ConfigError

    if split not in ("train", "val", "test"):
        raise ConfigError(f"option 'split' must be one of train, val, test; got {split!r}")
    dev = pick_device(device)
    model, ckpt = load_generator(checkpoint, device=dev)
    data = dict(ckpt["train_config"])
    data.update(resume=None, out_dir=data.get("out_dir", "runs/default"))
    if image_size is not None:
        data["image_size"] = image_size
    if max_images is not None:
        data["max_images"] = max_images
    if data_root is not None:
        data.update(data_root=data_root, dataset="folder")
    cfg = TrainConfig.from_dict(data)  # validates the size against the model's depth
    need = [split] + (["train"] if baselines and split != "train" else [])
    datasets = build_datasets(cfg, splits=tuple(dict.fromkeys(need)))
    ds = copy.copy(datasets[split])
    ds.flip = False
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False)

    @torch.no_grad()
    def predict(l_n: Tensor) -> Tensor:  # fp32, as the trainer's evaluation
        return model(l_n.to(dev)).float()  # (B, 2, H, W)

    suite = MetricSuite(fid=fid, lpips=lpips, device=dev, progress=progress)
    report = metrics_with_baselines(predict, loader, suite, train_set=datasets.get("train"), baselines=baselines)
    report.update({
        "checkpoint": str(checkpoint), "split": split, "image_size": cfg.image_size, "num_images": len(ds),
        "data": getattr(ds, "source", type(ds).__name__), "epoch": ckpt.get("epoch"),
        "best": ckpt.get("best"), "precision": "fp32", "device": str(dev),
        "metric_note": "per-image means over the split (psnr_rgb_pooled64: pooled over groups of 64)",
    })
    return report


def main(checkpoint: str, split: str = "test", image_size: int | None = None, data_root: str | None = None,
         max_images: int | None = None, batch_size: int = 64, device: str = "auto", baselines: bool = True,
         fid: bool = False, lpips: bool = False, out: str | None = None) -> int:
    """``python -m lib evaluate``: print the table, print or write the JSON."""
    report = evaluate_checkpoint(checkpoint, split=split, image_size=image_size, data_root=data_root,
                                 max_images=max_images, batch_size=batch_size, device=device,
                                 baselines=baselines, fid=fid, lpips=lpips)
    text = json.dumps(report, indent=2, default=float)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n")
        print(f"[evaluate] {report['split']} split, {report['num_images']} images at {report['image_size']}px "
              f"-> {out}\n{format_table(report)}")
    else:
        print(text)
    return 0
