"""Distil a tiny decoder (diffusers AutoencoderTiny, TAEF1's class) from a checkpoint's VAE decoder, in the
same latent space, and save it in the checkpoint folder as fast_decoder/ (what `dyadgen infer
--fast-decoder` uses).

    python scripts/distill_fast_decoder.py --checkpoint checkpoints/dyadgen-tiny --data ROOT [--minutes 6]

The student learns to reproduce the full decoder's frames from the latents of a corpus's faces (the
training split of their dialogue ids); its PSNR against the full decoder on the held-out split is printed
and saved beside it (fast_decoder/distillation.json). The real presets use TAEF1 itself.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_vae import collect_frames, psnr  # noqa: E402 - the frame collection of the VAE's own training

CHANNELS = (32, 32, 32, 32)  # three x2 upsamplings = the tiny VAE's factor 8


def student(latent_channels: int, factor: int):
    from diffusers import AutoencoderTiny

    blocks = 1 + factor.bit_length() - 1  # a x2 upsampling between consecutive blocks
    return AutoencoderTiny(latent_channels=latent_channels, encoder_block_out_channels=CHANNELS[:blocks],
                           decoder_block_out_channels=CHANNELS[:blocks], num_encoder_blocks=(1,) * blocks,
                           num_decoder_blocks=(2,) * (blocks - 1) + (1,))


def raw_latents(vae, frames: torch.Tensor) -> torch.Tensor:
    """uint8 [N,3,H,W] -> the VAE's unscaled latents [N,c,h,w] (what VideoVAE.decode hands a decoder)."""
    return vae.encode(frames.float() / 127.5 - 1) / vae.scale + vae.shift


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="an inference folder")
    parser.add_argument("--data", required=True, help="a corpus in SocioEmoDialog's layout")
    parser.add_argument("--minutes", type=float, default=6.0)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--stride", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from tqdm.auto import tqdm

    from dyadgen.checkpoint import FAST_DECODER_DIR, load_inference_folder

    torch.manual_seed(args.seed)
    folder = load_inference_folder(args.checkpoint)
    vae, cfg = folder.vae, folder.config
    train_frames, held_frames = collect_frames(args.data, (cfg.data.height, cfg.data.width), args.stride, cfg)
    with torch.no_grad():
        z_train, z_held = raw_latents(vae, train_frames), raw_latents(vae, held_frames)  # [N,c,h,w]
        target_train = torch.cat([vae.vae.decode(z).sample.clamp(-1, 1) for z in z_train.split(64)])  # [N,3,H,W]
        target_held = torch.cat([vae.vae.decode(z).sample.clamp(-1, 1) for z in z_held.split(64)])
    print(f"{len(z_train)} training latents, {len(z_held)} held-out")
    net = student(vae.latent_channels, vae.factor)
    opt = torch.optim.AdamW(net.decoder.parameters(), lr=args.lr, weight_decay=0.0)
    deadline, step = time.monotonic() + args.minutes * 60, 0
    bar = tqdm(desc="distil", unit="step")
    while time.monotonic() < deadline:
        idx = torch.randint(0, len(z_train), (args.batch,))
        out = net.decode(z_train[idx]).sample  # [B,3,H,W] in [-1,1]
        loss = (out - target_train[idx]).abs().mean() + (out - target_train[idx]).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}")
    bar.close()
    net.eval()
    with torch.no_grad():
        student_held = torch.cat([net.decode(z).sample.clamp(-1, 1) for z in z_held.split(64)])
    report = {"steps": step, "held_out_frames": len(z_held),
              "psnr_vs_full_decoder_db": psnr(student_held, target_held),
              "psnr_full_decoder_vs_frames_db": psnr(target_held, held_frames.float() / 127.5 - 1),
              "psnr_fast_decoder_vs_frames_db": psnr(student_held, held_frames.float() / 127.5 - 1)}
    out_dir = Path(args.checkpoint) / FAST_DECODER_DIR
    tmp = out_dir.with_name(f".{FAST_DECODER_DIR}.tmp")
    net.save_pretrained(str(tmp))
    (tmp / "distillation.json").write_text(json.dumps(report, indent=2))
    if out_dir.exists():
        import shutil

        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
