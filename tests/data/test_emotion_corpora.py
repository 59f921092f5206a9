"""The speech-emotion corpora read from tiny trees in each dataset's published format: labels normalised,
splits and sessions as the protocols define them, missing files and out-of-class labels listed, not fatal."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dyadgen.data.emotion_corpora import (
    EMOTIONTALK_CLASSES,
    FOUR_CLASSES,
    SOCIOEMODIALOG_CLASSES,
    emotiontalk_split,
    load_corpus,
)
from dyadgen.errors import UserError


def wav(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(3200, np.float32), 16000)  # 0.2 s at 16 kHz
    return path


def by_id(corpus) -> dict:
    return {u.id: u for u in corpus.utterances}


def reasons(corpus) -> str:
    return "\n".join(f"{item}: {reason}" for item, reason in corpus.skipped)


def test_emotiontalk_split_by_recording_id():
    assert emotiontalk_split("G00001_02_03_004") == emotiontalk_split("G00012_01_01_001") == "val"
    assert emotiontalk_split("G00003_01_01_001") == emotiontalk_split("a/G00015/x") == "test"
    assert emotiontalk_split("G00002_01_07_001") == emotiontalk_split("G00120_01_07_001") == "train"
    assert emotiontalk_split("no_id") is None


def test_emotiontalk_manifest(tmp_path):
    records = [("G00001_01_01_001", "happy"), ("G00003_01_02_001", "anger"), ("G00002_01_07_001", "Neutral"),
               ("G00015_01_01_002", "sad"), ("G00004_01_01_001", "fear"), ("G00005_01_01_001", "bored")]
    wav(tmp_path / "emotiontalk/audio/zh/G00001_01_01_001.wav")
    wav(tmp_path / "emotiontalk/audio/zh/G00003_01_02_001.wav")
    wav(tmp_path / "elsewhere/G00002_01_07_001.wav")  # not at src_audio: found by its stem
    wav(tmp_path / "emotiontalk/audio/zh/G00015_01_01_002.wav")
    wav(tmp_path / "emotiontalk/audio/zh/G00005_01_01_001.wav")  # G00004's wav is missing
    lines = [json.dumps({"dataset_id": "emotiontalk", "sample_id": s, "src_audio": f"emotiontalk/audio/zh/{s}.wav",
                         "benchmark_metadata": {"context": "short", "emotion": e, "dataset_type": "emotion"}})
             for s, e in records]
    (tmp_path / "test.jsonl").write_text("\n".join(lines) + "\n{not json\n")
    corpus = load_corpus("emotiontalk", tmp_path)
    u = by_id(corpus)
    assert corpus.protocol == "split" and corpus.classes == EMOTIONTALK_CLASSES
    assert {k: (v.label, v.group) for k, v in u.items()} == {
        "G00001_01_01_001": ("happy", "val"), "G00003_01_02_001": ("angry", "test"),
        "G00002_01_07_001": ("neutral", "train"), "G00015_01_01_002": ("sad", "test")}
    assert u["G00002_01_07_001"].audio == tmp_path / "elsewhere/G00002_01_07_001.wav"
    assert u["G00002_01_07_001"].speaker == "07"
    text = reasons(corpus)
    assert "G00004_01_01_001.wav: missing wav" in text
    assert "label bored outside the 7 classes" in text
    assert "test.jsonl:7: not a manifest record" in text


def test_emotiontalk_annotations(tmp_path):
    def annotation(folder: str, stem: str, emotion: str, **extra) -> None:
        path = tmp_path / folder / f"{stem}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {"data": {"A": {"emotion": emotion}}, "speaker_id": stem.split("_")[2], "emotion_result": emotion,
                  "content": "你好", "file_name": f"{stem[:6]}/{stem[:9]}/{stem[:12]}/{stem}.mp4", **extra}
        path.write_text(json.dumps(record, ensure_ascii=False))

    for stem, emotion in [("G00002_01_07_001", "anger"), ("G00012_01_03_001", "surprise"),
                          ("G00003_02_01_004", "disgust"), ("G00002_01_07_002", "happy")]:
        annotation("Audio/json", stem, emotion, paragraphs=[], sourceAttr="")
    annotation("Video/json", "G00002_01_07_001", "sad")  # another modality's label: not the speech one
    for stem in ["G00002_01_07_001", "G00012_01_03_001", "G00003_02_01_004"]:  # G00002_01_07_002 has no wav
        wav(tmp_path / "Audio/wav" / stem[:6] / f"{stem}.wav")
    (tmp_path / "broken.json").write_text("{")
    corpus = load_corpus("emotiontalk", tmp_path)
    u = by_id(corpus)
    assert {k: (v.label, v.group, v.speaker) for k, v in u.items()} == {
        "G00002_01_07_001": ("angry", "train", "07"), "G00012_01_03_001": ("surprise", "val", "03"),
        "G00003_02_01_004": ("disgust", "test", "01")}
    assert all(v.audio.is_file() and v.start == 0.0 and v.end is None for v in u.values())
    text = reasons(corpus)
    assert "G00002_01_07_002: missing wav" in text and "broken.json: unreadable json" in text


def iemocap_tree(root: Path) -> None:
    sessions = {1: [("Ses01F_impro01_F000", "neu"), ("Ses01F_impro01_M000", "exc"), ("Ses01F_impro01_F001", "fru"),
                    ("Ses01F_impro01_M001", "ang")],
                2: [("Ses02M_script01_1_F000", "hap"), ("Ses02M_script01_1_M000", "sad"),
                    ("Ses02M_script01_1_M001", "xxx")]}
    for n, utterances in sessions.items():
        session = root / f"Session{n}"
        by_dialog: dict[str, list[str]] = {}
        for utt, label in utterances:
            dialog = utt.rsplit("_", 1)[0]
            by_dialog.setdefault(dialog, []).append(f"[6.2901 - 8.2357]\t{utt}\t{label}\t[2.5000, 2.5000, 2.5000]\n"
                                                    f"C-E2:\tNeutral;\t()\nA-E3:\tval 3; act 2; dom  2;\t()\n")
            if utt != "Ses01F_impro01_M001":  # its wav is missing
                wav(session / "sentences/wav" / dialog / f"{utt}.wav")
        for dialog, blocks in by_dialog.items():
            path = session / "dialog/EmoEvaluation" / f"{dialog}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n" + "\n".join(blocks))
        (session / "dialog/EmoEvaluation/Categorical").mkdir()


def test_iemocap(tmp_path):
    iemocap_tree(tmp_path / "IEMOCAP_full_release")
    corpus = load_corpus("iemocap", tmp_path)  # the parent of IEMOCAP_full_release is accepted
    u = by_id(corpus)
    assert corpus.protocol == "leave-one-session-out" and corpus.classes == FOUR_CLASSES
    assert {k: (v.label, v.group) for k, v in u.items()} == {
        "Ses01F_impro01_F000": ("neutral", "Session1"), "Ses01F_impro01_M000": ("happy", "Session1"),  # exc
        "Ses02M_script01_1_F000": ("happy", "Session2"), "Ses02M_script01_1_M000": ("sad", "Session2")}
    assert u["Ses01F_impro01_M000"].speaker == "Ses01M" and u["Ses02M_script01_1_F000"].speaker == "Ses02F"
    assert u["Ses02M_script01_1_F000"].audio.is_file()
    text = reasons(corpus)
    assert "Ses01F_impro01_M001.wav: missing wav" in text
    assert "Ses01F_impro01_F001: label fru outside the 4 classes" in text and "label xxx" in text
    assert "Session3" in text  # absent sessions are named
    dropped = [i for i, (_, r) in enumerate(corpus.skipped) if r.startswith("label")]
    assert dropped == list(range(len(corpus.skipped) - 2, len(corpus.skipped)))  # file problems listed first
    assert by_id(load_corpus("iemocap", tmp_path / "IEMOCAP_full_release")).keys() == u.keys()


def test_msp_improv(tmp_path):
    blocks = [("S01A-F01-P-FM01", "A"), ("S02H-M01-S-FM01", "H"), ("S03S-F03-R-FM03", "S"),
              ("S04N-M06-T-MF06", "N"), ("S05A-F02-P-FM02", "O"), ("S06H-M02-P-MF02", "N")]
    text = "".join(f"UTD-IMPROV-{i}.avi; {c}; A:2.000000; V:3.000000; D:3.000000 ; N:4.000000;\n"
                   f"rater_1; Angry; Angry; A:2.000000; V:3.000000; D:3.000000; N:4.000000;\n\n" for i, c in blocks)
    (tmp_path / "Evalution.txt").write_text(text)
    for i, _ in blocks[:5]:  # S06H-M02-P-MF02 has no wav
        wav(tmp_path / f"session{i[6]}" / i[:4] / i[9] / f"MSP-IMPROV-{i}.wav")
    corpus = load_corpus("msp-improv", tmp_path)
    u = by_id(corpus)
    assert corpus.protocol == "leave-one-session-out" and corpus.classes == FOUR_CLASSES
    assert {k: (v.label, v.group, v.speaker) for k, v in u.items()} == {
        "MSP-IMPROV-S01A-F01-P-FM01": ("angry", "S01", "F01"), "MSP-IMPROV-S02H-M01-S-FM01": ("happy", "S01", "M01"),
        "MSP-IMPROV-S03S-F03-R-FM03": ("sad", "S03", "F03"), "MSP-IMPROV-S04N-M06-T-MF06": ("neutral", "S06", "M06")}
    text = reasons(corpus)
    assert "MSP-IMPROV-S06H-M02-P-MF02.wav: missing wav" in text
    assert "MSP-IMPROV-S05A-F02-P-FM02: label O outside the 4 classes" in text
    (tmp_path / "Evalution.txt").rename(tmp_path / "Evaluation.txt")
    assert by_id(load_corpus("msp-improv", tmp_path)).keys() == u.keys()


def test_socioemodialog_turns(tmp_path):
    from dyadgen.data.socioemodialog import index_dataset
    from dyadgen.data.synthetic import synthesize

    root = synthesize(tmp_path / "synth", 1, seed=3, use_espeak=False, progress=False)
    corpus = load_corpus("socioemodialog", root)
    labelled = [t for v in index_dataset(root).videos for t in v.turns if t.utterance_id]
    assert labelled and len(corpus.utterances) == len(labelled) and not corpus.skipped
    assert corpus.protocol == "split" and len(corpus.classes) == 19 and "other" in corpus.classes
    assert corpus.classes == SOCIOEMODIALOG_CLASSES
    for u, turn in zip(corpus.utterances, labelled, strict=True):
        assert u.id == turn.utterance_id and u.label == turn.emotion.lower() and u.label in corpus.classes
        assert u.start == turn.start < u.end == turn.end and u.audio.is_file()
        assert u.audio.name == f"990101_000_synth_{turn.side}.wav" and u.group in {"train", "val", "test"}


def test_bad_roots(tmp_path):
    with pytest.raises(UserError, match="no_such"):
        load_corpus("iemocap", tmp_path / "no_such")
    with pytest.raises(UserError, match="unknown emotion corpus"):
        load_corpus("ravdess", tmp_path)
    for name in ("emotiontalk", "iemocap", "msp-improv"):
        with pytest.raises(UserError, match=str(tmp_path)):
            load_corpus(name, tmp_path)  # an empty folder holds none of the dataset's label files
