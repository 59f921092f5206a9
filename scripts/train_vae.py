"""Train the tiny VAE (diffusers AutoencoderKL, the same class as the FLUX VAE) on a corpus's faces.

    python scripts/train_vae.py --data ROOT --out DIR [--config configs/tiny_synthetic.yaml] [--minutes 6]
    accelerate launch scripts/train_vae.py ...   (several processes: each takes its own batches)

Frames are every ``--stride``-th frame of each video's people, cropped by the shared crop rule to
data.height x data.width. Held-out dialogues (the val/test split of their id) are never trained on;
their PSNR is reported. After training the latent shift and scale are set so the training frames'
latents have mean 0 and std 1, and the VAE is saved with save_pretrained (config.json + safetensors).
"""

from __future__ import annotations

import argparse
import math
import time

import torch


def collect_frames(root: str, size: tuple[int, int], stride: int, cfg) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 frames [N,3,H,W] of the training split and of the held-out split: every ``stride``-th
    frame of each raw video, streamed (a long video is never decoded whole)."""
    import numpy as np
    from tqdm.auto import tqdm

    from dyadgen.data.socioemodialog import index_dataset
    from dyadgen.data.splits import split_of
    from dyadgen.media.clips import ClipError, crop_people, stream_frames, video_boxes

    index = index_dataset(root, script_json=cfg.data.script_json, video_to_dialogue=cfg.data.video_to_dialogue)
    train, held = [], []
    for video in tqdm(index.videos, desc="frames"):
        if video.raw_video is None:
            continue
        try:
            kept, T = [], 0
            for piece in stream_frames(video.raw_video, 64):
                kept.append(piece[(-T) % stride:: stride])  # the frames whose index is a multiple of stride
                T += len(piece)
            frames = np.concatenate(kept)  # [ceil(T/stride),H,W,3]
            boxes = video_boxes(video.raw_video, T)  # the shared crop rule, over the whole video
        except ClipError as err:
            print(f"skipped: {err}")
            continue
        people, _ = crop_people(frames, size, boxes)  # [P,T,3,h,w]
        split = split_of(video.dialogue_id or video.name, cfg.data.val_fraction, cfg.data.test_fraction)
        (train if split == "train" else held).append(torch.from_numpy(people.reshape(-1, *people.shape[2:])))
    if not held:  # a tiny corpus may hash every dialogue into train: hold out the last video instead
        held.append(train.pop())
    return torch.cat(train), torch.cat(held)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of frames in [-1,1]."""
    mse = ((a - b) / 2).pow(2).mean().item()
    return 10 * math.log10(1 / max(mse, 1e-12))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="dataset root (SocioEmoDialog layout)")
    parser.add_argument("--out", required=True, help="folder for the trained VAE")
    parser.add_argument("--config", default=None)
    parser.add_argument("--minutes", type=float, default=6.0, help="training time budget")
    parser.add_argument("--max-steps", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--kl", type=float, default=1e-6)
    parser.add_argument("--stride", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--init", default=None, help="continue training a VAE saved by this script")
    parser.add_argument("overrides", nargs="*")
    return parser.parse_args()


def to_float(frames: torch.Tensor) -> torch.Tensor:
    """uint8 -> float in [-1,1]."""
    return frames.float() / 127.5 - 1


def fit(vae, accelerator, frames: torch.Tensor, args: argparse.Namespace, gen: torch.Generator) -> int:
    """L1 reconstruction + a small KL until ``--max-steps`` or ``--minutes``; returns the steps taken."""
    from tqdm.auto import tqdm

    opt = torch.optim.AdamW(vae.parameters(), lr=args.lr, weight_decay=0.0)
    vae, opt = accelerator.prepare(vae, opt)
    model = accelerator.unwrap_model(vae)
    deadline = time.monotonic() + args.minutes * 60
    bar = tqdm(total=args.max_steps, disable=not accelerator.is_main_process, desc="vae")
    step = 0
    while step < args.max_steps and time.monotonic() < deadline:
        idx = torch.randint(len(frames), (args.batch,), generator=gen)
        x = to_float(frames[idx]).to(accelerator.device)  # [B,3,H,W]
        posterior = model.encode(x).latent_dist
        # decode the posterior mean: DyadGen encodes with the mean (latent_dist.mode()), and a small
        # VAE trained on the sample spends most of a CPU budget shrinking its noise first
        recon = model.decode(posterior.mode()).sample
        loss = (recon - x).abs().mean() + args.kl * posterior.kl().mean()
        opt.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        step += 1
        bar.update(1)
        if step % 20 == 0:
            bar.set_postfix(l1=f"{loss.item():.4f}")
    bar.close()
    return step


def normalized(vae, train_frames: torch.Tensor, held_frames: torch.Tensor, encode_batch: int,
               gen: torch.Generator):
    """The trained VAE as DyadGen uses it, its latent shift and scale set from 512 training frames;
    with the held-out PSNR and latents."""
    from dyadgen.encoders.video_vae import VideoVAE

    adapter = VideoVAE(vae.float().cpu(), batch=encode_batch)
    with torch.no_grad():
        sample = to_float(train_frames[torch.randperm(len(train_frames), generator=gen)[:512]])
        adapter.set_normalization(0.0, 1.0)
        z = adapter.encode(sample)  # raw latents
        adapter.set_normalization(z.mean().item(), 1.0 / z.std().item())
        held = to_float(held_frames[:: max(1, len(held_frames) // 256)])
        held_latents = adapter.encode(held)
        return adapter, psnr(adapter.decode(held_latents), held), held_latents


def main() -> None:
    args = parse_args()
    from accelerate import Accelerator

    from dyadgen.config import VAEConfig, load_config
    from dyadgen.encoders.video_vae import VideoVAE, build_autoencoder_kl

    cfg = load_config(args.config, args.overrides)
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    torch.manual_seed(args.seed)
    size = (cfg.data.height, cfg.data.width)
    train_frames, held_frames = collect_frames(args.data, size, args.stride, cfg)
    accelerator.print(f"{len(train_frames)} training frames, {len(held_frames)} held-out frames at {size}")
    if args.init:
        vae = VideoVAE.from_config(VAEConfig(name_or_path=args.init)).vae.requires_grad_(True).train()
    else:
        vae = build_autoencoder_kl(cfg.vae)
    accelerator.print(f"VAE: {sum(p.numel() for p in vae.parameters()):,} parameters")
    gen = torch.Generator().manual_seed(args.seed + accelerator.process_index)
    steps = fit(vae, accelerator, train_frames, args, gen)
    adapter, quality, held_latents = normalized(accelerator.unwrap_model(vae), train_frames, held_frames,
                                                cfg.vae.encode_batch, gen)
    if accelerator.is_main_process:
        adapter.save_pretrained(args.out)
        print(f"trained {steps} steps; held-out PSNR {quality:.2f} dB; held-out latents mean "
              f"{held_latents.mean():.3f} std {held_latents.std():.3f}; saved to {args.out}")


if __name__ == "__main__":
    main()
