"""The ablation driver: a grid of named training runs, each trained, measured on the test split
beside the grey and mean-face baselines, and gathered into one results table.

Taught in ``08_ablation_study``; the command is ``python -m lib ablate --grid losses --profile cpu``
(``make ablation GRID=losses PROFILE=cpu``). A grid is ``configs/grids/<grid>.yaml``::

    description: one line
    base: configs/seed.yaml            # the config every run starts from
    runs:                              # name -> TrainConfig overrides (dotted keys)
      l1_p: {loss.pixel: l1}
      l1_p_g: {loss.pixel: l1, loss.theta: 0.08}
    reference: {l1_p: {psnr_rgb_pooled64: 25.23, ssim_rgb: 0.964}}   # optional: published values
    repeats: {l1_p_seed1: {run: l1_p, seed: 1}}   # optional: a run again with another seed

A profile scales the budget of every run alike (size, epochs, images, batch; ``PROFILES``).
Each run is a papermill execution of the training notebook (``05_training_unet``, or
``06_gan_training`` when ``loss.theta > 0``) when that notebook takes the parameters
``train_overrides`` (``"key=value;key=value"``: every option in which the run differs from
``configs/seed.yaml``, the config the notebook loads) and ``out_dir``; otherwise (or with
``runner="train"``) it runs ``lib.train.Trainer`` directly. Per run, under
``results/<grid>-<profile>/<run>/``: ``config.yaml``, the training folder ``run/`` (checkpoints,
history), the executed notebook or ``train.log``, and ``metrics.json`` (the test split's summary
and per-image values, written last: a run with it is finished and skipped on a re-run). A
failing run leaves ``error.txt`` and the others go on. ``results_table`` writes
``results/<grid>-<profile>.md``: rows = runs + baselines, rank superscripts per column, and a
paired-bootstrap 95 % interval of each row's PSNR difference from the best run. A repeat (the
same run with another seed) is trained like a run but neither ranked nor chosen as the best: it is
the seed-to-seed spread that the differences between runs are read against.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import shutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml

from lib.checkpoint import load_generator
from lib.config import REPO_ROOT, TrainConfig
from lib.data import reopen_splits
from lib.errors import ConfigError
from lib.evaluate import predictor
from lib.metrics import MetricSuite, grey_predictor, mean_face_ab, mean_face_predictor, paired_bootstrap
from lib.run_dir import write_json
from lib.train import Trainer
from lib.utils import write_text_atomic

__all__ = ["GRIDS", "RESULTS", "PROFILES", "COLUMNS", "Grid", "load_grid", "run_config", "run_grid", "finished_twin",
           "train_run_of_grid", "results_table", "differences", "seed_spread", "write_table", "load_results", "sample_faces",
           "add_arguments", "run"]

GRIDS = REPO_ROOT / "configs" / "grids"
RESULTS = REPO_ROOT / "results"
NOTEBOOKS = REPO_ROOT / "notebooks"
NOTEBOOK_BASE = REPO_ROOT / "configs" / "seed.yaml"  # the config the training notebooks load before train_overrides
# The budget of each profile (TrainConfig overrides applied after the run's own) and whether FID/KID are measured.
PROFILES: dict[str, dict] = {
    "smoke": {"overrides": {"image_size": 32, "epochs": 1, "max_images": 32, "toy_images": 32, "batch_size": 8,
                            "eval_batch_size": 32, "dataset": "auto", "workers": 0, "num_samples": 0},
              "fid": False, "note": "CI smoke test: one epoch on 32 images at 32x32, numbers mean nothing"},
    "cpu": {"overrides": {"image_size": 64, "epochs": 3, "batch_size": 16, "lr_schedule": "cosine", "ema": 0.999,
                          "workers": 0, "threads": 1, "num_samples": 4},
            "fid": True, "note": "scaled reproduction: 64x64, batch 16, 3 epochs (840 steps) with a cosine lr decay "
                                 "and an EMA of G (0.999, warmed up), one thread per run (2 runs share 2 cores)"},
    "cpu_short": {"overrides": {"image_size": 64, "epochs": 1, "max_images": 3200, "batch_size": 16,
                                "lr_schedule": "cosine", "ema": 0.999, "workers": 0, "threads": 1, "num_samples": 4},
                  "fid": True, "note": "reduced cpu budget: 64x64, batch 16, 1 epoch on 3,200 training faces (200 "
                                       "steps) with a cosine lr decay and an EMA of G (0.999, warmed up), one thread "
                                       "per run; val and test splits whole"},
    "full": {"overrides": {}, "fid": True, "note": "the seed budget: 128x128, batch 64, 120 epochs (a GPU)"},
}
# (key, header, higher is better)
COLUMNS = (("psnr_rgb", "PSNR rgb", True), ("ssim_rgb", "SSIM rgb", True), ("psnr_lab", "PSNR lab", True),
           ("ssim_lab", "SSIM lab", True), ("psnr_rgb_pooled64", "PSNR rgb pooled64", True),
           ("delta_cf", "dCF", False), ("fid", "FID", False), ("kid", "KID", False), ("lpips", "LPIPS", False))
PER_IMAGE_KEPT = ("psnr_rgb", "ssim_rgb", "psnr_lab", "ssim_lab", "lpips")  # per-image values stored for the bootstrap
KID_ESTIMATOR = "disjoint faces"  # lib.metrics.kid(paired=True); metrics.json files without it predate it
SUPERSCRIPT = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


@dataclass
class Grid:
    """A named list of runs: ``runs`` maps a run name to its TrainConfig overrides."""

    name: str
    base: str  # config file every run starts from (relative to the repository)
    runs: dict[str, dict]
    description: str = ""
    reference: dict[str, dict] = field(default_factory=dict)  # published values per run, shown beside ours
    repeats: dict[str, dict] = field(default_factory=dict)  # name -> {"run": a run's name, "seed": another seed}

    def overrides(self, name: str) -> dict:
        """The TrainConfig overrides of a run or of a repeat (its run's, with the repeat's seed)."""
        if name in self.repeats:
            return {**self.runs[self.repeats[name]["run"]], "seed": self.repeats[name]["seed"]}
        return self.runs[name]

    @property
    def names(self) -> list[str]:
        """Every run, then every repeat, in the grid file's order."""
        return list(self.runs) + list(self.repeats)


def load_grid(name_or_path: str | Path) -> Grid:
    """``configs/grids/<name>.yaml`` (or a path to such a file) as a :class:`Grid`."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = GRIDS / f"{name_or_path}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in GRIDS.glob("*.yaml"))) or "none"
        raise ConfigError(f"no grid {str(name_or_path)!r} ({path} does not exist); grids: {known}")
    data = yaml.safe_load(path.read_text()) or {}
    runs = data.get("runs")
    if not isinstance(runs, dict) or not runs or not all(isinstance(v, dict) for v in runs.values()):
        raise ConfigError(f"{path}: 'runs' must map each run name to a mapping of overrides")
    repeats = data.get("repeats") or {}
    bad = [n for n, r in repeats.items() if not (isinstance(r, dict) and r.get("run") in runs
                                                 and isinstance(r.get("seed"), int))]
    if bad:
        raise ConfigError(f"{path}: repeats {', '.join(bad)} must each be {{run: <one of {', '.join(runs)}>, seed: <int>}}")
    return Grid(path.stem, data.get("base", "configs/seed.yaml"), runs, data.get("description", ""),
                data.get("reference") or {}, repeats)


def _value(v) -> str:
    """A YAML value as the text of ``--set key=value``."""
    return json.dumps(v) if isinstance(v, (bool, list, dict)) or v is None else str(v)


def run_config(grid: Grid, run: str, profile: str, out_dir: Path, extra: list[str] | None = None) -> TrainConfig:
    """The resolved config of one run: ``grid.base``, the run's overrides, the profile's budget,
    ``extra`` (``["key=value"]``), then the run folder and quiet logging."""
    if profile not in PROFILES:
        raise ConfigError(f"option '--profile' must be one of {', '.join(PROFILES)}; got {profile!r}")
    items = {**grid.overrides(run), **PROFILES[profile]["overrides"]}
    sets = [f"{k}={_value(v)}" for k, v in items.items()] + list(extra or [])
    sets += [f"out_dir={out_dir}", "progress=false", "test_at_end=false", "resume=auto"]
    return TrainConfig.load(REPO_ROOT / grid.base).with_overrides(sets)


def _notebook_for(cfg: TrainConfig) -> Path | None:
    """The training notebook of this run if it takes ``train_overrides`` and ``out_dir``, else None."""
    path = NOTEBOOKS / ("06_gan_training.ipynb" if cfg.loss.theta > 0 else "05_training_unet.ipynb")
    if not path.is_file():
        return None
    import nbformat  # here, not at the top: its import costs ~4 s (jsonschema), paid only by the notebook paths

    cells = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    params = cells[0].source if cells and "parameters" in cells[0].metadata.get("tags", []) else ""
    return path if all(f"{p} =" in params for p in ("train_overrides", "out_dir")) else None


def _train(cfg: TrainConfig, run_dir: Path, runner: str) -> str:
    """Train one run into ``run_dir / "run"``; returns how (the notebook's name or "lib.train")."""
    notebook = _notebook_for(cfg) if runner in ("auto", "notebook") else None
    if runner == "notebook" and notebook is None:
        raise ConfigError("runner 'notebook': the training notebook does not take train_overrides and out_dir yet")
    if notebook is not None:
        import papermill  # only for this runner: a kernel per run

        overrides = ";".join(f"{k}={_value(v)}" for k, v in _flat_overrides(cfg).items())
        papermill.execute_notebook(str(notebook), str(run_dir / notebook.name), kernel_name="python3",
                                   parameters={"profile": "full", "train_overrides": overrides,
                                               "out_dir": cfg.out_dir, "data_root": cfg.data_root},
                                   cwd=str(notebook.parent), progress_bar=False, log_output=False,
                                   extra_arguments=["--IPKernelApp.log_level=CRITICAL"])  # no kernel start-up warnings
        trained = TrainConfig.load(Path(cfg.out_dir) / "config.yaml")  # what the notebook's Trainer saved
        if trained.diff(cfg):
            raise ConfigError(f"{notebook.name} trained another config than the run's: {trained.diff(cfg)}")
        return notebook.name
    with open(run_dir / "train.log", "a") as log, contextlib.redirect_stdout(log):
        result = Trainer(cfg).fit()
    if result["status"] != "finished":
        raise KeyboardInterrupt(f"training stopped by {result['signal']}")
    return "lib.train"


def train_run_of_grid(train_overrides: str, out_dir: str | None, data_root: str | None = None) -> dict:
    """The notebook's side of ``runner="notebook"`` (:func:`_train`): train ``configs/seed.yaml``
    with the run's options (``"a=1;b=2"``) into ``out_dir`` through ``lib.train.Trainer``, say
    what was trained, then make every later cell of the kernel run ``pass`` (papermill cannot stop
    a notebook half-way; the executed copy then holds that run's training log only). Returns
    ``Trainer.fit``'s result. Called by ``05_training_unet`` and ``06_gan_training``."""
    overrides = [f"data_root={data_root}"] if data_root is not None else []
    if out_dir is not None:
        overrides.append(f"out_dir={out_dir}")
    overrides += [item for item in train_overrides.split(";") if item.strip()]  # "a=1;b=2" -> ["a=1", "b=2"]
    cfg = TrainConfig.load(NOTEBOOK_BASE).with_overrides(overrides)
    print(f"driven by the ablation: {NOTEBOOK_BASE.relative_to(REPO_ROOT)} with {len(overrides)} options set, "
          f"into {cfg.out_dir}")
    result = Trainer(cfg).fit()
    if result["status"] != "finished":
        raise KeyboardInterrupt(f"training stopped by {result['signal']}: run the grid again to resume it")
    best = result["best"]  # chosen on val by TrainConfig.select_metric
    score = "not evaluated" if best["value"] is None else f"{best['value']:.2f} at epoch {best['epoch']}"
    print(f"{result['status']} after {result['epoch']} epochs ({result['step']} steps); best val {best['metric']}: "
          f"{score}; checkpoints in {result['out_dir']}")
    from IPython import get_ipython  # only inside a kernel

    get_ipython().input_transformers_cleanup.append(lambda lines: ["pass\n"])  # every later cell runs `pass`
    print("the rest of this notebook is skipped (restart the kernel to read it as a lesson)")
    return result


def _flat_overrides(cfg: TrainConfig, base: Path = NOTEBOOK_BASE) -> dict:
    """Every option of ``cfg`` that differs from the config file ``base``, as dotted keys: applied
    to ``base`` they give ``cfg`` back exactly (a diff from the dataclass defaults would not: an
    option the run leaves at its default but ``base`` sets, e.g. ``workers``, would be lost)."""
    return {k: b for k, (b, _) in cfg.diff(TrainConfig.load(base)).items()}


class _Measure:
    """The test split of the runs' data, opened once, and the metrics of a predictor on it."""

    def __init__(self, fid: bool):
        self.suite = MetricSuite(fid=fid, lpips=True, progress=False)
        self._data: dict[str, tuple] = {}

    def data(self, source: dict, cfg: TrainConfig):
        """(test loader, train set without flips, DataSource) of the data a run was trained on."""
        kw = dict(max_images=cfg.max_images, toy_images=cfg.toy_images, seed=cfg.seed, cache=cfg.cache)
        key = json.dumps([source, cfg.image_size, kw], sort_keys=True)
        if key not in self._data:
            sets, src = reopen_splits(source, cfg.image_size, ("train", "test"), progress=False, **kw)
            test = copy.copy(sets["test"])
            test.flip = False
            train = copy.copy(sets["train"])
            train.flip = False
            self._data[key] = (torch.utils.data.DataLoader(test, batch_size=64, shuffle=False), train, src)
        return self._data[key]

    def __call__(self, predict, loader) -> dict:
        summary = self.suite.evaluate(predict, loader)
        per = {k: v.tolist() for k, v in self.suite.last_per_image.items() if k in PER_IMAGE_KEPT}
        return {"summary": summary, "per_image": per, **({"kid_estimator": KID_ESTIMATOR} if "kid" in summary else {})}


def run_grid(grid: str | Grid, profile: str = "smoke", *, results: str | Path = RESULTS, runner: str = "auto",
             extra: list[str] | None = None, only: list[str] | None = None, log=print) -> dict:
    """Run every run of ``grid`` in ``profile`` not finished yet, then write the results table.

    ``runner``: "auto" (the training notebook when it takes the parameters, else lib.train),
    "notebook" or "train"; ``extra``: overrides for every run (e.g. ``["data_root=/faces"]``);
    ``only``: run names to run. One progress line per run. Returns ``{"done", "skipped",
    "failed": {run: error}, "table": path}``. Taught in ``08_ablation_study``.
    """
    grid = grid if isinstance(grid, Grid) else load_grid(grid)
    names = [n for n in grid.names if not only or n in only]
    unknown = sorted(set(only or ()) - set(grid.names))
    if unknown:
        raise ConfigError(f"grid {grid.name!r} has no run {', '.join(unknown)}; its runs: {', '.join(grid.names)}")
    folder = Path(results) / f"{grid.name}-{profile}"
    measure = _Measure(PROFILES[profile]["fid"] if profile in PROFILES else False)
    status = {"done": [], "skipped": [], "failed": {}}
    for i, name in enumerate(names, 1):
        run_dir = folder / name
        head = f"[ablate] {grid.name}-{profile} {i}/{len(names)} {name}:"
        if (run_dir / "metrics.json").is_file():
            status["skipped"].append(name)
            log(f"{head} finished earlier, skipped ({run_dir / 'metrics.json'})")
            continue
        t0 = time.perf_counter()
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "error.txt").unlink(missing_ok=True)
            cfg = run_config(grid, name, profile, run_dir / "run", extra)
            cfg.save(run_dir / "config.yaml")
            twin = finished_twin(cfg, Path(results), profile, exclude=run_dir)
            if twin is not None:
                _reuse(twin, run_dir, grid, name, cfg)
                status["done"].append(name)
                log(f"{head} the same training as {twin.parent.name}/{twin.name} (finished): reused, not retrained")
                continue
            how = _train(cfg, run_dir, runner)
            model, ckpt = load_generator(run_dir / "run" / "best.pt")
            loader, train, source = measure.data(ckpt["data_source"], cfg)
            report = measure(predictor(model, "cpu"), loader)
            report.update(run=name, grid=grid.name, profile=profile, runner=how, seconds=time.perf_counter() - t0,
                          data=source.describe(), data_source=source.to_dict(), image_size=cfg.image_size,
                          best_epoch=ckpt["best"]["epoch"], overrides=grid.overrides(name), config=cfg.to_dict())
            _baselines(folder, measure, loader, train, source, cfg.image_size)
            write_json(run_dir / "metrics.json", report)  # last: its presence marks the run finished
            status["done"].append(name)
            s = report["summary"]
            log(f"{head} done in {report['seconds']:.0f} s via {how}: psnr_rgb {s['psnr_rgb']:.2f} dB, "
                f"ssim_rgb {s['ssim_rgb']:.3f} on {s['n_images']} test images")
        except (Exception, KeyboardInterrupt) as e:  # one failing run must not stop the grid
            if isinstance(e, KeyboardInterrupt) and "training stopped" not in str(e):
                raise
            status["failed"][name] = f"{type(e).__name__}: {e}"
            write_text_atomic(run_dir / "error.txt", traceback.format_exc())
            log(f"{head} FAILED after {time.perf_counter() - t0:.0f} s: {type(e).__name__}: {str(e)[:300]} "
                f"(traceback in {run_dir / 'error.txt'})")
    status["table"] = str(write_table(grid, profile, results)) if status["done"] or status["skipped"] else None
    if status["table"]:
        log(f"[ablate] table -> {status['table']}")
    return status


def _comparable(cfg: TrainConfig) -> dict:
    d = cfg.to_dict()
    d.pop("out_dir")
    return d


def finished_twin(cfg: TrainConfig, results: Path, profile: str, exclude: Path | None = None) -> Path | None:
    """A finished run, of any grid in ``profile``, whose resolved config equals ``cfg`` but for
    ``out_dir``: the same training (bitwise on CPU with fixed threads), so it is reused rather
    than trained again. The seed architecture is a row of several grids."""
    mine = _comparable(cfg)
    for done in sorted(results.glob(f"*-{profile}/*/metrics.json")):
        run_dir = done.parent
        if run_dir == exclude or not (run_dir / "config.yaml").is_file():
            continue
        with contextlib.suppress(ConfigError):
            if _comparable(TrainConfig.load(run_dir / "config.yaml")) == mine:
                return run_dir
    return None


def _reuse(twin: Path, run_dir: Path, grid: Grid, name: str, cfg: TrainConfig) -> None:
    """Make ``run_dir`` the finished run ``twin``: its training folder hard-linked (no copy of the
    checkpoints), its baselines when this grid has none, its metrics with this run's names."""
    shutil.copytree(twin / "run", run_dir / "run", copy_function=os.link, dirs_exist_ok=True)
    if not (run_dir.parent / "baselines.json").is_file() and (twin.parent / "baselines.json").is_file():
        shutil.copyfile(twin.parent / "baselines.json", run_dir.parent / "baselines.json")
    report = json.loads((twin / "metrics.json").read_text())
    report.update(run=name, grid=grid.name, overrides=grid.overrides(name), config=cfg.to_dict(),
                  reused_from=report.get("reused_from") or f"{twin.parent.name}/{twin.name}")  # the run that trained
    write_json(run_dir / "metrics.json", report)


def _baselines(folder: Path, measure: _Measure, loader, train, source, size: int) -> None:
    """Grey and mean face on the grid's test split, once per grid folder (``baselines.json``)."""
    path = folder / "baselines.json"
    if path.is_file():
        return
    out = {"grey": measure(grey_predictor(), loader),
           "mean face": measure(mean_face_predictor(mean_face_ab(train, progress=False)), loader),
           "data": source.describe(), "image_size": size}
    write_json(path, out)


def load_results(grid: str | Grid, profile: str, results: str | Path = RESULTS) -> tuple[dict, dict]:
    """``({run: metrics.json}, {baseline: metrics})`` of the finished runs of ``grid`` in ``profile``
    (grid order); each has ``summary`` and ``per_image``, a run also its ``config``."""
    grid = grid if isinstance(grid, Grid) else load_grid(grid)
    folder = Path(results) / f"{grid.name}-{profile}"
    runs = {n: json.loads((folder / n / "metrics.json").read_text()) for n in grid.names
            if (folder / n / "metrics.json").is_file()}
    path = folder / "baselines.json"
    base = json.loads(path.read_text()) if path.is_file() else {}
    return runs, {k: v for k, v in base.items() if isinstance(v, dict)}


def sample_faces(metrics: dict, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` test faces ``(l_n (n, 1, S, S), ab (n, 2, S, S))`` of the data a run was
    measured on (its ``metrics.json``), for sample grids with one column per run."""
    cfg = TrainConfig.from_dict(metrics["config"])
    sets, _ = reopen_splits(metrics["data_source"], cfg.image_size, ("test",), max_images=cfg.max_images,
                            toy_images=cfg.toy_images, seed=cfg.seed, cache=cfg.cache, progress=False)
    items = [sets["test"][i] for i in range(min(n, len(sets["test"])))]
    l_n, ab = (torch.stack(t) for t in zip(*items))
    return l_n, ab  # (n, 1, S, S), (n, 2, S, S)


def results_table(grid: str | Grid, profile: str, results: str | Path = RESULTS, n_resamples: int = 2000) -> str:
    """The markdown table of the finished runs of ``grid`` in ``profile``, with the baselines.

    Columns: the metrics of ``COLUMNS`` that were measured, a rank superscript per column among
    the runs (1 = best), and each row's ``psnr_rgb`` difference from the best run with its 95 %
    paired-bootstrap interval over the test faces; the grid's published values beside ours.
    """
    grid = grid if isinstance(grid, Grid) else load_grid(grid)
    finished, baselines = load_results(grid, profile, results)
    runs = {n: r for n, r in finished.items() if n not in grid.repeats}  # ranked; repeats are shown, not ranked
    if not runs:
        return f"no finished runs of grid {grid.name!r} in profile {profile!r}"
    rows = {**finished, **baselines}
    cols = [(k, h, up) for k, h, up in COLUMNS if all(k in r["summary"] for r in finished.values())]
    ranks = {}
    for k, _, up in cols:
        order = sorted(runs, key=lambda n: runs[n]["summary"][k], reverse=up)
        ranks[k] = {n: i + 1 for i, n in enumerate(order)}
    best = max(runs, key=lambda n: runs[n]["summary"]["psnr_rgb"])
    ref_cols = sorted({k for v in grid.reference.values() for k in v})
    head = ["run"] + [h for _, h, _ in cols] + [f"Δ PSNR rgb vs {best} [95% CI]"] + [f"reference {k}" for k in ref_cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for n, r in rows.items():
        rep = grid.repeats.get(n)
        cells = [n if n in runs else f"{n} ({rep['run']}, seed {rep['seed']})" if rep else f"*{n}* (baseline)"]
        for k, _, _ in cols:
            v = r["summary"].get(k)
            text = "" if v is None else f"{v:.2f}" if abs(v) >= 10 else f"{v:.3f}" if k != "kid" else f"{v:.4f}"
            cells.append(text + (str(ranks[k][n]).translate(SUPERSCRIPT) if n in runs and text else ""))
        if n == best:
            cells.append("(best)")
        else:
            d, lo, hi = paired_bootstrap(r["per_image"]["psnr_rgb"], runs[best]["per_image"]["psnr_rgb"], n_resamples)
            cells.append(f"{d:+.2f} [{lo:+.2f}, {hi:+.2f}]")
        ref = [grid.reference.get(n, {}).get(k) for k in ref_cols]
        cells += ["" if v is None else f"{v:.3f}" if abs(v) < 1 else f"{v:.2f}" for v in ref]
        lines.append("| " + " | ".join(cells) + " |")
    any_run = next(iter(runs.values()))
    note = [f"Grid `{grid.name}`, profile `{profile}` ({PROFILES.get(profile, {}).get('note', '')}); "
            f"{any_run['data']}; test split, {any_run['summary']['n_images']} images at {any_run['image_size']}px.",
            "Per-image means over the test faces except `PSNR rgb pooled64` (MSE pooled over groups of 64, as the "
            "reference table was measured); superscripts rank the runs per column (1 = best); the interval is a paired "
            f"bootstrap over the test faces ({n_resamples} resamples)."]
    stale = [n for n, r in rows.items() if "kid" in r["summary"] and r.get("kid_estimator") != KID_ESTIMATOR]
    if stale and any(k == "kid" for k, _, _ in cols):
        note.append(f"KID of {', '.join(stale)}: measured before KID drew each subset's true and colorized images from "
                    "different faces (a subset could hold a face and its own colorization, which pulls KID down): "
                    "compare their KIDs only with each other.")
    reused = {n: r["reused_from"] for n, r in finished.items() if r.get("reused_from")}
    if reused:
        note.append("Trained once for several grids (the same config): " + ", ".join(
            f"`{n}` is {src}" for n, src in reused.items()) + ".")
    spread = seed_spread(grid, finished, n_resamples)
    if spread:
        note.append("Seed-to-seed spread (the same run trained again with another seed, same test faces): " + "; ".join(
            f"{r} seed {s} - seed {s0}: {d:+.2f} dB [{lo:+.2f}, {hi:+.2f}]" for r, s, s0, d, lo, hi in spread)
            + ". A difference between runs smaller than this is not a finding.")
    else:
        note.append("One seed per run: the seed-to-seed spread is not measured here.")
    if grid.reference:
        note.append("Reference values: the reference study's table (128x128, FaceNet perceptual loss, its own test set); "
                    "compare them only with the pooled column.")
    return "\n".join(note) + "\n\n" + "\n".join(lines) + "\n"


def differences(grid: str | Grid, profile: str, against: str | None = None, results: str | Path = RESULTS,
                n_resamples: int = 2000, metric: str = "psnr_rgb") -> dict[str, tuple[float, float, float]]:
    """``{row: (mean difference, low, high)}``: each finished run's, repeat's and baseline's per-face
    ``metric`` minus that of run ``against`` (default: the grid's first run, its reference point),
    with the paired-bootstrap 95 % interval over the test faces. What 08's difference figures draw."""
    grid = grid if isinstance(grid, Grid) else load_grid(grid)
    finished, baselines = load_results(grid, profile, results)
    against = against or grid.names[0]
    if against not in finished:
        raise ConfigError(f"run {against!r} of grid {grid.name!r} has not finished in profile {profile!r}")
    ref = finished[against]["per_image"][metric]
    return {n: paired_bootstrap(r["per_image"][metric], ref, n_resamples)
            for n, r in {**finished, **baselines}.items() if n != against}


def seed_spread(grid: Grid, finished: dict, n_resamples: int = 2000) -> list[tuple]:
    """``(run, seed, run's seed, mean PSNR_rgb difference, low, high)`` for each finished repeat
    whose run is finished too: the repeat minus the run, paired-bootstrap 95 % interval."""
    out = []
    for name, rep in grid.repeats.items():
        if name in finished and rep["run"] in finished:
            a, b = finished[name], finished[rep["run"]]
            d, lo, hi = paired_bootstrap(a["per_image"]["psnr_rgb"], b["per_image"]["psnr_rgb"], n_resamples)
            out.append((rep["run"], rep["seed"], b["config"]["seed"], d, lo, hi))
    return out


def write_table(grid: str | Grid, profile: str, results: str | Path = RESULTS) -> Path:
    """``results_table`` written to ``results/<grid>-<profile>.md``; returns the path."""
    grid = grid if isinstance(grid, Grid) else load_grid(grid)
    return write_text_atomic(Path(results) / f"{grid.name}-{profile}.md", results_table(grid, profile, results))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m lib ablate`` (``lib/__main__.py`` dispatches to :func:`run`)."""
    grids = ", ".join(sorted(p.stem for p in GRIDS.glob("*.yaml")))
    parser.description = (
        "Train every run of a grid (configs/grids/GRID.yaml) in a profile's budget, measure each on the test "
        "split beside the grey and mean-face baselines, and write results/GRID-PROFILE.md. Finished runs "
        "(results/GRID-PROFILE/RUN/metrics.json) are skipped, so a stopped grid continues; a failing run is "
        "reported and the others go on.")
    parser.add_argument("--grid", required=True, help=f"grid name or YAML file ({grids})")
    parser.add_argument("--profile", default="smoke", choices=tuple(PROFILES),
                        help="budget: " + "; ".join(f"{k}: {v['note']}" for k, v in PROFILES.items()))
    parser.add_argument("--results", default=str(RESULTS), metavar="DIR", help="results folder (default: results/)")
    parser.add_argument("--runner", default="auto", choices=("auto", "notebook", "train"),
                        help="auto: the training notebook (05/06) when it takes train_overrides and out_dir, else "
                             "lib.train; notebook or train to force one")
    parser.add_argument("--only", action="append", default=None, metavar="RUN", help="run only this run (repeatable)")
    parser.add_argument("--set", dest="extra", metavar="KEY=VALUE", action="append", default=[],
                        help="override an option of every run, e.g. --set data_root=/faces (repeatable)")
    parser.add_argument("--table-only", action="store_true", help="rewrite the table from the finished runs, train nothing")


def run(args: argparse.Namespace) -> int:
    """``python -m lib ablate --grid G --profile P``: 0 when every run finished, 1 when one failed."""
    if args.table_only:
        path = write_table(args.grid, args.profile, args.results)
        print(f"[ablate] table -> {path}")
        return 0
    status = run_grid(args.grid, args.profile, results=args.results, runner=args.runner, extra=args.extra,
                      only=args.only)
    if status["failed"]:
        print(f"[ablate] {len(status['failed'])} run(s) failed: {', '.join(status['failed'])} (see their error.txt)")
    return 1 if status["failed"] else 0
