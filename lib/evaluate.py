"""The evaluation loop: metrics of a predictor or a checkpoint on a split, beside the grey and
mean-face baselines, as JSON.

Taught in ``07_evaluation``; the command is ``python -m lib evaluate runs/x/best.pt --split test``.
Every number comes from ``lib.metrics.MetricSuite`` (the definitions), the same code for the
model and the baselines: *grey* (ab = 0) and *mean face* (the per-pixel mean ab of the train
split at the evaluation size). A checkpoint is evaluated on the data it was trained on (its
``data_source``) unless other data are asked for (``data_root``), and the report says which.
Report the test split; val is what picked the checkpoint. Before a training run evaluates, it
recomputes the BatchNorm statistics for the weights evaluated (``recompute_bn_stats``,
"precise BN", taught in ``05_training_unet``).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch import Tensor, nn

from lib.checkpoint import load_generator
from lib.data import DataSource, open_splits, reopen_splits
from lib.errors import ConfigError, DataError
from lib.metrics import MetricSuite, grey_predictor, mean_face_ab, mean_face_predictor
from lib.runtime import DistInfo, autocast, pick_device, rng_state, set_rng_state
from lib.utils import eval_mode, mirror_averaged, write_text_atomic

__all__ = ["predictor", "recompute_bn_stats", "recompute_bn_stats_over", "evaluate_predictor", "evaluate_model",
           "metrics_with_baselines", "test_report", "evaluate_checkpoint", "format_table", "TABLE_METRICS"]

TABLE_METRICS = ("psnr_rgb", "ssim_rgb", "psnr_rgb_pooled64", "psnr_lab", "ssim_lab", "delta_cf", "lpips", "fid")
_NOT_AVERAGED = {"n_images", "seconds", "fid"}


def predictor(model: torch.nn.Module, device: torch.device | str, channels_last: bool = False, flip: bool = False
              ) -> Callable[[Tensor], Tensor]:
    """``predict(l_n) -> ab_hat (B, 2, H, W)`` for evaluation: no gradients, fp32 whatever the
    training precision (metrics must not depend on the hardware). Put ``model`` in eval mode.

    ``flip``: test-time mirror averaging, ``(G(x) + mirror(G(mirror(x)))) / 2`` (a face is about
    left-right symmetric, and the two predictions' errors partly cancel); twice the time. Off
    unless asked: reported numbers are the model's own. Taught in ``07_evaluation``."""

    def run(l_n: Tensor) -> Tensor:
        return model(l_n.contiguous(memory_format=torch.channels_last) if channels_last else l_n).float().contiguous()

    @torch.no_grad()
    def predict(l_n: Tensor) -> Tensor:
        l_n = l_n.to(device)  # (B, 1, H, W)
        return mirror_averaged(run, l_n) if flip else run(l_n)  # (B, 2, H, W)

    return predict


@torch.no_grad()
def recompute_bn_stats(model: nn.Module, batches) -> int:
    """Replace every BatchNorm's running statistics by their exact average over ``batches`` of L_n.

    The running averages (momentum 0.1) trail weights that change every step, and an EMA's
    weights never ran forward at all; both make eval-mode results jump between evaluations (the
    evidence: ``benchmarks/eval_stability.py``). Recomputing the statistics for the weights being
    evaluated ("precise BN") removes that. Returns the number of images seen. Taught in
    ``05_training_unet``.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: every batch counts the same
    seen = 0
    with eval_mode(model):
        model.train()
        for l_n in batches:
            model(l_n)  # (B, 2, H, W), discarded: only the statistics matter
            seen += len(l_n)
    for m, momentum in zip(bns, momenta):
        m.momentum = momentum
    return seen


def recompute_bn_stats_over(model: nn.Module, dataset, batch_size: int, n_batches: int, device: torch.device,
                            channels_last: bool = False, amp_dtype: torch.dtype | None = None) -> int:
    """:func:`recompute_bn_stats` over the L of ``dataset``'s first ``n_batches`` batches, in the
    precision of training (``amp_dtype``), as a training run does before each evaluation: always
    the same images, and the random draws of their flips are undone (the RNG state is restored),
    so a resumed run stays exact. Taught in ``05_training_unet``."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    n, state = min(len(dataset) // batch_size, n_batches) * batch_size, rng_state()
    batches = (torch.stack([dataset[j][0] for j in range(i, i + batch_size)]).to(device, memory_format=fmt)
               for i in range(0, n, batch_size))  # each (B, 1, S, S)
    with autocast(device, amp_dtype):
        seen = recompute_bn_stats(model, batches)
    set_rng_state(state)
    return seen


def evaluate_predictor(predict_fn: Callable[[Tensor], Tensor], loader, suite: MetricSuite,
                       dist_info: DistInfo | None = None) -> dict:
    """``suite.evaluate(predict_fn, loader)``, reduced across ranks under ``torchrun``.

    Each rank evaluates its shard; per-image means are combined weighted by each shard's
    image count, so the result is the mean over the whole split. FID, which does not
    decompose, is computed by rank 0 over the whole split. Taught in ``07_evaluation``.
    """
    info = dist_info or DistInfo()
    if not info.enabled:
        return suite.evaluate(predict_fn, loader)
    out = suite.evaluate(predict_fn, loader) if len(loader.sampler) else {"n_images": 0}
    gathered: list[Any] = [None] * info.world_size
    dist.all_gather_object(gathered, out)
    parts = [g for g in gathered if g.get("n_images")]
    n = sum(g["n_images"] for g in parts)
    result = {"n_images": n, **{k: sum(g[k] * g["n_images"] for g in parts) / n
                                for k in parts[0] if k not in _NOT_AVERAGED}}
    result["seconds"] = max(g.get("seconds", 0.0) for g in parts)
    if suite.use_fid:
        box = [None]
        if info.is_main:
            full = torch.utils.data.DataLoader(loader.dataset, batch_size=loader.batch_size, shuffle=False)
            box[0] = suite.evaluate(predict_fn, full)["fid"]
        dist.broadcast_object_list(box, src=0)
        result["fid"] = box[0]
    return result


def evaluate_model(model: torch.nn.Module, loader, suite: MetricSuite, device: torch.device | str,
                   channels_last: bool = False, dist_info: DistInfo | None = None) -> dict:
    """Metrics of ``model``, in eval mode for the call, on ``loader`` (this rank's shard). Under
    ``torchrun`` every rank first takes rank 0's buffers (BatchNorm statistics), as the
    checkpoint holds them. How a training run evaluates (``05_training_unet``)."""
    info = dist_info or DistInfo()
    if info.enabled:
        for b in model.buffers():
            dist.broadcast(b.data, src=0)
    with eval_mode(model):
        return evaluate_predictor(predictor(model, device, channels_last), loader, suite, info)


def metrics_with_baselines(predict_fn, loader, suite: MetricSuite, train_set=None, dist_info: DistInfo | None = None,
                           baselines: bool = True) -> dict:
    """``{"model": metrics, "grey": metrics, "mean_face": metrics}`` on one loader.

    The mean face is the per-pixel mean ab of ``train_set`` (read without flips); it is left
    out when no train set is given, it is empty, or its image size differs from the loader's.
    """
    report = {"model": evaluate_predictor(predict_fn, loader, suite, dist_info)}
    if not baselines:
        return report
    report["grey"] = evaluate_predictor(grey_predictor(), loader, suite, dist_info)
    size = getattr(loader.dataset, "image_size", None)
    if train_set is None or not len(train_set) or getattr(train_set, "image_size", size) != size:
        return report
    info = dist_info or DistInfo()
    plain = copy.copy(train_set)
    plain.flip = False  # the mean face must not depend on random flips
    mean_ab = mean_face_ab(plain, progress=suite.progress) if info.is_main else None  # (2, H, W); rank 0 first (caches)
    info.barrier()
    if mean_ab is None:
        mean_ab = mean_face_ab(plain, progress=False)  # (2, H, W), from rank 0's cache
    report["mean_face"] = evaluate_predictor(mean_face_predictor(mean_ab), loader, suite, dist_info)
    report["mean_face_train_images"] = len(train_set)
    return report


def test_report(checkpoint: str | Path, loader, suite: MetricSuite, device: torch.device | str,
                channels_last: bool = False, train_set=None, dist_info: DistInfo | None = None, **facts) -> dict:
    """How a training run ends (``test_metrics.json``): ``checkpoint``'s generator once on the
    test split's ``loader``, beside the grey and mean-face baselines (:func:`metrics_with_baselines`),
    with ``facts`` about the run and the checkpoint's best epoch. Taught in ``05_training_unet``."""
    model, ckpt = load_generator(checkpoint, device=device)
    model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    report = metrics_with_baselines(predictor(model, device, channels_last), loader, suite, train_set=train_set,
                                    dist_info=dist_info)
    return {**report, "split": "test", "checkpoint": str(checkpoint), "best_epoch": ckpt["best"]["epoch"],
            "num_images": len(loader.dataset), **facts}


def format_table(report: dict) -> str:
    """The report as a markdown table: one row per predictor (model, grey, mean face)."""
    rows = [k for k in ("model", "grey", "mean_face") if k in report]
    cols = [c for c in TABLE_METRICS if any(c in report[r] for r in rows)]
    lines = ["| predictor | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for r in rows:
        lines.append(f"| {r.replace('_', ' ')} | " + " | ".join(f"{report[r][c]:.4f}" if c in report[r] else ""
                                                              for c in cols) + " |")
    if "mean_face" in report and "psnr_rgb" in report["model"]:
        model = report["model"]["psnr_rgb"]
        lines.append(f"\nmodel - mean face: {model - report['mean_face']['psnr_rgb']:+.2f} dB psnr_rgb; model - grey: "
                     f"{model - report['grey']['psnr_rgb']:+.2f} dB")
    return "\n".join(lines)


def evaluate_checkpoint(checkpoint: str | Path | None, split: str = "test", image_size: int | None = None,
                        data_root: str | None = None, max_images: int | None = None, batch_size: int = 64,
                        device: str = "auto", baselines: bool = True, fid: bool = False, lpips: bool = False,
                        flip: bool = False, progress: bool = True) -> dict:
    """Metrics of ``checkpoint``'s generator on ``split`` at ``image_size`` (default: its training
    size), with the grey and mean-face baselines; a JSON-ready dict.

    The data are the checkpoint's own (``data_source``) unless ``data_root`` names another
    folder; the report's ``data`` and ``data_note`` say which. ``flip``: the model's predictions
    mirror-averaged (:func:`predictor`). Taught in ``07_evaluation``.
    """
    if split not in ("train", "val", "test"):
        raise ConfigError(f"option '--split' must be one of train, val, test; got {split!r}")
    dev = pick_device(device)
    model, ckpt = load_generator(checkpoint, device=dev)
    cfg = ckpt.get("train_config") or {}
    size = image_size or cfg.get("image_size")
    if not size or size % model.config.multiple:
        raise ConfigError(f"option '--size' ({size}) must be a multiple of 2**depth = {model.config.multiple} "
                          f"for this model (e.g. {max(1, round((size or 0) / model.config.multiple)) * model.config.multiple})")
    splits = tuple(dict.fromkeys([split] + (["train"] if baselines and split != "train" else [])))
    kw = dict(max_images=max_images, toy_images=cfg.get("toy_images", 512), seed=cfg.get("seed", 0),
              cache=cfg.get("cache", True), progress=progress)
    saved = ckpt.get("data_source")
    if data_root is not None:
        datasets, source = open_splits(data_root, "folder", size, splits, **kw)
        trained = DataSource.from_dict(saved).describe() if saved else "data the checkpoint does not name"
        note = f"asked for with --data-root; the checkpoint was trained on {trained}"
    elif saved:
        datasets, source = reopen_splits(saved, size, splits, **kw)
        note = "the data the checkpoint was trained on"
    elif cfg.get("dataset") == "toy" or cfg.get("data_root"):
        datasets, source = open_splits(cfg.get("data_root"), cfg["dataset"], size, splits, **kw)
        note = "the data its training config names (the checkpoint stores no data source)"
    else:
        raise DataError(f"{checkpoint} does not say which face folder it was trained on (it was written before "
                        "checkpoints stored their data): name the folder with --data-root DIR")
    if not len(datasets[split]):
        raise DataError(f"the {split} split of {source.describe()} is empty: evaluate another one with --split, "
                        "or use a folder with more images (--data-root)")
    ds = copy.copy(datasets[split])
    ds.flip = False
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False)
    suite = MetricSuite(fid=fid, lpips=lpips, device=dev, progress=progress)
    report = metrics_with_baselines(predictor(model, dev, flip=flip), loader, suite, train_set=datasets.get("train"),
                                    baselines=baselines)
    report.update({
        "checkpoint": str(checkpoint), "split": split, "image_size": size, "num_images": len(ds),
        "data": source.describe(), "data_source": source.to_dict(), "data_note": note, "epoch": ckpt.get("epoch"),
        "best": ckpt.get("best"), "precision": "fp32", "device": str(dev), "flip": flip,
        "metric_note": "per-image means over the split (psnr_rgb_pooled64: pooled over groups of 64)",
    })
    return report


def main(checkpoint: str | None, out: str | None = None, **options) -> int:
    """``python -m lib evaluate``: print the table, print or write the JSON."""
    if out and Path(out).is_dir():
        raise ConfigError(f"option '--out' ({out}) is a folder; name the JSON file to write, e.g. {Path(out) / 'eval.json'}")
    report = evaluate_checkpoint(checkpoint, **options)
    text = json.dumps(report, indent=2, default=float)
    if out:
        write_text_atomic(out, text + "\n")
        print(f"[evaluate] {report['split']} split, {report['num_images']} images at {report['image_size']}px of "
              f"{report['data']} ({report['data_note']}) -> {out}\n{format_table(report)}")
    else:
        print(text)
    return 0
