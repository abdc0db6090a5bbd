"""The training engine (lib/train.py): config, steps, checkpoints, exact resume, guards.

All runs are tiny (32x32 ToyFaces held in memory, a U-Net with 8 channels and depth 2,
no perceptual loss unless it is the point) so the file runs in well under a minute.
"""

from __future__ import annotations

import csv
import json
import math
import signal
import warnings

import pytest
import torch

from lib.data import ToyFaces
from lib.train import (
    CheckpointMismatchError,
    ConfigError,
    TrainConfig,
    Trainer,
    TrainingDiverged,
    config_help,
    load_checkpoint,
    load_generator,
    load_state_checked,
    pick_device,
    resolve_precision,
)

TINY_MODEL = {"ndims": 8, "depth": 2, "num_blocks": 0}


class InMemory(torch.utils.data.Dataset):
    """ToyFaces rendered once and kept in memory (rendering costs ~15 ms per image);
    random flips like the real datasets, from torch's global RNG."""

    def __init__(self, items, flip: bool, image_size: int = 32):
        self.items, self.flip, self.image_size = list(items), flip, image_size

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        l_n, ab_n = self.items[i]
        if self.flip and torch.rand(()) < 0.5:
            l_n, ab_n = l_n.flip(-1), ab_n.flip(-1)
        return l_n, ab_n


@pytest.fixture(scope="module")
def toy_sets():
    out = {}
    for split, n in (("train", 64), ("val", 32), ("test", 32)):
        ds = ToyFaces(n, image_size=32, split=split, flip=False)
        out[split] = InMemory([ds[i] for i in range(n)], flip=split == "train")
    return out


pytestmark = pytest.mark.usefixtures("one_thread", "private_cache")


def tiny(tmp_path, **kw) -> TrainConfig:
    base = dict(dataset="toy", image_size=32, batch_size=8, epochs=2, beta=0.0, model=dict(TINY_MODEL),
                lr=2e-3, num_samples=2, progress=False, out_dir=str(tmp_path / "run"), device="cpu", precision="fp32",
                threads=1)  # bitwise-equal results (exact resume) need the same thread count in every run
    base.update(kw)
    return TrainConfig(**base)


def small_sets(toy_sets, n_train=32, n_eval=16):
    """The first images of each split (fewer steps per epoch)."""
    return {split: InMemory(toy_sets[split].items[:n], toy_sets[split].flip)
            for split, n in (("train", n_train), ("val", n_eval), ("test", n_eval))}


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# --- config ------------------------------------------------------------------------------
def test_config_roundtrip_yaml_and_json(tmp_path):
    cfg = TrainConfig(epochs=3, betas=(0.9, 0.99), model={"ndims": 8, "depth": 2}, theta=0.08, gan_mode="hinge")
    for name in ("c.yaml", "c.json"):
        path = cfg.save(tmp_path / name)
        again = TrainConfig.load(path)
        assert again == cfg, f"{name}: {cfg.diff(again)}"
    assert not list(tmp_path.glob(".*tmp*")), "atomic save left a temporary file"


def test_config_overrides_are_typed():
    cfg = TrainConfig().with_overrides(
        ["lr=1e-3", "betas=0.9,0.99", "model.ndims=32", "cache=no", "max_images=none", "epochs=7",
         "perceptual_layers=relu1_2,relu2_2"])
    assert cfg.lr == 1e-3 and isinstance(cfg.lr, float)
    assert cfg.betas == (0.9, 0.99)
    assert cfg.model["ndims"] == 32 and cfg.model["depth"] == 4, "a nested override keeps the other model fields"
    assert cfg.cache is False and cfg.max_images is None and cfg.epochs == 7
    assert cfg.perceptual_layers == ("relu1_2", "relu2_2")
    assert cfg.unet_config().ndims == 32


@pytest.mark.parametrize("override, words", [
    ("pixel=l3", ["'pixel'", "l1, l2", "'l3'"]),
    ("lrr=0.1", ["unknown option 'lrr'", "did you mean lr"]),
    ("epochs=abc", ["'epochs'", "integer"]),
    ("epochs=0", ["'epochs'", ">= 1"]),
    ("model.ndimz=3", ["'model.ndimz'", "model.ndims"]),
    ("image_size=40", ["'image_size'", "divisible", "16"]),
    ("precision=fp8", ["'precision'", "auto, fp32, bf16, fp16"]),
    ("select_metric=fid", ["eval_fid"]),
    ("lr_schedule=step", ["'lr_schedule'", "none, cosine"]),
    ("discriminator.ndf=8", ["d_width"]),
    ("perceptual_layers=relu9_9", ["'perceptual_layers'", "relu3_3"]),
])
def test_config_errors_name_option_and_allowed_values(override, words):
    with pytest.raises(ConfigError) as err:
        TrainConfig().with_overrides([override])
    for w in words:
        assert w in str(err.value), f"{w!r} missing from: {err.value}"


def test_every_config_field_has_a_help_comment():
    import dataclasses

    helps = config_help()
    missing = [f.name for f in dataclasses.fields(TrainConfig) if not helps.get(f.name)]
    assert not missing, f"fields without a one-line comment: {missing}"


def test_device_and_precision_choice(monkeypatch):
    import lib.runtime

    cpu = pick_device("cpu")
    assert cpu.type == "cpu"
    monkeypatch.setattr(lib.runtime, "cpu_has_native_bf16", lambda: False)
    assert resolve_precision("auto", cpu) == "fp32", "emulated bf16 is slower: fp32 on such CPUs"
    monkeypatch.setattr(lib.runtime, "cpu_has_native_bf16", lambda: True)
    assert resolve_precision("auto", cpu) == "bf16", "bf16 autocast where the CPU has it natively"
    assert resolve_precision("bf16", cpu) == "bf16"
    with pytest.raises(ConfigError, match="fp16"):
        resolve_precision("fp16", cpu)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="cuda"):
            pick_device("cuda")


# --- training runs -----------------------------------------------------------------------
def test_toy_run_beats_grey_and_writes_its_files(tmp_path, toy_sets):
    from lib.metrics import MetricSuite, grey_predictor

    cfg = tiny(tmp_path, epochs=8, eval_every=2)
    result = Trainer(cfg, datasets=toy_sets).fit()
    out = tmp_path / "run"
    assert result["status"] == "finished" and result["epoch"] == 8

    val_loader = torch.utils.data.DataLoader(toy_sets["val"], batch_size=32)
    grey = MetricSuite(progress=False).evaluate(grey_predictor(), val_loader)["psnr_rgb"]
    history = json.loads((out / "history.json").read_text())
    best = max(h["val_psnr_rgb"] for h in history if "val_psnr_rgb" in h)
    assert best > grey + 0.5, f"val psnr_rgb {best:.2f} dB does not beat the grey baseline {grey:.2f} dB"
    assert result["best"]["value"] == pytest.approx(best)

    steps = read_csv(out / "history_steps.csv")
    assert len(steps) == 8 * (64 // 8) and {"loss_G", "pixel", "lr"} <= set(steps[0])
    assert [int(r["step"]) for r in steps] == list(range(1, len(steps) + 1))
    epochs = read_csv(out / "history_epochs.csv")
    assert len(epochs) == 8 and [bool(r["val_psnr_rgb"]) for r in epochs] == [False, True] * 4
    assert sorted(p.name for p in (out / "samples").glob("*.png")) == [f"epoch_{e:04d}.png" for e in (2, 4, 6, 8)]
    test = json.loads((out / "test_metrics.json").read_text())
    assert test["split"] == "test" and {"model", "grey", "mean_face"} <= set(test)
    assert test["model"]["n_images"] == 32 and test["best_epoch"] == result["best"]["epoch"]
    assert TrainConfig.load(out / "config.yaml") == cfg
    assert not [p for p in out.iterdir() if "tmp" in p.name], "an atomic write left a temporary file"


def test_gan_step_updates_only_the_network_it_should(tmp_path, toy_sets):
    cfg = tiny(tmp_path, theta=0.08, d_width=8, discriminator={"n_layers": 2})
    tr = Trainer(cfg, datasets=small_sets(toy_sets))
    assert tr.D is not None and tr.opt_D is not None
    tr.set_input(next(iter(tr.train_loader)))
    tr.forward()
    tr.opt_D.zero_grad(set_to_none=True)
    tr.backward_D()
    assert all(p.grad is None for p in tr.G.parameters()), "backward_D must not reach the generator"
    assert all(p.grad is not None for p in tr.D.parameters())
    d_grads = [p.grad.clone() for p in tr.D.parameters()]
    tr.backward_G()
    assert all(p.grad is not None for p in tr.G.parameters())
    assert all(torch.equal(g, p.grad) for g, p in zip(d_grads, tr.D.parameters())), "backward_G changed D's grads"

    before = [p.detach().clone() for p in tr.D.parameters()]
    terms = tr.optimize_parameters()
    assert {"loss_G", "pixel", "gan", "loss_D", "D_real", "D_fake"} <= set(terms)
    assert all(math.isfinite(v) for v in terms.values())
    assert any(not torch.equal(a, p) for a, p in zip(before, tr.D.parameters())), "the D step changed nothing"


def test_without_theta_no_discriminator_is_built(tmp_path, toy_sets):
    tr = Trainer(tiny(tmp_path), datasets=small_sets(toy_sets))
    assert tr.D is None and tr.opt_D is None
    assert tr.criterion.perceptual is None, "beta = 0 loads no VGG"
    tr.set_input(next(iter(tr.train_loader)))
    terms = tr.optimize_parameters()
    assert "loss_D" not in terms and "gan" not in terms and math.isfinite(terms["loss_G"])
    with pytest.raises(AssertionError, match="theta must be > 0"):
        tr.backward_D()


def test_gan_run_completes_and_warns_on_discriminator_collapse(tmp_path, toy_sets):
    cfg = tiny(tmp_path, epochs=1, theta=0.08, d_width=8, discriminator={"n_layers": 2}, precision="bf16",
               d_collapse_threshold=1e6, d_collapse_patience=3)  # "collapsed" from step 3 on; bf16 autocast
    with pytest.warns(RuntimeWarning, match="discriminator loss below"):
        result = Trainer(cfg, datasets=small_sets(toy_sets)).fit()
    assert result["status"] == "finished"
    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    assert ckpt["discriminator"] is not None and ckpt["disc_config"]["ndf"] == 8
    rows = read_csv(tmp_path / "run" / "history_steps.csv")
    assert all(math.isfinite(float(r["loss_D"])) for r in rows)


def test_collapse_guard_counts_consecutive_low_d_losses(tmp_path, toy_sets):
    tr = Trainer(tiny(tmp_path, theta=0.08, d_width=8, d_collapse_patience=5), datasets=small_sets(toy_sets))
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="discriminator loss below")
        for i in range(20):  # a healthy D loss, and low ones that never last 5 steps
            tr._check_step({"loss_D": 0.25 if i % 4 else 0.001})
    with pytest.warns(RuntimeWarning, match="for 5 steps"):
        for _ in range(5):
            tr._check_step({"loss_D": 0.001})


# --- checkpoints and resume --------------------------------------------------------------
def _weights(path):
    ckpt = load_checkpoint(path)
    return ckpt, {**{f"G.{k}": v for k, v in ckpt["model"].items()},
                  **{f"D.{k}": v for k, v in (ckpt["discriminator"] or {}).items()}}


def test_exact_resume_four_epochs_equal_two_plus_two(tmp_path, toy_sets):
    """Same weights (G, D, with batch norm, flips and two DataLoader workers) either way."""
    data = small_sets(toy_sets)
    kw = dict(theta=0.08, d_width=8, discriminator={"n_layers": 2}, workers=2, test_at_end=False, num_samples=0,
              eval_every=2)
    Trainer(tiny(tmp_path / "a", epochs=4, **kw), datasets=data).fit()
    Trainer(tiny(tmp_path / "b", epochs=2, **kw), datasets=data).fit()
    resumed = tiny(tmp_path / "b", epochs=4, resume=str(tmp_path / "b" / "run" / "last.pt"), **kw)
    Trainer(resumed, datasets=data).fit()

    ca, wa = _weights(tmp_path / "a" / "run" / "last.pt")
    cb, wb = _weights(tmp_path / "b" / "run" / "last.pt")
    assert ca["epoch"] == cb["epoch"] == 4 and ca["step"] == cb["step"]
    different = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not different, f"resumed run differs in {different[:5]}"
    assert torch.equal(ca["opt_G"]["state"][0]["exp_avg"], cb["opt_G"]["state"][0]["exp_avg"])
    assert [h.get("val_psnr_rgb") for h in ca["history"]] == [h.get("val_psnr_rgb") for h in cb["history"]]


def test_sigterm_mid_epoch_saves_a_checkpoint_that_resumes_exactly(tmp_path, toy_sets):
    data = small_sets(toy_sets)  # 4 steps per epoch
    kw = dict(test_at_end=False, num_samples=0)
    Trainer(tiny(tmp_path / "a", **kw), datasets=data).fit()

    tr = Trainer(tiny(tmp_path / "b", **kw), datasets=data)
    step = tr.optimize_parameters

    def step_then_signal():
        terms = step()
        if tr.step == 6:  # the second batch of epoch 2
            signal.raise_signal(signal.SIGTERM)  # SIGINT: tests/test_cli.py sends it to the command
        return terms

    tr.optimize_parameters = step_then_signal
    handler = signal.getsignal(signal.SIGTERM)
    result = tr.fit()
    assert result["status"] == "interrupted"
    assert signal.getsignal(signal.SIGTERM) is handler, "the SIGTERM handler was not restored"
    ckpt = load_checkpoint(tmp_path / "b" / "run" / "last.pt")  # weights_only=True
    assert (ckpt["epoch"], ckpt["batch_in_epoch"], ckpt["step"]) == (1, 2, 6)
    load_generator(tmp_path / "b" / "run" / "last.pt")

    Trainer(tiny(tmp_path / "b", resume="auto", **kw), datasets=data).fit()
    _, wa = _weights(tmp_path / "a" / "run" / "last.pt")
    cb, wb = _weights(tmp_path / "b" / "run" / "last.pt")
    assert cb["step"] == 8
    assert all(torch.equal(wa[k], wb[k]) for k in wa), "a run resumed mid-epoch differs from an uninterrupted one"
    times = [float(r["time_s"]) for r in read_csv(tmp_path / "b" / "run" / "history_steps.csv")]
    assert len(times) == 8 and times == sorted(times), "time_s must keep counting across a resume"


def test_checkpoint_of_another_architecture_fails_with_the_mismatch(tmp_path, toy_sets):
    data = small_sets(toy_sets)
    Trainer(tiny(tmp_path, epochs=1, test_at_end=False), datasets=data).fit()
    ckpt_path = tmp_path / "run" / "last.pt"
    other = tiny(tmp_path, epochs=2, model={**TINY_MODEL, "ndims": 4}, resume=str(ckpt_path))
    with pytest.raises(CheckpointMismatchError) as err:
        Trainer(other, datasets=data)
    msg = str(err.value)
    assert "shape mismatch" in msg and "encoder.0" in msg, msg
    assert "model.ndims: 8 (checkpoint) vs 4 (current)" in msg, msg

    from lib.models import UNet, UNetConfig

    deeper = UNet(UNetConfig(ndims=8, depth=3, num_blocks=0))
    ckpt = load_checkpoint(ckpt_path)
    with pytest.raises(CheckpointMismatchError, match="missing from the checkpoint") as err:
        load_state_checked(deeper, ckpt["model"], saved_config=ckpt["model_config"],
                           current_config=deeper.config.to_dict())
    assert "depth: 2 (checkpoint) vs 3 (current)" in str(err.value)
    assert "ndims" not in str(err.value), "only the differing config values are listed"


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, toy_sets):
    tr = Trainer(tiny(tmp_path, epochs=3), datasets=small_sets(toy_sets))
    loss = tr.criterion.forward

    def poisoned(*args, **kwargs):
        total, terms = loss(*args, **kwargs)
        if tr.step >= 5:  # during epoch 2
            total = total * float("nan")
        return total, terms

    tr.criterion.forward = poisoned
    last = tmp_path / "run" / "last.pt"
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(TrainingDiverged, match="non-finite loss") as err:
        tr.fit()
    assert str(last) in str(err.value)
    ckpt = load_checkpoint(last)
    assert ckpt["epoch"] == 1 and ckpt["step"] == 4, "the checkpoint must be the last good one"
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    assert signal.getsignal(signal.SIGINT) is handler, "the SIGINT handler was not restored"


def test_checkpoint_holds_everything_for_a_resume(tmp_path, toy_sets):
    Trainer(tiny(tmp_path, epochs=1, lr_schedule="cosine", test_at_end=False), datasets=small_sets(toy_sets)).fit()
    ckpt = load_checkpoint(tmp_path / "run" / "best.pt")
    for key in ("model", "opt_G", "scaler", "sched_G", "epoch", "step", "rng", "train_config", "model_config"):
        assert key in ckpt, key
    assert set(ckpt["rng"]) >= {"python", "numpy", "torch"}
    assert ckpt["train_config"]["lr_schedule"] == "cosine" and ckpt["model_config"]["ndims"] == 8
    assert ckpt["sched_G"]["last_epoch"] == 4
    model, _ = load_generator(tmp_path / "run" / "best.pt")
    assert model(torch.zeros(2, 1, 32, 32)).shape == (2, 2, 32, 32)


@pytest.mark.realdata
def test_short_run_on_real_faces_completes_and_logs_metrics(tmp_path, celebahq_dir):
    cfg = TrainConfig(data_root=str(celebahq_dir), dataset="folder", image_size=32, max_images=24, cache=False,
                      batch_size=8, epochs=1, beta=0.0, model=dict(TINY_MODEL), num_samples=2, progress=False,
                      out_dir=str(tmp_path / "run"), device="cpu")
    result = Trainer(cfg).fit()
    assert result["status"] == "finished"
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert history[0]["val_n_images"] == 24 and math.isfinite(history[0]["val_psnr_rgb"])
    test = json.loads((tmp_path / "run" / "test_metrics.json").read_text())
    assert test["model"]["n_images"] == 24 and "mean_face" in test and "grey" in test
    assert test["grey"]["psnr_rgb"] > 10, "the grey baseline on real faces should be a sane PSNR"
