"""The interactive colorization demo of ``09_interactive_demo``: a thin ipywidgets UI over
:func:`lib.colorize.colorize`.

Pick a photo (two public-domain colour portraits, a genuine black-and-white photo, a random test
face of the data found, a ToyFace, or an upload), see the grey input the model gets, its colours
and, when the photo had colours, the original with PSNR / SSIM / dCF (``lib.metrics``); compare
two checkpoints side by side; scale the chroma; overlay each level's attention-gate map; save the
result. Every control is an attribute, so tests set ``.value`` headless and read ``outputs``,
``scores`` and ``message``. The picture is a PNG drawn on a ``matplotlib.figure.Figure`` (no pyplot
state) in an ``ipywidgets.Image``.
"""

from __future__ import annotations

import contextlib
import html
import io
import re
import warnings
from pathlib import Path

import ipywidgets as widgets
import numpy as np
import skimage.data
import torch
import torch.nn.functional as F
from matplotlib import cbook
from matplotlib.figure import Figure
from PIL import Image
from torch import nn

from lib.checkpoint import load_generator
from lib.color import lab_to_rgb, rgb_to_lab
from lib.colorize import DEFAULT_SIZE, colorize, model_input_size
from lib.data import DataWarning, ToyFaces, open_splits
from lib.errors import UserError
from lib.images import load_rgb
from lib.metrics import delta_cf, psnr_rgb, ssim_rgb
from lib.runtime import pick_device
from lib.utils import atomic_write

__all__ = ["SOURCES", "MAX_UPLOAD_BYTES", "MAX_UPLOAD_PIXELS", "SCORE_SIDE", "ColorizeDemo"]

SOURCES = {  # dropdown label -> key
    "astronaut (scikit-image, colour photo)": "astronaut",
    "Grace Hopper (matplotlib, colour photo)": "grace_hopper",
    "camera (scikit-image, a real black-and-white photo)": "camera",
    "random test face (the data found)": "test_face",
    "ToyFace (generated stand-in)": "toy_face",
    "your upload": "upload",
}
MAX_UPLOAD_BYTES = 20_000_000  # an upload above this is refused before decoding
MAX_UPLOAD_PIXELS = 25_000_000  # and one whose header claims more pixels than this
SCORE_SIDE = 256  # PSNR / SSIM / dCF are computed with the long side reduced to this
_VIEW_SIDE = 320  # panels are drawn from copies this small (the figure shows ~240 px per panel)
_TOY_SIZE = 128  # side of the ToyFaces drawn


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=72, facecolor="white")
    return buf.getvalue()


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.1f} kB"


def _grey(rgb: np.ndarray) -> np.ndarray:
    """What the model is given: the Lab L of ``rgb (H, W, 3)`` uint8 with a = b = 0, as uint8 RGB."""
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float() / 255.0  # (3, H, W)
    lab = rgb_to_lab(x)  # (3, H, W)
    grey = lab_to_rgb(torch.cat([lab[:1], torch.zeros_like(lab[1:])]))  # (3, H, W)
    return (grey * 255.0 + 0.5).to(torch.uint8).permute(1, 2, 0).numpy()  # (H, W, 3)


def _shrunk(rgb: np.ndarray, side: int) -> np.ndarray:
    """``rgb (H, W, 3)`` uint8 with its long side at most ``side`` (area-averaged, aspect kept)."""
    if max(rgb.shape[:2]) <= side:
        return rgb
    im = Image.fromarray(rgb)
    im.thumbnail((side, side), Image.Resampling.BOX)
    return np.array(im)  # (h, w, 3), writable


def _scores(out: np.ndarray, original: np.ndarray) -> dict[str, float]:
    """PSNR_rgb, SSIM_rgb and |CF(out) - CF(original)| of two uint8 ``(H, W, 3)`` images (lib.metrics),
    both area-reduced to a long side of at most ``SCORE_SIDE`` pixels (as the course's tables score
    at 128 px; and a slider stays responsive on a CPU)."""
    a, b = (torch.from_numpy(np.ascontiguousarray(_shrunk(x, SCORE_SIDE))).permute(2, 0, 1)[None].float() / 255.0
            for x in (out, original))  # (1, 3, h, w) each
    return {"psnr_rgb": float(psnr_rgb(a, b)[0]), "ssim_rgb": float(ssim_rgb(a, b)[0]),
            "delta_cf": float(delta_cf(a, b)[0])}  # each from a (1,) tensor


def _is_colour(rgb: np.ndarray) -> bool:
    return bool(np.ptp(rgb.astype(np.int16), axis=2).max() > 2)  # channels differ somewhere: a colour photo


class ColorizeDemo(widgets.VBox):
    """The demo of ``09_interactive_demo``: a box of controls over :func:`lib.colorize.colorize`.

    ``checkpoint`` (model A): ``None`` = the shipped model (``lib.checkpoint.SHIPPED``), a path, or a
    loaded UNet; ``compare_with`` (model B, optional) likewise. Both can be changed in the text
    boxes (an empty box A = the shipped model, an empty box B = no comparison). ``data_root``
    is where the random test face comes from (as ``lib.data.open_splits``: None = $CELEBAHQ_DIR,
    then data/celeba_hq/, else ToyFaces); ``save_dir`` is where "save" writes (never over a file).

    Controls: ``source`` (Dropdown of :data:`SOURCES`), ``upload`` (FileUpload), ``another``
    (Button: another random face), ``model_a`` / ``model_b`` (Text), ``chroma`` (FloatSlider),
    ``gates`` (ToggleButton: attention-gate maps), ``save`` (Button). Views: ``image`` (the
    figure), ``message`` (HTML: what happened, or what went wrong). State after each redraw:
    ``photo`` (uint8 (H, W, 3)), ``original`` (the photo when it had colours, else None),
    ``outputs`` ({"A": uint8 (H, W, 3), "B": ...}), ``scores`` ({"A": {"psnr_rgb", "ssim_rgb",
    "delta_cf"}, ...}), ``gate_maps`` (model A's maps cropped to the photo, outermost first).
    """

    def __init__(self, checkpoint=None, compare_with=None, *, data_root: str | None = None, device: str = "cpu",
                 seed: int = 0, save_dir: str | Path = "colorized", source: str = "astronaut",
                 chroma: float = 1.0, max_upload_bytes: int = MAX_UPLOAD_BYTES,
                 max_upload_pixels: int = MAX_UPLOAD_PIXELS):
        self.device, self.data_root, self.save_dir = pick_device(device), data_root, Path(save_dir)
        self.max_upload_bytes, self.max_upload_pixels = int(max_upload_bytes), int(max_upload_pixels)
        self.rng = np.random.default_rng(seed)
        self.seed = seed
        self.photo = self.original = None
        self.photo_name = "photo"
        self.outputs, self.scores, self.gate_maps = {}, {}, []
        self._models: dict[str, tuple[nn.Module, int, str] | None] = {}
        self._errors: dict[str, str] = {}
        self._faces = None  # the test split, opened on first use
        self._uploaded: tuple[np.ndarray, str] | None = None
        self._notes: list[str] = []  # what the last upload went like
        self._pick_notes: list[str] = []  # what the photo is

        keys = list(SOURCES.values())
        if source not in keys:
            raise ValueError(f"source must be one of {keys}, got {source!r}")
        self.source = widgets.Dropdown(options=list(SOURCES.items()), value=source, description="photo")
        self.upload = widgets.FileUpload(accept="image/*", multiple=False, description="upload")
        self.another = widgets.Button(description="another face", tooltip="draw another random face")
        self.model_a = widgets.Text(value=self._name(checkpoint), placeholder="empty: the shipped model",
                                    description="model A", continuous_update=False)
        self.model_b = widgets.Text(value=self._name(compare_with), placeholder="empty: no comparison",
                                    description="model B", continuous_update=False)
        self.chroma = widgets.FloatSlider(value=chroma, min=0.0, max=2.0, step=0.05, description="chroma",
                                          continuous_update=False, readout_format=".2f")
        self.gates = widgets.ToggleButton(value=False, description="gate maps",
                                          tooltip="overlay model A's attention-gate map at each level")
        self.save = widgets.Button(description="save result", tooltip="write model A's colours as a PNG")
        self.image = widgets.Image(format="png")
        self.message = widgets.HTML()
        for name, given in (("A", checkpoint), ("B", compare_with)):
            if isinstance(given, nn.Module):
                self._models[name] = (given.eval(), DEFAULT_SIZE, "the model passed in")

        self.source.observe(lambda _: self._pick(), names="value")
        self.another.on_click(lambda _: self._pick(again=True))
        self.upload.observe(self._on_upload, names="value")
        self.model_a.observe(lambda _: self._load("A") or self.redraw(), names="value")
        self.model_b.observe(lambda _: self._load("B") or self.redraw(), names="value")
        self.chroma.observe(lambda _: self.redraw(), names="value")
        self.gates.observe(lambda _: self.redraw(), names="value")
        self.save.on_click(lambda _: self.save_result())
        super().__init__([
            widgets.HBox([self.source, self.another, self.upload]),
            widgets.HBox([self.model_a, self.model_b]),
            widgets.HBox([self.chroma, self.gates, self.save]),
            self.image, self.message,
        ])
        for name, given in (("A", checkpoint), ("B", compare_with)):
            if not isinstance(given, nn.Module):
                self._load(name)
        self._pick()

    # --- models ----------------------------------------------------------------------
    @staticmethod
    def _name(checkpoint) -> str:
        return "" if checkpoint is None or isinstance(checkpoint, nn.Module) else str(checkpoint)

    def _load(self, which: str) -> None:
        """(Re)load model ``which`` ("A" or "B") from its text box; an error becomes a message."""
        text = (self.model_a if which == "A" else self.model_b).value.strip()
        self._errors.pop(which, None)
        if which == "B" and not text:
            self._models["B"] = None
            return
        try:
            model, ckpt = load_generator(text or None, device=self.device)
        except UserError as e:  # CheckpointError: missing shipped model, a bad file, another architecture
            self._models[which] = None
            self._errors[which] = f"model {which}: {e}"
            return
        size = int((ckpt.get("train_config") or {}).get("image_size") or DEFAULT_SIZE)
        self._models[which] = (model, size, Path(text).name if text else "the shipped model")

    # --- photos ----------------------------------------------------------------------
    def _on_upload(self, change) -> None:
        files = change["new"]
        if not files:
            return
        f = files[0]
        name, content = f.get("name") or "the upload", f["content"]
        self._uploaded = None
        if len(content) > self.max_upload_bytes:
            self._notes = [f"{name} is {_size(len(content))}, above the upload limit of "
                           f"{_size(self.max_upload_bytes)}: not read. Shrink it first."]
        else:
            try:
                self._uploaded = (load_rgb(bytes(content), name=name, max_pixels=self.max_upload_pixels), name)
                self._notes = []
            except UserError as e:  # ImageError: not an image, truncated, too many pixels
                self._notes = [f"{e}. Upload a JPEG, PNG or WebP photo."]
        if self.source.value == "upload":
            self._pick()
        else:
            self.source.value = "upload"  # observed: picks it

    def _test_face(self) -> tuple[np.ndarray, str, list[str]]:
        if self._faces is None:
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):  # said in the message instead
                warnings.simplefilter("ignore", DataWarning)  # files the loader skipped
                sets, source = open_splits(self.data_root, image_size=64, splits=("test",), toy_images=64,
                                           seed=self.seed, progress=False)
            self._faces = (sets["test"], source)
        faces, source = self._faces
        if source.kind != "folder" or len(faces) == 0:
            rgb, name, _ = self._toy_face()
            return rgb, name, [f"no face folder found ({source.describe()}): a ToyFace instead"]
        i = int(self.rng.integers(len(faces)))
        path = faces.files[i]
        return load_rgb(path), path.stem, [f"test face {path.name} of {source.describe()}"]

    def _toy_face(self) -> tuple[np.ndarray, str, list[str]]:
        i = int(self.rng.integers(1000))
        toy = ToyFaces(num_images=1000, image_size=_TOY_SIZE, split="test", seed=self.seed)
        return toy.rgb_uint8(i).permute(1, 2, 0).numpy(), f"toyface{i}", ["a ToyFace: generated, not a real photo"]

    def _pick(self, again: bool = False) -> None:
        """Load the photo the dropdown names (``again``: another random face), then redraw."""
        key = self.source.value
        self.another.disabled = key not in ("test_face", "toy_face")
        notes: list[str] = []
        if key == "astronaut":
            rgb, name = skimage.data.astronaut(), "astronaut"
        elif key == "grace_hopper":
            rgb, name = load_rgb(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)), "grace_hopper"
        elif key == "camera":
            rgb, name = np.repeat(skimage.data.camera()[..., None], 3, axis=2), "camera"
        elif key == "test_face":
            rgb, name, notes = self._test_face()
        elif key == "toy_face":
            rgb, name, notes = self._toy_face()
        elif self._uploaded is not None:
            (rgb, name), notes = self._uploaded, list(self._notes)
        else:
            self.photo = self.original = None
            self.outputs, self.scores, self.gate_maps = {}, {}, []
            self.image.value = b""
            self._say(self._notes or ["choose a file with the upload button"])
            return
        self.photo, self.photo_name = rgb, re.sub(r"[^\w.-]+", "_", Path(name).stem)[:60] or "photo"
        self.original = rgb if _is_colour(rgb) else None
        self._pick_notes = notes + ([] if self.original is not None else
                                    ["a black-and-white photo: no original colours to score against"])
        self.redraw()

    # --- drawing ----------------------------------------------------------------------
    def _colorize(self, which: str) -> np.ndarray | None:
        entry = self._models.get(which)
        if entry is None:
            return None
        model, size, _ = entry
        out = colorize(self.photo, model, size=size, chroma=self.chroma.value)  # (H, W, 3) uint8
        if which == "A":
            self.gate_maps = self._cropped_maps(model, size)
        return out

    def _cropped_maps(self, model: nn.Module, size: int) -> list[np.ndarray]:
        """Model A's attention-gate maps of the last call, cut to the photo (colorize pads the
        model's input to a multiple of 2**depth, centred): ``(h, w)`` float arrays, outermost first."""
        maps = model.attention_maps() if getattr(model.config, "attention_gates", False) else []
        h, w = model_input_size(*self.photo.shape[:2], size)
        m = model.config.multiple
        top, left = (-h % m) // 2, (-w % m) // 2
        out = []
        for alpha in maps:  # (1, 1, (h + ph) / 2^i, (w + pw) / 2^i)
            full = F.interpolate(alpha.float(), size=(h + -h % m, w + -w % m), mode="nearest")  # (1, 1, h', w')
            out.append(full[0, 0, top:top + h, left:left + w].cpu().numpy())  # (h, w)
        return out

    def redraw(self) -> None:
        """Colorize the photo with each model, score against the original, draw the figure."""
        if self.photo is None:
            return
        self.outputs = {k: v for k in ("A", "B") if (v := self._colorize(k)) is not None}
        self.scores = {k: _scores(v, self.original) for k, v in self.outputs.items()} if self.original is not None else {}
        panels = [("grey input (what the model sees)", _grey(_shrunk(self.photo, _VIEW_SIDE)))]
        for k, out in self.outputs.items():
            title = f"model {k}: {self._models[k][2]}"
            if k in self.scores:
                s = self.scores[k]
                title += f"\nPSNR {s['psnr_rgb']:.2f} dB · SSIM {s['ssim_rgb']:.3f} · ΔCF {s['delta_cf']:.1f}"
            panels.append((title, _shrunk(out, _VIEW_SIDE)))
        if self.original is not None:
            panels.append(("original colours", _shrunk(self.original, _VIEW_SIDE)))
        maps = self.gate_maps if (self.gates.value and "A" in self.outputs) else []
        rows = 2 if maps else 1
        cols = max(len(panels), len(maps))
        fig = Figure(figsize=(3.3 * cols, 3.6 * rows))
        axes = fig.subplots(rows, cols, squeeze=False)
        for ax in axes.flat:
            ax.set_axis_off()
        for ax, (title, img) in zip(axes[0], panels):
            ax.imshow(img)
            ax.set_title(title, fontsize=9)
        H, W = self.photo.shape[:2]
        for i, (ax, alpha) in enumerate(zip(axes[1] if maps else [], maps)):
            ax.imshow(panels[1][1])
            ax.imshow(alpha, cmap="magma", vmin=0, vmax=1, alpha=0.6, extent=(0, W, H, 0), interpolation="nearest")
            ax.set_title(f"model A, gate level {i}: mean α {alpha.mean():.2f}", fontsize=9)
        fig.suptitle(f"{self.photo_name} ({W}×{H}), chroma ×{self.chroma.value:.2f}"
                     + (f"; scores at ≤ {SCORE_SIDE} px" if self.scores else ""), fontsize=10)
        fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.8 if rows == 1 else 0.88, wspace=0.05, hspace=0.25)
        self.image.value = _png(fig)
        notes = list(self._pick_notes)
        if self.gates.value and "A" in self.outputs and not maps:
            notes.append("model A has no attention gates (attention_gates=False)")
        self._say(notes)

    def _say(self, notes: list[str]) -> None:
        problems = [self._errors[k] for k in ("A", "B") if k in self._errors]
        lines = [f"<b style='color:#b00'>{html.escape(p)}</b>" for p in problems]
        lines += [html.escape(n) for n in notes]
        self.message.value = "<br>".join(lines)

    # --- saving -----------------------------------------------------------------------
    def save_result(self) -> Path | None:
        """Write model A's colours as a PNG in ``save_dir`` under a name no file has yet
        (``<photo>_colorized_NNN.png``); say where, and return the path (None: nothing to save)."""
        out = self.outputs.get("A")
        if out is None:
            self._say(["nothing to save yet: no colorized image (see the message above)"])
            return None
        self.save_dir.mkdir(parents=True, exist_ok=True)
        n = 1
        while (path := self.save_dir / f"{self.photo_name}_colorized_{n:03d}.png").exists():
            n += 1
        buf = io.BytesIO()
        Image.fromarray(out).save(buf, format="PNG")
        atomic_write(path, lambda f: f.write(buf.getbuffer()))
        self.message.value = f"saved model A's colours to {html.escape(str(path))}"
        return path
