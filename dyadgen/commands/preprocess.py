"""`dyadgen preprocess`: a dataset root -> webdataset shards through the frozen encoders."""

from __future__ import annotations

import argparse
import os

import torch

from dyadgen.cache.preprocess import preprocess, storage_per_hour
from dyadgen.commands.config import add_config_arguments, resolve
from dyadgen.devices import pick_device, pick_dtype
from dyadgen.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", metavar="ROOT", help="dataset root (default: data.root of the config)")
    parser.add_argument("--out", metavar="SHARDS", help="shard folder (default: data.shards of the config)")
    parser.add_argument("--workers", type=int, default=None,
                        help="videos encoded at once, in separate processes (default: data.preprocess_workers)")
    parser.add_argument("--device", default="auto",
                        help="where the frozen encoders run: auto (default: the GPU when there is one), cpu, cuda:N")
    parser.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                        help="precision of the VAE encoder (auto: bf16 on a GPU, fp32 on the CPU; latents are "
                             "stored in bf16 either way); the audio tokenizer stays fp32")
    parser.add_argument("--batch-size", type=int, default=None, metavar="N",
                        help="frames decoded and encoded per VAE call; memory is flat in the video's length and "
                             "grows with this (default: vae.encode_batch of the config)")
    parser.add_argument("--shard-index", type=int, default=None, metavar="I",
                        help="encode only the videos of part I of --num-shards (default: RANK under torchrun / "
                             "accelerate launch, else 0)")
    parser.add_argument("--num-shards", type=int, default=None, metavar="N",
                        help="split the video list into N parts, one per process or job-array task (default: "
                             "WORLD_SIZE under torchrun / accelerate launch, else 1)")
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    cfg = resolve(args)
    if args.batch_size is not None:
        if args.batch_size < 1:
            raise UserError(f"--batch-size {args.batch_size}: must be at least 1")
        cfg.vae.encode_batch = args.batch_size
    root, out = args.data or cfg.data.root, args.out or cfg.data.shards
    if not root or not out:
        raise UserError("preprocess needs --data ROOT and --out SHARDS (or data.root / data.shards in the config)")

    pick_dtype(args.dtype, pick_device(args.device))  # a request the machine cannot run fails before any work

    num_shards = args.num_shards if args.num_shards is not None else int(os.environ.get("WORLD_SIZE", 1))
    shard_index = args.shard_index if args.shard_index is not None else int(os.environ.get("RANK", 0))
    device = args.device
    if device == "auto" and num_shards > 1 and "LOCAL_RANK" in os.environ:
        device = f"cuda:{os.environ['LOCAL_RANK']}" if _has_cuda() else "cpu"  # one GPU per launched process

    need = storage_per_hour(cfg)
    c, h, w = need["latent_shape"]
    print(f"shards take about {need['bytes'] / 1e9:.1f} GB per hour of video ({400 * need['bytes'] / 1e12:.1f} TB "
          f"for SocioEmoDialog's 400 h): latents [{c},{h},{w}] per person and frame in bf16, each stored once, "
          f"{need['refs'] / 1e9:.2f} GB of it reference latents")
    s = preprocess(root, out, cfg, workers=args.workers or cfg.data.preprocess_workers, device=device,
                   dtype=args.dtype, shard_index=shard_index, num_shards=num_shards)
    if num_shards > 1:
        print(f"part {shard_index} of {num_shards} (videos by a hash of their name)")
    print(f"wrote {s.samples} training windows from {s.videos} videos ({dict(s.splits)}); {s.resumed} videos already "
          "done; "
          f"{s.centre_crops} person-clips centre-cropped (no face found); {s.skipped_clips} turn clips skipped "
          f"(shorter than a window or misaligned); skipped {len(s.skipped)} videos")
    for path, reason in s.skipped:
        print(f"  skipped {path}: {reason}")
    return 0


def _has_cuda() -> bool:
    return torch.cuda.is_available()
