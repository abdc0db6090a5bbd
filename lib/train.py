"""The training engine: a config, a pix2pix-style trainer, checkpoints and history.

Taught in ``notebooks/08_training.ipynb`` (generator-only training, checkpoints, resuming)
and ``notebooks/06_gan.ipynb`` (the discriminator step). The same code runs a notebook
cell, ``python -m lib train --config configs/seed.yaml`` on a laptop, and
``torchrun --nproc_per_node=N -m lib train ...`` on several GPUs.

One training step (``Trainer.optimize_parameters``), as in pix2pix::

    set_input(batch)   L_n (B,1,H,W), ab_n (B,2,H,W) -> device
    forward()          ab_hat = G(L_n)
    backward_D()       only when theta > 0:  L_D = 1/2 [ gan(D(L, ab_hat.detach()), fake)
                                                         + gan(D(L, ab), real) ]
    backward_G()       L_G = alpha * pixel + beta * perceptual + theta * gan(D(L, ab_hat), real)

What a run writes into ``out_dir``::

    config.yaml                 the resolved TrainConfig
    last.pt, best.pt            checkpoints (atomic writes; best by ``select_metric`` on val)
    history_steps.csv           one row per step: losses, learning rate, time
    history_epochs.csv / .json  one row per epoch: mean losses, val metrics
    samples/epoch_NNNN.png      the same val faces after each evaluation (L | prediction | truth)
    test_metrics.json           best.pt on the test split, with the grey and mean-face baselines

The pieces it stands on have their own modules: ``lib.config`` (``TrainConfig``),
``lib.runtime`` (device, precision, threads, seeding, ``torchrun``), ``lib.checkpoint``
(atomic save, safe load, mismatch messages); their public names are re-exported here.
"""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

from lib.checkpoint import (  # noqa: F401 (re-exported: lib.train is the trainer's public API)
    CHECKPOINT_FORMAT,
    CheckpointMismatchError,
    save_checkpoint,
    load_checkpoint,
    load_state_checked,
    load_generator,
)
from lib.config import (  # noqa: F401 (re-exported: lib.train is the trainer's public API)
    TrainConfig,
    ConfigError,
    config_help,
    DEVICE_PATTERN,
    SELECT_METRICS,
    _plain,
)
from lib.runtime import (  # noqa: F401 (re-exported: lib.train is the trainer's public API)
    pick_device,
    cpu_has_native_bf16,
    resolve_precision,
    resolve_channels_last,
    resolve_threads,
    apply_threads,
    resolve_compile,
    seed_everything,
    DistInfo,
    _DTYPES,
    _worker_init,
    _rng_state,
    _set_rng_state,
    _all_reduce,
    _barrier,
)

__all__ = [
    "TrainConfig",
    "ConfigError",
    "Trainer",
    "TrainingDiverged",
    "CheckpointMismatchError",
    "DistInfo",
    "pick_device",
    "resolve_precision",
    "resolve_channels_last",
    "resolve_compile",
    "resolve_threads",
    "cpu_has_native_bf16",
    "seed_everything",
    "save_checkpoint",
    "load_checkpoint",
    "load_generator",
    "load_state_checked",
    "config_help",
    "build_datasets",
]


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite; the run stopped and the last good checkpoint was kept."""



# ======================================================================================
# Data helpers
# ======================================================================================
class ResumableSampler(torch.utils.data.DistributedSampler):
    """``DistributedSampler`` (also for one process) that can start part-way into an epoch.

    The order of epoch ``e`` depends only on ``(seed, e)``, so a resumed run sees the same
    batches as an uninterrupted one; ``set_start(n)`` skips this rank's first ``n`` samples.
    """

    def __init__(self, dataset, num_replicas: int, rank: int, shuffle: bool, seed: int):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed)
        self.start = 0

    def set_start(self, n: int) -> None:
        self.start = n

    def __iter__(self):
        return iter(list(super().__iter__())[self.start:])

    def __len__(self) -> int:
        return self.num_samples - self.start


class _ShardSampler(torch.utils.data.Sampler):
    """Evaluation shard of one rank: indices ``rank, rank + W, ...`` in order, no padding."""

    def __init__(self, n: int, rank: int, world_size: int):
        self.indices = list(range(rank, n, world_size))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def build_datasets(cfg: TrainConfig, splits=("train", "val", "test")) -> dict:
    """The train/val/test datasets a config names (a face folder, or ToyFaces)."""
    from lib.data import ToyFaces, make_dataset, resolve_data_root

    root = resolve_data_root(cfg.data_root) if cfg.dataset != "toy" else None
    if cfg.dataset == "folder" and root is None:
        raise ConfigError(
            f"option 'dataset' is 'folder' but no face folder was found (data_root={cfg.data_root!r}, "
            "$CELEBAHQ_DIR, data/celeba_hq/); set data_root or use dataset=toy"
        )
    if root is None and cfg.dataset == "auto":
        print("[data] no face folder (data_root, $CELEBAHQ_DIR or data/celeba_hq/): using ToyFaces, generated "
              "stand-in faces; numbers on them say nothing about real faces (see data/README.md)")
    out = {}
    for split in splits:
        if root is None:
            n = cfg.toy_images if split == "train" else max(16, cfg.toy_images // 8)
            n = n if cfg.max_images is None else min(n, cfg.max_images)
            out[split] = ToyFaces(num_images=n, image_size=cfg.image_size, split=split, seed=cfg.seed)
        else:
            out[split] = make_dataset(root, split=split, image_size=cfg.image_size, cache=cfg.cache,
                                      max_images=cfg.max_images)
    return out


# ======================================================================================
# The trainer
# ======================================================================================
class Trainer:
    """Generator-only or GAN training, split pix2pix-style so a notebook can step through it.

    ``Trainer(cfg).fit()`` runs everything (data, epochs, evaluation, checkpoints, the
    final test). In a notebook::

        trainer = Trainer(cfg)
        trainer.set_input(next(iter(trainer.train_loader)))
        trainer.forward(); trainer.backward_D(); trainer.backward_G()   # or optimize_parameters()

    ``datasets={"train": ..., "val": ..., "test": ...}`` replaces the datasets the config
    names. Under ``torchrun`` the same code uses DistributedDataParallel.
    Taught in ``notebooks/08_training.ipynb`` and ``notebooks/06_gan.ipynb``.
    """

    def __init__(self, config: TrainConfig, datasets: dict | None = None, dist_info: DistInfo | None = None):
        from lib.losses import ColorizationLoss
        from lib.models import PatchDiscriminator, UNet

        self.cfg = cfg = config
        self.dist = dist_info or DistInfo.from_env()
        self.device = pick_device(cfg.device, self.dist.local_rank)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self._init_process_group()
        self.precision = resolve_precision(cfg.precision, self.device)
        self.amp_dtype = _DTYPES[self.precision]
        self.channels_last = resolve_channels_last(cfg.channels_last, self.device)
        self.compile = resolve_compile(cfg.compile, self.device)
        self.out_dir = Path(cfg.out_dir)
        if cfg.batch_size % self.dist.world_size:
            raise ConfigError(f"option 'batch_size' ({cfg.batch_size}) must be divisible by the number of "
                              f"processes ({self.dist.world_size})")
        self.local_batch = cfg.batch_size // self.dist.world_size
        self.threads = apply_threads(cfg.threads, self.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True

        # models: the same initial weights on every rank (DDP also broadcasts rank 0's)
        seed_everything(cfg.seed)
        self.G = UNet(cfg.unet_config())
        self.D = PatchDiscriminator(cfg.disc_config()) if cfg.theta > 0 else None
        self.criterion = ColorizationLoss(alpha=cfg.alpha, beta=cfg.beta, theta=cfg.theta, pixel=cfg.pixel,
                                          perceptual_layers=tuple(cfg.perceptual_layers), gan_mode=cfg.gan_mode)
        self.gan_loss = self.criterion.gan  # GANLoss(cfg.gan_mode): D's loss in backward_D
        seed_everything(cfg.seed + self.dist.rank)  # data order and flips differ per rank
        self._place_models()

        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=cfg.lr, betas=tuple(cfg.betas))
        self.opt_D = (torch.optim.Adam(self.D.parameters(), lr=cfg.d_lr, betas=tuple(cfg.betas))
                      if self.D is not None else None)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")

        # data
        self.datasets = datasets if datasets is not None else build_datasets(cfg)
        self._build_loaders()
        self.steps_per_epoch = self.local_steps_per_epoch
        total = max(1, cfg.epochs * self.steps_per_epoch)
        lam = (lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total))) if cfg.lr_schedule == "cosine" \
            else (lambda s: 1.0)
        self.sched_G = torch.optim.lr_scheduler.LambdaLR(self.opt_G, lam)
        self.sched_D = torch.optim.lr_scheduler.LambdaLR(self.opt_D, lam) if self.opt_D is not None else None

        # progress
        self.epoch = 0  # completed epochs
        self.step = 0  # optimisation steps taken
        self.batch_in_epoch = 0  # batches of the current epoch already done (resume mid-epoch)
        self.best_value: float | None = None
        self.best_epoch: int | None = None
        self.history: list[dict] = []  # one dict per epoch
        self.terms: dict[str, float] = {}  # loss terms of the last step
        self._stop_signal: str | None = None
        self._d_low = 0
        self._d_warned = False
        self._suite = None
        self._t0 = time.perf_counter()
        self._epoch_sums: dict[str, float] = {}  # running sums of the loss terms in this epoch

        if cfg.resume is not None:
            path = self.out_dir / "last.pt" if cfg.resume == "auto" else Path(cfg.resume)
            if path.is_file():
                self.load_state(load_checkpoint(path, map_location="cpu"))
                self.log(f"[train] resumed from {path}: epoch {self.epoch}, step {self.step}"
                         + (f", batch {self.batch_in_epoch} of the epoch" if self.batch_in_epoch else ""))
            elif cfg.resume == "auto":
                self.log(f"[train] resume=auto: no {path} yet, starting fresh")
            else:
                raise FileNotFoundError(f"option 'resume': checkpoint {str(path)!r} does not exist")
        elif (self.out_dir / "last.pt").is_file():
            self.log(f"[train] note: {self.out_dir} holds a checkpoint of an earlier run; this run starts fresh "
                     "and overwrites it (continue the earlier one with --set resume=auto)")

    # ---- setup helpers -----------------------------------------------------------------
    def _init_process_group(self) -> None:
        import torch.distributed as dist

        if self.dist.enabled and not dist.is_initialized():
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            dist.init_process_group(backend=backend, rank=self.dist.rank, world_size=self.dist.world_size)

    def _place_models(self) -> None:
        """Move to the device, channels-last, SyncBatchNorm, DDP and ``torch.compile`` wrappers.

        ``self.G`` / ``self.D`` stay the plain modules (their state dicts are what is saved);
        ``self.G_run`` / ``self.D_run`` are what the training step calls.
        """
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for net in (self.G, self.D) if net is not None
                     for m in net.modules())
        if self.dist.enabled and has_bn:
            if self.device.type == "cuda":
                self.G = nn.SyncBatchNorm.convert_sync_batchnorm(self.G)
                if self.D is not None:
                    self.D = nn.SyncBatchNorm.convert_sync_batchnorm(self.D)
            else:
                self.log("[train] note: SyncBatchNorm needs a GPU; on CPU each process keeps its own batch statistics")
        self.G.to(self.device, memory_format=fmt)
        if self.D is not None:
            self.D.to(self.device, memory_format=fmt)
        self.criterion.to(self.device, memory_format=fmt)  # the VGG of the perceptual loss too (it runs 3x per step)
        self.G_run, self.D_run = self.G, self.D
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.G_run = DDP(self.G, device_ids=ids)
            if self.D is not None:
                self.D_run = DDP(self.D, device_ids=ids)
        if self.compile:
            self.G_run = torch.compile(self.G_run)
            if self.D is not None:
                self.D_run = torch.compile(self.D_run)

    def _build_loaders(self) -> None:
        cfg, info = self.cfg, self.dist
        pin = self.device.type == "cuda"
        common = dict(num_workers=cfg.workers, pin_memory=pin, worker_init_fn=_worker_init)
        train = self.datasets["train"]
        if len(train) < self.local_batch * info.world_size:
            raise ConfigError(f"the train split has {len(train)} images, fewer than option 'batch_size' "
                              f"({cfg.batch_size}); lower batch_size or raise max_images")
        self.train_sampler = ResumableSampler(train, info.world_size, info.rank, shuffle=True, seed=cfg.seed)
        self.local_steps_per_epoch = self.train_sampler.num_samples // self.local_batch
        self.train_loader = torch.utils.data.DataLoader(
            train, batch_size=self.local_batch, sampler=self.train_sampler, drop_last=True,
            generator=torch.Generator(), **common)
        self.eval_loaders = {}
        for split in ("val", "test"):
            ds = self.datasets.get(split)
            if ds is not None and len(ds):
                sampler = _ShardSampler(len(ds), info.rank, info.world_size)
                self.eval_loaders[split] = torch.utils.data.DataLoader(
                    ds, batch_size=cfg.eval_batch_size, sampler=sampler, **common)
        if "val" not in self.eval_loaders:
            raise ConfigError("the val split is empty: raise max_images or use a larger folder")
        n = min(cfg.num_samples, len(self.datasets["val"]))
        self.sample_batch = None
        if n:
            items = [self.datasets["val"][i] for i in range(n)]
            self.sample_batch = (torch.stack([l for l, _ in items]), torch.stack([ab for _, ab in items]))

    def log(self, msg: str) -> None:
        """Print on rank 0 only."""
        if self.dist.is_main:
            print(msg, flush=True)

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.precision != "fp32")

    def _to_device(self, x: Tensor) -> Tensor:
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    # ---- the pix2pix-style step --------------------------------------------------------
    def set_input(self, batch) -> None:
        """Take a ``(L_n (B,1,H,W), ab_n (B,2,H,W))`` batch onto the device."""
        l_n, ab_n = batch
        self.real_l = self._to_device(l_n)  # (B, 1, H, W)
        self.real_ab = self._to_device(ab_n)  # (B, 2, H, W)

    def forward(self) -> Tensor:
        """``ab_hat = G(L_n)``, kept as ``self.fake_ab``."""
        with self._autocast():
            self.fake_ab = self.G_run(self.real_l)  # (B, 2, H, W)
        return self.fake_ab

    def backward_D(self) -> Tensor:
        r"""Discriminator loss and its gradients (GAN runs only):

        $$ L_D = \tfrac12\,[\,\ell(D(L, \hat{ab}), \text{fake}) + \ell(D(L, ab), \text{real})\,] $$

        ``ab_hat`` is detached: this step must not change the generator.
        """
        assert self.D is not None, "backward_D needs a discriminator: theta must be > 0"
        _requires_grad(self.D, True)
        with self._autocast():
            logits_fake = self.D_run(self.real_l, self.fake_ab.detach())  # (B, 1, h, w)
            logits_real = self.D_run(self.real_l, self.real_ab)  # (B, 1, h, w)
            d_fake = self.gan_loss(logits_fake, False, for_discriminator=True)
            d_real = self.gan_loss(logits_real, True, for_discriminator=True)
            self.loss_D = 0.5 * (d_fake + d_real)
        self.scaler.scale(self.loss_D).backward()
        self._d_terms = {"loss_D": self.loss_D.detach(), "D_real": d_real.detach(), "D_fake": d_fake.detach()}
        return self.loss_D

    def backward_G(self) -> Tensor:
        r"""Generator loss and its gradients:

        $$ L_G = \alpha\,\text{pixel}(\hat{ab}, ab) + \beta\,\text{perc}(\text{rgb}(L, \hat{ab}), \text{rgb}(L, ab))
               + \theta\,\ell(D(L, \hat{ab}), \text{real}) $$

        The discriminator is frozen here and called without its DDP wrapper (its weights
        are not updated by this loss, so no gradient sync is needed).
        """
        fake_logits = None
        with self._autocast():
            if self.D is not None:
                _requires_grad(self.D, False)
                fake_logits = self.D(self.real_l, self.fake_ab)  # (B, 1, h, w)
            self.loss_G, terms = self.criterion(self.real_l, self.fake_ab, self.real_ab, fake_logits=fake_logits)
        self.scaler.scale(self.loss_G).backward()
        # raw (unweighted) terms for the logs: pixel, perceptual, gan (when on)
        self._g_terms = {"loss_G": self.loss_G.detach(),
                         **{k: v.detach() for k, v in terms.items() if k != "total" and not k.endswith("_weighted")}}
        return self.loss_G

    def optimize_parameters(self) -> dict[str, float]:
        """One full step: forward, D update (GAN runs), G update. Returns the loss terms as floats."""
        self.G.train()
        self.forward()
        self._d_terms = {}
        if self.D is not None:
            self.D.train()
            self.opt_D.zero_grad(set_to_none=True)
            self.backward_D()
            self._clip_and_step(self.D, self.opt_D)
        self.opt_G.zero_grad(set_to_none=True)
        self.backward_G()
        self._clip_and_step(self.G, self.opt_G)
        self.scaler.update()
        self.sched_G.step()
        if self.sched_D is not None:
            self.sched_D.step()
        self.step += 1
        names = list(self._g_terms) + list(self._d_terms)
        values = torch.stack([v.float().reshape(()) for v in list(self._g_terms.values()) + list(self._d_terms.values())])
        self.terms = dict(zip(names, values.tolist()))  # one device sync per step
        return self.terms

    def _clip_and_step(self, net: nn.Module, opt: torch.optim.Optimizer) -> None:
        if self.cfg.grad_clip is not None:
            self.scaler.unscale_(opt)
            nn.utils.clip_grad_norm_(net.parameters(), self.cfg.grad_clip)
        self.scaler.step(opt)

    # ---- checkpoints -------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything needed to continue exactly: weights, optimizers, scaler, schedulers,
        progress, RNG states and the configs (plain dicts, so ``weights_only=True`` loads it)."""
        return {
            "format": CHECKPOINT_FORMAT,
            "train_config": self.cfg.to_dict(),
            "model_config": _plain(self.G.config.to_dict()),
            "disc_config": _plain(self.D.config.to_dict()) if self.D is not None else None,
            "model": self.G.state_dict(),
            "discriminator": self.D.state_dict() if self.D is not None else None,
            "opt_G": self.opt_G.state_dict(),
            "opt_D": self.opt_D.state_dict() if self.opt_D is not None else None,
            "scaler": self.scaler.state_dict(),
            "sched_G": self.sched_G.state_dict(),
            "sched_D": self.sched_D.state_dict() if self.sched_D is not None else None,
            "epoch": self.epoch,
            "step": self.step,
            "batch_in_epoch": self.batch_in_epoch,
            "best": {"metric": self.cfg.select_metric, "value": self.best_value, "epoch": self.best_epoch},
            "history": self.history,
            "epoch_sums": dict(getattr(self, "_epoch_sums", {})) if self.batch_in_epoch else {},
            "elapsed_s": time.perf_counter() - self._t0,  # training time so far (history's time_s continues)
            "rng": _rng_state(),
            "world_size": self.dist.world_size,
            "precision": self.precision,
            "torch_version": str(torch.__version__),
        }

    def load_state(self, ckpt: dict) -> None:
        """Restore a :meth:`state_dict`; another architecture raises :class:`CheckpointMismatchError`.

        The run continues exactly where the checkpoint stopped (same batches, flips and RNG
        streams with ``workers=0``; at epoch boundaries with any number of workers). With
        ``lr_schedule=cosine`` the schedule follows the *current* ``epochs``, so raising
        ``epochs`` on resume stretches the remaining schedule.
        """
        saved_cfg = ckpt.get("train_config", {})
        load_state_checked(self.G, ckpt["model"], what="generator",
                           saved_config={"model": ckpt.get("model_config", {})},
                           current_config={"model": _plain(self.G.config.to_dict())})
        if (self.D is None) != (ckpt.get("discriminator") is None):
            raise CheckpointMismatchError(
                f"the checkpoint {'has' if ckpt.get('discriminator') is not None else 'has no'} discriminator but "
                f"this run {'builds one' if self.D is not None else 'does not'} (theta "
                f"{saved_cfg.get('theta')!r} in the checkpoint vs {self.cfg.theta!r} now)")
        if self.D is not None:
            load_state_checked(self.D, ckpt["discriminator"], what="discriminator",
                               saved_config={"discriminator": ckpt.get("disc_config") or {}},
                               current_config={"discriminator": _plain(self.D.config.to_dict())})
            self.opt_D.load_state_dict(ckpt["opt_D"])
            self.sched_D.load_state_dict(ckpt["sched_D"])
        self.opt_G.load_state_dict(ckpt["opt_G"])
        self.sched_G.load_state_dict(ckpt["sched_G"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.epoch, self.step = int(ckpt["epoch"]), int(ckpt["step"])
        self.batch_in_epoch = int(ckpt.get("batch_in_epoch", 0))
        best = ckpt.get("best", {})
        if best.get("metric") == self.cfg.select_metric:
            self.best_value, self.best_epoch = best.get("value"), best.get("epoch")
        self.history = list(ckpt.get("history", []))
        self._epoch_sums = dict(ckpt.get("epoch_sums", {}))
        elapsed = ckpt.get("elapsed_s", self.history[-1].get("time_s", 0.0) if self.history else 0.0)
        self._t0 = time.perf_counter() - float(elapsed)
        if ckpt.get("rng") is not None:
            _set_rng_state(ckpt["rng"])
        if self.dist.enabled:  # rank 0's RNG state was saved; keep ranks apart
            torch.manual_seed(int(torch.randint(2**62, ()).item()) + self.dist.rank)

    def save(self, name: str) -> Path | None:
        """Write ``out_dir/name`` (rank 0 only; the other ranks wait)."""
        path = None
        if self.dist.is_main:
            path = save_checkpoint(self.state_dict(), self.out_dir / name)
        _barrier(self.dist)
        return path

    # ---- evaluation --------------------------------------------------------------------
    def metric_suite(self):
        """The ``MetricSuite`` used for every evaluation of this run (built once)."""
        if self._suite is None:
            from lib.metrics import MetricSuite

            self._suite = MetricSuite(fid=self.cfg.eval_fid, lpips=self.cfg.eval_lpips, device=self.device,
                                      progress=False)  # one summary line per evaluation instead
        return self._suite

    def predictor(self, model: nn.Module | None = None) -> Callable[[Tensor], Tensor]:
        """``predict(L_n) -> ab_n`` for evaluation: no grad, fp32 whatever the training
        precision (metrics do not depend on the hardware; a bf16 output would round ab)."""
        model = model if model is not None else self.G

        @torch.no_grad()
        def predict(l_n: Tensor) -> Tensor:
            return model(self._to_device(l_n)).float().contiguous()  # (B, 2, H, W)

        return predict

    def evaluate(self, split: str = "val", model: nn.Module | None = None) -> dict[str, float]:
        """Metrics of the generator (or ``model``) on ``split``, averaged over all its images
        (each rank evaluates a shard; the per-image means are reduced across ranks)."""
        from lib.evaluate import evaluate_predictor

        model = model if model is not None else self.G
        was_training = model.training
        self._sync_buffers(model)
        model.eval()
        try:
            return evaluate_predictor(self.predictor(model), self.eval_loaders[split], self.metric_suite(),
                                      dist_info=self.dist)
        finally:
            model.train(was_training)

    def _sync_buffers(self, model: nn.Module) -> None:
        """Give every rank rank 0's batch-norm statistics (per-rank on CPU), as in the checkpoint."""
        if self.dist.enabled:
            import torch.distributed as dist

            for b in model.buffers():
                dist.broadcast(b.data, src=0)

    def save_samples(self, path: Path) -> Path | None:
        """Grid of the fixed val faces (``lib.viz.show_colorization_grid``): grey input,
        prediction with its PSNR_rgb, truth. Rank 0 only."""
        if self.sample_batch is None or not self.dist.is_main:
            return None
        from lib.color import lab_norm_to_rgb
        from lib.metrics import psnr_rgb
        from lib.viz import show_colorization_grid

        l_n, ab_n = self.sample_batch  # (N, 1, H, W), (N, 2, H, W)
        was_training = self.G.training
        self.G.eval()
        ab_hat = self.predictor()(l_n).cpu()  # (N, 2, H, W)
        self.G.train(was_training)
        psnr = psnr_rgb(lab_norm_to_rgb(l_n, ab_hat), lab_norm_to_rgb(l_n, ab_n))  # (N,)
        show_colorization_grid(l_n, ab_hat, ab_n, n=len(l_n), captions=[f"{v:.1f} dB" for v in psnr.tolist()],
                               title=f"epoch {self.epoch}, fixed val images", path=path)
        return path

    # ---- the loop ----------------------------------------------------------------------
    def fit(self) -> dict:
        """Train to ``cfg.epochs``, evaluating, checkpointing and logging; then test best.pt.

        Returns ``{"status": "finished" | "interrupted", "epoch", "step", "best", "test"}``.
        Raises :class:`TrainingDiverged` on a NaN/inf loss (the last good checkpoint stays).
        """
        cfg = self.cfg
        if self.dist.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            cfg.save(self.out_dir / "config.yaml")
            self._truncate_step_history()
        _barrier(self.dist)
        self.log(f"[train] {self.describe()}")
        handlers = self._install_signal_handlers()
        try:
            while self.epoch < cfg.epochs:
                finished_epoch = self._train_epoch()
                if not finished_epoch:
                    self.save("last.pt")
                    self.log(f"[train] stopped by {self._stop_signal} at epoch {self.epoch + 1}, batch "
                             f"{self.batch_in_epoch}/{self.steps_per_epoch}; saved {self.out_dir / 'last.pt'} "
                             f"(continue with --set resume=auto)")
                    return self._summary("interrupted")
                self._end_epoch()
                if self._stop_signal:
                    self.log(f"[train] stopped by {self._stop_signal} after epoch {self.epoch}; "
                             f"saved {self.out_dir / 'last.pt'}")
                    return self._summary("interrupted")
            test = self.test_best() if cfg.test_at_end and "test" in self.eval_loaders else None
            return self._summary("finished", test)
        finally:
            self._restore_signal_handlers(handlers)

    def describe(self) -> str:
        nparams = sum(p.numel() for p in self.G.parameters())
        dparams = sum(p.numel() for p in self.D.parameters()) if self.D is not None else 0
        train = self.datasets["train"]
        return (f"{getattr(train, 'source', type(train).__name__)} | train {len(train)} / val "
                f"{len(self.datasets['val'])} images at "
                f"{self.cfg.image_size}px | G {nparams / 1e6:.2f}M params"
                + (f", D {dparams / 1e6:.2f}M" if self.D is not None else ", no D (theta = 0)")
                + f" | {self.device} {self.precision}{' channels-last' if self.channels_last else ''}"
                + (" compiled" if self.compile else "")
                + (f" {self.threads} thread(s)" if self.device.type == "cpu" else "")
                + f" | {self.dist.world_size} process(es) | {self.steps_per_epoch} steps/epoch x {self.cfg.epochs} "
                  f"epochs | out {self.out_dir}")

    def _train_epoch(self) -> bool:
        """One epoch (or its rest, after a resume). False when a signal stopped it."""
        from tqdm.auto import tqdm

        cfg = self.cfg
        self.train_sampler.set_epoch(self.epoch)
        self.train_sampler.set_start(self.batch_in_epoch * self.local_batch)
        self.train_loader.generator.manual_seed((cfg.seed * 100_003 + self.epoch) * 1_009 + self.dist.rank)  # worker seeds
        if not self.batch_in_epoch:
            self._epoch_sums = {}
        sums = self._epoch_sums
        bar = tqdm(total=self.steps_per_epoch, initial=self.batch_in_epoch, desc=f"epoch {self.epoch + 1}/{cfg.epochs}",
                   disable=not (cfg.progress and self.dist.is_main), dynamic_ncols=True, leave=False,
                   mininterval=0.5 if sys.stderr.isatty() else 30)
        try:
            for batch in self.train_loader:
                self.set_input(batch)
                terms = self.optimize_parameters()
                self.batch_in_epoch += 1
                self._check_step(terms)
                for k, v in terms.items():
                    sums[k] = sums.get(k, 0.0) + v
                sums["_n"] = sums.get("_n", 0) + 1
                self._log_step(terms)
                bar.update(1)
                bar.set_postfix({k: f"{v:.4g}" for k, v in terms.items()}, refresh=False)
                if self._should_stop():
                    return False
        finally:
            bar.close()
        return True

    def _check_step(self, terms: dict[str, float]) -> None:
        bad = [k for k, v in terms.items() if not math.isfinite(v)]
        flags = torch.tensor([float(bool(bad)), float(self._stop_signal is not None)])
        if self.dist.enabled:
            _all_reduce(flags, "max")
            if flags[1] and self._stop_signal is None:
                self._stop_signal = "another rank's signal"
        if flags[0]:
            where = ", ".join(f"{k}={terms[k]}" for k in bad) if bad else "on another rank"
            last = self.out_dir / "last.pt"
            raise TrainingDiverged(
                f"non-finite loss at epoch {self.epoch + 1}, step {self.step}: {where}. Stopped without saving; "
                + (f"the last good checkpoint is {last} (epoch {self.epoch})." if last.is_file()
                   else "no checkpoint had been written yet.")
                + " Try a lower lr, grad_clip, or precision=fp32.")
        if "loss_D" in terms:
            self._d_low = self._d_low + 1 if terms["loss_D"] < self.cfg.d_collapse_threshold else 0
            if self._d_low >= self.cfg.d_collapse_patience and not self._d_warned:
                self._d_warned = True
                msg = (f"discriminator loss below {self.cfg.d_collapse_threshold} for {self._d_low} steps "
                       f"(step {self.step}): D wins every patch and G gets little adversarial signal; "
                       "consider a lower d_lr, a smaller d_width or a smaller theta")
                warnings.warn(msg, RuntimeWarning, stacklevel=2)
                self.log(f"[train] warning: {msg}")

    def _should_stop(self) -> bool:
        return self._stop_signal is not None

    def _end_epoch(self) -> None:
        cfg = self.cfg
        sums = self._epoch_sums
        n = sums.pop("_n", 1)
        means = torch.tensor([sums[k] / n for k in sorted(sums)], dtype=torch.float64)
        if self.dist.enabled:
            means = _all_reduce(means) / self.dist.world_size
        self.epoch += 1
        self.batch_in_epoch = 0
        self._epoch_sums = {}
        row: dict[str, Any] = {"epoch": self.epoch, "step": self.step,
                               "time_s": round(time.perf_counter() - self._t0, 2),
                               "lr": self.opt_G.param_groups[0]["lr"]}
        row.update({f"train_{k}": v for k, v in zip(sorted(sums), means.tolist())})
        if self.epoch % cfg.eval_every == 0 or self.epoch == cfg.epochs:
            metrics = self.evaluate("val")
            row.update({f"val_{k}": v for k, v in metrics.items()})
            value = metrics.get(cfg.select_metric)
            higher = SELECT_METRICS[cfg.select_metric]
            improved = value is not None and math.isfinite(value) and (
                self.best_value is None or (value > self.best_value if higher else value < self.best_value))
            if improved:
                self.best_value, self.best_epoch = float(value), self.epoch
            row["best_epoch"] = self.best_epoch
            self.history.append(row)
            if improved:
                self.save("best.pt")
            self.save_samples(self.out_dir / "samples" / f"epoch_{self.epoch:04d}.png")
            shown = {k: metrics[k] for k in ("psnr_rgb", "ssim_rgb", cfg.select_metric) if k in metrics}
            self.log(f"[train] epoch {self.epoch}/{cfg.epochs} step {self.step} "
                     + " ".join(f"{k} {v:.4g}" for k, v in row.items() if k.startswith("train_"))
                     + " | val " + " ".join(f"{k} {v:.4f}" for k, v in shown.items())
                     + (" (best)" if improved else f" (best {self.best_value:.4f} at epoch {self.best_epoch})"))
        else:
            self.history.append(row)
            self.log(f"[train] epoch {self.epoch}/{cfg.epochs} step {self.step} "
                     + " ".join(f"{k} {v:.4g}" for k, v in row.items() if k.startswith("train_")))
        self.save("last.pt")
        self._write_epoch_history()

    def test_best(self) -> dict:
        """Evaluate best.pt once on the test split, beside the grey and mean-face baselines;
        write ``test_metrics.json`` and print the table. These are the numbers to report."""
        from lib.evaluate import format_table, metrics_with_baselines

        best = self.out_dir / "best.pt"
        _barrier(self.dist)
        model, ckpt = load_generator(best, device=self.device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        report = metrics_with_baselines(
            self.predictor(model), self.eval_loaders["test"], self.metric_suite(),
            train_set=self.datasets.get("train"), dist_info=self.dist)
        report.update({"split": "test", "image_size": self.cfg.image_size, "checkpoint": str(best),
                       "best_epoch": ckpt["best"]["epoch"], "select_metric": self.cfg.select_metric,
                       "num_images": len(self.datasets["test"])})
        if self.dist.is_main:
            _write_json(self.out_dir / "test_metrics.json", report)
            self.log(f"[train] test split, best.pt (epoch {report['best_epoch']}), {report['num_images']} images at "
                     f"{self.cfg.image_size}px, per-image means:\n{format_table(report)}")
        return report

    def _summary(self, status: str, test: dict | None = None) -> dict:
        return {"status": status, "epoch": self.epoch, "step": self.step, "out_dir": str(self.out_dir),
                "best": {"metric": self.cfg.select_metric, "value": self.best_value, "epoch": self.best_epoch},
                "test": test}

    # ---- history files -----------------------------------------------------------------
    def _log_step(self, terms: dict[str, float]) -> None:
        if not self.dist.is_main:
            return
        row = {"epoch": self.epoch + 1, "step": self.step, "time_s": round(time.perf_counter() - self._t0, 3),
               "lr": self.opt_G.param_groups[0]["lr"], **terms}
        path = self.out_dir / "history_steps.csv"
        new = not path.exists()
        with open(path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(row))
            if new:
                w.writeheader()
            w.writerow(row)

    def _truncate_step_history(self) -> None:
        """On resume, drop step rows written after the checkpoint (a crash after last.pt)."""
        path = self.out_dir / "history_steps.csv"
        if not path.exists():
            return
        if self.step == 0:
            path.unlink()
            return
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        if rows and any(int(r["step"]) > self.step for r in rows):
            keep = [r for r in rows if int(r["step"]) <= self.step]
            tmp = path.with_name(f".{path.name}.tmp")
            with open(tmp, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=list(rows[0]))
                w.writeheader()
                w.writerows(keep)
            os.replace(tmp, path)

    def _write_epoch_history(self) -> None:
        if not self.dist.is_main:
            return
        _write_json(self.out_dir / "history.json", self.history)
        fields: list[str] = []
        for row in self.history:
            fields += [k for k in row if k not in fields]
        tmp = self.out_dir / ".history_epochs.csv.tmp"
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields, restval="")
            w.writeheader()
            w.writerows(self.history)
        os.replace(tmp, self.out_dir / "history_epochs.csv")

    # ---- signals -----------------------------------------------------------------------
    def _install_signal_handlers(self):
        """SIGINT / SIGTERM: finish the current step, save last.pt, return. A second one aborts."""
        if threading.current_thread() is not threading.main_thread():
            return None

        def handler(signum, frame):
            name = signal.Signals(signum).name
            if self._stop_signal is not None:
                raise KeyboardInterrupt(f"second {name}: aborting without saving")
            self._stop_signal = name
            if self.dist.is_main:
                print(f"\n[train] {name}: finishing this step, then saving a checkpoint "
                      "(send it again to abort)", file=sys.stderr, flush=True)

        old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        for s in old:
            signal.signal(s, handler)
        return old

    @staticmethod
    def _restore_signal_handlers(old) -> None:
        if old:
            for s, h in old.items():
                signal.signal(s, h)


def _requires_grad(net: nn.Module, flag: bool) -> None:
    for p in net.parameters():
        p.requires_grad_(flag)


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=float) + "\n")
    os.replace(tmp, path)


def main(cfg: TrainConfig) -> int:
    """``python -m lib train``: run a validated config and report; the exit status of the command."""
    cfg.check_paths()  # (the CLI has checked it already; kept for direct callers)
    trainer = Trainer(cfg)
    try:
        trainer.fit()
    except TrainingDiverged as e:
        trainer.log(f"[train] stopped: {e}")
        return 3
    finally:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
    return 0  # finished, or interrupted with a checkpoint saved (the log says which)
