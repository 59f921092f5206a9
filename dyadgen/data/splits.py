"""Deterministic held-out splits: the split of a dialogue is a hash of its id, never random.

SocioEmoDialog has no actor ids, so an unseen-actor split exists only where the user supplies an
actor map (json ``{video_name: {"left": actor, "right": actor}}``): each actor is hashed to a split,
and a video is held out when either of its actors is, so no held-out actor is ever trained on.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable

from dyadgen.errors import UserError


def split_of(dialogue_id: str, val_fraction: float = 0.05, test_fraction: float = 0.05) -> str:
    """"train", "val" or "test" from the first 8 bytes of sha256(dialogue id)."""
    h = int.from_bytes(hashlib.sha256(dialogue_id.encode()).digest()[:8], "big") / 2**64
    if h < test_fraction:
        return "test"
    if h < test_fraction + val_fraction:
        return "val"
    return "train"


def actor_split_of(actors: Iterable[str], val_fraction: float = 0.05, test_fraction: float = 0.05) -> str:
    """The split of a video from its actors: "test" if any actor is a test actor, else "val" if any is
    a validation actor, else "train"."""
    splits = {split_of(f"actor:{a}", val_fraction, test_fraction) for a in actors}
    return "test" if "test" in splits else "val" if "val" in splits else "train"


def load_actor_map(path: str | os.PathLike) -> dict[str, list[str]]:
    """``{video_name: [left actor, right actor]}`` from the actor map json."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        return {video: [str(sides["left"]), str(sides["right"])] for video, sides in data.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        shape = '{video: {"left": actor, "right": actor}}'
        raise UserError(f"{path}: not an actor map json of {shape} ({err})") from err


class Splitter:
    """The split of each video: by actor when an actor map is given, else by dialogue id."""

    def __init__(self, val_fraction: float = 0.05, test_fraction: float = 0.05, actor_map: str = ""):
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.actors = load_actor_map(actor_map) if actor_map else None

    def __call__(self, video_name: str, dialogue_id: str = "") -> str:
        """The split; raises UserError for a video the actor map does not list (it cannot be placed)."""
        if self.actors is None:
            return split_of(dialogue_id or video_name, self.val_fraction, self.test_fraction)
        if video_name not in self.actors:
            raise UserError(f"{video_name}: not in the actor map, so it has no unseen-actor split")
        return actor_split_of(self.actors[video_name], self.val_fraction, self.test_fraction)
