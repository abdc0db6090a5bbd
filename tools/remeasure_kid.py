"""Re-measure KID (and FID) of a grid's finished runs and baselines with the disjoint-faces estimate.

The runs of ``results/<grid>-<profile>/`` measured before ``lib.metrics.kid(paired=True)`` carry a
KID pulled down by subsets that held a face and its own colorization. This loads each run's
``run/best.pt``, measures the test split again exactly as ``lib.ablation`` does, and replaces the
``fid``, ``kid`` and ``kid_std`` of its ``metrics.json`` (and of ``baselines.json``), marking them
with ``kid_estimator``. The other metrics do not depend on the estimate and are left as they are.

    python tools/remeasure_kid.py losses cpu
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from lib.ablation import KID_ESTIMATOR, RESULTS, _Measure, load_grid, write_table
from lib.checkpoint import load_generator
from lib.config import TrainConfig
from lib.evaluate import predictor
from lib.metrics import grey_predictor, mean_face_ab, mean_face_predictor
from lib.run_dir import write_json


def _replace(report: dict, fresh: dict) -> None:
    for k in ("fid", "kid", "kid_std"):
        report["summary"][k] = fresh["summary"][k]
    report["kid_estimator"] = KID_ESTIMATOR


def main(grid_name: str, profile: str) -> None:
    grid = load_grid(grid_name)
    folder = Path(RESULTS) / f"{grid.name}-{profile}"
    measure = _Measure(fid=True)
    loader = train = None
    for name in grid.names:
        path = folder / name / "metrics.json"
        report = json.loads(path.read_text()) if path.is_file() else None
        if report is None or report.get("kid_estimator") == KID_ESTIMATOR:
            continue
        model, ckpt = load_generator(folder / name / "run" / "best.pt")
        loader, train, _ = measure.data(ckpt["data_source"], TrainConfig.from_dict(report["config"]))
        old = report["summary"]["kid"]
        _replace(report, measure(predictor(model, "cpu"), loader))
        write_json(path, report)
        print(f"{name}: KID {old:.4f} -> {report['summary']['kid']:.4f}", flush=True)
    base_path = folder / "baselines.json"
    base = json.loads(base_path.read_text())
    if loader is not None and any(v.get("kid_estimator") != KID_ESTIMATOR for v in base.values() if isinstance(v, dict)):
        for name, predict in (("grey", grey_predictor()),
                              ("mean face", mean_face_predictor(mean_face_ab(train, progress=False)))):
            old = base[name]["summary"]["kid"]
            _replace(base[name], measure(predict, loader))
            print(f"{name}: KID {old:.4f} -> {base[name]['summary']['kid']:.4f}", flush=True)
        write_json(base_path, base)
    print("table ->", write_table(grid, profile))


if __name__ == "__main__":
    main(*sys.argv[1:3])
