"""The motion resampler: the model part that reads a person's previous chunk of latents back as M motion
tokens for the backbone (a Perceiver-style cross-attention of M learned queries over the chunk's patches).

Legend: N chunks, C frames per chunk, c,h,w latent, n = (h/p)(w/p) patches per frame, M tokens, E the
resampler's width, D the backbone's width.
"""

from __future__ import annotations

import torch
from einops import rearrange, repeat
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from dyadgen.models.layers import Attention, ScalarEmbedder, patchify


class MotionResampler(nn.Module):
    """One chunk of latents [N,C,c,h,w] (+ its noise level) -> M motion tokens [N,M,D].

    With ``checkpointed`` (training with activation checkpointing) the N chunks go through in groups
    of ``group``, each recomputed in backward: the activations of C (h/2)(w/2) patches per chunk are
    held for one group at a time, never for all B P S chunks of a batch."""

    def __init__(self, latent_shape: tuple[int, int, int], chunk: int, tokens: int, width: int, out_dim: int,
                 heads: int = 4, patch: int = 2, *, checkpointed: bool = False, group: int = 32):
        super().__init__()
        c, h, w = latent_shape
        self.patch, self.checkpointed, self.group = patch, checkpointed, group
        n = chunk * (h // patch) * (w // patch)
        self.patch_in = nn.Linear(c * patch * patch, width)
        self.pos = nn.Parameter(torch.randn(n, width) * 0.02)
        self.noise_embed = ScalarEmbedder(width)
        self.queries = nn.Parameter(torch.randn(tokens, width) * 0.02)
        self.attn = Attention(width, heads)
        self.norm = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width))
        self.out = nn.Linear(width, out_dim)

    def forward(self, chunks: Tensor, noise_level: Tensor) -> Tensor:
        if self.checkpointed and self.training and torch.is_grad_enabled():
            parts = zip(chunks.split(self.group), noise_level.split(self.group), strict=True)
            return torch.cat([checkpoint(self._tokens, c, n, use_reentrant=False) for c, n in parts])
        return self._tokens(chunks, noise_level)

    def _tokens(self, chunks: Tensor, noise_level: Tensor) -> Tensor:
        N = chunks.shape[0]
        x = self.patch_in(patchify(rearrange(chunks, "n t c h w -> (n t) c h w"), self.patch))  # [(N C),n,E]
        x = rearrange(x, "(n t) k d -> n (t k) d", n=N) + self.pos  # [N,C n,E], E the resampler's width
        x = x + self.noise_embed(noise_level)[:, None]
        q = repeat(self.queries, "m d -> n m d", n=N)  # [N,M,E]
        q = q + self.attn(q, context=x)
        q = q + self.mlp(self.norm(q))
        return self.out(q)  # [N,M,D]
