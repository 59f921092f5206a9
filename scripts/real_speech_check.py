"""Does a checkpoint's speaker move more than its listener on real human speech it never heard (and does
its listener keep its face through a long dialogue)?

    python scripts/real_speech_check.py [--checkpoint DIR] [--seconds 60] [--out real_speech] [--voices espeak]

The dialogue: turns that alternate between two real speakers that training corpora never hold (the
held-out packaged voices of dyadgen.data.voices: codec2-examples' david4.wav and pocketsphinx-testdata's
LibriVox reading; apt-get install codec2-examples pocketsphinx-testdata), left then right, gaps of
0.2-0.6 s (``--voices espeak``: two espeak-ng voices drawn from ``--seed`` saying the synthetic corpus's
phrases instead, the voices the bundled model was trained on, for a long dialogue beside its training
clips). The model generates once (the checkpoint's sampler settings unless a flag changes one, its
default identities) and both decoders turn the same latents into pictures; per decoder and person the
motion contrast (dyadgen.eval.motion.motion_contrast: how much the picture changes while they speak over
while only the partner speaks) and the mouth opening while speaking and while listening. A model that
hears the speech gives a contrast clearly above 1 on both sides. Writes OUT/dialogue.wav (stereo),
OUT/{full,fast}.mp4, OUT/{full,fast}_every_10s.png (a frame every 10 s, left person over right) and
OUT/real_speech.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dyadgen.clock import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME
from dyadgen.commands.sampling import add_unconditional_arguments
from dyadgen.data.voices import PHRASES, Voice, have_espeak, packaged_voices, speak
from dyadgen.errors import UserError
from dyadgen.eval.motion import motion_contrast, mouth_opening
from dyadgen.inference.pipeline import DyadGenPipeline
from dyadgen.io.audio import write_wav
from dyadgen.io.video import VideoWriter


def speakers(kind: str, rng: np.random.Generator) -> list[Voice]:
    """The two voices of the dialogue: the held-out packaged recordings, or two espeak-ng voices."""
    if kind == "espeak":
        if not have_espeak():
            raise UserError("--voices espeak: espeak-ng is not installed (apt-get install espeak-ng)")
        return [Voice.random(rng) for _ in range(2)]
    recorded = packaged_voices(held_out=True)
    if len(recorded) < 2:
        raise UserError("the held-out real voices are not installed: apt-get install codec2-examples "
                        "pocketsphinx-testdata")
    return [Voice(50, 160, 150.0, recorded=s) for s in recorded[:2]]


def dialogue(seconds: float, seed: int, kind: str = "real") -> tuple[np.ndarray, np.ndarray]:
    """Tracks float32 [P,N] at 16 kHz and who speaks, bool [P,T] per frame."""
    rng = np.random.default_rng(seed)
    voices = speakers(kind, rng)
    n = int(seconds * SAMPLE_RATE) // SAMPLES_PER_FRAME * SAMPLES_PER_FRAME
    tracks = np.zeros((2, n), np.float32)
    speaking = np.zeros((2, n // SAMPLES_PER_FRAME), bool)
    cursor, side = int(0.5 * SAMPLE_RATE), 0
    while cursor < n - SAMPLE_RATE:
        text = "".join(rng.choice(PHRASES, size=int(rng.integers(1, 3)), replace=False)) if kind == "espeak" else ""
        audio = speak(text, voices[side], rng)[: n - cursor]
        tracks[side, cursor: cursor + len(audio)] = audio
        speaking[side, cursor // SAMPLES_PER_FRAME: -(-(cursor + len(audio)) // SAMPLES_PER_FRAME)] = True
        cursor += len(audio) + int(rng.uniform(0.2, 0.6) * SAMPLE_RATE)
        side = 1 - side
    return tracks, speaking


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="inference folder (default: the bundled checkpoint)")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="real_speech")
    parser.add_argument("--guidance", type=float, default=None, help="default: the checkpoint's")
    parser.add_argument("--guidance-interval", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"))
    parser.add_argument("--guidance-rescale", type=float, default=None, metavar="PHI")
    add_unconditional_arguments(parser)
    parser.add_argument("--context-noise", type=float, default=None, help="default: the checkpoint's")
    parser.add_argument("--voices", choices=["real", "espeak"], default="real")
    args = parser.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tracks, speaking = dialogue(args.seconds, args.seed, args.voices)
    write_wav(out / "dialogue.wav", tracks)
    pipe = DyadGenPipeline.from_pretrained(args.checkpoint, device="cpu")
    folder = pipe.folder
    infer = pipe.options(guidance=args.guidance, guidance_rescale=args.guidance_rescale, seed=args.seed,
                         guidance_interval=tuple(args.guidance_interval) if args.guidance_interval else None,
                         unconditional_audio=args.unconditional_audio, unconditional_tracks=args.unconditional_tracks,
                         context_noise=args.context_noise)
    report = {"checkpoint": str(args.checkpoint or "bundled"), "seconds": args.seconds, "voices": args.voices,
              "speakers": [s.name for s in packaged_voices(held_out=True)[:2]] if args.voices == "real" else "espeak",
              "sampler": {k: list(v) if isinstance(v, tuple) else v for k, v in infer.sampler().items()},
              "unconditional_audio": infer.unconditional_audio}
    tokens, unconditional = pipe.audio_codes(tracks, infer)  # [P,T] each
    with torch.no_grad():  # one generation, decoded by each decoder: the decoders alone differ
        latents = folder.model.generate(tokens, pipe.references(None, None), unconditional=unconditional,
                                        **infer.sampler())  # [P,T,c,h,w]
    decoders = [("full", False)] + ([("fast", True)] if folder.vae.fast_decoder is not None else [])
    for name, fast in decoders:
        frames = np.stack([folder.vae.decode_uint8(latents[p], fast=fast).numpy() for p in range(2)])  # [P,T,h,w,3]
        with VideoWriter(out / f"{name}.mp4", width=2 * frames.shape[3], height=frames.shape[2], audio=tracks) as w:
            w.write(np.concatenate(list(frames), axis=2))
        every = np.arange(0, frames.shape[1], 10 * FPS)  # a frame every 10 s: left row over right row
        Image.fromarray(np.concatenate([np.concatenate(list(frames[p, every]), axis=1) for p in range(2)])).save(
            out / f"{name}_every_10s.png")
        rows = {}
        for p, side in enumerate(("left", "right")):
            pixels = frames[p].transpose(0, 3, 1, 2)  # [T,3,h,w]
            talk, listen = speaking[p, : len(pixels)], speaking[1 - p, : len(pixels)] & ~speaking[p, : len(pixels)]
            mouth = mouth_opening(pixels)
            rows[side] = {"motion_contrast": motion_contrast(pixels, talk, listen),
                          "mouth_speaking": float(mouth[talk].mean()), "mouth_listening": float(mouth[listen].mean())}
        report[name] = rows
    (out / "real_speech.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    print(f"{int(speaking.any(0).sum())} of {speaking.shape[1]} frames ({speaking.shape[1] / FPS:.0f} s) hold speech")


if __name__ == "__main__":
    main()
