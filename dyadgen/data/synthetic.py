"""A synthetic dyadic corpus in SocioEmoDialog's layout exactly as its own tools write it
(dyadgen.data.layout), with per-frame ground truth.

Each video has two procedurally drawn people (left, right) and Mandarin speech (espeak-ng, or a
speech-like fallback; with ``RealVoices`` some people speak with real recorded voices instead); it
holds one or more dialogues in sequence, as a real recording of a date can. Turns alternate and
sometimes overlap. What the faces do is known exactly: the speaker's mouth opening follows the
smoothed energy of their own track, a listener's mouth stays closed, a listener nods ``NOD_LAG``
frames after the partner starts a turn, everyone blinks at random, and each utterance's emotion
label sets brows and mouth curve. ``ground_truth.npz`` stores it per frame.

As in the real recordings the raw video (25 fps, a keyframe every second) has a 48 kHz stereo track
in which each microphone also hears the partner, and the turn clips are cut by stream copy, so they
start on the keyframe before their turn. Beyond the published layout: ``script.json`` (both people's
utterances per dialogue; the first speaker of a dialogue is its speaker 0),
``video_to_dialogue.json`` ({video: [dialogue ids in order]}) and, per video folder,
``ground_truth.npz`` (mouth, nod, blink, speaking, emotion: [P,T] each) and ``script_entry.json``.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from functools import cached_property
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from dyadgen.clock import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME, frames_for_samples
from dyadgen.data.emotions import EMOTIONS, emotion_id, expression
from dyadgen.data.faces import FaceLook, FacePose, draw_face
from dyadgen.data.layout import SIDES, SpokenTurn, write_video_folder
from dyadgen.data.voices import PHRASES, Recorded, Voice, have_espeak, speak
from dyadgen.io.audio import resample
from dyadgen.io.files import write_text_atomic
from dyadgen.io.video import VideoWriter, stream_copy_cut

HALF_HEIGHT, HALF_WIDTH = 160, 144  # one person's half of the side-by-side frame
NOD_LAG = 10  # frames from the partner's turn start to the listener's nod
NOD_FRAMES = 15
BLEED = 0.08  # how much of the partner's voice each raw channel picks up
RAW_SAMPLE_RATE = 48_000  # the microphones' rate in the raw videos and channel wavs
TOPICS = ("General Entertainment", "Science & Technology", "Sports", "Politics")


@dataclass
class Utterance:
    speaker: int  # 0 left, 1 right
    start: int  # sample index in the dialogue
    audio: np.ndarray  # float32 [n]
    text: str
    emotion: str

    @property
    def end(self) -> int:
        return self.start + len(self.audio)


def plan_dialogue(rng: np.random.Generator, voices: list[Voice], use_espeak: bool, cursor: int) -> list[Utterance]:
    """6-8 utterances from sample ``cursor`` on, alternating speakers, gaps of -0.4..0.6 s (negative
    gaps overlap)."""
    utterances: list[Utterance] = []
    speaker = int(rng.integers(0, 2))
    for _ in range(int(rng.integers(6, 9))):
        text = "".join(rng.choice(PHRASES, size=int(rng.integers(1, 3)), replace=False))
        audio = speak(text, voices[speaker], rng, use_espeak)
        emotion = str(rng.choice(EMOTIONS))
        utterances.append(Utterance(speaker, cursor, audio, text, emotion))
        gap = rng.uniform(-0.4, 0.6) if rng.random() < 0.3 else rng.uniform(0.15, 0.6)
        cursor = max(cursor + int(SAMPLE_RATE * 0.5), utterances[-1].end + int(SAMPLE_RATE * gap))
        speaker = 1 - speaker
    return utterances


def mix_tracks(utterances: list[Utterance]) -> np.ndarray:
    """Clean per-person tracks float32 [P,N] (the `_mute` wavs), ending 0.8 s after the last word."""
    n = max(u.end for u in utterances) + int(0.8 * SAMPLE_RATE)
    n -= n % SAMPLES_PER_FRAME
    tracks = np.zeros((2, n), np.float32)
    for u in utterances:
        tracks[u.speaker, u.start:u.end] += u.audio
    return tracks


def ground_truth(utterances: list[Utterance], tracks: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per-frame behaviour of both people: mouth, nod, blink, speaking, emotion, each [P,T]."""
    num_frames = frames_for_samples(tracks.shape[1])
    speaking = np.zeros((2, num_frames), bool)
    emotion = np.full((2, num_frames), -1, np.int64)
    nod = np.zeros((2, num_frames), np.float32)
    for u in utterances:
        f0, f1 = u.start // SAMPLES_PER_FRAME, min(num_frames, -(-u.end // SAMPLES_PER_FRAME))
        speaking[u.speaker, f0:f1] = True
        emotion[u.speaker, f0:] = emotion_id(u.emotion)  # the expression holds until the next turn
        listener = 1 - u.speaker
        n0 = f0 + NOD_LAG
        n1 = min(num_frames, n0 + NOD_FRAMES)
        if n1 > n0:
            nod[listener, n0:n1] = np.maximum(nod[listener, n0:n1],
                                              np.sin(np.pi * np.arange(n1 - n0) / NOD_FRAMES))
    frames = tracks[:, : num_frames * SAMPLES_PER_FRAME].reshape(2, num_frames, SAMPLES_PER_FRAME)  # [P,T,640]
    rms = np.sqrt((frames**2).mean(-1))  # [P,T]
    kernel = np.ones(3) / 3
    smooth = np.stack([np.convolve(r, kernel, mode="same") for r in rms])  # [P,T]
    mouth = np.zeros_like(smooth)
    for p in range(2):
        if speaking[p].any():
            scale = np.quantile(smooth[p][speaking[p]], 0.9) + 1e-6
            mouth[p] = np.clip(smooth[p] / scale, 0, 1) * speaking[p]
    mouth[mouth < 0.08] = 0.0  # a closed mouth is closed, not a 1-pixel slit
    nod[speaking] = 0.0  # speakers do not nod
    blink = np.zeros((2, num_frames), bool)
    for p in range(2):
        t = int(rng.integers(10, 60))
        while t < num_frames:
            blink[p, t:t + 3] = True
            t += int(rng.integers(50, 125))
    return {"mouth": mouth.astype(np.float32), "nod": nod, "blink": blink, "speaking": speaking, "emotion": emotion}


def render_frames(looks: list[FaceLook], truth: dict[str, np.ndarray]):
    """Yield side-by-side frames uint8 [H, 2W, 3] (left person | right person)."""
    num_frames = truth["mouth"].shape[1]
    for t in range(num_frames):
        halves = []
        for p in range(2):
            label = truth["emotion"][p, t]
            smile, brows = expression(EMOTIONS[label]) if label >= 0 else (0.0, 0.0)
            pose = FacePose(mouth=float(truth["mouth"][p, t]), nod=float(truth["nod"][p, t]),
                            blink=bool(truth["blink"][p, t]), smile=smile, brows=brows)
            halves.append(draw_face(looks[p], pose, HALF_HEIGHT, HALF_WIDTH))
        yield np.concatenate(halves, axis=1)


def script_entry(dialogue_id: str, utterances: list[Utterance], topic: str) -> dict:
    """The script json entry of one dialogue; its first speaker is speaker 0, as in the real scripts."""
    first = utterances[0].speaker
    return {"topic_label": topic, "num_utterances": len(utterances),
            "utterances": [{"utterance_id": f"{dialogue_id}_{i:03d}", "speaker_id": int(u.speaker != first),
                            "emotion_label": u.emotion, "text": u.text} for i, u in enumerate(utterances)]}


@dataclass
class SyntheticVideo:
    """One synthetic recording, before it is written in the corpus layout: its frames are drawn from the
    ground truth as they are needed (:meth:`stream`), or all at once for in-memory use (``frames``)."""

    looks: list[FaceLook]  # the two people's faces
    clean: np.ndarray  # float32 [P,N] each person's own track at 16 kHz, N = T * 640
    truth: dict[str, np.ndarray]  # mouth, nod, blink, speaking, emotion: [P,T] each
    plans: list[list[Utterance]]  # the utterances of each dialogue in it
    rng: np.random.Generator  # the video's generator, where the drawing left it

    @property
    def num_frames(self) -> int:
        return self.truth["mouth"].shape[1]

    def stream(self) -> Iterator[np.ndarray]:
        """Side-by-side frames uint8 [H,2W,3], drawn one at a time."""
        return render_frames(self.looks, self.truth)

    @cached_property
    def frames(self) -> np.ndarray:
        """All frames uint8 [T,H,2W,3] in memory (the learning checks' short clips)."""
        return np.stack(list(self.stream()))


@dataclass(frozen=True)
class RealVoices:
    """Real speakers for a corpus: each person of a video speaks with one of ``speakers`` (two people
    never the same one) with probability ``share``, else with a synthetic voice."""

    speakers: tuple[Recorded, ...] = ()
    share: float = 0.5

    def assign(self, voices: list[Voice], seed: int, name: str) -> list[Voice]:
        if not self.speakers:
            return voices
        rng = np.random.default_rng([seed, zlib.crc32(name.encode()), 1])  # its own stream: the rest is unchanged
        order = rng.permutation(len(self.speakers))
        return [replace(v, recorded=self.speakers[order[p]]) if p < len(order) and rng.random() < self.share else v
                for p, v in enumerate(voices)]


def synthetic_video(name: str, seed: int, dialogues: int, use_espeak: bool,
                    real: RealVoices = RealVoices()) -> SyntheticVideo:
    """Draw the recording ``name`` of ``dialogues`` dialogues in sequence: the same video for the same
    name and seed, whether it is written to a corpus (``write_video``) or used in memory (the learning checks)."""
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    looks, voices = [FaceLook.random(rng), FaceLook.random(rng)], [Voice.random(rng), Voice.random(rng)]
    voices = real.assign(voices, seed, name)
    cursor, plans = int(SAMPLE_RATE * rng.uniform(0.4, 1.0)), []
    for _ in range(dialogues):
        plans.append(plan_dialogue(rng, voices, use_espeak, cursor))
        cursor = plans[-1][-1].end + int(SAMPLE_RATE * rng.uniform(1.0, 2.0))  # a pause between dialogues
    utterances = [u for plan in plans for u in plan]
    clean = mix_tracks(utterances)  # [P,N] at 16 kHz
    truth = ground_truth(utterances, clean, rng)
    return SyntheticVideo(looks, clean[:, : truth["mouth"].shape[1] * SAMPLES_PER_FRAME], truth, plans, rng)


def write_video(root: Path, name: str, dialogue_ids: list[str], seed: int, use_espeak: bool,
                sample_rate: int = RAW_SAMPLE_RATE, real: RealVoices = RealVoices()) -> dict[str, dict]:
    """Write ``<root>/<name>.mp4`` and its folder holding ``dialogue_ids`` in sequence; returns their
    script entries. Resumable: a finished folder is never rewritten."""
    folder = root / name
    if (folder / "script_entry.json").is_file():
        return json.loads((folder / "script_entry.json").read_text())
    video = synthetic_video(name, seed, len(dialogue_ids), use_espeak, real)
    clean, truth, plans, rng, T = video.clean, video.truth, video.plans, video.rng, video.num_frames
    utterances = [u for plan in plans for u in plan]
    n = T * SAMPLES_PER_FRAME
    heard = resample((clean + BLEED * clean[::-1])[:, :n], SAMPLE_RATE, sample_rate)  # [P,N'] each mic hears both
    turns = [SpokenTurn(SIDES[u.speaker], u.start // SAMPLES_PER_FRAME / FPS,
                        min(T, -(-u.end // SAMPLES_PER_FRAME)) / FPS, u.text) for u in utterances]
    scripts = {did: script_entry(did, plan, str(rng.choice(TOPICS))) for did, plan in zip(dialogue_ids, plans,
                                                                                           strict=True)}

    def extra(tmp: Path) -> None:
        np.savez_compressed(tmp / "ground_truth.npz", **truth)
        (tmp / "script_entry.json").write_text(json.dumps(scripts, ensure_ascii=False))

    write_recording(root, name, video.stream(), (HALF_HEIGHT, 2 * HALF_WIDTH), heard, sample_rate, turns, extra)
    return scripts


def write_recording(root: Path, name: str, frames: Iterable[np.ndarray], size: tuple[int, int], heard: np.ndarray,
                    sample_rate: int, turns: list[SpokenTurn], extra: Callable[[Path], None] | None = None) -> Path:
    """``<root>/<name>.mp4`` (frames uint8 [H,W,3] of ``size`` (H, W), written as they come, so memory stays
    flat in the video's length; stereo ``heard`` [2,N] at ``sample_rate``) and beside it the recording's
    folder in SocioEmoDialog's layout (channel wavs, diarization logs, turn clips, then ``extra``)."""
    raw = root / f"{name}.mp4"  # beside the folder, as in the real tree
    with VideoWriter(raw, width=size[1], height=size[0], audio=heard, sample_rate=sample_rate,
                     keyframe_every=FPS) as writer:
        for frame in frames:
            writer.write(frame)
    write_video_folder(root, raw, heard, sample_rate, turns, stream_copy_cut, extra=extra)
    return raw


def _write_one(args: tuple[str, str, list[str], int, bool, RealVoices]) -> dict[str, dict]:
    root, name, dialogue_ids, seed, use_espeak, real = args
    return write_video(Path(root), name, dialogue_ids, seed, use_espeak, real=real)


def write_index(root: Path, scripts: dict[str, dict], mapping: dict[str, list[str]]) -> None:
    """script.json and video_to_dialogue.json, each written then renamed."""
    for filename, data in (("script.json", scripts), ("video_to_dialogue.json", mapping)):
        write_text_atomic(root / filename, json.dumps(data, ensure_ascii=False, indent=1))


def synthesize(out: str | os.PathLike, dialogues: int, seed: int = 0, *, per_video: int = 1, workers: int = 1,
               use_espeak: bool | None = None, real: RealVoices = RealVoices(), progress: bool = True) -> Path:
    """Write ``dialogues`` synthetic dialogues under ``out``, ``per_video`` of them in each video
    (resumable), plus script.json and video_to_dialogue.json; ``real``: recorded speakers for some people."""
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    use_espeak = have_espeak() if use_espeak is None else use_espeak
    mapping = {f"990101_{first:03d}_synth": [f"990101_{i:03d}" for i in range(first, min(first + per_video,
                                                                                       dialogues))]
               for first in range(0, dialogues, per_video)}
    jobs = [(str(root), name, ids, seed, use_espeak, real) for name, ids in mapping.items()]
    if workers > 1:
        with get_context("spawn").Pool(workers) as pool:
            results = list(tqdm(pool.imap(_write_one, jobs), total=len(jobs), desc="synth", disable=not progress))
    else:
        results = [_write_one(job) for job in tqdm(jobs, desc="synth", disable=not progress)]
    write_index(root, {did: entry for scripts in results for did, entry in scripts.items()}, mapping)
    return root


__all__ = ["synthesize", "write_video", "synthetic_video", "SyntheticVideo", "RealVoices", "write_index",
           "ground_truth", "HALF_HEIGHT", "HALF_WIDTH", "NOD_LAG", "NOD_FRAMES"]
