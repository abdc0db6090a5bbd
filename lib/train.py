"""The training loop, and the two steps it repeats: a discriminator step and a generator step.

Taught in ``05_training_unet`` (training, checkpoints, resuming) and ``06_gan_training`` (the
D step). The same code runs in a notebook, ``python -m lib train`` and under ``torchrun``.
One iteration of :meth:`Trainer.fit`, as pix2pix's ``optimize_parameters``::

    l_n, ab = batch                                       (B, 1, H, W), (B, 2, H, W)
    ab_hat = G(l_n)                                       (B, 2, H, W)
    discriminator_step(D, opt_D, loss.gan, batch, ab_hat) only when loss.theta > 0
    generator_step(G, opt_G, loss, batch, D, ab_hat=ab_hat)

Each step zeroes its network's gradients, backpropagates, clips, steps its optimizer and
returns a :class:`StepRecord`, so a notebook can call them in its own loop on its own models.
:func:`update_ema` keeps the average of G's weights; ``recompute_bn_stats`` (defined in
``lib.evaluate``, which runs it before every evaluation) is importable from here too.
A run writes ``last.pt``/``best.pt`` (``lib.checkpoint``), ``samples/epoch_NNNN.png`` and
its history and test metrics (``lib.run_dir``) into ``out_dir``.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor, nn
from tqdm.auto import tqdm

from lib.checkpoint import load_checkpoint, load_generator_weights, load_training_state, resume_point, \
    training_checkpoint
from lib.config import TrainConfig, is_better
from lib.data import DataSource, check_splits, open_splits, training_loaders
from lib.errors import UserError
from lib.evaluate import evaluate_model, format_table, predictor, recompute_bn_stats, recompute_bn_stats_over, \
    test_report
from lib.losses import ColorizationLoss
from lib.metrics import MetricSuite
from lib.models import PatchDiscriminator, UNet
from lib.run_dir import RunDir, write_json
from lib.runtime import DistInfo, autocast, for_device, on_stop_signals, rng_state, seed_everything, set_rng_state, \
    setup_runtime
from lib.utils import eval_mode, frozen
from lib.viz import save_sample_grid

__all__ = ["StepRecord", "discriminator_step", "generator_step", "update_ema", "recompute_bn_stats", "Trainer", "TrainingDiverged", "main"]


class TrainingDiverged(UserError):
    """A loss became NaN or infinite; the run stopped and the last good checkpoint was kept."""


@dataclass
class StepRecord:
    """What one step did. Taught in ``06_gan_training``."""

    loss: float  # the total the step minimised: L_D or L_G
    terms: dict[str, float]  # the loss terms, unweighted (G: pixel, perceptual, perceptual/<layer>, gan)
    grad_norm: float  # L2 norm of the stepped network's gradient, before clipping
    logits: dict[str, Tensor]  # D's patch logits (B, 1, h, w), detached: "real", "fake" (D step); "fake" (G step)


def _optimizer_step(opt: torch.optim.Optimizer, loss: Tensor, scaler, grad_clip: float | None) -> Tensor:
    """Backward, clip (optional), ``opt.step()``; the gradient norm before clipping."""
    params = [p for group in opt.param_groups for p in group["params"] if p.requires_grad]
    scaler = scaler if scaler is not None and scaler.is_enabled() else None
    (scaler.scale(loss) if scaler else loss).backward()
    if scaler:
        scaler.unscale_(opt)  # true gradients, for the norm and the clip
    grads = [p.grad for p in params if p.grad is not None]
    norm = nn.utils.clip_grad_norm_(params, grad_clip) if grad_clip else nn.utils.get_total_norm(grads)
    if scaler:
        scaler.step(opt)  # skipped when fp16 gradients overflowed
        scaler.update()
    else:
        opt.step()
    return norm


def discriminator_step(D: nn.Module, opt_D, gan_loss, batch, ab_hat: Tensor, *, scaler=None,
                       grad_clip: float | None = None, amp_dtype: torch.dtype | None = None) -> StepRecord:
    r"""One update of the PatchGAN ``D`` on a batch ``(l_n, ab)`` and the generator's ``ab_hat``:

    $$ L_D = \tfrac12\,[\,\ell(D(L, ab), \text{real}) + \ell(D(L, \hat{ab}), \text{fake})\,] $$

    (``gan_loss.discriminator_loss``). ``ab_hat`` is detached, so the generator is untouched.
    Taught in ``06_gan_training``.
    """
    l_n, ab = batch
    opt_D.zero_grad(set_to_none=True)
    with autocast(l_n.device, amp_dtype):
        real = D(l_n, ab)  # (B, 1, h, w): one logit per patch
        fake = D(l_n, ab_hat.detach())  # (B, 1, h, w)
        loss = gan_loss.discriminator_loss(real, fake)
    norm = _optimizer_step(opt_D, loss, scaler, grad_clip)
    value, real_mean, fake_mean, norm = torch.stack([loss.float(), real.float().mean(), fake.float().mean(),
                                                     norm.float()]).tolist()  # one device sync
    return StepRecord(value, {"loss_D": value, "D_real_logit": real_mean, "D_fake_logit": fake_mean}, norm,
                      {"real": real.detach(), "fake": fake.detach()})


def generator_step(G: nn.Module, opt_G, loss_fn, batch, D: nn.Module | None = None, *, ab_hat: Tensor | None = None,
                   scaler=None, grad_clip: float | None = None, amp_dtype: torch.dtype | None = None) -> StepRecord:
    r"""One update of the U-Net ``G`` on a batch ``(l_n, ab)`` (``loss_fn``: ``lib.losses.ColorizationLoss``):

    $$ L_G = \alpha\,\text{pixel}(\hat{ab}, ab) + \beta\,\text{perc}(L, \hat{ab}, ab) + \theta\,\ell(D(L, \hat{ab}), \text{real}) $$

    ``ab_hat``: ``G(l_n)`` already computed (with its graph) for the D step; computed here if
    None. ``D`` (GAN runs) is frozen for this step: its parameters get no gradient.
    Taught in ``05_training_unet`` and ``06_gan_training``.
    """
    l_n, ab = batch
    opt_G.zero_grad(set_to_none=True)
    with autocast(l_n.device, amp_dtype), frozen(D):
        ab_hat = G(l_n) if ab_hat is None else ab_hat  # (B, 2, H, W)
        fake = D(l_n, ab_hat) if D is not None else None  # (B, 1, h, w)
        total, terms = loss_fn(l_n, ab_hat, ab, fake_logits=fake)
    norm = _optimizer_step(opt_G, total, scaler, grad_clip)
    names = [k for k in terms if k != "total" and not k.endswith("_weighted")]
    values = torch.stack([total.float(), norm.float(), *(terms[k].float() for k in names)]).tolist()
    return StepRecord(values[0], dict(zip(names, values[2:])), values[1], {} if fake is None else {"fake": fake.detach()})


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float, step: int | None = None) -> None:
    """``ema <- d * ema + (1 - d) * model`` for every float weight and buffer (others copied).

    ``d = decay``, or with ``step`` (the number of steps taken before this one) the warm-up
    ``d = min(decay, (1 + step) / (10 + step))``: without it an average started from the random
    initial weights keeps ``decay ** steps`` of them (0.999: 76 % after 280 steps, 33 % after
    1,120), and a short run's EMA is worse than grey. Taught in ``05_training_unet``."""
    decay = decay if step is None else min(decay, (1 + step) / (10 + step))
    for e, m in zip(ema.state_dict().values(), model.state_dict().values()):
        e.lerp_(m, 1 - decay) if e.is_floating_point() else e.copy_(m)


class Trainer:
    """Generator-only or GAN training of a :class:`TrainConfig`: ``Trainer(cfg).fit()``.

    ``datasets={"train", "val", "test"}`` replaces the data the config names (``source``:
    their ``DataSource``, stored in checkpoints). Under ``torchrun`` it uses DDP.
    Taught in ``05_training_unet`` and ``06_gan_training``.
    """

    def __init__(self, config: TrainConfig, datasets: dict | None = None, source: DataSource | None = None,
                 dist_info: DistInfo | None = None):
        self.cfg = cfg = config
        cfg.check()  # folders, checkpoints, cores, out_dir: before any work (and before rank 0 writes)
        self.dist = dist_info or DistInfo.from_env()
        if cfg.batch_size % self.dist.world_size:
            raise UserError(f"option 'batch_size' ({cfg.batch_size}) must be divisible by the number of processes "
                            f"({self.dist.world_size})")
        self.local_batch = cfg.batch_size // self.dist.world_size
        self.device, self.precision, self.amp_dtype, self.channels_last, self.compile, self.threads = setup_runtime(
            cfg, self.dist)  # lib.runtime.Runtime; joins the torchrun job
        self.memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        self.out_dir = Path(cfg.out_dir)

        seed_everything(cfg.seed)  # the same initial weights on every rank
        self.G = UNet(cfg.model)
        self.D = PatchDiscriminator(cfg.discriminator) if cfg.loss.theta > 0 else None
        self.criterion = ColorizationLoss(**vars(cfg.loss))
        seed_everything(cfg.seed + self.dist.rank)  # data order and flips differ per rank
        for net in (self.G, self.D, self.criterion):  # the perceptual loss's VGG too
            if net is not None:
                net.to(self.device, memory_format=self.memory_format)
        self.G_run, self.D_run = (for_device(n, self.device, self.dist, self.compile) for n in (self.G, self.D))
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=cfg.lr, betas=cfg.betas)
        self.opt_D = self.D and torch.optim.Adam(self.D.parameters(), lr=cfg.d_lr, betas=cfg.betas)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.ema = copy.deepcopy(self.G).requires_grad_(False) if cfg.ema > 0 else None  # the average of G's weights

        if datasets is None:
            datasets, source = open_splits(cfg.data_root, cfg.dataset, cfg.image_size, max_images=cfg.max_images,
                                           toy_images=cfg.toy_images, cache=cfg.cache, seed=cfg.seed,
                                           progress=cfg.progress and self.dist.is_main)
        self.datasets, self.source = datasets, source
        check_splits(datasets, cfg.batch_size, cfg.test_at_end)
        loaders = training_loaders(datasets, self.local_batch, cfg.eval_batch_size, self.dist.rank,
                                   self.dist.world_size, cfg.seed, num_workers=cfg.workers,
                                   pin_memory=self.device.type == "cuda")
        self.train_loader, self.eval_loaders = loaders.pop("train"), loaders  # eval: val, test
        self.sampler = self.train_loader.sampler  # lib.runtime.EpochSampler: the epoch's order, where to start
        items = [datasets["val"][i] for i in range(min(cfg.num_samples, len(datasets["val"])))]
        self.sample_batch = [torch.stack(t) for t in zip(*items)] or None  # fixed faces: (N, 1, H, W), (N, 2, H, W)

        self.epoch = self.step = 0  # completed epochs, optimisation steps taken
        self.samples_in_epoch = 0  # this rank's images of the current epoch already trained on (resume mid-epoch)
        self.best_value, self.best_epoch = None, None
        self.history: list[dict] = []  # one row per epoch
        self.run_dir = RunDir(self.out_dir)  # history files (written by rank 0)
        self._sums: dict[str, float] = {}  # loss terms summed over this epoch's steps, "_n": the steps
        self._stop_signal: str | None = None
        self._d_low, self._d_warned = 0, False  # steps in a row with the D loss below d_collapse_threshold
        self.suite = MetricSuite(fid=cfg.eval_fid, lpips=cfg.eval_lpips, device=self.device, progress=False)
        self._t0 = time.perf_counter()
        resume = self.out_dir / "last.pt" if cfg.resume == "auto" else cfg.resume and Path(cfg.resume)
        if resume and resume.is_file():
            self.load_state(load_checkpoint(resume))
            self.log(f"[train] resumed from {resume}: {self.position()}")
        elif resume:
            self.log(f"[train] resume=auto: no {resume} yet, starting fresh")
        if cfg.init_from and not self.step:
            load_generator_weights(self.G, load_checkpoint(cfg.init_from))
            self.log(f"[train] G starts from the weights of {cfg.init_from}")
            if self.ema is not None:
                self.ema.load_state_dict(self.G.state_dict())

    # ---- the loop ----------------------------------------------------------------------
    def fit(self) -> dict:
        """Train to ``cfg.epochs``, evaluating, checkpointing and logging; then test best.pt.

        Returns ``{"status": "finished" | "interrupted", ...}``; Ctrl-C or SIGTERM finishes the
        step, saves ``last.pt`` and returns (``resume=auto`` continues exactly there). A NaN
        loss raises :class:`TrainingDiverged` (the last good checkpoint stays).
        """
        cfg = self.cfg
        self._open_run_folder()
        self.log(f"[train] {self.describe()}")
        with on_stop_signals(self._on_signal):
            while self.epoch < cfg.epochs and not self._stop_signal:
                self.sampler.set_epoch(self.epoch)
                self.sampler.start = self.samples_in_epoch
                self.train_loader.generator.manual_seed((cfg.seed * 100_003 + self.epoch) * 1_009 + self.dist.rank)
                for net in (self.G, self.D):
                    net is not None and net.train()
                for l_n, ab in self._progress_bar(self.train_loader):  # (B, 1, H, W), (B, 2, H, W)
                    self._set_lr()
                    g, d = self.train_step(l_n, ab)  # forward, D step, G step, EMA
                    self.step += 1
                    self.samples_in_epoch += len(l_n)
                    self._record(g, d)  # NaN stop, D-collapse warning, step history
                    if self._stop_signal:
                        break
                else:  # the epoch ran to its end
                    self._end_epoch()  # val metrics, best.pt, samples, last.pt, epoch history
            if self._stop_signal:
                self.save("last.pt")
                self.log(f"[train] stopped by {self._stop_signal}: {self.position()}; saved {self.out_dir / 'last.pt'}"
                         " (--set resume=auto continues from exactly there)")
                return self._summary("interrupted")
            test = self.test_best() if cfg.test_at_end else None
        return self._summary("finished", test)

    def train_step(self, l_n: Tensor, ab: Tensor) -> tuple[StepRecord, StepRecord | None]:
        """One iteration on a batch: ``ab_hat = G(l_n)`` once, the D step (GAN runs), the G step, the EMA."""
        batch = self._to_device(l_n), self._to_device(ab)  # (B, 1, H, W), (B, 2, H, W)
        kw = dict(scaler=self.scaler, grad_clip=self.cfg.grad_clip, amp_dtype=self.amp_dtype)
        with autocast(self.device, self.amp_dtype):
            ab_hat = self.G_run(batch[0])  # (B, 2, H, W)
        d = discriminator_step(self.D_run, self.opt_D, self.criterion.gan, batch, ab_hat, **kw) if self.D else None
        g = generator_step(self.G_run, self.opt_G, self.criterion, batch, self.D, ab_hat=ab_hat, **kw)
        if self.ema is not None:
            update_ema(self.ema, self.G, self.cfg.ema, step=self.step)  # self.step: steps before this one
        return g, d

    def _set_lr(self) -> None:
        if self.cfg.lr_schedule == "cosine":  # by the fraction of training done: unchanged by a new batch size
            done = (self.epoch + self.samples_in_epoch / self.sampler.num_samples) / self.cfg.epochs
            for opt, lr in ((self.opt_G, self.cfg.lr), (self.opt_D, self.cfg.d_lr)):
                for group in opt.param_groups if opt else ():
                    group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * min(done, 1.0)))

    def _record(self, g: StepRecord, d: StepRecord | None) -> None:
        """After each step, on every rank: the NaN stop, a signal another rank got, the step
        history and the D-collapse warning."""
        terms = {"loss_G": g.loss, **g.terms, **(d.terms if d else {})}
        bad = [k for k, v in terms.items() if not math.isfinite(v)]
        flags = self.dist.all_reduce(torch.tensor([float(bool(bad)), float(self._stop_signal is not None)]), "max")
        if flags[1] and self._stop_signal is None:
            self._stop_signal = "another rank's signal"
        if flags[0]:
            last = self.out_dir / "last.pt"
            raise TrainingDiverged(
                f"non-finite loss at epoch {self.epoch + 1}, step {self.step}: "
                + (", ".join(f"{k}={terms[k]}" for k in bad) or "on another rank") + ". Stopped without saving; "
                + (f"the last good checkpoint is {last} (epoch {self.epoch})." if last.is_file()
                   else "no checkpoint had been written yet.") + " Try a lower lr, grad_clip, or precision=fp32.")
        for k, v in {**terms, "_n": 1}.items():
            self._sums[k] = self._sums.get(k, 0.0) + v
        if self.dist.is_main:
            self.run_dir.add_step({"epoch": self.epoch + 1, "step": self.step, "time_s": round(self._elapsed(), 3),
                                   "lr": self.opt_G.param_groups[0]["lr"], **terms, "grad_norm_G": g.grad_norm,
                                   **({"grad_norm_D": d.grad_norm} if d else {})})
        self._d_low = self._d_low + 1 if d is not None and d.loss < self.cfg.d_collapse_threshold else 0
        if self._d_low >= self.cfg.d_collapse_patience and not self._d_warned:
            self._d_warned = True
            msg = (f"discriminator loss below {self.cfg.d_collapse_threshold} for {self._d_low} steps (step "
                   f"{self.step}): D wins every patch and G gets little adversarial signal; consider a lower "
                   "d_lr, a smaller discriminator.ndf or a smaller loss.theta")
            warnings.warn(msg, RuntimeWarning, stacklevel=2)
            self.log(f"[train] warning: {msg}")

    def _end_epoch(self) -> None:
        """The epoch's mean losses over all ranks; every ``eval_every`` epochs the val metrics,
        best.pt when they improved, and the samples; last.pt and the epoch history."""
        cfg, sums = self.cfg, dict(self._sums)
        n = sums.pop("_n", 1)
        means = self.dist.all_reduce(torch.tensor([sums[k] / n for k in sorted(sums)], dtype=torch.float64))
        self.epoch, self.samples_in_epoch, self._sums = self.epoch + 1, 0, {}
        row = {"epoch": self.epoch, "step": self.step, "time_s": round(self._elapsed(), 2),
               "lr": self.opt_G.param_groups[0]["lr"],
               **{f"train_{k}": v / self.dist.world_size for k, v in zip(sorted(sums), means.tolist())}}
        improved, shown = False, ""
        if self.epoch % cfg.eval_every == 0 or self.epoch == cfg.epochs:
            metrics = self.evaluate("val")
            row.update({f"val_{k}": v for k, v in metrics.items()})
            if improved := is_better(cfg.select_metric, metrics.get(cfg.select_metric), self.best_value):
                self.best_value, self.best_epoch = float(metrics[cfg.select_metric]), self.epoch
            shown = " | val " + " ".join(f"{k} {metrics[k]:.4f}" for k in dict.fromkeys(
                ("psnr_rgb", "ssim_rgb", cfg.select_metric)) if k in metrics) + (
                " (best)" if improved else f" (best {self.best_value:.4f} at epoch {self.best_epoch})")
            self.save_samples(self.out_dir / "samples" / f"epoch_{self.epoch:04d}.png")
        self.history.append({**row, "best_epoch": self.best_epoch})
        if improved:
            self.save("best.pt")
        self.save("last.pt")
        self.log(f"[train] epoch {self.epoch}/{cfg.epochs} step {self.step} "
                 + " ".join(f"{k} {v:.4g}" for k, v in row.items() if k.startswith("train_")) + shown)

    # ---- evaluation --------------------------------------------------------------------
    def evaluate(self, split: str = "val") -> dict[str, float]:
        """Metrics of G (its EMA when ``ema > 0``) on ``split``, over all ranks' shards, with the
        BatchNorm statistics first recomputed over the first ``bn_batches`` train batches."""
        model = self.ema or self.G
        if self.cfg.bn_batches:
            recompute_bn_stats_over(model, self.datasets["train"], self.local_batch, self.cfg.bn_batches, self.device,
                                    self.channels_last, self.amp_dtype)
        return evaluate_model(model, self.eval_loaders[split], self.suite, self.device, self.channels_last, self.dist)

    def save_samples(self, path: Path) -> None:
        """The fixed val faces: grey input | prediction (with its PSNR_rgb) | truth (rank 0)."""
        if self.sample_batch is not None and self.dist.is_main:
            with eval_mode(self.ema or self.G):
                save_sample_grid(predictor(self.ema or self.G, self.device, self.channels_last), *self.sample_batch,
                                 path, title=f"epoch {self.epoch}, fixed val images")

    def test_best(self) -> dict:
        """best.pt once on the test split beside the grey and mean-face baselines, into
        ``test_metrics.json``: the numbers to report (val picked the checkpoint)."""
        self.dist.barrier()
        report = test_report(self.out_dir / "best.pt", self.eval_loaders["test"], self.suite, self.device,
                             self.channels_last, self.datasets.get("train"), self.dist, image_size=self.cfg.image_size,
                             select_metric=self.cfg.select_metric, data=self.source and self.source.describe())
        if self.dist.is_main:
            write_json(self.out_dir / "test_metrics.json", report)
            self.log(f"[train] test split, best.pt (epoch {report['best_epoch']}), {report['num_images']} images at "
                     f"{self.cfg.image_size}px, per-image means:\n{format_table(report)}")
        return report

    # ---- checkpoints -------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything needed to continue exactly (plain values and tensors: ``weights_only`` loads it)."""
        return training_checkpoint(
            self.cfg, self.G, self.D, self.ema, self.opt_G, self.opt_D, self.scaler, self.source, epoch=self.epoch,
            step=self.step, samples_in_epoch=self.samples_in_epoch,
            batch_in_epoch=self.samples_in_epoch // self.local_batch, best=self._best(), history=self.history,
            epoch_sums=dict(self._sums), elapsed_s=self._elapsed(), rng=rng_state(), world_size=self.dist.world_size,
            precision=self.precision)

    def load_state(self, ckpt: dict) -> None:
        """Restore a :meth:`state_dict` (or a v1 checkpoint); another architecture raises
        ``CheckpointMismatchError``; a resume that cannot be exact is refused with the reason."""
        load_training_state(ckpt, self.G, self.D, self.ema, self.opt_G, self.opt_D, self.scaler, self.cfg.loss.theta)
        samples = resume_point(ckpt, self.dist.world_size, self.source)
        old_batch = ckpt["train_config"]["batch_size"]
        if samples and old_batch != self.cfg.batch_size:
            self.log(f"[train] note: batch_size {old_batch} -> {self.cfg.batch_size} mid-epoch: the rest of "
                     "the epoch continues image for image in the same order, in batches of the new size")
        self.epoch, self.step, self.samples_in_epoch = int(ckpt["epoch"]), int(ckpt["step"]), samples
        if ckpt["best"].get("metric") == self.cfg.select_metric:
            self.best_value, self.best_epoch = ckpt["best"]["value"], ckpt["best"]["epoch"]
        self.history, self._sums = list(ckpt["history"]), dict(ckpt.get("epoch_sums") or {})
        self._t0 = time.perf_counter() - float(ckpt.get("elapsed_s", 0.0))
        set_rng_state(ckpt["rng"])
        if self.dist.enabled:  # rank 0's RNG state was saved; keep ranks apart
            torch.manual_seed(int(torch.randint(2**62, ()).item()) + self.dist.rank)

    def save(self, name: str) -> None:
        """Write ``out_dir/name`` and the history files (rank 0; the other ranks wait)."""
        if self.dist.is_main:
            self.run_dir.save(name, self.state_dict(), self.history)
        self.dist.barrier()

    # ---- small helpers -----------------------------------------------------------------
    def _open_run_folder(self) -> None:
        if self.dist.is_main:  # a fresh run replaces an earlier one only with overwrite (cfg.check())
            for p in self.run_dir.prepare(fresh=not self.step and self.cfg.resume is None, step=self.step,
                                          config=self.cfg):
                self.log(f"[train] removed {p.name}, a temp file a killed run left behind")
        self.dist.barrier()

    def _on_signal(self, name: str) -> None:
        if self._stop_signal is not None:
            raise KeyboardInterrupt(f"second {name}: aborting without saving")
        self._stop_signal = name
        self.log(f"\n[train] {name}: finishing this step, then saving a checkpoint (send it again to abort)")

    def _progress_bar(self, loader):
        steps = self.sampler.num_samples // self.local_batch
        return tqdm(loader, total=steps, initial=steps - len(loader), desc=f"epoch {self.epoch + 1}/{self.cfg.epochs}",
                    disable=not (self.cfg.progress and self.dist.is_main), dynamic_ncols=True, leave=False)

    def _to_device(self, x: Tensor) -> Tensor:
        return x.to(self.device, non_blocking=True, memory_format=self.memory_format)

    def _elapsed(self) -> float:
        return time.perf_counter() - self._t0

    def _best(self) -> dict:
        return {"metric": self.cfg.select_metric, "value": self.best_value, "epoch": self.best_epoch}

    def _summary(self, status: str, test: dict | None = None) -> dict:
        return {"status": status, "signal": self._stop_signal, "epoch": self.epoch, "step": self.step,
                "out_dir": str(self.out_dir), "test": test, "best": self._best()}

    def log(self, msg: str) -> None:
        if self.dist.is_main:
            print(msg, flush=True)

    def position(self) -> str:
        """Where the run stands, in words (logged on resume and on a stop)."""
        n = self.sampler.num_samples * self.dist.world_size
        return (f"epoch {self.epoch} of {self.cfg.epochs} done, step {self.step}"
                + (f", {self.samples_in_epoch * self.dist.world_size:,} of {n:,} images into epoch {self.epoch + 1}"
                   if self.samples_in_epoch else ""))

    def describe(self) -> str:
        """The run in one line: data, networks, device and precision, processes, steps, out_dir."""
        nets = " + ".join(f"{n} {sum(p.numel() for p in m.parameters()) / 1e6:.2f}M" for n, m in (("G", self.G), ("D", self.D))
                          if m is not None)
        return (f"{self.source.describe() if self.source else 'datasets given by the caller'} | train "
                f"{len(self.datasets['train'])} / val {len(self.datasets['val'])} images at {self.cfg.image_size}px | "
                f"{nets} params{' + EMA' if self.ema else ''} | {self.device} {self.precision} {self.threads} thread(s)"
                f"{' channels-last' * self.channels_last}{' compiled' * self.compile} | {self.dist.world_size} "
                f"process(es) | {len(self.train_loader)} steps/epoch x {self.cfg.epochs} epochs | out {self.out_dir}")


def main(cfg: TrainConfig) -> int:
    """``python -m lib train``: run a checked config; 0 finished, 130 after SIGINT, 143 after SIGTERM."""
    try:
        result = Trainer(cfg).fit()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return {"SIGINT": 130, "SIGTERM": 143}.get(result["signal"], 1) if result["status"] == "interrupted" else 0
