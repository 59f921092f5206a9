"""The frozen video VAE behind a thin adapter that owns eval mode, dtype, shift and scale.

frames [T,3,H,W] in [-1,1] <-> latents [T,c,H/f,W/f], with ``latents = (z - shift) * scale`` so the
model sees roughly zero-mean, unit-variance latents. Real: diffusers AutoencoderKL with the FLUX.1
VAE configuration (16 channels, x8, shift 0.1159, scale 0.3611, no quant convs); optional TAEF1
(AutoencoderTiny, same latent space) as the fast decoder. Tiny: the same class at CPU size.
"""

from __future__ import annotations

import os
from pathlib import Path

import diffusers
import torch
from diffusers import AutoencoderKL
from diffusers.utils import logging
from torch import Tensor, nn

from dyadgen.config import VAEConfig
from dyadgen.encoders.hub import resolve_file, resolve_folder

WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"


def build_autoencoder_kl(cfg: VAEConfig):
    """An AutoencoderKL with ``cfg``'s architecture and random weights (use meta device to count)."""
    n = len(cfg.block_out_channels)
    return AutoencoderKL(
        in_channels=3, out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(cfg.block_out_channels), layers_per_block=cfg.layers_per_block,
        latent_channels=cfg.latent_channels, norm_num_groups=min(32, cfg.block_out_channels[0]),
        scaling_factor=cfg.scaling_factor, shift_factor=cfg.shift_factor,
        use_quant_conv=cfg.use_quant_conv, use_post_quant_conv=cfg.use_post_quant_conv,
        mid_block_add_attention=cfg.block_out_channels[-1] >= 256,
    )


class VideoVAE(nn.Module):
    """encode/decode frames in bounded batches, applying the VAE's shift and scale. The batches go in
    channels-last (NHWC), so the convolutions run in that layout: on 2 CPU cores the tiny VAE encoded 1.2x
    faster than in NCHW and the fast decoder decoded 1.2x faster (the full decoder the same), the same
    values within 1e-4. The weights keep their layout: safetensors saves contiguous tensors only."""

    def __init__(self, vae: nn.Module, *, batch: int = 16, fast_decoder: nn.Module | None = None):
        super().__init__()
        self.vae = vae.eval().requires_grad_(False)
        self.fast_decoder = fast_decoder.eval().requires_grad_(False) if fast_decoder is not None else None
        self.batch = batch

    @property
    def shift(self) -> float:
        return float(self.vae.config.shift_factor or 0.0)

    @property
    def scale(self) -> float:
        return float(self.vae.config.scaling_factor)

    @property
    def latent_channels(self) -> int:
        return int(self.vae.config.latent_channels)

    @property
    def factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    def set_normalization(self, shift: float, scale: float) -> None:
        self.vae.register_to_config(shift_factor=float(shift), scaling_factor=float(scale))

    @torch.no_grad()
    def encode(self, frames: Tensor) -> Tensor:
        """frames [T,3,H,W] in [-1,1] -> latents [T,c,H/f,W/f] (the posterior mode, shifted, scaled)."""
        param = next(self.vae.parameters())
        out = []
        for chunk in frames.split(self.batch):
            pixels = chunk.to(param.device, param.dtype, memory_format=torch.channels_last)  # [t,3,H,W]
            z = self.vae.encode(pixels).latent_dist.mode()  # [t,c,h,w]
            out.append(((z - self.shift) * self.scale).float().contiguous())
        return torch.cat(out) if out else frames.new_zeros(0, self.latent_channels, 1, 1)

    @torch.no_grad()
    def decode(self, latents: Tensor, *, fast: bool = False) -> Tensor:
        """latents [T,c,h,w] -> frames [T,3,H,W] in [-1,1]."""
        decoder = self.fast_decoder if fast and self.fast_decoder is not None else self.vae
        param = next(decoder.parameters())
        out = []
        for chunk in latents.split(self.batch):
            z = chunk.to(param.device, param.dtype, memory_format=torch.channels_last) / self.scale + self.shift
            out.append(decoder.decode(z).sample.float().clamp(-1, 1).contiguous())  # [t,3,H,W]
        return torch.cat(out)

    def decode_uint8(self, latents: Tensor, *, fast: bool = False) -> Tensor:
        """latents [T,c,h,w] -> pixels uint8 [T,H,W,3] on the CPU, ready to show or encode."""
        frames = self.decode(latents, fast=fast).cpu()  # [T,3,H,W] in [-1,1]
        return ((frames + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1)  # [T,H,W,3]

    def save_pretrained(self, folder: str | os.PathLike) -> None:
        self.vae.save_pretrained(str(folder))

    @classmethod
    def from_config(cls, cfg: VAEConfig) -> VideoVAE:
        """Load ``cfg.name_or_path`` (a diffusers folder or Hub repo with ``cfg.subfolder``), or build
        a randomly initialised VAE of ``cfg``'s architecture when no name is given."""
        if not cfg.name_or_path:  # the same random weights in every process (tests, multi-worker runs)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                return cls(build_autoencoder_kl(cfg), batch=cfg.encode_batch)
        vae = _load_diffusers("AutoencoderKL", cfg.name_or_path, cfg.subfolder)
        if cfg.shift_factor or cfg.scaling_factor != 1.0:  # the config may pin them (FLUX's published values)
            vae.register_to_config(shift_factor=cfg.shift_factor, scaling_factor=cfg.scaling_factor)
        fast = load_fast_decoder(cfg.fast_decoder) if cfg.fast_decoder else None
        return cls(vae, batch=cfg.encode_batch, fast_decoder=fast)


def load_fast_decoder(name: str | os.PathLike) -> nn.Module:
    """An AutoencoderTiny (TAEF1, or a tiny one distilled for a small VAE) from a folder or Hub name."""
    level = logging.get_verbosity()
    logging.set_verbosity_error()  # diffusers warns about a config key of its own on every AutoencoderTiny load
    try:
        return _load_diffusers("AutoencoderTiny", str(name), "").eval().requires_grad_(False)
    finally:
        logging.set_verbosity(level)


def _load_diffusers(class_name: str, name: str, subfolder: str) -> nn.Module:
    what = f"the {class_name} VAE"
    folder = resolve_folder(name, subfolder=subfolder, what=what)
    if not (folder / WEIGHTS_NAME).is_file() and not Path(name).exists():  # a Hub repo: fetch the weights too
        folder = resolve_file(name, f"{subfolder}/{WEIGHTS_NAME}" if subfolder else WEIGHTS_NAME, what=what).parent
    return getattr(diffusers, class_name).from_pretrained(str(folder), use_safetensors=True)
