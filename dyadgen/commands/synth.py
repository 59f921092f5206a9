"""`dyadgen synth`: write a synthetic dyadic corpus in SocioEmoDialog's layout as its own tools write it."""

from __future__ import annotations

import argparse

from dyadgen.data.synthetic import RealVoices, synthesize
from dyadgen.data.voices import PACKAGED, Recorded, have_espeak, packaged_voices
from dyadgen.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, metavar="DIR", help="dataset root to write (resumable)")
    parser.add_argument("--dialogues", type=int, default=48, metavar="N")
    parser.add_argument("--seed", type=int, default=0, metavar="S")
    parser.add_argument("--per-video", type=int, default=1, metavar="D",
                        help="dialogues in sequence in each video (a real recording of a date can hold several)")
    parser.add_argument("--workers", type=int, default=1, metavar="K", help="processes writing videos")
    parser.add_argument("--no-espeak", action="store_true",
                        help="use the numpy speech-like voice even when espeak-ng is installed")
    parser.add_argument("--real-voices", action="store_true",
                        help="some people speak with real recordings that Debian packages ship (apt-get install "
                             "asterisk-core-sounds-en-wav codec2-examples gcin-voice; licences in the README)")
    parser.add_argument("--voices", nargs="+", default=[], metavar="DIR",
                        help="folders of real recordings, each one speaker (used like --real-voices)")
    parser.add_argument("--real-share", type=float, default=0.5, metavar="F",
                        help="the chance that a person speaks with a real voice when there are some (default 0.5)")


def run(args: argparse.Namespace) -> int:
    use_espeak = have_espeak() and not args.no_espeak
    speakers = [Recorded.from_folder(d) for d in args.voices]
    if args.real_voices:
        found = packaged_voices()
        if not found:
            packages = sorted({s.package for s in PACKAGED if not s.held_out})
            raise UserError(f"--real-voices: none of {', '.join(packages)} is installed (apt-get install them)")
        speakers += found
    if not 0 <= args.real_share <= 1:
        raise UserError(f"--real-share {args.real_share}: give a fraction in 0..1")
    root = synthesize(args.out, args.dialogues, args.seed, per_video=args.per_video, workers=args.workers,
                      use_espeak=use_espeak, real=RealVoices(tuple(speakers), args.real_share))
    voice = "espeak-ng Mandarin" if use_espeak else "the speech-like fallback (espeak-ng not used)"
    if speakers:
        voice += f" and {len(speakers)} real speakers ({', '.join(s.name for s in speakers)})"
    print(f"wrote {args.dialogues} dialogues to {root} with voices from {voice}")
    return 0
