"""The learning checks' bench: a tiny DyadGen trained here from random weights on synthetic dialogues with
exact ground truth, then scored on dialogues it never heard.

Corpus: ``VIDEOS`` synthetic recordings (``dyadgen.data.synthetic.synthetic_video``), each of two
dialogues in sequence by the same two people. Training reads only the first dialogue of each recording;
the checks score the first ``HELD_OUT_SECONDS`` of the second (new speech, new turns, the same faces).
The frozen encoders: the bundled checkpoint's tiny VAE (trained on these drawn faces) and an audio
tokenizer fitted here on the training dialogues' tracks (so the check hears espeak-ng voices or the
numpy fallback alike). The backbone and the decoder start from random weights.

Training follows the recipe of configs/tiny_synthetic.yaml through the model's own loss (audio, emotion
and text dropout, the history gap, exposure noise on the context): 32-frame windows with the audio
around them (``tokens_before`` / ``tokens_after``, as the shards give), each person's reference drawn
from their frames outside the window (as the loader draws from the reference pool), AdamW with a
short warm-up; sampling uses the weights' moving average (EMA), as a trained checkpoint does.

Scores per person on the held-out window, measured from pixels (dyadgen.eval.motion, the measures
behind ``dyadgen evaluate``'s ``synthetic_*`` figures): PSNR against the truth, the mouth opening's
correlation with the true mouth on frames where the person speaks, the false-talk rate (mouth open
above the person's threshold from the truth, dyadgen.eval.turns) on frames where only the partner
speaks, and the head drop's correlation with the true nods on frames where the person does not speak.
The controls: the same model with the two tracks swapped, and the first frame held still.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from dyadgen.cache.windows import context_tokens
from dyadgen.clock import FPS, SAMPLES_PER_FRAME
from dyadgen.config import DyadGenConfig, load_config
from dyadgen.data.synthetic import synthetic_video
from dyadgen.data.voices import have_espeak
from dyadgen.encoders import load_video_vae
from dyadgen.encoders.fitted import FittedTokenizer
from dyadgen.eval import turns
from dyadgen.eval.motion import correlation, head_drop, mouth_opening
from dyadgen.media.clips import crop_people, people_boxes
from dyadgen.models import DyadBatch, DyadGen
from dyadgen.training.ema import EMA

BUNDLED = Path(__file__).resolve().parent.parent / "checkpoints" / "dyadgen-tiny"  # its VAE is the frozen one
VIDEOS = 4  # recordings, two dialogues each: the first trains, the second is held out
HELD_OUT_SECONDS = 8.0
WINDOW = 32  # frames per training window, as configs/tiny_synthetic.yaml
BATCH = 4
LR = 1e-3
WARMUP = 20
EMA_DECAY = 0.99  # the weights' moving average that sampling uses (train.ema_decay; ~100 steps here)
NUM_CODES = 64
OVERRIDES = ["model.history_steps=6", "model.decoder_steps_per_sample=2"]  # as configs/tiny_synthetic.yaml


@dataclass
class Dialogue:
    people: np.ndarray | None  # uint8 [P,T,h,w,3] each person's frames by the crop rule (held-out only)
    latents: Tensor  # float [P,T,c,h,w]
    tokens: Tensor  # long [P,T]
    truth: dict[str, np.ndarray]  # mouth, nod, speaking, ... [P,T] (ground_truth.npz of the frames)


@dataclass
class Corpus:
    train: list[Dialogue]
    held_out: list[Dialogue]
    vae: object
    num_codes: int


def _split_at(video, first: int, last: int) -> tuple[int, int]:
    """Frames [start, stop) of dialogue ``first``..``last`` (inclusive) of a recording: from a frame before
    its first word to one after its last."""
    start = max(0, video.plans[first][0].start // SAMPLES_PER_FRAME - FPS // 2)
    stop = min(len(video.frames), -(-video.plans[last][-1].end // SAMPLES_PER_FRAME) + FPS // 2)
    return start, stop


def build_corpus(vae_folder, *, seed: int = 0, videos: int = VIDEOS) -> Corpus:
    """The training and held-out dialogues, encoded (see the module docstring)."""
    data = tiny_config().data
    size = (data.height, data.width)
    vae = load_video_vae(vae_folder)
    espeak = have_espeak()
    recordings = [synthetic_video(f"learning_{i:02d}", seed, 2, espeak) for i in range(videos)]
    spans = [(_split_at(v, 0, 0), _split_at(v, 1, 1)) for v in recordings]
    train_audio = [v.clean[p, a * SAMPLES_PER_FRAME: b * SAMPLES_PER_FRAME]
                   for v, ((a, b), _) in zip(recordings, spans, strict=True) for p in range(2)]
    tokenizer = FittedTokenizer.fit(train_audio, num_codes=NUM_CODES, seed=seed)
    train, held_out = [], []
    for video, (train_span, test_span) in zip(recordings, spans, strict=True):
        boxes = people_boxes(video.frames[:: len(video.frames) // 5])  # one box per person, as video_boxes
        tokens = torch.stack([tokenizer.encode(video.clean[p]) for p in range(2)])  # [P,T_video]
        for (a, b), out in ((train_span, train), (test_span, held_out)):
            if out is held_out:
                b = min(b, a + int(HELD_OUT_SECONDS * FPS))
            clip = crop_people(video.frames[a:b], size, boxes)[0]  # uint8 [P,T,3,h,w]
            with torch.no_grad():
                latents = torch.stack([vae.encode(torch.from_numpy(p).float() / 127.5 - 1) for p in clip])
            frames = clip.transpose(0, 1, 3, 4, 2) if out is held_out else None  # training reads latents
            out.append(Dialogue(frames, latents, tokens[:, a:b], {k: v[:, a:b] for k, v in video.truth.items()}))
    return Corpus(train, held_out, vae, tokenizer.num_codes)


def tiny_config(overrides: list[str] = ()) -> DyadGenConfig:
    return load_config(preset_name="tiny", overrides=[*OVERRIDES, *overrides])


def _window(d: Dialogue, start: int, margin: tuple[int, int], pad_id: int, g: torch.Generator) -> dict[str, Tensor]:
    T = d.tokens.shape[1]
    outside = torch.cat([torch.arange(0, start), torch.arange(start + WINDOW, T)])  # frames outside the window
    ref_at = outside[torch.randint(len(outside), (2,), generator=g)]  # one reference frame per person
    return {
        "tokens": d.tokens[:, start: start + WINDOW],  # [P,W]
        "latents": d.latents[:, start: start + WINDOW],  # [P,W,c,h,w]
        "refs": d.latents[torch.arange(2), ref_at],  # [P,c,h,w]
        "speaking": torch.from_numpy(d.truth["speaking"][:, start: start + WINDOW]),  # [P,W]
        # [P,pre] and [P,post], padded where the dialogue ends, as the shards' window reader gives them
        **dict(zip(("before", "after"), context_tokens(d.tokens, start, start + WINDOW, *margin, pad_id),
                   strict=True)),
    }


def _stack(windows: list[dict[str, Tensor]]) -> DyadBatch:
    return DyadBatch(
        tokens=torch.stack([w["tokens"] for w in windows]),  # [B,P,W]
        latents=torch.stack([w["latents"] for w in windows]),  # [B,P,W,c,h,w]
        refs=torch.stack([w["refs"] for w in windows]),  # [B,P,c,h,w]
        mask=torch.ones(len(windows), WINDOW, dtype=torch.bool),
        speaking=torch.stack([w["speaking"] for w in windows]),  # [B,P,W]
        tokens_before=torch.stack([w["before"] for w in windows]),  # [B,P,pre]
        tokens_after=torch.stack([w["after"] for w in windows]),  # [B,P,post]
    )


def train(corpus: Corpus, steps: int, seed: int, overrides: list[str] = (),
          every: int = 0, report: Callable[[int, DyadGen], None] | None = None) -> DyadGen:
    """The tiny model trained ``steps`` AdamW steps of BATCH windows from random weights (``report(step,
    model)`` after every ``every`` steps, for calibration)."""
    torch.manual_seed(seed)
    cfg = tiny_config(overrides)
    model = DyadGen.from_config(cfg, num_audio_codes=corpus.num_codes,
                                latent_shape=tuple(corpus.train[0].latents.shape[2:]))
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.0)
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([d.tokens.shape[1] - WINDOW + 1 for d in corpus.train], dtype=torch.float)
    ema = EMA(model, EMA_DECAY)
    model.train()
    for step in range(steps):
        if report is not None and every and step and step % every == 0:
            with ema.swapped_in(model):
                report(step, model.eval())
            model.train()
        which = torch.multinomial(lengths, BATCH, replacement=True, generator=g).tolist()  # by length
        windows = [_window(corpus.train[i], int(torch.randint(int(lengths[i]), (1,), generator=g)), model.audio_margin,
                           model.pad_id, g) for i in which]
        for group in opt.param_groups:
            group["lr"] = LR * min(1.0, (step + 1) / WARMUP)
        loss = model(_stack(windows), generator=g)["loss"]
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ema.update(model)
    ema.copy_to(model)  # sampling uses the average, as a checkpoint's inference folder does
    return model.eval()


def render(model: DyadGen, vae, d: Dialogue, tokens: Tensor, seed: int = 0) -> np.ndarray:
    """Both people generated from ``tokens`` [P,T] and the clip's first frame: uint8 [P,T,h,w,3]."""
    latents = model.generate(tokens, d.latents[:, 0], euler_steps=4, guidance=2.0, seed=seed)  # [P,T,c,h,w]
    return torch.stack([vae.decode_uint8(latents[p]) for p in range(2)]).numpy()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean()
    return 10 * math.log10(255**2 / mse)


def score(frames: np.ndarray, d: Dialogue) -> list[dict[str, float]]:
    """Per person: psnr, mouth_corr (speaking frames), false_talk (listening frames), nod_corr."""
    T = frames.shape[1]
    out = []
    for p in range(2):
        pixels = frames[p].transpose(0, 3, 1, 2)  # [T,3,h,w]
        truth_pixels = d.people[p, :T].transpose(0, 3, 1, 2)
        mouth, drop = mouth_opening(pixels), head_drop(pixels)  # [T] each
        speaks = d.truth["speaking"][p, :T].astype(bool)
        listens = ~speaks & d.truth["speaking"][1 - p, :T].astype(bool)
        threshold = turns.open_threshold(mouth_opening(truth_pixels), speaks)
        out.append({
            "psnr": psnr(frames[p], d.people[p, :T]),
            "mouth_corr": correlation(mouth[speaks], d.truth["mouth"][p, :T][speaks]),
            "false_talk": turns.open_rate(mouth, listens, threshold),
            "nod_corr": correlation(drop[~speaks], d.truth["nod"][p, :T][~speaks]),
        })
    return out


def still(vae, d: Dialogue) -> np.ndarray:
    """The first frame held still, through the VAE as the model's frames are: uint8 [P,T,h,w,3]."""
    first = vae.decode_uint8(d.latents[:, 0]).numpy()  # [P,h,w,3]
    return np.broadcast_to(first[:, None], d.people.shape).copy()


def evaluate(model: DyadGen, corpus: Corpus) -> dict[str, dict[str, float]]:
    """{system: {measure: mean over held-out dialogues and people}} for model, swapped and still."""
    rows: dict[str, list[dict[str, float]]] = {"model": [], "swapped": [], "still": []}
    for d in corpus.held_out:
        rows["model"] += score(render(model, corpus.vae, d, d.tokens), d)
        rows["swapped"] += score(render(model, corpus.vae, d, d.tokens.flip(0)), d)
        rows["still"] += score(still(corpus.vae, d), d)
    # a measure a window cannot give (no speaking frames for one person, say) is left out of its mean
    def mean(values: list[float | None]) -> float:
        kept = [v for v in values if v is not None and np.isfinite(v)]
        return float(np.mean(kept)) if kept else float("nan")

    return {system: {k: mean([r[k] for r in rs]) for k in rs[0]} for system, rs in rows.items()}


def _exit_with_parent(parent: int, every: float = 2.0) -> None:
    """Ends this process once the process that started it is gone: a killed test run leaves no trainer behind
    (a ProcessPoolExecutor's workers are not told when their parent dies, and would train on for minutes)."""
    while os.getppid() == parent:
        time.sleep(every)
    os._exit(1)


def trial(corpus: Corpus, seed: int, steps: int, overrides: list[str] = ()) -> dict[str, dict[str, float]]:
    """One seed trained and scored, on one thread (see :func:`trials`)."""
    torch.set_num_threads(1)
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    return evaluate(train(corpus, steps, seed, overrides), corpus)


def trials(corpus: Corpus, seeds: list[int], steps: int, overrides: list[str] = ()) -> list[dict]:
    """:func:`trial` for each seed, side by side in spawned processes of one thread each: on 2 cores two
    single-threaded runs of this tiny model finish well before two runs one after the other."""
    workers = max(1, min(len(seeds), os.cpu_count() or 1))
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(trial, [corpus] * len(seeds), seeds, [steps] * len(seeds),
                             [list(overrides)] * len(seeds)))
