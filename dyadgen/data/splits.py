"""Deterministic held-out dialogues: the split of a dialogue is a hash of its id, never random."""

from __future__ import annotations

import hashlib


def split_of(dialogue_id: str, val_fraction: float = 0.05, test_fraction: float = 0.05) -> str:
    """"train", "val" or "test" from the first 8 bytes of sha256(dialogue id)."""
    h = int.from_bytes(hashlib.sha256(dialogue_id.encode()).digest()[:8], "big") / 2**64
    if h < test_fraction:
        return "test"
    if h < test_fraction + val_fraction:
        return "val"
    return "train"
