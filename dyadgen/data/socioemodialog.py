"""Index a dataset root in SocioEmoDialog's layout as its own tools write it (dyadgen.data.layout,
DATASETS.md): one timeline of turns per video, every file mapped onto it.

- The raw video lies at ``<root>/<v>.mp4`` beside its folder ``<root>/<v>/`` (inside is accepted).
- Who speaks when comes from the two diarization logs: the "speaker 0" lines of the left log are the
  left person's turns, those of the right log the right person's. A side without a log takes its
  turns from the other log's speaker-1 lines (the partner's voice in that microphone).
- ``wav_<side>_segments/K.wav`` and ASR ``idx`` K are that side's K-th speaker-0 line;
  ``video_segments/N.mp4`` is the N-th line of the LEFT log, either speaker. So clip N, left wav N
  and right wav N are in general three different moments.
- ASR json checks: a missing side, a json holding the other side's turns (its times match the other
  log), two identical jsons, and their whisper_asr.py bug (for a video whose name contains "left"
  the right side's ASR is written over the left json and no right json is written) - detected,
  listed in ``problems`` and resolved from the logs and, where scripts exist, the script match.
- Turns are matched to script lines in order, per side (dyadgen.data.script_match); unmatched
  turns keep an empty emotion (unknown), never a guess.
Missing or unreadable files are reported (file, reason) and skipped, never fatal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dyadgen.data.emotions import emotion_id
from dyadgen.data.layout import SIDES, Segment, parse_log, parse_time
from dyadgen.data.script_match import is_chinese, match_video
from dyadgen.io.audio import load_audio
from dyadgen.media.clips import Span, check_against_segment, grid_frames, read_span

TIME_TOLERANCE = 0.002  # seconds: ASR json times are the log's strings, so they agree to the millisecond


@dataclass
class Turn:
    """One person's own turn on the video's timeline."""

    side: str  # who speaks: "left" or "right"
    start: float  # seconds in the whole video
    end: float
    number: int | None  # K of wav_<side>_segments/K.wav and ASR idx K; None when taken from the partner's log
    asr: str = ""
    asr_flag: bool = False
    dialogue_id: str = ""
    utterance_id: str = ""  # empty: not matched to a script line (emotion unknown)
    emotion: str = ""
    script_text: str = ""
    score: float = 0.0  # text similarity of the ASR to the matched script line (0 for a match by order)
    matched_by: str = ""  # "text" (its ASR matched the line), "order" (placed between the partner's), "" unknown


@dataclass
class Clip:
    """``video_segments/N.mp4``: the N-th line of the left log, cut from the raw video."""

    path: Path
    number: int
    start: float | None  # the log line's span, seconds in the whole video (None: no left log to place it)
    end: float | None
    side: str  # whose voice the left log heard: "left" (speaker 0), "right" (any other), "" unknown


@dataclass
class Video:
    name: str
    folder: Path
    raw_video: Path | None = None
    channel_wavs: dict[str, Path] = field(default_factory=dict)  # side -> `_mute` wav, else the channel wav
    turns: list[Turn] = field(default_factory=list)  # both people, sorted by start
    clips: list[Clip] = field(default_factory=list)
    dialogue_ids: list[str] = field(default_factory=list)  # the dialogues it holds, in time order
    topic: str = ""

    @property
    def dialogue_id(self) -> str:
        """The first dialogue of the video: the key of its split."""
        return self.dialogue_ids[0] if self.dialogue_ids else ""

    def segment_wav(self, turn: Turn) -> Path | None:
        if turn.number is None:
            return None
        return self.folder / f"wav_{turn.side}_segments" / f"{turn.number:06d}.wav"


@dataclass
class DatasetIndex:
    root: Path
    videos: list[Video]
    scripts: dict[str, dict]
    problems: list[tuple[str, str]]  # (file, reason)


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


def index_dataset(root: str | Path, *, script_json: str = "", video_to_dialogue: str = "") -> DatasetIndex:
    root = Path(root)
    problems: list[tuple[str, str]] = []
    scripts = load_scripts(root, script_json, problems)
    mapping_path = Path(video_to_dialogue) if video_to_dialogue else root / "video_to_dialogue.json"
    mapping = (_load_json(mapping_path, problems) or {}) if mapping_path.is_file() else {}
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    names = {f.name for f in folders}
    for raw in sorted(root.glob("*.mp4")):
        if raw.stem not in names and not raw.name.startswith("."):
            problems.append((str(raw), "raw video without its processed folder"))
    warned_language = False
    videos = []
    for folder in folders:
        video, readings = _index_video(folder, problems)
        if video is None:
            continue
        _apply_asr(video, readings[0])
        candidates = _candidate_dialogues(video.name, mapping, scripts)
        if candidates and not warned_language and not _script_language_fits(video, scripts, candidates):
            problems.append((script_json or str(root), "the ASR is Chinese but the script is not: use the Chinese "
                             "script (SocioEmoDialog_scrpits_cn.json)"))
            warned_language = True
        if candidates and not warned_language:
            scores = []
            for reading in readings:  # the reading of the ASR files whose turns match the script best
                _apply_asr(video, reading)
                scores.append(_match(video, scripts, candidates) + _order_agreement(video, scripts))
            if len(readings) > 1:
                _apply_asr(video, readings[scores.index(max(scores))])
                _match(video, scripts, candidates)
            _match_by_order(video, scripts)
        videos.append(video)
    return DatasetIndex(root, videos, scripts, problems)


def _candidate_dialogues(name: str, mapping: dict, scripts: dict[str, dict]) -> list[str]:
    """The dialogues a video may hold: the mapping's (a dialogue id or a list of them), else every
    dialogue of the video's date (raw files are named ``<date>_md5_<side>.mp4``)."""
    if name in mapping:
        ids = mapping[name] if isinstance(mapping[name], list) else [mapping[name]]
        return [d for d in ids if d in scripts]
    date = name.split("_")[0]
    return sorted(d for d in scripts if d.split("_")[0] == date)


def _script_language_fits(video: Video, scripts: dict[str, dict], candidates: list[str]) -> bool:
    asr = [t.asr for t in video.turns if t.asr]
    script = [str(u.get("text", "")) for d in candidates for u in scripts[d].get("utterances", [])]
    return not (asr and is_chinese(asr) and not is_chinese(script))


def _match(video: Video, scripts: dict[str, dict], candidates: list[str]) -> float:
    """Match the turns to script lines in place; returns the summed match score."""
    by_side = {side: [t for t in video.turns if t.side == side] for side in SIDES}
    texts = {side: [t.asr if t.asr and t.asr_flag else None for t in turns] for side, turns in by_side.items()}
    matches = match_video(texts, scripts, candidates)
    for side, turns in by_side.items():
        for turn, m in zip(turns, matches[side], strict=True):
            if m is not None:
                turn.dialogue_id, turn.utterance_id, turn.emotion = m.dialogue_id, m.utterance_id, m.emotion
                turn.script_text, turn.score, turn.matched_by = m.text, m.score, "text"
    video.dialogue_ids = list(dict.fromkeys(t.dialogue_id for t in video.turns if t.dialogue_id))
    if video.dialogue_ids:
        video.topic = str(scripts[video.dialogue_id].get("topic_label", ""))
    return sum(t.score for t in video.turns)


def _match_by_order(video: Video, scripts: dict[str, dict]) -> int:
    """Label turns that have no usable ASR (their whisper_asr.py loses one side of every video whose name
    contains "left") from the order of the dialogue: between two consecutive text-matched turns of the
    partner in one dialogue, the script's lines of the other speaker id go, in order, to this side's turns
    on the timeline there - only when the timeline holds exactly as many of them as the script has lines,
    none of them already matched or carrying text of its own; never otherwise. Returns the turns labelled."""
    position = {str(u.get("utterance_id", "")): i for d in scripts.values() for i, u in enumerate(d["utterances"])}
    labelled = 0
    for side in SIDES:
        partner = [t for t in video.turns if t.side != side and t.matched_by == "text"]
        own = [t for t in video.turns if t.side == side]
        for a, b in zip(partner, partner[1:], strict=False):
            if a.dialogue_id != b.dialogue_id:
                continue
            utterances = scripts[a.dialogue_id]["utterances"]
            partner_id = utterances[position[a.utterance_id]].get("speaker_id")
            if utterances[position[b.utterance_id]].get("speaker_id") != partner_id:
                continue  # the partner's two lines disagree on who the partner is: no order to trust
            lines = [u for u in utterances[position[a.utterance_id] + 1: position[b.utterance_id]]
                     if u.get("speaker_id") != partner_id]
            between = [t for t in own if a.start < t.start < b.start]  # this side's turns there, in time order
            if not lines or len(between) != len(lines):
                continue
            if any(t.utterance_id or (t.asr and t.asr_flag) for t in between):
                continue  # a turn with its own text or match keeps it
            for turn, u in zip(between, lines, strict=True):
                turn.dialogue_id, turn.utterance_id = a.dialogue_id, str(u.get("utterance_id", ""))
                turn.emotion, turn.script_text = str(u.get("emotion_label", "")), str(u.get("text", ""))
                turn.score, turn.matched_by = 0.0, "order"
                labelled += 1
    video.dialogue_ids = list(dict.fromkeys(t.dialogue_id for t in video.turns if t.dialogue_id))
    return labelled


def _order_agreement(video: Video, scripts: dict[str, dict]) -> int:
    """How many gaps between a side's consecutive matched turns (and before its first one) hold as
    many partner turns as the script has partner lines there. Texts of one side alone match the
    script equally well on either side; the order of both people's turns in time tells them apart."""
    position = {str(u.get("utterance_id", "")): i for d in scripts.values() for i, u in enumerate(d["utterances"])}
    agree = 0
    for side in SIDES:
        partner = [t.start for t in video.turns if t.side != side]
        matched = [t for t in video.turns if t.side == side and t.utterance_id]
        previous = None
        for turn in matched:
            if previous is None or previous.dialogue_id != turn.dialogue_id:
                if previous is None and turn.dialogue_id == video.dialogue_id:  # the video's first dialogue
                    lines = scripts[turn.dialogue_id]["utterances"][: position[turn.utterance_id]]
                    own_id = scripts[turn.dialogue_id]["utterances"][position[turn.utterance_id]].get("speaker_id")
                    agree += sum(u.get("speaker_id") != own_id for u in lines) == sum(t < turn.start for t in partner)
            else:
                lines = scripts[turn.dialogue_id]["utterances"][position[previous.utterance_id] + 1:
                                                                position[turn.utterance_id]]
                own_id = scripts[turn.dialogue_id]["utterances"][position[turn.utterance_id]].get("speaker_id")
                between = sum(previous.start < t < turn.start for t in partner)
                agree += sum(u.get("speaker_id") != own_id for u in lines) == between
            previous = turn
    return agree


def _index_video(folder: Path, problems: list[tuple[str, str]]) -> tuple[Video | None, list[dict]]:
    name = folder.name
    video = Video(name=name, folder=folder)
    for raw in (folder.parent / f"{name}.mp4", folder / f"{name}.mp4"):  # beside the folder, or inside
        if raw.is_file():
            video.raw_video = raw
            break
    for side in SIDES:
        for candidate in (folder / f"{name}_{side}_mute.wav", folder / f"{name}_{side}.wav"):
            if candidate.is_file():
                video.channel_wavs[side] = candidate
                break
    logs: dict[str, list[Segment]] = {}
    for side in SIDES:
        path = folder / f"{name}_{side}_speaker_diarization.log"
        if not path.is_file():
            problems.append((str(path), "missing diarization log"))
            continue
        try:
            logs[side] = parse_log(path)
        except OSError as err:
            problems.append((str(path), f"unreadable diarization log ({type(err).__name__})"))
    asr = _read_asr(folder, name, problems)
    video.turns = _timeline(folder, name, logs, asr, problems)
    readings = _asr_readings(video, asr, problems)
    video.clips = _clips(folder, logs.get("left"), problems)
    if video.raw_video is None and not video.clips:
        problems.append((str(folder), "no video (neither the raw video beside or inside the folder nor "
                         "usable video_segments/)"))
        return None, readings
    if not video.turns:
        problems.append((str(folder), "no turns (no diarization log or ASR json)"))
    return video, readings


def _read_asr(folder: Path, name: str, problems) -> dict[str, list[dict]]:
    asr: dict[str, list[dict]] = {}
    for side in SIDES:
        path = folder / f"{name}_{side}_speaker_diarization_asr.json"
        if not path.is_file():
            problems.append((str(path), "missing ASR json"))
            continue
        entries = _load_json(path, problems)
        good = []
        for e in entries if isinstance(entries, list) else []:
            try:
                good.append({"idx": int(e["idx"]), "start": parse_time(e["start"]), "end": parse_time(e["end"]),
                             "asr": str(e.get("asr", "")), "asr_flag": bool(e.get("asr_flag", True))})
            except (KeyError, ValueError, TypeError, AttributeError):
                problems.append((str(path), f"malformed entry {e!r:.60}"))
        asr[side] = good
    return asr


def _timeline(folder: Path, name: str, logs: dict[str, list[Segment]], asr: dict[str, list[dict]],
              problems) -> list[Turn]:
    """Both people's turns sorted by start: each side's own log, else its ASR json's times, else the
    other log's speaker-1 lines."""
    turns: list[Turn] = []
    for side in SIDES:
        other = SIDES[1 - SIDES.index(side)]
        if side in logs:
            own = [s for s in logs[side] if s.speaker == 0]
            turns += [Turn(side, s.start, s.end, s.saved_as if s.saved_as is not None else k)
                      for k, s in enumerate(own)]
        elif side in asr:
            turns += [Turn(side, e["start"], e["end"], e["idx"]) for e in asr[side]]
            problems.append((str(folder / f"{name}_{side}_speaker_diarization.log"),
                             f"{side} turns taken from its ASR json"))
        elif other in logs:
            turns += [Turn(side, s.start, s.end, None) for s in logs[other] if s.speaker != 0]
            problems.append((str(folder / f"{name}_{side}_speaker_diarization.log"),
                             f"{side} turns taken from the {other} log's speaker-1 lines"))
    return sorted(turns, key=lambda t: (t.start, t.side))


def _fits(entries: list[dict], turns: list[Turn]) -> int:
    """How many ASR entries land on a turn of ``turns`` with the same number and times."""
    by_number = {t.number: t for t in turns}
    return sum(1 for e in entries if (t := by_number.get(e["idx"])) is not None
               and abs(t.start - e["start"]) <= TIME_TOLERANCE and abs(t.end - e["end"]) <= TIME_TOLERANCE)


def _asr_readings(video: Video, asr: dict[str, list[dict]], problems) -> list[dict[str, list[dict]]]:
    """Which side each ASR json really holds: one reading ({side: entries}), or two where the files
    cannot tell (the 'left'-name case), for the script match to decide."""
    by_side = {side: [t for t in video.turns if t.side == side] for side in SIDES}
    path = {side: str(video.folder / f"{video.name}_{side}_speaker_diarization_asr.json") for side in SIDES}
    if "left" in asr and "right" in asr and asr["left"] == asr["right"]:
        problems.append((path["right"], "the left and right ASR json are identical (one side written twice)"))
        kept = {side: asr[side] for side in SIDES if _fits(asr[side], by_side[side]) >= len(asr[side]) / 2}
        asr = kept or {"left": asr["left"]}
    reading: dict[str, list[dict]] = {}
    for side, entries in asr.items():
        other = SIDES[1 - SIDES.index(side)]
        if entries and _fits(entries, by_side[other]) > _fits(entries, by_side[side]):
            problems.append((path[side], f"holds the {other} side's turns (its times match the {other} log)"))
            reading.setdefault(other, entries)
        else:
            reading.setdefault(side, entries)
    if "left" in video.name and "left" in asr and "right" not in asr:
        # their whisper_asr.py picks the side by 'left' in the segment folder's path, so for such a video the
        # right pass transcribes wav_right_segments/K on the left log's lines and writes over the left json
        problems.append((path["left"], "video name contains 'left' and the right ASR json is missing: the left "
                         "json may hold the right side's texts (their whisper_asr.py); the script match decides"))
        return [reading, {"right": asr["left"]}]
    return [reading]


def _apply_asr(video: Video, reading: dict[str, list[dict]]) -> None:
    for turn in video.turns:
        turn.asr, turn.asr_flag = "", False
        turn.dialogue_id = turn.utterance_id = turn.emotion = turn.script_text = turn.matched_by = ""
        turn.score = 0.0
    for side, entries in reading.items():
        by_number = {t.number: t for t in video.turns if t.side == side}
        for e in entries:
            turn = by_number.get(e["idx"])
            if turn is not None:
                turn.asr, turn.asr_flag = e["asr"], e["asr_flag"]


def _clips(folder: Path, left_log: list[Segment] | None, problems) -> list[Clip]:
    paths = sorted((folder / "video_segments").glob("*.mp4"))
    if not paths:
        return []
    if left_log is None:
        problems.append((str(folder / "video_segments"), "turn clips cannot be placed without the left log"))
        return [Clip(path, int(path.stem) if path.stem.isdigit() else -1, None, None, "") for path in paths]
    clips = []
    for path in paths:
        if not path.stem.isdigit() or int(path.stem) >= len(left_log):
            problems.append((str(path), "no line of the left log for this clip"))
            continue
        seg = left_log[int(path.stem)]
        clips.append(Clip(path, int(path.stem), seg.start, seg.end, "left" if seg.speaker == 0 else "right"))
    return clips


def video_labels(video: Video, num_frames: int, first: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """speaking bool [P,T] and emotion long [P,T] of the video's frames first .. first + T - 1, from
    the timeline. A person's emotion is that of their latest turn and holds until their next one; it
    is -1 (unknown) before their first turn and after a turn the script match left unmatched."""
    speaking = np.zeros((2, num_frames), bool)
    emotion = np.full((2, num_frames), -1, np.int64)
    for turn in video.turns:  # sorted by start, so a later turn overrides the emotion of an earlier one
        p = SIDES.index(turn.side)
        f0, f1 = (f - first for f in grid_frames(turn.start, turn.end))
        speaking[p, max(f0, 0): max(f1, 0)] = True
        emotion[p, max(f0, 0):] = emotion_id(turn.emotion) if turn.utterance_id else -1
    return speaking, emotion


def read_clip(video: Video, clip: Clip) -> Span:
    """A turn clip's span of the video (side-by-side frames and stereo audio, uncropped), checked
    against the wav segment of every own turn inside it (ClipError when they disagree by more than a
    frame: the clip is not the moment the logs say)."""
    span = read_span(clip.path, clip.start, clip.end, origin=clip.start)
    for turn in video.turns:
        wav = video.segment_wav(turn)
        if clip.start - 0.05 <= turn.start and turn.end <= clip.end + 0.05 and wav is not None and wav.is_file():
            check_against_segment(clip.path, span, SIDES.index(turn.side), load_audio(wav), turn.start)
    return span
