"""From the cached measurements to the reported figures: values per person and window, averaged over the
two people of each window, then a mean with a 95 % interval over the windows, per system and role. The
per-person tables keep the left and the right person apart."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dyadgen.clock import FPS
from dyadgen.eval import dyadic, identity, lipsync, quality, turns
from dyadgen.eval.frechet import frechet_between
from dyadgen.eval.measure import load
from dyadgen.eval.stats import Figure, masked_mean, summarise, unavailable

ROLES = ("all", "speaking", "listening", "silent")
FACE_FOUND = "share of frames where the face landmarks were fitted (by a detection or the crop rule's box)"
FACE_DETECTED = "share of frames where dlib's face detector itself found the face"
SYNTH = {"mouth_env_corr": "synthetic corpus only: as mouth_env_corr, with the exact pixel mouth opening of the "
                           "drawn faces (dyadgen.eval.motion) instead of landmarks",
         "false_talk": "synthetic corpus only: as false_talk, with the pixel mouth opening; lower is better",
         "mouth_corr": "synthetic corpus only: pixel mouth opening vs the drawn mouth of the ground truth, "
                       "speaking frames",
         "nod_corr": "synthetic corpus only: head drop (pixels) vs the drawn nods"}
NETWORK_METRICS = {"lpips": ("lpips", quality.LPIPS), "csim": ("arcface", identity.CSIM),
                   "lse_d": ("syncnet", lipsync.LSE_D), "lse_c": ("syncnet", lipsync.LSE_C),
                   "fid": ("inception", "FID: Frechet distance of Inception-v3 pool features (2048-d) of "
                           "generated vs ground-truth frames, every 5th frame of every window; lower is better"),
                   "fvd": ("i3d", "FVD: Frechet distance of I3D logits (400-d) of 16-frame clips, generated vs "
                           "ground truth; lower is better")}


def windows(out: Path) -> list[Path]:
    return sorted(p for p in (out / "clips").glob("*") if (p / "truth.npz").is_file())


def person_values(people: list[dict], truth_people: list[dict], extra: dict, truth: dict, basis, kmeans
                  ) -> list[dict[str, float | None]]:
    """Scalar values of each person of a window for one system."""
    speaking = truth["speaking"].astype(bool)
    masks = turns.roles(speaking)
    coeffs = [dyadic.coefficients(_track(d), basis) for d in people]
    truth_coeffs = [dyadic.coefficients(_track(d), basis) for d in truth_people]
    rows = []
    for p, d in enumerate(people):
        gt = truth_people[p]
        own, partner_energy = truth["envelope"][p], truth["envelope"][1 - p]
        role = {r: masks[r][p] for r in ROLES[1:]} | {"all": np.ones_like(speaking[p])}
        row: dict[str, float | None] = {}
        for r, m in role.items():
            for key in ("psnr", "ssim", "lpips", "identity", "csim"):
                if key in d:
                    row[f"{key}/{r}"] = masked_mean(d[key], m)
        row["face_found/all"] = float(d["found"].mean())
        row["face_detected/all"] = float(d["detected"].mean())
        corr, offset = lipsync.offset_correlation(d["mouth"], own, speaking[p] & d["found"])
        row["mouth_env_corr/speaking"], row["av_offset/speaking"] = corr, None if offset is None else float(abs(offset))
        if "lse" in d:
            row["lse_d/speaking"], row["lse_c/speaking"] = (None if not np.isfinite(v) else float(v) for v in d["lse"])
        threshold = turns.open_threshold(gt["mouth"], speaking[p])
        row["false_talk/listening"] = turns.open_rate(d["mouth"], masks["listening"][p], threshold)
        row["silent_open/silent"] = turns.open_rate(d["mouth"], masks["silent"][p], threshold)
        sync = turns.synchrony(partner_energy, turns.head_motion(d["pose"]), masks["listening"][p])
        sync_gt = turns.synchrony(partner_energy, turns.head_motion(gt["pose"]), masks["listening"][p])
        row["synchrony/listening"] = sync
        row["synchrony_gap/listening"] = None if sync is None or sync_gt is None else abs(sync - sync_gt)
        row |= {f"{k}/all": v for k, v in dyadic.dyadic_scores(coeffs[p], truth_coeffs[p], truth_coeffs[1 - p]).items()}
        row["variance/all"] = dyadic.variance(coeffs[p])
        row["diversity/all"] = dyadic.diversity(coeffs[p])
        row["sid/all"] = dyadic.shannon_index(coeffs[p], kmeans)
        if "pixel_mouth" in extra:  # a synthetic corpus: the exact pixel measures as a second check
            row |= _synthetic_values(extra, truth, p, speaking[p], masks["listening"][p])
        rows.append(row)
    return rows


def _synthetic_values(extra: dict, truth: dict, p: int, speaks: np.ndarray, listens: np.ndarray) -> dict:
    mouth = extra["pixel_mouth"][p]
    threshold = turns.open_threshold(truth["synthetic_pixel_mouth"][p], speaks)
    return {"synthetic_mouth_env_corr/speaking": lipsync.offset_correlation(mouth, truth["envelope"][p], speaks)[0],
            "synthetic_false_talk/listening": turns.open_rate(mouth, listens, threshold),
            "synthetic_mouth_corr/speaking": float(extra["synthetic_mouth_corr"][p]),
            "synthetic_nod_corr/all": float(extra["synthetic_nod_corr"][p])}


class _Track:
    def __init__(self, d: dict):
        self.landmarks, self.head_pose = d["landmarks"], d["pose"]
        self.mouth_opening, self.eye_openness, self.found = d["mouth"], d["eye"], d["found"].astype(bool)


def _track(d: dict) -> _Track:
    return _Track(d)


DEFINITIONS = {
    "psnr": quality.PSNR, "ssim": quality.SSIM, "lpips": quality.LPIPS, "identity": identity.DLIB_SIM,
    "csim": identity.CSIM, "face_found": FACE_FOUND, "face_detected": FACE_DETECTED,
    "mouth_env_corr": lipsync.MOUTH_CORR, "av_offset": "|" + lipsync.OFFSET + "|", "lse_d": lipsync.LSE_D,
    "lse_c": lipsync.LSE_C, "false_talk": turns.FALSE_TALK, "silent_open": turns.SILENT_OPEN,
    "synchrony": turns.SYNCHRONY, "synchrony_gap": turns.SYNCHRONY_GAP, "fd": dyadic.FD, "p_fd": dyadic.P_FD,
    "rpcc": dyadic.RPCC, "variance": dyadic.VARIANCE, "diversity": dyadic.DIVERSITY, "sid": dyadic.SID,
    **{f"synthetic_{k}": v for k, v in SYNTH.items()},
}


def score(out: Path, systems: tuple[str, ...], missing_networks: dict[str, str]) -> dict:
    """{"figures": {system: {metric/role: Figure}}, "per_side": ..., "drift": ..., "windows": n}."""
    basis = dyadic.MotionBasis.load(out / "motion_basis.npz")
    folders = windows(out)
    loaded = []
    for folder in folders:
        if all((folder / f"{s}.npz").is_file() for s in systems):
            truth = load(folder / "truth.npz")[1]
            loaded.append((folder, truth, {s: load(folder / f"{s}.npz") for s in systems}))
    if not loaded:
        return {"figures": {}, "per_side": {}, "drift": {}, "windows": 0}
    truth_coeffs = [dyadic.coefficients(_track(d), basis) for _, _, sy in loaded for d in sy["ground_truth"][0]]
    kmeans = dyadic.fit_clusters(truth_coeffs)
    values: dict[str, list[dict]] = {s: [] for s in systems}
    for _, truth, by_system in loaded:
        for s in systems:
            people, extra = by_system[s]
            values[s] += person_values(people, by_system["ground_truth"][0], extra, truth, basis, kmeans)
    figures = {s: _figures(_per_clip(rows), s, missing_networks) for s, rows in values.items()}
    for s in systems:
        generated, truth = [sy[s][0] for _, _, sy in loaded], [sy["ground_truth"][0] for _, _, sy in loaded]
        figures[s] |= _frechet_figures(generated, truth, missing_networks, s == "ground_truth")
    per_side = {s: {side: _figures(rows[i::2], s, missing_networks) for i, side in enumerate(("left", "right"))}
                for s, rows in values.items()}
    drift = {s: _drift([sy[s][0] for _, _, sy in loaded]) for s in systems}
    return {"figures": figures, "per_side": per_side, "drift": drift, "windows": len(loaded)}


def _per_clip(rows: list[dict]) -> list[dict]:
    """Person rows [clip0 left, clip0 right, clip1 left, ...] -> one row per clip: the mean of its people's
    values, so that the interval is over clips (the two people of a window are not independent)."""
    out = []
    for left, right in zip(rows[::2], rows[1::2], strict=True):
        keys = set(left) | set(right)
        out.append({k: _mean([left.get(k), right.get(k)]) for k in keys})
    return out


def _mean(values: list[float | None]) -> float | None:
    x = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(x)) if x else None


def _figures(rows: list[dict], system: str, missing_networks: dict[str, str]) -> dict[str, Figure]:
    keys = sorted({k for r in rows for k in r})
    out = {k: summarise([r.get(k) for r in rows], DEFINITIONS[k.split("/")[0]]) for k in keys}
    for metric, (network, definition) in NETWORK_METRICS.items():
        if network in missing_networks and metric not in ("fid", "fvd"):
            role = "speaking" if metric.startswith("lse") else "all"
            out[f"{metric}/{role}"] = unavailable(definition, missing_networks[network])
    if system == "ground_truth":  # scored against itself: the quality figures are not informative
        self_scored = ("psnr", "ssim", "lpips", "fd", "p_fd", "rpcc", "synchrony_gap")
        for k in [k for k in out if k.split("/")[0] in self_scored]:
            out[k] = unavailable(out[k].definition.split(" - unavailable")[0], "ground truth against itself")
    return out


def _frechet_figures(generated: list[list[dict]], truth: list[list[dict]], missing: dict[str, str],
                     is_truth: bool) -> dict[str, Figure]:
    out = {}
    for metric, feature in (("fid", "inception"), ("fvd", "i3d")):
        definition = NETWORK_METRICS[metric][1]
        if feature in missing:
            out[f"{metric}/all"] = unavailable(definition, missing[feature])
            continue
        gen = [d[feature] for w in generated for d in w if feature in d]
        gt = [d[feature] for w in truth for d in w if feature in d]
        if is_truth:
            out[f"{metric}/all"] = unavailable(definition, "ground truth against itself")
            continue
        value = frechet_between(np.concatenate(gen), np.concatenate(gt)) if gen and gt else None
        out[f"{metric}/all"] = Figure(value, None, None, len(gen), definition + " (one figure over all windows; "
                                      "no interval)")
    return out


def _drift(per_window: list[list[dict]]) -> dict[str, list[float | None]]:
    """Identity similarity and PSNR per minute of window time, averaged over windows and people."""
    minutes = max(int(np.ceil(len(d["mouth"]) / (60 * FPS))) for w in per_window for d in w)
    curve = {"minute": list(range(1, minutes + 1)), "identity": [], "psnr": []}
    for m in range(minutes):
        span = slice(m * 60 * FPS, (m + 1) * 60 * FPS)
        for key in ("identity", "psnr"):
            parts = [d[key][span] for w in per_window for d in w if key in d and len(d[key]) > m * 60 * FPS]
            x = np.concatenate(parts) if parts else np.array([])
            x = x[np.isfinite(x)]
            curve[key].append(float(x.mean()) if x.size else None)
    return curve
