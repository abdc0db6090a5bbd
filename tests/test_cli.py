"""The command line: ``python -m lib train`` / ``evaluate`` / ``export``: help, the one error path
(``error: ...``, exit 2, nothing lost), end to end, and Ctrl-C / SIGTERM on the real command.

Most calls run ``lib.__main__.main(argv)`` in this process (fast); the signal tests run the
real command in a subprocess.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
import yaml

from lib.__main__ import main
from lib.checkpoint import load_checkpoint
from lib.config import TrainConfig, flat_dict, option_help
from lib.errors import CheckpointError

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("one_thread", "private_cache")


def write_config(path: Path, **kw) -> Path:
    cfg = dict(dataset="toy", toy_images=32, image_size=32, batch_size=8, epochs=1, lr=2e-3, loss={"beta": 0.0},
               model={"ndims": 8, "depth": 2, "num_blocks": 0}, num_samples=2, progress=False, device="cpu",
               threads=1, out_dir=str(path.parent / "run"))
    cfg.update(kw)
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_main(argv, capsys) -> tuple[int, str, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def checksums(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_one_error_line(code, err, *words):
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines[0].startswith("error: ") and "Traceback" not in err, err
    for w in words:
        assert w in err, f"{w!r} missing from: {err}"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished tiny run (best.pt, last.pt, test_metrics.json) on ToyFaces, trained once."""
    folder = tmp_path_factory.mktemp("trained")
    path = write_config(folder / "c.yaml", epochs=2)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["train", "--config", str(path)]) == 0
    finally:
        torch.set_num_threads(n)
    return folder / "run"


def test_help_explains_commands_and_every_training_option(capsys):
    code, out, _ = run_main(["--help"], capsys)
    assert code == 0 and all(c in out for c in ("demo", "train", "evaluate", "colorize", "export"))
    code, out, _ = run_main(["train", "--help"], capsys)
    assert code == 0 and "--config" in out and "--set" in out and "--dry-run" in out
    flat = " ".join(out.split())
    for name, comment in option_help().items():
        assert f"  {name} = " in out, f"option {name} missing from train --help"
        assert " ".join(comment.split())[:40] in flat, f"comment of {name} missing from train --help"
    code, out, _ = run_main(["evaluate", "--help"], capsys)
    assert code == 0 and all(o in out for o in ("--split", "--size", "--data-root", "--max-images", "--no-baselines"))


@pytest.mark.parametrize("args, words", [
    (["--set", "loss.pixel=l3"], ["'loss.pixel'", "l1, l2"]),
    (["--set", "loss.gan_mode=wgan"], ["'loss.gan_mode'", "lsgan, vanilla, hinge"]),
    (["--set", "lrr=0.1"], ["unknown option 'lrr'", "did you mean lr"]),
    (["--set", "epochs=ten"], ["'epochs'", "Integer"]),
    (["--set", "epochs"], ["key=value"]),
    (["--set", "image_size=40"], ["'image_size'", "divisible"]),
    (["--set", "image_size=16", "--set", "loss.theta=0.1"], ["'image_size'", "too small"]),
    (["--set", "device=gpu"], ["'device'", "auto, cpu, cuda"]),
    (["--set", "model.width=3"], ["'model.width'", "model."]),
    (["--set", "threads=100000"], ["'threads'", "core"]),
    (["--set", "out_dir="], ["'out_dir'"]),
    (["--set", f"out_dir={REPO}"], ["'out_dir'", "holds other work"]),
    (["--config", "no/such/file.yaml"], ["does not exist"]),
    (["--set", "dataset=folder", "--set", "data_root=/no/such/folder"], ["/no/such/folder", "not a folder"]),
    (["--set", "resume=/no/such.pt"], ["'resume'", "does not exist"]),
])
def test_train_rejects_bad_options_before_any_work(tmp_path, capsys, args, words):
    out_dir = tmp_path / "never"
    code, _, err = run_main(["train", "--set", f"out_dir={out_dir}", *args], capsys)
    assert_one_error_line(code, err, *words)
    assert not out_dir.exists(), "the command did work before failing"


@pytest.mark.parametrize("name, text, words", [
    ("bad.yaml", "epochs: [1, 2\nlr: 3", ["bad.yaml", "not valid YAML", "line"]),
    ("bad.json", '{"epochs": 3,}', ["bad.json", "not valid JSON", "line 1"]),
    ("list.yaml", "- epochs\n- 3\n", ["mapping"]),
    ("c.yaml", "learning_rate: 0.1\n", ["unknown option 'learning_rate'"]),
    ("c.yaml", "theta: 0.08\n", ["unknown option 'theta'", "loss.theta"]),
    ("c.txt", "epochs: 3\n", [".yaml, .yml or .json"]),
])
def test_malformed_config_files_are_one_error_line(tmp_path, capsys, name, text, words):
    (tmp_path / name).write_text(text)
    before = checksums(tmp_path)
    code, _, err = run_main(["train", "--config", tmp_path / name], capsys)
    assert_one_error_line(code, err, *words)
    assert checksums(tmp_path) == before


def test_shipped_configs_load_and_the_variants_differ_only_where_they_should():
    seed = TrainConfig.load(REPO / "configs" / "seed.yaml")
    assert (seed.model.ndims, seed.model.depth, seed.model.num_blocks) == (16, 4, 1)
    assert (seed.image_size, seed.batch_size, seed.epochs, seed.lr, seed.betas) == (128, 64, 120, 2e-4, (0.5, 0.999))
    assert (seed.loss.pixel, seed.loss.alpha, seed.loss.beta) == ("l1", 100.0, 1.0)
    for name, pixel, theta in (("l2_p", "l2", 0.0), ("l2_p_g", "l2", 0.08), ("l1_p", "l1", 0.0), ("l1_p_g", "l1", 0.08)):
        variant = TrainConfig.load(REPO / "configs" / f"{name}.yaml")
        assert (variant.loss.pixel, variant.loss.theta) == (pixel, theta), name
        assert set(seed.diff(variant)) <= {"loss.pixel", "loss.theta", "out_dir"}, (name, seed.diff(variant))
    cpu = TrainConfig.load(REPO / "configs" / "cpu_64px.yaml")
    assert cpu.image_size == 64 and cpu.model == seed.model and cpu.loss.beta > 0 and cpu.loss.theta == 0


def test_dry_run_prints_the_resolved_config(tmp_path, capsys):
    path = write_config(tmp_path / "c.yaml")
    code, out, _ = run_main(["train", "--config", path, "--set", "epochs=3", "--set", "model.ndims=4", "--dry-run"],
                            capsys)
    assert code == 0
    printed = yaml.safe_load(out)
    assert printed["epochs"] == 3 and printed["model"]["ndims"] == 4 and printed["model"]["depth"] == 2
    assert TrainConfig.from_dict(printed).epochs == 3 and not (tmp_path / "run").exists()


def test_train_then_evaluate_end_to_end(trained, tmp_path, capsys):
    report_path = tmp_path / "eval.json"
    code, out, err = run_main(["evaluate", trained / "best.pt", "--split", "test", "--out", report_path], capsys)
    assert code == 0, err
    report = json.loads(report_path.read_text())
    assert report["split"] == "test" and report["image_size"] == 32 and report["num_images"] == 16
    assert {"model", "grey", "mean_face"} <= set(report) and report["data_source"]["kind"] == "toy"
    assert "ToyFaces" in report["data"] and "trained on" in report["data_note"]
    logged = json.loads((trained / "test_metrics.json").read_text())
    assert report["model"]["psnr_rgb"] == pytest.approx(logged["model"]["psnr_rgb"], rel=1e-6), \
        "evaluate and the end-of-training test disagree on the same checkpoint"
    assert "| grey |" in out and "| mean face |" in out

    code, out, err = run_main(["evaluate", trained / "best.pt", "--split", "val", "--no-baselines", "--size", "64"],
                              capsys)
    assert code == 0, err
    report = json.loads(out)
    assert report["split"] == "val" and report["image_size"] == 64 and "grey" not in report
    code, out, err = run_main(["evaluate", trained / "best.pt", "--split", "val", "--no-baselines", "--size", "64",
                               "--flip"], capsys)
    flipped = json.loads(out)
    assert code == 0 and flipped["flip"] is True and report["flip"] is False
    assert flipped["model"]["psnr_rgb"] != report["model"]["psnr_rgb"], "--flip reaches the predictor"

    for args, words in ((["--split", "dev"], ["invalid choice", "train", "val", "test"]),
                        (["--size", "0"], ["--size", "positive integer"]),
                        (["--device", "tpu"], ["--device", "auto, cpu"])):
        code, _, err = run_main(["evaluate", trained / "best.pt", *args], capsys)
        assert code == 2 and all(w in err for w in words), err
    code, _, err = run_main(["evaluate", trained / "best.pt", "--size", "34"], capsys)
    assert_one_error_line(code, err, "'--size'", "multiple of 2**depth = 4")


def test_evaluate_refuses_silently_other_data(trained, tmp_path, capsys):
    """A checkpoint trained on a folder that is gone must not be evaluated on ToyFaces."""
    ckpt = torch.load(trained / "best.pt", weights_only=True)
    ckpt["data_source"] = {"kind": "folder", "root": str(tmp_path / "gone"), "fingerprint": None, "counts": {}}
    torch.save(ckpt, tmp_path / "moved.pt")
    del ckpt["data_source"]
    ckpt["train_config"]["dataset"] = "auto"
    torch.save(ckpt, tmp_path / "unknown.pt")
    before = checksums(tmp_path)
    code, _, err = run_main(["evaluate", tmp_path / "moved.pt"], capsys)
    assert_one_error_line(code, err, str(tmp_path / "gone"), "--data-root")
    code, _, err = run_main(["evaluate", tmp_path / "unknown.pt"], capsys)
    assert_one_error_line(code, err, "does not say which face folder", "--data-root")
    assert checksums(tmp_path) == before


_GARBAGE = random.Random(2).randbytes(4096)  # bytes the weights_only unpickler fails on with an IndexError


def test_random_bytes_are_never_more_than_a_checkpoint_error(tmp_path):
    """Garbage makes torch's unpickler fail in many ways (UnpicklingError, IndexError, KeyError,
    UnicodeDecodeError, ...); every one must reach the user as the one CheckpointError."""
    path, kinds = tmp_path / "x.pt", set()
    for seed in range(300):
        blob = random.Random(seed).randbytes(4096)
        path.write_bytes(blob)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                torch.load(path, weights_only=True)
            except Exception as e:  # noqa: BLE001 - which error torch raises is what is recorded
                kinds.add(type(e).__name__)
        with pytest.raises(CheckpointError, match="not a"):
            load_checkpoint(path)
    assert {"UnpicklingError", "IndexError", "KeyError"} <= kinds  # the sweep covers the ways torch fails


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {_Evil.marker}",))


@pytest.mark.parametrize("kind, words", [
    ("missing", ["does not exist"]),
    ("folder", ["is a folder"]),
    ("empty", ["is empty (0 bytes)"]),
    ("truncated", ["not a readable PyTorch checkpoint"]),
    ("random", ["not a"]),
    ("text", ["not a"]),
    ("no_keys", ["not a checkpoint of this project"]),
    ("incomplete", ["incomplete training checkpoint", "model_config"]),
    ("evil", ["other than tensors", "no code in it ran"]),
])
def test_bad_checkpoint_files_are_one_error_line_and_nothing_runs(trained, tmp_path, capsys, kind, words):
    path = tmp_path / ("x" if kind == "folder" else "x.pt")
    good = (trained / "best.pt").read_bytes()
    _Evil.marker = tmp_path / "pwned"
    if kind == "folder":
        path.mkdir()
    elif kind != "missing":
        path.write_bytes({"empty": b"", "truncated": good[: len(good) // 2], "random": _GARBAGE,
                          "text": b"not a checkpoint\n", "evil": b"", "no_keys": b"", "incomplete": b""}[kind])
    if kind == "evil":
        torch.save({"format": "facecolor-checkpoint-v2", "model": _Evil()}, path)  # pickles os.system
    if kind == "no_keys":
        torch.save({"weights": torch.zeros(3)}, path)
    if kind == "incomplete":
        torch.save({"format": "facecolor-checkpoint-v2", "kind": "training", "model": {}}, path)
    before = checksums(tmp_path)
    for command in (["evaluate", path], ["export", path, tmp_path / "out.pt"]):
        code, _, err = run_main(command, capsys)
        assert_one_error_line(code, err, *words)
    assert not _Evil.marker.exists(), "code inside a checkpoint ran"
    assert checksums(tmp_path) == before, "a failed command changed files"


def test_export_writes_a_small_generator_file_and_never_replaces_one(trained, tmp_path, capsys):
    out = tmp_path / "g.pt"
    code, stdout, err = run_main(["export", trained / "best.pt", out], capsys)
    assert code == 0 and "[export]" in stdout, err
    assert out.stat().st_size < (trained / "best.pt").stat().st_size / 2
    before = checksums(tmp_path)
    code, _, err = run_main(["export", trained / "last.pt", out], capsys)
    assert_one_error_line(code, err, "exists", "--overwrite")
    assert checksums(tmp_path) == before
    code, stdout, err = run_main(["evaluate", out, "--no-baselines"], capsys)
    assert code == 0, err


def test_a_fresh_run_never_replaces_an_earlier_one(trained, capsys):
    before = checksums(trained)
    config = trained / "config.yaml"
    code, _, err = run_main(["train", "--config", config], capsys)
    assert_one_error_line(code, err, "holds an earlier run", "resume=auto", "overwrite=true")
    code, out, err = run_main(["train", "--config", config, "--set", "resume=auto"], capsys)  # already finished
    assert code == 0 and "resumed" in out, err
    assert checksums(trained)["best.pt"] == before["best.pt"]


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_mid_epoch_saves_a_loadable_checkpoint_and_exits_non_zero(tmp_path, sig, code):
    path = write_config(tmp_path / "c.yaml", toy_images=400, batch_size=2, epochs=1, workers=1)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "FACECOLOR_CACHE": str(tmp_path / "cache")}
    proc = subprocess.Popen([sys.executable, "-m", "lib", "train", "--config", str(path)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    steps = tmp_path / "run" / "history_steps.csv"  # written every 50 steps
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and not steps.is_file():
        time.sleep(0.2)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=120)
    name = signal.Signals(sig).name
    assert proc.returncode == code, out
    assert out.count(f"{name}: finishing this step") == 1, "the notice must be printed once (workers=1)"
    assert f"stopped by {name}" in out and "resume=auto" in out and "Traceback" not in out, out
    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")  # weights_only=True
    assert ckpt["epoch"] == 0 and 50 <= ckpt["batch_in_epoch"] < 200 and ckpt["step"] == ckpt["batch_in_epoch"]
    assert not [p for p in (tmp_path / "run").iterdir() if "tmp" in p.name]
    rows = steps.read_text().splitlines()[1:]
    assert len(rows) == ckpt["step"], "step history and checkpoint agree"


def test_demo_writes_the_readme_figures_on_toy_faces(tmp_path, capsys, monkeypatch):
    import lib.data

    monkeypatch.delenv("CELEBAHQ_DIR", raising=False)
    monkeypatch.setattr(lib.data, "REPO_ROOT", tmp_path)  # no data/celeba_hq/ there: ToyFaces
    assert main(["demo", "--out", str(tmp_path / "figs")]) == 0
    out = capsys.readouterr().out
    assert "using ToyFaces" in out and "3,300,326" in out, "names the stand-in data and the seed model's size"
    for name in ("data_samples.png", "unet_architecture.png"):
        assert (tmp_path / "figs" / name).stat().st_size > 10_000, name


def test_the_default_config_is_what_help_shows():
    assert set(flat_dict(TrainConfig().to_dict())) == set(option_help())
