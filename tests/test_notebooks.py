"""The notebooks: stored stripped, parameters cell as agreed, each one executed in the ``smoke``
profile through papermill (one case per ``notebooks/NN_*.ipynb``), with no error, warning,
stderr, progress bar or broken widget in its output, and the outputs that nbval's
``# NBVAL_CHECK_OUTPUT`` marker pins equal to the pinned ones.

Each notebook runs once, in one test: the executed copy (``executed/smoke/``, ignored by git,
figures in ``executed/smoke/figures/``) serves every check. Pinned outputs live in the cell's
metadata (``expected_outputs``), since the stored notebook has no outputs; ``python -m lib.demo
--profile smoke --pin`` records them (see notebooks/README.md). Also: the headless callbacks of
the widgets the notebooks use, and ``lib.notebook``.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch

from lib.demo import EXECUTED, EXPECTED_KEY, checked_outputs, execute, is_checked, notebook_paths
from lib.gamut import ab_plane, gamut_widget
from lib.notebook import per_profile, start

NOTEBOOKS = notebook_paths()
IDS = [p.stem for p in NOTEBOOKS]
REQUIRED_PARAMETERS = ("profile", "data_root", "device", "seed", "figures_dir")
DEFAULTS = {"profile": "demo", "data_root": None, "device": "auto", "figures_dir": None}  # "Run all" = the demo
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def test_there_are_notebooks():
    assert [p.stem[:3] for p in NOTEBOOKS[:2]] == ["01_", "02_"], NOTEBOOKS


# --- stored form ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_is_stored_stripped(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count is not None)]
    assert not dirty, f"{path.name}: cells {dirty} have outputs or execution counts: run `make strip` before committing"
    assert "widgets" not in nb.metadata, f"{path.name}: saved widget state in the metadata: run `make strip`"
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", "papermill and nbval run the python3 kernel"


def test_nbstripout_finds_nothing_to_strip():
    proc = subprocess.run([sys.executable, "-m", "nbstripout", "--verify", *map(str, NOTEBOOKS)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, f"nbstripout would change: {proc.stdout}{proc.stderr} (run `make strip`)"


def _parameters(nb) -> dict:
    code = [c for c in nb.cells if c.cell_type == "code"]
    first = code[0]
    assert "parameters" in first.metadata.get("tags", []), "the first code cell is tagged `parameters` (papermill)"
    values = {}
    for stmt in ast.parse(first.source).body:
        assert isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name), \
            f"the parameters cell holds flat assignments only, got: {ast.unparse(stmt)}"
        assert isinstance(stmt.value, ast.Constant), f"parameters are scalars (derived values go in the next cell): {ast.unparse(stmt)}"
        values[stmt.targets[0].id] = stmt.value.value
    return values


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_follows_the_conventions(path):
    nb = nbformat.read(path, as_version=4)
    params = _parameters(nb)
    missing = [name for name in REQUIRED_PARAMETERS if name not in params]
    assert not missing, f"{path.name}: the parameters cell lacks {missing}"
    for name, default in DEFAULTS.items():
        assert params[name] == default, f"{path.name}: {name} defaults to {params[name]!r}, expected {default!r}"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith(f"# {path.stem[:2]} ·"), \
        "the first cell is the title '# NN · ...' with the learning goals"
    titles = [c.id for c in nb.cells[1:] if c.cell_type == "markdown" and re.match(r"# ", c.source)]
    assert not titles, (f"{path.name}: markdown cells {titles} start with '# ' (a title-sized heading, or text "
                        "commented as in a script): only the first cell is the title; sections are '## N · ...'")
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    for needed in ("Learning goals", "## Summary", "## Exercises", "<details>"):
        assert needed in text, f"{path.name}: no {needed!r} (see notebooks/README.md)"
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    for banned in ("!pip", "%pip", "!python", "sys.path", ".cuda()"):
        assert banned not in code, f"{path.name}: {banned!r} in a code cell (install with make; devices via lib)"
    assert not re.search(r"^class ", code, re.M), f"{path.name}: a class defined in a notebook: models, losses, metrics come from lib"
    checked = [c for c in nb.cells if is_checked(c)]
    assert checked, f"{path.name}: no cell marked # NBVAL_CHECK_OUTPUT"
    unpinned = [c.id for c in checked if EXPECTED_KEY not in c.metadata]
    assert not unpinned, f"{path.name}: marked cells {unpinned} have no pinned outputs: run `make pin`"


# --- executed in the smoke profile -----------------------------------------------------------------------
def _execute(path: Path) -> tuple[Path, BaseException | None]:
    """Execute ``path`` in the smoke profile into ``executed/smoke/``; (executed copy, error or None)."""
    out = EXECUTED / "smoke"
    try:
        copy, _, _ = execute(path, "smoke", out, timeout=300, figures_dir=str(out / "figures"))
        return copy, None
    except Exception as e:  # papermill raises after writing the copy with the traceback in it
        return out / path.name, e


def _problems(nb) -> list[str]:
    """Everything in an executed notebook's outputs a reader should not see."""
    found = []
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        where = f"cell {i} ({cell.source.splitlines()[0][:50]!r})"
        for o in cell.outputs:
            if o.output_type == "error":
                found.append(f"{where} raised {o.ename}: {o.evalue}")
            elif o.output_type == "stream" and o.name == "stderr":
                found.append(f"{where} wrote to stderr (a warning or a progress bar?): {o.text[:300]!r}")
            elif o.output_type == "stream" and ("Warning" in o.text or "\r" in o.text):
                found.append(f"{where} printed a warning or a progress bar: {o.text[:300]!r}")
            data = o.get("data", {})
            plain = data.get("text/plain", "")
            plain = "".join(plain) if isinstance(plain, list) else plain
            if any(w in plain for w in ("FloatProgress", "IntProgress", "tqdm")):
                found.append(f"{where} shows a progress bar: {plain[:200]!r}")
            if WIDGET_VIEW in data:
                model = data[WIDGET_VIEW]["model_id"]
                if model not in state:
                    found.append(f"{where} shows widget {model} whose state was not saved: it would not render")
    for model_id, model in state.items():  # an Output widget keeps what its callbacks printed
        for o in model.get("state", {}).get("outputs", []):
            if o.get("output_type") == "error" or o.get("name") == "stderr":
                found.append(f"widget {model_id} ({model.get('model_name')}) shows an error: {json.dumps(o)[:300]}")
    return found


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_runs_clean_and_prints_what_is_pinned(path):
    """One smoke run per notebook serves both checks: no error, warning, stderr, progress bar or
    unsaved widget in its outputs; then nbval's lax mode on the executed copy: every cell marked
    ``# NBVAL_CHECK_OUTPUT`` prints what is pinned in its metadata."""
    copy, error = _execute(path)
    assert error is None, f"{path.name} raised in the smoke profile (executed copy: {copy}):\n{error}"
    nb = nbformat.read(copy, as_version=4)
    problems = _problems(nb)
    assert not problems, f"{path.name} (executed copy {copy}):\n" + "\n".join(problems)
    assert "smoke" in "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs), \
        "the notebook says which profile it ran (lib.notebook.start)"
    stored = {c.id: c for c in nbformat.read(path, as_version=4).cells if is_checked(c)}
    ran = {c.id: c for c in nb.cells}
    assert stored, f"{path.name} has no cell marked # NBVAL_CHECK_OUTPUT"
    for cell_id, cell in stored.items():
        got, want = checked_outputs(ran[cell_id]), cell.metadata.get(EXPECTED_KEY)
        assert want is not None, f"{path.name} cell {cell_id}: nothing pinned (run `make pin`)"
        assert got == want, (f"{path.name} cell {cell_id} ({cell.source.splitlines()[1][:60]!r}) printed\n"
                             f"{json.dumps(got, indent=1)}\nbut the pinned output is\n{json.dumps(want, indent=1)}")


# --- the pieces the notebooks call ------------------------------------------------------------------------
def test_pinned_outputs_keep_text_and_leave_images_out():
    cell = nbformat.v4.new_code_cell("# NBVAL_CHECK_OUTPUT\nprint(1)")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="a\n"),
                    nbformat.v4.new_output("stream", name="stdout", text="b\n"),
                    nbformat.v4.new_output("display_data", data={"image/png": "xx", "text/plain": "<Figure>"}),
                    nbformat.v4.new_output("execute_result", data={"text/plain": "42"}, execution_count=3)]
    assert is_checked(cell) and not is_checked(nbformat.v4.new_code_cell("print(1)  # NBVAL_CHECK_OUTPUT later"))
    assert checked_outputs(cell) == [{"output_type": "stream", "name": "stdout", "text": "a\nb\n"},
                                     {"output_type": "execute_result", "text/plain": "42"}]


def test_problems_finds_stderr_progress_bars_and_unsaved_widgets():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x")])
    nb.cells[0].outputs = [
        nbformat.v4.new_output("stream", name="stderr", text="UserWarning: careful\n"),
        nbformat.v4.new_output("display_data", data={"text/plain": "HBox(children=(FloatProgress(value=0.0)))"}),
        nbformat.v4.new_output("display_data", data={WIDGET_VIEW: {"model_id": "abc", "version_major": 2}, "text/plain": "VBox()"}),
    ]
    found = _problems(nb)
    assert len(found) == 3 and "stderr" in found[0] and "progress" in found[1] and "not saved" in found[2], found
    nb.metadata["widgets"] = {WIDGET_STATE: {"state": {"abc": {"model_name": "VBoxModel", "state": {}}}}}
    nb.cells[0].outputs = nb.cells[0].outputs[2:]
    assert _problems(nb) == []


def test_gamut_widget_redraws_when_the_slider_moves():
    w = gamut_widget(L=50, n=61)
    slider, image, line = w.children
    first = image.value
    assert slider.value == 50 and first[:8] == b"\x89PNG\r\n\x1a\n" and line.value.startswith("L = 50:")
    slider.value = 20  # what a reader's drag does, headless
    _, inside = ab_plane(20, n=61)
    assert image.value != first and line.value.startswith("L = 20:")
    assert f"{100 * float(inside.double().mean()):.1f}%" in line.value


def test_ab_plane_marks_exactly_the_colours_that_need_no_clamping():
    rgb, inside = ab_plane(50, n=45)  # (45, 45, 3), (45, 45)
    assert rgb.shape == (45, 45, 3) and inside.shape == (45, 45)
    assert inside[22, 22], "grey (a = b = 0) exists at every L"
    assert not inside[0, 0] and not inside[-1, -1], "corners of the square (|a| = |b| = 110) are outside sRGB"
    edge = (rgb <= 1e-9) | (rgb >= 1 - 1e-9)  # a channel at 0 or 1: where lab_to_rgb clamps
    assert not edge[inside].all(-1).any()
    assert edge[~inside].any(-1).all(), "every point outside the gamut was clamped in some channel"
    assert 0.2 < inside.double().mean() < 0.4
    assert ab_plane(0, n=45)[1].double().mean() < 0.01 and ab_plane(100, n=45)[1].double().mean() < 0.01


def test_start_checks_the_profile_and_says_what_it_uses(tmp_path, capsys):
    nb = start("smoke", "cpu", 3, str(tmp_path / "figs"))
    assert nb.device == torch.device("cpu") and nb.figures == tmp_path / "figs" and nb.figures.is_dir()
    a = torch.rand(3)
    start("smoke", "cpu", 3, str(tmp_path / "figs"))
    assert torch.equal(a, torch.rand(3)), "start seeds torch"
    assert "profile 'smoke' · device cpu · seed 3" in capsys.readouterr().out
    assert per_profile("demo", smoke=1, demo=2, full=3) == 2
    with pytest.raises(ValueError, match="profile must be one of"):
        start("quick")


def test_notebook_figure_carries_its_caption(tmp_path):
    from matplotlib.figure import Figure

    nb = start("smoke", "cpu", 0, str(tmp_path))
    fig = Figure()
    fig.add_subplot().plot([0, 1])
    path = nb.save(fig, "x.png", "A caption sentence.")
    assert path == tmp_path / "x.png" and path.stat().st_size > 1000
    assert [t.get_text() for t in fig.texts] == ["A caption sentence."]
