"""Speech-emotion corpora in the formats they are published in (DATASETS.md), read into one record type
for the emotion probe (dyadgen.eval.probe): an :class:`Utterance` is a wav (or a span of one) with a
normalised lower-case label and its group - the split for datasets with fixed splits, the session for
leave-one-session-out ones.

- EmotionTalk: an evaluation manifest (``*.jsonl``) or the per-utterance annotation json files; split
  by recording id (validation G00001/G00012, test G00003/G00015, train the rest). 7 classes.
- IEMOCAP: ``Session{n}/dialog/EmoEvaluation/*.txt`` and ``Session{n}/sentences/wav/<dialog>/<utt>.wav``;
  4 classes with excited merged into happy; leave-one-session-out over the sessions.
- MSP-IMPROV: ``Evalution.txt`` (the release's spelling) and the wavs anywhere under the root; 4 classes;
  leave-one-session-out over the 6 sessions.
- SocioEmoDialog: the turns that dyadgen.data.socioemodialog matched to a script line, each a span of its
  speaker's own channel wav; 19 classes; the split of its video (dyadgen.data.splits.Splitter), so the
  probe's test utterances are the videos the model never trains on.

Every label mapping is in the ``*_LABELS`` dicts below. A missing or unreadable file, and a label outside
a corpus's classes, is listed in ``Corpus.skipped`` as (file or id, reason) and skipped, never fatal; a
root that does not exist, or holds none of the dataset's label files, is a UserError.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dyadgen.data.emotions import EMOTIONS
from dyadgen.data.socioemodialog import index_dataset
from dyadgen.data.splits import Splitter
from dyadgen.errors import UserError

# ---- label normalisation: raw label (as the dataset writes it) -> one lower-case scheme ------------------

EMOTIONTALK_LABELS: dict[str, str] = {  # its 7 classes; matched after lower-casing
    "happy": "happy", "surprise": "surprise", "sad": "sad", "disgust": "disgust", "anger": "angry",
    "fear": "fear", "neutral": "neutral",
    "angry": "angry",  # an alias, in case a manifest writes the adjective
}
IEMOCAP_LABELS: dict[str, str] = {  # the 4-class protocol; fru, sur, fea, dis, oth, xxx are dropped
    "neu": "neutral", "ang": "angry", "sad": "sad", "hap": "happy",
    "exc": "happy",  # excited merged into happy, as in the published 4-class figures
}
MSP_IMPROV_LABELS: dict[str, str] = {  # the consensus code; O (other) and X (no agreement) are dropped
    "A": "angry", "H": "happy", "S": "sad", "N": "neutral",
}
# SocioEmoDialog: its 18 labels and "Other" (Joy -> joy, ..., Other -> other)
SOCIOEMODIALOG_LABELS: dict[str, str] = {e.lower(): e.lower() for e in EMOTIONS}

EMOTIONTALK_CLASSES = ("happy", "surprise", "sad", "disgust", "angry", "fear", "neutral")
FOUR_CLASSES = ("neutral", "angry", "sad", "happy")
SOCIOEMODIALOG_CLASSES = tuple(SOCIOEMODIALOG_LABELS.values())

EMOTIONTALK_VAL = ("G00001", "G00012")  # recording ids
EMOTIONTALK_TEST = ("G00003", "G00015")
_RECORDING = re.compile(r"G\d{5}")


@dataclass
class Utterance:
    id: str
    audio: Path  # a wav file
    label: str  # normalised, one of the corpus's classes
    group: str  # "train"/"val"/"test" for split datasets, the session ("Session1", "S01") otherwise
    start: float = 0.0  # seconds into `audio` (SocioEmoDialog turns are spans of a channel wav)
    end: float | None = None  # None: to the end of the file
    speaker: str = ""


@dataclass
class Corpus:
    name: str
    utterances: list[Utterance]
    classes: tuple[str, ...]  # the label set, in a fixed order
    protocol: str  # "split" (train/val/test groups) or "leave-one-session-out"
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file or id, reason)


class _Reader:
    """Collects a corpus's utterances, its file problems and its dropped labels (listed after the problems,
    so the few missing files are not buried under thousands of out-of-class labels)."""

    def __init__(self, labels: dict[str, str], classes: tuple[str, ...], lower: bool = True):
        self.labels, self.classes, self.lower = labels, classes, lower
        self.utterances: list[Utterance] = []
        self.problems: list[tuple[str, str]] = []
        self.dropped: list[tuple[str, str]] = []
        self.ids: set[str] = set()

    def label(self, item: str, raw: str) -> str | None:
        """The normalised label, or None (listed) for one outside the classes."""
        key = raw.strip().lower() if self.lower else raw.strip()
        label = self.labels.get(key)
        if label is None:
            self.dropped.append((item, f"label {raw.strip() or '(empty)'} outside the {len(self.classes)} classes"))
        return label

    def add(self, utterance: Utterance) -> None:
        if utterance.id in self.ids:
            self.problems.append((utterance.id, "duplicate utterance id (the first one kept)"))
            return
        self.ids.add(utterance.id)
        self.utterances.append(utterance)

    def corpus(self, name: str, protocol: str) -> Corpus:
        return Corpus(name, self.utterances, self.classes, protocol, self.problems + self.dropped)


def _wav_index(root: Path) -> dict[str, Path]:
    """stem -> the first wav of that stem under ``root`` (sorted walk; macOS ``._`` shadow files ignored)."""
    found: dict[str, Path] = {}
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for f in sorted(files):
            if f.lower().endswith(".wav") and not f.startswith("."):
                found.setdefault(f[:-4], Path(folder) / f)
    return found


class _LazyWavs:
    """The wav index, built on first use (a manifest whose paths all resolve never walks the tree)."""

    def __init__(self, root: Path):
        self.root, self._index = root, None

    def get(self, stem: str) -> Path | None:
        if self._index is None:
            self._index = _wav_index(self.root)
        return self._index.get(stem)


# ---- EmotionTalk -------------------------------------------------------------------------------------------

def emotiontalk_split(text: str) -> str | None:
    """"train", "val" or "test" from the first recording id (G + 5 digits) in a sample id or file name."""
    m = _RECORDING.search(text)
    if m is None:
        return None
    return "val" if m.group() in EMOTIONTALK_VAL else "test" if m.group() in EMOTIONTALK_TEST else "train"


def _emotiontalk_speaker(stem: str) -> str:
    m = re.search(r"G\d{5}_\d+_(\d+)_\d+", stem)  # G00002_01_07_001: recording, session, speaker, number
    return m.group(1) if m else ""


def load_emotiontalk(root: str | Path, manifest: str = "") -> Corpus:
    """EmotionTalk from an evaluation manifest (``manifest``, else every ``*.jsonl`` under the root) or,
    without one, from the per-utterance annotation json files under the root.

    Manifest records: ``{"sample_id", "src_audio": "emotiontalk/audio/zh/<id>.wav", "benchmark_metadata":
    {"emotion"}}``; the audio is ``src_audio`` under the root, else a wav of the same stem anywhere under it.
    Annotation records: ``{"emotion_result", "speaker_id", "file_name": "G00002/.../G00002_01_07_001.mp4"}``;
    the audio is the wav of the file name's stem under the root. Where several modalities annotate one
    utterance, the audio modality's record (it has ``paragraphs``/``sourceAttr``, or lies under a folder
    named audio) gives the label. The split is by the recording id in the sample id or file name.
    The published manifest covers the test split only: pair it with a manifest or annotations of the others.
    """
    root = _existing(root, "emotiontalk")
    paths = [Path(manifest)] if manifest else sorted(p for p in root.rglob("*.jsonl") if not p.name.startswith("."))
    reader = _Reader(EMOTIONTALK_LABELS, EMOTIONTALK_CLASSES)
    wavs = _LazyWavs(root)
    if paths:
        for path in paths:
            _read_manifest(path, root, wavs, reader)
    else:
        records = _annotation_records(root, reader)
        if not records:
            raise UserError(f"{root}: no EmotionTalk manifest (*.jsonl) or annotation json (with emotion_result "
                            "and file_name) found")
        for stem, (path, record) in records.items():
            _add_emotiontalk(reader, f"{path}", stem, str(record["emotion_result"]), wavs.get(stem), root / stem,
                             str(record.get("speaker_id", "")) or _emotiontalk_speaker(stem))
    return reader.corpus("emotiontalk", "split")


def _read_manifest(path: Path, root: Path, wavs: _LazyWavs, reader: _Reader) -> None:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        reader.problems.append((str(path), f"unreadable manifest ({type(err).__name__})"))
        return
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            record = json.loads(line)
            sample_id, src = str(record["sample_id"]), str(record.get("src_audio") or "")
            emotion = str(record["benchmark_metadata"]["emotion"])
        except (ValueError, KeyError, TypeError) as err:
            reader.problems.append((where, f"not a manifest record ({type(err).__name__})"))
            continue
        stem = Path(src).stem if src else sample_id
        audio = root / src if src and (root / src).is_file() else wavs.get(stem) or wavs.get(sample_id)
        _add_emotiontalk(reader, where, sample_id, emotion, audio, root / src if src else root / stem,
                         _emotiontalk_speaker(sample_id))


def _annotation_records(root: Path, reader: _Reader) -> dict[str, tuple[Path, dict]]:
    """utterance stem -> (json file, record), one per utterance: the audio modality's where several exist."""
    chosen: dict[str, tuple[int, Path, dict]] = {}
    others = 0
    for path in sorted(p for p in root.rglob("*.json") if not p.name.startswith(".")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            reader.problems.append((str(path), f"unreadable json ({type(err).__name__})"))
            continue
        for record in data if isinstance(data, list) else [data]:
            if not (isinstance(record, dict) and "emotion_result" in record and "file_name" in record):
                continue  # another json (a config, a script): not an annotation
            stem = Path(str(record["file_name"])).stem
            rank = 0 if ("paragraphs" in record or "sourceAttr" in record
                         or "audio" in (p.lower() for p in path.relative_to(root).parts[:-1])) else 1
            if stem in chosen:
                others += 1
                if rank >= chosen[stem][0]:
                    continue
            chosen[stem] = (rank, path, record)
    if others:
        reader.problems.append((str(root), f"{others} annotation records of other modalities for utterances "
                                           "already annotated (the audio modality's label kept)"))
    return {stem: (path, record) for stem, (_, path, record) in chosen.items()}


def _add_emotiontalk(reader: _Reader, where: str, uid: str, emotion: str, audio: Path | None, expected: Path,
                     speaker: str) -> None:
    label = reader.label(where, emotion)
    if label is None:
        return
    split = emotiontalk_split(uid) or emotiontalk_split(str(expected))
    if split is None:
        reader.problems.append((where, f"no recording id (G#####) in {uid!r}: no split"))
    elif audio is None:
        reader.problems.append((str(expected), "missing wav (nor one of that name anywhere under the root)"))
    else:
        reader.add(Utterance(uid, audio, label, split, speaker=speaker))


# ---- IEMOCAP -----------------------------------------------------------------------------------------------

_IEMOCAP_LINE = re.compile(r"^\[\s*[\d.]+\s*-\s*[\d.]+\s*\]\s+(Ses\d\d[FM]_\S+)\s+(\S+)\s+\[")


def load_iemocap(root: str | Path) -> Corpus:
    """IEMOCAP's 4-class protocol from ``<root>/Session{1..5}`` (or ``<root>/IEMOCAP_full_release/...``):
    the categorical label of each line ``[6.2901 - 8.2357]\\tSes01F_impro01_F000\\tneu\\t[2.5, 2.5, 2.5]`` of
    ``dialog/EmoEvaluation/*.txt``, the wav at ``sentences/wav/<dialog>/<utterance>.wav``; group "Session{n}"."""
    root = _existing(root, "iemocap")
    if not any((root / f"Session{n}").is_dir() for n in range(1, 6)) and (root / "IEMOCAP_full_release").is_dir():
        root = root / "IEMOCAP_full_release"
    reader = _Reader(IEMOCAP_LABELS, FOUR_CLASSES)
    found = False
    for n in range(1, 6):
        session = root / f"Session{n}"
        folder = session / "dialog" / "EmoEvaluation"
        if not folder.is_dir():
            reader.problems.append((str(folder), "missing session folder (its utterances are absent)"))
            continue
        found = True
        for path in sorted(p for p in folder.glob("*.txt") if not p.name.startswith(".")):
            for utt, raw in _iemocap_lines(path, reader):
                if (label := reader.label(utt, raw)) is None:
                    continue
                wav = session / "sentences" / "wav" / utt.rsplit("_", 1)[0] / f"{utt}.wav"
                if not wav.is_file():
                    reader.problems.append((str(wav), "missing wav"))
                    continue
                speaker = utt[:5] + utt.rsplit("_", 1)[1][0]  # Ses01 + the speaker's gender: one actor
                reader.add(Utterance(utt, wav, label, f"Session{n}", speaker=speaker))
    if not found:
        raise UserError(f"{root}: no IEMOCAP sessions (Session1..5/dialog/EmoEvaluation) found")
    return reader.corpus("iemocap", "leave-one-session-out")


def _iemocap_lines(path: Path, reader: _Reader) -> list[tuple[str, str]]:
    """(utterance id, raw label) of each utterance line of an EmoEvaluation file."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as err:
        reader.problems.append((str(path), f"unreadable evaluation file ({type(err).__name__})"))
        return []
    return [(m.group(1), m.group(2)) for line in text.splitlines() if (m := _IEMOCAP_LINE.match(line))]


# ---- MSP-IMPROV --------------------------------------------------------------------------------------------

_MSP_LINE = re.compile(r"^\s*(?:UTD|MSP)-IMPROV-([A-Z0-9-]+)\.(?:avi|wav)\s*;\s*([^;]*);")
_MSP_SPEAKER = re.compile(r"^S\d\d[A-Z]-([FM](\d\d))-")  # S01A-F01-P-FM01: sentence 01 (target A), speaker F01


def load_msp_improv(root: str | Path) -> Corpus:
    """MSP-IMPROV's 4-class protocol. The format is taken from the release's documentation (and public
    readers of it), unverified here on the real files: ``Evalution.txt`` (sic; ``Evaluation.txt`` also
    accepted) holds one block per utterance whose first line is ``UTD-IMPROV-S01A-F01-P-FM01.avi; A;
    A:..; V:..; ...`` (file; consensus code; ...), then one line per rater (the raters' lines are not read).
    The audio is the wav whose stem is the id with ``UTD-`` replaced by ``MSP-``, anywhere under the root.

    In ``MSP-IMPROV-S01A-F01-P-FM01``, ``S01A`` is the target sentence and emotion and ``F01`` the actor:
    female, of session 01 - so the group is "S" + the actor's two digits ("S01".."S06"), not the sentence."""
    root = _existing(root, "msp-improv")
    evaluation = _find_file(root, ("Evalution.txt", "Evaluation.txt"))
    if evaluation is None:
        raise UserError(f"{root}: no Evalution.txt (or Evaluation.txt) of MSP-IMPROV found")
    reader = _Reader(MSP_IMPROV_LABELS, FOUR_CLASSES, lower=False)
    try:
        lines = evaluation.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as err:
        raise UserError(f"{evaluation}: unreadable ({type(err).__name__})") from err
    wavs = _LazyWavs(root)
    seen: set[str] = set()
    for line in lines:
        m = _MSP_LINE.match(line)
        if m is None or m.group(1) in seen:  # the first line of an utterance's block carries the consensus
            continue
        seen.add(m.group(1))
        uid = f"MSP-IMPROV-{m.group(1)}"
        if (label := reader.label(uid, m.group(2).strip().upper())) is None:
            continue
        speaker = _MSP_SPEAKER.match(m.group(1))
        if speaker is None:
            reader.problems.append((uid, "no actor (F01..M06) in the id: no session"))
        elif (audio := wavs.get(uid)) is None:
            reader.problems.append((f"{uid}.wav", "missing wav (none of that name under the root)"))
        else:
            reader.add(Utterance(uid, audio, label, f"S{speaker.group(2)}", speaker=speaker.group(1)))
    return reader.corpus("msp-improv", "leave-one-session-out")


# ---- SocioEmoDialog ----------------------------------------------------------------------------------------

def load_socioemodialog(root: str | Path, script_json: str = "", video_to_dialogue: str = "",
                        val_fraction: float = 0.05, test_fraction: float = 0.05, actor_map: str = "") -> Corpus:
    """The turns matched to a script line (dyadgen.data.socioemodialog.index_dataset), each the span of the
    turn in its speaker's own channel wav (``<v>_<side>.wav``, else the ``_mute`` one); the group is the split
    of its video, as preprocessing assigns it (same fractions and actor map give the same split)."""
    root = _existing(root, "socioemodialog")
    index = index_dataset(root, script_json=script_json, video_to_dialogue=video_to_dialogue)
    if not index.scripts:
        raise UserError(f"{script_json or root}: no SocioEmoDialog script json (without one no turn has a label)")
    splitter = Splitter(val_fraction, test_fraction, actor_map)
    reader = _Reader(SOCIOEMODIALOG_LABELS, SOCIOEMODIALOG_CLASSES)
    reader.problems += index.problems
    for video in index.videos:
        turns = [t for t in video.turns if t.utterance_id]
        if not turns:
            continue
        try:
            split = splitter(video.name, video.dialogue_id)
        except UserError as err:
            reader.problems.append((str(video.folder), str(err)))
            continue
        for turn in turns:
            if (label := reader.label(turn.utterance_id, turn.emotion)) is None:
                continue
            plain = video.folder / f"{video.name}_{turn.side}.wav"
            audio = plain if plain.is_file() else video.channel_wavs.get(turn.side)
            if audio is None:
                reader.problems.append((str(plain), "missing channel wav"))
            elif turn.end <= turn.start:
                reader.problems.append((turn.utterance_id, f"empty turn {turn.start:.3f}-{turn.end:.3f} s"))
            else:
                reader.add(Utterance(turn.utterance_id, audio, label, split, turn.start, turn.end,
                                     f"{video.name}:{turn.side}"))
    return reader.corpus("socioemodialog", "split")


# ---- entry point -------------------------------------------------------------------------------------------

LOADERS: dict[str, Callable[..., Corpus]] = {
    "emotiontalk": load_emotiontalk, "iemocap": load_iemocap, "msp-improv": load_msp_improv,
    "socioemodialog": load_socioemodialog,
}


def _find_file(root: Path, names: tuple[str, ...]) -> Path | None:
    """The first of ``names`` at the root, else the first found below it (sorted)."""
    for name in names:
        if (root / name).is_file():
            return root / name
    for name in names:
        below = sorted(p for p in root.rglob(name) if p.is_file())
        if below:
            return below[0]
    return None


def _existing(root: str | Path, name: str) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: no such folder (the {name} dataset root)")
    return root


def load_corpus(name: str, root: str | Path, **kwargs) -> Corpus:
    """The corpus ``name`` (emotiontalk, iemocap, msp-improv, socioemodialog) from its published files under
    ``root``; kwargs go to its loader (emotiontalk: manifest; socioemodialog: script_json, video_to_dialogue,
    val_fraction, test_fraction, actor_map)."""
    if name not in LOADERS:
        raise UserError(f"{name}: unknown emotion corpus (one of {', '.join(LOADERS)})")
    return LOADERS[name](root, **kwargs)
