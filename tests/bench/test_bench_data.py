"""The data benchmarks' inputs and counts (what they time is not asserted): the long synthetic video
is a corpus preprocess reads, and the shard reader's block cache saves reads."""

from __future__ import annotations

import numpy as np


def test_a_long_synthetic_video_is_a_corpus_that_preprocess_encodes(tmp_path):
    from dyadgen.bench.data import write_long_video
    from dyadgen.cache.preprocess import preprocess
    from dyadgen.config import load_config
    from dyadgen.data.socioemodialog import index_dataset
    from dyadgen.encoders.fitted import FittedTokenizer

    write_long_video(tmp_path / "data", "990101_001", 14.0, 256, 144)
    index = index_dataset(tmp_path / "data")
    (video,) = index.videos
    assert video.raw_video is not None and len(video.channel_wavs) == 2 and len(video.clips) >= 3
    assert {t.side for t in video.turns} == {"left", "right"}
    FittedTokenizer.fit([np.random.default_rng(0).standard_normal(32000).astype(np.float32)], num_codes=16,
                        n_mels=8).save_pretrained(tmp_path / "tok")
    cfg = load_config(preset_name="tiny", overrides=["data.height=64", "data.width=48", "vae.name_or_path=",
                                                    f"audio_tokenizer.name_or_path={tmp_path / 'tok'}",
                                                    "data.val_fraction=0", "data.test_fraction=0"])
    summary = preprocess(tmp_path / "data", tmp_path / "shards", cfg, progress=False)
    window, stride = cfg.window_frames, cfg.window_stride_frames
    assert summary.videos == 1 and summary.samples == (14 * 25 - window) // stride + 1 and not summary.skipped


def test_the_block_cache_reads_each_shared_block_once(tmp_path):
    from dyadgen.bench.data import read_rate, write_bench_shards
    from dyadgen.config.presets import preset

    cfg = preset("tiny")
    write_bench_shards(tmp_path / "shards", cfg, videos=2, seconds=20)
    cached = read_rate(tmp_path / "shards", 2, 0, batches=4, buffer=8)
    uncached = read_rate(tmp_path / "shards", 2, 0, batches=4, buffer=8, cache_mib=-1)
    assert cached["members_read_per_window"] < 0.6 * uncached["members_read_per_window"]
