"""`dyadgen preprocess`: a dataset root -> webdataset shards of fixed-length windows, through the
frozen encoders, run once (encode once, train many times).

Per video: decode the raw side-by-side video at 25 fps (or, without it, each turn clip by its own
timestamps), crop both people by the shared crop rule, encode the frames with the VAE and each
person's own track with the audio tokenizer, then cut windows of ``data.window_steps *
model.chunk_frames`` frames every ``data.window_stride_steps`` chunks; windows may span several
turns. Each window keeps the audio tokens the model reads around it (the partner's past, the own
lookahead: ``tokens_before`` / ``tokens_after``, padding code beyond the segment), so training sees
at a window's edges the audio that generation sees there. Each window also gets K reference
latents per person drawn from frames of the same video and side outside the window, who speaks
when (the timeline of the two diarization logs) and each person's emotion per frame (from the
script line matched to their turn; it holds until their next turn; -1 where unknown).

One shard per video, ``<out>/<split>/<video>.tar``, written atomically: a killed run resumes by
skipping finished shards, and no half-written shard is ever read. Bad videos are skipped, counted
and reported with their reason.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from dyadgen.clock import SAMPLES_PER_FRAME, frames_for_samples
from dyadgen.config import DyadGenConfig, audio_margin
from dyadgen.data.clips import Span, check_against_segment, crop_people, decode_frames, grid_frames, read_span
from dyadgen.data.emotions import emotion_id
from dyadgen.data.layout import SIDES
from dyadgen.data.shards import write_manifest, write_shard
from dyadgen.data.socioemodialog import Clip, Video, index_dataset
from dyadgen.data.splits import Splitter
from dyadgen.errors import UserError
from dyadgen.io.audio import load_audio, load_stereo


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


def video_labels(video: Video, num_frames: int, first: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """speaking bool [P,T] and emotion long [P,T] of the video's frames first .. first + T - 1, from
    the timeline. A person's emotion is that of their latest turn and holds until their next one; it
    is -1 (unknown) before their first turn and after a turn the script match left unmatched."""
    speaking = np.zeros((2, num_frames), bool)
    emotion = np.full((2, num_frames), -1, np.int64)
    for turn in video.turns:  # sorted by start, so a later turn overrides the emotion of an earlier one
        p = SIDES.index(turn.side)
        f0, f1 = (f - first for f in grid_frames(turn.start, turn.end))
        speaking[p, max(f0, 0): max(f1, 0)] = True
        emotion[p, max(f0, 0):] = emotion_id(turn.emotion) if turn.utterance_id else -1
    return speaking, emotion


def _encode(frames: np.ndarray, audio: list[np.ndarray], cfg: DyadGenConfig, tokenizer, vae) -> dict:
    """Side-by-side frames [T,H,W,3] and the two tracks -> tokens [P,T], latents [P,T,c,h,w]."""
    T = len(frames)
    people, boxes = crop_people(frames, (cfg.data.height, cfg.data.width))  # [P,T,3,h,w]
    tokens = torch.stack([tokenizer.encode(a[: T * SAMPLES_PER_FRAME]).cpu() for a in audio])  # [P,T]
    pixels = torch.from_numpy(people).float() / 127.5 - 1  # [P,T,3,h,w] in [-1,1]
    latents = torch.stack([vae.encode(pixels[p]).cpu() for p in range(2)])  # [P,T,c,h,w], encoded on the device
    return {"tokens": tokens, "latents": latents, "centre_crops": sum(b is None for b in boxes)}


def encode_video(video: Video, cfg: DyadGenConfig, tokenizer, vae) -> dict:
    """A video through the encoders: ``segments``, each with tokens [P,T], latents [P,T,c,h,w],
    speaking [P,T], emotion [P,T] and a name. From the raw video: one segment, the whole video, with
    each person's `_mute` wav (else the raw stereo track). From turn clips only: one segment per clip,
    its frames and both people's audio from the clip itself on the video's timeline, cross-checked
    against the wav segments; clips shorter than a window or unreadable are skipped and counted."""
    window = cfg.model.chunk_frames * cfg.data.window_steps
    if video.raw_video is None:
        return _encode_turn_clips(video, cfg, tokenizer, vae, window)
    if len(video.channel_wavs) == 2:
        audio = [load_audio(video.channel_wavs[side]) for side in SIDES]
    else:
        audio = list(load_stereo(video.raw_video))
    frames = decode_frames(video.raw_video)  # [T,H,W,3]
    T = min(len(frames), *(frames_for_samples(len(a)) for a in audio))
    if T < window:
        raise UserError(f"{video.raw_video}: {T} frames, shorter than one training window")
    segment = _encode(frames[:T], audio, cfg, tokenizer, vae)
    speaking, emotion = video_labels(video, T)
    segment.update(name="", first=0, speaking=torch.from_numpy(speaking), emotion=torch.from_numpy(emotion))
    return {"segments": [segment], "centre_crops": segment.pop("centre_crops"), "skipped_clips": 0}


def _encode_turn_clips(video: Video, cfg: DyadGenConfig, tokenizer, vae, window: int) -> dict:
    segments, centre_crops, skipped = [], 0, 0
    for clip in video.clips:
        if clip.start is None:  # no left log says when it was
            skipped += 1
            continue
        try:
            span = read_clip(video, clip)
        except UserError:
            skipped += 1
            continue
        if len(span.frames) < window:
            skipped += 1
            continue
        segment = _encode(span.frames, list(span.audio), cfg, tokenizer, vae)
        centre_crops += segment.pop("centre_crops")
        speaking, emotion = video_labels(video, len(span.frames), span.first)
        segment.update(name=clip.path.stem, first=span.first, speaking=torch.from_numpy(speaking),
                       emotion=torch.from_numpy(emotion))
        segments.append(segment)
    if not segments:
        raise UserError(f"{video.folder}: no raw video and no usable turn clip ({skipped} skipped)")
    return {"segments": segments, "centre_crops": centre_crops, "skipped_clips": skipped}


def read_clip(video: Video, clip: Clip) -> Span:
    """A turn clip's span of the video (side-by-side frames and stereo audio, uncropped), checked
    against the wav segment of every own turn inside it (ClipError when they disagree by more than a
    frame: the clip is not the moment the logs say)."""
    span = read_span(clip.path, clip.start, clip.end, origin=clip.start)
    for turn in video.turns:
        wav = video.segment_wav(turn)
        if clip.start - 0.05 <= turn.start and turn.end <= clip.end + 0.05 and wav is not None and wav.is_file():
            check_against_segment(clip.path, span, SIDES.index(turn.side), load_audio(wav), turn.start)
    return span


def windows(num_frames: int, length: int, stride: int) -> list[int]:
    return list(range(0, num_frames - length + 1, stride))


def context_tokens(tokens: torch.Tensor, start: int, end: int, pre: int, post: int, pad: int):
    """The ``pre`` tokens before frame ``start`` and the ``post`` from frame ``end`` of tokens [P,T],
    long [P,pre] and [P,post], the padding code ``pad`` where they fall outside."""
    P, T = tokens.shape
    before = torch.full((P, pre), pad, dtype=torch.long)
    after = torch.full((P, post), pad, dtype=torch.long)
    a = max(0, start - pre)
    before[:, pre - (start - a):] = tokens[:, a:start]
    b = min(T, end + post)
    after[:, : b - end] = tokens[:, end:b]
    return before, after


def video_samples(video: Video, encoded: dict, cfg: DyadGenConfig, text: str, split: str, pad: int):
    """(key, tensors, meta) for each window of each segment of one video; the K references per
    person come from frames of the same video and side outside the window; ``pad``: the tokenizer's
    padding code."""
    C = cfg.model.chunk_frames
    pre, post = audio_margin(cfg.decoder, cfg.model)
    length, stride = cfg.data.window_steps * C, cfg.data.window_stride_steps * C
    segments = encoded["segments"]
    pool = torch.cat([seg["latents"] for seg in segments], dim=1) if len(segments) > 1 else segments[0]["latents"]
    rng = np.random.default_rng(zlib.crc32(video.name.encode()))  # the same refs on every run
    offset = 0
    for seg in segments:
        T = seg["tokens"].shape[1]
        for start in windows(T, length, stride):
            a, b = offset + start, offset + start + length
            outside = np.concatenate([np.arange(0, a), np.arange(b, pool.shape[1])])
            if outside.size == 0:
                outside = np.arange(pool.shape[1])
            K = cfg.data.num_refs
            picks = torch.from_numpy(rng.choice(outside, size=K, replace=outside.size < K))
            sl = slice(start, start + length)
            before, after = context_tokens(seg["tokens"].long(), start, start + length, pre, post, pad)
            tensors = {
                "tokens": seg["tokens"][:, sl].long(),  # [P,T]
                "tokens_before": before,  # [P,pre]
                "tokens_after": after,  # [P,post]
                "latents": seg["latents"][:, sl].to(torch.bfloat16),  # [P,T,c,h,w]
                "refs": pool[:, picks].to(torch.bfloat16),  # [P,K,c,h,w]
                "speaking": seg["speaking"][:, sl].to(torch.uint8),  # [P,T]
                "emotion": seg["emotion"][:, sl].long(),  # [P,T]
                "mask": torch.ones(length, dtype=torch.bool),  # [T]
            }
            meta = {"video": video.name, "dialogue": video.dialogue_id, "start": start, "split": split,
                    "text": text, "clip": seg["name"], "frame": seg["first"] + start}  # frame: in the whole video
            key = f"{video.name}_{seg['name']}_{start:07d}" if seg["name"] else f"{video.name}_{start:07d}"
            yield key, tensors, meta
        offset += T


class _Encoders:
    """The frozen encoders, loaded once per process (the main one or each worker)."""

    tokenizer = None
    vae = None

    @classmethod
    def load(cls, cfg: DyadGenConfig, threads: int | None = None, device: str = "cpu", dtype: str = "fp32") -> None:
        """The tokenizer on ``device`` in fp32 (its codes are an argmin), the VAE encoder in ``dtype``."""
        from dyadgen.devices import pick_device, pick_dtype
        from dyadgen.encoders import load_audio_tokenizer, load_video_vae

        if threads:
            torch.set_num_threads(threads)
        dev = pick_device(device)
        cls.tokenizer, cls.vae = load_audio_tokenizer(cfg.audio_tokenizer), load_video_vae(cfg.vae)
        cls.vae.to(device=dev, dtype=pick_dtype(dtype, dev))
        if hasattr(cls.tokenizer, "to"):
            cls.tokenizer.to(dev)


def _process_video(video: Video, shard: Path, split: str, text: str, cfg: DyadGenConfig) -> dict:
    """Encode one video and write its shard (atomically). Returns counts or the reason it was skipped."""
    try:
        encoded = encode_video(video, cfg, _Encoders.tokenizer, _Encoders.vae)
    except UserError as err:  # a bad video is skipped and counted, never fatal
        return {"skipped": str(err)}
    pad = _Encoders.tokenizer.num_codes
    n = write_shard(shard, list(video_samples(video, encoded, cfg, text, split, pad)))
    return {"samples": n, "centre_crops": encoded["centre_crops"], "skipped_clips": encoded["skipped_clips"]}


def storage_per_hour(cfg: DyadGenConfig) -> dict[str, float]:
    """Bytes the shards take per hour of video at the config's size: both people's bf16 latents for
    every frame, times the windows' overlap (each window stores its own frames, so with a stride of half
    a window every latent is stored twice), plus the int64 audio codes."""
    f = 2 ** (len(cfg.vae.block_out_channels) - 1)
    c, h, w = cfg.vae.latent_channels, cfg.data.height // f, cfg.data.width // f
    overlap = cfg.data.window_steps / cfg.data.window_stride_steps
    frames = 25 * 3600 * 2  # both people
    latents = frames * c * h * w * 2 * overlap
    return {"bytes": latents + frames * 8 * overlap, "overlap": overlap, "latent_shape": (c, h, w)}


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
    from tqdm.auto import tqdm

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
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

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
    c, f = vae.latent_channels, vae.factor
    write_manifest(out, {"latent_shape": [c, cfg.data.height // f, cfg.data.width // f],
                         "num_audio_codes": tokenizer.num_codes, "window_frames": cfg.data.window_steps
                         * cfg.model.chunk_frames, "audio_margin": list(audio_margin(cfg.decoder, cfg.model)),
                         "config": cfg.to_dict()})
