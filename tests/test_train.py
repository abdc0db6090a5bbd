"""The training engine: the step functions, the config, checkpoints, exact resume, guards.

All runs are tiny (32x32 ToyFaces held in memory, a U-Net with 8 channels and depth 2,
no perceptual loss unless it is the point) so the file runs in about a minute.
"""

from __future__ import annotations

import csv
import json
import math
import signal
import warnings

import pytest
import torch

import lib.checkpoint
import lib.train
from lib.checkpoint import (CheckpointMismatchError, export_generator, load_checkpoint, load_generator,
                            load_state_checked)
from lib.config import TrainConfig, option_help
from lib.data import ToyFaces
from lib.errors import CheckpointError, ConfigError, DataError, UserError
from lib.losses import ColorizationLoss
from lib.models import DiscriminatorConfig, PatchDiscriminator, UNet, UNetConfig
from lib.runtime import pick_device, resolve_precision
from lib.train import StepRecord, Trainer, TrainingDiverged, discriminator_step, generator_step

TINY_MODEL = {"ndims": 8, "depth": 2, "num_blocks": 0}
GAN = {"loss": {"beta": 0.0, "theta": 0.08}, "discriminator": {"ndf": 8, "n_layers": 2}}


class InMemory(torch.utils.data.Dataset):
    """ToyFaces rendered once and kept in memory; random flips from torch's global RNG, like
    the real datasets. ``seen`` records the indices read (which images a run trained on)."""

    def __init__(self, items, flip: bool, image_size: int = 32):
        self.items, self.flip, self.image_size, self.seen = list(items), flip, image_size, []

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        self.seen.append(i)
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
    base = dict(dataset="toy", image_size=32, batch_size=8, epochs=2, model=dict(TINY_MODEL), loss={"beta": 0.0},
                lr=2e-3, num_samples=2, progress=False, out_dir=str(tmp_path / "run"), device="cpu", precision="fp32",
                threads=1)  # bitwise-equal results (exact resume) need the same thread count in every run
    base.update(kw)
    return TrainConfig.from_dict(base)


def small_sets(toy_sets, n_train=32, n_eval=16):
    """The first images of each split (fewer steps per epoch)."""
    return {split: InMemory(toy_sets[split].items[:n], toy_sets[split].flip)
            for split, n in (("train", n_train), ("val", n_eval), ("test", n_eval))}


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# --- the step functions on a notebook's own models ----------------------------------------
def test_steps_on_tiny_models_change_only_their_network_and_report_shapes(toy_sets, perceptual):
    torch.manual_seed(0)
    G = UNet(UNetConfig(**TINY_MODEL))
    D = PatchDiscriminator(DiscriminatorConfig(ndf=8, n_layers=2))
    loss = ColorizationLoss(alpha=100, beta=0, theta=0.08, perceptual_layers=("relu1_2", "relu2_2"))
    loss.beta, loss.perceptual = 1.0, perceptual  # the session's VGG16 (default layers), loaded once
    opt_G, opt_D = torch.optim.Adam(G.parameters(), 1e-3), torch.optim.Adam(D.parameters(), 1e-3)
    items = [toy_sets["train"].items[i] for i in range(8)]
    batch = torch.stack([l for l, _ in items]), torch.stack([ab for _, ab in items])  # (8,1,32,32), (8,2,32,32)

    def params(net):
        return [p.detach().clone() for p in net.parameters()]

    ab_hat = G(batch[0]).detach()  # (8, 2, 32, 32), fixed: D alone learns below
    g_before = params(G)
    d_losses = [discriminator_step(D, opt_D, loss.gan, batch, ab_hat).loss for _ in range(6)]
    assert d_losses[-1] < d_losses[0], f"D's loss did not fall on a fixed batch: {d_losses}"
    assert all(torch.equal(a, b) for a, b in zip(g_before, G.parameters())), "the D step changed G"

    d = discriminator_step(D, opt_D, loss.gan, batch, G(batch[0]))
    side = 32 // 4 - 2  # two stride-2 convs, then two 4x4 stride-1 convs: 8 -> 7 -> 6
    assert isinstance(d, StepRecord) and {k: v.shape for k, v in d.logits.items()} == {
        "real": (8, 1, side, side), "fake": (8, 1, side, side)}
    assert d.grad_norm > 0 and math.isfinite(d.grad_norm) and set(d.terms) >= {"loss_D"}
    assert all(p.grad is None for p in G.parameters()), "the D step reached G's gradients"

    d_before = params(D)
    records = [generator_step(G, opt_G, loss, batch, D) for _ in range(2)]
    assert all(torch.equal(a, b) for a, b in zip(d_before, D.parameters())), "the G step changed D"
    assert all(p.requires_grad for p in D.parameters()), "D must be unfrozen after the G step"
    assert any(not torch.equal(a, b) for a, b in zip(g_before, G.parameters())), "the G step changed nothing"
    g = records[-1]
    assert g.logits["fake"].shape == (8, 1, side, side) and not g.logits["fake"].requires_grad
    layers = {k for k in g.terms if k.startswith("perceptual/")}
    assert layers == {f"perceptual/{n}" for n in perceptual.layers} and {"pixel", "perceptual", "gan"} <= set(g.terms)
    assert g.terms["perceptual"] == pytest.approx(sum(g.terms[k] for k in layers), rel=1e-4)
    assert g.loss == pytest.approx(100 * g.terms["pixel"] + g.terms["perceptual"] + 0.08 * g.terms["gan"], rel=1e-4)
    assert g.grad_norm > 0 and all(isinstance(v, float) for v in g.terms.values())


# --- config ------------------------------------------------------------------------------
def test_config_roundtrip_yaml_and_json(tmp_path):
    cfg = TrainConfig.from_dict({"epochs": 3, "betas": [0.9, 0.99], "model": {"ndims": 8, "depth": 2},
                                 "loss": {"theta": 0.08, "gan_mode": "hinge"}})
    for name in ("c.yaml", "c.json"):
        again = TrainConfig.load(cfg.save(tmp_path / name))
        assert again == cfg, f"{name}: {cfg.diff(again)}"
    assert not list(tmp_path.glob(".*tmp*")), "atomic save left a temporary file"


def test_config_overrides_are_typed():
    cfg = TrainConfig().with_overrides(
        ["lr=1e-3", "betas=[0.9,0.99]", "model.ndims=32", "cache=no", "max_images=none", "epochs=7",
         "loss.perceptual_layers=[relu1_2,relu2_2]", "discriminator.ndf=8"])
    assert cfg.lr == 1e-3 and isinstance(cfg.lr, float) and cfg.betas == (0.9, 0.99)
    assert cfg.model.ndims == 32 and cfg.model.depth == 4, "a nested override keeps the other model fields"
    assert cfg.cache is False and cfg.max_images is None and cfg.epochs == 7 and cfg.discriminator.ndf == 8
    assert cfg.loss.perceptual_layers == ("relu1_2", "relu2_2") and isinstance(cfg.model, UNetConfig)


@pytest.mark.parametrize("override, words", [
    ("loss.pixel=l3", ["'loss.pixel'", "l1, l2", "'l3'"]),
    ("lrr=0.1", ["unknown option 'lrr'", "did you mean lr"]),
    ("theta=0.1", ["unknown option 'theta'", "loss.theta"]),
    ("epochs=abc", ["'epochs'", "Integer"]),
    ("epochs=0", ["'epochs'", ">= 1"]),
    ("model.ndimz=3", ["'model.ndimz'", "model.ndims"]),
    ("model=3", ["'model' is a group", "model."]),
    ("image_size=40", ["'image_size'", "divisible", "16"]),
    ("image_size=8", ["'image_size'", ">= 16"]),
    ("precision=fp8", ["'precision'", "auto, fp32, bf16, fp16"]),
    ("select_metric=fid", ["eval_fid"]),
    ("lr_schedule=step", ["'lr_schedule'", "none, cosine"]),
    ("betas=[1,2,3]", ["'betas'"]),
    ("ema=1.5", ["'ema'", "[0, 1)"]),
    ("loss.perceptual_layers=[relu9_9]", ["'loss.perceptual_layers'", "relu3_3"]),
    ("model.norm=fancy", ["norm", "'fancy'"]),
])
def test_config_errors_name_option_and_allowed_values(override, words):
    with pytest.raises(ConfigError) as err:
        TrainConfig().with_overrides([override])
    for w in words:
        assert w in str(err.value), f"{w!r} missing from: {err.value}"


def test_image_size_too_small_for_the_discriminator_is_a_config_error():
    with pytest.raises(ConfigError, match="too small for a discriminator"):
        TrainConfig().with_overrides(["image_size=16", "loss.theta=0.1"])


def test_every_option_has_a_help_comment():
    helps = option_help()
    assert {"epochs", "loss.theta", "model.ndims", "discriminator.n_layers", "init_from", "ema"} <= set(helps)
    assert not [k for k, v in helps.items() if not v], "options without a one-line comment"


def test_device_and_precision_choice(monkeypatch):
    import lib.runtime

    cpu = pick_device("cpu")
    monkeypatch.setattr(lib.runtime, "cpu_has_native_bf16", lambda: False)
    assert resolve_precision("auto", cpu) == "fp32", "emulated bf16 is slower: fp32 on such CPUs"
    monkeypatch.setattr(lib.runtime, "cpu_has_native_bf16", lambda: True)
    assert resolve_precision("auto", cpu) == "bf16", "bf16 autocast where the CPU has it natively"
    with pytest.raises(ConfigError, match="fp16"):
        resolve_precision("fp16", cpu)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="cuda"):
            pick_device("cuda")


# --- training runs -----------------------------------------------------------------------
def test_toy_run_beats_grey_and_writes_its_files(tmp_path, toy_sets):
    from lib.metrics import MetricSuite, grey_predictor

    cfg = tiny(tmp_path, epochs=6, eval_every=2)
    result = Trainer(cfg, datasets=toy_sets).fit()
    out = tmp_path / "run"
    assert result["status"] == "finished" and result["epoch"] == 6

    val_loader = torch.utils.data.DataLoader(toy_sets["val"], batch_size=32)
    grey = MetricSuite(progress=False).evaluate(grey_predictor(), val_loader)["psnr_rgb"]
    history = json.loads((out / "history.json").read_text())
    best = max(h["val_psnr_rgb"] for h in history if "val_psnr_rgb" in h)
    assert best > grey + 0.5, f"val psnr_rgb {best:.2f} dB does not beat the grey baseline {grey:.2f} dB"
    assert result["best"]["value"] == pytest.approx(best)

    steps = read_csv(out / "history_steps.csv")
    assert len(steps) == 6 * (64 // 8) and {"loss_G", "pixel", "lr", "grad_norm_G"} <= set(steps[0])
    assert [int(r["step"]) for r in steps] == list(range(1, len(steps) + 1))
    epochs = read_csv(out / "history_epochs.csv")
    assert len(epochs) == 6 and [bool(r["val_psnr_rgb"]) for r in epochs] == [False, True] * 3
    assert sorted(p.name for p in (out / "samples").glob("*.png")) == [f"epoch_{e:04d}.png" for e in (2, 4, 6)]
    test = json.loads((out / "test_metrics.json").read_text())
    assert test["split"] == "test" and {"model", "grey", "mean_face"} <= set(test)
    assert test["model"]["n_images"] == 32 and test["best_epoch"] == result["best"]["epoch"]
    assert TrainConfig.load(out / "config.yaml") == cfg
    assert not [p for p in out.iterdir() if "tmp" in p.name], "an atomic write left a temporary file"


def test_without_theta_no_discriminator_is_built(tmp_path, toy_sets):
    tr = Trainer(tiny(tmp_path, epochs=1, test_at_end=False), datasets=small_sets(toy_sets))
    assert tr.D is None and tr.opt_D is None and tr.criterion.perceptual is None, "beta = 0 loads no VGG"
    tr.fit()
    rows = read_csv(tmp_path / "run" / "history_steps.csv")
    assert "loss_D" not in rows[0] and "gan" not in rows[0] and all(math.isfinite(float(r["loss_G"])) for r in rows)


def test_gan_run_completes_and_warns_on_discriminator_collapse(tmp_path, toy_sets):
    cfg = tiny(tmp_path, epochs=1, **GAN, precision="bf16", d_collapse_threshold=1e6,
               d_collapse_patience=3)  # "collapsed" from step 3 on; bf16 autocast
    with pytest.warns(RuntimeWarning, match="discriminator loss below"):
        result = Trainer(cfg, datasets=small_sets(toy_sets)).fit()
    assert result["status"] == "finished"
    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    assert ckpt["discriminator"] is not None and ckpt["disc_config"]["ndf"] == 8
    rows = read_csv(tmp_path / "run" / "history_steps.csv")
    assert all(math.isfinite(float(r["loss_D"])) and float(r["grad_norm_D"]) > 0 for r in rows)


def test_collapse_guard_counts_consecutive_low_d_losses(tmp_path, toy_sets):
    tr = Trainer(tiny(tmp_path, **GAN, d_collapse_patience=5), datasets=small_sets(toy_sets))
    g = StepRecord(1.0, {}, 1.0, {})

    def d(v):
        return StepRecord(v, {"loss_D": v}, 1.0, {})

    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="discriminator loss below")
        for i in range(20):  # a healthy D loss, and low ones that never last 5 steps
            tr._record(g, d(0.25 if i % 4 else 0.001))
    with pytest.warns(RuntimeWarning, match="for 5 steps"):
        for _ in range(5):
            tr._record(g, d(0.001))


# --- checkpoints and resume --------------------------------------------------------------
def _weights(path):
    ckpt = load_checkpoint(path)
    return ckpt, {**{f"G.{k}": v for k, v in ckpt["model"].items()},
                  **{f"D.{k}": v for k, v in (ckpt["discriminator"] or {}).items()}}


def test_exact_resume_four_epochs_equal_two_plus_two(tmp_path, toy_sets):
    """Same weights (G, D, EMA, with batch norm, flips and two DataLoader workers) either way."""
    data = small_sets(toy_sets)
    kw = dict(**GAN, workers=2, test_at_end=False, num_samples=0, eval_every=2, ema=0.9)
    Trainer(tiny(tmp_path / "a", epochs=4, **kw), datasets=data).fit()
    Trainer(tiny(tmp_path / "b", epochs=2, **kw), datasets=data).fit()
    Trainer(tiny(tmp_path / "b", epochs=4, resume=str(tmp_path / "b" / "run" / "last.pt"), **kw), datasets=data).fit()

    ca, wa = _weights(tmp_path / "a" / "run" / "last.pt")
    cb, wb = _weights(tmp_path / "b" / "run" / "last.pt")
    assert ca["epoch"] == cb["epoch"] == 4 and ca["step"] == cb["step"]
    different = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not different, f"resumed run differs in {different[:5]}"
    assert all(torch.equal(ca["model_ema"][k], cb["model_ema"][k]) for k in ca["model_ema"])
    assert torch.equal(ca["opt_G"]["state"][0]["exp_avg"], cb["opt_G"]["state"][0]["exp_avg"])
    assert [h.get("val_psnr_rgb") for h in ca["history"]] == [h.get("val_psnr_rgb") for h in cb["history"]]


def _signal_at(monkeypatch, step: int, sig=signal.SIGTERM):
    """Send ``sig`` to this process right after the G step that makes ``step`` steps."""
    calls = []

    def step_then_signal(*args, **kwargs):
        record = generator_step(*args, **kwargs)
        calls.append(1)
        if len(calls) == step:
            signal.raise_signal(sig)  # SIGINT: tests/test_cli.py sends it to the command
        return record

    monkeypatch.setattr(lib.train, "generator_step", step_then_signal)


def test_sigterm_mid_epoch_saves_a_checkpoint_that_resumes_exactly(tmp_path, toy_sets, monkeypatch, capsys):
    data = small_sets(toy_sets)  # 4 steps per epoch
    kw = dict(test_at_end=False, num_samples=0)
    Trainer(tiny(tmp_path / "a", **kw), datasets=data).fit()

    _signal_at(monkeypatch, 6)  # the second batch of epoch 2
    handler = signal.getsignal(signal.SIGTERM)
    result = Trainer(tiny(tmp_path / "b", **kw), datasets=data).fit()
    assert result["status"] == "interrupted" and result["signal"] == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is handler, "the SIGTERM handler was not restored"
    out = capsys.readouterr().out
    assert out.count("SIGTERM: finishing this step") == 1
    assert "epoch 1 of 2 done, step 6, 16 of 32 images into epoch 2" in out and "resume=auto" in out, out
    ckpt = load_checkpoint(tmp_path / "b" / "run" / "last.pt")  # weights_only=True
    assert (ckpt["epoch"], ckpt["samples_in_epoch"], ckpt["step"]) == (1, 16, 6)
    monkeypatch.undo()

    Trainer(tiny(tmp_path / "b", resume="auto", **kw), datasets=data).fit()
    _, wa = _weights(tmp_path / "a" / "run" / "last.pt")
    cb, wb = _weights(tmp_path / "b" / "run" / "last.pt")
    assert cb["step"] == 8
    assert all(torch.equal(wa[k], wb[k]) for k in wa), "a run resumed mid-epoch differs from an uninterrupted one"
    times = [float(r["time_s"]) for r in read_csv(tmp_path / "b" / "run" / "history_steps.csv")]
    assert len(times) == 8 and times == sorted(times), "time_s must keep counting across a resume"


def test_resume_with_another_batch_size_mid_epoch_sees_the_rest_of_the_epoch(tmp_path, toy_sets, monkeypatch):
    kw = dict(epochs=1, test_at_end=False, num_samples=0)
    data = small_sets(toy_sets)
    Trainer(tiny(tmp_path / "a", **kw), datasets=data).fit()
    order = list(data["train"].seen)  # the epoch's image order (batch 8, 4 steps)

    data["train"].seen.clear()
    _signal_at(monkeypatch, 1)  # after 8 of 32 images
    Trainer(tiny(tmp_path / "b", **kw), datasets=data).fit()
    monkeypatch.undo()
    first = list(data["train"].seen)
    data["train"].seen.clear()
    tr = Trainer(tiny(tmp_path / "b", resume="auto", **{**kw, "batch_size": 4}), datasets=data)
    tr.fit()
    assert first + data["train"].seen == order, "the resumed epoch skipped or repeated images"
    assert tr.step == 1 + 24 // 4


def test_checkpoint_of_another_architecture_fails_with_the_mismatch(tmp_path, toy_sets):
    data = small_sets(toy_sets)
    Trainer(tiny(tmp_path, epochs=1, test_at_end=False), datasets=data).fit()
    ckpt_path = tmp_path / "run" / "last.pt"
    other = tiny(tmp_path, epochs=2, model={**TINY_MODEL, "ndims": 4}, resume=str(ckpt_path))
    with pytest.raises(CheckpointMismatchError) as err:
        Trainer(other, datasets=data)
    msg = str(err.value)
    assert isinstance(err.value, UserError) and "shape mismatch" in msg and "encoder.0" in msg, msg
    assert "ndims: 8 (checkpoint) vs 4 (current)" in msg, msg

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
        return (total * float("nan") if tr.step >= 5 else total), terms  # during epoch 2

    tr.criterion.forward = poisoned
    last = tmp_path / "run" / "last.pt"
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(TrainingDiverged, match="non-finite loss") as err:
        tr.fit()
    assert str(last) in str(err.value) and "lower lr" in str(err.value)
    ckpt = load_checkpoint(last)
    assert ckpt["epoch"] == 1 and ckpt["step"] == 4, "the checkpoint must be the last good one"
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    assert signal.getsignal(signal.SIGINT) is handler, "the SIGINT handler was not restored"


def test_checkpoint_holds_everything_for_a_resume(tmp_path, toy_sets):
    Trainer(tiny(tmp_path, epochs=1, lr_schedule="cosine", test_at_end=False), datasets=small_sets(toy_sets)).fit()
    ckpt = load_checkpoint(tmp_path / "run" / "best.pt")
    for key in ("model", "opt_G", "scaler", "epoch", "step", "rng", "train_config", "model_config", "data_source"):
        assert key in ckpt, key
    assert ckpt["kind"] == "training" and set(ckpt["rng"]) >= {"python", "numpy", "torch"}
    assert ckpt["train_config"]["lr_schedule"] == "cosine" and ckpt["model_config"]["ndims"] == 8
    model, _ = load_generator(tmp_path / "run" / "best.pt")
    assert model(torch.zeros(2, 1, 32, 32)).shape == (2, 2, 32, 32)


def test_ema_is_saved_evaluated_exported_and_starts_init_from(tmp_path, toy_sets):
    data = small_sets(toy_sets)
    Trainer(tiny(tmp_path / "a", epochs=1, ema=0.5, test_at_end=False), datasets=data).fit()
    best = tmp_path / "a" / "run" / "best.pt"
    ckpt = load_checkpoint(best)
    assert any(not torch.equal(ckpt["model"][k], ckpt["model_ema"][k]) for k in ckpt["model"])
    model, _ = load_generator(best)
    assert all(torch.equal(v, ckpt["model_ema"][k]) for k, v in model.state_dict().items()), "EMA weights first"

    export = export_generator(best, tmp_path / "g.pt")
    raw = torch.load(export, weights_only=True)
    assert raw["kind"] == "generator" and raw["train_config"]["ema"] == 0.5
    assert all(v.dtype == torch.float16 for v in raw["model"].values() if v.is_floating_point())
    small, _ = load_generator(export)
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    assert (small(x) - model(x)).abs().max() < 1e-2, "the fp16 export predicts as the checkpoint"
    with pytest.raises(CheckpointError, match="exists"):
        export_generator(best, export)

    tr = Trainer(tiny(tmp_path / "b", epochs=1, init_from=str(export)), datasets=data)
    assert all(torch.equal(v, small.state_dict()[k]) for k, v in tr.G.state_dict().items())


def test_load_generator_without_a_path_uses_the_shipped_model_or_says_how(tmp_path, monkeypatch):
    monkeypatch.setattr(lib.checkpoint, "SHIPPED", tmp_path / "checkpoints" / "celebahq128_l1p.pt")
    with pytest.raises(CheckpointError, match="python -m lib train"):
        load_generator(None)


def test_a_v1_checkpoint_loads_and_resumes(tmp_path, toy_sets):
    """The first checkpoint format (flat train_config: theta, d_width, model overrides) still works."""
    data = small_sets(toy_sets)
    Trainer(tiny(tmp_path, epochs=1, **GAN, test_at_end=False), datasets=data).fit()
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    cfg = ckpt["train_config"]
    flat = {k: v for k, v in cfg.items() if k not in ("loss", "discriminator", "model", "init_from", "ema", "overwrite")}
    flat.update(cfg["loss"], d_width=cfg["discriminator"]["ndf"], discriminator={"n_layers": 2}, model=TINY_MODEL)
    v1 = {k: v for k, v in ckpt.items() if k not in ("kind", "data_source", "model_ema", "samples_in_epoch")}
    v1.update(format="facecolor-checkpoint-v1", train_config=flat)
    torch.save(v1, tmp_path / "v1.pt")

    model, loaded = load_generator(tmp_path / "v1.pt")
    assert loaded["train_config"]["loss"]["theta"] == 0.08 and loaded["train_config"]["discriminator"]["ndf"] == 8
    tr = Trainer(tiny(tmp_path / "again", epochs=2, **GAN, test_at_end=False, resume=str(tmp_path / "v1.pt")),
                 datasets=data)
    assert tr.epoch == 1 and tr.step == 4
    tr.fit()


def test_resume_on_other_data_is_refused(tmp_path, toy_sets):
    from lib.data import DataSource

    data = small_sets(toy_sets)
    Trainer(tiny(tmp_path, epochs=1, test_at_end=False), datasets=data,
            source=DataSource("folder", "/faces/a", None, {"train": 32})).fit()
    with pytest.raises(DataError, match="trained on a at /faces/a"):
        Trainer(tiny(tmp_path, epochs=2, test_at_end=False, resume="auto"), datasets=data,
                source=DataSource("toy", counts={"train": 32}))


# --- small data, out_dir, machine limits ---------------------------------------------------
def test_empty_splits_train_without_a_test_or_are_refused_by_name(tmp_path, toy_sets):
    data = {**small_sets(toy_sets), "test": InMemory([], flip=False)}
    with pytest.raises(DataError, match="test_at_end=false"):
        Trainer(tiny(tmp_path, epochs=1), datasets=data)
    assert Trainer(tiny(tmp_path, epochs=1, test_at_end=False), datasets=data).fit()["status"] == "finished"
    with pytest.raises(DataError, match="the val split is empty"):
        Trainer(tiny(tmp_path / "v", epochs=1), datasets={**data, "val": InMemory([], flip=False)})
    with pytest.raises(DataError, match="fewer than option 'batch_size'"):
        Trainer(tiny(tmp_path / "t", epochs=1, batch_size=64), datasets=data)


def test_out_dir_and_threads_are_checked_before_any_work(tmp_path, toy_sets, monkeypatch):
    from lib.config import REPO_ROOT

    data = small_sets(toy_sets)
    for out, words in (("", "is empty"), (str(REPO_ROOT), "holds other work"), (".", "holds other work")):
        monkeypatch.chdir(REPO_ROOT)
        with pytest.raises(ConfigError, match=words):
            Trainer(tiny(tmp_path, out_dir=out), datasets=data)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="core"):
        tiny(tmp_path, threads=10_000).check()

    Trainer(tiny(tmp_path, epochs=1, test_at_end=False, num_samples=1), datasets=data).fit()
    run = tmp_path / "run"
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    with pytest.raises(ConfigError, match="holds an earlier run .*resume=auto.*overwrite=true"):
        Trainer(tiny(tmp_path, epochs=1), datasets=data)
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before, "a refused run changed files"
    (run / ".last.pt.tmp-999999999").write_bytes(b"debris of a killed save")
    Trainer(tiny(tmp_path, epochs=1, test_at_end=False, num_samples=0, overwrite=True), datasets=data).fit()
    assert not (run / ".last.pt.tmp-999999999").exists(), "a dead process's temp file was not cleaned"
    assert not list((run / "samples").glob("*.png")), "overwrite left the earlier run's samples"


def test_training_step_walkthrough_links_point_at_what_they_say():
    import re
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    doc = (repo / "docs" / "training_step.md").read_text()
    links = re.findall(r"\[(lib/[\w/]+\.py):(\d+)\]\(\.\./\1#L\2\)", doc)
    assert len(links) >= 15 and len({p for p, _ in links}) <= 5, "the walkthrough should stay within a few files"
    named = re.findall(r"`([\w.]+)[^`]*`\** \(\[(lib/[\w/]+\.py):(\d+)\]", doc)
    assert len(named) >= 10
    for name, path, line in named:
        lines = (repo / path).read_text().splitlines()
        short = name.rsplit(".", 1)[-1]
        moved = next((i for i, t in enumerate(lines, 1) if f"def {short}(" in t), None)
        assert short in lines[int(line) - 1], (f"docs/training_step.md links {path}:{line} as {name}, which is now "
                                               f"at line {moved}: update the link (the code moved)")


def test_recompute_bn_stats_gives_the_exact_average_for_the_current_weights():
    from lib.train import recompute_bn_stats

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3, padding=1), torch.nn.BatchNorm2d(3)).eval()
    bn = net[1]
    bn.running_mean.fill_(123.0)  # stale statistics, as after many steps of other weights
    batches = [torch.randn(4, 1, 8, 8) * 2 + 1 for _ in range(5)]
    seen = recompute_bn_stats(net, batches)
    with torch.no_grad():
        feats = net[0](torch.cat(batches))  # (20, 3, 8, 8): what BatchNorm sees
    assert seen == 20
    torch.testing.assert_close(bn.running_mean, feats.mean(dim=(0, 2, 3)), rtol=1e-5, atol=1e-5)
    assert bn.momentum == 0.1 and not net.training  # restored


def test_ema_warm_up_forgets_the_random_initial_weights():
    """With ``step`` the decay is min(decay, (1 + step) / (10 + step)): after 280 steps at 0.999 the average keeps
    76 % of its starting weights without the warm-up and almost none with it."""
    import copy

    from lib.train import update_ema

    start, target = torch.nn.Linear(3, 3), torch.nn.Linear(3, 3)
    for warm in (False, True):
        ema = copy.deepcopy(start)
        for t in range(280):
            update_ema(ema, target, 0.999, step=t if warm else None)
        share = ((ema.weight - target.weight) / (start.weight - target.weight)).mean().item()  # weight of the start
        if warm:
            assert share < 0.05, share
        else:
            assert abs(share - 0.999 ** 280) < 1e-4, share
    ema = copy.deepcopy(start)
    update_ema(ema, target, 0.999, step=0)
    assert torch.allclose(ema.weight, 0.1 * start.weight + 0.9 * target.weight, atol=1e-6), "step 0: decay 0.1"
