"""One video inside its shard, stored once, and the training windows read out of it.

Members of the shard of video ``V`` (P = 2 people, K = block frames = the window stride, c,h,w =
the latent shape):
- ``V_s000``: the head of segment 0 (the whole raw video, or one turn clip): tokens long [P,T],
  speaking uint8 [P,T], emotion long [P,T]; its JSON: video, dialogue, split, text, clip, first
  (the segment's first frame in the video), frames (T).
- ``V_s000_b00000``: latents bf16 [P,n,c,h,w] of the segment's frames [b*K, b*K + n); n = K except
  in the last block.
- ``V_refs``: refs bf16 [P,R,c,h,w] and ref_frames long [R] (their frame numbers in the video):
  ``num_refs`` seeded random frames of every block, the pool a window's reference is drawn from
  (frames outside the window; any when the video has no other).

A window of L frames starts every K frames of a segment, so it reads ceil(L / K) whole blocks, and
the audio codes around it (the partner's past, the own lookahead) come from the segment's head.
:class:`WindowReader` assembles windows from these members through one byte-bounded cache, so
neighbouring windows of a video (which share blocks) read each block from disk once.
"""

from __future__ import annotations

import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from dyadgen.cache.shards import BadSample, ShardReader, ShardWriter, sha256_file


def segment_key(video: str, segment: int) -> str:
    return f"{video}_s{segment:03d}"


def block_key(video: str, segment: int, block: int) -> str:
    return f"{segment_key(video, segment)}_b{block:05d}"


def refs_key(video: str) -> str:
    return f"{video}_refs"


def window_starts(num_frames: int, length: int, stride: int) -> list[int]:
    return list(range(0, num_frames - length + 1, stride))


def window_blocks(start: int, length: int, block_frames: int) -> range:
    return range(start // block_frames, (start + length - 1) // block_frames + 1)


@dataclass
class VideoShardWriter:
    """Writes one video's members into an open :class:`ShardWriter`, segment by segment and block by
    block as they are encoded (a long video is never held whole), choosing the reference frames as
    the blocks go by; :meth:`finish` adds the reference pool and returns the shard record's fields."""

    writer: ShardWriter
    video: str
    window: int  # L: frames per training window
    block_frames: int  # K: the window stride
    num_refs: int = 1  # reference frames kept per block and person
    segments: list[dict] = field(default_factory=list)
    _refs: list[Tensor] = field(default_factory=list)  # [P,c,h,w] each
    _ref_frames: list[int] = field(default_factory=list)  # their frames in the video

    def __post_init__(self):
        self._rng = np.random.default_rng(zlib.crc32(self.video.encode()))  # the same refs on every run

    def begin(self) -> None:
        """Start the next segment; its blocks follow, then :meth:`end`."""
        self.segments.append({"key": segment_key(self.video, len(self.segments)), "frames": 0})
        self._pending: list[tuple[Tensor, int]] = []  # reference latents [P,c,h,w], frame in the segment

    def block(self, latents: Tensor) -> None:
        """The next block of the current segment: latents [P,n,c,h,w], n = K (fewer only at its end)."""
        seg = self.segments[-1]
        j, k = len(self.segments) - 1, seg["frames"] // self.block_frames
        latents = latents.to(torch.bfloat16)
        self.writer.add(block_key(self.video, j, k), {"latents": latents})
        picks = np.sort(self._rng.choice(latents.shape[1], size=min(self.num_refs, latents.shape[1]), replace=False))
        self._pending += [(latents[:, t].clone(), seg["frames"] + int(t)) for t in picks]
        seg["frames"] += latents.shape[1]

    def end(self, tokens: Tensor, speaking: Tensor, emotion: Tensor, meta: dict) -> None:
        """Finish the segment with its head: tokens long [P,T], speaking bool [P,T], emotion long
        [P,T] for its T frames (the blocks' total); ``meta`` must hold ``first``, its first frame in
        the video."""
        seg = self.segments[-1]
        T, seg["first"] = seg["frames"], int(meta["first"])
        if tokens.shape[1] != T or speaking.shape[1] != T or emotion.shape[1] != T:
            raise ValueError(f"{self.video}: {T} frames of latents, labels for {tokens.shape[1]}")
        self.writer.add(seg["key"], {"tokens": tokens.long(), "speaking": speaking.to(torch.uint8),
                                     "emotion": emotion.long()}, {**meta, "frames": T, "video": self.video})
        self._refs += [r for r, _ in self._pending]
        self._ref_frames += [seg["first"] + t for _, t in self._pending]

    def finish(self) -> dict:
        """Add the reference pool; the fields the shard's record keeps about the video."""
        self.writer.add(refs_key(self.video), {"refs": torch.stack(self._refs, dim=1),  # [P,R,c,h,w]
                                               "ref_frames": torch.tensor(self._ref_frames, dtype=torch.long)})
        windows = sum(len(window_starts(s["frames"], self.window, self.block_frames)) for s in self.segments)
        return {"video": self.video, "segments": self.segments, "block_frames": self.block_frames,
                "window_frames": self.window, "windows": windows}


def write_video_shard(path: str | Path, video: str, segments: list[dict], *, window: int, stride: int,
                      num_refs: int = 1) -> dict:
    """A whole video held in memory -> its shard (``segments``: tokens [P,T], latents [P,T,c,h,w],
    speaking [P,T], emotion [P,T] and the head's meta with ``first``); returns the record."""
    with ShardWriter(path) as writer:
        out = VideoShardWriter(writer, video, window, stride, num_refs)
        for seg in segments:
            out.begin()
            for a in range(0, seg["latents"].shape[1], stride):
                out.block(seg["latents"][:, a: a + stride])
            out.end(seg["tokens"], seg["speaking"], seg["emotion"], seg["meta"])
        return writer.finish(**out.finish())


def shard_windows(entry: dict) -> list[tuple[int, int]]:
    """(segment, start frame) of every window of a shard's record, in order."""
    L, K = entry["window_frames"], entry["block_frames"]
    return [(j, a) for j, seg in enumerate(entry["segments"]) for a in window_starts(seg["frames"], L, K)]


def windows_needing(entry: dict, bad: set[str]) -> int:
    """How many of a shard's windows read one of the ``bad`` members."""
    if not bad or "segments" not in entry:
        return entry.get("windows", 0) if bad else 0
    video = entry["video"]
    if refs_key(video) in bad:
        return entry["windows"]
    L, K = entry["window_frames"], entry["block_frames"]
    return sum(segment_key(video, j) in bad or any(block_key(video, j, b) in bad for b in window_blocks(a, L, K))
               for j, a in shard_windows(entry))


@dataclass
class ShardCheck:
    path: Path
    problem: str = ""  # what is wrong with the file ("": intact)
    bad_samples: list[str] = field(default_factory=list)  # one line per unreadable or changed member
    samples: int = 0  # training windows the shard holds
    lost: int = 0  # of those, windows that read a bad member


def verify_shard(folder: Path, entry: dict, progress=None) -> ShardCheck:
    """Check one manifest entry's shard: intact when its size and sha256 match; otherwise every
    member is read and checked against its blob checksum, and the windows that need a bad one are
    counted as lost (a missing shard loses all of them)."""
    path = folder / entry["path"]
    check = ShardCheck(path, samples=entry.get("windows", len(entry["keys"])))
    if not path.is_file():
        check.problem = f"{path}: missing ({check.samples} windows)"
        check.bad_samples = [f"{path}: sample {key}: missing shard" for key in entry["keys"]]
        check.lost = check.samples
        return check
    size = path.stat().st_size
    if "sha256" in entry and size == entry["size"] and sha256_file(path, progress=progress) == entry["sha256"]:
        return check
    check.problem = (f"{path}: {size} bytes, the manifest says {entry['size']}" if size != entry.get("size", size)
                     else f"{path}: checksum mismatch")
    reader, bad = ShardReader(), set()
    for key, blob in zip(entry["keys"], entry.get("blobs") or [None] * len(entry["keys"]), strict=True):
        try:
            reader.read(path, key, blob)
        except BadSample as err:
            check.bad_samples.append(str(err))
            bad.add(key)
    reader.close()
    check.lost = windows_needing(entry, bad)
    return check


class WindowReader:
    """Training windows out of video shards. Members are read through one LRU cache of at most
    ``cache_bytes`` (neighbouring windows share blocks: each is read once while it stays cached),
    with up to ``open_shards`` tar files kept open (a shard's headers are read once, not per window)."""

    def __init__(self, cache_bytes: int = 1 << 30, open_shards: int = 8):
        self.cache_bytes, self.open_shards = cache_bytes, open_shards
        self._readers: OrderedDict[str, ShardReader] = OrderedDict()
        self._cache: OrderedDict[tuple[str, str], tuple[dict, dict, int]] = OrderedDict()
        self._cached = 0  # bytes in the cache
        self.reads = 0  # members read from disk (for the benchmark)
        self._blobs: dict[str, dict[str, str | None]] = {}

    def member(self, path: Path, key: str, sha256: str | None) -> tuple[dict[str, Tensor], dict]:
        """A member's tensors and meta, from the cache or the shard (BadSample when unreadable)."""
        hit = self._cache.get((str(path), key))
        if hit is not None:
            self._cache.move_to_end((str(path), key))
            return hit[0], hit[1]
        reader = self._readers.pop(str(path), None) or ShardReader()
        self._readers[str(path)] = reader
        while len(self._readers) > self.open_shards:
            self._readers.popitem(last=False)[1].close()
        tensors, meta = reader.read(path, key, sha256)
        self.reads += 1
        size = sum(t.nbytes for t in tensors.values())
        if size <= self.cache_bytes:
            self._cache[(str(path), key)] = (tensors, meta, size)
            self._cached += size
            while self._cached > self.cache_bytes:
                self._cached -= self._cache.popitem(last=False)[1][2]
        return tensors, meta

    def window(self, root: Path, entry: dict, segment: int, start: int, *, pre: int, post: int,
               pad: int, out: Tensor | None = None) -> tuple[dict[str, Tensor], dict]:
        """One window of a shard: tokens long [P,L], tokens_before [P,pre], tokens_after [P,post],
        latents bf16 [P,L,c,h,w] (copied from the blocks into ``out`` when given: a batch's slot, so
        the window is copied once), refs bf16 [P,R,c,h,w] (the pool's frames outside the window),
        speaking uint8 [P,L], emotion long [P,L], mask bool [L]; and the segment's meta with the
        window's ``start`` and ``frame`` (its first frame in the video)."""
        path = root / entry["path"]
        blobs = self._blobs.get(entry["path"])
        if blobs is None:  # member -> its recorded sha256
            blobs = self._blobs[entry["path"]] = dict(zip(entry["keys"], entry.get("blobs") or [None] * len(
                entry["keys"]), strict=True))
        video, L, K = entry["video"], entry["window_frames"], entry["block_frames"]
        head, meta = self.member(path, segment_key(video, segment), blobs.get(segment_key(video, segment)))
        keys = [block_key(video, segment, b) for b in window_blocks(start, L, K)]
        blocks = [self.member(path, key, blobs.get(key))[0]["latents"] for key in keys]
        latents = out if out is not None else torch.empty(blocks[0].shape[0], L, *blocks[0].shape[2:],
                                                           dtype=blocks[0].dtype)  # [P,L,c,h,w]
        at = window_blocks(start, L, K).start * K - start  # the first block's first frame, in the window
        for block in blocks:  # each block's part inside the window
            a, b = max(at, 0), min(at + block.shape[1], L)
            latents[:, a:b] = block[:, a - at: b - at]
            at += block.shape[1]
        pool, _ = self.member(path, refs_key(video), blobs.get(refs_key(video)))
        frame = meta["first"] + start
        outside = (pool["ref_frames"] < frame) | (pool["ref_frames"] >= frame + L)  # [R]
        refs = pool["refs"][:, outside] if outside.any() else pool["refs"]  # [P,R,c,h,w]
        before, after = context_tokens(head["tokens"], start, start + L, pre, post, pad)
        sl = slice(start, start + L)
        tensors = {"tokens": head["tokens"][:, sl], "tokens_before": before, "tokens_after": after,
                   "latents": latents, "refs": refs, "speaking": head["speaking"][:, sl],
                   "emotion": head["emotion"][:, sl], "mask": torch.ones(L, dtype=torch.bool)}
        return tensors, {**meta, "start": start, "frame": frame}

    def close(self) -> None:
        for reader in self._readers.values():
            reader.close()
        self._readers.clear()
        self._cache.clear()
        self._cached = 0


def context_tokens(tokens: Tensor, start: int, end: int, pre: int, post: int, pad: int) -> tuple[Tensor, Tensor]:
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


def iter_windows(root: str | Path, entry: dict, *, pre: int = 0, post: int = 0, pad: int = 0):
    """(key, tensors, meta) of every window of one manifest entry, in order (for checks and tools)."""
    reader = WindowReader()
    for segment, start in shard_windows(entry):
        tensors, meta = reader.window(Path(root), entry, segment, start, pre=pre, post=post, pad=pad)
        yield f"{segment_key(entry['video'], segment)}_{start:07d}", tensors, meta
    reader.close()
