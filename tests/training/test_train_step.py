"""train_step on a small real module: accumulation equals one big batch, non-finite steps are
skipped without touching the weights, and a step's noise depends only on (seed, step, micro index)."""

import math

import pytest
import torch
from torch import nn

from dyadgen.training.loop import train_step


class NoisyRegressor(nn.Module):
    """Returns the training dict the trainer expects; ``noise`` adds torch-RNG noise to the target."""

    def __init__(self, noise: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Linear(3, 1)
        self.noise = noise

    def forward(self, batch: dict) -> dict:
        target = batch["y"] + self.noise * torch.randn_like(batch["y"])
        err = (self.net(batch["x"]) - target) ** 2  # [B,1]
        return {"loss": err.mean(), "loss/first_half": err[: len(err) // 2].mean()}


@pytest.fixture()
def accelerator():
    from accelerate import Accelerator

    acc = Accelerator(cpu=True)
    yield acc
    acc.gradient_accumulation_steps = 1


def _setup(accelerator, noise=0.0):
    torch.manual_seed(0)
    model = NoisyRegressor(noise)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    return accelerator.prepare(model, optimizer)


def _data(n: int) -> dict:
    g = torch.Generator().manual_seed(1)
    return {"x": torch.randn(n, 3, generator=g), "y": torch.randn(n, 1, generator=g)}


def test_two_accumulated_micro_batches_equal_one_batch_of_both(accelerator):
    data = _data(4)
    halves = [{k: v[:2] for k, v in data.items()}, {k: v[2:] for k, v in data.items()}]
    accelerator.gradient_accumulation_steps = 2
    model_a, opt_a = _setup(accelerator)
    out_a = train_step(accelerator, model_a, opt_a, halves, seed=0, step=0, grad_clip=0.0)
    accelerator.gradient_accumulation_steps = 1
    model_b, opt_b = _setup(accelerator)
    out_b = train_step(accelerator, model_b, opt_b, [data], seed=0, step=0, grad_clip=0.0)
    assert out_a.finite and out_b.finite
    assert out_a.terms["loss"] == pytest.approx(out_b.terms["loss"], rel=1e-6)
    assert out_a.grad_norm == pytest.approx(out_b.grad_norm, rel=1e-5)
    assert torch.allclose(model_a.net.weight, model_b.net.weight, atol=1e-7)


def test_clipping_bounds_the_update(accelerator):
    model, opt = _setup(accelerator)
    before = model.net.weight.detach().clone()
    big = {"x": torch.full((2, 3), 100.0), "y": torch.zeros(2, 1)}
    out = train_step(accelerator, model, opt, [big], seed=0, step=0, grad_clip=1.0)
    assert out.grad_norm > 1.0  # reported before clipping
    step = torch.cat([(model.net.weight - before).flatten()])
    assert step.norm() <= 0.1 * 1.0 + 1e-6  # lr * clip


def test_a_non_finite_loss_skips_the_update_and_clears_the_gradients(accelerator):
    model, opt = _setup(accelerator)
    before = [p.detach().clone() for p in model.parameters()]
    bad = {"x": torch.ones(2, 3), "y": torch.tensor([[math.nan], [0.0]])}
    out = train_step(accelerator, model, opt, [bad], seed=0, step=0, grad_clip=1.0)
    assert not out.finite and math.isnan(out.terms["loss"])
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert all(p.grad is None for p in model.parameters())


def test_noise_is_a_function_of_seed_step_and_micro_index(accelerator):
    data = _data(4)
    losses = []
    for step in (3, 3, 4):
        torch.manual_seed(123 + step)  # whatever the global RNG was, train_step reseeds
        model, opt = _setup(accelerator, noise=1.0)
        losses.append(train_step(accelerator, model, opt, [data], seed=0, step=step, grad_clip=0.0).terms["loss"])
    assert losses[0] == losses[1] and losses[0] != losses[2]
