"""`dyadgen synth`: write a synthetic dyadic corpus in SocioEmoDialog's layout as its own tools write it."""

from __future__ import annotations

import argparse

HELP = "write a synthetic two-person corpus (faces, Mandarin voices, ground truth) in SocioEmoDialog's layout"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, metavar="DIR", help="dataset root to write (resumable)")
    parser.add_argument("--dialogues", type=int, default=48, metavar="N")
    parser.add_argument("--seed", type=int, default=0, metavar="S")
    parser.add_argument("--per-video", type=int, default=1, metavar="D",
                        help="dialogues in sequence in each video (a real recording of a date can hold several)")
    parser.add_argument("--workers", type=int, default=1, metavar="K", help="processes writing videos")
    parser.add_argument("--no-espeak", action="store_true",
                        help="use the numpy speech-like voice even when espeak-ng is installed")


def run(args: argparse.Namespace) -> int:
    from dyadgen.data.synthetic import synthesize
    from dyadgen.data.voices import have_espeak

    use_espeak = have_espeak() and not args.no_espeak
    root = synthesize(args.out, args.dialogues, args.seed, per_video=args.per_video, workers=args.workers,
                      use_espeak=use_espeak)
    voice = "espeak-ng Mandarin" if use_espeak else "the speech-like fallback (espeak-ng not used)"
    print(f"wrote {args.dialogues} dialogues to {root} with voices from {voice}")
    return 0
