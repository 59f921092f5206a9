"""AdamW over two parameter groups (pretrained backbone, new parts) and a warmup + cosine schedule.

The learning rate is a pure function of the optimizer step (:func:`lr_factor`), set on the param
groups before every step. Keeping no scheduler object means nothing to save or restore for it, and
the schedule cannot drift with the number of processes (accelerate's prepared schedulers step once
per process).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

# the language model inside DyadGen.backbone is what comes pretrained (Qwen2.5); the embeddings, queries
# and resampler around it are new
BACKBONE_PREFIX = "backbone.lm."


@dataclass(frozen=True)
class GroupSpec:
    name: str  # "backbone" or "new", with "_no_decay" for biases and norm gains
    lr: float
    weight_decay: float


def param_groups(model: nn.Module, *, lr: float, backbone_lr: float, weight_decay: float) -> list[dict]:
    """Trainable parameters split by origin (backbone vs new) and by decay (matrices vs the rest).

    Biases and norm gains (every 1-D parameter, and any parameter of a norm) are not decayed: shrinking them
    toward 0 regularises nothing and hurts normalisation layers. Embedding tables, learned queries and
    position tables are matrices and decay like the other weights.
    """
    buckets: dict[str, list[nn.Parameter]] = {}
    specs: dict[str, GroupSpec] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        origin = "backbone" if name.startswith(BACKBONE_PREFIX) else "new"
        decays = param.ndim >= 2 and "norm" not in name.lower()
        key = origin if decays else f"{origin}_no_decay"
        buckets.setdefault(key, []).append(param)
        group_lr = backbone_lr if origin == "backbone" else lr
        specs[key] = GroupSpec(key, group_lr, weight_decay if decays else 0.0)
    return [
        {"params": buckets[k], "name": k, "lr": specs[k].lr, "initial_lr": specs[k].lr,
         "weight_decay": specs[k].weight_decay}
        for k in sorted(buckets)
    ]


def build_optimizer(model: nn.Module, *, lr: float, backbone_lr: float, weight_decay: float,
                    betas: tuple[float, float] = (0.9, 0.95), eps: float = 1e-8) -> torch.optim.AdamW:
    groups = param_groups(model, lr=lr, backbone_lr=backbone_lr, weight_decay=weight_decay)
    if not groups:
        raise ValueError("the model has no trainable parameters")
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps)


def lr_factor(step: int, *, warmup_steps: int, max_steps: int, min_lr_ratio: float) -> float:
    """Multiplier of each group's base lr at optimizer step ``step`` (0-based).

    Linear warmup from 1/warmup to 1 over ``warmup_steps``, then a half cosine down to ``min_lr_ratio``
    at ``max_steps``; constant at ``min_lr_ratio`` past it (a run resumed with a larger max_steps
    keeps training instead of blowing up).
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, max_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, factor: float) -> dict[str, float]:
    """Scale every group's base lr by ``factor``; returns the lr per group name for logging."""
    lrs: dict[str, float] = {}
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] * factor
        lrs[group.get("name", str(len(lrs)))] = group["lr"]
    return lrs
