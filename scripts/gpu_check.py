"""The GPU check of the real presets, for a CUDA machine (one short run, no downloads, no dataset). Per preset
(default: real-0.5b, then real), with random weights:

1. one training step at full size in bf16 autocast with activation checkpointing (the Qwen2.5 architecture
   loaded through ``from_pretrained``, the real decoder, 512x448 latents): its time and peak GPU memory
   beside the estimate of ``dyadgen bench --memory``;
2. generation of both people for every sampler setting (Euler steps 4/2/1; guidance in one batched pass,
   or one branch as a guidance-distilled student would run; the full VAE decode and TAEF1): the real-time
   factor (compute seconds per second of video; below 1 = faster than real time) and the peak memory of
   each. The audio tokenizer is left out (WhisperVQ's weights cannot be fetched here; random codes).

    python scripts/gpu_check.py --json gpu_check.json
    python scripts/gpu_check.py --device cpu --presets tiny --seconds 1   # the same script, small, anywhere
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time

import torch
from diffusers import AutoencoderTiny

from dyadgen.bench.memory import GIB, estimate_step, real_step
from dyadgen.bench.speed import synchronize
from dyadgen.clock import FPS
from dyadgen.config import load_config
from dyadgen.encoders import load_video_vae
from dyadgen.io.files import write_text_atomic

STEPS = (4, 2, 1)
BRANCHES = ("guided", "one_branch")  # one_branch: the cost of a guidance-distilled student (guidance 1)
DECODERS = ("full", "taef1")


def train_step(cfg, device: str, batch: int, gpu: bool):
    latent = cfg.latent_shape
    if gpu:
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as tmp:
        model, loss, seconds = real_step(cfg, latent, batch, tmp, device=device, bf16=gpu)
    estimate = estimate_step(cfg, latent, batch, strategy="single", bf16=gpu, foreach=gpu)
    row = {"loss": loss, "seconds": seconds, "estimated_peak_gib": estimate.peak_gib}
    if gpu:
        row |= {"measured_peak_allocated_gib": torch.cuda.max_memory_allocated() / GIB,
                "measured_peak_reserved_gib": torch.cuda.max_memory_reserved() / GIB}
    return model, row


def generation(model, cfg, device: str, seconds: float, gpu: bool) -> dict:
    """RTF and peak memory of each sampler setting, both people, every decoder step and the decode."""
    model.eval()
    for p in model.parameters():
        p.grad = None
    vae = load_video_vae(dataclasses.replace(cfg.vae, name_or_path="", fast_decoder=""))  # random weights
    vae.fast_decoder = AutoencoderTiny(latent_channels=cfg.vae.latent_channels).eval().requires_grad_(False)  # TAEF1
    vae.to(device)
    frames = int(seconds * FPS)
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, cfg.audio_tokenizer.num_codes, (2, frames), generator=g).to(device)  # [P,T]
    refs = torch.randn(2, *cfg.latent_shape, generator=g).to(device)  # [P,c,h,w]
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if gpu else torch.autocast("cpu", enabled=False)
    rows = {}
    for decoder in DECODERS:
        for branch in BRANCHES:
            for steps in STEPS:
                sampler = cfg.infer.sampler() | {"euler_steps": steps}
                if branch == "one_branch":
                    sampler["guidance"] = 1.0
                if gpu:
                    torch.cuda.reset_peak_memory_stats()
                synchronize(torch.device(device))
                start = time.perf_counter()
                with autocast, torch.no_grad():
                    for chunk in model.generate_stream(tokens, refs, **sampler):
                        for p in range(2):
                            vae.decode_uint8(chunk[p], fast=decoder == "taef1")  # [t,H,W,3] on the CPU
                synchronize(torch.device(device))
                row = {"rtf": (time.perf_counter() - start) / (frames / FPS)}
                if gpu:
                    row["peak_allocated_gib"] = torch.cuda.max_memory_allocated() / GIB
                rows[f"steps{steps}/{branch}/{decoder}"] = row
                print(f"  steps{steps}/{branch}/{decoder}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items()),
                      flush=True)
    return {"seconds_of_video": frames / FPS, "settings": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="real-0.5b,real")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch", type=int, default=1, help="micro-batch of the training step")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each generated dialogue")
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. train.batch_size=2")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device here (use --device cpu --presets tiny for a dry run)")
    gpu = args.device != "cpu"
    result: dict = {"device": torch.cuda.get_device_name() if gpu else "cpu", "batch_size": args.batch,
                    "presets": {}}
    for name in args.presets.split(","):
        cfg = load_config(preset_name=name, overrides=args.overrides)
        print(f"{name}: one training step", flush=True)
        model, step = train_step(cfg, args.device, args.batch, gpu)
        print(json.dumps(step, indent=1), flush=True)
        print(f"{name}: generation, {args.seconds:g} s of video per setting", flush=True)
        result["presets"][name] = {"latent_shape": list(cfg.latent_shape), "train_step": step,
                                   "generation": generation(model, cfg, args.device, args.seconds, gpu)}
        del model
        if gpu:
            torch.cuda.empty_cache()
    if args.json:
        write_text_atomic(args.json, json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
