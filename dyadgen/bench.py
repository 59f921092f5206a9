"""Benchmarks: parameter counts of every part of a configuration, built on the meta device (no weights).

Speed and memory benchmarks join here as their capabilities land.
"""

from __future__ import annotations

import torch

from dyadgen.config import DyadGenConfig


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def parameter_counts(cfg: DyadGenConfig) -> dict[str, int | None]:
    """Parameters of the audio tokenizer, VAE, backbone (the Qwen2 decoder) and the new parts."""
    from dyadgen.encoders.video_vae import build_autoencoder_kl
    from dyadgen.models import DyadGen

    c = cfg.vae.latent_channels
    f = 2 ** (len(cfg.vae.block_out_channels) - 1)
    with torch.device("meta"):
        vae = build_autoencoder_kl(cfg.vae)
        model = DyadGen.from_config(cfg, num_audio_codes=cfg.audio_tokenizer.num_codes,
                                    latent_shape=(c, cfg.data.height // f, cfg.data.width // f))
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
        from dyadgen.encoders.whisper_vq import count_parameters

        return count_parameters()
    return None
