"""The training loader: streams windows out of video shards, split across ranks with equal batch counts.

Every epoch lays the split's shards end to end in one seeded order (all windows of a video together,
in order) and streams that line through a shuffle buffer of ``buffer`` windows, webdataset-style:
each window enters in shard order and a seeded random one leaves. Window i of that stream goes to
rank i % world_size, cut to the same count on every rank, so every rank runs the same number of
batches, all ranks move through the same few shards at a time (shard after shard, never random
access over the corpus), and R processes see exactly the windows one process sees with R
accumulated micro-batches. The order depends only on the manifest, the seed and the epoch, never on
the data, so the position (epoch, batches done) is the loader's ``state_dict``: a resumed run
continues at the same window. A window is read from its video's head, the latent blocks it spans and
the reference pool, through a :class:`WindowReader` cache (windows overlap: a block is read once
while it stays cached), and one reference latent per person is drawn from the pool's frames outside
the window (seeded by epoch and window). Latents stay bf16 as stored: the trainer converts them on
its device. With ``batches(num_workers)`` the windows are read by that many DataLoader worker
processes, worker w reading every w-th batch, so the batches and their order are those of one
process; batches are pinned when a GPU is there.

A window that cannot be read or fails its checksum (:class:`BadSample`) is replaced by the next
readable window in this rank's order, so every rank still runs the same number of full batches and
a resumed run reads exactly what an uninterrupted one does (which windows are bad is a property of
the files). Each batch lists what it skipped under ``"skipped"`` [(window index, one-line reason)];
the known-bad windows are part of the loader's ``state_dict``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from dyadgen.cache.shards import BadSample, read_manifest
from dyadgen.cache.windows import WindowReader, shard_windows


class ShardDataset(torch.utils.data.IterableDataset):
    def __init__(self, shards: str | Path, split: str = "train", *, batch_size: int = 4, rank: int = 0,
                 world_size: int = 1, seed: int = 0, shuffle: bool = True, buffer: int = 64,
                 cache_mib: int = 0):
        self.root = Path(shards)
        self.manifest = read_manifest(self.root)
        self.entries = self.manifest["splits"].get(split, [])
        # every window of the split, in manifest order: (shard path, segment, start frame)
        self.samples = [(entry["path"], j, a) for entry in self.entries for j, a in shard_windows(entry)]
        self._shard_of = np.repeat(np.arange(len(self.entries)), [e["windows"] for e in self.entries])  # [N]
        self._first = np.cumsum([0] + [e["windows"] for e in self.entries])  # each shard's first window
        self.split, self.batch_size, self.rank, self.world_size = split, batch_size, rank, world_size
        self.seed, self.shuffle, self.buffer = seed, shuffle, max(1, buffer)
        self.epoch, self.position = 0, 0  # position: batches already yielded in this epoch
        self.bad: dict[int, str] = {}  # window index -> why it cannot be read (found by this process)
        cache = cache_mib << 20 if cache_mib > 0 else 0 if cache_mib < 0 else self._cache_need()  # -1: none
        self.reader = WindowReader(cache_bytes=cache)
        self.pre, self.post = self.manifest.get("audio_margin", (0, 0))
        self.pad = int(self.manifest.get("num_audio_codes", 0))  # the tokenizer's padding code

    def _cache_need(self) -> int:
        """Bytes of cache that hold a block for every window in the shuffle buffer, and a quarter more:
        a block stays until the other window that reads it leaves the buffer."""
        block = 2 * int(self.manifest.get("window_stride", self.manifest.get("window_frames", 1))) * 2 * int(
            np.prod(self.manifest["latent_shape"]))  # [P,K,c,h,w] bf16
        return int(1.25 * ((self.buffer if self.shuffle else 1) + 2) * block)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return tuple(self.manifest["latent_shape"])

    @property
    def samples_per_rank(self) -> int:
        return len(self.samples) // self.world_size

    def __len__(self) -> int:
        """Batches per epoch on every rank (the last partial batch is dropped)."""
        return self.samples_per_rank // self.batch_size

    def _order(self, epoch: int) -> np.ndarray:
        """This rank's windows of one epoch, in reading order: [samples_per_rank] window indices."""
        shards = np.arange(len(self.entries))
        if self.shuffle:
            shards = np.random.default_rng([self.seed, epoch]).permutation(shards)
        line = np.concatenate([np.arange(self._first[s], self._first[s + 1]) for s in shards]) if len(shards) \
            else np.zeros(0, np.int64)  # shard after shard
        if self.shuffle:
            line = shuffle_buffer(line, self.buffer, np.random.default_rng([self.seed, epoch, 1]))
        return line[self.rank:: self.world_size][: self.samples_per_rank]

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "position": self.position, "bad": {str(i): r for i, r in self.bad.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self.bad = {int(i): r for i, r in state.get("bad", {}).items()}

    def read(self, index: int, epoch: int, out: torch.Tensor | None = None) -> dict[str, Any]:
        """One window as the model takes it (latents bf16, into ``out`` when given); :class:`BadSample`
        when it cannot be read."""
        _, segment, start = self.samples[index]
        entry = self.entries[self._shard_of[index]]
        tensors, meta = self.reader.window(self.root, entry, segment, start, pre=self.pre, post=self.post,
                                           pad=self.pad, out=out)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch * 10_007 + index)
        refs = tensors["refs"]  # [P,R,c,h,w]: the pool's frames outside the window
        pick = torch.randint(refs.shape[1], (refs.shape[0],), generator=g)  # one candidate per person
        return {"tokens": tensors["tokens"], "tokens_before": tensors["tokens_before"],
                "tokens_after": tensors["tokens_after"], "latents": tensors["latents"],
                "refs": refs[torch.arange(refs.shape[0]), pick], "mask": tensors["mask"],
                "speaking": tensors["speaking"].bool(), "emotion": tensors["emotion"], "text": meta.get("text", "")}

    def __iter__(self):
        """Endless: batches of the current epoch from the saved position, then the next epochs."""
        if len(self) == 0:
            raise ValueError(f"{self.root}: split {self.split!r} has {len(self.samples)} windows, fewer than "
                             f"one batch of {self.batch_size} on each of {self.world_size} ranks")
        info = torch.utils.data.get_worker_info()  # inside a DataLoader worker: read only its share
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        k = 0  # batches since this iterator started; batch k is read by worker k % workers
        while True:
            order = self._order(self.epoch)
            while self.position < len(self):
                mine = k % workers == worker
                if mine:
                    batch = self._batch(order)
                self.position += 1
                k += 1
                if mine:
                    yield batch
            self.epoch, self.position = self.epoch + 1, 0

    def _batch(self, order: np.ndarray) -> dict[str, Any]:
        """The batch at ``self.position`` of ``order``, bad windows replaced by the next readable ones."""
        skipped: list[tuple[int, str]] = []
        first = self.position * self.batch_size
        L = int(self.manifest["window_frames"])
        latents = torch.empty(self.batch_size, 2, L, *self.latent_shape, dtype=torch.bfloat16)  # [B,P,L,c,h,w]
        samples = [self._read_readable(order, first + j, skipped, latents[j]) for j in range(self.batch_size)]
        return collate(samples, latents=latents) | {"skipped": skipped}

    def _read_readable(self, order: np.ndarray, at: int, skipped: list[tuple[int, str]],
                       out: torch.Tensor) -> dict[str, Any]:
        for offset in range(len(order)):
            index = int(order[(at + offset) % len(order)])
            if index in self.bad:
                continue
            try:
                return self.read(index, self.epoch, out)
            except BadSample as err:
                self.bad[index] = str(err)
                skipped.append((index, str(err)))
        raise BadSample(f"{self.root}: no readable window left in split {self.split!r} on rank {self.rank} "
                        f"({len(self.bad)} bad; run `dyadgen verify-shards {self.root}`)")

    def batches(self, num_workers: int = 0, pin_memory: bool | None = None):
        """Endless batches as ``iter(self)`` gives them, read by ``num_workers`` DataLoader processes
        (0: in this process), in pinned memory when a GPU is there (``pin_memory`` None) so the copy
        to it overlaps compute; the position (``state_dict``) counts the batches handed out here."""
        pin = torch.cuda.is_available() if pin_memory is None else pin_memory
        if num_workers <= 0:
            for batch in self:
                yield _pinned(batch) if pin else batch
            return
        loader = torch.utils.data.DataLoader(self, batch_size=None, num_workers=num_workers, pin_memory=pin)
        for batch in loader:  # the DataLoader takes its workers' batches in turn: the one-process order
            self.bad.update(dict(batch["skipped"]))  # found in a worker: known here, so it is saved
            self.position += 1
            if self.position == len(self):
                self.epoch, self.position = self.epoch + 1, 0
            yield batch


def shuffle_buffer(items: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """``items`` in the order a shuffle buffer of ``size`` gives them: each enters in turn, and once the
    buffer is full a random one leaves for each that enters; the rest leave in random order at the end."""
    out, held = [], []
    for item in items:
        held.append(item)
        if len(held) >= size:
            i = int(rng.integers(len(held)))
            held[i], held[-1] = held[-1], held[i]
            out.append(held.pop())
    out.extend(rng.permutation(np.asarray(held, dtype=np.int64)).tolist())
    return np.asarray(out, dtype=np.int64)


def _pinned(batch: dict[str, Any]) -> dict[str, Any]:
    return {k: v.pin_memory() if torch.is_tensor(v) else v for k, v in batch.items()}


def collate(samples: list[dict[str, Any]], latents: torch.Tensor | None = None) -> dict[str, Any]:
    """Stack samples: tokens [B,P,T], latents [B,P,T,c,h,w], refs [B,P,c,h,w], mask [B,T], ..., text
    list; ``latents``: the batch's latents already in place (the samples' are views of it)."""
    out = {k: torch.stack([s[k] for s in samples]) for k in samples[0] if k not in ("text", "latents")}
    out["latents"] = latents if latents is not None else torch.stack([s["latents"] for s in samples])
    out["text"] = [s["text"] for s in samples]
    return out
