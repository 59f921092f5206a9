"""`dyadgen preprocess`: a dataset root -> webdataset shards of fixed-length windows, through the
frozen encoders, run once (encode once, train many times).

Per video: decode the raw side-by-side video at 25 fps, crop both people by the shared crop rule,
encode the frames with the VAE and each person's own track (the `_mute` wav, else the channel) with
the audio tokenizer, then cut windows of ``data.window_steps * model.chunk_frames`` frames every
``data.window_stride_steps`` chunks; windows may span several turns. Each window also gets K
reference latents per person drawn from frames of the same video and side outside the window,
who speaks when (from the per-side ASR json) and each person's emotion per frame (from the script
line matched to their turn; it holds until their next turn).

One shard per video, ``<out>/<split>/<video>.tar``, written atomically: a killed run resumes by
skipping finished shards, and no half-written shard is ever read. Bad videos are skipped, counted
and reported with their reason.
"""

from __future__ import annotations

import os
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from dyadgen.clock import FPS, SAMPLES_PER_FRAME, frames_for_samples
from dyadgen.config import DyadGenConfig
from dyadgen.data.clips import crop_people, decode_frames
from dyadgen.data.emotions import emotion_id
from dyadgen.data.shards import write_manifest, write_shard
from dyadgen.data.socioemodialog import Video, index_dataset
from dyadgen.data.splits import Splitter
from dyadgen.errors import UserError
from dyadgen.io.audio import load_audio


@dataclass
class Summary:
    videos: int = 0
    samples: int = 0
    resumed: int = 0
    centre_crops: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    splits: Counter = field(default_factory=Counter)


def video_labels(video: Video, num_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """speaking bool [P,T] from the ASR turns, emotion long [P,T] (-1 before a person's first turn)."""
    speaking = np.zeros((2, num_frames), bool)
    emotion = np.full((2, num_frames), -1, np.int64)
    for turn in video.turns:
        p = 0 if turn.side == "left" else 1
        f0, f1 = int(turn.start * FPS), min(num_frames, int(np.ceil(turn.end * FPS)))
        speaking[p, f0:f1] = True
        if turn.emotion:
            emotion[p, f0:] = emotion_id(turn.emotion)
    return speaking, emotion


def encode_video(video: Video, cfg: DyadGenConfig, tokenizer, vae) -> dict[str, torch.Tensor]:
    """All frames of one video through the encoders: tokens [P,T], latents [P,T,c,h,w], labels."""
    if video.raw_video is None:
        raise UserError(f"{video.folder}: no raw video {video.name}.mp4 (preprocess cuts windows from the raw "
                        "video; run `dyadgen prepare-raw` on raw files)")
    audio = [load_audio(video.channel_wavs[side]) for side in ("left", "right")]
    frames = decode_frames(video.raw_video)  # [T,H,W,3]
    T = min(len(frames), *(frames_for_samples(len(a)) for a in audio))
    if T < cfg.model.chunk_frames * cfg.data.window_steps:
        raise UserError(f"{video.raw_video}: {T} frames, shorter than one training window")
    people, boxes = crop_people(frames[:T], (cfg.data.height, cfg.data.width))  # [P,T,3,h,w]
    tokens = torch.stack([tokenizer.encode(a[: T * SAMPLES_PER_FRAME]) for a in audio])  # [P,T]
    pixels = torch.from_numpy(people).float() / 127.5 - 1  # [P,T,3,h,w] in [-1,1]
    latents = torch.stack([vae.encode(pixels[p]) for p in range(2)])  # [P,T,c,h,w]
    speaking, emotion = video_labels(video, T)
    return {"tokens": tokens, "latents": latents, "speaking": torch.from_numpy(speaking),
            "emotion": torch.from_numpy(emotion), "centre_crops": sum(b is None for b in boxes)}


def windows(num_frames: int, length: int, stride: int) -> list[int]:
    return list(range(0, num_frames - length + 1, stride))


def video_samples(video: Video, encoded: dict, cfg: DyadGenConfig, text: str, split: str):
    """(key, tensors, meta) for each window of one video."""
    C = cfg.model.chunk_frames
    length, stride = cfg.data.window_steps * C, cfg.data.window_stride_steps * C
    T = encoded["tokens"].shape[1]
    rng = np.random.default_rng(zlib.crc32(video.name.encode()))  # the same refs on every run
    for start in windows(T, length, stride):
        outside = np.concatenate([np.arange(0, start), np.arange(start + length, T)])
        if outside.size == 0:
            outside = np.arange(T)
        picks = torch.from_numpy(rng.choice(outside, size=cfg.data.num_refs, replace=outside.size < cfg.data.num_refs))
        sl = slice(start, start + length)
        tensors = {
            "tokens": encoded["tokens"][:, sl].long(),  # [P,T]
            "latents": encoded["latents"][:, sl].to(torch.bfloat16),  # [P,T,c,h,w]
            "refs": encoded["latents"][:, picks].to(torch.bfloat16),  # [P,K,c,h,w]
            "speaking": encoded["speaking"][:, sl].to(torch.uint8),  # [P,T]
            "emotion": encoded["emotion"][:, sl].long(),  # [P,T]
            "mask": torch.ones(length, dtype=torch.bool),  # [T]
        }
        meta = {"video": video.name, "dialogue": video.dialogue_id, "start": start, "split": split, "text": text}
        yield f"{video.name}_{start:07d}", tensors, meta


class _Encoders:
    """The frozen encoders, loaded once per process (the main one or each worker)."""

    tokenizer = None
    vae = None

    @classmethod
    def load(cls, cfg: DyadGenConfig, threads: int | None = None) -> None:
        from dyadgen.encoders import load_audio_tokenizer, load_video_vae

        if threads:
            torch.set_num_threads(threads)
        cls.tokenizer, cls.vae = load_audio_tokenizer(cfg.audio_tokenizer), load_video_vae(cfg.vae)


def _process_video(video: Video, shard: Path, split: str, text: str, cfg: DyadGenConfig) -> dict:
    """Encode one video and write its shard (atomically). Returns counts or the reason it was skipped."""
    try:
        encoded = encode_video(video, cfg, _Encoders.tokenizer, _Encoders.vae)
    except UserError as err:  # a bad video is skipped and counted, never fatal
        return {"skipped": str(err)}
    n = write_shard(shard, list(video_samples(video, encoded, cfg, text, split)))
    return {"samples": n, "centre_crops": encoded["centre_crops"]}


def preprocess(root: str | os.PathLike, out: str | os.PathLike, cfg: DyadGenConfig, *,
               workers: int = 1, progress: bool = True) -> Summary:
    """Encode every video of ``root`` into ``<out>/<split>/<video>.tar``; videos whose shard exists are
    skipped (resume). With ``workers`` > 1 videos are encoded in that many processes, the CPU
    threads shared between them."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from tqdm.auto import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    index = index_dataset(root, script_json=cfg.data.script_json, video_to_dialogue=cfg.data.video_to_dialogue)
    summary = Summary(skipped=list(index.problems))
    splitter = Splitter(cfg.data.val_fraction, cfg.data.test_fraction, cfg.data.actor_map)
    jobs = []
    for video in index.videos:
        try:
            split = splitter(video.name, video.dialogue_id)
        except UserError as err:
            summary.skipped.append((str(video.folder), str(err)))
            continue
        shard = out / split / f"{video.name}.tar"
        if shard.is_file():
            summary.resumed += 1
            continue
        shard.parent.mkdir(exist_ok=True)
        text = index.scripts.get(video.dialogue_id, {}).get("topic_label", "")
        jobs.append((video, shard, split, text))

    def record(video: Video, split: str, result: dict) -> None:
        if "skipped" in result:
            summary.skipped.append((str(video.folder), result["skipped"]))
            return
        summary.videos += 1
        summary.samples += result["samples"]
        summary.splits[split] += result["samples"]
        summary.centre_crops += result["centre_crops"]

    bar = tqdm(total=len(jobs), desc="preprocess", disable=not progress)
    if workers <= 1:
        _Encoders.load(cfg)
        for video, shard, split, text in jobs:
            record(video, split, _process_video(video, shard, split, text, cfg))
            bar.update(1)
    elif jobs:
        threads = max(1, (os.cpu_count() or 1) // workers)
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_Encoders.load,
                                 initargs=(cfg, threads)) as pool:
            futures = {pool.submit(_process_video, video, shard, split, text, cfg): (video, split)
                       for video, shard, split, text in jobs}
            for future in as_completed(futures):
                video, split = futures[future]
                record(video, split, future.result())
                bar.update(1)
    bar.close()
    if _Encoders.vae is None:
        _Encoders.load(cfg)
    tokenizer, vae = _Encoders.tokenizer, _Encoders.vae
    c, f = vae.latent_channels, vae.factor
    write_manifest(out, {"latent_shape": [c, cfg.data.height // f, cfg.data.width // f],
                         "num_audio_codes": tokenizer.num_codes, "window_frames": cfg.data.window_steps
                         * cfg.model.chunk_frames, "config": cfg.to_dict()})
    return summary
