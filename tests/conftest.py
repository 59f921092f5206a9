"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest
from trainrun import LATENT, WINDOW_STEPS


@pytest.fixture(scope="session")
def train_data(tmp_path_factory) -> dict[str, Path]:
    """Shards written by the real writer (dyadgen.data.shards) and a real fitted audio tokenizer."""
    import numpy as np
    import torch

    from dyadgen.data.shards import write_manifest, write_shard
    from dyadgen.encoders.fitted import FittedTokenizer

    root = tmp_path_factory.mktemp("train_data")
    rng = np.random.default_rng(0)
    FittedTokenizer.fit([rng.standard_normal(32000).astype(np.float32)], num_codes=16, n_mels=8).save_pretrained(
        root / "tokenizer")
    g = torch.Generator().manual_seed(0)
    T = WINDOW_STEPS * 4
    for split, videos in (("train", 3), ("val", 1)):
        (root / "shards" / split).mkdir(parents=True)
        for v in range(videos):
            samples = []
            for i in range(4):
                speaking = torch.rand(2, T, generator=g) > 0.5  # [P,T]
                tensors = {"tokens": torch.randint(0, 16, (2, T), generator=g),  # [P,T]
                           "latents": torch.randn(2, T, *LATENT, generator=g).bfloat16(),  # [P,T,c,h,w]
                           "refs": torch.randn(2, 3, *LATENT, generator=g).bfloat16(),  # [P,K,c,h,w]
                           "speaking": speaking.to(torch.uint8), "emotion": torch.randint(-1, 19, (2, T), generator=g),
                           "mask": torch.ones(T, dtype=torch.bool),
                           "tokens_before": torch.randint(0, 16, (2, 24), generator=g),  # [P,pre] audio around it
                           "tokens_after": torch.randint(0, 16, (2, 2), generator=g)}  # [P,post]
                samples.append((f"{split}{v}_{i:07d}", tensors, {"text": "你好", "split": split}))
            write_shard(root / "shards" / split / f"{split}{v}.tar", samples)
    write_manifest(root / "shards", {"latent_shape": list(LATENT), "num_audio_codes": 16, "window_frames": T,
                                     "audio_margin": [24, 2]})
    return {"shards": root / "shards", "tokenizer": root / "tokenizer"}
