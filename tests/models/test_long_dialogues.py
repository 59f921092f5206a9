"""Generation deep into a dialogue meets only what training draws: a 10-minute stepwise run of the
tiny preset (backbone and KV cache; no decoder, no VAE) uses query and key positions that a training
window with some drawn gap to the pinned step 0 has too, and holds a flat cache; and each person's
sampling noise is their own."""

from __future__ import annotations

import torch

from dyadgen.config import load_config
from dyadgen.models import DyadBatch, DyadGen
from dyadgen.models.backbone import StepCache
from dyadgen.models.dyadgen import person_generators

TEN_MINUTES_STEPS = 3750  # 10 min x 25 fps / 4 frames per step


def test_ten_minutes_of_stepwise_generation_use_only_trained_positions_and_a_flat_cache():
    cfg = load_config(preset_name="tiny", overrides=["backbone.num_hidden_layers=1"])  # positions: any depth
    S, W, G = cfg.data.window_steps, cfg.model.history_steps, cfg.model.max_position_offset_steps
    assert W < S, "the training window is longer than the model window"
    assert G >= TEN_MINUTES_STEPS - S
    torch.manual_seed(0)
    model = DyadGen.from_config(cfg, num_audio_codes=16, latent_shape=(8, 8, 6)).eval()
    bb = model.backbone
    L, Lt = bb.step_len, cfg.model.max_text_tokens

    # training: positions of every token of one window and who sees whom, with a gap to be chosen
    steps = torch.arange(S)
    mask = bb.window_mask(Lt, S, torch.device("cpu"))  # [Q,K]

    def training_view(s: int, gap: int) -> tuple[list[int], set[int]]:
        pos = torch.cat([torch.arange(Lt), bb.positions(Lt, steps, gap)[0]])  # [Lt + S L]
        query = Lt + s * L + L - 1  # the step's last token (the one that sees most)
        return pos[Lt + s * L: Lt + (s + 1) * L].tolist(), set(pos[mask[query]].tolist())

    drawn = model.history_gap(20_000, torch.Generator().manual_seed(0), "cpu")
    assert drawn.min() == 0 and (drawn == 0).float().mean() > 0.4 and drawn.max() <= G and drawn.max() > 0.9 * G

    state = StepCache(bb, torch.randn(2, Lt, cfg.backbone.hidden_size))
    g = torch.Generator().manual_seed(1)
    sizes = []
    with torch.no_grad():
        for s in range(TEN_MINUTES_STEPS):
            state(torch.randn(2, L, cfg.backbone.hidden_size, generator=g))
            s_train = min(s, S - 1)  # the same view: this step as step s_train of a window with gap s - s_train
            query, keys = training_view(s_train, s - s_train)
            assert s - s_train <= G
            assert state.query_positions.tolist() == query, s
            assert set(state.attended_positions.tolist()) == keys, s
            sizes.append(sum(layer.keys.numel() + layer.values.numel() for layer in state.cache.layers))
    assert set(state.tokens_processed[1:]) == {L}  # one step's tokens per step, for all 10 minutes
    assert len(set(sizes[W:])) == 1 and sizes[-1] == sizes[W]  # the cache stops growing after W steps


def test_training_moves_each_window_as_a_whole_away_from_the_prompt():
    """The prompt offset: a window's step 0 moves with its other steps (their distances to each other and to
    step 0 are what generation meets), while the distance to the text prompt varies from window to window
    over the whole configured range; generation uses none."""
    cfg = load_config(preset_name="tiny", overrides=["backbone.num_hidden_layers=1"])
    model = DyadGen.from_config(cfg, num_audio_codes=16, latent_shape=(8, 8, 6))
    bb, top = model.backbone, cfg.model.max_prompt_offset_steps
    L, Lt, steps = bb.step_len, cfg.model.max_text_tokens, torch.arange(cfg.data.window_steps)
    plain = bb.positions(Lt, steps, gap=torch.tensor([5]))
    moved = bb.positions(Lt, steps, gap=torch.tensor([5]), offset=torch.tensor([7]))
    assert (moved - plain == 7 * L).all()  # every step, step 0 included
    drawn = model.prompt_offset(20_000, torch.Generator().manual_seed(0), "cpu")
    assert drawn.min() == 0 and drawn.max() == top and len(drawn.unique()) > 0.9 * (top + 1)
    # the training loss reaches the backbone with one offset per dialogue (both people), generation with none
    seen = []
    forward = bb.forward
    bb.forward = lambda text, steps, gap=0, offset=0: seen.append(offset) or forward(text, steps, gap, offset)
    T = cfg.window_frames
    batch = DyadBatch(tokens=torch.zeros(3, 2, T, dtype=torch.long), latents=torch.randn(3, 2, T, 8, 8, 6),
                      refs=torch.randn(3, 2, 8, 8, 6), mask=torch.ones(3, T, dtype=torch.bool))
    model.train()(batch, generator=torch.Generator().manual_seed(0))
    assert seen[0].shape == (6,) and torch.equal(seen[0][0::2], seen[0][1::2]) and len(seen[0].unique()) == 3
    model.eval().generate(torch.zeros(2, 8, dtype=torch.long), torch.randn(2, 8, 8, 6), euler_steps=1)
    assert len(seen) == 1  # generation runs the KV cache, at offset 0


def test_each_person_draws_their_own_noise_and_it_follows_them_when_swapped():
    refs = torch.randn(2, 8, 8, 6, generator=torch.Generator().manual_seed(0))  # [P,c,h,w]

    def draws(r: torch.Tensor) -> torch.Tensor:
        return torch.stack([torch.randn(4, 8, 8, 6, generator=gen) for gen in person_generators(r, seed=7)])

    a = draws(refs)
    assert not torch.allclose(a[0], a[1])  # two people, two noises: no shared blinks and drift
    assert torch.equal(draws(refs.flip(0)), a.flip(0))  # the swap symmetry of generation stays exact
    assert not torch.equal(draws(refs), torch.stack([torch.randn(4, 8, 8, 6, generator=gen)
                                                     for gen in person_generators(refs, seed=8)]))


def test_two_idle_people_move_independently_and_exposure_noise_is_a_setting():
    """Both silent, different faces: their frame-to-frame latent changes were identical up to the
    reference when they shared one noise draw; now they are unrelated."""
    from test_models import tiny_model

    model = tiny_model()
    T = 12 * model.cfg.chunk_frames
    silent = torch.full((2, T), model.pad_id)
    refs = torch.randn(2, 8, 16, 14, generator=torch.Generator().manual_seed(3))
    out = model.generate(silent, refs, euler_steps=2, seed=0)  # [P,T,c,h,w]
    motion = (out[:, 1:] - out[:, :-1]).flatten(1)  # [P,(T-1) c h w]
    corr = torch.corrcoef(motion)[0, 1]
    assert abs(float(corr)) < 0.3
    noisy = model.generate(silent, refs, euler_steps=2, seed=0, context_noise=0.1)
    assert not torch.allclose(noisy, out) and torch.isfinite(noisy).all()
    assert torch.equal(model.generate(silent, refs, euler_steps=2, seed=0, context_noise=0.0), out)
