"""Exponential moving average of the trainable weights: the weights that sampling and the shipped
checkpoint use, because they are smoother than the last optimizer step's.

The average lives in float32 beside the model (whatever dtype the model trains in) and covers only
parameters that train; frozen ones are the same in both, so they are read from the model at export.
Under FSDP the parameters are sharded DTensors and so is the average: each process keeps its own
shard; :meth:`EMA.state_dict` gathers full tensors (a collective: every process calls it) and
:meth:`EMA.load_state_dict` takes full tensors and keeps each process's shard of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.distributed.tensor import distribute_tensor


class EMA:
    """``shadow <- decay * shadow + (1 - decay) * param`` after every optimizer step.

    The decay warms up as ``min(decay, (1 + n) / (10 + n))`` over the first updates ``n``, so an early
    average is not dominated by the random initialisation (a full 0.999 would take ~1000 steps to forget
    it). ``decay = 0`` makes the average a copy of the latest weights.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"train.ema_decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.num_updates = 0
        self.shadow: dict[str, torch.Tensor] = {
            name: p.detach().float().clone() for name, p in model.named_parameters() if p.requires_grad
        }

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        decay = self.current_decay()
        params = dict(model.named_parameters())
        names = list(self.shadow)
        shadows = [self.shadow[n] for n in names]
        currents = [params[n].detach().float() for n in names]
        # lerp(shadow, p, 1 - decay) == decay * shadow + (1 - decay) * p, one fused op over all tensors
        torch._foreach_lerp_(shadows, currents, 1.0 - decay)
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        params = dict(model.named_parameters())
        for name, value in self.shadow.items():
            params[name].copy_(value.to(params[name].dtype))

    @contextmanager
    def swapped_in(self, model: nn.Module) -> Iterator[nn.Module]:
        """Run ``model`` with the average's weights inside the block and its own weights after."""
        backup = {name: p.detach().clone() for name, p in model.named_parameters() if name in self.shadow}
        self.copy_to(model)
        try:
            yield model
        finally:
            with torch.no_grad():
                params = dict(model.named_parameters())
                for name, value in backup.items():
                    params[name].copy_(value)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Full (unsharded) tensors of the average; collective when the parameters are sharded."""
        return {name: full_tensor(t) for name, t in self.shadow.items()}

    def load_state_dict(self, tensors: dict[str, torch.Tensor], num_updates: int) -> None:
        missing = set(self.shadow) - set(tensors)
        unexpected = set(tensors) - set(self.shadow)
        if missing or unexpected:
            raise ValueError(
                f"EMA weights do not match the model (missing {sorted(missing)[:3]}, "
                f"unexpected {sorted(unexpected)[:3]})"
            )
        for name, value in tensors.items():
            assign_full(self.shadow[name], value)
        self.num_updates = num_updates


def full_tensor(t: torch.Tensor) -> torch.Tensor:
    """A plain tensor of ``t``'s whole value: gathered from every process when ``t`` is a sharded
    DTensor (a collective), ``t`` itself otherwise."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t


@torch.no_grad()
def assign_full(target: torch.Tensor, value: torch.Tensor) -> None:
    """Copy the whole tensor ``value`` into ``target``, keeping only this process's shard when
    ``target`` is a DTensor."""
    if hasattr(target, "device_mesh"):
        local = distribute_tensor(value.to(target.dtype), target.device_mesh, target.placements).to_local()
        target.to_local().copy_(local)
    else:
        target.copy_(value)

