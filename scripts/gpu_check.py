"""The GPU check of the real presets, for a CUDA machine (one short run, no downloads, no dataset):

1. one training step of ``real-0.5b`` at full size in bf16 autocast with activation checkpointing (the
   Qwen2.5-0.5B architecture with random weights loaded through ``from_pretrained``, the real decoder,
   512x448 latents), its peak GPU memory beside the estimate of ``dyadgen bench --memory``;
2. a 10 s two-person generation with the backbone, decoder and VAE decode all on the GPU, its real-time
   factor (the audio tokenizer is left out: WhisperVQ's weights cannot be fetched here; random codes).

    python scripts/gpu_check.py --json gpu_check.json
    python scripts/gpu_check.py --device cpu --preset tiny --seconds 1   # the same script, small, anywhere
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time

import torch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="real-0.5b")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch", type=int, default=1, help="micro-batch of the training step")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the generated dialogue")
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. train.batch_size=2")
    args = parser.parse_args(argv)

    from dyadgen.bench.memory import GIB, estimate_step, real_step
    from dyadgen.clock import FPS
    from dyadgen.config import load_config
    from dyadgen.encoders import load_video_vae

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device here (use --device cpu --preset tiny for a dry run)")
    cfg = load_config(preset_name=args.preset, overrides=args.overrides)
    latent = cfg.latent_shape
    gpu = args.device != "cpu"
    result: dict = {"preset": cfg.preset, "device": torch.cuda.get_device_name() if gpu else "cpu",
                    "batch_size": args.batch, "latent_shape": list(latent)}

    with tempfile.TemporaryDirectory() as tmp:
        model, loss, seconds = real_step(cfg, latent, args.batch, tmp, device=args.device, bf16=gpu)
    estimate = estimate_step(cfg, latent, args.batch, strategy="single", bf16=gpu, foreach=gpu)
    result["train_step"] = {"loss": loss, "seconds": seconds, "estimated_peak_gib": estimate.peak_gib}
    if gpu:
        result["train_step"] |= {"measured_peak_allocated_gib": torch.cuda.max_memory_allocated() / GIB,
                                 "measured_peak_reserved_gib": torch.cuda.max_memory_reserved() / GIB}
    print(json.dumps(result["train_step"], indent=1), flush=True)

    model.eval()
    for p in model.parameters():
        p.grad = None
    vae = load_video_vae(dataclasses.replace(cfg.vae, name_or_path="", fast_decoder="")).to(args.device)  # random
    frames = int(args.seconds * FPS)
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, cfg.audio_tokenizer.num_codes, (2, frames), generator=g).to(args.device)  # [P,T]
    refs = torch.randn(2, *latent, generator=g).to(args.device)  # [P,c,h,w]
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if gpu else torch.autocast("cpu", enabled=False)
    if gpu:
        torch.cuda.synchronize()
    start = time.perf_counter()
    with autocast, torch.no_grad():
        for chunk in model.generate_stream(tokens, refs, **cfg.infer.sampler()):
            for p in range(2):
                vae.decode_uint8(chunk[p])  # [t,H,W,3] on the CPU, as a video writer takes them
    if gpu:
        torch.cuda.synchronize()
    took = time.perf_counter() - start
    result["generation"] = {"seconds_of_video": frames / FPS, "wall_seconds": took,
                            "real_time_factor": frames / FPS / took}
    print(json.dumps(result["generation"], indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
