"""Old main vs new ``lib``, side by side in one run: the 128x128 fast-path training step and
the batch inference rate (issue 9, "Nothing lost: speed").

Each measurement runs in a child process (``benchmarks/old_vs_new_child.py``) with
``PYTHONPATH`` at one tree, the same torch threads (``--threads``, default 1), batch, size and
number of steps; children alternate old, new, old, new, ... (``--repeats`` pairs), so a
shared, noisy core slows both alike. Each child reports its median training step (seed
config: U-Net ndims 16, depth 4, one ViT block; 100 L1 + 1 VGG16 perceptual; Adam; the
trainer's default fast path for the CPU), the median U-Net forward (eval, inference mode)
and the median ``colorize_batch`` call on the same batch, each as wall time and as the
child's CPU time (one thread: the CPU time is the work itself and moves much less than the
wall time when other processes share the core). The ratio new/old is taken per pair (the
two children next to each other in time); the table gives the median ratio and its spread
(min..max) over the pairs. The JSON is rewritten after every child, so a run cut short
keeps what it measured.

The old tree is a detached worktree of the last main before the redesign::

    git worktree add /work/oldmain aaff88c
    python -m benchmarks.bench_old_vs_new --old /work/oldmain      # --new defaults to this repository
    git worktree remove --force /work/oldmain

Prints a markdown table and writes ``results/bench-old-vs-new.json``. Taught alongside
``05_training_unet``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import machine_info, machine_line, markdown_table, write_result

REPO = Path(__file__).resolve().parents[1]
CHILD = Path(__file__).resolve().with_name("old_vs_new_child.py")
MEASURES = (("train_step_cpu_s", "training step (fast path), CPU time"), ("train_step_s", "training step (fast path), wall"),
            ("forward_cpu_s", "U-Net forward, eval, CPU time"), ("forward_s", "U-Net forward, eval, wall"),
            ("colorize_batch_cpu_s", "colorize_batch, CPU time"), ("colorize_batch_s", "colorize_batch, wall"))


def cpu_flags() -> dict[str, bool]:
    """The vector extensions that decide the CPU fast path (bf16 needs avx512_bf16 or AMX)."""
    try:
        flags = next((line.split(":", 1)[1].split() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("flags")), [])
    except OSError:
        flags = []
    return {f: f in flags for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile")}


def git_state(tree: Path) -> str:
    """``<commit> (+ uncommitted changes in lib/)`` of a tree, for the report."""
    def git(*a):
        return subprocess.run(["git", "-C", str(tree), *a], capture_output=True, text=True).stdout.strip()
    dirty = git("status", "--porcelain", "--", "lib")
    return git("rev-parse", "--short", "HEAD") + (" + uncommitted changes in lib/" if dirty else "")


def run_child(tree: Path, args) -> dict:
    """One child on ``tree``; its JSON line, plus its wall time."""
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": str(args.threads),
           "FACECOLOR_WEIGHTS": str(args.weights)}  # both trees read the VGG16 from the same file
    cmd = [sys.executable, str(CHILD), "--size", str(args.size), "--batch", str(args.batch), "--threads",
           str(args.threads), "--steps", str(args.steps), "--infer-iters", str(args.infer_iters)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=tree, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"child on {tree} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out.update(wall_s=time.perf_counter() - t0, load_avg_1min=os.getloadavg()[0])
    if not out["lib"].startswith(str(tree)):
        raise SystemExit(f"child meant for {tree} imported {out['lib']}")
    return out


def summarize(runs: dict[str, list[dict]]) -> list[dict]:
    rows = []
    for key, name in MEASURES:
        old = [r[key] for r in runs["old"]]
        new = [r[key] for r in runs["new"]]
        ratios = [n / o for o, n in zip(old, new)]
        if not ratios:
            continue
        rows.append({"measure": key, "name": name, "old_s": old, "new_s": new, "ratios": ratios,
                     "ratio_median": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios)})
    return rows


def format_table(result: dict) -> str:
    b, s = result["batch"], result["size"]
    body = []
    for r in result["rows"]:
        per = "s/step" if r["measure"].startswith("train_step") else "s/call"
        body.append([f"{r['name']}, batch {b} at {s}x{s}",
                     f"{statistics.median(r['old_s']):.3f} {per} ({b / statistics.median(r['old_s']):.2f} img/s)",
                     f"{statistics.median(r['new_s']):.3f} {per} ({b / statistics.median(r['new_s']):.2f} img/s)",
                     f"**{r['ratio_median']:.3f}**", f"{r['ratio_min']:.3f} .. {r['ratio_max']:.3f}"])
    fp = result["fast_path"]
    head = (f"Old main ({result['old_tree']}) vs new ({result['new_tree']}), {result['repeats']} interleaved "
            f"old/new pairs, {result['threads']} torch thread(s); fast path here: {fp['precision']}, "
            f"channels-last {'on' if fp['channels_last'] else 'off'}, compile {'on' if fp['compile'] else 'off'}; "
            f"{machine_line(result['machine'])}; 1-min load average {result['load_min']:.2f}..{result['load_max']:.2f} "
            f"during the run; ratio = new time / old time per pair (< 1: new is faster)\n")
    return head + markdown_table(["measure", "old main (median)", "new (median)", "new / old (median)",
                                  "spread over pairs"], body)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_old_vs_new", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--old", required=True, help="the old tree (a worktree of the old main, e.g. /work/oldmain)")
    p.add_argument("--new", default=str(REPO), help="the new tree (default: this repository)")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--threads", type=int, default=1, help="torch threads of every child (default 1)")
    p.add_argument("--steps", type=int, default=3, help="timed training steps per child, after one warm-up")
    p.add_argument("--infer-iters", type=int, default=5, help="timed inference calls per child, after one warm-up")
    p.add_argument("--repeats", type=int, default=3, help="old/new pairs, interleaved (default 3)")
    p.add_argument("--weights", default=str(REPO / "data" / "weights"), help="VGG16 weights folder both trees read")
    p.add_argument("--out", default=None, help="JSON path (default results/bench-old-vs-new.json)")
    args = p.parse_args(argv)
    trees = {"old": Path(args.old).resolve(), "new": Path(args.new).resolve()}
    for name, tree in trees.items():
        if not (tree / "lib" / "train.py").is_file():
            p.error(f"--{name} {tree}: no lib/train.py there")
    info = machine_info("cpu")
    print(f"[old-vs-new] {machine_line(info)}; CPU flags {cpu_flags()}", flush=True)
    runs: dict[str, list[dict]] = {"old": [], "new": []}
    t0 = time.perf_counter()
    for i in range(args.repeats):
        for name in ("old", "new"):
            r = run_child(trees[name], args)
            runs[name].append(r)
            print(f"[old-vs-new] pair {i + 1}/{args.repeats} {name}: step {r['train_step_s']:.3f} s "
                  f"(CPU {r['train_step_cpu_s']:.3f} s), forward {r['forward_s']:.3f} s (CPU {r['forward_cpu_s']:.3f} s), "
                  f"colorize_batch {r['colorize_batch_s']:.3f} s (CPU {r['colorize_batch_cpu_s']:.3f} s) "
                  f"(load {r['load_avg_1min']:.2f}, child {r['wall_s']:.0f} s)", flush=True)
            write_result("old-vs-new", report(info, trees, args, runs, t0), args.out)  # a cut-short run keeps this
    fast = runs["new"][0]["fast_path"]
    if any(r["fast_path"] != fast for rs in runs.values() for r in rs):  # then the ratio compares other work
        print(f"[old-vs-new] warning: the trees resolved different fast paths: old {runs['old'][0]['fast_path']}, "
              f"new {fast}")
    result = report(info, trees, args, runs, t0)
    print(format_table(result))
    print(f"[old-vs-new] {result['wall_s'] / 60:.1f} min; wrote {write_result('old-vs-new', result, args.out)}")
    return 0


def report(info: dict, trees: dict, args, runs: dict, t0: float) -> dict:
    """The result so far (written after every child)."""
    loads = [r["load_avg_1min"] for rs in runs.values() for r in rs]
    fast = next((r["fast_path"] for rs in runs.values() for r in rs), {})
    return {"benchmark": "old_vs_new", "machine": info, "cpu_flags": cpu_flags(),
          "old_tree": f"{trees['old']} at {git_state(trees['old'])}",
          "new_tree": f"{trees['new']} at {git_state(trees['new'])}", "size": args.size, "batch": args.batch,
          "threads": args.threads, "steps": args.steps, "infer_iters": args.infer_iters, "repeats": args.repeats,
          "fast_path": fast, "load_min": min(loads), "load_max": max(loads),
          "wall_s": time.perf_counter() - t0, "runs": runs, "rows": summarize(runs)}


if __name__ == "__main__":
    raise SystemExit(main())
