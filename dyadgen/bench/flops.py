"""Benchmarks on the meta device (no weights, nothing computed): parameter counts of every part of a
configuration and the FLOPs each part needs per second of generated video, with the real-time factor
they project on a named GPU at a stated utilisation.

Measured speed and memory on a real GPU join here as their capabilities land.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderTiny
from torch.utils.flop_counter import FlopCounterMode

from dyadgen.clock import FPS
from dyadgen.config import DyadGenConfig
from dyadgen.encoders.video_vae import build_autoencoder_kl
from dyadgen.encoders.whisper_vq import count_parameters
from dyadgen.models import DyadGen
from dyadgen.models.decoder import ChunkCondition


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _meta_model(cfg: DyadGenConfig):
    """The whole DyadGen model of ``cfg`` on the meta device."""
    with torch.device("meta"):
        return DyadGen.from_config(cfg, num_audio_codes=cfg.audio_tokenizer.num_codes, latent_shape=cfg.latent_shape)


def parameter_counts(cfg: DyadGenConfig) -> dict[str, int | None]:
    """Parameters of the audio tokenizer, VAE, backbone (the Qwen2 decoder) and the new parts."""
    with torch.device("meta"):
        vae = build_autoencoder_kl(cfg.vae)
    model = _meta_model(cfg)
    lm = count(model.backbone.lm)
    counts = {
        "audio_tokenizer": audio_tokenizer_params(cfg),
        "vae": count(vae),
        "backbone": lm,
        "backbone_adapters": count(model.backbone) - lm,  # audio/emotion/stream embeddings, queries, resampler
        "decoder": count(model.decoder),
    }
    counts["total"] = sum(v for v in counts.values() if v is not None)
    return counts


def audio_tokenizer_params(cfg: DyadGenConfig) -> int | None:
    """The fitted tokenizer's codebook (+ normalisation), or the WhisperVQ tokenizer built on the meta device:
    openai/whisper-medium's encoder plus the quantizing head of WhisperSpeech's medium checkpoints."""
    if cfg.audio_tokenizer.kind == "fitted":
        return cfg.audio_tokenizer.num_codes * cfg.audio_tokenizer.n_mels + 2 * cfg.audio_tokenizer.n_mels
    if cfg.audio_tokenizer.kind == "whisper_vq":
        return count_parameters()
    return None


def _meta_flops(fn) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def guidance_branches(cfg: DyadGenConfig) -> int:
    """Batch elements per person at inference: 2 (conditional and unconditional) when ``infer.guidance != 1``."""
    return 2 if cfg.infer.guidance != 1.0 else 1


def decoder_flops_per_second(cfg: DyadGenConfig, model=None) -> dict[str, float]:
    """FLOPs of the flow decoder to render one second of video of both people, counted by
    ``torch.utils.flop_counter`` on the meta device (no weights, nothing computed).

    One second is 25 / C chunk steps; each runs ``infer.euler_steps`` Euler steps of the decoder over both
    people, and over both branches (conditional and unconditional) when ``infer.guidance != 1``. ``model``: the
    meta-device model of ``cfg`` when the caller has built it already.
    """
    latent = cfg.latent_shape
    model = model if model is not None else _meta_model(cfg)
    C, M = cfg.model.chunk_frames, cfg.model.motion_tokens
    branches = guidance_branches(cfg)
    N = 2 * branches  # both people, each branch
    with torch.device("meta"):
        x = torch.zeros(N, C, *latent)  # [N,C,c,h,w] the noisy chunk
        t = torch.zeros(N)
        cond = ChunkCondition(tokens=torch.zeros(N, M, cfg.backbone.hidden_size),  # [N,M,D]
                              ref=torch.zeros(N, *latent), prev=torch.zeros(N, *latent),  # [N,c,h,w]
                              audio=torch.zeros(N, C, model.decoder.audio_tokens, dtype=torch.long),  # [N,C,A]
                              noise_level=t)
        per_call = _meta_flops(lambda: model.decoder.velocity(x, t, cond))
    chunks_per_second = FPS / C
    return {"per_euler_step": per_call, "per_chunk": per_call * cfg.infer.euler_steps,
            "per_second": per_call * cfg.infer.euler_steps * chunks_per_second,
            "euler_steps": cfg.infer.euler_steps, "branches": branches, "tokens_per_sequence":
                M + (2 + C) * model.decoder.patches}


def vae_decode_flops_per_frame(cfg: DyadGenConfig) -> dict[str, float]:
    """FLOPs to decode one frame of one person: the configured AutoencoderKL and TAEF1 (AutoencoderTiny with
    madebyollin/taef1's architecture: 16 channels, 64-wide blocks), counted on the meta device."""
    c = cfg.vae.latent_channels
    with torch.device("meta"):
        z = torch.zeros(1, *cfg.latent_shape)  # [1,c,h,w]
        vae = build_autoencoder_kl(cfg.vae)
        out = {"vae": _meta_flops(lambda: vae.decode(z))}
        if c == 16:  # TAEF1 shares FLUX's latent space only
            taef1 = AutoencoderTiny(latent_channels=16)
            out["taef1"] = _meta_flops(lambda: taef1.decode(z))
    return out


def backbone_flops_per_second(cfg: DyadGenConfig, lm_params: int) -> float:
    """The backbone's FLOPs per second of video, from its shape (the KV cache makes each token's cost fixed):
    2 x (parameters outside the embedding table) per token for the matrix products, plus attention over the
    pinned prefix and the window (4 x context x width per token and layer); every token of every step of
    both people and of each guidance branch."""
    b, m = cfg.backbone, cfg.model
    step = 3 * m.motion_tokens + 2 * m.chunk_frames  # L tokens per step and person
    tokens = 2 * guidance_branches(cfg) * step * FPS / m.chunk_frames  # per second of video
    context = m.max_text_tokens + step + m.history_steps * step  # prefix (text + step 0) + the window
    matmul = 2 * (lm_params - b.vocab_size * b.hidden_size)
    attention = 4 * context * b.hidden_size * b.num_hidden_layers
    return float(tokens * (matmul + attention))


def flops_per_second(cfg: DyadGenConfig, *, gpu_tflops: float = 989.0, utilisation: float = 0.4) -> dict:
    """FLOPs of each part per second of video of both people (``per_second``), the decoder's breakdown
    (``decoder``, see :func:`decoder_flops_per_second`), and the real-time factor they project on a GPU of
    ``gpu_tflops`` dense bf16 (default: one H100 SXM) at ``utilisation`` (``real_time``): ``x`` faster
    than real time with the full VAE decode, ``x_taef1`` with TAEF1."""
    model = _meta_model(cfg)
    decoder = decoder_flops_per_second(cfg, model)
    vae = vae_decode_flops_per_frame(cfg)
    parts = {"backbone": backbone_flops_per_second(cfg, count(model.backbone.lm)),
             "decoder": decoder["per_second"],
             "vae_decode": vae["vae"] * 2 * FPS}
    if "taef1" in vae:
        parts["taef1_decode"] = vae["taef1"] * 2 * FPS
    budget = gpu_tflops * 1e12 * utilisation
    base = parts["backbone"] + parts["decoder"]
    projection = {"gpu_tflops": gpu_tflops, "utilisation": utilisation, "x": budget / (base + parts["vae_decode"])}
    if "taef1_decode" in parts:
        projection["x_taef1"] = budget / (base + parts["taef1_decode"])
    return {"per_second": parts, "decoder": decoder, "real_time": projection}
