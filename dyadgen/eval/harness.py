"""`dyadgen evaluate`: generate the held-out windows and measure them beside the baselines.

Systems, all through the same measurements:
- ``model``: the checkpoint, each person from their own reference frame and both own tracks;
- ``swapped``: the same with the left and right tracks exchanged (lip sync and false talk must worsen);
- ``static``: the reference frame held for the whole window;
- ``ground_truth``: the real frames (the ceiling);
- ``compared`` (with ``--compare DIR``): a second checkpoint on the same windows, from the same references and
  seed, with its own sampler settings: an old and a new checkpoint side by side from one run.
Each (window, system) is measured once and cached under ``out/clips/``: a rerun measures only what is
missing. A window that fails is skipped, counted and listed.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from dyadgen.config import InferConfig
from dyadgen.data.emotions import EMOTION_IDS
from dyadgen.data.socioemodialog import index_dataset, video_labels
from dyadgen.data.splits import Splitter
from dyadgen.errors import UserError
from dyadgen.eval import emotion, face, measure
from dyadgen.eval.dyadic import MotionBasis, fit_basis
from dyadgen.eval.heldout import GroundTruth, HeldOutClip, clip_folder, held_out_clips, read_truth
from dyadgen.eval.motion import mouth_opening
from dyadgen.eval.settings import EvalConfig
from dyadgen.eval.talking import score_against_truth, speech_envelope
from dyadgen.inference.pipeline import DyadGenPipeline, resolve_checkpoint
from dyadgen.io.files import write_text_atomic
from dyadgen.io.video import VideoWriter

SYSTEMS = ("model", "swapped", "static", "ground_truth")
COMPARED = "compared"


@dataclass
class EvaluationRun:
    """What a finished evaluation produced (and what ``report`` reads)."""

    out: Path
    clips: list[str] = field(default_factory=list)  # window keys measured (now or cached)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (window or video, reason)
    missing_networks: dict[str, str] = field(default_factory=dict)
    network_sources: dict[str, str] = field(default_factory=dict)  # network -> where its weights came from
    systems: tuple[str, ...] = SYSTEMS  # what each window was measured as (COMPARED last, with --compare)


@dataclass
class Source:
    """What generates a system's frames: a pipeline and its sampler settings."""

    pipe: DyadGenPipeline
    options: InferConfig
    checkpoint: Path


SAMPLER = ("euler_steps", "guidance", "guidance_interval", "guidance_rescale", "guidance_mode",
           "unconditional_audio", "unconditional_tracks", "context_noise", "seed")


def _settings(checkpoint: Path, cfg: EvalConfig, options: InferConfig, compared: Source | None) -> dict:
    out = {"measures": measure.VERSION, "checkpoint": str(checkpoint.resolve()), "seconds": cfg.seconds,
           "dtype": cfg.dtype, **{k: _plain(getattr(options, k)) for k in SAMPLER}, "weights": asdict(cfg.weights)}
    if compared is not None:
        out["compared"] = {"checkpoint": str(compared.checkpoint.resolve()),
                           **{k: _plain(getattr(compared.options, k)) for k in SAMPLER}}
    return out


def _plain(value):
    return list(value) if isinstance(value, tuple) else value  # as run.json reads back


def _check_out(out: Path, settings: dict) -> None:
    """A rerun into the same folder must use the same settings, or cached windows would mix runs."""
    path = out / "run.json"
    if path.is_file():
        old = json.loads(path.read_text())
        if old != settings:
            changed = sorted(k for k in settings if old.get(k) != settings[k])
            raise UserError(f"{out}: holds an evaluation with other settings ({', '.join(changed)}); "
                            "use another --out")
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(settings, indent=2))


def generate(pipe, truth: GroundTruth, options: InferConfig, system: str) -> np.ndarray:
    """Frames uint8 [P,T,H,W,3] of a system for a window (``pipe`` and ``options``: the system's source)."""
    T = truth.frames.shape[1]
    if system == "ground_truth":
        return truth.frames
    if system == "static":
        return np.repeat(truth.references[:, None], T, axis=1)
    left, right = truth.audio[::-1] if system == "swapped" else truth.audio
    frames = pipe.frames(left, right, left_ref=truth.references[0], right_ref=truth.references[1],
                         options=options)
    return frames[:, :T]


def measure_system(frames: np.ndarray, truth: GroundTruth, system: str, nets) -> list[dict]:
    return [measure.measure_person(frames[p], None if system == "ground_truth" else truth.frames[p],
                                   truth.references[p], truth.audio[p], truth.speaking[p], nets)
            for p in range(2)]


def _truth_file(folder: Path, truth: GroundTruth) -> None:
    T = truth.frames.shape[1]
    extra = {"envelope": np.stack([speech_envelope(a, T) for a in truth.audio]), "speaking": truth.speaking,
             "emotion": truth.emotion, "reference_frames": np.array(truth.reference_frames)}
    if truth.synthetic is not None:
        extra.update({f"synthetic_{k}": v for k, v in truth.synthetic.items()})
        extra["synthetic_pixel_mouth"] = np.stack([mouth_opening(truth.frames[p].transpose(0, 3, 1, 2))
                                                   for p in range(2)])  # [P,T]
    measure.save(folder / "truth.npz", [], extra)


def _synthetic_scores(frames: np.ndarray, truth: GroundTruth) -> dict[str, np.ndarray]:
    """The synthetic corpus's exact pixel measures (dyadgen.eval.talking) as a second check."""
    scores = score_against_truth(frames, truth.synthetic)
    out = {f"synthetic_{k}": np.array([s[k] for s in scores]) for k in ("mouth_corr", "nod_corr")}
    out["pixel_mouth"] = np.stack([mouth_opening(frames[p].transpose(0, 3, 1, 2)) for p in range(2)])  # [P,T]
    return out


def generation_options(pipe, cfg: EvalConfig) -> InferConfig:
    """The checkpoint's settings with the evaluation's Euler steps, guidance, guidance mode and unconditional
    audio and tracks (None: the checkpoint's) and seed."""
    return pipe.options(euler_steps=cfg.euler_steps, guidance=cfg.guidance, guidance_mode=cfg.guidance_mode,
                        unconditional_audio=cfg.unconditional_audio, unconditional_tracks=cfg.unconditional_tracks,
                        seed=cfg.seed)


def evaluate(checkpoint, data: str, out: str, cfg: EvalConfig, progress: bool = True) -> EvaluationRun:
    path = resolve_checkpoint(checkpoint)
    pipe = DyadGenPipeline.from_pretrained(path, device=cfg.device, dtype=cfg.dtype)
    model_cfg = pipe.folder.config
    options = generation_options(pipe, cfg)
    compared = _compared_source(cfg, pipe)
    run = EvaluationRun(Path(out), systems=SYSTEMS + ((COMPARED,) if compared else ()))
    _check_out(run.out, _settings(path, cfg, options, compared))
    index = index_dataset(data, script_json=model_cfg.data.script_json,
                          video_to_dialogue=model_cfg.data.video_to_dialogue)
    splitter = Splitter(model_cfg.data.val_fraction, model_cfg.data.test_fraction, model_cfg.data.actor_map)
    run.failed += [(f, r) for f, r in index.problems]
    windows = held_out_clips(index.videos, splitter, cfg.split, cfg.seconds, cfg.max_clips, run.failed)
    if not windows:
        raise UserError(f"{data}: no {cfg.split} window of {cfg.seconds:g} s (by the checkpoint's split rule)")
    nets = measure.load_networks(cfg.weights, pipe.device)
    run.missing_networks, run.network_sources = dict(nets.missing), dict(nets.sources)
    size = pipe.size
    _fit_basis(run.out, index.videos, splitter, cfg, size, run.failed, progress)
    for i, window in enumerate(tqdm(windows, desc="evaluate", unit="window", disable=not progress)):
        try:
            _evaluate_window(Source(pipe, options, path), window, nets, run.out, size, run.systems,
                             write_video=i < cfg.videos, emotion_check=i < cfg.emotion_windows, compared=compared)
            run.clips.append(window.key)
        except (UserError, OSError, ValueError, RuntimeError) as err:  # a bad window is skipped, counted, listed
            run.failed.append((window.key, str(err).splitlines()[0] if str(err) else type(err).__name__))
    return run


def _compared_source(cfg: EvalConfig, pipe: DyadGenPipeline) -> Source | None:
    """The --compare checkpoint with its own sampler settings and the evaluation's seed (None without one)."""
    if not cfg.compare:
        return None
    path = resolve_checkpoint(cfg.compare)
    other = DyadGenPipeline.from_pretrained(path, device=cfg.device, dtype=cfg.dtype)
    if other.size != pipe.size:
        raise UserError(f"--compare {cfg.compare}: renders {other.size[0]}x{other.size[1]} pixels per person, the "
                        f"evaluated checkpoint {pipe.size[0]}x{pipe.size[1]}: the two cannot share windows")
    return Source(other, other.options(seed=cfg.seed), path)


def _evaluate_window(source: Source, window: HeldOutClip, nets, out: Path, size, systems: tuple[str, ...],
                     write_video: bool, emotion_check: bool = False, compared: Source | None = None) -> None:
    """Generate and score one window as each of ``systems`` not already in its folder (COMPARED from
    ``compared``)."""
    pipe, options = source.pipe, source.options
    folder = clip_folder(out, window)
    todo = [s for s in systems if not (folder / f"{s}.npz").is_file()]
    condition = emotion_check and not (folder / "emotion_condition.npz").is_file()
    if not todo and not condition and (not write_video or (folder / "side_by_side.mp4").is_file()):
        return
    truth = read_truth(window, size)
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "truth.npz").is_file():
        _truth_file(folder, truth)
    video_missing = write_video and not (folder / "side_by_side.mp4").is_file()
    for system in systems:
        if system not in todo and not (system == "model" and video_missing):
            continue
        by = compared if system == COMPARED else source
        frames = generate(by.pipe, truth, by.options, system)
        if system == "model" and write_video:
            _side_by_side(folder / "side_by_side.mp4", truth, frames)
        if system in todo:
            extra = _synthetic_scores(frames, truth) if truth.synthetic is not None else {}
            measure.save(folder / f"{system}.npz", measure_system(frames, truth, system, nets), extra)
    if condition:
        _emotion_condition(pipe, truth, options, MotionBasis.load(out / "motion_basis.npz"),
                           folder / "emotion_condition.npz")


def _side_by_side(path: Path, truth: GroundTruth, frames: np.ndarray) -> None:
    """ground truth | generated, both people (top: left person, bottom: right person), with both tracks."""
    P, T, H, W, _ = frames.shape
    rows = [np.concatenate([truth.frames[p], frames[p]], axis=2) for p in range(P)]  # [T,H,2W,3] each
    grid = np.concatenate(rows, axis=1)  # [T,2H,2W,3]
    with VideoWriter(path, width=2 * W, height=2 * H, audio=truth.audio) as writer:
        writer.write(grid)


def _fit_basis(out: Path, videos, splitter, cfg: EvalConfig, size, failed, progress: bool) -> None:
    """The motion PCA from ground truth of training windows (the held-out split's when there are none), and
    from the same training windows the emotion probe's training set (emotion_train.npz; none without
    training windows: a probe is never trained on the windows it scores)."""
    path = out / "motion_basis.npz"
    if path.is_file():
        return
    windows = held_out_clips(videos, splitter, "train", cfg.seconds, cfg.basis_clips)
    training = bool(windows)
    windows = windows or held_out_clips(videos, splitter, cfg.split, cfg.seconds, cfg.basis_clips)
    tracks, labels = [], []
    for window in tqdm(windows, desc="motion basis", unit="window", disable=not progress):
        try:
            truth = read_truth(window, size)
        except (UserError, OSError, ValueError) as err:
            failed.append((window.key, f"motion basis: {err}"))
            continue
        tracks += [face.track(truth.frames[p], prior=face.prior_box(size)) for p in range(2)]
        per_frame = video_labels(window.video, truth.frames.shape[1], window.first)[1]  # [P,T]
        labels += [emotion.window_label(per_frame[p]) for p in range(2)]
    if not tracks:
        raise UserError("no ground-truth window could be read to fit the motion basis")
    basis = fit_basis([t.landmarks for t in tracks])
    if training:
        rows = [(emotion.face_features(t.landmarks, t.head_pose, basis), y)
                for t, y in zip(tracks, labels, strict=True)]
        rows = [(x, y) for x, y in rows if x is not None and y >= 0]
        if rows:
            tmp = out / ".emotion_train.tmp.npz"
            np.savez(tmp, features=np.stack([x for x, _ in rows]), labels=np.array([y for _, y in rows]))
            tmp.replace(out / "emotion_train.npz")
    tmp = path.with_name(".motion_basis.tmp.npz")
    basis.save(tmp)
    tmp.replace(path)


def _emotion_condition(pipe, truth: GroundTruth, options, basis, path: Path) -> None:
    """The window generated under each of the contrasting labels (both people), its face features
    [labels,P,26] (NaN where no face) saved to ``path``."""
    size = truth.frames.shape[2:4]
    features = np.full((len(emotion.CONTRAST), 2, 26), np.nan)
    for i, label in enumerate(emotion.CONTRAST):
        conditioned = replace(options, left_emotion=label, right_emotion=label)
        frames = generate(pipe, truth, conditioned, "model")
        for p in range(2):
            track = face.track(frames[p], prior=face.prior_box(size))
            x = emotion.face_features(track.landmarks, track.head_pose, basis)
            if x is not None:
                features[i, p] = x
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    np.savez(tmp, features=features, labels=np.array([EMOTION_IDS[c] for c in emotion.CONTRAST]))
    tmp.replace(path)
