"""The training loader: streams samples from shards, split across ranks with equal batch counts.

Every epoch draws one permutation of all samples of a split (seeded by seed and epoch); rank r of
R takes every R-th sample of it, cut to the same count on every rank, so every rank runs the same
number of batches. Samples are read one by one from their shard (never the whole corpus), one
reference latent per person is drawn per sample (seeded by epoch and sample), and the position
(epoch, batches done) is the loader's ``state_dict``: a resumed run continues at the same sample.
With ``batches(num_workers)`` the samples are read by that many DataLoader worker processes, worker
w reading every w-th batch, so the batches and their order are those of one process.

A sample that cannot be read or fails its checksum (:class:`BadSample`) is replaced by the next
readable sample in this rank's order, so every rank still runs the same number of full batches and
a resumed run reads exactly what an uninterrupted one does (which samples are bad is a property of
the files). Each batch lists what it skipped under ``"skipped"`` [(sample index, one-line reason)];
the known-bad samples are part of the loader's ``state_dict``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from dyadgen.data.shards import BadSample, ShardReader, read_manifest


class ShardDataset(torch.utils.data.IterableDataset):
    def __init__(self, shards: str | Path, split: str = "train", *, batch_size: int = 4, rank: int = 0,
                 world_size: int = 1, seed: int = 0, shuffle: bool = True):
        self.root = Path(shards)
        self.manifest = read_manifest(self.root)
        entries = self.manifest["splits"].get(split, [])
        self.samples = [(shard["path"], key, blob) for shard in entries  # blob: its sha256 (None: not recorded)
                        for key, blob in zip(shard["keys"], shard.get("blobs") or [None] * len(shard["keys"]),
                                             strict=True)]
        self.split, self.batch_size, self.rank, self.world_size = split, batch_size, rank, world_size
        self.seed, self.shuffle = seed, shuffle
        self.epoch, self.position = 0, 0  # position: batches already yielded in this epoch
        self.bad: dict[int, str] = {}  # sample index -> why it cannot be read (found by this process)
        self.reader = ShardReader()

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
        order = np.arange(len(self.samples))
        if self.shuffle:
            order = np.random.default_rng([self.seed, epoch]).permutation(order)
        return order[self.rank:: self.world_size][: self.samples_per_rank]

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "position": self.position, "bad": {str(i): r for i, r in self.bad.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self.bad = {int(i): r for i, r in state.get("bad", {}).items()}

    def read(self, index: int, epoch: int) -> dict[str, Any]:
        """One sample as the model takes it; :class:`BadSample` when it cannot be read."""
        path, key, blob = self.samples[index]
        tensors, meta = self.reader.read(self.root / path, key, blob)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch * 10_007 + index)
        refs = tensors["refs"].float()  # [P,K,c,h,w]
        pick = torch.randint(refs.shape[1], (refs.shape[0],), generator=g)  # one candidate per person
        sample = {"tokens": tensors["tokens"], "latents": tensors["latents"].float(),
                  "refs": refs[torch.arange(refs.shape[0]), pick], "mask": tensors["mask"],
                  "speaking": tensors["speaking"].bool(), "emotion": tensors["emotion"], "text": meta.get("text", "")}
        if "tokens_before" in tensors:  # the audio around the window (shards written since it was kept)
            sample |= {"tokens_before": tensors["tokens_before"], "tokens_after": tensors["tokens_after"]}
        return sample

    def __iter__(self):
        """Endless: batches of the current epoch from the saved position, then the next epochs."""
        if len(self) == 0:
            raise ValueError(f"{self.root}: split {self.split!r} has {len(self.samples)} samples, fewer than "
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
        """The batch at ``self.position`` of ``order``, bad samples replaced by the next readable ones."""
        skipped: list[tuple[int, str]] = []
        first = self.position * self.batch_size
        samples = [self._read_readable(order, first + j, skipped) for j in range(self.batch_size)]
        return collate(samples) | {"skipped": skipped}

    def _read_readable(self, order: np.ndarray, at: int, skipped: list[tuple[int, str]]) -> dict[str, Any]:
        for offset in range(len(order)):
            index = int(order[(at + offset) % len(order)])
            if index in self.bad:
                continue
            try:
                return self.read(index, self.epoch)
            except BadSample as err:
                self.bad[index] = str(err)
                skipped.append((index, str(err)))
        raise BadSample(f"{self.root}: no readable sample left in split {self.split!r} on rank {self.rank} "
                        f"({len(self.bad)} bad; run `dyadgen verify-shards {self.root}`)")

    def batches(self, num_workers: int = 0):
        """Endless batches as ``iter(self)`` gives them, read by ``num_workers`` DataLoader processes
        (0: in this process); the position (``state_dict``) counts the batches handed out here."""
        if num_workers <= 0:
            yield from self
            return
        loader = torch.utils.data.DataLoader(self, batch_size=None, num_workers=num_workers)
        for batch in loader:  # the DataLoader takes its workers' batches in turn: the one-process order
            self.bad.update(dict(batch["skipped"]))  # found in a worker: known here, so it is saved
            self.position += 1
            if self.position == len(self):
                self.epoch, self.position = self.epoch + 1, 0
            yield batch


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack samples: tokens [B,P,T], latents [B,P,T,c,h,w], refs [B,P,c,h,w], mask [B,T], ..., text list."""
    out = {k: torch.stack([s[k] for s in samples]) for k in samples[0] if k != "text"}
    out["text"] = [s["text"] for s in samples]
    return out
