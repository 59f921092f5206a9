"""BatchNorm with frozen statistics for the metric networks (FID Inception, I3D)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class FrozenBN(nn.Module):
    """BatchNorm that always normalizes with its stored statistics: a metric network must give the same
    features in train and eval mode and for a batch of one. The parameter names are BatchNorm's, so the
    public weight files load; ``counter``: whether the file also holds ``num_batches_tracked``."""

    def __init__(self, channels: int, *, counter: bool = True, eps: float = 1e-3) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))
        if counter:
            self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, x: Tensor) -> Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
