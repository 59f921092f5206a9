"""`dyadgen fit-tokenizer`: fit the small log-mel + k-means audio tokenizer on a corpus."""

from __future__ import annotations

import argparse
from pathlib import Path

from tqdm.auto import tqdm

from dyadgen.encoders.fitted import FittedTokenizer
from dyadgen.errors import UserError
from dyadgen.io.audio import load_audio


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, nargs="+", metavar="PATH",
                        help="dataset roots (their per-person *_mute.wav, else *_left/_right.wav) or wav files")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder to write tokenizer.json/.safetensors")
    parser.add_argument("--codes", type=int, default=128, help="number of codes (the padding code is extra)")
    parser.add_argument("--n-mels", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)


def corpus_wavs(paths: list[str]) -> list[str]:
    files: list[str] = []
    for p in map(Path, paths):
        if p.is_dir():
            mute = sorted(p.rglob("*_mute.wav"))
            files += map(str, mute or sorted(p.rglob("*_left.wav")) + sorted(p.rglob("*_right.wav")))
        else:
            files.append(str(p))
    return files


def run(args: argparse.Namespace) -> int:
    files = corpus_wavs(args.data)
    if not files:
        raise UserError(f"{' '.join(args.data)}: no wav files found")
    wavs, skipped = [], []
    for f in tqdm(files, desc="read"):
        try:
            wavs.append(load_audio(f))
        except UserError as err:
            skipped.append(str(err))
    tokenizer = FittedTokenizer.fit(wavs, num_codes=args.codes, n_mels=args.n_mels, seed=args.seed)
    tokenizer.save_pretrained(args.out)
    used = len(set(tokenizer.encode(wavs[0]).tolist())) if wavs else 0
    print(f"fitted {args.codes} codes on {len(wavs)} tracks ({sum(map(len, wavs)) / 16000 / 60:.1f} min); "
          f"{used} codes used in the first track; skipped {len(skipped)}; wrote {args.out}")
    for line in skipped:
        print(f"  skipped: {line}")
    return 0
