"""The flow-matching decoder: a DiT loss head that denoises one chunk of one person's latents.

Legend: N = decoder batch (B*P*S in training, P or 2P per step at inference), C frames per chunk,
c,h,w latent, n = (h/p)(w/p) patches per frame, M condition tokens, D width, A = (2k+1) + (q+1) audio
tokens of a frame (own t-k..t+k, then the partner's t-q..t).

One single-stream sequence per chunk: [M condition tokens | reference patches | previous frame's
patches | noisy chunk's patches (C frames)], each kind with a learned type embedding, 3-D RoPE over
(frame, y, x) with frame -1 for the previous frame and 0..C-1 for the chunk (reference and condition
tokens at frame 0, told apart by type), adaLN-zero on the flow time and the context noise level.
Frame-aligned audio: every patch of chunk frame t also gets an embedding of the person's own audio
tokens t-k..t+k, because lip shape is decided frame by frame, and of the partner's tokens t-q..t,
because a listener's nod or smile answers what the partner said in the last second (the backbone's
conditions carry the longer history, at chunk rather than frame resolution).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from dyadgen.config import DecoderConfig
from dyadgen.models import flow
from dyadgen.models.layers import Attention, ScalarEmbedder, patchify, rope_tables, unpatchify

COND, REF, PREV, CHUNK = range(4)  # token types


@dataclass
class ChunkCondition:
    """Everything the decoder denoises N chunks from (one per person and chunk step)."""

    tokens: Tensor  # [N,M,Dc] the backbone's conditions
    ref: Tensor  # [N,c,h,w] the person's reference latent
    prev: Tensor  # [N,c,h,w] the last frame of the previous chunk (the context)
    audio: Tensor  # long [N,C,A] own audio tokens around each chunk frame, then the partner's before it
    noise_level: Tensor  # [N] noise put on ``prev`` (training: exposure-bias augmentation; generation: 0)

    def with_branch(self, other: ChunkCondition) -> ChunkCondition:
        """This condition and ``other`` as one batch of 2N (for one batched guidance call)."""
        return ChunkCondition(*(torch.cat([a, b]) for a, b in zip(self.fields(), other.fields(), strict=True)))

    def fields(self) -> tuple[Tensor, ...]:
        return self.tokens, self.ref, self.prev, self.audio, self.noise_level


class DiTBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float, backend: str):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, heads, backend)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        nn.init.zeros_(self.modulation[1].weight)  # adaLN-zero: each block starts as the identity
        nn.init.zeros_(self.modulation[1].bias)

    def forward(self, x: Tensor, c: Tensor, rope: tuple[Tensor, Tensor]) -> Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(c)[:, None].chunk(6, dim=-1)  # [N,1,D] each
        x = x + gate1 * self.attn(self.norm1(x) * (1 + scale1) + shift1, rope=rope)
        return x + gate2 * self.mlp(self.norm2(x) * (1 + scale2) + shift2)


class FlowDecoder(nn.Module):
    """The loss head: ``forward(target, cond) -> loss`` in training, ``sample(noise, cond, uncond) -> latents``
    in generation; ``cond`` and ``uncond`` are :class:`ChunkCondition`."""

    def __init__(self, cfg: DecoderConfig, *, cond_dim: int, latent_shape: tuple[int, int, int],
                 chunk_frames: int, audio_vocab: int, time_mean: float = 0.0, time_std: float = 1.0,
                 resolution_shift: bool = True):
        super().__init__()
        c, h, w = latent_shape
        p, dim = cfg.patch_size, cfg.hidden_size
        if h % p or w % p:
            raise ValueError(f"latent size {h}x{w} is not divisible by the patch size {p}")
        self.cfg, self.latent_shape, self.chunk_frames = cfg, latent_shape, chunk_frames
        self.patches = (h // p) * (w // p)
        self.time_mean, self.time_std = time_mean, time_std
        # FLUX's shift from the number of latent tokens that are denoised together
        self.mu = flow.resolution_mu(chunk_frames * self.patches) if resolution_shift else None
        self.patch_in = nn.Linear(c * p * p, dim)
        self.cond_in = nn.Linear(cond_dim, dim)
        self.type_embed = nn.Embedding(4, dim)
        self.audio_embed = nn.Embedding(audio_vocab, dim // 4)
        self.audio_tokens = (2 * cfg.audio_context + 1) + (cfg.partner_context + 1)  # A
        self.audio_in = nn.Linear(self.audio_tokens * (dim // 4), dim)
        self.time_embed = ScalarEmbedder(dim)
        self.noise_embed = ScalarEmbedder(dim)
        if cfg.distilled_steps:  # a guidance-distilled student also reads the guidance scale and the step's span
            if any(max(cfg.distilled_steps) % k for k in cfg.distilled_steps):
                raise ValueError(f"decoder.distilled_steps {cfg.distilled_steps}: each must divide the largest")
            self.guidance_embed = ScalarEmbedder(dim)
            self.span_embed = ScalarEmbedder(dim)
            for embedder in (self.guidance_embed, self.span_embed):  # zero: the student starts as its teacher
                nn.init.zeros_(embedder.mlp[-1].weight)
                nn.init.zeros_(embedder.mlp[-1].bias)
        self.blocks = nn.ModuleList(
            DiTBlock(dim, cfg.num_heads, cfg.mlp_ratio, cfg.attention) for _ in range(cfg.depth))
        self.final_norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.final_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.patch_out = nn.Linear(dim, c * p * p)
        nn.init.zeros_(self.final_modulation[1].weight)
        nn.init.zeros_(self.final_modulation[1].bias)
        nn.init.zeros_(self.patch_out.weight)
        nn.init.zeros_(self.patch_out.bias)
        head = dim // cfg.num_heads
        if head % 2:
            raise ValueError(f"decoder head width {head} must be even for RoPE")
        # split the rotary pairs over (frame, y, x); frame gets the remainder
        pairs = head // 2
        yx = 2 * (pairs // 3)
        self.rope_dims = (head - 2 * yx, yx, yx)
        self.register_buffer("positions", self._positions(h // p, w // p, chunk_frames), persistent=False)
        self._rope: dict[tuple[int, torch.device], tuple[Tensor, Tensor]] = {}
        self._compiled = None  # velocity through torch.compile, when use_compiled() asked for it

    @staticmethod
    def _positions(hp: int, wp: int, chunk: int) -> Tensor:
        """(frame, y, x) of every token of the sequence, [L,3] (condition tokens counted by the caller)."""
        ys, xs = torch.meshgrid(torch.arange(hp), torch.arange(wp), indexing="ij")
        grid = torch.stack([torch.zeros_like(ys), ys, xs], dim=-1).reshape(-1, 3)  # [n,3]
        ref = grid.clone()
        prev = grid.clone()
        prev[:, 0] = -1
        frames = [grid.clone() for _ in range(chunk)]
        for t, f in enumerate(frames):
            f[:, 0] = t
        return torch.cat([ref, prev, *frames])  # [(2+C) n, 3]

    def variant(self, cfg: DecoderConfig) -> FlowDecoder:
        """A new decoder of this one's shapes with another config (e.g. its guidance-distilled student)."""
        return FlowDecoder(cfg, cond_dim=self.cond_in.in_features, latent_shape=self.latent_shape,
                           chunk_frames=self.chunk_frames, audio_vocab=self.audio_embed.num_embeddings,
                           time_mean=self.time_mean, time_std=self.time_std, resolution_shift=self.mu is not None)

    @property
    def distilled(self) -> bool:
        """Whether this is a guidance-distilled student (one pass per step, guidance and span as inputs)."""
        return bool(self.cfg.distilled_steps)

    def use_compiled(self, on: bool = True) -> None:
        """Run :meth:`velocity` (one decoder step) through torch.compile from now on (inductor: a C++
        compiler on the CPU, Triton on a GPU; each new batch shape compiles once), or eagerly again."""
        if not on:
            self._compiled = None
        elif self._compiled is None:
            self._compiled = torch.compile(self._velocity, dynamic=False)

    def velocity(self, x_t: Tensor, t: Tensor, cond: ChunkCondition, guidance: Tensor | None = None,
                 span: Tensor | None = None) -> Tensor:
        """Predicted velocity [N,C,c,h,w] of the noisy chunk x_t [N,C,c,h,w] at time t [N]. A distilled
        student also takes the guidance scale [N] and the span [N] of the Euler step it takes from t (its
        output is then the mean velocity over that step of its teacher's guided solution)."""
        rope = self.rope(cond.tokens.shape[1], x_t.device)  # outside the compiled graph: a cache, not a guard
        if self._compiled is not None and not (self.training and torch.is_grad_enabled()):
            cond = ChunkCondition(*(f.contiguous() for f in cond.fields()))  # one stride pattern: one graph
            return self._compiled(x_t.contiguous(), t, cond, guidance, span, rope)
        return self._velocity(x_t, t, cond, guidance, span, rope)

    def _velocity(self, x_t: Tensor, t: Tensor, cond: ChunkCondition, guidance: Tensor | None,
                  span: Tensor | None, rope: tuple[Tensor, Tensor]) -> Tensor:
        N, C, c, h, w = x_t.shape
        p = self.cfg.patch_size
        chunk = self.patch_in(patchify(rearrange(x_t, "n t c h w -> (n t) c h w"), p))  # [(N C),n,D]
        chunk = rearrange(chunk, "(n t) k d -> n t k d", n=N)  # [N,C,n,D]
        frame_audio = self.audio_in(rearrange(self.audio_embed(cond.audio), "n t a e -> n t (a e)"))  # [N,C,D]
        chunk = chunk + frame_audio[:, :, None] + self.type_embed.weight[CHUNK]
        tokens = torch.cat([
            self.cond_in(cond.tokens) + self.type_embed.weight[COND],  # [N,M,D]
            self.patch_in(patchify(cond.ref, p)) + self.type_embed.weight[REF],  # [N,n,D]
            self.patch_in(patchify(cond.prev, p)) + self.type_embed.weight[PREV],  # [N,n,D]
            rearrange(chunk, "n t k d -> n (t k) d"),  # [N,C n,D]
        ], dim=1)  # [N,L,D]
        c_vec = self.time_embed(t) + self.noise_embed(cond.noise_level)  # [N,D]
        if self.distilled:
            if guidance is None or span is None:
                raise ValueError("a guidance-distilled decoder needs the guidance scale and the step span")
            c_vec = c_vec + self.guidance_embed(guidance_input(guidance)) + self.span_embed(span)
        for block in self.blocks:
            if self.cfg.gradient_checkpointing and self.training and torch.is_grad_enabled():
                tokens = checkpoint(block, tokens, c_vec, rope, use_reentrant=False)
            else:
                tokens = block(tokens, c_vec, rope)
        shift, scale = self.final_modulation(c_vec)[:, None].chunk(2, dim=-1)  # [N,1,D]
        out = self.patch_out(self.final_norm(tokens[:, -C * self.patches:]) * (1 + scale) + shift)  # [N,C n,cpp]
        out = rearrange(out, "n (t k) e -> (n t) k e", t=C)
        return rearrange(unpatchify(out, p, h, w), "(n t) c h w -> n t c h w", n=N)  # [N,C,c,h,w]

    def rope(self, cond_tokens: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """cos, sin [L,d/2] of the sequence with ``cond_tokens`` condition tokens (at frame 0), built
        once per device and shared by every sequence and block."""
        key = (cond_tokens, device)
        if key not in self._rope:
            positions = torch.cat([self.positions.new_zeros(cond_tokens, 3), self.positions]).to(device)  # [L,3]
            self._rope[key] = rope_tables(positions, self.rope_dims)
        return self._rope[key]

    def forward(self, target: Tensor, cond: ChunkCondition, generator: torch.Generator | None = None) -> Tensor:
        """Per-frame rectified-flow loss [N,C] (velocity target eps - x0) for clean chunks target [N,C,c,h,w]."""
        N = target.shape[0]
        t = flow.sample_time(N, mean=self.time_mean, std=self.time_std, mu=self.mu, generator=generator,
                             device=target.device)  # [N]
        noise = torch.randn(target.shape, generator=generator, device=target.device, dtype=target.dtype)
        x_t = flow.interpolate(target, noise, t.to(target.dtype))  # [N,C,c,h,w]
        v = self.velocity(x_t, t, cond)
        return (v - flow.velocity_target(target, noise)).pow(2).mean(dim=(2, 3, 4))  # [N,C]

    @torch.no_grad()
    def sample(self, noise: Tensor, cond: ChunkCondition, uncond: ChunkCondition | None = None, *,
               euler_steps: int = 4, guidance: float = 1.0, guidance_interval: tuple[float, float] = (0.0, 1.0),
               guidance_rescale: float = 0.0, guidance_mode: str = "batched") -> Tensor:
        """Euler steps from noise [N,C,c,h,w] to latents. With ``uncond`` (the unconditional branch's
        condition) the velocity is guided, v_u + guidance * (v_c - v_u), both branches in one
        batched call, on the steps whose time t (1 = noise, 0 = data) lies in ``guidance_interval``; the
        other steps take the conditional velocity alone, in one pass (Kynkaanniemi et al. 2024, "Applying
        guidance in a limited interval"). ``guidance_rescale`` phi blends the guided velocity with itself
        scaled to the conditional one's standard deviation per sample (Lin et al. 2024, section 3.4),
        which keeps guidance from pushing colours and contrast. ``guidance_mode`` "separate" runs the two
        branches as two calls (the same velocities; for measuring what batching them saves)."""
        if self.distilled:
            return self.sample_distilled(noise, cond, euler_steps=euler_steps, guidance=guidance)
        if guidance_mode not in ("batched", "separate"):
            raise ValueError(f"guidance_mode {guidance_mode!r}: choose batched or separate")
        grid = flow.time_grid(euler_steps, self.mu, device=noise.device)

        def conditional(x: Tensor, t: Tensor, span: Tensor | None = None) -> Tensor:
            return self.velocity(x, t, cond)

        if uncond is None or guidance == 1.0:
            return flow.euler_solve(conditional, noise, grid)
        both = cond.with_branch(uncond)
        low, high = guidance_interval

        def guided(x: Tensor, t: Tensor, span: Tensor) -> Tensor:
            if not low <= float(t[0]) <= high:
                return conditional(x, t)
            return self.guided_velocity(x, t, cond, uncond, guidance, guidance_rescale, guidance_mode, both=both)

        return flow.euler_solve(guided, noise, grid)

    def guided_velocity(self, x: Tensor, t: Tensor, cond: ChunkCondition, uncond: ChunkCondition,
                        guidance: float | Tensor, guidance_rescale: float = 0.0, guidance_mode: str = "batched",
                        both: ChunkCondition | None = None) -> Tensor:
        """The classifier-free guided velocity v_u + guidance * (v_c - v_u) [N,C,c,h,w]; ``guidance`` a
        scale or one per row [N]; ``both`` = cond.with_branch(uncond) when the caller already built it."""
        if guidance_mode == "separate":
            v_c, v_u = self.velocity(x, t, cond), self.velocity(x, t, uncond)
        else:
            both = cond.with_branch(uncond) if both is None else both
            v_c, v_u = self.velocity(torch.cat([x, x]), torch.cat([t, t]), both).chunk(2)
        if isinstance(guidance, Tensor):
            guidance = guidance.to(v_c.dtype).view(-1, *([1] * (v_c.dim() - 1)))
        out = v_u + guidance * (v_c - v_u)
        if guidance_rescale > 0:
            dims = tuple(range(1, out.dim()))
            scaled = out * (v_c.std(dim=dims, keepdim=True) / out.std(dim=dims, keepdim=True).clamp_min(1e-6))
            out = guidance_rescale * scaled + (1 - guidance_rescale) * out
        return out

    @torch.no_grad()
    def sample_distilled(self, noise: Tensor, cond: ChunkCondition, *, euler_steps: int, guidance: float) -> Tensor:
        """A guidance-distilled student's sampler: ``euler_steps`` steps (one it was distilled for) on the
        same time grid as its teacher's, each one pass that reads the guidance scale and the step's span;
        no unconditional branch."""
        if not self.distilled:
            raise ValueError("guidance_mode distilled: this decoder is not a guidance-distilled student "
                             "(distil one with scripts/distill_guidance.py)")
        if euler_steps not in self.cfg.distilled_steps:
            raise ValueError(f"{euler_steps} Euler steps: this student was distilled for "
                             f"{', '.join(map(str, sorted(self.cfg.distilled_steps)))} steps")
        scale = noise.new_full((noise.shape[0],), float(guidance))  # [N]
        return flow.euler_solve(lambda x, t, span: self.velocity(x, t, cond, scale, span), noise,
                                flow.time_grid(euler_steps, self.mu, device=noise.device))


def guidance_input(guidance: Tensor) -> Tensor:
    """A guidance scale (1 = none, 1..5 in use) -> the [0,1] range the scalar embedder reads."""
    return (guidance - 1.0) / 4.0
