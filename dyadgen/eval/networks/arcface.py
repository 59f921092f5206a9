"""ArcFace identity embeddings: the IResNet backbone of insightface's arcface_torch, shaped so that its released
``backbone.pth`` files (ms1mv3_arcface_r50_fp16, ms1mv3_arcface_r100_fp16, ...) load strictly, plus the 5-point
similarity alignment to the 112x112 crop those networks were trained on.

Architecture and parameter names follow recognition/arcface_torch/backbones/iresnet.py (deepinsight/insightface,
unchanged in its keys since March 2021); the crop template follows python-package/insightface/utils/face_align.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import torch
from safetensors import safe_open
from torch import nn

from dyadgen.errors import UserError
from dyadgen.eval.weights import load_into, load_state_dict

# Blocks per stage for each depth arcface_torch names r18 ... r200 (only 50 and 100 have released MS1MV3 weights
# the project uses; the others cost nothing to accept).
BLOCKS: dict[int, tuple[int, int, int, int]] = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 14, 3),
    100: (3, 13, 30, 3),
    200: (6, 26, 60, 6),
}
WIDTHS = (64, 128, 256, 512)  # channels of the four stages
EMBED_DIM = 512

# insightface's arcface_dst: (x, y) pixel positions in the 112x112 crop of, in this order, the eye on the image's
# left, the eye on the image's right, the nose tip, the mouth corner on the image's left, the one on its right.
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)  # [5, 2]
CROP = 112


class IBasicBlock(nn.Module):
    """The "improved" residual unit: BN before the first conv, PReLU between the convs, BN after the second and
    no activation after the sum; the stride sits on the second conv."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin, eps=1e-5)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout, eps=1e-5)
        self.prelu = nn.PReLU(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=stride, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout, eps=1e-5)
        self.downsample: nn.Sequential | None = None
        if stride != 1 or cin != cout:  # keys downsample.0 (1x1 conv) and downsample.1 (BN), as released
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout, eps=1e-5)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (x if self.downsample is None else self.downsample(x))


class IResNet(nn.Module):
    """arcface_torch's IResNet-``depth``: 112x112 RGB face crop -> 512-d identity embedding (not L2-normalised;
    compare embeddings by cosine similarity)."""

    def __init__(self, depth: int = 100) -> None:
        super().__init__()
        if depth not in BLOCKS:
            raise ValueError(f"IResNet depth {depth} is not one of {sorted(BLOCKS)}")
        self.depth = depth
        self.conv1 = nn.Conv2d(3, WIDTHS[0], 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(WIDTHS[0], eps=1e-5)
        self.prelu = nn.PReLU(WIDTHS[0])
        cin = WIDTHS[0]
        for i, (count, width) in enumerate(zip(BLOCKS[depth], WIDTHS, strict=True), start=1):
            # every stage halves the resolution in its first block: 112 -> 56 -> 28 -> 14 -> 7
            blocks = [IBasicBlock(cin if b == 0 else width, width, 2 if b == 0 else 1) for b in range(count)]
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
            cin = width
        self.bn2 = nn.BatchNorm2d(WIDTHS[-1], eps=1e-5)
        self.fc = nn.Linear(WIDTHS[-1] * 7 * 7, EMBED_DIM)
        self.features = nn.BatchNorm1d(EMBED_DIM, eps=1e-5)  # named "features" in the released files

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        """faces: [N, 3, 112, 112] RGB in [0, 1], aligned with ``align_112`` -> [N, 512]."""
        x = (faces - 0.5) / 0.5  # arcface_torch's inference: img / 255, then (x - 0.5) / 0.5
        x = self.prelu(self.bn1(self.conv1(x)))  # [N, 64, 112, 112]
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # [N, 512, 7, 7]
        x = self.bn2(x).flatten(1)  # [N, 25088]; the training-time dropout here is the identity at inference
        return self.features(self.fc(x))  # [N, 512]


def depth_from_keys(keys: set[str] | list[str]) -> int:
    """The IResNet depth whose blocks per stage match the ``layerS.B.`` names of a state dict."""
    counts = []
    for stage in range(1, 5):
        indices = [int(k.split(".")[1]) for k in keys if k.startswith(f"layer{stage}.")]
        counts.append(max(indices) + 1 if indices else 0)
    for depth, blocks in BLOCKS.items():
        if tuple(counts) == blocks:
            return depth
    raise ValueError(f"blocks per stage {tuple(counts)} match no IResNet depth ({BLOCKS})")


def _stored_keys(path: Path) -> set[str]:
    """The tensor names of a weights file, read without loading the tensors where the format allows it."""
    try:
        if path.suffix == ".safetensors":
            with safe_open(str(path), framework="pt") as f:
                keys = set(f.keys())
        else:  # a zip-format PyTorch file maps lazily; a legacy file falls through to the full read below
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            keys = set(state) if isinstance(state, dict) else set()
    except Exception:  # noqa: BLE001 - whatever went wrong, the full reader gives the project's own error
        keys = set()
    if not any(k.removeprefix("module.").startswith("layer1.") for k in keys):
        keys = set(load_state_dict(path))
    return {k.removeprefix("module.") for k in keys}


def load_arcface(path: str | os.PathLike, depth: int | None = None) -> IResNet:
    """A released arcface_torch ``backbone.pth`` (or a safetensors copy) as an eval-mode IResNet, its depth read
    from the file's block names unless given."""
    path = Path(path)
    if depth is None:
        try:
            depth = depth_from_keys(_stored_keys(path))
        except ValueError as err:
            raise UserError(f"{path}: not the weights of an arcface_torch IResNet ({err})") from err
    return load_into(IResNet(depth), path)


def similarity_to_template(landmarks5: np.ndarray, template: np.ndarray = ARCFACE_TEMPLATE) -> np.ndarray:
    """The least-squares similarity (rotation, uniform scale, translation; no reflection) taking the 5 landmarks
    onto the template, as a [2, 3] matrix for cv2.warpAffine: Umeyama (1991), what insightface's
    skimage SimilarityTransform.estimate computes."""
    src = np.asarray(landmarks5, dtype=np.float64).reshape(5, 2)
    dst = np.asarray(template, dtype=np.float64).reshape(5, 2)
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    src_c, dst_c = src - src_mean, dst - dst_mean  # [5, 2] each
    cov = dst_c.T @ src_c / len(src)  # [2, 2]
    u, sing, vt = np.linalg.svd(cov)
    sign = np.array([1.0, 1.0 if np.linalg.det(u) * np.linalg.det(vt) >= 0 else -1.0])  # forbid a reflection
    rot = u @ np.diag(sign) @ vt  # [2, 2]
    src_var = (src_c**2).sum() / len(src)
    if src_var <= 0:
        raise ValueError("the 5 landmarks coincide; no alignment is defined")
    scale = float((sing * sign).sum() / src_var)
    shift = dst_mean - scale * rot @ src_mean  # [2]
    return np.concatenate([scale * rot, shift[:, None]], axis=1)  # [2, 3]


def align_112(image: np.ndarray, landmarks5: np.ndarray) -> np.ndarray:
    """The 112x112 ArcFace crop of an RGB uint8 image [H, W, 3] given its 5 landmarks [5, 2] (x, y in pixels, in
    ARCFACE_TEMPLATE's order); outside the image is black, as in insightface's norm_crop."""
    matrix = similarity_to_template(landmarks5)
    crop = cv2.warpAffine(np.ascontiguousarray(image), matrix, (CROP, CROP), flags=cv2.INTER_LINEAR, borderValue=0.0)
    return crop  # [112, 112, 3] uint8


def landmarks5_from_68(lm68: np.ndarray) -> np.ndarray:
    """The template's 5 points from the 68-point iBUG/dlib layout (0-based): points 36-41 outline the subject's
    right eye, which lies on the image's left, so it comes first, as mouth corner 48 comes before 54."""
    lm68 = np.asarray(lm68, dtype=np.float64)
    if lm68.shape != (68, 2):
        raise ValueError(f"expected 68 (x, y) landmarks, got shape {lm68.shape}")
    return np.stack([lm68[36:42].mean(0), lm68[42:48].mean(0), lm68[30], lm68[48], lm68[54]])  # [5, 2]
