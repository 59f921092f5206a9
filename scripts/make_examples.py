"""Write examples/left.wav and examples/right.wav: a short Mandarin exchange spoken by espeak-ng.

    python scripts/make_examples.py [--out examples]

Three turns (left, right, left) that alternate and overlap a little; each file holds one person's
voice and silence elsewhere, both the same length, 16 kHz mono. Needs espeak-ng (apt-get install
espeak-ng); without it the numpy speech-like fallback voice is used and a warning printed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

TURNS = (  # (side, text, gap in seconds before this turn starts; negative overlaps the previous turn)
    ("left", "你好，最近怎么样？", 0.5),
    ("right", "还不错，我们去爬山吧。", -0.25),
    ("left", "好啊，太好了。", 0.3),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="examples")
    args = parser.parse_args()

    from dyadgen.clock import SAMPLE_RATE
    from dyadgen.data.voices import Voice, have_espeak, speak
    from dyadgen.io.audio import write_wav

    if not have_espeak():
        print("warning: espeak-ng not found; using the fallback voice")
    rng = np.random.default_rng(0)
    voices = {"left": Voice(pitch=35, speed=175, base_hz=120.0), "right": Voice(pitch=70, speed=180, base_hz=210.0)}
    pieces, cursor = [], 0
    for side, text, gap in TURNS:
        audio = speak(text, voices[side], rng)
        start = max(0, cursor + int(gap * SAMPLE_RATE))
        pieces.append((side, start, audio))
        cursor = start + len(audio)
    length = cursor + int(0.6 * SAMPLE_RATE)
    tracks = {side: np.zeros(length, np.float32) for side in voices}
    for side, start, audio in pieces:
        tracks[side][start: start + len(audio)] += audio
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for side, track in tracks.items():
        write_wav(out / f"{side}.wav", track, SAMPLE_RATE)
    spans = ", ".join(f"{side} {s / SAMPLE_RATE:.2f}-{(s + len(a)) / SAMPLE_RATE:.2f} s" for side, s, a in pieces)
    print(f"wrote {out}/left.wav and {out}/right.wav ({length / SAMPLE_RATE:.2f} s): {spans}")


if __name__ == "__main__":
    main()
