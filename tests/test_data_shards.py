"""Shards and the training loader: exact read-back, disjoint ranks with equal batch counts, exact resume."""

import torch

from dyadgen.data.dataset import ShardDataset
from dyadgen.data.shards import ShardReader, write_manifest, write_shard
from dyadgen.data.splits import split_of

SHAPE = (4, 6, 5)


def sample(i, T=8):
    g = torch.Generator().manual_seed(i)
    return (f"vid{i // 5}_{i:07d}", {
        "tokens": torch.randint(0, 32, (2, T), generator=g),
        "latents": torch.randn(2, T, *SHAPE, generator=g).to(torch.bfloat16),
        "refs": torch.randn(2, 3, *SHAPE, generator=g).to(torch.bfloat16),
        "speaking": (torch.rand(2, T, generator=g) > 0.5).to(torch.uint8),
        "emotion": torch.randint(-1, 19, (2, T), generator=g),
        "mask": torch.ones(T, dtype=torch.bool),
    }, {"video": f"vid{i // 5}", "text": f"t{i}", "split": "train"})


def make_shards(tmp_path, n=23):
    samples = [sample(i) for i in range(n)]
    (tmp_path / "train").mkdir()
    for v in range(0, n, 5):
        write_shard(tmp_path / "train" / f"vid{v // 5}.tar", samples[v: v + 5])
    write_manifest(tmp_path, {"latent_shape": list(SHAPE), "num_audio_codes": 32})
    return samples


def test_shards_read_back_what_was_written(tmp_path):
    samples = make_shards(tmp_path)
    reader = ShardReader()
    for key, tensors, meta in samples:
        got, got_meta = reader.read(tmp_path / "train" / f"{meta['video']}.tar", key)
        assert got_meta == meta
        for name, value in tensors.items():
            assert torch.equal(got[name], value), name
    assert not list(tmp_path.glob("**/*.tmp"))


def seen(dataset, batches):
    it = iter(dataset)
    return [tuple(b["text"]) for b in (next(it) for _ in range(batches))]


def test_two_ranks_see_disjoint_samples_and_equal_batch_counts(tmp_path):
    make_shards(tmp_path)
    ranks = [ShardDataset(tmp_path, batch_size=2, rank=r, world_size=2, seed=1) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 23 // 2 // 2
    texts = [{t for batch in seen(d, len(d)) for t in batch} for d in ranks]
    assert not texts[0] & texts[1]
    assert len(texts[0]) == len(texts[1]) == 10


def test_loader_resumes_at_the_same_sample(tmp_path):
    make_shards(tmp_path)
    straight = ShardDataset(tmp_path, batch_size=3, seed=4)
    all_batches = seen(straight, 12)  # crosses an epoch boundary (7 batches per epoch)
    first = ShardDataset(tmp_path, batch_size=3, seed=4)
    seen(first, 9)
    state = first.state_dict()
    resumed = ShardDataset(tmp_path, batch_size=3, seed=4)
    resumed.load_state_dict(state)
    assert seen(resumed, 3) == all_batches[9:]


def test_one_reference_is_drawn_per_sample_and_batches_stack(tmp_path):
    make_shards(tmp_path)
    batch = next(iter(ShardDataset(tmp_path, batch_size=4)))
    assert batch["tokens"].shape == (4, 2, 8) and batch["latents"].shape == (4, 2, 8, *SHAPE)
    assert batch["refs"].shape == (4, 2, *SHAPE) and batch["latents"].dtype == torch.float32


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
    it = two.batches(num_workers=2)
    assert [tuple(next(it)["text"]) for _ in range(10)] == expected  # crosses the epoch boundary
    assert two.state_dict() == one.state_dict()


def test_unseen_actor_split_never_trains_on_a_held_out_actor(tmp_path):
    import json

    import pytest

    from dyadgen.data.splits import Splitter, split_of
    from dyadgen.errors import UserError

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


def test_bad_samples_are_replaced_so_ranks_keep_full_batches_and_resume_exactly(tmp_path):
    make_shards(tmp_path)
    (tmp_path / "train" / "vid1.tar").unlink()  # 5 samples gone
    shard = tmp_path / "train" / "vid3.tar"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])  # an interrupted copy
    ranks = [ShardDataset(tmp_path, batch_size=2, rank=r, world_size=2, seed=3) for r in range(2)]
    epochs = [[next(it) for _ in range(len(d))] for d, it in ((d, iter(d)) for d in ranks)]
    assert [len(e) for e in epochs] == [len(ranks[0])] * 2 and len(ranks[0]) == 5  # equal counts on both ranks
    assert all(b["tokens"].shape[0] == 2 for e in epochs for b in e)  # full batches
    texts = [t for e in epochs for b in e for t in b["text"]]
    assert not {f"t{i}" for i in range(5, 10)} & set(texts)  # nothing of the missing shard
    skipped = {i for e in epochs for b in e for i, _ in b["skipped"]}
    assert skipped == set(ranks[0].bad) | set(ranks[1].bad) and len(skipped) >= 6
    assert all("vid1.tar" in r or "vid3.tar" in r for d in ranks for r in d.bad.values())

    straight = ShardDataset(tmp_path, batch_size=2, rank=1, world_size=2, seed=3)
    first = ShardDataset(tmp_path, batch_size=2, rank=1, world_size=2, seed=3)
    it = iter(first)
    [next(it) for _ in range(3)]
    resumed = ShardDataset(tmp_path, batch_size=2, rank=1, world_size=2, seed=3)
    resumed.load_state_dict(first.state_dict())  # the known-bad samples come along
    assert resumed.bad == first.bad
    assert seen(resumed, 4) == seen(straight, 7)[3:]
