"""The colorize command on 2 cores vs 1 core, side by side in one run.

``python -m lib colorize INPUT... --out DIR`` (decode, colorize with the shipped model, encode
and write a PNG each; the process start, ``import torch`` and the model load included) is run
as a child process on

1. one 8x8 image: the fixed cost of a call (start, imports, model load, first call),
2. the two bundled public-domain photos (scikit-image's astronaut 512x512, matplotlib's
   Grace Hopper 512x600),
3. one 1024x1024 photo (the astronaut, upscaled bicubically),
4. a folder of faces: the first ``--faces`` files (sorted) of ``--data``, else ``$CELEBAHQ_DIR`` /
   ``data/celeba_hq/`` / ``../shared/data/celebahq-5k`` (skipped when none is found),

each with 2 cores (affinity on CPUs 0-1, 2 torch/OpenMP threads) and with 1 core (CPU 0,
1 thread), alternating the order from repeat to repeat. Inputs and outputs go to a temporary
folder under /tmp (removed afterwards unless ``--keep``); nothing is written into the repository.
It prints, for each, the wall seconds of the whole process and of the command after its imports,
the CPU seconds (user + system of the child, every thread), the 1-core / 2-core ratios, and the
per-image time of the command with the 8x8 call's subtracted.

**On a shared machine read the CPU time and the load line, not only the wall time.** When other
processes keep the cores busy (e.g. training runs at a higher priority), a second core buys
little, and the wall-time ratio measures the contention as much as the code; the script prints
the 1-minute load average before and after, and says so beside the table.

Run: ``nice -n 5 .venv/bin/python -m benchmarks.colorize_speed [--faces 100] [--repeats 1]``.
Taught alongside ``09_interactive_demo``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.common import cpu_model, find_faces, markdown_table
from lib.demo import bundled_photos
from lib.images import IMAGE_EXTENSIONS

REPO = Path(__file__).resolve().parents[1]
CORES = (2, 1)  # the two settings compared


def prepare_inputs(tmp: Path, faces: int, data: str | None) -> dict[str, list[Path]]:
    """The inputs of each case, as files under ``tmp`` (the faces are read where they are)."""
    cases: dict[str, list[Path]] = {}
    (tmp / "in").mkdir()
    tiny = tmp / "in" / "tiny_8x8.png"
    Image.fromarray(np.full((8, 8, 3), 128, np.uint8)).save(tiny)
    cases["fixed cost (one 8x8 image)"] = [tiny]
    photos = bundled_photos()
    paths = []
    for name, rgb in photos.items():
        paths.append(tmp / "in" / f"{name}.png")
        Image.fromarray(rgb).save(paths[-1])
    cases["2 bundled photos (512x512, 512x600)"] = paths
    big = tmp / "in" / "astronaut_1024.png"
    Image.fromarray(photos["astronaut"]).resize((1024, 1024), Image.Resampling.BICUBIC).save(big)
    cases["1 photo 1024x1024"] = [big]
    root = find_faces(data) if faces else None
    if root is not None:
        files = sorted(p for p in Path(root).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)[:faces]
        if files:
            w, h = Image.open(files[0]).size
            cases[f"{len(files)} faces ({w}x{h}, {root.name})"] = files
    return cases


# The child: exactly ``python -m lib colorize ...`` (lib/__main__.py's main), timing the imports apart
# from the command itself (model load + images); process_time counts every thread of the process.
CHILD = """
import json, sys, time
t0, c0 = time.perf_counter(), time.process_time()
from lib.__main__ import main
t1, c1 = time.perf_counter(), time.process_time()
code = main(["colorize", *sys.argv[1:]])
t2, c2 = time.perf_counter(), time.process_time()
print(json.dumps({"code": code, "import_s": t1 - t0, "import_cpu": c1 - c0, "run_s": t2 - t1, "run_cpu": c2 - c1}))
"""


def run_once(inputs: list[Path], cores: int, out: Path) -> dict[str, float]:
    """One ``python -m lib colorize INPUT... --out OUT --device cpu`` on ``cores`` CPUs (affinity,
    and as many OpenMP threads): wall and CPU seconds of the whole process (``wall``, ``cpu``),
    of its imports (``import_s``, ``import_cpu``) and of the command (``run_s``, ``run_cpu``)."""
    cpus = sorted(os.sched_getaffinity(0))[:cores]
    env = dict(os.environ, OMP_NUM_THREADS=str(cores), MKL_NUM_THREADS=str(cores))
    cmd = [sys.executable, "-c", CHILD, *map(str, inputs), "--out", str(out), "--device", "cpu"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                          preexec_fn=lambda: os.sched_setaffinity(0, cpus))
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0 or f"wrote {len(inputs)} " not in proc.stdout:
        raise RuntimeError(f"colorize failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr[-2000:]}")
    timing = json.loads(proc.stdout.strip().splitlines()[-1])
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall": wall, "cpu": cpu, **{k: v for k, v in timing.items() if k != "code"}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.colorize_speed", description=__doc__.split("\n\n")[0])
    p.add_argument("--faces", type=int, default=100, help="faces from the folder (0: none; default 100)")
    p.add_argument("--data", default=None, help="face folder (default: $CELEBAHQ_DIR, data/celeba_hq/, shared sample)")
    p.add_argument("--repeats", type=int, default=1, help="runs of each case and core count (default 1)")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder (inputs and outputs)")
    args = p.parse_args(argv)
    if not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2:
        print("needs Linux CPU affinity and at least 2 CPUs available to this process: nothing to compare")
        return 1

    tmp = Path(tempfile.mkdtemp(prefix="colorize_speed_"))
    load0 = os.getloadavg()[0]
    print(f"[colorize_speed] {cpu_model()}, {os.cpu_count()} CPUs; 1-min load average {load0:.2f} at the start; "
          f"this process's nice value {os.nice(0)}; files under {tmp}")
    if load0 > 0.5:
        print(f"[colorize_speed] NOTE: the machine is busy (load {load0:.2f} on {os.cpu_count()} CPUs): other "
              "processes share the cores, so wall times are longer and the 1-core / 2-core ratio measures "
              "the contention as much as the code; CPU seconds are the fairer measure of the work")
    try:
        cases = prepare_inputs(tmp, args.faces, args.data)
        results: dict[str, dict[int, list[dict]]] = {}
        for case, inputs in cases.items():
            results[case] = {c: [] for c in CORES}
            for rep in range(args.repeats):
                for cores in (CORES if rep % 2 == 0 else CORES[::-1]):  # alternate the order: 2,1 then 1,2
                    out = tmp / "out" / f"{len(results)}_{cores}cores_{rep}"
                    r = run_once(inputs, cores, out)
                    results[case][cores].append(r)
                    print(f"[colorize_speed] {case:<38} {cores} core(s): {r['wall']:7.2f} s wall, {r['cpu']:7.2f} s CPU"
                          f" (imports {r['import_s']:5.2f} s, command {r['run_s']:6.2f} s wall / {r['run_cpu']:6.2f} s "
                          f"CPU; load {os.getloadavg()[0]:.2f})", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    def med(case: str, cores: int, key: str) -> float:
        return float(np.median([r[key] for r in results[case][cores]]))

    fixed = next(iter(results))
    rows = []
    for case, inputs in cases.items():
        n = len(inputs)
        per = "" if case == fixed else " / ".join(
            f"{(med(case, c, 'run_s') - med(fixed, c, 'run_s')) / n:.3f}" for c in CORES)
        rows.append([case, n, *(f"{med(case, c, 'wall'):.2f}" for c in CORES),
                     f"{med(case, 1, 'wall') / med(case, 2, 'wall'):.2f}",
                     *(f"{med(case, c, 'run_s'):.2f}" for c in CORES),
                     f"{med(case, 1, 'run_s') / med(case, 2, 'run_s'):.2f}",
                     *(f"{med(case, c, 'cpu'):.2f}" for c in CORES), per])
    load1 = os.getloadavg()[0]
    print()
    print(f"colorize command (python -m lib colorize, shipped model, --device cpu), median of {args.repeats} run(s); "
          f"1-min load average {load0:.2f} -> {load1:.2f} on {os.cpu_count()} CPUs. 'whole': the process from start "
          "to exit; 'command': after the imports (model load, decode, colorize, write PNGs)")
    print(markdown_table(["case", "images", "whole, 2 cores s", "whole, 1 core s", "ratio 1/2",
                          "command, 2 cores s", "command, 1 core s", "ratio 1/2", "CPU s, 2 cores", "CPU s, 1 core",
                          "s/image beyond the 8x8 call (2 / 1 cores)"], rows))
    if max(load0, load1) > 0.5:
        print(f"busy machine (load up to {max(load0, load1):.2f} on {os.cpu_count()} CPUs): a ratio near or below 1 "
              "says the second core was mostly taken by other processes (and a second OpenMP thread waits for it), "
              "not what the code does on an idle machine; rerun there for the code's own ratio")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
