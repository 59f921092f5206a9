"""Shared fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from trainrun import LATENT, WINDOW_STEPS


def pytest_configure(config):
    """Under pytest-xdist (``-n auto``, as the README's test command and .ci/run's slow tier run) each worker
    process takes its share of the cores for torch's threads, not all of them: two workers of two threads each
    on two cores run slower than one."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        torch.set_num_threads(max(1, cores // workers))


@pytest.fixture(scope="session")
def train_data(tmp_path_factory) -> dict[str, Path]:
    """Video shards written by the real writer (dyadgen.cache.windows) and a real fitted audio tokenizer."""
    import numpy as np
    import torch

    from dyadgen.cache.shards import write_manifest
    from dyadgen.cache.windows import write_video_shard
    from dyadgen.encoders.fitted import FittedTokenizer

    root = tmp_path_factory.mktemp("train_data")
    rng = np.random.default_rng(0)
    FittedTokenizer.fit([rng.standard_normal(32000).astype(np.float32)], num_codes=16, n_mels=8).save_pretrained(
        root / "tokenizer")
    g = torch.Generator().manual_seed(0)
    T = WINDOW_STEPS * 4  # frames per window; each video holds 4 windows side by side
    for split, videos in (("train", 3), ("val", 1)):
        (root / "shards" / split).mkdir(parents=True)
        for v in range(videos):
            n = 4 * T
            segment = {"tokens": torch.randint(0, 16, (2, n), generator=g),  # [P,N]
                       "latents": torch.randn(2, n, *LATENT, generator=g).bfloat16(),  # [P,N,c,h,w]
                       "speaking": torch.rand(2, n, generator=g) > 0.5,  # [P,N]
                       "emotion": torch.randint(-1, 19, (2, n), generator=g),
                       "meta": {"text": "你好", "split": split, "first": 0}}
            write_video_shard(root / "shards" / split / f"{split}{v}.tar", f"{split}{v}", [segment], window=T,
                              stride=T, num_refs=1)
    write_manifest(root / "shards", {"latent_shape": list(LATENT), "num_audio_codes": 16, "window_frames": T,
                                     "window_stride": T, "audio_margin": [24, 2]})
    return {"shards": root / "shards", "tokenizer": root / "tokenizer"}
