"""LPIPS (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric"), the
``lpips`` package's v0.1 AlexNet variant, without torchvision: the AlexNet trunk is rebuilt here so that a user's
torchvision ImageNet ``alexnet`` weights file loads into it, and the learned linear heads come from the copy of
the v0.1 ``alex.pth`` that torchmetrics ships."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch
from torch import nn

from dyadgen.errors import UserError
from dyadgen.eval.weights import load_state_dict

CHANNELS = (64, 192, 384, 256, 256)  # channels of the five ReLU outputs LPIPS compares
# lpips' ScalingLayer: maps an image in [-1, 1] to (roughly) ImageNet mean/std normalisation
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
EPS = 1e-10  # lpips' normalize_tensor adds this to the channel norm


class AlexFeatures(nn.Module):
    """torchvision's ``alexnet().features``, same layer indices (so same ``features.N.*`` keys), returning the
    outputs of its five ReLUs (indices 1, 4, 7, 9, 11), the taps of lpips' ``pretrained_networks.alexnet``."""

    TAPS = (1, 4, 7, 9, 11)

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, stride=4, padding=2),  # 0
            nn.ReLU(),  # 1
            nn.MaxPool2d(3, stride=2),  # 2
            nn.Conv2d(64, 192, 5, padding=2),  # 3
            nn.ReLU(),  # 4
            nn.MaxPool2d(3, stride=2),  # 5
            nn.Conv2d(192, 384, 3, padding=1),  # 6
            nn.ReLU(),  # 7
            nn.Conv2d(384, 256, 3, padding=1),  # 8
            nn.ReLU(),  # 9
            nn.Conv2d(256, 256, 3, padding=1),  # 10
            nn.ReLU(),  # 11
            nn.MaxPool2d(3, stride=2),  # 12: in torchvision's trunk, unused by LPIPS
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x: [N, 3, H, W] ImageNet-normalised -> five maps [N, C_k, H_k, W_k], C_k = CHANNELS[k]."""
        taps = []
        for index, layer in enumerate(self.features[: self.TAPS[-1] + 1]):
            x = layer(x)
            if index in self.TAPS:
                taps.append(x)
        return taps


class LPIPS(nn.Module):
    """Perceptual distance between two images: lower is more alike, 0 for identical images."""

    shift: torch.Tensor
    scale: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.net = AlexFeatures()
        # the learned non-negative per-channel weights (lpips' lin0 ... lin4) as 1x1 convs without bias
        self.heads = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in CHANNELS)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)  # [1, 3, 1, 1]
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)  # [1, 3, 1, 1]

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """a, b: [N, 3, H, W] RGB in [0, 1] -> [N] distances."""
        if a.shape != b.shape or a.ndim != 4 or a.shape[1] != 3:
            raise ValueError(f"LPIPS needs two [N, 3, H, W] batches alike, not {tuple(a.shape)}, {tuple(b.shape)}")
        n = a.shape[0]
        both = torch.cat([a, b]) * 2 - 1  # [2N, 3, H, W] in [-1, 1], lpips' normalize=True
        taps = self.net((both - self.shift) / self.scale)
        total = both.new_zeros(n)
        for feat, head in zip(taps, self.heads, strict=True):
            feat = feat / (feat.pow(2).sum(1, keepdim=True).sqrt() + EPS)  # unit length along channels
            diff = (feat[:n] - feat[n:]) ** 2  # [N, C, h, w]
            total = total + head(diff).mean((1, 2, 3))  # head: [N, 1, h, w] -> spatial mean [N]
        return total


def _torchmetrics_heads() -> Path:
    """Where torchmetrics keeps its copy of lpips' v0.1 linear heads for AlexNet, found without importing
    torchmetrics (seconds of import for one file name)."""
    spec = importlib.util.find_spec("torchmetrics")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("LPIPS needs torchmetrics installed (its lpips_models/alex.pth), or heads_path given")
    return Path(list(spec.submodule_search_locations)[0]) / "functional/image/lpips_models/alex.pth"


def load_lpips(alexnet_path: str | os.PathLike, heads_path: str | os.PathLike | None = None) -> LPIPS:
    """LPIPS-Alex v0.1 with the trunk from a torchvision ``alexnet`` ImageNet weights file (its classifier.* tensors
    are ignored) and the heads from ``heads_path`` (default: torchmetrics' shipped alex.pth), in eval mode."""
    model = LPIPS()
    trunk = {k: v for k, v in load_state_dict(alexnet_path).items() if k.startswith("features.")}
    _load_strict(model.net, trunk, alexnet_path)

    heads_path = Path(heads_path) if heads_path is not None else _torchmetrics_heads()
    if not heads_path.is_file():
        raise UserError(f"{heads_path}: no LPIPS heads file (torchmetrics ships one as lpips_models/alex.pth)")
    try:
        stored = torch.load(heads_path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any reader error is the file's problem
        raise UserError(f"{heads_path}: not a readable weights-only PyTorch file ({err})") from err
    if not isinstance(stored, dict):
        raise UserError(f"{heads_path}: holds no dict of tensors (found {type(stored).__name__})")
    # lpips / torchmetrics name head k "lin{k}.model.1.weight" (model.0 is a parameter-free Dropout)
    heads = {f"{k}.weight": stored.get(f"lin{k}.model.1.weight") for k in range(len(CHANNELS))}
    if any(v is None for v in heads.values()):
        raise UserError(f"{heads_path}: not LPIPS-Alex heads (expected lin0.model.1.weight ... lin4.model.1.weight)")
    _load_strict(model.heads, heads, heads_path)
    return model.eval().requires_grad_(False)


def _load_strict(module: nn.Module, state: dict[str, torch.Tensor], path: str | os.PathLike) -> None:
    """Every key of ``module`` present with its shape, or the file is not what the caller asked for."""
    expected = module.state_dict()
    missing, unexpected = expected.keys() - state.keys(), state.keys() - expected.keys()
    wrong = [k for k in expected.keys() & state.keys() if expected[k].shape != state[k].shape]
    if missing or unexpected or wrong:
        raise UserError(f"{path}: not the weights LPIPS-Alex needs (missing {sorted(missing)[:3]}, "
                        f"unexpected {sorted(unexpected)[:3]}, wrong shape {sorted(wrong)[:3]})")
    module.load_state_dict(state)
