"""The bundled checkpoint (the tiny preset trained by the recipe in configs/tiny_synthetic.yaml):

- on the bundled examples, the person whose track has speech moves the mouth in step with it and the
  other keeps it closed (mouth opening measured from the generated pixels), and the listener nods
  after the partner starts a turn (head height measured from the pixels);
- a clip of its training data is generated back from the two audio tracks and the first frame alone,
  and with the two tracks swapped the result is further from the truth.
"""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from dyadgen.eval.talking import score_person, speech_envelope
from dyadgen.inference.pipeline import BUNDLED, DyadGenPipeline
from dyadgen.io.audio import load_audio
from dyadgen.media.clips import crop_people, decode_frames

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
TRAIN_CLIP = REPO / "tests" / "fixtures" / "train_clip"  # 4 s of a training dialogue (see its README.md)
MIN_CORR = 0.55  # mouth opening vs the speech envelope while speaking (measured 0.81 left, 0.66 right; the
#                 distilled student 0.78, 0.64)
MIN_NOD = 0.5  # the right person's head drop vs the nod expected after the left one's second turn starts,
#                median over seeds 0-2 (measured 0.70, 0.84, 0.88 on the whole example; the left person's
#                single nod, after a turn start that overlaps its own speech, is not asserted)
MIN_PSNR = 17.5  # dB, a training clip generated back (measured 21.0 dB; the clip's first frame held still: 22.4)
MIN_SWAP_DROP = 0.5  # dB lost when the two tracks are swapped (measured 1.8 dB: 19.2 dB)


@pytest.fixture(scope="module")
def pipe():
    return DyadGenPipeline.from_pretrained(BUNDLED, device="cpu")


@pytest.fixture(scope="module")
def generated(pipe):
    frames = pipe.frames(EXAMPLES / "left.wav", EXAMPLES / "right.wav")
    tracks = [load_audio(EXAMPLES / f"{side}.wav") for side in ("left", "right")]
    return frames, [speech_envelope(a, frames.shape[1]) for a in tracks]


@pytest.fixture(scope="module")
def distilled(pipe, generated):
    """The checkpoint's guidance-distilled student, 2 steps (one pass each, no unguided branch)."""
    frames = pipe.frames(EXAMPLES / "left.wav", EXAMPLES / "right.wav", guidance_mode="distilled", euler_steps=2)
    return frames, generated[1]


def test_bundled_checkpoint_renders_both_people_at_least_128_pixels_tall(generated):
    frames, envelopes = generated
    assert frames.shape[0] == 2 and frames.shape[2] >= 128 and frames.shape[-1] == 3
    assert abs(frames.shape[1] - len(envelopes[0])) <= 1
    assert sum(f.stat().st_size for f in BUNDLED.rglob("*") if f.is_file()) < 50e6


@pytest.mark.parametrize("person", [0, 1])
@pytest.mark.parametrize("sampler", ["default", "distilled"])
def test_the_speaker_moves_the_mouth_with_the_speech_and_the_listener_keeps_it_closed(request, sampler, person):
    generated = request.getfixturevalue("generated" if sampler == "default" else "distilled")
    frames, envelopes = generated
    score = score_person(frames[person], envelopes[person], envelopes[1 - person])
    assert score.mouth_corr > MIN_CORR
    assert score.open_speaking > 3 * score.open_listening


def test_the_listener_nods_after_the_partner_starts_a_turn(pipe, generated):
    """A nod is one stochastic event: each person draws their own sampling noise, so it is scored
    over three seeds (the first 9.6 s are enough: the turn starts at 7.0 s) and the median asserted."""
    frames, envelopes = generated
    nods = [score_person(frames[1], envelopes[1], envelopes[0]).nod_corr]  # seed 0, the whole example
    for seed in (1, 2):
        short = pipe.frames(EXAMPLES / "left.wav", EXAMPLES / "right.wav",
                            seed=seed, max_seconds=9.6)
        T = short.shape[1]
        nods.append(score_person(short[1], envelopes[1][:T], envelopes[0][:T]).nod_corr)
    assert float(np.median(nods)) > MIN_NOD, nods


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean()
    return 10 * math.log10(255**2 / mse)


def test_a_training_clip_is_generated_back_and_swapped_audio_moves_it_away(pipe):
    folder = pipe.folder
    frames = decode_frames(TRAIN_CLIP / "clip.mp4")  # [T,H,W,3] side by side
    people, _ = crop_people(frames, pipe.size)  # [P,T,3,h,w]
    truth = people.transpose(0, 1, 3, 4, 2)  # [P,T,h,w,3]
    refs = folder.vae.encode(torch.from_numpy(people[:, 0]).float() / 127.5 - 1)  # [P,c,h,w]: the first frames
    tokens = torch.stack([folder.tokenizer.encode(load_audio(TRAIN_CLIP / f"{s}.wav")) for s in ("left", "right")])

    def render(tok: torch.Tensor) -> np.ndarray:
        latents = pipe.model.generate(tok, refs, **folder.default_sampling(tok, seed=0))  # the checkpoint's sampler
        return np.stack([pipe._pixels(latents[p]) for p in range(2)])  # [P,T,h,w,3]

    T = min(len(frames), tokens.shape[1])
    own = psnr(render(tokens)[:, :T], truth[:, :T])
    swapped = psnr(render(tokens.flip(0))[:, :T], truth[:, :T])
    assert own > MIN_PSNR
    assert own - swapped > MIN_SWAP_DROP


MIN_FAST_PSNR = 26.5  # dB, the fast decoder against the full one on people it never saw (measured 27.6 with a
#                      1.8-level colour gap; the one before it 27.3 and 2.3, on the model before that 27.7 and
#                      1.4; before freshly drawn people joined its training: 25.9; before its
#                      recoloured training copies: 20.7 with an 8-level colour shift)
MAX_FAST_COLOUR_GAP = 2.5  # levels of 255, the largest difference of a colour channel's mean


def test_the_fast_decoder_draws_what_the_full_decoder_draws_on_new_faces(pipe):
    """--fast-decoder keeps the picture: on people drawn fresh (not the corpus's, and not the ones drawn for
    its distillation), under poses and mouth openings, its frames lie within MIN_FAST_PSNR of the full
    decoder's, with the same colours."""
    from dyadgen.data.faces import FaceLook, FacePose, draw_face

    rng = np.random.default_rng(123)
    vae = pipe.folder.vae
    H, W = pipe.size
    poses = [FacePose.random(rng) for _ in range(24)]
    faces = np.stack([draw_face(FaceLook.random(rng), pose, H, W) for pose in poses])  # uint8 [N,H,W,3]
    with torch.no_grad():
        latents = vae.encode(torch.from_numpy(faces).permute(0, 3, 1, 2).float() / 127.5 - 1)  # [N,c,h,w]
    full = vae.decode_uint8(latents).numpy().astype(np.float64)  # [N,H,W,3]
    fast = vae.decode_uint8(latents, fast=True).numpy().astype(np.float64)
    psnr = 10 * math.log10(255**2 / ((full - fast) ** 2).mean())
    assert psnr >= MIN_FAST_PSNR
    assert np.abs(full.mean((0, 1, 2)) - fast.mean((0, 1, 2))).max() < MAX_FAST_COLOUR_GAP  # the same colours
