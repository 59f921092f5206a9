"""The model on the tiny preset: flow math, KV-cache correctness, causality, symmetry, save/load."""

import math
from dataclasses import replace

import pytest
import torch

from dyadgen.config import load_config
from dyadgen.models import DyadBatch, DyadGen, flow
from dyadgen.models.decoder import ChunkCondition

LATENT = (8, 16, 14)


def tiny_model(*overrides: str, seed: int = 0) -> DyadGen:
    cfg = load_config(overrides=["model.history_steps=3", "decoder.depth=2", "decoder.hidden_size=64",
                                 "decoder.num_heads=2", *overrides])
    torch.manual_seed(seed)
    model = DyadGen.from_config(cfg, num_audio_codes=32, latent_shape=LATENT).eval()
    # adaLN-zero makes an untrained decoder's velocity identically zero; give the zero-initialised
    # weights values so that outputs depend on every input, as in a trained model
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.normal_(0, 0.05)
    return model


def dialogue(T: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, 32, (2, T), generator=g)  # [P,T]
    latents = torch.randn(2, T, *LATENT, generator=g)  # [P,T,c,h,w]
    refs = torch.randn(2, *LATENT, generator=g)  # [P,c,h,w]
    return tokens, latents, refs


# ---- flow matching: analytic Gaussian case ----------------------------------------------------------

def test_euler_on_exact_gaussian_velocity_reaches_the_data_distribution():
    # data x0 ~ N(m, s^2), noise ~ N(0,1): the marginal velocity field is known in closed form
    m, s = 2.0, 0.5

    def velocity(x, t, span):
        t = t.view(-1, 1)
        var = (1 - t) ** 2 * s**2 + t**2
        mean = (1 - t) * m
        # E[eps - x0 | x_t = x] for jointly Gaussian (x0, eps)
        cov_eps = t
        cov_x0 = (1 - t) * s**2
        return (cov_eps - cov_x0) / var * (x - mean) - m

    noise = torch.randn(20000, 1, generator=torch.Generator().manual_seed(0))
    states = flow.euler_solve(velocity, noise, flow.time_grid(200), states=True)
    x = states[-1]
    assert abs(x.mean().item() - m) < 0.02
    assert abs(x.std().item() - s) < 0.02
    assert states.shape == (201, *noise.shape) and torch.equal(states[0], noise)
    assert torch.equal(flow.euler_solve(velocity, noise, flow.time_grid(200)), x)


def test_time_sampler_and_shift_follow_flux():
    assert flow.resolution_mu(256) == pytest.approx(0.5) and flow.resolution_mu(4096) == pytest.approx(1.15)
    t = flow.sample_time(10000, mu=1.0, generator=torch.Generator().manual_seed(0))
    assert 0 < t.min() and t.max() < 1
    assert t.median() > 0.6  # the shift moves time towards the noise end (sigmoid(1) = 0.73)
    grid = flow.time_grid(4, mu=1.0)
    assert grid[0] == 1 and grid[-1] == 0 and torch.all(grid[1:] < grid[:-1])
    x0, eps = torch.randn(3, 2), torch.randn(3, 2)
    tt = torch.tensor([0.0, 0.5, 1.0])
    xt = flow.interpolate(x0, eps, tt)
    assert torch.allclose(xt[0], x0[0]) and torch.allclose(xt[2], eps[2])
    assert torch.allclose(flow.velocity_target(x0, eps), eps - x0)


# ---- backbone and cache --------------------------------------------------------------------------

def test_stepwise_conditions_equal_teacher_forced_across_the_window_edge():
    model = tiny_model()
    W = model.cfg.history_steps
    tokens, latents, refs = dialogue(T=3 * W * model.cfg.chunk_frames)
    full = model.teacher_forced_conditions(tokens, latents, refs)  # [P,S,M,D]
    steps, _ = model.stepwise_conditions(tokens, latents, refs)
    assert full.shape == steps.shape and full.shape[1] == 3 * W
    # float32 attention over the same keys in a different order of summation: ~1e-6
    assert torch.allclose(full, steps, atol=1e-4), (full - steps).abs().max()


def test_window_mask_matters():
    model = tiny_model()
    tokens, latents, refs = dialogue(T=6 * model.cfg.history_steps * model.cfg.chunk_frames)
    narrow = model.teacher_forced_conditions(tokens, latents, refs)
    model.cfg.history_steps = 1000
    wide = model.teacher_forced_conditions(tokens, latents, refs)
    W = 3
    assert torch.allclose(narrow[:, :W], wide[:, :W], atol=1e-5)  # inside the window: no difference
    assert not torch.allclose(narrow[:, -1], wide[:, -1], atol=1e-3)  # beyond it: history was dropped


def test_the_cache_is_used_and_stays_flat():
    model = tiny_model()
    C = model.cfg.chunk_frames
    tokens, _, refs = dialogue(T=C * 501)
    latents = torch.zeros(2, C * 501, *LATENT)
    _, state = model.stepwise_conditions(tokens, latents, refs)
    L = model.backbone.step_len
    assert state.tokens_processed[10] == state.tokens_processed[500] == L
    prefix = model.cfg.max_text_tokens + L
    assert state.cached_tokens == prefix + (model.cfg.history_steps - 1) * L


@pytest.mark.parametrize("tracks", ["both", "own"])
def test_future_audio_changes_no_earlier_output(tracks):
    model = tiny_model()
    C = model.cfg.chunk_frames
    tokens, _, refs = dialogue(T=8 * C)
    changed = tokens.clone()
    cut = 5 * C
    changed[:, cut:] = torch.randint(0, 32, changed[:, cut:].shape, generator=torch.Generator().manual_seed(9))
    a = model.generate(tokens, refs, euler_steps=2, guidance=2.0, seed=3, unconditional_tracks=tracks)
    b = model.generate(changed, refs, euler_steps=2, guidance=2.0, seed=3, unconditional_tracks=tracks)
    # lookahead k and the decoder's audio context reach k and a frames ahead of a chunk
    reach = max(model.cfg.audio_lookahead, model.decoder_cfg.audio_context)
    safe = (cut - reach) // C * C
    assert torch.equal(a[:, :safe], b[:, :safe])
    assert not torch.allclose(a[:, cut:], b[:, cut:])


@pytest.mark.parametrize("tracks", ["both", "own"])
def test_swapping_the_people_swaps_the_outputs(tracks):
    model = tiny_model()
    tokens, _, refs = dialogue(T=6 * model.cfg.chunk_frames + 2)
    emotion = torch.tensor([3, 11])
    a = model.generate(tokens, refs, emotion=emotion, euler_steps=2, guidance=1.5, seed=1,
                       unconditional_tracks=tracks)
    b = model.generate(tokens.flip(0), refs.flip(0), emotion=emotion.flip(0), euler_steps=2, guidance=1.5, seed=1,
                       unconditional_tracks=tracks)
    assert a.shape == (2, tokens.shape[1], *LATENT)
    assert torch.allclose(a, b.flip(0), atol=1e-5)


def test_own_track_guidance_leaves_the_reaction_to_the_partner_unguided():
    """unconditional_tracks "own": a person whose own track is the unconditional one (here: the left person
    silent, against silence) comes out as with no guidance, however the partner speaks, while the speaking
    partner is guided; guiding against both tracks changes the silent person too (the partner's voice
    differs between the branches)."""
    model = tiny_model()
    T = 6 * model.cfg.chunk_frames
    tokens, _, refs = dialogue(T=T)
    silence = torch.full_like(tokens, 5)  # [P,T] codes standing for silence
    tokens[0] = silence[0]  # the left person listens the whole time
    kw = dict(euler_steps=2, seed=2, unconditional=silence)
    plain = model.generate(tokens, refs, guidance=1.0, **kw)
    own = model.generate(tokens, refs, guidance=2.0, unconditional_tracks="own", **kw)
    both = model.generate(tokens, refs, guidance=2.0, unconditional_tracks="both", **kw)
    assert torch.allclose(own[0], plain[0], atol=1e-5)
    assert not torch.allclose(own[1], plain[1], atol=1e-3)
    assert not torch.allclose(both[0], plain[0], atol=1e-3)
    with pytest.raises(ValueError, match="unconditional_tracks"):
        model.generate(tokens, refs, guidance=2.0, unconditional_tracks="partner", **kw)


def test_guidance_interval_and_rescale():
    """Steps outside the guidance interval take the conditional velocity alone; the rescale pulls the guided
    velocity's spread to the conditional one's; the defaults leave plain guidance unchanged."""
    dec = tiny_model().decoder
    g = torch.Generator().manual_seed(0)
    N, C, M = 2, dec.chunk_frames, 4
    cond = ChunkCondition(tokens=torch.randn(N, M, dec.cond_in.in_features, generator=g),
                          ref=torch.randn(N, *LATENT, generator=g), prev=torch.randn(N, *LATENT, generator=g),
                          audio=torch.randint(0, 32, (N, C, dec.audio_tokens), generator=g), noise_level=torch.zeros(N))
    uncond = replace(cond, tokens=torch.randn(N, M, dec.cond_in.in_features, generator=g),
                     audio=torch.zeros_like(cond.audio))
    noise = torch.randn(N, C, *LATENT, generator=g)
    plain = dec.sample(noise, cond, euler_steps=3, guidance=1.0)
    guided = dec.sample(noise, cond, uncond, euler_steps=3, guidance=3.0)
    assert not torch.allclose(plain, guided)
    # the two branches in two calls give the batched call's result
    assert torch.allclose(dec.sample(noise, cond, uncond, euler_steps=3, guidance=3.0, guidance_mode="separate"),
                          guided, atol=1e-5)
    assert torch.equal(dec.sample(noise, cond, uncond, euler_steps=3, guidance=3.0, guidance_interval=(0.0, 1.0),
                                  guidance_rescale=0.0), guided)
    outside = dec.sample(noise, cond, uncond, euler_steps=3, guidance=3.0, guidance_interval=(1.5, 2.0))
    assert torch.equal(outside, plain)
    first_only = dec.sample(noise, cond, uncond, euler_steps=3, guidance=3.0, guidance_interval=(0.9, 1.0))
    assert not torch.allclose(first_only, plain) and not torch.allclose(first_only, guided)
    # one Euler step from t=1 to 0: x = noise - v, so the velocity is noise - x
    v_c = noise - dec.sample(noise, cond, euler_steps=1, guidance=1.0)
    v_g = noise - dec.sample(noise, cond, uncond, euler_steps=1, guidance=3.0)
    v_r = noise - dec.sample(noise, cond, uncond, euler_steps=1, guidance=3.0, guidance_rescale=1.0)
    spread = lambda v: v.flatten(1).std(dim=1)  # noqa: E731
    assert torch.allclose(spread(v_r), spread(v_c), rtol=1e-4)
    assert not torch.allclose(spread(v_g), spread(v_c), rtol=1e-2)


def test_generate_streams_chunks_and_seeds_reproduce():
    model = tiny_model()
    tokens, _, refs = dialogue(T=10)
    seen = []
    chunks = list(model.generate_stream(tokens, refs, euler_steps=2, seed=5,
                                        callback=lambda s, n, x: seen.append((s, n))))
    assert [c.shape[1] for c in chunks] == [4, 4, 2] and seen == [(0, 3), (1, 3), (2, 3)]
    again = model.generate(tokens, refs, euler_steps=2, seed=5)
    assert torch.equal(torch.cat(chunks, dim=1), again)
    assert not torch.equal(again, model.generate(tokens, refs, euler_steps=2, seed=6))


# ---- training loss ---------------------------------------------------------------------------------

def batch(B=2, T=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return DyadBatch(tokens=torch.randint(0, 32, (B, 2, T), generator=g),
                     latents=torch.randn(B, 2, T, *LATENT, generator=g), refs=torch.randn(B, 2, *LATENT, generator=g),
                     mask=torch.ones(B, T, dtype=torch.bool), speaking=torch.rand(B, 2, T, generator=g) > 0.5,
                     emotion=torch.randint(-1, 19, (B, 2, T), generator=g), text=["你好", ""])


def test_loss_terms_and_gradients_reach_every_part():
    model = tiny_model().train()
    out = model(batch(), generator=torch.Generator().manual_seed(0))
    assert {"loss", "loss/left", "loss/right", "loss/speaking", "loss/listening"} <= set(out)
    assert math.isfinite(out["loss"].item())
    out["loss"].backward()
    for part in (model.backbone.lm, model.backbone.resampler, model.backbone.audio_embed, model.decoder.patch_in):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters()), part


@pytest.mark.parametrize("own", [0.0, 1.0])
def test_own_audio_dropout_nulls_one_persons_track_and_keeps_the_partners(own):
    """model.own_audio_dropout trains what "own" guidance steers from: in a dropped sample exactly one
    person's own track is the null code and the partner's is untouched; audio_dropout nulls both."""
    model = tiny_model("model.audio_dropout=0.0" if own else "model.audio_dropout=1.0",
                       f"model.own_audio_dropout={own}").train()
    seen = []
    step_tokens = model.backbone.step_tokens
    model.backbone.step_tokens = lambda motion, audio, emo: seen.append(audio) or step_tokens(motion, audio, emo)
    b = replace(batch(B=8), text=[""] * 8)
    model(b, generator=torch.Generator().manual_seed(0))
    audio = seen[0].flatten(2)  # [B,P,S C]: each person's audio codes (padding past the window's end)
    nulled = ((audio == model.null_id) | (audio == model.pad_id)).all(-1)  # [B,P]: a person's whole track null
    kept = (audio != model.null_id).all(-1)  # [B,P]
    if own:
        assert (nulled.sum(1) == 1).all() and (kept.sum(1) == 1).all()
        assert nulled[:, 0].any() and nulled[:, 1].any()  # either person, at random
    else:
        assert nulled.all()


def test_padded_frames_do_not_count():
    model = tiny_model().eval()
    b = batch()
    b.mask[:, 8:] = False
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    base = model(b, generator=g())["loss"]
    b.latents[:, :, 8:] = 100.0  # garbage in the padding only changes the masked frames' targets
    assert torch.allclose(model(b, generator=g())["loss"], base)


def test_save_and_load_round_trip(tmp_path):
    model = tiny_model()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file() and (tmp_path / "config.json").is_file()
    again = DyadGen.from_pretrained(tmp_path)
    for (k, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    tokens, _, refs = dialogue(T=8)
    assert torch.equal(model.generate(tokens, refs, euler_steps=2), again.eval().generate(tokens, refs, euler_steps=2))


def test_real_preset_counts_on_the_meta_device():
    cfg = load_config(preset_name="real")
    with torch.device("meta"):
        model = DyadGen.from_config(cfg, num_audio_codes=512, latent_shape=(16, 64, 56))
    lm = sum(p.numel() for p in model.backbone.lm.parameters())
    assert abs(lm / 1e9 - 3.09) < 0.01  # Qwen2.5-3B with tied embeddings
    tokens = torch.zeros(2, 8, dtype=torch.long, device="meta")
    assert model.backbone.step_len == 3 * 8 + 2 * 4 and tokens.is_meta


@pytest.mark.slow
def test_the_compiled_decoder_step_gives_the_eager_result():
    """--compile (torch.compile of the decoder step, inductor on the CPU) changes the speed, not the video."""
    model = tiny_model()
    tokens, _, refs = dialogue(T=3 * model.cfg.chunk_frames)
    eager = model.generate(tokens, refs, euler_steps=2, guidance=2.0, seed=1)
    model.decoder.use_compiled()
    try:
        compiled = model.generate(tokens, refs, euler_steps=2, guidance=2.0, seed=1)
    finally:
        model.decoder.use_compiled(False)
    assert torch.allclose(compiled, eager, atol=1e-4)
    assert torch.equal(model.generate(tokens, refs, euler_steps=2, guidance=2.0, seed=1), eager)  # eager again
