"""The fast paths give the same results as the plain ones, the defaults resolve per device,
and the benchmark scripts run end to end (tiny settings)."""

from __future__ import annotations

import json
import os

import pytest
import torch

import lib.color
import lib.pretrained
from lib.color import lab_to_rgb, rgb_to_lab
from lib.runtime import resolve_channels_last, resolve_compile, resolve_threads

CPU, CUDA, MPS = torch.device("cpu"), torch.device("cuda", 0), torch.device("mps")


pytestmark = pytest.mark.usefixtures("one_thread")


# --- lib.color: chunked conversion and cached constants -------------------------------------
@pytest.mark.parametrize("shape", [(5, 3, 120, 130), (3, 400, 700), (2, 2, 3, 64, 64), (60, 3, 10, 12)])
def test_chunked_colour_conversion_equals_one_pass(shape, monkeypatch):
    g = torch.Generator().manual_seed(0)
    rgb = torch.rand(shape, generator=g)
    monkeypatch.setattr(lib.color, "_CHUNK_ELEMENTS", 1 << 62)
    lab = rgb_to_lab(rgb)
    back = lab_to_rgb(lab)
    monkeypatch.setattr(lib.color, "_CHUNK_ELEMENTS", 5_000)  # force many pieces (rows of one image, too)
    # the same arithmetic; only the 3x3 channel mix may sum in another order (float32 rounding)
    torch.testing.assert_close(rgb_to_lab(rgb), lab, rtol=0, atol=1e-4)
    torch.testing.assert_close(lab_to_rgb(lab), back, rtol=0, atol=1e-6)


def test_chunking_keeps_gradients_and_channels_last(monkeypatch):
    monkeypatch.setattr(lib.color, "_CHUNK_ELEMENTS", 1_000)
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    rgb_to_lab(x).sum().backward()  # a tensor that needs a gradient is converted in one pass
    assert x.grad is not None and torch.isfinite(x.grad).all()
    cl = torch.rand(4, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(rgb_to_lab(cl), rgb_to_lab(cl.contiguous()), rtol=0, atol=0)


def test_constants_are_built_once_per_dtype_and_device_and_serve_autograd():
    lib.color._CONSTANTS.clear()
    with torch.inference_mode():
        rgb_to_lab(torch.rand(1, 3, 4, 4))  # first built under inference mode ...
    n = len(lib.color._CONSTANTS)
    x = torch.rand(1, 3, 4, 4, requires_grad=True)
    rgb_to_lab(x).sum().backward()  # ... and still usable by a training step
    assert len(lib.color._CONSTANTS) == n, "the float32 CPU constants must be reused, not rebuilt"
    rgb_to_lab(torch.rand(1, 3, 4, 4, dtype=torch.float64))
    assert len(lib.color._CONSTANTS) > n, "another dtype gets its own constants"


# --- the perceptual loss in channels-last -----------------------------------------------------
def test_perceptual_loss_channels_last_matches_nchw(perceptual):
    g = torch.Generator().manual_seed(0)
    l_n = torch.rand(2, 1, 32, 32, generator=g) * 2 - 1
    ab_true = 0.3 * torch.randn(2, 2, 32, 32, generator=g)
    ab_pred = (0.3 * torch.randn(2, 2, 32, 32, generator=g)).requires_grad_()
    loss = perceptual(l_n, ab_pred, ab_true)
    (grad,) = torch.autograd.grad(loss, ab_pred)
    perceptual.to(memory_format=torch.channels_last)
    try:
        assert perceptual._channels_last
        seen = []
        hook = perceptual.vgg[1].register_forward_hook(lambda m, i, o: seen.append(i[0].is_contiguous(memory_format=torch.channels_last)))
        loss_cl = perceptual(l_n, ab_pred, ab_true)
        hook.remove()
        (grad_cl,) = torch.autograd.grad(loss_cl, ab_pred)
    finally:
        perceptual.to(memory_format=torch.contiguous_format)
    assert seen and all(seen), "the VGG must run in channels-last when its weights are"
    torch.testing.assert_close(loss_cl, loss, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(grad_cl, grad, rtol=1e-3, atol=1e-7)
    assert not perceptual._channels_last


# --- defaults per device ----------------------------------------------------------------------
def test_defaults_resolve_per_device(monkeypatch):
    assert resolve_channels_last(None, CPU) and resolve_channels_last(None, CUDA)
    assert not resolve_channels_last(None, MPS)
    assert resolve_channels_last(False, CPU) is False and resolve_channels_last(True, MPS) is True
    assert resolve_compile(None, CPU) is False and resolve_compile(None, MPS) is False
    assert resolve_compile(True, CPU) is True and resolve_compile(False, CUDA) is False
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object() if name == "triton" else None)
    assert resolve_compile(None, CUDA) is True
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert resolve_compile(None, CUDA) is False, "no Triton: no compile"


@pytest.mark.parametrize("load, running, expected", [(0.1, 1, 2), (1.0, 2, 1), (3.0, 4, 1), (2.5, 1, 2), (0.2, 3, 2)])
def test_auto_threads_leave_busy_cores_alone(monkeypatch, load, running, expected):
    import builtins
    import io

    import lib.runtime

    monkeypatch.setattr(lib.runtime, "_DEFAULT_THREADS", 2)
    monkeypatch.setattr(lib.runtime, "_AUTO_THREADS", None)  # no choice left over by a Trainer of an earlier test
    torch.set_num_threads(2)  # (the autouse fixture restores it)
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda f, *a, **k: io.StringIO(f"{load} {load} {load} {running}/90 1234\n")
                        if f == "/proc/loadavg" else real_open(f, *a, **k))
    assert resolve_threads(0, CPU) == expected
    assert resolve_threads(3, CPU) == 3, "an explicit number is kept"
    torch.set_num_threads(1)
    assert resolve_threads(0, CPU) == 1, "auto never raises a thread count the user set"
    monkeypatch.setattr(lib.runtime, "_AUTO_THREADS", 1)
    assert resolve_threads(0, CPU) == expected, "... but may raise what an earlier auto choice lowered"


def test_trainer_applies_the_resolved_defaults(tmp_path):
    from benchmarks.bench_train_step import make_trainer

    tr = make_trainer(32, 2, "cpu", precision="fp32")
    assert tr.channels_last and not tr.compile
    assert tr.G.head[0].weight.is_contiguous(memory_format=torch.channels_last)
    if tr.criterion.perceptual is not None:
        assert tr.criterion.perceptual._channels_last, "the trainer puts the VGG in the networks' memory format"
    g, d = tr.train_step(*next(iter(tr.train_loader)))
    assert d is None and g.terms and all(torch.isfinite(torch.tensor(v)) for v in [g.loss, *g.terms.values()])


# --- the benchmark scripts, tiny ----------------------------------------------------------------
def test_benchmarks_run_end_to_end_tiny(tmp_path, perceptual, capsys, monkeypatch):
    from benchmarks import bench_inference, bench_profile, bench_train_step

    monkeypatch.setenv("FACECOLOR_CACHE", str(tmp_path / "cache"))

    out = tmp_path / "step.json"
    assert bench_train_step.main(["--sizes", "32", "--batch", "2", "--min-time", "0", "--max-iters", "1",
                                  "--device", "cpu", "--options", "--options-size", "32", "--gan", "--out", str(out)]) == 0
    step = json.loads(out.read_text())
    row = step["rows"][0]
    assert row["flops_per_img"] > 1e8 and row["plain"]["img_per_s"] > 0 and row["fast"]["img_per_s"] > 0
    assert len(step["options"]) >= 2 and "fast / plain" in capsys.readouterr().out
    assert step["gan_rows"][0]["flops_per_img"] > row["flops_per_img"], "the discriminator adds FLOPs"

    r = bench_profile.run(size=32, batch=2, steps=1, n_images=8, data=None, device="cpu")
    names = [p["part"] for p in r["parts"]]
    for part in ("data loader (next batch)", "generator forward", "perceptual loss (VGG16 fwd + bwd)",
                 "discriminator update (fwd + bwd + Adam)", "generator backward"):
        assert part in names, f"{part} missing from {names}"
    assert abs(sum(p["share"] for p in r["parts"]) - 1) < 1e-6

    out = tmp_path / "inference.json"
    assert bench_inference.main(["--batch", "2", "--size", "32", "--photo", "64", "--model-size", "32",
                                 "--min-time", "0", "--device", "cpu", "--out", str(out)]) == 0
    inf = json.loads(out.read_text())
    assert inf["photo"]["total_s"] > 0 and len(inf["batch_rows"]) == 2


@pytest.mark.parametrize("kind", ["l1", "l2"])
def test_bf16_feature_distance_matches_fp32(kind):
    from lib.losses import _distance

    g = torch.Generator().manual_seed(0)
    a = (3 * torch.randn(2, 8, 16, 16, generator=g)).bfloat16().requires_grad_()
    b = (3 * torch.randn(2, 8, 16, 16, generator=g)).bfloat16()
    ref_fn = torch.nn.functional.l1_loss if kind == "l1" else torch.nn.functional.mse_loss
    a32 = a.detach().float().requires_grad_()
    value, ref = _distance(kind)(a, b), ref_fn(a32, b.float())
    assert value.dtype == torch.float32, "summed in fp32"
    torch.testing.assert_close(value, ref, rtol=2e-2, atol=0)
    value.backward()
    ref.backward()
    torch.testing.assert_close(a.grad.float(), a32.grad, rtol=2e-2, atol=1e-6)


def test_old_vs_new_child_times_this_tree_and_pairs_ratios(capsys):
    from benchmarks import bench_old_vs_new, old_vs_new_child

    assert old_vs_new_child.main(["--size", "32", "--batch", "2", "--steps", "1", "--infer-iters", "1"]) == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert r["api"] == "new" and r["fast_path"]["threads"] == 1
    assert min(r["train_step_s"], r["forward_s"], r["colorize_batch_s"], r["train_step_cpu_s"]) > 0

    def runs(step, fwd, col):  # one child's medians, CPU time = wall time here
        return {k: v for name, v in (("train_step", step), ("forward", fwd), ("colorize_batch", col))
                for k in (f"{name}_s", f"{name}_cpu_s")}

    old, new = [runs(2.0, 1.0, 1.0), runs(4.0, 1.0, 2.0)], [runs(1.0, 1.0, 3.0), runs(4.0, 2.0, 2.0)]
    rows = {x["measure"]: x for x in bench_old_vs_new.summarize({"old": old, "new": new})}
    assert rows["train_step_s"]["ratios"] == [0.5, 1.0], "each new run is divided by the old run of its own pair"
    assert rows["colorize_batch_cpu_s"]["ratio_min"] == 1.0 and rows["colorize_batch_cpu_s"]["ratio_max"] == 3.0
