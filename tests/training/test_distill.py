"""Guidance distillation: the student's one pass matches the teacher's guided velocity on held-out
inputs, its few-step samples land where the teacher's guided 4 steps do, and a model carrying a student
keeps causality and the exact person swap."""

from dataclasses import replace

import pytest
import torch

from dyadgen.config import load_config
from dyadgen.models import DyadGen, flow
from dyadgen.models.decoder import ChunkCondition
from dyadgen.training.distill import (
    GuidanceDistillConfig,
    Rows,
    distillation_targets,
    guided_solution,
    load_distill_config,
    make_student,
    sample_errors,
    train_student,
    velocity_error,
    with_student,
)

LATENT = (8, 16, 14)
VOCAB = 32


def teacher_model(seed: int = 0) -> DyadGen:
    cfg = load_config(overrides=["model.history_steps=3", "decoder.depth=1", "decoder.hidden_size=32",
                                 "decoder.num_heads=2"])
    torch.manual_seed(seed)
    model = DyadGen.from_config(cfg, num_audio_codes=VOCAB, latent_shape=LATENT).eval()
    with torch.no_grad():  # adaLN-zero: give the zero-initialised weights values, as training would
        for p in model.parameters():
            if not p.any():
                p.normal_(0, 0.05)
    return model


def rows(teacher, n: int, seed: int) -> Rows:
    """Random decoder inputs; the unconditional branch a fixed function of the conditional one (as the
    backbone's null-audio conditions are of the same motion), its audio the null token."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randn(n, 4, teacher.cond_in.in_features, generator=g)
    cond = ChunkCondition(tokens, torch.randn(n, *LATENT, generator=g), torch.randn(n, *LATENT, generator=g),
                          torch.randint(0, VOCAB, (n, teacher.chunk_frames, teacher.audio_tokens), generator=g),
                          torch.zeros(n))
    return Rows(cond, replace(cond, tokens=0.5 * tokens.flip(-1), audio=torch.full_like(cond.audio, VOCAB + 1)))


def test_targets_of_the_finest_grid_are_the_teachers_guided_velocity():
    teacher = teacher_model().decoder
    batch = rows(teacher, 6, seed=0)
    noise = torch.randn(6, teacher.chunk_frames, *LATENT, generator=torch.Generator().manual_seed(1))
    scale = torch.linspace(1.0, 3.0, 6)
    states, grid = guided_solution(teacher, batch, noise, scale, 4)
    assert torch.equal(grid, flow.time_grid(4, teacher.mu))
    x0, t0, span, target = distillation_targets(states, grid, (4,), torch.Generator().manual_seed(2))
    with torch.no_grad():
        v = teacher.guided_velocity(x0, t0, batch.cond, batch.uncond, scale)
    assert torch.allclose(target, v, atol=1e-4, rtol=1e-3)
    # a 1-step target spans the whole grid: noise to the teacher's 4-step sample
    x0, t0, span, target = distillation_targets(states, grid, (1,), torch.Generator().manual_seed(2))
    assert torch.equal(x0, noise) and torch.allclose(span, torch.ones(6))
    assert torch.allclose(noise - target, states[-1], atol=1e-5)


def test_the_student_matches_the_teachers_guided_velocity_on_held_out_inputs():
    teacher = teacher_model().decoder
    train, held = rows(teacher, 256, seed=0), rows(teacher, 32, seed=1)
    student = make_student(teacher, (4, 2, 1))
    before = velocity_error(student, teacher, held, 2.0, seed=1)
    before_samples = sample_errors(student, teacher, held, 2.0, seed=2)
    train_student(student, teacher, train,
                  GuidanceDistillConfig(max_steps=100, batch_size=12, lr=1e-3, eval_every=0), log=lambda _: None)
    after = velocity_error(student, teacher, held, 2.0, seed=1)
    samples = sample_errors(student, teacher, held, 2.0, seed=2)
    # the stated tolerance: one pass within 15 % (relative RMS) of the teacher's two-branch guided velocity
    assert after < 0.15 and after < 0.4 * before
    for k in (4, 2, 1):  # k student steps land nearer the teacher's guided 4 steps than k unguided teacher steps
        assert samples[f"student_steps{k}"] < 0.4 * samples[f"unguided_teacher_steps{k}"]
        assert samples[f"student_steps{k}"] < 0.4 * before_samples[f"student_steps{k}"]


def test_a_model_with_a_student_generates_causally_and_swaps_people_exactly():
    model = teacher_model()
    student = make_student(model.decoder, (2, 1))
    with torch.no_grad():  # the new inputs matter, as after distillation
        for p in (*student.guidance_embed.parameters(), *student.span_embed.parameters()):
            p.normal_(0, 0.05)
    model = with_student(model, student)
    C = model.cfg.chunk_frames
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, VOCAB, (2, 8 * C), generator=g)
    refs = torch.randn(2, *LATENT, generator=g)
    run = lambda t, r, **kw: model.generate(t, r, euler_steps=2, guidance=2.0, guidance_mode="distilled",  # noqa: E731
                                            seed=3, **kw)
    a = run(tokens, refs)
    assert not torch.allclose(a, model.generate(tokens, refs, euler_steps=2, guidance=2.0, seed=3))  # not the teacher
    assert not torch.allclose(a, model.generate(tokens, refs, euler_steps=2, guidance=3.0, guidance_mode="distilled",
                                                seed=3))  # the scale is an input
    changed = tokens.clone()
    cut = 5 * C
    changed[:, cut:] = torch.randint(0, VOCAB, changed[:, cut:].shape, generator=g)
    b = run(changed, refs)
    reach = max(model.cfg.audio_lookahead, model.decoder_cfg.audio_context)
    safe = (cut - reach) // C * C
    assert torch.equal(a[:, :safe], b[:, :safe]) and not torch.allclose(a[:, cut:], b[:, cut:])
    emotion = torch.tensor([3, 11])
    x = run(tokens, refs, emotion=emotion)
    y = run(tokens.flip(0), refs.flip(0), emotion=emotion.flip(0))
    assert torch.allclose(x, y.flip(0), atol=1e-5)
    with pytest.raises(ValueError, match="distilled for 1, 2 steps"):
        model.generate(tokens, refs, euler_steps=4, guidance_mode="distilled")
    with pytest.raises(ValueError, match="no guidance-distilled student"):
        teacher_model().generate(tokens, refs, guidance_mode="distilled")


def test_a_student_survives_saving_and_loading(tmp_path):
    model = with_student(teacher_model(), make_student(teacher_model().decoder, (4, 2)))
    model.save_pretrained(tmp_path)
    loaded = DyadGen.from_pretrained(tmp_path)
    assert loaded.student.cfg.distilled_steps == (4, 2)
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    with pytest.raises(ValueError, match="divide the largest"):
        make_student(teacher_model().decoder, (4, 3))


def test_the_shipped_distillation_config_loads_and_bad_keys_are_named():
    from pathlib import Path

    from dyadgen.config.schema import ConfigError

    cfg = load_distill_config(Path(__file__).parents[2] / "configs" / "distill" / "guidance.yaml", ["max_steps=7"])
    assert cfg.steps == (4, 2, 1) and cfg.default_steps in cfg.steps and cfg.max_steps == 7
    with pytest.raises(ConfigError, match="stepz"):
        load_distill_config(None, ["stepz=3"])
