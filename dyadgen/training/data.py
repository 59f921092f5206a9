"""The trainer's view of the shards: this process's endless training stream (its position is saved
with every checkpoint) and a fixed held-out set for validation, samples and default identities."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from dyadgen.cache.loader import ShardDataset
from dyadgen.config import DyadGenConfig
from dyadgen.errors import UserError


@dataclass
class TrainData:
    train: Any  # ShardDataset of this process's share of the train split
    val: Any | None  # ShardDataset of the val split (None when it has too few samples)
    latent_shape: tuple[int, int, int]

    def val_batches(self) -> Iterator[dict[str, Any]]:
        """The val split from its first batch, in a fixed order: the same batches at every validation."""
        if self.val is None:
            return iter(())
        self.val.load_state_dict({"epoch": 0, "position": 0})
        return islice(iter(self.val), len(self.val))

    def first_batch(self) -> dict[str, Any]:
        """The first val batch, or the first training batch of epoch 0 when there is no val split
        (read from a separate loader, so the training position is untouched)."""
        if self.val is not None:
            return next(self.val_batches())

        fresh = ShardDataset(self.train.root, "train", batch_size=self.train.batch_size, rank=self.train.rank,
                             world_size=self.train.world_size, seed=self.train.seed, buffer=self.train.buffer)
        return next(iter(fresh))


def build_data(cfg: DyadGenConfig, *, rank: int, world_size: int) -> TrainData:
    if not cfg.data.shards:
        raise UserError("data.shards is empty: point it at the folder `dyadgen preprocess` wrote")
    stream = {"buffer": cfg.data.shuffle_buffer, "cache_mib": cfg.data.read_cache_mib}
    train = ShardDataset(cfg.data.shards, "train", batch_size=cfg.train.batch_size, rank=rank,
                         world_size=world_size, seed=cfg.train.seed, **stream)
    if len(train) == 0:
        raise UserError(f"{cfg.data.shards}: {len(train.samples)} training windows are fewer than one batch of "
                        f"{cfg.train.batch_size} on each of {world_size} process(es)")
    window = cfg.window_frames
    stored = int(train.manifest.get("window_frames", window))
    if stored != window:
        raise UserError(f"{cfg.data.shards}: shards hold windows of {stored} frames, the config asks for "
                        f"{window} (data.window_steps x model.chunk_frames); preprocess again or match the config")
    val = ShardDataset(cfg.data.shards, "val", batch_size=cfg.train.batch_size, rank=rank,
                       world_size=world_size, seed=cfg.train.seed, shuffle=False, cache_mib=cfg.data.read_cache_mib)
    return TrainData(train=train, val=val if len(val) > 0 else None, latent_shape=train.latent_shape)


def audio_margin_problem(cfg: DyadGenConfig, manifest: dict) -> str | None:
    """A warning when the shards keep less audio around each window than the model reads (shards
    from before it was kept, or a larger context in the config): those frames are padding in training."""
    need = cfg.audio_margin
    stored = tuple(manifest.get("audio_margin", (0, 0)))
    if stored[0] >= need[0] and stored[1] >= need[1]:
        return None
    return (f"{cfg.data.shards}: the shards keep {stored[0]} frames of audio before and {stored[1]} after each window, "
            f"the model reads {need[0]} and {need[1]}: the rest is padding at window edges in training (preprocess "
            "again to train on the real audio there)")


def shard_size_problems(root: Path, manifest: dict) -> list[str]:
    """A cheap check at start-up: each shard of the manifest exists and has its recorded size."""
    problems = []
    for entries in manifest["splits"].values():
        for entry in entries:
            path = Path(root) / entry["path"]
            if not path.is_file():
                problems.append(f"{path}: missing ({entry.get('windows', 0)} windows)")
            elif "size" in entry and path.stat().st_size != entry["size"]:
                problems.append(f"{path}: {path.stat().st_size} bytes, the manifest says {entry['size']}")
    return problems
