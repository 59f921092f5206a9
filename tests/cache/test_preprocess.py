"""`dyadgen preprocess` on a synthetic corpus: shards per video, a run killed mid-way resumes without
redoing finished videos, and the resumed output equals an uninterrupted run's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dyadgen.cache.windows import iter_windows
from dyadgen.data.synthetic import synthesize
from dyadgen.encoders.fitted import FittedTokenizer

# the tiny preset with a random tiny VAE at 64 x 48 pixels: seconds per dialogue on 2 cores
SMALL = ["data.height=64", "data.width=48", "data.window_steps=4", "data.window_stride_steps=4", "vae.name_or_path="]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("pre")
    synthesize(root / "synth", 2, seed=5, use_espeak=False, progress=False)
    rng = np.random.default_rng(0)
    FittedTokenizer.fit([rng.standard_normal(32000).astype(np.float32)], num_codes=16, n_mels=8).save_pretrained(
        root / "tok")
    return root, [*SMALL, f"audio_tokenizer.name_or_path={root / 'tok'}"]


def preprocess_command(root: Path, out: Path, overrides: list[str], *extra: str) -> list[str]:
    return [sys.executable, "-m", "dyadgen", "preprocess", "--data", str(root / "synth"), "--out", str(out),
            "--preset", "tiny", *extra, *overrides]


def shard_contents(out: Path) -> dict[str, dict]:
    """Every window of every shard: the sum of each tensor, and whether it is in the train split."""
    from dyadgen.cache.shards import read_manifest

    contents = {}
    for entries in read_manifest(out)["splits"].values():
        for entry in entries:
            for key, tensors, meta in iter_windows(out, entry, pre=24, post=2, pad=16):
                contents[key] = {name: t.float().sum().item() for name, t in tensors.items()}
                contents[key]["split"] = float(meta["split"] == "train")
    return contents


@pytest.mark.slow  # fault injection: a preprocessing process killed halfway, then resumed
def test_preprocess_writes_one_shard_per_video_and_resumes_after_a_kill(corpus, tmp_path):
    root, overrides = corpus
    env = {**os.environ, "TQDM_DISABLE": "1"}
    killed = tmp_path / "killed"
    proc = subprocess.Popen(preprocess_command(root, killed, overrides), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while not list(killed.glob("*/*.tar")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = sorted(killed.glob("*/*.tar"))
    assert len(finished) == 1, "the kill came after the first of two videos"
    before = finished[0].stat().st_mtime_ns

    resumed = subprocess.run(preprocess_command(root, killed, overrides), env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "1 videos already done" in resumed.stdout
    assert finished[0].stat().st_mtime_ns == before  # the finished shard was not redone
    assert not list(killed.rglob(".*.tmp")), "no half-written shard is left behind"

    clean = tmp_path / "clean"
    straight = subprocess.run(preprocess_command(root, clean, overrides, "--workers", "2"), env=env,
                              capture_output=True, text=True)
    assert straight.returncode == 0, straight.stderr
    assert "from 2 videos" in straight.stdout
    assert (clean / "manifest.json").is_file()
    a, b = shard_contents(killed), shard_contents(clean)
    assert a and a.keys() == b.keys()
    for key in a:
        assert a[key] == pytest.approx(b[key], rel=1e-5), key


def test_a_folder_with_only_turn_clips_is_encoded_clip_by_clip(corpus, tmp_path):
    import shutil

    from dyadgen.cache.preprocess import preprocess
    from dyadgen.config import load_config

    root, overrides = corpus
    clips_only = tmp_path / "clips_only"
    shutil.copytree(root / "synth", clips_only)
    for raw in clips_only.glob("*_synth.mp4"):
        raw.unlink()  # the raw videos beside their folders; the turn clips, wavs, logs and ASR json remain
    cfg = load_config(preset_name="tiny", overrides=overrides)
    summary = preprocess(clips_only, tmp_path / "shards", cfg, progress=False)
    assert summary.videos == 2 and not summary.skipped
    from dyadgen.cache.shards import read_manifest

    entries = [e for split in read_manifest(tmp_path / "shards")["splits"].values() for e in split]
    windows = [w for entry in entries for w in iter_windows(tmp_path / "shards", entry)]
    assert windows and all(meta["clip"] for _, _, meta in windows)  # each segment names its clip
    assert len({meta["clip"] for _, _, meta in windows}) > 2
    assert any(tensors["speaking"].sum(0).max() >= 1 for _, tensors, _ in windows)  # someone speaks in turn clips
    assert all(t["latents"].shape[:2] == (2, 16) and t["refs"].shape[0] == 2 for _, t, _ in windows)


def test_a_window_read_from_a_shard_has_the_audio_conditions_of_the_same_frames_in_a_longer_window(corpus, tmp_path):
    """Windows of 16 frames tile the video (stride = length). The audio the decoder and the backbone
    read for one window's frames (the partner's last second, the own lookahead), built from the
    window and the tokens stored around it, equals what they read for the same frames inside the
    whole run of windows - at the window's edges too."""
    import torch

    from dyadgen.cache.loader import ShardDataset
    from dyadgen.cache.preprocess import preprocess
    from dyadgen.config import load_config
    from dyadgen.models import DyadGen

    root, overrides = corpus
    cfg = load_config(preset_name="tiny", overrides=overrides)
    preprocess(root / "synth", tmp_path / "shards", cfg, progress=False)
    data = ShardDataset(tmp_path / "shards", "train", batch_size=1, shuffle=False)
    if not data.samples:
        data = ShardDataset(tmp_path / "shards", "test", batch_size=1, shuffle=False)
    model = DyadGen.from_config(cfg, num_audio_codes=16, latent_shape=data.latent_shape)
    pre, post = model.audio_margin
    assert data.manifest["audio_margin"] == [pre, post] == [24, 2]
    video = [i for i, (path, _, _) in enumerate(data.samples) if path == data.samples[0][0]]  # one video, in order
    windows = [data.read(i, 0) for i in video]
    assert len(windows) >= 4
    whole = torch.cat([w["tokens"] for w in windows], dim=1)  # [P,N*16]
    T = windows[0]["tokens"].shape[1]
    for n in (1, 2, len(windows) - 2):  # (after the last window the video goes on: its context is real audio)
        w = windows[n]
        own = slice(n * T, (n + 1) * T)
        assert torch.equal(model.frame_audio(w["tokens"], w["tokens_before"], w["tokens_after"]),
                           model.frame_audio(whole)[:, own])  # [P,T,A]
        C = cfg.model.chunk_frames
        assert torch.equal(model.audio_windows(w["tokens"], w["tokens_after"]),
                           model.audio_windows(whole)[:, n * T // C: (n + 1) * T // C])  # [P,S,C]
    # without the stored context the window's first frames would see padding where the partner spoke
    first = windows[2]
    assert not torch.equal(model.frame_audio(first["tokens"]), model.frame_audio(whole)[:, 2 * T: 3 * T])


def test_parts_of_a_job_array_cover_every_video_once_and_leave_one_manifest(corpus, tmp_path):
    import json

    from dyadgen.cache.preprocess import preprocess, shard_of
    from dyadgen.config import load_config
    from dyadgen.errors import UserError

    names = [f"video_{i:05d}" for i in range(2000)]
    parts = [shard_of(n, 4) for n in names]
    assert set(parts) == {0, 1, 2, 3} and max(parts.count(k) for k in range(4)) < 600  # about 500 each
    root, overrides = corpus
    cfg = load_config(preset_name="tiny", overrides=overrides)
    out = tmp_path / "array"
    done = [preprocess(root / "synth", out, cfg, progress=False, shard_index=i, num_shards=2) for i in (0, 1)]
    assert sum(s.videos for s in done) == 2 and all(s.resumed == 0 for s in done)  # each video encoded once
    manifest = json.loads((out / "manifest.json").read_text())
    assert sum(len(shards) for shards in manifest["splits"].values()) == 2  # the last part indexes both
    with pytest.raises(UserError, match="shard-index"):
        preprocess(root / "synth", out, cfg, progress=False, shard_index=2, num_shards=2)


@pytest.mark.parametrize("reader", ["decord", "pyav"])
def test_a_video_streamed_in_pieces_is_the_video_decoded_whole(corpus, reader, monkeypatch):
    import sys

    from dyadgen.media.clips import decode_frames, frame_count, sample_frames, stream_frames

    root, _ = corpus
    raw = sorted((root / "synth").glob("*_synth.mp4"))[0]
    if reader == "pyav":
        monkeypatch.setitem(sys.modules, "decord", None)  # as on a machine without decord's wheel
    whole = decode_frames(raw)  # [T,H,W,3]
    pieces = list(stream_frames(raw, 7))
    assert {len(p) for p in pieces[:-1]} == {7} and len(pieces[-1]) <= 7
    assert np.array_equal(np.concatenate(pieces), whole)
    assert frame_count(raw) == len(whole)
    assert all(np.array_equal(f, whole[i]) for f, i in zip(sample_frames(raw, [0, 40, len(whole) - 1]),
                                                            [0, 40, len(whole) - 1], strict=True))


@pytest.fixture(scope="module")
def three_videos(tmp_path_factory) -> tuple[Path, list[Path]]:
    """Three synthetic videos; the middle one cut to half its size (an interrupted copy: it opens,
    its first frames decode, the rest is gone)."""
    from dyadgen.data.synthetic import synthesize

    data = tmp_path_factory.mktemp("three") / "data"
    synthesize(data, 3, seed=11, use_espeak=False, progress=False)
    raws = sorted(data.glob("*_synth.mp4"))
    raws[1].write_bytes(raws[1].read_bytes()[: raws[1].stat().st_size // 2])
    return data, raws


@pytest.mark.slow  # fault injection: a video that breaks halfway through encoding
def test_a_video_that_breaks_halfway_is_skipped_and_the_rest_kept(corpus, three_videos, tmp_path):
    """Preprocess skips the broken middle video with a one-line reason naming the file, leaves
    nothing of it on disk, and writes the other two. (With decord, the face-box frames find the gap
    before encoding starts.)"""
    from dyadgen.cache.preprocess import preprocess
    from dyadgen.cache.shards import read_manifest
    from dyadgen.config import load_config

    (_, overrides), (data, raws) = corpus, three_videos
    broken = raws[1]
    summary = preprocess(data, tmp_path / "shards", load_config(preset_name="tiny", overrides=overrides),
                         progress=False)
    assert summary.videos == 2 and len(summary.skipped) == 1
    file, reason = summary.skipped[0]
    assert broken.stem in file and str(broken) in reason and "\n" not in reason
    assert "(truncated or damaged)" in reason
    manifest = read_manifest(tmp_path / "shards")
    kept = {e["video"] for split in manifest["splits"].values() for e in split}
    assert kept == {raws[0].stem, raws[2].stem}
    assert not list((tmp_path / "shards").rglob(".*.tmp")) and not list((tmp_path / "shards").rglob(f"{broken.stem}*"))


def test_without_decord_a_video_that_breaks_halfway_stops_where_its_frames_stop(corpus, three_videos, tmp_path,
                                                                                monkeypatch):
    """PyAV alone streams the broken video until its frames stop, halfway, and the part already
    encoded is thrown away: the shard was never renamed into place."""
    import shutil
    import sys

    from dyadgen.cache.preprocess import preprocess
    from dyadgen.config import load_config

    monkeypatch.setitem(sys.modules, "decord", None)
    (_, overrides), (data, raws) = corpus, three_videos
    alone = tmp_path / "alone"
    shutil.copytree(data, alone, ignore=shutil.ignore_patterns(raws[0].stem + "*", raws[2].stem + "*"))
    summary = preprocess(alone, tmp_path / "shards", load_config(preset_name="tiny", overrides=overrides),
                         progress=False)
    assert summary.videos == 0 and len(summary.skipped) == 1
    assert "decoding stopped at frame" in summary.skipped[0][1] and "(truncated or damaged)" in summary.skipped[0][1]
    assert not list((tmp_path / "shards").rglob("*.tar")) and not list((tmp_path / "shards").rglob(".*.tmp"))
