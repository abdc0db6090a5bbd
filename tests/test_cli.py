"""The command line: ``python -m lib train`` / ``evaluate``: help, early errors, end to end.

Most calls run ``lib.__main__.main(argv)`` in this process (fast); the Ctrl-C test runs
the real command in a subprocess and sends it SIGINT mid-epoch.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from lib.__main__ import main
from lib.train import TrainConfig, config_help, load_checkpoint

REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread", "private_cache")


def write_config(path: Path, **kw) -> Path:
    cfg = dict(dataset="toy", toy_images=32, image_size=32, batch_size=8, epochs=1, beta=0.0, lr=2e-3,
               model={"ndims": 8, "depth": 2, "num_blocks": 0}, num_samples=2, progress=False, device="cpu",
               threads=1, out_dir=str(path.parent / "run"))
    cfg.update(kw)
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_main(argv, capsys) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_help_explains_commands_and_every_training_option(capsys):
    code, out, _ = run_main(["--help"], capsys)
    assert code == 0 and all(c in out for c in ("demo", "train", "evaluate"))
    code, out, _ = run_main(["train", "--help"], capsys)
    assert code == 0 and "--config" in out and "--set" in out and "--dry-run" in out
    helps = config_help()
    for f in dataclasses.fields(TrainConfig):
        assert f"  {f.name} = " in out, f"option {f.name} missing from train --help"
        assert helps[f.name][:40] in out.replace("\n", " "), f"comment of {f.name} missing from train --help"
    code, out, _ = run_main(["evaluate", "--help"], capsys)
    assert code == 0
    for opt in ("--split", "--size", "--data-root", "--max-images", "--no-baselines", "--fid", "--lpips", "--out"):
        assert opt in out


@pytest.mark.parametrize("args, words", [
    (["--set", "pixel=l3"], ["'pixel'", "l1, l2"]),
    (["--set", "gan_mode=wgan"], ["'gan_mode'", "lsgan, vanilla, hinge"]),
    (["--set", "lrr=0.1"], ["unknown option 'lrr'", "lr"]),
    (["--set", "epochs=ten"], ["'epochs'", "integer"]),
    (["--set", "epochs"], ["key=value"]),
    (["--set", "image_size=40"], ["'image_size'", "divisible"]),
    (["--set", "device=gpu"], ["'device'", "auto, cpu, cuda"]),
    (["--set", "model.width=3"], ["'model.width'", "model.ndims"]),
    (["--config", "no/such/file.yaml"], ["does not exist"]),
    (["--set", "dataset=folder", "--set", "data_root=/no/such/folder"], ["/no/such/folder", "not a folder"]),
])
def test_train_rejects_bad_options_before_any_work(tmp_path, capsys, args, words):
    out_dir = tmp_path / "never"
    code, _, err = run_main(["train", *args, "--set", f"out_dir={out_dir}"], capsys)
    assert code == 2, err
    for w in words:
        assert w in err, f"{w!r} missing from: {err}"
    assert not out_dir.exists(), "the command did work before failing"


def test_unknown_key_in_a_config_file_is_named(tmp_path, capsys):
    path = write_config(tmp_path / "c.yaml", learning_rate=0.1)
    code, _, err = run_main(["train", "--config", str(path)], capsys)
    assert code == 2 and "unknown option 'learning_rate'" in err


def test_shipped_configs_load_and_the_variants_differ_only_where_they_should():
    seed = TrainConfig.load(REPO / "configs" / "seed.yaml")
    assert (seed.unet_config().ndims, seed.unet_config().depth, seed.unet_config().num_blocks) == (16, 4, 1)
    assert (seed.image_size, seed.batch_size, seed.epochs, seed.lr, seed.betas) == (128, 64, 120, 2e-4, (0.5, 0.999))
    assert (seed.pixel, seed.alpha, seed.beta) == ("l1", 100.0, 1.0)
    for name, pixel, theta in (("l2_p", "l2", 0.0), ("l2_p_g", "l2", 0.08), ("l1_p", "l1", 0.0), ("l1_p_g", "l1", 0.08)):
        variant = TrainConfig.load(REPO / "configs" / f"{name}.yaml")
        assert (variant.pixel, variant.theta) == (pixel, theta), name
        assert set(seed.diff(variant)) <= {"pixel", "theta", "out_dir"}, (name, seed.diff(variant))
    cpu = TrainConfig.load(REPO / "configs" / "cpu_64px.yaml")
    assert cpu.image_size == 64 and cpu.unet_config() == seed.unet_config() and cpu.beta > 0 and cpu.theta == 0


def test_dry_run_prints_the_resolved_config(tmp_path, capsys):
    path = write_config(tmp_path / "c.yaml")
    code, out, _ = run_main(["train", "--config", str(path), "--set", "epochs=3", "--set", "model.ndims=4",
                             "--dry-run"], capsys)
    assert code == 0
    printed = yaml.safe_load(out)
    assert printed["epochs"] == 3 and printed["model"]["ndims"] == 4 and printed["model"]["depth"] == 2
    assert TrainConfig.from_dict(printed).epochs == 3
    assert not (tmp_path / "run").exists()


def test_train_then_evaluate_end_to_end(tmp_path, capsys):
    path = write_config(tmp_path / "c.yaml", epochs=2)
    code, out, err = run_main(["train", "--config", str(path)], capsys)
    assert code == 0, err
    run = tmp_path / "run"
    assert "test split, best.pt" in out and (run / "test_metrics.json").is_file()

    report_path = tmp_path / "eval.json"
    code, out, err = run_main(["evaluate", str(run / "best.pt"), "--split", "test", "--out", str(report_path)],
                              capsys)
    assert code == 0, err
    report = json.loads(report_path.read_text())
    assert report["split"] == "test" and report["image_size"] == 32 and report["num_images"] == 16
    assert {"model", "grey", "mean_face"} <= set(report)
    trained = json.loads((run / "test_metrics.json").read_text())
    assert report["model"]["psnr_rgb"] == pytest.approx(trained["model"]["psnr_rgb"], rel=1e-6), \
        "evaluate and the end-of-training test disagree on the same checkpoint"
    assert "| grey |" in out and "| mean face |" in out

    code, out, err = run_main(["evaluate", str(run / "best.pt"), "--split", "val", "--no-baselines",
                               "--size", "64"], capsys)
    assert code == 0, err
    report = json.loads(out)
    assert report["split"] == "val" and report["image_size"] == 64 and "grey" not in report

    for args, words in ((["--split", "dev"], ["invalid choice", "train", "val", "test"]),
                        (["--size", "0"], ["--size", "positive integer"]),
                        (["--size", "34"], ["'image_size'", "divisible"]),
                        (["--device", "tpu"], ["--device", "auto, cpu"])):
        code, _, err = run_main(["evaluate", str(run / "best.pt"), *args], capsys)
        assert code == 2 and all(w in err for w in words), err
    code, _, err = run_main(["evaluate", str(tmp_path / "missing.pt")], capsys)
    assert code == 2 and "does not exist" in err


def test_ctrl_c_mid_epoch_saves_a_loadable_checkpoint_and_exits_cleanly(tmp_path):
    path = write_config(tmp_path / "c.yaml", toy_images=400, batch_size=2, epochs=1)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "lib", "train", "--config", str(path)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    steps = tmp_path / "run" / "history_steps.csv"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if steps.is_file() and len(steps.read_text().splitlines()) > 3:  # header + 3 steps
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "stopped by SIGINT" in out and "Traceback" not in out, out
    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")  # weights_only=True
    assert ckpt["epoch"] == 0 and 3 <= ckpt["batch_in_epoch"] < 200
    assert ckpt["step"] == ckpt["batch_in_epoch"]
    assert not [p for p in (tmp_path / "run").iterdir() if "tmp" in p.name]


def test_demo_writes_the_readme_figures_on_toy_faces(tmp_path, capsys, monkeypatch):
    import lib.data

    monkeypatch.delenv("CELEBAHQ_DIR", raising=False)
    monkeypatch.setattr(lib.data, "REPO_ROOT", tmp_path)  # no data/celeba_hq/ there: ToyFaces
    assert main(["demo", "--out", str(tmp_path / "figs")]) == 0
    out = capsys.readouterr().out
    assert "using ToyFaces" in out and "3,300,326" in out, "names the stand-in data and the seed model's size"
    for name in ("data_samples.png", "unet_architecture.png"):
        assert (tmp_path / "figs" / name).stat().st_size > 10_000, name
