"""``make demo``: run every notebook with papermill in the ``demo`` profile, then write the README figures.

``python -m lib.demo [--profile demo] [--data DIR] [NAME ...]`` executes ``notebooks/NN_*.ipynb``
(or the named ones) into ``executed/<profile>/`` (ignored by git) and prints one line per
notebook: its time and where the executed copy went. The notebooks save their figures into
``figures/`` (in the smoke profile into ``executed/smoke/figures/``). ``--pin`` (smoke profile) copies the outputs of the cells marked
``# NBVAL_CHECK_OUTPUT`` into those cells' metadata, where ``tests/test_notebooks.py`` compares
them (see ``notebooks/README.md``). ``python -m lib demo`` (the CLI) writes only the README
figures (:func:`main`). The last step of ``make demo`` (:func:`colorize_photos`; alone:
``python -m lib.demo --only-photos``) colorizes the two bundled public-domain colour portraits
with the shipped model into ``figures/demo_<name>.color.png`` and draws
``figures/demo_bundled_photos.png`` (grey input | colorized | original, scored).
"""

from __future__ import annotations

import argparse
import copy
import resource
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
EXECUTED = REPO / "executed"
PHOTOS = ("astronaut", "grace_hopper")  # the bundled public-domain colour portraits (they have a ground truth)
MARKER = "NBVAL_CHECK_OUTPUT"  # nbval's comment marker: this cell's text output is pinned
EXPECTED_KEY = "expected_outputs"  # cell metadata key holding the pinned outputs


def notebook_paths(names: list[str] | None = None) -> list[Path]:
    """The course notebooks in order (``notebooks/NN_*.ipynb``), or those whose name starts with one of ``names``."""
    paths = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if names:
        paths = [p for p in paths if any(p.stem.startswith(n.removesuffix(".ipynb")) for n in names)]
    return paths


def execute(path: str | Path, profile: str = "demo", out_dir: str | Path | None = None, timeout: int = 900,
            **parameters) -> tuple[Path, float, float]:
    """Run one notebook with papermill (``profile`` and ``parameters`` injected after its
    ``parameters`` cell), in ``notebooks/`` as JupyterLab would; write the executed copy to
    ``out_dir`` (default ``executed/<profile>/``) and return ``(path of the copy, wall seconds, CPU
    seconds of the kernel)``: on a shared machine the CPU time is the fair measure of the cost.
    Raises papermill's ``PapermillExecutionError`` when a cell raises; the copy is written anyway."""
    import papermill

    path = Path(path)
    out = Path(out_dir) if out_dir is not None else EXECUTED / profile
    out.mkdir(parents=True, exist_ok=True)
    t0, cpu0 = time.perf_counter(), _children_cpu()
    papermill.execute_notebook(
        str(path), str(out / path.name), parameters={"profile": profile, **parameters}, kernel_name="python3",
        cwd=str(path.parent), progress_bar=False, log_output=False, request_save_on_cell_execute=False,
        execution_timeout=timeout,
        extra_arguments=["--IPKernelApp.log_level=CRITICAL"],  # kernel log lines (start-up warnings, the interrupt jupyter_client sends at shutdown) stay off the console; cell errors are in the notebook
    )
    return out / path.name, time.perf_counter() - t0, _children_cpu() - cpu0


def _children_cpu() -> float:
    """User + system CPU seconds of finished child processes (the kernels papermill started and reaped)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def checked_outputs(cell) -> list[dict]:
    """The text outputs of a code cell as nbval compares them: streams of the same name merged
    (``nbval.plugin.coalesce_streams``), then stdout/stderr text and the ``text/plain`` of results;
    images and widget views are left out (they are checked by eye, not pinned)."""
    from nbval.plugin import coalesce_streams

    out = []
    for o in coalesce_streams(copy.deepcopy(cell.get("outputs", []))):
        if o.output_type == "stream":
            out.append({"output_type": "stream", "name": o.name, "text": o.text})
        elif o.output_type in ("execute_result", "display_data") and "text/plain" in o.get("data", {}) and \
                not any(k.startswith(("image/", "application/vnd.jupyter.widget")) for k in o.data):
            out.append({"output_type": "execute_result", "text/plain": o.data["text/plain"]})
        elif o.output_type == "error":
            out.append({"output_type": "error", "ename": o.ename, "evalue": o.evalue})
    return out


def is_checked(cell) -> bool:
    """True for a code cell that nbval's ``# NBVAL_CHECK_OUTPUT`` marker pins."""
    from nbval.plugin import find_comment_markers

    return cell.cell_type == "code" and any(m[0] == "check" and m[1] for m in find_comment_markers(cell.source))


def pin(executed: str | Path, notebook: str | Path) -> int:
    """Copy the checked outputs of ``executed``'s marked cells into ``notebook``'s cell metadata
    (cells matched by id); return how many cells were pinned. Review the diff before committing."""
    import nbformat  # here, not at the top: its import costs ~4 s (jsonschema), paid only by the notebook paths

    run = nbformat.read(executed, as_version=4)
    by_id = {c.get("id"): c for c in run.cells}
    nb = nbformat.read(notebook, as_version=4)
    n = 0
    for cell in nb.cells:
        if is_checked(cell):
            cell.metadata[EXPECTED_KEY] = checked_outputs(by_id[cell.id])
            n += 1
    nbformat.write(nb, notebook)
    return n


def run_notebooks(profile: str = "demo", names: list[str] | None = None, data: str | None = None,
                  pin_outputs: bool = False) -> int:
    """Execute the notebooks one by one in ``profile``, printing a line each; 1 if any failed."""
    failed = 0
    paths = notebook_paths(names)
    if not paths:
        print(f"[demo] no notebook matches {names}")
        return 1
    total = time.perf_counter()
    for path in paths:
        params = {} if data is None else {"data_root": data}
        if profile == "smoke":  # smoke figures are not the README's: keep them beside the executed copies
            params["figures_dir"] = str(EXECUTED / profile / "figures")
        try:
            out, seconds, cpu = execute(path, profile, **params)
        except Exception as e:  # papermill's error names the cell; the executed copy holds the traceback
            failed += 1
            print(f"[demo] {path.name:<34} FAILED ({type(e).__name__}): see {EXECUTED / profile / path.name}")
            continue
        print(f"[demo] {path.name:<34} {seconds:6.1f} s (kernel CPU {cpu:5.1f} s) -> {out.relative_to(REPO)}", flush=True)
        if pin_outputs:
            print(f"[demo]   pinned {pin(out, path)} checked cells into {path.relative_to(REPO)}")
    figures = "executed/smoke/figures/" if profile == "smoke" else "figures/"
    print(f"[demo] {len(paths) - failed}/{len(paths)} notebooks in {time.perf_counter() - total:.0f} s "
          f"(profile {profile}); figures in {figures}")
    return 1 if failed else 0


def main(data: str | None = None, out: str = "figures") -> int:
    """The README's figures without the notebooks (``python -m lib demo``): the data tour
    (``figures/data_samples.png``) and the U-Net drawn from its config (``figures/unet_architecture.png``)."""
    from lib.data import resolve_data_root
    from lib.models import UNet, UNetConfig, model_summary, save_architecture_figure
    from lib.viz import save_data_samples

    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    path = save_data_samples(out_dir / "data_samples.png", root=resolve_data_root(data))
    print(f"[demo] data tour       -> {path}")
    config = UNetConfig()
    path = save_architecture_figure(config, out_dir / "unet_architecture.png")
    print(f"[demo] architecture    -> {path}")
    print(model_summary(UNet(config), image_size=128))
    print(f"[demo] done in {time.perf_counter() - t0:.1f} s")
    return 0


def bundled_photos(max_side: int | None = None) -> dict[str, np.ndarray]:
    """The public-domain colour portraits that come with the dependencies, uint8 ``(H, W, 3)``:
    ``skimage.data.astronaut()`` (512x512) and matplotlib's ``grace_hopper.jpg`` (512x600). With
    ``max_side`` the long side is area-reduced to at most that (aspect kept; tests use small ones)."""
    import skimage.data
    from matplotlib import cbook

    from lib.images import load_rgb

    photos = {"astronaut": skimage.data.astronaut(),
              "grace_hopper": load_rgb(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))}
    return photos if max_side is None else {k: _thumbnail(v, max_side) for k, v in photos.items()}


def _grey(rgb: np.ndarray) -> np.ndarray:
    """What the model is given: the Lab L of ``rgb (H, W, 3)`` with a = b = 0, as uint8 RGB ``(H, W, 3)``."""
    import torch

    from lib.color import lab_to_rgb, rgb_to_lab

    L = rgb_to_lab(torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float() / 255.0)[:1]  # (1, H, W)
    grey = lab_to_rgb(torch.cat([L, torch.zeros_like(L), torch.zeros_like(L)]))  # (3, H, W)
    return (grey * 255.0 + 0.5).to(torch.uint8).permute(1, 2, 0).numpy()  # (H, W, 3)


def _scores(out: np.ndarray, original: np.ndarray) -> dict[str, float]:
    """PSNR_rgb, SSIM_rgb and |CF(out) - CF(original)| (lib.metrics) of two uint8 ``(H, W, 3)`` at full resolution."""
    import torch

    from lib.metrics import delta_cf, psnr_rgb, ssim_rgb

    a, b = (torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)[None].float() / 255.0
            for x in (out, original))  # (1, 3, H, W) each
    return {"psnr_rgb": float(psnr_rgb(a, b)[0]), "ssim_rgb": float(ssim_rgb(a, b)[0]),
            "delta_cf": float(delta_cf(a, b)[0])}


def colorize_photos(out: str | Path = "figures", checkpoint=None, *, max_side: int | None = None,
                    device: str = "auto") -> list[Path]:
    """Colorize the bundled photos (:func:`bundled_photos`) with ``checkpoint`` (``None``: the
    shipped model, ``lib.checkpoint.SHIPPED``) through :func:`lib.colorize.colorize`: write
    ``out/demo_<name>.color.png`` (full resolution) and ``out/demo_bundled_photos.png`` (one row a
    photo: grey input | colorized | original, the first two with PSNR_rgb / SSIM_rgb / dCF against
    the original at full resolution: the grey input is the baseline a model must beat), print one line per image (its time and path) and return the paths
    written, the figure last. ``make demo`` ends with this. Taught in ``09_interactive_demo``.
    """
    from PIL import Image
    from matplotlib.figure import Figure

    import lib.checkpoint
    from lib.colorize import colorize
    from lib.viz import save_figure

    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    model_name = _shown(checkpoint if checkpoint is not None else lib.checkpoint.SHIPPED)
    photos = bundled_photos(max_side)
    t0 = time.perf_counter()
    colorize(np.zeros((8, 8, 3), np.uint8), checkpoint, device=device)  # loads (and caches) the model
    print(f"[demo] model {model_name} loaded in {time.perf_counter() - t0:.1f} s", flush=True)
    paths, rows = [], []
    for name, rgb in photos.items():
        t0 = time.perf_counter()
        colour = colorize(rgb, checkpoint, device=device)  # (H, W, 3) uint8
        seconds = time.perf_counter() - t0
        path = out_dir / f"demo_{name}.color.png"
        Image.fromarray(colour).save(path)
        paths.append(path)
        rows.append((name, rgb, colour))
        print(f"[demo] colorized {name:<13} {rgb.shape[1]}x{rgb.shape[0]:<4} {seconds:5.2f} s -> {_shown(path)}",
              flush=True)

    fig = Figure(figsize=(10.5, 3.9 * len(rows)))
    axes = fig.subplots(len(rows), 3, squeeze=False)
    for ax_row, (name, rgb, colour) in zip(axes, rows):
        h, w = rgb.shape[:2]
        grey = _grey(rgb)  # (H, W, 3)
        titles = (f"{name} ({w}x{h}): grey input (its L)\nas a guess: {_score_line(grey, rgb)}",
                  f"colorized\n{_score_line(colour, rgb)}", "original colours")
        for ax, title, img in zip(ax_row, titles, (grey, colour, rgb)):
            ax.imshow(_thumbnail(img, 420))
            ax.set_title(title, fontsize=10)
            ax.set_axis_off()
    fig.suptitle(f"Model {model_name} on two public-domain photos (scores: RGB at full resolution vs the original)", fontsize=11)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.9 if len(rows) > 1 else 0.82, wspace=0.04,
                        hspace=0.18)
    t0 = time.perf_counter()
    path = save_figure(fig, out_dir / "demo_bundled_photos.png", dpi=100)
    paths.append(path)
    print(f"[demo] figure grey | colorized | original {time.perf_counter() - t0:5.2f} s -> {_shown(path)}")
    return paths


def _score_line(out: np.ndarray, original: np.ndarray) -> str:
    s = _scores(out, original)
    return f"PSNR {s['psnr_rgb']:.2f} dB · SSIM {s['ssim_rgb']:.3f} · ΔCF {s['delta_cf']:.1f}"


def _thumbnail(rgb: np.ndarray, side: int) -> np.ndarray:
    """``rgb (H, W, 3)`` with its long side at most ``side`` (area-averaged): figures stay small."""
    from PIL import Image

    im = Image.fromarray(rgb)
    im.thumbnail((side, side), Image.Resampling.BOX)
    return np.asarray(im)  # (h, w, 3)


def _shown(path) -> str:
    """``path`` relative to the repository when inside it (what a reader types), else as given."""
    if not isinstance(path, (str, Path)):
        return type(path).__name__  # a loaded model
    p = Path(path).resolve()
    return str(p.relative_to(REPO)) if p.is_relative_to(REPO) else str(path)


def cli(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lib.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="*", help="notebooks to run (name prefixes, e.g. 01 02_unet); default: all")
    p.add_argument("--profile", default="demo", choices=("smoke", "demo", "full"))
    p.add_argument("--data", default=None, help="CelebA-HQ folder (default: $CELEBAHQ_DIR, data/celeba_hq/, else ToyFaces)")
    p.add_argument("--pin", action="store_true", help="store the outputs of '# NBVAL_CHECK_OUTPUT' cells in the notebooks")
    p.add_argument("--no-figures", action="store_true", help="skip the README figures (and the bundled photos) after the notebooks")
    p.add_argument("--only-photos", action="store_true",
                   help="only the last step: colorize the bundled photos with the shipped model into figures/")
    args = p.parse_args(argv)
    if args.only_photos:
        colorize_photos()
        return 0
    if args.pin and args.profile != "smoke":
        p.error("--pin records what the tests compare: use it with --profile smoke")
    code = run_notebooks(args.profile, args.names, args.data, args.pin)
    if not args.no_figures and not args.names and args.profile != "smoke":  # the README's figures: demo and full
        code |= main(args.data)
        colorize_photos()  # the last step: the shipped model on the bundled photos
    return code


if __name__ == "__main__":
    raise SystemExit(cli())
