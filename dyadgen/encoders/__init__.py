"""Frozen encoders that put audio and video on the shared 25 Hz clock.

``load_audio_tokenizer(name_or_path)`` and ``load_video_vae(name_or_path)``; a checkpoint folder
holds both under fixed names (``AUDIO_TOKENIZER_DIR``, ``VAE_DIR``).
"""

from __future__ import annotations

import os

from dyadgen.config import VAEConfig

AUDIO_TOKENIZER_DIR = "audio_tokenizer"
VAE_DIR = "vae"


def load_audio_tokenizer(spec):
    from dyadgen.encoders.audio_tokenizer import load_audio_tokenizer as load

    return load(spec)


def load_video_vae(spec: str | os.PathLike | VAEConfig):
    from dyadgen.encoders.video_vae import VideoVAE

    cfg = spec if isinstance(spec, VAEConfig) else VAEConfig(name_or_path=str(spec))
    return VideoVAE.from_config(cfg)


__all__ = ["AUDIO_TOKENIZER_DIR", "VAE_DIR", "load_audio_tokenizer", "load_video_vae"]
