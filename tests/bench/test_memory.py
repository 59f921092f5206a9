"""The memory estimate of `dyadgen bench --memory` counts what a real step holds: the same training
step run for real (real tensors, the same live-bytes tracker) peaks at the bytes the fake-tensor run
estimates; DDP adds its buckets and FSDP2 over 8 ranks holds less per rank."""

from __future__ import annotations

import torch

from dyadgen.bench.memory import _two_steps, estimate_step, fake_batch, largest_batch, step_model, step_optimizer
from dyadgen.config import load_config

LATENT = (8, 8, 6)
SMALL = ["data.height=64", "data.width=48", "data.window_steps=4"]


def test_the_fake_tensor_estimate_equals_the_real_steps_live_bytes():
    cfg = load_config(preset_name="tiny", overrides=SMALL)
    estimate = estimate_step(cfg, LATENT, 2, strategy="single", bf16=False, foreach=False)
    torch.manual_seed(0)
    model = step_model(cfg, LATENT)
    real = _two_steps(model, step_optimizer(cfg, model, foreach=False), fake_batch(cfg, LATENT, 2, 128),
                      bf16_autocast=False)
    assert real.peak == estimate.peak and real.parts == estimate.parts
    ddp = estimate_step(cfg, LATENT, 2, strategy="ddp", bf16=False, foreach=False)
    trainable = sum(p.numel() * 4 for p in model.parameters() if p.requires_grad)
    assert ddp.peak == estimate.peak + trainable
    fsdp = estimate_step(cfg, LATENT, 2, strategy="fsdp", world_size=8, bf16=False, foreach=False)
    assert fsdp.parts["resident"] < estimate.parts["resident"] / 2  # weights and optimizer state sharded 8 ways


def test_the_largest_micro_batch_is_projected_from_where_activations_decide():
    gib = 2**30
    # linear growth from 1 on: projected; the peak still in the optimizer step at 4: not projected
    assert largest_batch({1: 60 * gib, 2: 62 * gib, 4: 66 * gib}, 80 * gib) == 4 + 14 // 2
    assert largest_batch({1: 60 * gib, 2: 60 * gib, 4: 62 * gib}, 80 * gib) is None  # not yet linear: >= 4
    assert largest_batch({1: 90 * gib, 2: 95 * gib, 4: 99 * gib}, 80 * gib) == 0
    assert largest_batch({1: 70 * gib, 2: 78 * gib, 4: 95 * gib}, 80 * gib) == 2
