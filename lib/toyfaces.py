"""ToyFaces: generated *stand-in* face images, for when no CelebA-HQ folder is available.

Taught in ``notebooks/05_training_unet.ipynb``; ``lib.data.ToyFaces`` serves these images as a
dataset (and ``lib.data.open_splits`` uses it when no face folder is found).

These are not photographs. Each image is drawn from a handful of random choices
(seeded by ``seed``, split and index, so image ``i`` is the same on every machine):

* a head (an ellipsoid, so it has normals and shading) with a skin tone drawn from
  realistic CIE Lab ranges (L 35-80, a 8-22, b 12-30), ears, blush on the cheeks;
* hair of several colours (black, browns, blond, red, grey, dyed) and shapes (short,
  long, bob, bun, curly, bald; fringe or parting), eyebrows of a darker shade;
* eyes (sclera, irises of brown, blue, green, hazel or grey, pupils), a nose with a
  bump that catches the light, lips (or lipstick), sometimes teeth, glasses or a beard;
* clothing (solid, striped or mottled) and a textured, coloured background;
* directional lighting (ambient + diffuse + specular, random direction), a colour cast,
  exposure and sensor noise; random position, scale, roll and yaw.

Colour is predictable from shape and shading (skin is skin-coloured, lips redder than
skin, sclera white) but not trivially: hair, eyes, clothes and backgrounds vary.
Everything is vectorised numpy over the pixel grid; no per-pixel Python loops. Drawing
costs about 3 ms per 128x128 image on one CPU core (~300 images/s through a DataLoader,
``benchmarks/bench_data.py``): slower than reading a cached real face, fine for tests and
small CPU runs.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from lib.color import lab_to_rgb

__all__ = ["render_toy_face"]

_F32 = np.float32


# --- colours ------------------------------------------------------------------------------
def _hue(rng, L, chroma, hue=None) -> list[float]:
    h = rng.uniform(0, 2 * np.pi) if hue is None else hue
    return [L, chroma * np.cos(h), chroma * np.sin(h)]


def _choose(rng, table):
    """``table``: list of (probability, (Lmin, Lmax), (amin, amax), (bmin, bmax)) -> a Lab colour."""
    p = np.array([t[0] for t in table])
    _, Lr, ar, br = table[rng.choice(len(table), p=p / p.sum())]
    return [rng.uniform(*Lr), rng.uniform(*ar), rng.uniform(*br)]


_HAIR = [  # probability, L, a, b
    (0.28, (8, 18), (0, 3), (0, 6)),  # black
    (0.24, (18, 30), (4, 10), (8, 16)),  # dark brown
    (0.12, (30, 45), (6, 12), (14, 24)),  # light brown
    (0.13, (55, 75), (2, 8), (18, 35)),  # blond
    (0.08, (30, 48), (18, 30), (22, 38)),  # red / auburn
    (0.08, (55, 85), (-1, 1), (0, 6)),  # grey / white
]
_IRIS = [
    (0.45, (25, 40), (8, 14), (15, 25)),  # brown
    (0.20, (45, 60), (-5, 0), (-25, -12)),  # blue
    (0.12, (40, 55), (-15, -5), (10, 20)),  # green
    (0.13, (35, 50), (2, 8), (20, 30)),  # hazel
    (0.10, (50, 65), (-2, 1), (-6, -1)),  # grey
]


def _lab_to_linear(lab: np.ndarray) -> np.ndarray:
    """(K, 3) Lab -> (K, 3) linear RGB (sRGB primaries), through lib.color."""
    t = torch.from_numpy(np.asarray(lab, dtype=np.float64).T[:, :, None])  # (3, K, 1)
    srgb = lab_to_rgb(t)[:, :, 0].T.numpy()  # (K, 3) in [0, 1]
    return np.where(srgb > 0.04045, ((srgb + 0.055) / 1.055) ** 2.4, srgb / 12.92).astype(_F32)


# --- drawing helpers -----------------------------------------------------------------------
def _soft(d: np.ndarray, px: float) -> np.ndarray:
    """Signed distance (negative inside) -> coverage in [0, 1], one pixel of antialiasing."""
    return np.clip(0.5 - d / px, 0.0, 1.0)


def _ellipse(u, v, cu, cv, a, b, px):
    r = np.sqrt(((u - cu) / a) ** 2 + ((v - cv) / b) ** 2)
    return _soft((r - 1.0) * min(a, b), px)


@lru_cache(maxsize=16)
def _interp_matrix(size: int, cells: int) -> np.ndarray:
    """(size, cells) matrix that linearly interpolates ``cells`` knots onto ``size`` pixels."""
    pos = np.linspace(0, cells - 1, size)
    m = np.maximum(0.0, 1.0 - np.abs(pos[:, None] - np.arange(cells)[None, :]))
    return m.astype(_F32)


def _noise(rng, size: int, cells: int) -> np.ndarray:
    """Smooth random field (size, size), about unit variance: a texture or a blend map."""
    m = _interp_matrix(size, cells)
    return m @ rng.standard_normal((cells, cells)).astype(_F32) @ m.T


class _Canvas:
    """Linear-RGB albedo, surface normals and shininess, painted layer by layer.

    ``u, v`` are face-local coordinates of every pixel (head centre at 0, v down, head
    half-height about 0.45). Small features paint only a window around themselves
    (``window``), which keeps the drawing cheap.
    """

    def __init__(self, size: int, cx: float, cy: float, s: float, roll: float):
        self.size, self.px = size, 2.0 / size
        g = (np.arange(size, dtype=_F32) + 0.5) * self.px - 1.0
        self.y, self.x = np.meshgrid(g, g, indexing="ij")  # (S, S) image coords in [-1, 1], y down
        X, Y = self.x - cx, self.y - cy
        c, sn = float(np.cos(roll)), float(np.sin(roll))  # Python floats keep the arrays float32
        self.u = (c * X + sn * Y) / s  # (S, S) face-local coords
        self.v = (c * Y - sn * X) / s
        self.lpx = self.px / s  # one pixel in local units
        self.cx, self.cy, self.s, self.roll = cx, cy, s, roll
        self.albedo = np.zeros((3, size, size), _F32)  # (3, S, S) linear RGB
        self.normal = np.zeros((3, size, size), _F32)  # (3, S, S) unit normals, z towards the camera
        self.normal[2] = 1.0
        self.shiny = np.zeros((size, size), _F32)  # (S, S) specular strength

    def window(self, cu: float, cv: float, radius: float) -> tuple[slice, slice]:
        """Pixel window around local point (cu, cv) holding a local disc of ``radius``."""
        c, s = np.cos(self.roll), np.sin(self.roll)
        x = self.cx + self.s * (c * cu - s * cv)
        y = self.cy + self.s * (s * cu + c * cv)
        r = self.s * radius + 2 * self.px
        lo = lambda t: int(np.clip(np.floor((t - r + 1) / self.px), 0, self.size))  # noqa: E731
        hi = lambda t: int(np.clip(np.ceil((t + r + 1) / self.px) + 1, 0, self.size))  # noqa: E731
        return slice(lo(y), hi(y)), slice(lo(x), hi(x))

    def paint(self, mask, colour, normal=None, shiny=0.0, win=(slice(None), slice(None))):
        """Blend ``colour`` ((3,) or (3, h, w)) over the window where ``mask`` (h, w) covers it."""
        m = mask[None]  # (1, h, w)
        colour = np.asarray(colour, _F32)
        colour = colour[:, None, None] if colour.ndim == 1 else colour
        alb = self.albedo[:, win[0], win[1]]  # a view: updated in place
        alb += m * (colour - alb)
        if normal is not None:
            nrm = self.normal[:, win[0], win[1]]
            nrm += m * (normal - nrm)
        sh = self.shiny[win]
        sh += mask * (shiny - sh)


def _ellipsoid_normal(u, v, a, b, roll):
    """Normals of an ellipsoid (a, b, depth a) at local coords, turned back to image axes."""
    x, y = u / a, v / b
    z = np.sqrt(np.clip(1.0 - x * x - y * y, 0.02, None))
    nx, ny, nz = x / a, y / b, z / a
    c, s = float(np.cos(roll)), float(np.sin(roll))
    n = np.stack([c * nx - s * ny, s * nx + c * ny, nz])  # (3, h, w)
    return n / np.sqrt((n * n).sum(0, keepdims=True))


@lru_cache(maxsize=4)
def _srgb_lut(levels: int = 4096) -> np.ndarray:
    """Linear [0, 1] quantised to ``levels`` steps -> sRGB x 255 (float)."""
    lin = np.linspace(0.0, 1.0, levels + 1)
    srgb = np.where(lin > 0.0031308, 1.055 * lin ** (1 / 2.4) - 0.055, 12.92 * lin)
    return (srgb * 255).astype(_F32)


# --- one face ------------------------------------------------------------------------------
def _palette(rng) -> np.ndarray:
    """The colours of one face, in Lab (realistic ranges), as linear RGB (13, 3)."""
    U = rng.uniform
    tone = U()  # dark .. light skin
    skin = [38 + 42 * tone + rng.normal(0, 3), U(8, 16) + 6 * (1 - tone) * U(), U(12, 22) + 8 * U()]
    hair = _choose(rng, _HAIR) if U() > 0.05 else _hue(rng, U(40, 65), U(30, 55))  # 5 %: dyed
    brow = [min(hair[0] * U(0.6, 0.9), 45), hair[1], hair[2]]
    lips = [skin[0] - U(5, 15), skin[1] + U(10, 22), skin[2] + U(-4, 4)]
    if U() < 0.15:  # lipstick
        lips = _hue(rng, U(35, 55), U(45, 65), U(-0.3, 0.5))
    lab = [
        skin, hair, brow, lips, _choose(rng, _IRIS),  # 0-4
        [U(80, 90), U(0, 3), U(2, 6)],  # 5 sclera
        [U(3, 10), 0, 0],  # 6 pupil, lashes
        _hue(rng, U(15, 85), U(0, 60)), _hue(rng, U(15, 85), U(0, 60)),  # 7, 8 clothing
        _hue(rng, U(20, 90), U(0, 40)), _hue(rng, U(20, 90), U(0, 40)),  # 9, 10 background
        [U(75, 92), U(-1, 2), U(4, 12)],  # 11 teeth
        _hue(rng, U(10, 50), U(0, 50)),  # 12 glasses frame
    ]
    return _lab_to_linear(np.array(lab))


def _blend(c0, c1, t):
    """Per-pixel mix of two colours (3,) by t (h, w) -> (3, h, w)."""
    return c0[:, None, None] + t[None] * (c1 - c0)[:, None, None]


def render_toy_face(rng: np.random.Generator, size: int = 128) -> np.ndarray:
    """Draw one stand-in face: uint8 RGB ``(3, size, size)``. Taught in ``05_training_unet``."""
    U = rng.uniform
    col = _palette(rng)  # (13, 3) linear RGB, indices as in _palette
    # pose: position, scale, roll (in-plane), yaw (features slide sideways, light turns)
    roll, yaw = float(np.clip(rng.normal(0, 0.07), -0.2, 0.2)), U(-0.35, 0.35)
    cnv = _Canvas(size, cx=U(-0.07, 0.07), cy=U(-0.14, 0.02), s=U(1.3, 1.65), roll=roll)  # faces fill the frame
    x, y, u, v, lpx, px = cnv.x, cnv.y, cnv.u, cnv.v, cnv.lpx, cnv.px
    du = 0.09 * yaw

    # background: two colours blended by a smooth field, stripes or blobs, plus grain
    kind = rng.integers(3)
    if kind == 0:
        t = 1 / (1 + np.exp(-1.5 * _noise(rng, size, int(rng.integers(3, 7)))))
    elif kind == 1:
        ang, freq = U(0, np.pi), U(4, 14)
        t = 0.5 + 0.5 * np.sin(freq * (np.cos(ang) * x + np.sin(ang) * y) + U(0, 6))
    else:
        t = np.zeros_like(x)
        for _ in range(int(rng.integers(3, 9))):
            t = np.maximum(t, 0.8 * _ellipse(x, y, U(-1, 1), U(-1, 1), *(2 * [U(0.1, 0.35)]), 6 * px))
    cnv.paint(np.ones_like(x), _blend(col[9], col[10], t * (1 + 0.1 * _noise(rng, size, 16))))

    # hair behind the head: a cap, plus long / bob / bun parts; strands run from the crown
    head_a, head_b = U(0.31, 0.36), U(0.42, 0.47)  # head half-width and half-height, local units
    style = rng.choice(["short", "long", "bob", "bun", "curly", "bald"], p=[0.25, 0.25, 0.15, 0.1, 0.15, 0.1])
    ha, hb = head_a * U(1.08, 1.2), head_b * U(1.04, 1.12)
    theta = np.arctan2(v + 0.6, u)  # strand direction: fanning down from above the crown
    wobble = 1.0
    if style == "curly":
        ha, hb = ha * 1.15, hb * 1.08
        wobble = 1.0 + 0.07 * np.sin(U(8, 14) * np.arctan2(v + 0.1, u) + U(0, 6))
    outer = _soft((np.sqrt((u / ha) ** 2 + ((v + 0.04) / hb) ** 2) / wobble - 1.0) * ha, lpx)
    if style in ("long", "bob"):
        bottom = U(0.6, 1.0) if style == "long" else U(0.15, 0.3)
        side = _soft(np.maximum(np.abs(u) - ha * U(0.95, 1.05), np.maximum(v - bottom, -v)), lpx)
        outer = np.maximum(outer, side)
    elif style == "bun":
        outer = np.maximum(outer, _ellipse(u, v, 0.0, -hb - 0.06, 0.13, 0.11, lpx))
    freq = 25.0 if style == "curly" else U(60, 110)
    strands = 0.88 + 0.12 * np.sin(freq * theta + 2.5 * _noise(rng, size, 6))
    hair_col = col[1][:, None, None] * strands[None]  # (3, S, S)
    hair_n = _ellipsoid_normal(u, v + 0.04, ha * 1.1, hb * 1.25, roll)
    if style != "bald":
        cnv.paint(outer, hair_col, hair_n, 0.25)

    # neck, then body and clothing (a wide cylinder) with a neckline: in front of long hair
    neck = _soft(np.maximum(np.abs(u) - 0.13, v - 1.2), lpx) * (v > 0.1)
    cnv.paint(neck, col[0] * 0.8, _ellipsoid_normal(u, 0.2 * v, 0.14, 1.0, roll), 0.1)
    ws = U(0.95, 1.3)
    body = _ellipse(u, v, 0.0, 1.12, ws, 0.6, lpx) * (v > 0.5)
    nb = np.stack([np.clip(u / ws, -0.95, 0.95), np.full_like(u, -0.3), np.ones_like(u)])
    nb /= np.sqrt((nb * nb).sum(0, keepdims=True))
    pattern = rng.integers(3)  # solid, stripes, mottled
    if pattern == 1:
        t = np.clip(0.5 + 3 * np.sin(U(20, 45) * v + U(0, 6)), 0, 1)
    else:
        t = np.clip(_noise(rng, size, 8), 0, 1)
    neckline = _ellipse(u, v, 0.0, 0.55, U(0.16, 0.26), U(0.1, 0.3), lpx)
    cnv.paint(body * (1 - neckline), col[7] if pattern == 0 else _blend(col[7], col[8], t), nb, 0.05)

    # ears, then the head: an egg-shaped ellipsoid, skin with grain and blush
    ey = U(-0.05, 0.02)  # eye height
    for sd in (-1, 1):
        w = cnv.window(sd * head_a, ey + 0.06, 0.12)
        eu, ev = u[w] - sd * (head_a - 0.005) - 0.5 * du, v[w] - ey - 0.06
        ear = _ellipse(eu, ev, 0, 0, 0.05, 0.09, lpx)
        cnv.paint(ear, col[0] * 0.9, _ellipsoid_normal(eu, ev, 0.08, 0.12, roll), 0.1, w)
    a_eff = head_a * (1 - 0.2 * np.clip(v / head_b, 0, 1) ** 2)  # narrower towards the chin
    face = _soft((np.sqrt((u / a_eff) ** 2 + (v / head_b) ** 2) - 1.0) * head_a, lpx)
    face_n = _ellipsoid_normal(u, v, head_a, head_b, roll)
    nose_u = u - 1.3 * du  # the nose: a bump that tilts the normals sideways
    face_n[0] += 0.012 * np.exp(-((nose_u / 0.04) ** 2) - ((v - 0.08) / 0.1) ** 2) * nose_u / 0.04**2
    face_n /= np.sqrt((face_n * face_n).sum(0, keepdims=True))
    blush = U(0, 0.3) * np.exp(-(((np.abs(u - du) - 0.17) / 0.06) ** 2) - ((v - 0.14) / 0.05) ** 2)
    skin = _blend(col[0], col[3], blush) * (1 + 0.04 * _noise(rng, size, 24))[None]  # (3, S, S)
    cnv.paint(face, skin, face_n, U(0.05, 0.25))

    # beard (sometimes), eyes, brows, nostrils, lips
    mouth_y, mw = U(0.23, 0.3), U(0.07, 0.11)
    if U() < 0.12 and style != "long":
        beard = face * _soft(0.1 - v, lpx) * (1 - _ellipse(u, v, du, mouth_y, mw * 1.1, 0.05, lpx))
        cnv.paint(beard * U(0.6, 0.95), col[2][:, None, None] * strands[None], None, 0.1)
    ew, eh = U(0.05, 0.07), U(0.022, 0.034)
    gaze, iris_r = U(-0.3, 0.3) * ew, eh * U(0.95, 1.15)
    brow_y, brow_t = ey - U(0.07, 0.1), U(0.01, 0.018)
    for sd in (-1, 1):
        ex = sd * U(0.12, 0.14) + du
        w = cnv.window(ex, ey - 0.04, 0.13)
        eu, ev = u[w] - ex, v[w] - ey
        cnv.paint(_ellipse(eu, ev, 0, -0.004, ew * 1.12, eh * 1.35, lpx), col[6], win=w)  # lashes, lid line
        white = _ellipse(eu, ev, 0, 0, ew, eh, lpx)
        cnv.paint(white, col[5], None, 0.6, w)
        iris = white * _ellipse(eu, ev, gaze, 0, iris_r, iris_r, lpx)
        cnv.paint(iris, col[4][:, None, None] * (0.8 + 0.2 * (ev > 0))[None], None, 0.8, w)
        cnv.paint(white * _ellipse(eu, ev, gaze, 0, 0.45 * iris_r, 0.45 * iris_r, lpx), col[6], None, 0.9, w)
        bu = eu + sd * 0.005
        arch = brow_y - ey + 2.5 * (bu - sd * 0.01) ** 2
        brow = _soft(np.maximum(np.abs(ev - arch) - brow_t, np.abs(bu) - ew * 1.25), lpx)
        cnv.paint(brow * U(0.75, 1.0), col[2], win=w)
        w = cnv.window(1.3 * du + sd * 0.03, 0.165, 0.03)
        cnv.paint(0.7 * _ellipse(u[w], v[w], 1.3 * du + sd * 0.03, 0.165, 0.017, 0.009, lpx), col[0] * 0.35, win=w)
    w = cnv.window(du, mouth_y, 0.16)
    smile = U(-0.5, 2.0)
    mu, mv = u[w] - du, v[w] - mouth_y - smile * (u[w] - du) ** 2
    lips = _ellipse(mu, mv, 0, 0, mw, U(0.025, 0.04), lpx)
    cnv.paint(lips, col[3], None, 0.4, w)
    if U() < 0.25:  # open mouth: teeth
        cnv.paint(_ellipse(mu, mv, 0, 0.003, 0.7 * mw, 0.012, lpx), col[11], None, 0.3, w)
    cnv.paint(lips * _soft(np.abs(mv) - 0.003, lpx), col[3] * 0.4, win=w)  # the line between the lips

    # fringe: the hair in front of the forehead, above a random hairline
    if style != "bald":
        hairline = U(-0.36, -0.12) + U(-0.15, 0.15) * (u - du) + U(0.5, 2.0) * (u - du) ** 2
        cnv.paint(outer * _soft(v - hairline, lpx), hair_col, hair_n, 0.25)
    if U() < 0.15:  # glasses
        rg, wf = U(0.07, 0.09), U(0.006, 0.012)
        w = cnv.window(du, ey, 0.26)
        gu, gv = u[w] - du, v[w] - ey
        frame = _soft(np.abs(gv + 0.02) - wf, lpx) * _soft(np.abs(gu) - (0.13 - rg), lpx)  # the bridge
        for sd in (-1, 1):
            frame = np.maximum(frame, _soft(np.abs(np.sqrt((gu - sd * 0.13) ** 2 + (gv / 0.8) ** 2) - rg) - wf, lpx))
        cnv.paint(frame, col[12], None, 0.5, w)

    # lighting: ambient + Lambert + Blinn-Phong specular, a colour cast, exposure, noise
    az, elev = U(0, 2 * np.pi), U(0.35, 1.1)
    light = np.array([np.cos(elev) * np.cos(az) + 0.3 * yaw, np.cos(elev) * np.sin(az), np.sin(elev)], _F32)
    light /= np.linalg.norm(light)
    half = light + np.array([0, 0, 1], _F32)
    half /= np.linalg.norm(half)
    ambient = U(0.25, 0.5)
    ndotl = np.clip(np.einsum("c,chw->hw", light, cnv.normal), 0, None)  # (S, S)
    ndoth = np.clip(np.einsum("c,chw->hw", half, cnv.normal), 0, None)
    cast = (np.exp(rng.normal(0, 0.05, 3)) * np.exp(rng.normal(0.15, 0.15))).astype(_F32)
    lin = cnv.albedo * ((ambient + (1 - ambient) * ndotl)[None] * cast[:, None, None])  # (3, S, S)
    lin += (0.25 * cnv.shiny * ndoth**30)[None]
    lut = _srgb_lut()
    srgb = lut[(np.clip(lin, 0, 1) * (len(lut) - 1) + 0.5).astype(np.int32)]  # (3, S, S) in [0, 255]
    srgb += rng.standard_normal((3, size, size), dtype=_F32) * 2.5  # sensor noise
    return np.clip(srgb + 0.5, 0, 255).astype(np.uint8)  # (3, S, S)
