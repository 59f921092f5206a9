"""`dyadgen infer`: two speech tracks (or one stereo file) -> a video of both people."""

from __future__ import annotations

import argparse

from dyadgen.commands.sampling import add_unconditional_arguments
from dyadgen.errors import UserError
from dyadgen.inference.pipeline import DyadGenPipeline


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--left", metavar="WAV", help="the left person's speech (mono; wav/flac/mp3/m4a, any rate)")
    parser.add_argument("--right", metavar="WAV", help="the right person's speech (mono)")
    parser.add_argument("--dialogue", metavar="STEREO", help="one stereo file: left channel = left person")
    parser.add_argument("--out", default="dialogue.mp4", metavar="MP4")
    parser.add_argument("--left-ref", metavar="IMAGE", help="portrait of the left person (any size; a face is needed)")
    parser.add_argument("--right-ref", metavar="IMAGE")
    parser.add_argument("--checkpoint", metavar="DIR|HUB", help="inference folder (default: the bundled checkpoint)")
    parser.add_argument("--steps", type=int, default=None, help="Euler steps of the decoder")
    parser.add_argument("--guidance", "--cfg", type=float, default=None, help="guidance scale on the audio")
    parser.add_argument("--guidance-interval", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
                        help="guide only the Euler steps whose flow time (1 = noise, 0 = data) lies in [LOW, HIGH]")
    parser.add_argument("--guidance-rescale", type=float, default=None, metavar="PHI",
                        help="0..1: pull the guided velocity to the conditional one's spread (keeps colours)")
    parser.add_argument("--guidance-mode", choices=["batched", "separate", "distilled"], default=None,
                        help="classifier-free guidance with the decoder's two branches in one batched call or in "
                             "two, or the checkpoint's guidance-distilled student (one pass per step; --steps 4, 2 "
                             "or 1) (default: the checkpoint's)")
    add_unconditional_arguments(parser)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--left-emotion", metavar="LABEL")
    parser.add_argument("--right-emotion", metavar="LABEL")
    parser.add_argument("--layout", choices=["side-by-side", "separate"], default=None)
    parser.add_argument("--device", default="auto", help="auto (the GPU when there is one), cpu, cuda or cuda:N")
    parser.add_argument("--dtype", choices=["auto", "fp32", "bf16", "fp16"], default="auto",
                        help="precision of the backbone, decoder and VAE (auto: bf16 on a GPU, fp32 on the CPU)")
    parser.add_argument("--fast-decoder", action="store_true",
                        help="decode with the checkpoint's tiny decoder (TAEF1 for the real presets): faster, softer")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the decoder step (the first steps wait for the compile; see `dyadgen "
                             "bench` for whether it pays on your machine)")
    parser.add_argument("--max-seconds", type=float, default=None, metavar="X")


def run(args: argparse.Namespace) -> int:
    if args.dialogue is None and (args.left is None or args.right is None):
        raise UserError("give both --left and --right, or one stereo --dialogue file")
    pipe = DyadGenPipeline.from_pretrained(args.checkpoint, device=args.device, dtype=args.dtype)
    options = pipe.options(  # the checkpoint's settings, changed where a flag is given
        euler_steps=args.steps, guidance=args.guidance, seed=args.seed, layout=args.layout,
        guidance_interval=tuple(args.guidance_interval) if args.guidance_interval else None,
        guidance_rescale=args.guidance_rescale, guidance_mode=args.guidance_mode,
        unconditional_audio=args.unconditional_audio,
        unconditional_tracks=args.unconditional_tracks, left_emotion=args.left_emotion,
        right_emotion=args.right_emotion,
        max_seconds=args.max_seconds, fast_decoder=args.fast_decoder or None,
        compile=args.compile or None)
    paths = pipe(args.left, args.right, dialogue=args.dialogue, out=args.out, left_ref=args.left_ref,
                 right_ref=args.right_ref, options=options)
    print("wrote " + ", ".join(map(str, paths)))
    return 0
