"""Shared building blocks: attention (torch SDPA, or xformers on CUDA when installed), RoPE, embeddings.

Legend: N sequences, L tokens, D width, H heads, d head width.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn


def attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, backend: str = "sdpa") -> Tensor:
    """q, k, v [N,H,L,d] -> [N,H,L,d]. xformers is used only when asked for, on CUDA, with no mask;
    both backends compute the same softmax attention."""
    if backend == "xformers" and q.is_cuda and mask is None:
        try:
            import xformers.ops as xops  # optional (the gpu extra)

            out = xops.memory_efficient_attention(*(rearrange(x, "n h l d -> n l h d") for x in (q, k, v)))
            return rearrange(out, "n l h d -> n h l d")
        except ImportError:
            pass
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def rope_frequencies(positions: Tensor, dims: tuple[int, ...], theta: float = 10_000.0) -> Tensor:
    """Multi-axis RoPE angles. positions [...,L,A] (one coordinate per axis), dims: head dims per axis
    (each even) -> angles [...,L,sum(dims)/2]."""
    parts = []
    for axis, dim in enumerate(dims):
        freqs = theta ** (-torch.arange(0, dim, 2, device=positions.device, dtype=torch.float32) / dim)  # [dim/2]
        parts.append(positions[..., axis, None].float() * freqs)  # [...,L,dim/2]
    return torch.cat(parts, dim=-1)


def rope_tables(positions: Tensor, dims: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """cos and sin of the RoPE angles of positions [L,A], each float32 [L,d/2]: built once per
    sequence layout and shared by every sequence, head and block."""
    angles = rope_frequencies(positions, dims)
    return angles.cos(), angles.sin()


def apply_rope(x: Tensor, rope: tuple[Tensor, Tensor]) -> Tensor:
    """x [N,H,L,d], rope: cos and sin [L,d/2] (or [N,1,L,d/2]) -> x rotated pairwise, in x's dtype."""
    cos, sin = (t.to(x.dtype) for t in rope)
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)  # [N,H,L,d/2] each
    return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)  # [N,H,L,d]


def timestep_embedding(t: Tensor, dim: int, scale: float = 1000.0) -> Tensor:
    """Sinusoidal embedding of t [N] in [0,1] -> [N,dim]."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = scale * t.float()[:, None] * freqs  # [N,half]
    return torch.cat([args.cos(), args.sin()], dim=-1)


class ScalarEmbedder(nn.Module):
    """A scalar in [0,1] (flow time, a noise level) -> [N,D] through sinusoids and an MLP."""

    def __init__(self, dim: int, freq_dim: int = 128):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: Tensor) -> Tensor:
        return self.mlp(timestep_embedding(t, self.freq_dim).to(self.mlp[0].weight.dtype))


class Attention(nn.Module):
    """Self- or cross-attention with RMS-normed queries and keys and optional RoPE."""

    def __init__(self, dim: int, heads: int, backend: str = "sdpa"):
        super().__init__()
        self.heads, self.backend = heads, backend
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.q_norm = nn.RMSNorm(dim // heads)
        self.k_norm = nn.RMSNorm(dim // heads)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: Tensor, context: Tensor | None = None, rope: tuple[Tensor, Tensor] | None = None) -> Tensor:
        context = x if context is None else context
        q = rearrange(self.q(x), "n l (h d) -> n h l d", h=self.heads)  # [N,H,L,d]
        k, v = rearrange(self.kv(context), "n l (two h d) -> two n h l d", two=2, h=self.heads)  # [N,H,Lk,d]
        q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = apply_rope(q, rope), apply_rope(k, rope)
        out = attention(q, k, v, backend=self.backend)  # [N,H,L,d]
        return self.out(rearrange(out, "n h l d -> n l (h d)"))


def patchify(x: Tensor, p: int) -> Tensor:
    """latents [N,c,h,w] -> patches [N,(h/p)(w/p),c*p*p]."""
    return rearrange(x, "n c (y p1) (x p2) -> n (y x) (c p1 p2)", p1=p, p2=p)


def unpatchify(x: Tensor, p: int, h: int, w: int) -> Tensor:
    """patches [N,(h/p)(w/p),c*p*p] -> latents [N,c,h,w]."""
    return rearrange(x, "n (y x) (c p1 p2) -> n c (y p1) (x p2)", y=h // p, x=w // p, p1=p, p2=p)
