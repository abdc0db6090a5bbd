"""lib.ablation: a grid of runs trained, measured and tabulated; finished runs skipped, a failing
run reported while the others go on; the table's ranks and paired-bootstrap intervals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lib.ablation import KID_ESTIMATOR, PROFILES, Grid, load_grid, results_table, run_config, run_grid
from lib.errors import ConfigError


def _grid(runs: dict) -> Grid:
    return Grid("tiny", "configs/seed.yaml", runs, reference={"a": {"psnr_rgb_pooled64": 25.23}})


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_smoke_grid_runs_end_to_end_skips_finished_runs_and_survives_a_failing_one(tmp_path):
    runs = {"a": {"loss.pixel": "l1", "loss.beta": 0.0}, "b": {"loss.pixel": "l2", "loss.beta": 0.0}}
    lines = []
    status = run_grid(_grid(runs), "smoke", results=tmp_path, runner="train", extra=["dataset=toy"],
                      log=lines.append)
    assert status["done"] == ["a", "b"] and not status["failed"], status
    folder = tmp_path / "tiny-smoke"
    for name in runs:
        for f in ("config.yaml", "train.log", "run/best.pt", "run/history.json", "metrics.json"):
            assert (folder / name / f).is_file(), f"{name}/{f} missing"
        m = json.loads((folder / name / "metrics.json").read_text())
        n = m["summary"]["n_images"]
        assert n == 16 and len(m["per_image"]["psnr_rgb"]) == n and m["image_size"] == 32
        assert m["config"]["loss"]["pixel"] == runs[name]["loss.pixel"] and m["config"]["epochs"] == 1
        assert np.isclose(np.mean(m["per_image"]["psnr_rgb"]), m["summary"]["psnr_rgb"])
    assert len(lines) == 3 and all(f"{i}/2" in lines[i - 1] for i in (1, 2)) and "table ->" in lines[2]
    table = (tmp_path / "tiny-smoke.md").read_text()
    assert table == results_table(_grid(runs), "smoke", tmp_path)
    assert "*grey* (baseline)" in table and "*mean face* (baseline)" in table and "(best)" in table
    assert "¹" in table and "²" in table and "25.23" in table

    # a re-run skips the finished runs; a third run that cannot be configured fails alone
    broken = {**runs, "c": {"model.depth": 7}}  # 32 px is not divisible by 2**7
    lines.clear()
    status = run_grid(_grid(broken), "smoke", results=tmp_path, runner="train", extra=["dataset=toy"],
                      log=lines.append)
    assert status["skipped"] == ["a", "b"] and not status["done"] and list(status["failed"]) == ["c"]
    assert "image_size" in status["failed"]["c"] and (folder / "c" / "error.txt").is_file()
    assert "skipped" in lines[0] and "FAILED" in lines[2] and not (folder / "c" / "metrics.json").exists()


def test_run_config_puts_the_profile_budget_over_the_run(tmp_path):
    grid = load_grid("losses")
    assert list(grid.runs) == ["l2_p", "l2_p_g", "l1_p", "l1_p_g"] and grid.reference["l1_p"]["ssim_rgb"] == 0.964
    cfg = run_config(grid, "l2_p_g", "cpu", tmp_path / "run")
    assert cfg.loss.pixel == "l2" and cfg.loss.theta == 0.08 and cfg.loss.alpha == 100 and cfg.loss.beta == 1
    assert cfg.image_size == PROFILES["cpu"]["overrides"]["image_size"] and cfg.epochs == PROFILES["cpu"]["overrides"]["epochs"]
    assert cfg.out_dir == str(tmp_path / "run") and cfg.resume == "auto" and not cfg.progress
    full = run_config(grid, "l1_p", "full", tmp_path / "run")
    assert (full.image_size, full.batch_size, full.epochs) == (128, 64, 120), "full is the seed budget"
    with pytest.raises(ConfigError, match="profile"):
        run_config(grid, "l1_p", "laptop", tmp_path)
    with pytest.raises(ConfigError, match="losses"):
        load_grid("nonsense")


def _fake_run(folder, name, psnr, dcf):
    (folder / name).mkdir(parents=True)
    m = {"summary": {"psnr_rgb": float(np.mean(psnr)), "delta_cf": dcf, "n_images": len(psnr)},
         "per_image": {"psnr_rgb": list(psnr)}, "data": "ToyFaces", "image_size": 32}
    (folder / name / "metrics.json").write_text(json.dumps(m))


def test_table_ranks_each_column_in_its_direction_and_gives_paired_intervals(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.normal(25, 2, 200)  # per-face difficulty shared by every run: pairing cancels it
    folder = tmp_path / "g-smoke"
    _fake_run(folder, "good", base + 0.5, dcf=20.0)
    _fake_run(folder, "bad", base + rng.normal(0, 0.1, 200), dcf=10.0)
    grid = Grid("g", "configs/seed.yaml", {"bad": {}, "good": {}, "missing": {}})
    rows = {line.split(" | ")[0].strip("| "): line for line in results_table(grid, "smoke", tmp_path).splitlines()
            if line.startswith("| ") and "---" not in line}
    assert set(rows) == {"run", "bad", "good"}, "only finished runs, in grid order"
    assert f"{np.mean(base + 0.5):.2f}¹" in rows["good"] and "20.00²" in rows["good"], "PSNR: higher ranks first; dCF: lower ranks first"
    assert "(best)" in rows["good"]
    d, lo, hi = (float(x) for x in rows["bad"].split(" | ")[-1].strip(" |").replace("[", "").replace("]", "").replace(",", "").split())
    assert lo < d < hi < 0 and hi - lo < 0.1, "paired: the shared difficulty cancels, the interval is narrow"


def test_table_names_the_rows_whose_kid_predates_the_disjoint_estimate(tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "g-smoke"
    for name, estimator in (("old", None), ("new", KID_ESTIMATOR)):
        _fake_run(folder, name, rng.normal(25, 2, 50), dcf=10.0)
        m = json.loads((folder / name / "metrics.json").read_text())
        m["summary"]["kid"] = 0.01
        m.update({"kid_estimator": estimator} if estimator else {})
        (folder / name / "metrics.json").write_text(json.dumps(m))
    table = results_table(Grid("g", "configs/seed.yaml", {"old": {}, "new": {}}), "smoke", tmp_path, n_resamples=100)
    note = next(line for line in table.splitlines() if line.startswith("KID of "))
    assert note.startswith("KID of old: measured before") and "new" not in note.split(":")[0]


def test_notebook_overrides_rebuild_the_run_config_exactly(tmp_path):
    """The training notebooks load configs/seed.yaml and apply ``train_overrides``: that must give the run's config
    back, including options the run leaves at the dataclass default while seed.yaml sets them (workers, dataset)."""
    from lib.ablation import NOTEBOOK_BASE, _flat_overrides, _value
    from lib.config import TrainConfig

    grid = load_grid("losses")
    for run in ("l2_p", "l1_p_g"):
        cfg = run_config(grid, run, "smoke", tmp_path / "run")
        items = [f"{k}={_value(v)}" for k, v in _flat_overrides(cfg).items()]
        assert not TrainConfig.load(NOTEBOOK_BASE).with_overrides(items).diff(cfg), run
        assert all(";" not in item for item in items), "train_overrides is joined with ';'"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_smoke_run_trains_through_the_training_notebook(tmp_path):
    """runner="notebook": papermill runs 05_training_unet with train_overrides and out_dir; the notebook trains
    that run, skips its lesson, and the grid measures the checkpoint it wrote."""
    import nbformat

    status = run_grid(_grid({"a": {"loss.pixel": "l1", "loss.theta": 0.0}}), "smoke", results=tmp_path,
                      runner="notebook", extra=["dataset=toy"], log=lambda line: None)
    assert status["done"] == ["a"] and not status["failed"], status
    folder = tmp_path / "tiny-smoke" / "a"
    m = json.loads((folder / "metrics.json").read_text())
    assert m["runner"] == "05_training_unet.ipynb" and m["config"]["loss"]["pixel"] == "l1"
    executed = nbformat.read(folder / "05_training_unet.ipynb", as_version=4)
    code = [c for c in executed.cells if c.cell_type == "code"]
    said = ["".join(o.get("text", "") for o in c.outputs) for c in code]
    branch = next(i for i, c in enumerate(code) if "train_run_of_grid(" in c.source)
    assert "finished after 1 epochs" in said[branch] and "skipped" in said[branch]
    assert not any(c.outputs for c in code[branch + 1:]), "the lesson's cells after the ablation branch are no-ops"
    assert not any(o.get("name") == "stderr" or o.output_type == "error" for c in code for o in c.outputs)
    assert (folder / "run" / "best.pt").is_file() and (folder / "run" / "config.yaml").is_file()
