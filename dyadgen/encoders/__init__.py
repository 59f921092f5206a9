"""Frozen encoders that put audio and video on the shared 25 Hz clock.

``load_encoders(tokenizer_spec, vae_spec, device, dtype)`` loads both and places them the one way they run
everywhere (preprocessing, training, inference): the VAE on the device in the compute dtype, the audio
tokenizer on the same device in fp32, because its codes are an argmin that a lower precision can flip.
A checkpoint folder holds both under fixed names (``AUDIO_TOKENIZER_DIR``, ``VAE_DIR``).
"""

from __future__ import annotations

import os
from typing import Any

import torch

from dyadgen.config import AudioTokenizerConfig, VAEConfig
from dyadgen.encoders.audio_tokenizer import load_audio_tokenizer
from dyadgen.encoders.video_vae import VideoVAE

AUDIO_TOKENIZER_DIR = "audio_tokenizer"
VAE_DIR = "vae"


def load_video_vae(spec: str | os.PathLike | VAEConfig) -> VideoVAE:
    cfg = spec if isinstance(spec, VAEConfig) else VAEConfig(name_or_path=str(spec))
    return VideoVAE.from_config(cfg)


def place_encoders(tokenizer: Any, vae: VideoVAE, device: torch.device | str = "cpu",
                   dtype: torch.dtype = torch.float32) -> None:
    """The VAE on ``device`` in ``dtype``; the audio tokenizer on ``device``, kept in fp32."""
    vae.to(device=device, dtype=dtype)
    if hasattr(tokenizer, "to"):  # the fitted tokenizer is numpy on the CPU; WhisperVQ is a module
        tokenizer.to(device=device, dtype=torch.float32)


def load_encoders(tokenizer: str | os.PathLike | AudioTokenizerConfig, vae: str | os.PathLike | VAEConfig,
                  device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> tuple[Any, VideoVAE]:
    """(audio tokenizer, VAE), loaded and placed by :func:`place_encoders`."""
    encoders = load_audio_tokenizer(tokenizer), load_video_vae(vae)
    place_encoders(*encoders, device, dtype)
    return encoders


__all__ = ["AUDIO_TOKENIZER_DIR", "VAE_DIR", "load_audio_tokenizer", "load_encoders", "load_video_vae",
           "place_encoders"]
