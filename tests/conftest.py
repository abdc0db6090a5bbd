"""Shared pytest fixtures.

Real-face tests use the CelebA-HQ sample named by ``CELEBAHQ_DIR`` (CI sets it to
``../shared/data/celebahq-5k``) and skip with a clear reason when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

if os.environ.get("PYTEST_XDIST_WORKER"):  # `make test`: one worker per core, so one thread per worker
    os.environ["OMP_NUM_THREADS"] = "1"  # and per process it starts (notebook kernels, CLI runs, torchrun)
    torch.set_num_threads(1)
else:
    torch.set_num_threads(min(2, os.cpu_count() or 1))


def _celebahq_dir() -> Path | None:
    env = os.environ.get("CELEBAHQ_DIR")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[1].parent / "shared" / "data" / "celebahq-5k")
    for c in candidates:
        if c.is_dir():
            return c
    return None


@pytest.fixture(scope="session")
def celebahq_dir() -> Path:
    """The CelebA-HQ sample folder; the test is skipped (with the reason) when it is missing."""
    root = _celebahq_dir()
    if root is None:
        pytest.skip("real-face test: set CELEBAHQ_DIR to a CelebA-HQ folder (CI uses ../shared/data/celebahq-5k)")
    return root


@pytest.fixture
def one_thread():
    """Run the test on one torch thread, then restore the setting.

    Tiny models gain nothing from a second thread, and on a busy 2-core machine two
    spinning OpenMP threads make each step several times slower.
    """
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def private_cache(tmp_path_factory, monkeypatch):
    """Point ``FACECOLOR_CACHE`` (uint8 images, mean faces, probes) at a folder of this test session."""
    monkeypatch.setenv("FACECOLOR_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="session")
def perceptual():
    """The VGG16 perceptual loss (default layers), built once; skipped when no weights source works."""
    import lib.pretrained
    from lib.losses import PerceptualLoss

    try:
        return PerceptualLoss()
    except lib.pretrained.WeightsUnavailableError as e:
        pytest.skip(str(e))
