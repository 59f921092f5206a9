"""What `dyadgen evaluate` does, as a config dataclass (a YAML file passed with --config overrides it,
then the command line): which windows, how to generate, and where the metric networks' weights lie."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from dyadgen.config import merge_into
from dyadgen.errors import UserError


@dataclass
class MetricWeights:
    """Local weight files of the metric networks; empty = that metric is reported as unavailable."""

    syncnet: str = ""  # syncnet_python's data/syncnet_v2.model (LSE-D, LSE-C)
    inception: str = ""  # pytorch-fid's pt_inception-2015-12-05-6726825d.pth (FID)
    i3d: str = ""  # pytorch-i3d's models/rgb_imagenet.pt (FVD)
    arcface: str = ""  # insightface arcface_torch backbone.pth, iresnet50 or iresnet100 (CSIM)
    alexnet: str = ""  # torchvision's alexnet-owt-7be5be79.pth (LPIPS; its heads ship with torchmetrics)


@dataclass
class EvalConfig:
    split: str = "test"  # train, val, test or all, by the checkpoint's split rule
    seconds: float = 10.0  # length of each scored window
    max_clips: int = 0  # 0 = every window of the split
    euler_steps: int | None = None  # Euler steps (None: the checkpoint's)
    guidance: float | None = None  # guidance scale (None: the checkpoint's)
    guidance_mode: str | None = None  # batched, separate or distilled (None: the checkpoint's)
    unconditional_audio: str | None = None  # null or silence: what guidance steers from (None: the checkpoint's)
    unconditional_tracks: str | None = None  # both or own: the tracks it replaces (None: the checkpoint's)
    seed: int = 0
    device: str = "auto"
    dtype: str = "auto"  # fp32, bf16, fp16; auto: bf16 on a GPU, fp32 on the CPU
    videos: int = 3  # side-by-side ground truth | generated videos written
    compare: str = ""  # a second inference folder scored on the same windows (system "compared"), generated with
    #                    its own checkpoint's sampler settings and the same seed; "" = none
    basis_clips: int = 8  # training windows whose ground truth fits the motion PCA (and trains the emotion probe)
    emotion_windows: int = 2  # windows also generated under two contrasting emotion labels (the condition check)
    weights: MetricWeights = field(default_factory=MetricWeights)


def load_eval_config(path: str | None, overrides: dict) -> EvalConfig:
    """The defaults, then the YAML file, then the command line's values (None = not given)."""
    cfg = EvalConfig()
    if path:
        if not Path(path).is_file():
            raise UserError(f"{path}: no such evaluation config")
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except yaml.YAMLError as err:
            raise UserError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
        merge_into(cfg, data, "eval")  # "eval." in messages; older key names load through the rename table
    merge_into(cfg, {k: v for k, v in overrides.items() if v is not None}, "eval")
    if cfg.split not in ("train", "val", "test", "all"):
        raise UserError(f"--split {cfg.split}: choose train, val, test or all")
    if cfg.seconds <= 0:
        raise UserError(f"--seconds {cfg.seconds}: must be positive")
    return cfg
