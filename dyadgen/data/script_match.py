"""Match a video's turns to script utterances, in order, per side (SocioEmoDialog's script json).

Their matcher (data_tools/script_match.py) walks one side's ASR in order: it finds the best script
line among the date's dialogues, then takes every second utterance of that dialogue (the same
speaker) for the side's next turns, and searches again when the dialogue ends. This does the same
with what it leaves out: the speaker id is fixed per side within a dialogue (the partner has the
other one), a turn may be skipped or left unmatched (emotion unknown, never guessed), one video may
hold several dialogues, and the similarity works on Chinese characters (Mandarin ASR is matched
against the Chinese script; punctuation, spaces and full-width forms do not count).
"""

from __future__ import annotations

import difflib
import unicodedata
from collections import Counter
from dataclasses import dataclass

THRESHOLD = 0.5  # below this similarity a turn stays unmatched
LOOKAHEAD = 3  # how far ahead in a dialogue's lines of one speaker a turn may land (missed turns)


def normalize(text: str) -> str:
    """NFKC (full-width -> half-width), lower case, without punctuation, symbols or spaces."""
    text = unicodedata.normalize("NFKC", text).lower()
    return "".join(ch for ch in text if unicodedata.category(ch)[0] not in "PSZC")


def similarity(a: str, b: str) -> float:
    """Character-level similarity in [0, 1] of two normalized texts (Chinese has no spaces to
    tokenise on, so characters are the units)."""
    if not a or not b:
        return 0.0
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def is_chinese(texts: list[str]) -> bool:
    """Whether most characters of ``texts`` are CJK ideographs."""
    chars = "".join(normalize(t) for t in texts)
    return bool(chars) and sum("\u4e00" <= c <= "\u9fff" for c in chars) / len(chars) > 0.5


@dataclass
class Match:
    dialogue_id: str
    utterance_id: str
    emotion: str
    text: str
    score: float


@dataclass
class Line:
    dialogue_id: str
    position: int  # index among the dialogue's utterances of this speaker
    speaker_id: int
    utterance: dict
    norm: str


def _lines(scripts: dict[str, dict], dialogue_ids: list[str]) -> dict[tuple[str, int], list[Line]]:
    by_speaker: dict[tuple[str, int], list[Line]] = {}
    for did in dialogue_ids:
        for u in scripts[did].get("utterances", []):
            key = (did, int(u.get("speaker_id", 0)))
            lines = by_speaker.setdefault(key, [])
            lines.append(Line(did, len(lines), key[1], u, normalize(str(u.get("text", "")))))
    return by_speaker


def match_video(texts: dict[str, list[str | None]], scripts: dict[str, dict],
                dialogue_ids: list[str]) -> dict[str, list[Match | None]]:
    """``texts``: per side, its turns' ASR in time order (None = no usable ASR). Returns per side one
    Match or None per turn."""
    by_speaker = _lines(scripts, dialogue_ids)
    everything = [line for lines in by_speaker.values() for line in lines]
    norms = {side: [normalize(t) if t else "" for t in side_texts] for side, side_texts in texts.items()}

    weight: Counter = Counter()  # how much of the video's speech each dialogue explains (breaks ties)

    def best(norm: str, allowed) -> tuple[Line | None, float]:
        scored = [(similarity(norm, line.norm), weight[line.dialogue_id], -i, line) for i, line in enumerate(allowed)]
        if not scored:
            return None, 0.0
        score, _, _, line = max(scored, key=lambda x: x[:3])
        return (line, score) if score >= THRESHOLD else (None, score)

    # 1. which script speaker each side is, per dialogue: votes of every turn's best line overall
    votes: Counter = Counter()
    for side, side_norms in norms.items():
        for norm in side_norms:
            line, score = best(norm, everything) if norm else (None, 0.0)
            if line is not None:
                # side "left" as speaker s is the same hypothesis as "right" as speaker 1 - s
                votes[(line.dialogue_id, line.speaker_id if side == "left" else 1 - line.speaker_id)] += score
    left_speaker = {did: int(votes[(did, 1)] > votes[(did, 0)]) for did in dialogue_ids}
    weight.update({did: votes[(did, 0)] + votes[(did, 1)] for did in dialogue_ids})

    def speaker_of(side: str, did: str) -> int:
        return left_speaker[did] if side == "left" else 1 - left_speaker[did]

    # 2. each side in time order: the next lines of the current dialogue first, else a new search
    out: dict[str, list[Match | None]] = {}
    for side, side_norms in norms.items():
        allowed = [line for line in everything if line.speaker_id == speaker_of(side, line.dialogue_id)]
        current: list[Line] = []
        position = 0
        matches: list[Match | None] = []
        for norm in side_norms:
            line, score = (None, 0.0)
            if norm and current:
                line, score = best(norm, current[position: position + LOOKAHEAD])
            if norm and line is None:
                line, score = best(norm, allowed)
            if line is None:
                matches.append(None)
                continue
            current = by_speaker[(line.dialogue_id, line.speaker_id)]
            position = line.position + 1
            u = line.utterance
            matches.append(Match(line.dialogue_id, str(u.get("utterance_id", "")), str(u.get("emotion_label", "")),
                                 str(u.get("text", "")), score))
        out[side] = matches
    return out
