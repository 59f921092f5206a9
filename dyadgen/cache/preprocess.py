"""`dyadgen preprocess`: a dataset root -> one webdataset shard per video, through the frozen
encoders, run once (encode once, train many times).

Per video: decode the raw side-by-side video at 25 fps a few frames at a time (or, without it,
each turn clip by its own timestamps), crop both people by the shared crop rule (one face box per
person from five frames spread over the video), encode the frames with the VAE and each person's
own track with the audio tokenizer, and write the latents in blocks of ``data.window_stride_steps *
model.chunk_frames`` frames as they come (dyadgen.cache.windows): memory is flat in the video's
length and every latent is stored once. Training windows of ``data.window_steps * model.chunk_frames``
frames start at every block and are index ranges into the video (they may span several turns); the
loader takes the audio codes around a window (the partner's past, the own lookahead) from the
video's codes, so training sees at a window's edges the audio that generation sees there. Each
video also stores who speaks when (the timeline of the two diarization logs), each person's emotion
per frame (from the script line matched to their turn; it holds until their next turn; -1 where
unknown), and a pool of reference latents (``data.num_refs`` frames of every block).

One shard per video, ``<out>/<split>/<video>.tar``, written as it is encoded under a hidden name and
renamed when complete: a killed run resumes by skipping finished shards, and no half-written shard
is ever read. Bad videos (unreadable, even halfway through) are skipped, counted and reported with
their reason, and nothing of them is left on disk. ``--shard-index/--num-shards`` (or RANK and
WORLD_SIZE under torchrun / accelerate launch) split the videos across processes and nodes.
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from dyadgen.cache.shards import ShardWriter, write_manifest
from dyadgen.cache.windows import VideoShardWriter
from dyadgen.clock import FPS, SAMPLES_PER_FRAME, frames_for_samples
from dyadgen.config import DyadGenConfig
from dyadgen.data.layout import SIDES
from dyadgen.data.socioemodialog import Video, index_dataset, read_clip, video_labels
from dyadgen.data.splits import Splitter
from dyadgen.devices import pick_device, pick_dtype
from dyadgen.encoders import load_encoders
from dyadgen.errors import UserError
from dyadgen.io.audio import load_audio, load_stereo
from dyadgen.media.clips import (
    crop_people,
    frame_count,
    people_boxes,
    stream_frames,
    video_boxes,
)


@dataclass
class Summary:
    videos: int = 0
    samples: int = 0
    resumed: int = 0
    centre_crops: int = 0
    skipped_clips: int = 0  # turn clips (of videos without a raw video) too short or misaligned
    skipped: list[tuple[str, str]] = field(default_factory=list)
    splits: Counter = field(default_factory=Counter)

    def record(self, video: Video, split: str, result: dict) -> None:
        """Count one video's result (from _process_video): its samples, or why it was skipped."""
        if "skipped" in result:
            self.skipped.append((str(video.folder), result["skipped"]))
            return
        self.videos += 1
        self.samples += result["samples"]
        self.splits[split] += result["samples"]
        self.centre_crops += result["centre_crops"]
        self.skipped_clips += result["skipped_clips"]


def _encode_people(frames: np.ndarray, boxes: list, cfg: DyadGenConfig, vae) -> torch.Tensor:
    """Side-by-side frames uint8 [n,H,W,3] -> latents [P,n,c,h,w], cropped by ``boxes``, each person
    encoded on the VAE's device in its ``encode_batch``."""
    people, _ = crop_people(frames, (cfg.data.height, cfg.data.width), boxes)  # uint8 [P,n,3,h,w]
    return torch.stack([vae.encode(torch.from_numpy(people[p]).float() / 127.5 - 1).cpu() for p in range(2)])


class _Blocks:
    """Collects latents [P,n,c,h,w] as they are encoded and hands each full block of the writer's
    ``block_frames`` to it, so at most one block is held."""

    def __init__(self, out: VideoShardWriter):
        self.out, self.K, self.held, self.frames = out, out.block_frames, [], 0

    def add(self, latents: torch.Tensor) -> None:
        self.held.append(latents)
        self.frames += latents.shape[1]
        while sum(x.shape[1] for x in self.held) >= self.K:
            joined = torch.cat(self.held, dim=1)
            self.out.block(joined[:, : self.K])
            self.held = [joined[:, self.K:]]

    def flush(self) -> None:
        rest = torch.cat(self.held, dim=1) if self.held else None
        if rest is not None and rest.shape[1]:
            self.out.block(rest)
        self.held = []


def _write_latents(out: VideoShardWriter, pieces, boxes: list, limit: int, cfg: DyadGenConfig, vae) -> int:
    """Start a segment in ``out`` and write the latents of side-by-side frame pieces uint8 [n,H,W,3]
    (at most ``limit`` frames) block by block, cropped by ``boxes``; returns the frames written."""
    blocks = _Blocks(out)
    out.begin()
    for frames in pieces:
        frames = frames[: limit - blocks.frames]
        if len(frames):
            blocks.add(_encode_people(frames, boxes, cfg, vae))
    blocks.flush()
    return blocks.frames


def encode_video(video: Video, cfg: DyadGenConfig, tokenizer, vae, out: VideoShardWriter,
                 meta: dict) -> dict:
    """A video through the encoders into its shard: segments of tokens [P,T], speaking [P,T],
    emotion [P,T] and latent blocks [P,K,c,h,w]. From the raw video: one segment, the whole video,
    decoded and encoded ``vae.encode_batch`` frames at a time (memory flat in its length), with each
    person's `_mute` wav (else the raw stereo track). From turn clips only: one segment per clip, its
    frames and both people's audio from the clip itself on the video's timeline, cross-checked against
    the wav segments; clips shorter than a window or unreadable are skipped and counted."""
    if video.raw_video is None:
        return _encode_turn_clips(video, cfg, tokenizer, vae, out, meta)
    if len(video.channel_wavs) == 2:
        audio = [load_audio(video.channel_wavs[side]) for side in SIDES]
    else:
        audio = list(load_stereo(video.raw_video))
    T = min(frame_count(video.raw_video), *(frames_for_samples(len(a)) for a in audio))
    if T < out.window:
        raise UserError(f"{video.raw_video}: {T} frames, shorter than one training window")
    boxes = video_boxes(video.raw_video, T)
    tokens = torch.stack([tokenizer.encode(a[: T * SAMPLES_PER_FRAME]).cpu() for a in audio])  # [P,T]
    del audio
    n = _write_latents(out, stream_frames(video.raw_video, max(1, cfg.vae.encode_batch)), boxes, T, cfg, vae)
    if n < T - FPS:  # the header promised more: a truncated or damaged file
        raise UserError(f"{video.raw_video}: decoding stopped at frame {n} of {T} (truncated or damaged)")
    if n < out.window:
        raise UserError(f"{video.raw_video}: {n} frames decoded, shorter than one training window")
    speaking, emotion = video_labels(video, n)
    out.end(tokens[:, :n], torch.from_numpy(speaking), torch.from_numpy(emotion), {**meta, "clip": "", "first": 0})
    return {"centre_crops": sum(b is None for b in boxes), "skipped_clips": 0}


def _encode_turn_clips(video: Video, cfg: DyadGenConfig, tokenizer, vae, out: VideoShardWriter,
                       meta: dict) -> dict:
    centre_crops, skipped = 0, 0
    for clip in video.clips:
        if clip.start is None:  # no left log says when it was
            skipped += 1
            continue
        try:
            span = read_clip(video, clip)
        except UserError:
            skipped += 1
            continue
        T = len(span.frames)
        if T < out.window:
            skipped += 1
            continue
        boxes = people_boxes(span.frames)
        centre_crops += sum(b is None for b in boxes)
        tokens = torch.stack([tokenizer.encode(a[: T * SAMPLES_PER_FRAME]).cpu() for a in span.audio])  # [P,T]
        step = max(1, cfg.vae.encode_batch)
        _write_latents(out, (span.frames[a: a + step] for a in range(0, T, step)), boxes, T, cfg, vae)
        speaking, emotion = video_labels(video, T, span.first)
        out.end(tokens, torch.from_numpy(speaking), torch.from_numpy(emotion),
                {**meta, "clip": clip.path.stem, "first": span.first})
    if not out.segments:
        raise UserError(f"{video.folder}: no raw video and no usable turn clip ({skipped} skipped)")
    return {"centre_crops": centre_crops, "skipped_clips": skipped}


class _Encoders:
    """The frozen encoders, loaded once per process (the main one or each worker)."""

    tokenizer = None
    vae = None

    @classmethod
    def load(cls, cfg: DyadGenConfig, threads: int | None = None, device: str = "cpu", dtype: str = "fp32") -> None:
        """The tokenizer on ``device`` in fp32 (its codes are an argmin), the VAE encoder in ``dtype``."""
        if threads:
            torch.set_num_threads(threads)
        dev = pick_device(device)
        cls.tokenizer, cls.vae = load_encoders(cfg.audio_tokenizer, cfg.vae, dev, pick_dtype(dtype, dev))


def _process_video(video: Video, shard: Path, split: str, text: str, cfg: DyadGenConfig) -> dict:
    """Encode one video into its shard (written as it is encoded, renamed into place at the end).
    Returns counts, or the reason it was skipped (nothing of it is left on disk then)."""
    meta = {"video": video.name, "dialogue": video.dialogue_id, "split": split, "text": text}
    window, stride = cfg.window_frames, cfg.window_stride_frames
    try:
        with ShardWriter(shard) as writer:
            out = VideoShardWriter(writer, video.name, window, stride, cfg.data.num_refs)
            counts = encode_video(video, cfg, _Encoders.tokenizer, _Encoders.vae, out, meta)
            record = writer.finish(**out.finish())
    except UserError as err:  # a bad video is skipped and counted, never fatal
        return {"skipped": str(err)}
    return {"samples": record["windows"], **counts}


def storage_per_hour(cfg: DyadGenConfig) -> dict[str, float]:
    """Bytes the shards take per hour of video at the config's size: both people's bf16 latents for
    every frame, stored once (windows are index ranges into them), the reference pool (``num_refs``
    frames of every block), and the int64 audio codes, emotions and speaking flags of every frame."""
    c, h, w = cfg.latent_shape
    block = cfg.window_stride_frames
    frames = 25 * 3600 * 2  # both people
    latents = frames * c * h * w * 2
    refs = latents * min(cfg.data.num_refs, block) / block
    return {"bytes": latents + refs + frames * (8 + 8 + 1), "latents": latents, "refs": refs,
            "latent_shape": (c, h, w)}


def shard_of(video_name: str, num_shards: int) -> int:
    """Which of ``num_shards`` preprocessing processes encodes a video: a hash of its name, so every
    process (on any node) agrees without talking to the others, and the split stays the same when the
    list of videos grows."""
    return int.from_bytes(hashlib.sha256(video_name.encode()).digest()[:8], "big") % num_shards


def preprocess(root: str | os.PathLike, out: str | os.PathLike, cfg: DyadGenConfig, *,
               workers: int = 1, progress: bool = True, device: str = "cpu", dtype: str = "fp32",
               shard_index: int = 0, num_shards: int = 1) -> Summary:
    """Encode every video of ``root`` into ``<out>/<split>/<video>.tar``; videos whose shard exists are
    skipped (resume). With ``workers`` > 1 videos are encoded in that many processes, the CPU
    threads shared between them. With ``num_shards`` > 1 this process takes only the videos of
    ``shard_index`` (``shard_of``): run one per node of a job array, or per process of ``torchrun`` /
    ``accelerate launch``. Every process rewrites the manifest from all finished shards when it ends,
    so the last one to finish leaves the whole index."""
    if not 0 <= shard_index < num_shards:
        raise UserError(f"--shard-index {shard_index}: must be in 0 .. {num_shards - 1} (--num-shards {num_shards})")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    index = index_dataset(root, script_json=cfg.data.script_json, video_to_dialogue=cfg.data.video_to_dialogue)
    summary = Summary(skipped=list(index.problems))
    jobs = _jobs(index, out, cfg, summary, shard_index, num_shards)
    with tqdm(total=len(jobs), desc="preprocess", disable=not progress) as bar:
        for video, split, result in _encode_all(jobs, cfg, workers, device, dtype):
            summary.record(video, split, result)
            bar.update(1)
    _write_manifest(out, cfg)
    return summary


def _jobs(index, out: Path, cfg: DyadGenConfig, summary: Summary, shard_index: int, num_shards: int) -> list:
    """(video, shard path, split, topic text) of this process's videos that have no shard yet."""
    splitter = Splitter(cfg.data.val_fraction, cfg.data.test_fraction, cfg.data.actor_map)
    jobs = []
    for video in index.videos:
        if num_shards > 1 and shard_of(video.name, num_shards) != shard_index:
            continue
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
        jobs.append((video, shard, split, index.scripts.get(video.dialogue_id, {}).get("topic_label", "")))
    return jobs


def _encode_all(jobs: list, cfg: DyadGenConfig, workers: int, device: str, dtype: str):
    """Yield (video, split, result) as each job finishes, here or in ``workers`` processes."""
    if workers <= 1:
        if jobs:
            _Encoders.load(cfg, device=device, dtype=dtype)
        for video, shard, split, text in jobs:
            yield video, split, _process_video(video, shard, split, text, cfg)
        return
    if not jobs:
        return
    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_Encoders.load,
                             initargs=(cfg, threads, device, dtype)) as pool:
        futures = {pool.submit(_process_video, video, shard, split, text, cfg): (video, split)
                   for video, shard, split, text in jobs}
        for future in as_completed(futures):
            video, split = futures[future]
            yield video, split, future.result()


def _write_manifest(out: Path, cfg: DyadGenConfig) -> None:
    """Index every finished shard of ``out`` (all processes' so far), with the shapes a trainer needs."""
    if _Encoders.vae is None:
        _Encoders.load(cfg)
    tokenizer, vae = _Encoders.tokenizer, _Encoders.vae
    c, f = vae.latent_channels, vae.factor  # the loaded VAE's, which a pretrained one sets, not cfg.vae's
    write_manifest(out, {"latent_shape": [c, cfg.data.height // f, cfg.data.width // f],
                         "num_audio_codes": tokenizer.num_codes, "window_frames": cfg.window_frames,
                         "audio_margin": list(cfg.audio_margin), "window_stride": cfg.window_stride_frames,
                         "config": cfg.to_dict()})
