"""Video shards and the training loader: every latent stored once and read back exactly, windows as
index ranges, disjoint ranks with equal batch counts, shard-sequential streaming through a shuffle
buffer, exact resume."""

import json

import numpy as np
import pytest
import torch

from dyadgen.cache.loader import ShardDataset, shuffle_buffer
from dyadgen.cache.shards import read_manifest, write_manifest
from dyadgen.cache.windows import iter_windows, write_video_shard
from dyadgen.data.splits import split_of
from dyadgen.errors import UserError
from dyadgen.training.run import to_device

SHAPE = (4, 6, 5)
L, STRIDE = 8, 4  # window and stride: windows overlap by half
WINDOWS = [5, 4, 6, 3, 5]  # per video: 23 in all


def video(v, windows):
    """One video's segment: tokens name their frame (v * 1000 + frame), so a window says where it is from."""
    n = L + STRIDE * (windows - 1) + 3  # 3 frames after the last window
    g = torch.Generator().manual_seed(v)
    return {"tokens": v * 1000 + torch.arange(n).repeat(2, 1),  # [P,N]
            "latents": torch.randn(2, n, *SHAPE, generator=g).to(torch.bfloat16),  # [P,N,c,h,w]
            "speaking": torch.rand(2, n, generator=g) > 0.5, "emotion": torch.randint(-1, 19, (2, n), generator=g),
            "meta": {"video": f"vid{v}", "text": f"t{v}", "split": "train", "first": 0}}


def make_shards(tmp_path, windows=WINDOWS):
    (tmp_path / "train").mkdir()
    videos = [video(v, w) for v, w in enumerate(windows)]
    for v, seg in enumerate(videos):
        write_video_shard(tmp_path / "train" / f"vid{v}.tar", f"vid{v}", [seg], window=L, stride=STRIDE)
    write_manifest(tmp_path, {"latent_shape": list(SHAPE), "num_audio_codes": 9999, "window_frames": L,
                              "window_stride": STRIDE, "audio_margin": [3, 2]})
    return videos


def where(batch):
    """(video, start frame) of each window of a batch."""
    return [(int(t) // 1000, int(t) % 1000) for t in batch["tokens"][:, 0, 0]]


def seen(dataset, batches):
    it = iter(dataset)
    return [tuple(where(b)) for b in (next(it) for _ in range(batches))]


def test_windows_read_back_exactly_and_every_latent_is_stored_once(tmp_path):
    videos = make_shards(tmp_path)
    manifest = read_manifest(tmp_path)
    assert manifest["num_samples"]["train"] == sum(WINDOWS)
    for entry, seg in zip(manifest["splits"]["train"], videos, strict=True):
        got = list(iter_windows(tmp_path, entry, pre=3, post=2, pad=9999))
        assert len(got) == WINDOWS[int(entry["video"][3:])]
        for _, tensors, meta in got:
            a = meta["start"]
            assert torch.equal(tensors["latents"], seg["latents"][:, a: a + L])
            assert torch.equal(tensors["tokens"], seg["tokens"][:, a: a + L])
            assert torch.equal(tensors["speaking"].bool(), seg["speaking"][:, a: a + L])
            before = seg["tokens"][:, max(0, a - 3): a]  # the audio around the window comes from the video
            assert torch.equal(tensors["tokens_before"][:, 3 - before.shape[1]:], before)
            assert (tensors["tokens_before"][:, : 3 - before.shape[1]] == 9999).all()  # padding before its start
            assert torch.equal(tensors["tokens_after"], seg["tokens"][:, a + L: a + L + 2])
            for k in range(tensors["refs"].shape[1]):  # each reference is a frame of the video outside the window
                frames = [t for t in range(seg["latents"].shape[1]) if not a <= t < a + L
                          and torch.equal(seg["latents"][:, t], tensors["refs"][:, k])]
                assert frames, "a reference inside the window"
    assert not list(tmp_path.glob("**/.*.tmp"))
    # at a latent size where tar headers do not count: the file is the video's latents once, not once
    # per window (here windows overlap by half: the old layout was twice the size)
    big = {**video(0, 9), "latents": torch.randn(2, 8 + 4 * 8 + 3, 16, 32, 28).bfloat16()}
    record = write_video_shard(tmp_path / "big.tar", "big", [big], window=L, stride=STRIDE)
    frames = big["latents"].shape[1]
    once = big["latents"].nbytes * (1 + 1 / STRIDE)  # every frame, and one reference frame per block
    assert once < record["size"] < 1.05 * once
    assert record["size"] < 0.8 * record["windows"] * L / frames * big["latents"].nbytes  # the old layout's size


def test_two_ranks_see_disjoint_windows_and_equal_batch_counts(tmp_path):
    make_shards(tmp_path)
    ranks = [ShardDataset(tmp_path, batch_size=2, rank=r, world_size=2, seed=1, buffer=4) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 23 // 2 // 2
    got = [{w for batch in seen(d, len(d)) for w in batch} for d in ranks]
    assert not got[0] & got[1]
    assert len(got[0]) == len(got[1]) == 10
    # two ranks of micro-batch 1 see what one process sees, two micro-batches at a time
    one = seen(ShardDataset(tmp_path, batch_size=1, seed=1, buffer=4), 22)
    two = [seen(ShardDataset(tmp_path, batch_size=1, rank=r, world_size=2, seed=1, buffer=4), 11) for r in range(2)]
    assert [w for pair in zip(*two, strict=True) for w in pair] == one


def test_a_rank_streams_its_shards_in_order_through_the_shuffle_buffer(tmp_path):
    make_shards(tmp_path)
    data = ShardDataset(tmp_path, batch_size=1, seed=3, buffer=4, cache_mib=64)  # a cache that holds it all
    order = data._order(0)
    assert sorted(order.tolist()) == list(range(23))  # every window once per epoch
    line = np.concatenate([np.arange(data._first[s], data._first[s + 1])
                           for s in np.random.default_rng([3, 0]).permutation(5)])  # shards one after another
    entered = {int(w): i for i, w in enumerate(line)}
    assert all(entered[int(w)] <= i + 3 for i, w in enumerate(order))  # a window leaves at most 3 after entering
    assert order.tolist() != line.tolist() and data._order(1).tolist() != order.tolist()
    it = iter(data)
    for _ in range(23):
        next(it)
    needed = sum(2 + (w - 1) + L // STRIDE for w in WINDOWS)  # head, reference pool, the blocks windows cover
    assert data.reader.reads == needed  # overlapping windows share blocks: each read from disk once
    assert shuffle_buffer(np.arange(10), 1, np.random.default_rng(0)).tolist() == list(range(10))


def test_loader_resumes_at_the_same_window(tmp_path):
    make_shards(tmp_path)
    straight = ShardDataset(tmp_path, batch_size=3, seed=4, buffer=4)
    all_batches = seen(straight, 12)  # crosses an epoch boundary (7 batches per epoch)
    first = ShardDataset(tmp_path, batch_size=3, seed=4, buffer=4)
    seen(first, 9)
    state = first.state_dict()
    resumed = ShardDataset(tmp_path, batch_size=3, seed=4, buffer=4)
    resumed.load_state_dict(state)
    assert seen(resumed, 3) == all_batches[9:]


def test_one_reference_is_drawn_per_window_and_batches_stay_bf16_until_the_device(tmp_path):
    make_shards(tmp_path)
    batch = next(iter(ShardDataset(tmp_path, batch_size=4)))
    assert batch["tokens"].shape == (4, 2, L) and batch["latents"].shape == (4, 2, L, *SHAPE)
    assert batch["refs"].shape == (4, 2, *SHAPE) and batch["latents"].dtype == torch.bfloat16
    batch.pop("skipped")
    moved = to_device(batch, torch.device("cpu"))
    assert moved.latents.dtype == moved.refs.dtype == torch.float32 and moved.tokens.dtype == torch.long
    assert torch.equal(moved.latents, batch["latents"].float()) and torch.equal(moved.refs, batch["refs"].float())
    # each window's reference is one stored frame of its own video, never a window frame's copy or a blend
    for window_latents, ref in zip(batch["latents"], batch["refs"], strict=True):  # [P,L,c,h,w], [P,c,h,w]
        assert not any(torch.equal(ref[0], frame) for frame in window_latents[0])


def test_splits_are_deterministic_hashes_of_the_dialogue():
    ids = [f"250418_{i:03d}" for i in range(2000)]
    splits = [split_of(i) for i in ids]
    assert splits == [split_of(i) for i in ids]
    assert 60 < splits.count("val") < 140 and 60 < splits.count("test") < 140


def test_dataloader_workers_give_the_same_batches_and_position(tmp_path):
    make_shards(tmp_path)
    one = ShardDataset(tmp_path, batch_size=3, seed=2)
    expected = seen(one, 10)
    two = ShardDataset(tmp_path, batch_size=3, seed=2)
    it = two.batches(num_workers=2, pin_memory=False)
    assert [tuple(where(next(it))) for _ in range(10)] == expected  # crosses the epoch boundary
    assert two.state_dict() == one.state_dict()


def test_unseen_actor_split_never_trains_on_a_held_out_actor(tmp_path):
    from dyadgen.data.splits import Splitter

    actors = [f"actor{i}" for i in range(30)]
    videos = {f"v{i}": {"left": actors[i % 30], "right": actors[(7 * i + 3) % 30]} for i in range(200)}
    (tmp_path / "actors.json").write_text(json.dumps(videos))
    splitter = Splitter(0.1, 0.1, str(tmp_path / "actors.json"))
    splits = {v: splitter(v) for v in videos}
    held_out = {a for a in actors if split_of(f"actor:{a}", 0.1, 0.1) != "train"}
    assert held_out and set(splits.values()) >= {"train", "test"}
    trained = {a for v, s in splits.items() if s == "train" for a in videos[v].values()}
    assert not trained & held_out
    with pytest.raises(UserError, match="not in the actor map"):
        splitter("unknown_video")


def test_bad_windows_are_replaced_so_ranks_keep_full_batches_and_resume_exactly(tmp_path):
    make_shards(tmp_path)
    (tmp_path / "train" / "vid1.tar").unlink()  # 4 windows gone
    shard = tmp_path / "train" / "vid2.tar"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])  # an interrupted copy
    ranks = [ShardDataset(tmp_path, batch_size=2, rank=r, world_size=2, seed=3) for r in range(2)]
    epochs = [[next(it) for _ in range(len(d))] for d, it in ((d, iter(d)) for d in ranks)]
    assert [len(e) for e in epochs] == [len(ranks[0])] * 2 and len(ranks[0]) == 5  # equal counts on both ranks
    assert all(b["tokens"].shape[0] == 2 for e in epochs for b in e)  # full batches
    got = {w for e in epochs for b in e for w in where(b)}
    assert not {v for v, _ in got} & {1}  # nothing of the missing shard
    skipped = {i for e in epochs for b in e for i, _ in b["skipped"]}
    assert skipped == set(ranks[0].bad) | set(ranks[1].bad) and len(skipped) >= 5
    assert all("vid1.tar" in r or "vid2.tar" in r for d in ranks for r in d.bad.values())

    straight = ShardDataset(tmp_path, batch_size=2, rank=1, world_size=2, seed=3)
    first = ShardDataset(tmp_path, batch_size=2, rank=1, world_size=2, seed=3)
    it = iter(first)
    [next(it) for _ in range(3)]
    resumed = ShardDataset(tmp_path, batch_size=2, rank=1, world_size=2, seed=3)
    resumed.load_state_dict(first.state_dict())  # the known-bad windows come along
    assert resumed.bad == first.bad
    assert seen(resumed, 4) == seen(straight, 7)[3:]


def test_shards_of_the_old_format_are_refused_with_what_to_do(tmp_path):
    make_shards(tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    del manifest["format"]
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match="preprocess` again"):
        ShardDataset(tmp_path)
