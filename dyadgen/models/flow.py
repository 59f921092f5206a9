"""Rectified flow as small pure pieces: the path, the time sampler with FLUX's shift, the Euler solver.

Path: x_t = (1 - t) x0 + t eps, so t=0 is data and t=1 is noise; the velocity target is v = eps - x0.
Time: t = sigmoid(n), n ~ N(mean, std) (logit-normal), then FLUX's resolution shift with mu set by
the number of latent tokens, the same rule in training and in sampling.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor


def interpolate(x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
    """x_t = (1 - t) x0 + t eps, with t [N] broadcast over the rest."""
    t = t.view(-1, *([1] * (x0.dim() - 1)))
    return (1 - t) * x0 + t * noise


def velocity_target(x0: Tensor, noise: Tensor) -> Tensor:
    return noise - x0


def resolution_mu(num_tokens: int, base_tokens: int = 256, max_tokens: int = 4096,
                  base_shift: float = 0.5, max_shift: float = 1.15) -> float:
    """FLUX's mu: linear in the image token count through (256, 0.5) and (4096, 1.15)."""
    slope = (max_shift - base_shift) / (max_tokens - base_tokens)
    return base_shift + slope * (num_tokens - base_tokens)


def shift_time(t: Tensor, mu: float) -> Tensor:
    """FLUX's time shift: more time near the noise end for larger images (mu > 0)."""
    return math.exp(mu) / (math.exp(mu) + (1 / t.clamp(1e-6, 1.0) - 1))


def sample_time(n: int, *, mean: float = 0.0, std: float = 1.0, mu: float | None = None,
                generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> Tensor:
    """Logit-normal t [n] in (0, 1), shifted by ``mu`` when given."""
    t = torch.sigmoid(mean + std * torch.randn(n, generator=generator, device=device))
    return shift_time(t, mu) if mu is not None else t


def time_grid(euler_steps: int, mu: float | None = None, device: torch.device | str = "cpu") -> Tensor:
    """euler_steps + 1 times from 1 (noise) down to 0 (data), shifted like training's times."""
    t = torch.linspace(1.0, 0.0, euler_steps + 1, device=device)
    if mu is None:
        return t
    shifted = shift_time(t[:-1], mu)
    return torch.cat([shifted, t.new_zeros(1)])


def euler_solve(velocity: Callable[[Tensor, Tensor, Tensor], Tensor], noise: Tensor, grid: Tensor, *,
                states: bool = False) -> Tensor:
    """Integrate dx/dt = v(x, t) from grid[0] (noise) to grid[-1] (data) with Euler steps; each step calls
    ``velocity(x, t, span)`` with t [N] its start and span [N] = t0 - t1 its length (a few-step student reads
    the span; other velocities ignore it). Returns x at grid[-1], or with ``states`` every state
    [len(grid),N,...] from the noise to the data."""
    x, visited = noise, [noise]
    for t0, t1 in zip(grid[:-1], grid[1:], strict=True):
        x = x + (t1 - t0) * velocity(x, t0.expand(x.shape[0]), (t0 - t1).expand(x.shape[0]))
        visited.append(x)
    return torch.stack(visited) if states else x
