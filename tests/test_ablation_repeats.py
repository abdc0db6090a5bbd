"""lib.ablation repeats: a run trained again with another seed is configured like its run, shown in
the table without a rank, never chosen as the best, and gives the seed-to-seed spread."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lib.ablation import Grid, load_grid, results_table, run_config, seed_spread
from lib.errors import ConfigError
from lib.metrics import paired_bootstrap


def _fake(folder, name, psnr, seed):
    (folder / name).mkdir(parents=True)
    m = {"summary": {"psnr_rgb": float(np.mean(psnr)), "n_images": len(psnr)}, "per_image": {"psnr_rgb": list(psnr)},
         "data": "ToyFaces", "image_size": 32, "config": {"seed": seed}}
    (folder / name / "metrics.json").write_text(json.dumps(m))


def test_a_repeat_is_its_run_with_another_seed(tmp_path):
    grid = Grid("g", "configs/seed.yaml", {"l2": {"loss.pixel": "l2"}}, repeats={"l2_s1": {"run": "l2", "seed": 1}})
    assert grid.names == ["l2", "l2_s1"]
    run, again = (run_config(grid, n, "smoke", tmp_path / "run") for n in grid.names)
    assert run.loss.pixel == "l2" and run.diff(again) == {"seed": (0, 1)}


def test_a_repeat_is_not_ranked_nor_the_best_and_gives_the_seed_spread(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.normal(25, 2, 100)
    folder = tmp_path / "g-smoke"
    _fake(folder, "a", base + 0.3, seed=0)
    _fake(folder, "b", base, seed=0)
    _fake(folder, "a_s1", base + 0.6 + rng.normal(0, 0.05, 100), seed=1)  # the highest PSNR of all, yet a repeat
    grid = Grid("g", "configs/seed.yaml", {"a": {}, "b": {}}, repeats={"a_s1": {"run": "a", "seed": 1}})
    table = results_table(grid, "smoke", tmp_path, n_resamples=500)
    rows = {line.split(" | ")[0].strip("| "): line for line in table.splitlines() if line.startswith("| ")}
    assert "(best)" in rows["a"], "the best is chosen among the runs, not the repeats"
    assert "a_s1 (a, seed 1)" in rows and "¹" not in rows["a_s1 (a, seed 1)"], "a repeat carries no rank"
    finished = {n: json.loads((folder / n / "metrics.json").read_text()) for n in ("a", "b", "a_s1")}
    (run, seed, seed0, d, lo, hi), = seed_spread(grid, finished, 500)
    assert (run, seed, seed0) == ("a", 1, 0) and lo < d < hi and abs(d - 0.3) < 0.05
    assert (d, lo, hi) == paired_bootstrap(finished["a_s1"]["per_image"]["psnr_rgb"],
                                           finished["a"]["per_image"]["psnr_rgb"], 500)
    assert "Seed-to-seed spread" in table and f"a seed 1 - seed 0: {d:+.2f} dB" in table


def test_the_losses_grid_repeats_name_runs_of_the_grid_and_bad_ones_are_refused(tmp_path):
    grid = load_grid("losses")
    assert all(r["run"] in grid.runs for r in grid.repeats.values())
    (tmp_path / "bad.yaml").write_text("runs: {a: {}}\nrepeats: {a_s1: {run: nope, seed: 1}}\n")
    with pytest.raises(ConfigError, match="repeats a_s1"):
        load_grid(tmp_path / "bad.yaml")
