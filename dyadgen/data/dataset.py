"""The training loader: streams samples from shards, split across ranks with equal batch counts.

Every epoch draws one permutation of all samples of a split (seeded by seed and epoch); rank r of
R takes every R-th sample of it, cut to the same count on every rank, so every rank runs the same
number of batches. Samples are read one by one from their shard (never the whole corpus), one
reference latent per person is drawn per sample (seeded by epoch and sample), and the position
(epoch, batches done) is the loader's ``state_dict``: a resumed run continues at the same sample.
With ``batches(num_workers)`` the samples are read by that many DataLoader worker processes, worker
w reading every w-th batch, so the batches and their order are those of one process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from dyadgen.data.shards import ShardReader, read_manifest


class ShardDataset(torch.utils.data.IterableDataset):
    def __init__(self, shards: str | Path, split: str = "train", *, batch_size: int = 4, rank: int = 0,
                 world_size: int = 1, seed: int = 0, shuffle: bool = True):
        self.root = Path(shards)
        self.manifest = read_manifest(self.root)
        entries = self.manifest["splits"].get(split, [])
        self.samples = [(shard["path"], key) for shard in entries for key in shard["keys"]]
        self.split, self.batch_size, self.rank, self.world_size = split, batch_size, rank, world_size
        self.seed, self.shuffle = seed, shuffle
        self.epoch, self.position = 0, 0  # position: batches already yielded in this epoch
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

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])

    def read(self, index: int, epoch: int) -> dict[str, Any]:
        path, key = self.samples[index]
        tensors, meta = self.reader.read(self.root / path, key)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch * 10_007 + index)
        refs = tensors["refs"].float()  # [P,K,c,h,w]
        pick = torch.randint(refs.shape[1], (refs.shape[0],), generator=g)  # one candidate per person
        return {"tokens": tensors["tokens"], "latents": tensors["latents"].float(),
                "refs": refs[torch.arange(refs.shape[0]), pick], "mask": tensors["mask"],
                "speaking": tensors["speaking"].bool(), "emotion": tensors["emotion"], "text": meta.get("text", "")}

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
                    picks = order[self.position * self.batch_size: (self.position + 1) * self.batch_size]
                    batch = collate([self.read(int(i), self.epoch) for i in picks])
                self.position += 1
                k += 1
                if mine:
                    yield batch
            self.epoch, self.position = self.epoch + 1, 0

    def batches(self, num_workers: int = 0):
        """Endless batches as ``iter(self)`` gives them, read by ``num_workers`` DataLoader processes
        (0: in this process); the position (``state_dict``) counts the batches handed out here."""
        if num_workers <= 0:
            yield from self
            return
        loader = torch.utils.data.DataLoader(self, batch_size=None, num_workers=num_workers)
        for batch in loader:  # the DataLoader takes its workers' batches in turn: the one-process order
            self.position += 1
            if self.position == len(self):
                self.epoch, self.position = self.epoch + 1, 0
            yield batch


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack samples: tokens [B,P,T], latents [B,P,T,c,h,w], refs [B,P,c,h,w], mask [B,T], ..., text list."""
    out = {k: torch.stack([s[k] for s in samples]) for k in samples[0] if k != "text"}
    out["text"] = [s["text"] for s in samples]
    return out
