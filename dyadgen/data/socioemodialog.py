"""Index a dataset root in SocioEmoDialog's published layout (see DATASETS.md).

Per video folder: turn clips, channel wavs (and `_mute` versions), per-side ASR json; a script json
of dialogues beside them. Each ASR turn is paired with its side (the json it came from) and with
the script line whose text is most similar (difflib ratio, kept as ``score``), within the dialogue
named by an explicit video-to-dialogue mapping when one is given, else the best-matching dialogue.
Missing or unreadable files are reported (file, reason) and skipped, never fatal.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path

from dyadgen.clock import SAMPLE_RATE

SIDES = ("left", "right")


@dataclass
class Turn:
    index: int
    side: str  # who speaks: "left" or "right"
    start: float  # seconds in the whole video
    end: float
    asr: str
    asr_flag: bool
    utterance_id: str = ""
    emotion: str = ""
    script_text: str = ""
    score: float = 0.0  # text similarity of the ASR to the matched script line


@dataclass
class Video:
    name: str
    folder: Path
    dialogue_id: str = ""
    topic: str = ""
    raw_video: Path | None = None
    channel_wavs: dict[str, Path] = field(default_factory=dict)  # side -> `_mute` wav, else raw channel
    turns: list[Turn] = field(default_factory=list)
    clips: list[Path] = field(default_factory=list)


@dataclass
class DatasetIndex:
    root: Path
    videos: list[Video]
    scripts: dict[str, dict]
    problems: list[tuple[str, str]]  # (file, reason)


def parse_time(text: str) -> float:
    h, m, s = text.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def timestamp(samples: int) -> str:
    """16 kHz samples -> HH:MM:SS.mmm, the ASR json's time format (the inverse of parse_time)."""
    ms = round(samples * 1000 / SAMPLE_RATE)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"


def _load_json(path: Path, problems: list[tuple[str, str]]):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        problems.append((str(path), f"unreadable json ({type(err).__name__})"))
        return None


def load_scripts(root: Path, script_json: str, problems: list[tuple[str, str]]) -> dict[str, dict]:
    paths = [Path(script_json)] if script_json else sorted(root.glob("*.json"))
    scripts: dict[str, dict] = {}
    for path in paths:
        data = _load_json(path, problems)
        if isinstance(data, dict):
            scripts.update({k: v for k, v in data.items() if isinstance(v, dict) and "utterances" in v})
    return scripts


def match_turns(turns: list[Turn], utterances: list[dict]) -> float:
    """Pair turns with script lines by text similarity (in place); returns the mean score."""
    if not turns or not utterances:
        return 0.0
    for turn in turns:
        best, score = None, -1.0
        for u in utterances:
            r = difflib.SequenceMatcher(None, turn.asr, u.get("text", "")).ratio()
            if r > score:
                best, score = u, r
        turn.utterance_id = best.get("utterance_id", "")
        turn.emotion = best.get("emotion_label", "")
        turn.script_text = best.get("text", "")
        turn.score = score
    return sum(t.score for t in turns) / len(turns)


def index_dataset(root: str | Path, *, script_json: str = "", video_to_dialogue: str = "") -> DatasetIndex:
    root = Path(root)
    problems: list[tuple[str, str]] = []
    scripts = load_scripts(root, script_json, problems)
    mapping: dict[str, str] = {}
    mapping_path = Path(video_to_dialogue) if video_to_dialogue else root / "video_to_dialogue.json"
    if mapping_path.is_file():
        mapping = _load_json(mapping_path, problems) or {}
    videos = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        video = _index_video(folder, problems)
        if video is None:
            continue
        if video.name in mapping and mapping[video.name] in scripts:
            video.dialogue_id = mapping[video.name]
            match_turns(video.turns, scripts[video.dialogue_id]["utterances"])
        elif scripts:  # no mapping: the dialogue whose lines the ASR matches best
            scored = []
            for did, script in scripts.items():
                trial = [Turn(**{**t.__dict__}) for t in video.turns]
                scored.append((match_turns(trial, script["utterances"]), did))
            best_score, best = max(scored)
            video.dialogue_id = best
            match_turns(video.turns, scripts[best]["utterances"])
        if video.dialogue_id:
            video.topic = scripts[video.dialogue_id].get("topic_label", "")
        videos.append(video)
    return DatasetIndex(root, videos, scripts, problems)


def _index_video(folder: Path, problems: list[tuple[str, str]]) -> Video | None:
    name = folder.name
    video = Video(name=name, folder=folder)
    raw = folder / f"{name}.mp4"
    video.raw_video = raw if raw.is_file() else None
    for side in SIDES:
        for candidate in (folder / f"{name}_{side}_mute.wav", folder / f"{name}_{side}.wav"):
            if candidate.is_file():
                video.channel_wavs[side] = candidate
                break
        else:
            problems.append((str(folder / f"{name}_{side}.wav"), "missing channel wav"))
        asr_path = folder / f"{name}_{side}_speaker_diarization_asr.json"
        if not asr_path.is_file():
            problems.append((str(asr_path), "missing ASR json"))
            continue
        entries = _load_json(asr_path, problems) or []
        for e in entries:
            try:
                video.turns.append(Turn(int(e["idx"]), side, parse_time(e["start"]), parse_time(e["end"]),
                                        str(e.get("asr", "")), bool(e.get("asr_flag", True))))
            except (KeyError, ValueError, TypeError):
                problems.append((str(asr_path), f"malformed entry {e!r:.60}"))
    video.turns.sort(key=lambda t: t.start)
    video.clips = sorted((folder / "video_segments").glob("*.mp4"))
    if video.raw_video is None and not video.clips:
        problems.append((str(folder), "no video (neither the raw video nor video_segments/)"))
        return None
    if len(video.channel_wavs) < 2:
        return None
    return video
