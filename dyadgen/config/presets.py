"""The presets: the same config classes at real size (``real``, ``real-0.5b``), at a size that builds on the
CPU in seconds with random weights and no download (``tiny``), and between them (``small``)."""

from __future__ import annotations

import typing

from dyadgen.config.schema import (
    AudioTokenizerConfig,
    BackboneConfig,
    ConfigError,
    DataConfig,
    DecoderConfig,
    DyadGenConfig,
    InferConfig,
    ModelConfig,
    TrainConfig,
    VAEConfig,
)


def _tiny() -> DyadGenConfig:
    # the model window is shorter than the training window, as in the real presets
    return DyadGenConfig(preset="tiny", model=ModelConfig(history_steps=8))


def _small() -> DyadGenConfig:
    # the tiny preset's frames and encoders with a wider, deeper backbone and decoder (94 M parameters):
    # what `dyadgen bench` measures training throughput on, between tiny and real
    return DyadGenConfig(
        preset="small",
        backbone=BackboneConfig(hidden_size=640, num_hidden_layers=10, num_attention_heads=10, num_key_value_heads=2,
                                intermediate_size=2048),
        decoder=DecoderConfig(hidden_size=512, depth=8, num_heads=8),
        model=ModelConfig(history_steps=8, decoder_steps_per_sample=4),  # the decoder's loss on 4 of 16 steps
    )


def _real() -> DyadGenConfig:
    return DyadGenConfig(
        preset="real",
        data=DataConfig(height=512, width=448, window_steps=64, window_stride_steps=32),
        audio_tokenizer=AudioTokenizerConfig(
            kind="whisper_vq",
            name_or_path="WhisperSpeech/WhisperSpeech:whisper-vq-stoks-medium-en+pl.model",
            num_codes=512,
            n_mels=80,
        ),
        vae=VAEConfig(
            name_or_path="black-forest-labs/FLUX.1-schnell",
            subfolder="vae",
            latent_channels=16,
            block_out_channels=(128, 256, 512, 512),
            layers_per_block=2,
            shift_factor=0.1159,
            scaling_factor=0.3611,
            fast_decoder="madebyollin/taef1",
            encode_batch=8,
        ),
        backbone=BackboneConfig(
            name_or_path="Qwen/Qwen2.5-3B",
            hidden_size=2048,
            num_hidden_layers=36,
            num_attention_heads=16,
            num_key_value_heads=2,
            intermediate_size=11008,
            vocab_size=151936,
            rope_theta=1_000_000.0,
            max_position_embeddings=32768,
            tie_word_embeddings=True,
            text_tokenizer="qwen",
            gradient_checkpointing=True,
            freeze_text_embeddings=True,
        ),
        decoder=DecoderConfig(hidden_size=768, depth=16, num_heads=12, patch_size=2, gradient_checkpointing=True),
        # a 5 s history window inside 10 s training windows; the decoder's loss on 4 of the 64 steps
        model=ModelConfig(chunk_frames=4, motion_tokens=8, history_steps=32, audio_lookahead=2,
                          decoder_steps_per_sample=4),
        train=TrainConfig(batch_size=8, lr=1e-4, backbone_lr=2e-5, warmup_steps=1000, max_steps=200_000,
                          save_every=2000, val_every=2000, sample_every=10_000, ema_decay=0.9999),
        # 2 guided Euler steps and TAEF1: projected 2.8x real time for both people on one H100 at 40 % (4 steps
        # and the full VAE: 1.0x); a guidance-distilled student (scripts/distill_guidance.py) sets its own
        infer=InferConfig(euler_steps=2, guidance=2.0, fast_decoder=True),
    )


def _real_05b() -> DyadGenConfig:
    cfg = _real()
    cfg.preset = "real-0.5b"
    cfg.backbone = BackboneConfig(
        name_or_path="Qwen/Qwen2.5-0.5B",
        hidden_size=896,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        intermediate_size=4864,
        vocab_size=151936,
        rope_theta=1_000_000.0,
        max_position_embeddings=32768,
        tie_word_embeddings=True,
        text_tokenizer="qwen",
        gradient_checkpointing=True,
        freeze_text_embeddings=True,
    )
    return cfg


PRESETS: dict[str, typing.Callable[[], DyadGenConfig]] = {
    "tiny": _tiny,
    "small": _small,
    "real": _real,
    "real-0.5b": _real_05b,
}


def preset(name: str) -> DyadGenConfig:
    if name not in PRESETS:
        raise ConfigError(f"preset: unknown preset {name!r} (choose from {', '.join(PRESETS)})")
    return PRESETS[name]()


