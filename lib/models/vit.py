"""Pixel-wise Vision Transformer bottleneck (UVCGAN, Torbunov et al., 2023).

Taught in ``notebooks/03_attention_gates_and_vit.ipynb``.

At the bottom of the U-Net the feature map is small (8x8 for a 128x128 face with depth 4),
so every position can be a token and every token can attend to every other one: the
bottleneck sees the whole face at once, which a stack of 3x3 convolutions cannot.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["sincos_2d", "PositionalEncoding2d", "TransformerBlock", "ViTBottleneck"]


def sincos_2d(h: int, w: int, dim: int, device=None, dtype=torch.float32, base: float = 10000.0) -> Tensor:
    r"""Fixed 2-D sine-cosine positional encoding (as in MAE), ``(h * w, dim)``, row-major.

    Half of the channels encode the row ``i``, half the column ``j``:

    $$ PE(i, j) = \big[\sin(i\,\omega_k), \cos(i\,\omega_k), \sin(j\,\omega_k), \cos(j\,\omega_k)\big]_{k},
       \qquad \omega_k = \mathrm{base}^{-k / (d/4)}, \; k = 0 \dots d/4 - 1 $$

    Taught in ``notebooks/03_attention_gates_and_vit.ipynb``.
    """
    if dim % 4:
        raise ValueError(f"sin-cos 2-D positional encoding needs dim divisible by 4, got {dim}")
    omega = base ** (-torch.arange(dim // 4, device=device, dtype=torch.float64) / (dim // 4))  # (d/4,)
    ii, jj = torch.meshgrid(
        torch.arange(h, device=device, dtype=torch.float64), torch.arange(w, device=device, dtype=torch.float64), indexing="ij"
    )  # (h, w) each
    ai = ii.reshape(-1, 1) * omega  # (h*w, d/4)
    aj = jj.reshape(-1, 1) * omega  # (h*w, d/4)
    pe = torch.cat([ai.sin(), ai.cos(), aj.sin(), aj.cos()], dim=1)  # (h*w, d)
    return pe.to(dtype)


class PositionalEncoding2d(nn.Module):
    """2-D positional encoding for an ``h x w`` grid of tokens of width ``dim``, any ``h, w``.

    ``kind="sincos"``: fixed sine-cosine table (``sincos_2d``), computed once per
    ``(h, w, device, dtype)`` and kept in a plain dict (``self._cache``): not a registered buffer,
    so it is neither saved in the ``state_dict`` nor recomputed per call.
    ``kind="learned"``: a learned ``(dim, grid, grid)`` table, bicubically resized to ``(h, w)``
    when the grid differs (UVCGAN learns its embedding; the resize lets any input size through).
    A parameter changes at every optimiser step, so this variant is recomputed (cheaply) each call.

    ``forward(h, w, like)`` returns ``(h * w, dim)`` on ``like``'s device and dtype.
    Taught in ``notebooks/03_attention_gates_and_vit.ipynb``.
    """

    def __init__(self, dim: int, kind: str = "sincos", grid: int = 8):
        super().__init__()
        if kind not in ("sincos", "learned"):
            raise ValueError(f"unknown positional encoding {kind!r}; choose 'sincos' or 'learned'")
        if kind == "sincos" and dim % 4:
            raise ValueError(f"sin-cos 2-D positional encoding needs dim divisible by 4, got {dim}")
        self.dim, self.kind, self.grid = dim, kind, grid
        self._cache: dict[tuple, Tensor] = {}
        if kind == "learned":
            self.table = nn.Parameter(0.02 * torch.randn(1, dim, grid, grid))  # (1, D, g, g)

    def forward(self, h: int, w: int, like: Tensor) -> Tensor:
        if self.kind == "learned":
            t = self.table
            if (h, w) != (self.grid, self.grid):
                t = F.interpolate(t, size=(h, w), mode="bicubic", align_corners=False)  # (1, D, h, w)
            return t.flatten(2).squeeze(0).t().to(like.dtype)  # (h*w, D)
        key = (h, w, like.device, like.dtype)
        pe = self._cache.get(key)
        if pe is None:
            # a normal tensor even when first built under torch.inference_mode, so it can be
            # reused later by a training step
            with torch.inference_mode(False), torch.no_grad():
                pe = sincos_2d(h, w, self.dim, device=like.device, dtype=like.dtype)  # (h*w, D)
            self._cache[key] = pe
        return pe

    def extra_repr(self) -> str:
        return f"dim={self.dim}, kind={self.kind!r}" + (f", grid={self.grid}" if self.kind == "learned" else "")


class TransformerBlock(nn.Module):
    r"""Pre-norm transformer encoder block on tokens ``(B, N, D)``:

    $$ x \leftarrow x + \mathrm{MHSA}(\mathrm{LN}(x)), \qquad
       x \leftarrow x + \mathrm{MLP}(\mathrm{LN}(x)), $$
    $$ \mathrm{MHSA}: \; A = \mathrm{softmax}\Big(\frac{Q K^\top}{\sqrt{d_h}}\Big), \; A V \text{ per head}, \qquad
       \mathrm{MLP}: \; W_2\,\mathrm{GELU}(W_1 x) $$

    The attention is ``torch.nn.functional.scaled_dot_product_attention`` (fused kernels that
    never keep the ``N x N`` matrix ``A``). With ``keep_weights = True`` (set by
    ``ViTBottleneck.keep_attention()``) it is computed explicitly instead, the same output up
    to rounding, and the weights ``A`` ``(B, heads, N, N)`` (each row sums to 1) are kept,
    detached, in ``self.weights``. Taught in ``notebooks/03_attention_gates_and_vit.ipynb``.
    """

    def __init__(self, dim: int, heads: int = 4, mlp_ratio: float = 4.0, dropout: float = 0.0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"token width {dim} must be divisible by the number of heads {heads}")
        self.heads, self.dropout = heads, dropout
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim))
        self.drop = nn.Dropout(dropout)
        self.keep_weights = False  # True: explicit softmax(QK^T / sqrt(d_h)) path, weights kept
        self.weights: Tensor | None = None  # (B, heads, N, N) of the last explicit forward

    def attention(self, x: Tensor) -> Tensor:
        B, N, D = x.shape
        qkv = self.qkv(x).view(B, N, 3, self.heads, D // self.heads)  # (B, N, 3, heads, d_h)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (B, heads, N, d_h)
        p = self.dropout if self.training else 0.0
        if self.keep_weights:
            a = torch.softmax(q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5, dim=-1)  # (B, heads, N, N)
            self.weights = a.detach()
            y = F.dropout(a, p) @ v  # (B, heads, N, d_h)
        else:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=p)  # (B, heads, N, d_h)
        return self.proj(y.transpose(1, 2).reshape(B, N, D))  # (B, N, D)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop(self.attention(self.norm1(x)))  # (B, N, D)
        return x + self.drop(self.mlp(self.norm2(x)))  # (B, N, D)


class ViTBottleneck(nn.Module):
    r"""UVCGAN's pixel-wise ViT: every position of the innermost feature map is a token.

    $$ t = W_{in}\,\mathrm{tokens}(x) + PE_{h,w}, \qquad
       t \leftarrow \mathrm{Block}_L \circ \dots \circ \mathrm{Block}_1(t), \qquad
       y = x + \mathrm{fold}\big(W_{out}\,\mathrm{LN}(t)\big) $$

    ``tokens`` turns ``(B, C, h, w)`` into ``(B, h*w, C)``, ``W_in`` / ``W_out`` project between
    the map's ``C`` channels and the token width ``D``, ``PE`` is the 2-D positional encoding
    computed for the actual ``h, w`` (cached), and the result is added back to the map
    (residual), so with zero blocks' worth of signal the U-Net still works.
    Taught in ``notebooks/03_attention_gates_and_vit.ipynb``.
    """

    def __init__(
        self,
        channels: int,
        dim: int | None = None,
        num_blocks: int = 1,
        heads: int = 4,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        pos_encoding: str = "sincos",
        pos_grid: int = 8,
    ):
        super().__init__()
        dim = dim or channels
        self.in_proj = nn.Linear(channels, dim)
        self.pos = PositionalEncoding2d(dim, pos_encoding, pos_grid)
        self.blocks = nn.Sequential(*[TransformerBlock(dim, heads, mlp_ratio, dropout) for _ in range(num_blocks)])
        self.norm = nn.LayerNorm(dim)
        self.out_proj = nn.Linear(dim, channels)

    def forward(self, x: Tensor) -> Tensor:
        B, C, h, w = x.shape
        t = self.in_proj(x.flatten(2).transpose(1, 2))  # (B, h*w, D): one token per position
        t = t + self.pos(h, w, t)  # (B, h*w, D)
        t = self.blocks(t)  # (B, h*w, D)
        y = self.out_proj(self.norm(t))  # (B, h*w, C)
        return x + y.transpose(1, 2).unflatten(2, (h, w))  # (B, C, h, w)

    @contextmanager
    def keep_attention(self) -> Iterator[None]:
        """Inside this block every transformer block uses the explicit attention path and keeps
        its weights (``attention_weights()``); outside it, the fused kernel and no weights.

        ``with model.bottleneck.keep_attention(): model(l_n)``
        """
        for blk in self.blocks:
            blk.keep_weights, blk.weights = True, None
        try:
            yield
        finally:
            for blk in self.blocks:
                blk.keep_weights = False

    def attention_weights(self) -> list[Tensor]:
        """Attention weights of the last forward inside ``keep_attention()``, one ``(B, heads, N, N)``
        tensor per block (``N = h * w`` tokens, row-major; row ``n`` is where token ``n`` looks)."""
        weights = [blk.weights for blk in self.blocks]
        if any(w is None for w in weights):
            raise RuntimeError("no attention weights: run a forward inside `with bottleneck.keep_attention():`")
        return weights
