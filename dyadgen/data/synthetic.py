"""A synthetic dyadic corpus in SocioEmoDialog's published layout, with per-frame ground truth.

Each dialogue has two procedurally drawn people (left, right) and Mandarin speech (espeak-ng, or a
speech-like fallback). Turns alternate and sometimes overlap. What the faces do is known exactly:
the speaker's mouth opening follows the smoothed energy of their own track, a listener's mouth stays
closed, a listener nods ``NOD_LAG`` frames after the partner starts a turn, everyone blinks at random,
and each utterance's emotion label sets brows and mouth curve. ``ground_truth.npz`` stores it per frame.

Layout (as published, see DATASETS.md), per video ``<name>``::

    <root>/script.json                       dialogues: utterances with speaker_id, emotion_label, text
    <root>/video_to_dialogue.json            {video name: dialogue id}
    <root>/<name>/<name>.mp4                 raw side-by-side video, stereo audio (L = left person)
    <root>/<name>/video_segments/000000.mp4  one clip per turn
    <root>/<name>/wav_{left,right}_segments/000000.wav
    <root>/<name>/<name>_{left,right}.wav, <name>_{left,right}_mute.wav
    <root>/<name>/<name>_left_speaker_diarization.log
    <root>/<name>/<name>_{left,right}_speaker_diarization_asr.json
    <root>/<name>/ground_truth.npz           mouth, nod, blink, speaking, emotion: [P,T] each
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dyadgen.clock import SAMPLE_RATE, SAMPLES_PER_FRAME, frames_for_samples
from dyadgen.data.emotions import EMOTIONS, emotion_id, expression
from dyadgen.data.faces import FaceLook, FacePose, draw_face
from dyadgen.data.socioemodialog import timestamp
from dyadgen.data.voices import PHRASES, Voice, have_espeak, speak
from dyadgen.io.audio import write_wav
from dyadgen.io.video import VideoWriter

HALF_HEIGHT, HALF_WIDTH = 160, 144  # one person's half of the side-by-side frame
NOD_LAG = 10  # frames from the partner's turn start to the listener's nod
NOD_FRAMES = 15
BLEED = 0.08  # how much of the partner's voice each raw channel picks up
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


def plan_dialogue(rng: np.random.Generator, use_espeak: bool) -> list[Utterance]:
    """6-8 utterances, alternating speakers, gaps of -0.4..0.6 s (negative gaps overlap)."""
    voices = [Voice.random(rng), Voice.random(rng)]
    utterances: list[Utterance] = []
    cursor = int(SAMPLE_RATE * rng.uniform(0.4, 1.0))
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


def write_dialogue(root: Path, index: int, seed: int, use_espeak: bool) -> tuple[str, str, dict]:
    """Write one dialogue's video folder; returns (video name, dialogue id, script entry)."""
    rng = np.random.default_rng([seed, index])
    dialogue_id = f"990101_{index:03d}"
    name = f"990101_{index:03d}_synth"
    folder = root / name
    tmp = root / f".{name}.tmp"
    if folder.exists():  # resumable: a finished folder is never rewritten
        script = json.loads((folder / "script_entry.json").read_text())
        return name, dialogue_id, script
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    for sub in ("video_segments", "wav_left_segments", "wav_right_segments"):
        (tmp / sub).mkdir(parents=True)
    looks = [FaceLook.random(rng), FaceLook.random(rng)]
    utterances = plan_dialogue(rng, use_espeak)
    clean = mix_tracks(utterances)  # [P,N]
    raw = clean + BLEED * clean[::-1]  # each microphone hears a little of the partner
    truth = ground_truth(utterances, clean, rng)
    frames = list(render_frames(looks, truth))
    num_frames = len(frames)
    raw = raw[:, : num_frames * SAMPLES_PER_FRAME]
    clean = clean[:, : num_frames * SAMPLES_PER_FRAME]

    width = 2 * HALF_WIDTH
    with VideoWriter(tmp / f"{name}.mp4", width=width, height=HALF_HEIGHT, audio=raw) as writer:
        writer.write(np.stack(frames))
    for p, side in enumerate(("left", "right")):
        write_wav(tmp / f"{name}_{side}.wav", raw[p])
        write_wav(tmp / f"{name}_{side}_mute.wav", clean[p])
    log_lines, asr = [], {"left": [], "right": []}
    for i, u in enumerate(utterances):
        f0 = u.start // SAMPLES_PER_FRAME
        f1 = min(num_frames, -(-u.end // SAMPLES_PER_FRAME))
        s0, s1 = f0 * SAMPLES_PER_FRAME, f1 * SAMPLES_PER_FRAME
        clip = f"{i:06d}"
        with VideoWriter(tmp / "video_segments" / f"{clip}.mp4", width=width, height=HALF_HEIGHT,
                         audio=raw[:, s0:s1]) as writer:
            writer.write(np.stack(frames[f0:f1]))
        write_wav(tmp / "wav_left_segments" / f"{clip}.wav", raw[0, s0:s1])
        write_wav(tmp / "wav_right_segments" / f"{clip}.wav", raw[1, s0:s1])
        log_lines.append(f"{timestamp(s0)} - {timestamp(s1)} speaker {u.speaker}; [Saved as {clip}.wav]")
        side = ("left", "right")[u.speaker]
        asr[side].append({"idx": i, "start": timestamp(s0), "end": timestamp(s1), "asr": u.text, "asr_flag": True})
    (tmp / f"{name}_left_speaker_diarization.log").write_text("\n".join(log_lines) + "\n")
    for side in ("left", "right"):
        (tmp / f"{name}_{side}_speaker_diarization_asr.json").write_text(json.dumps(asr[side], ensure_ascii=False))
    np.savez_compressed(tmp / "ground_truth.npz", **truth)
    script = {
        "topic_label": str(rng.choice(TOPICS)),
        "num_utterances": len(utterances),
        "utterances": [{"utterance_id": f"{dialogue_id}_{i:03d}", "speaker_id": u.speaker,
                        "emotion_label": u.emotion, "text": u.text} for i, u in enumerate(utterances)],
    }
    (tmp / "script_entry.json").write_text(json.dumps(script, ensure_ascii=False))
    os.replace(tmp, folder)
    return name, dialogue_id, script


def _write_one(args: tuple[str, int, int, bool]) -> tuple[str, str, dict]:
    root, index, seed, use_espeak = args
    return write_dialogue(Path(root), index, seed, use_espeak)


def synthesize(out: str | os.PathLike, dialogues: int, seed: int = 0, *, workers: int = 1,
               use_espeak: bool | None = None, progress: bool = True) -> Path:
    """Write ``dialogues`` synthetic dialogues under ``out`` (resumable) plus script.json."""
    from tqdm.auto import tqdm

    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    use_espeak = have_espeak() if use_espeak is None else use_espeak
    jobs = [(str(root), i, seed, use_espeak) for i in range(dialogues)]
    if workers > 1:
        from multiprocessing import get_context

        with get_context("spawn").Pool(workers) as pool:
            results = list(tqdm(pool.imap(_write_one, jobs), total=len(jobs), desc="synth", disable=not progress))
    else:
        results = [_write_one(job) for job in tqdm(jobs, desc="synth", disable=not progress)]
    scripts = {dialogue_id: script for _, dialogue_id, script in results}
    mapping = {name: dialogue_id for name, dialogue_id, _ in results}
    for filename, data in (("script.json", scripts), ("video_to_dialogue.json", mapping)):
        tmp = root / f".{filename}.tmp"
        tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1))
        os.replace(tmp, root / filename)
    return root


__all__ = ["synthesize", "write_dialogue", "ground_truth", "HALF_HEIGHT", "HALF_WIDTH", "NOD_LAG", "NOD_FRAMES"]
