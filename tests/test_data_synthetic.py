"""The synthetic corpus: SocioEmoDialog's published layout, read back by the same index and reader,
with ground truth that says who talks, who listens, and when the listener nods."""

import json

import numpy as np
import pytest

from dyadgen.cli import main
from dyadgen.data import read_turn
from dyadgen.data.emotions import EMOTIONS
from dyadgen.data.socioemodialog import index_dataset
from dyadgen.data.synthetic import NOD_LAG, synthesize


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return synthesize(tmp_path_factory.mktemp("synth"), 1, seed=3, use_espeak=False, progress=False)


def test_published_layout(corpus):
    name = "990101_000_synth"
    folder = corpus / name
    for f in [f"{name}.mp4", f"{name}_left.wav", f"{name}_right.wav", f"{name}_left_mute.wav",
              f"{name}_right_mute.wav", f"{name}_left_speaker_diarization.log",
              f"{name}_left_speaker_diarization_asr.json", f"{name}_right_speaker_diarization_asr.json"]:
        assert (folder / f).is_file(), f
    clips = sorted((folder / "video_segments").glob("*.mp4"))
    assert clips and [c.stem for c in clips] == [f"{i:06d}" for i in range(len(clips))]
    assert len(list((folder / "wav_left_segments").glob("*.wav"))) == len(clips)
    asr = json.loads((folder / f"{name}_left_speaker_diarization_asr.json").read_text())
    assert set(asr[0]) == {"idx", "start", "end", "asr", "asr_flag"} and asr[0]["start"].count(":") == 2
    script = json.loads((corpus / "script.json").read_text())["990101_000"]
    assert script["num_utterances"] == len(script["utterances"]) == len(clips)
    assert all(u["emotion_label"] in EMOTIONS and u["speaker_id"] in (0, 1) for u in script["utterances"])


def test_index_pairs_turns_with_script_lines(corpus):
    index = index_dataset(corpus)
    assert not index.problems and len(index.videos) == 1
    video = index.videos[0]
    assert video.dialogue_id == "990101_000" and video.raw_video is not None
    assert all(t.score == 1.0 and t.emotion in EMOTIONS for t in video.turns)
    assert video.channel_wavs["left"].name.endswith("_left_mute.wav")


def test_ground_truth_talking_and_listening(corpus):
    truth = np.load(corpus / "990101_000_synth" / "ground_truth.npz")
    mouth, speaking, nod = truth["mouth"], truth["speaking"], truth["nod"]
    assert mouth.shape == speaking.shape == nod.shape and mouth.shape[0] == 2
    assert np.all(mouth[~speaking] == 0)  # a listener's mouth stays closed
    assert (mouth[speaking] > 0).mean() > 0.5  # a speaker's mouth moves
    assert np.all(nod[speaking] == 0)  # speakers do not nod
    # the listener nods NOD_LAG frames after the partner starts a turn (when not speaking then)
    starts = [t for t in range(1, speaking.shape[1]) if speaking[1, t] and not speaking[1, t - 1]]
    lagged = [nod[0, t + NOD_LAG + 3] > 0 for t in starts if not speaking[0, t: t + NOD_LAG + 8].any()]
    assert lagged and all(lagged)


def test_turn_clip_reads_back_as_two_people(corpus):
    folder = corpus / "990101_000_synth"
    turn = read_turn(folder / "video_segments/000001.mp4", folder / "wav_left_segments/000001.wav",
                     folder / "wav_right_segments/000001.wav", size=(128, 112))
    P, T = turn.frames.shape[:2]
    assert P == 2 and turn.frames.shape[2:] == (3, 128, 112) and turn.audio.shape == (2, T * 640)
    assert not np.array_equal(turn.frames[0, 0], turn.frames[1, 0])  # two different people


def test_synth_command_is_resumable(tmp_path, capsys):
    args = ["synth", "--out", str(tmp_path), "--dialogues", "1", "--seed", "3", "--no-espeak"]
    assert main(args) == 0
    first = (tmp_path / "990101_000_synth" / "990101_000_synth.mp4").stat().st_mtime_ns
    assert main(args) == 0  # a finished dialogue is not written again
    assert (tmp_path / "990101_000_synth" / "990101_000_synth.mp4").stat().st_mtime_ns == first
    assert "wrote 1 dialogues" in capsys.readouterr().out


def test_dataset_stats_counts_and_lists_skipped_files(corpus, tmp_path, capsys):
    import shutil

    root = tmp_path / "root"
    shutil.copytree(corpus, root)
    (root / "990101_000_synth" / "990101_000_synth_right_speaker_diarization_asr.json").unlink()
    broken = root / "990101_999_synth"
    broken.mkdir()
    assert main(["dataset-stats", str(root), "--json", str(tmp_path / "s.json")]) == 0
    stats = json.loads((tmp_path / "s.json").read_text())
    script = json.loads((root / "script.json").read_text())["990101_000"]
    assert stats["dialogues"] == 1 and stats["videos"] == 1 and stats["hours"] > 0
    assert stats["utterances"] == len(script["utterances"])
    assert sum(stats["emotions"].values()) == stats["utterances"] and len(stats["emotions"]) >= 19
    left_turns = sum(u["speaker_id"] == 0 for u in script["utterances"])
    assert stats["turns"] == left_turns  # the right side's ASR json is gone
    reasons = {s["file"].split("/")[-1]: s["reason"] for s in stats["skipped"]}
    assert reasons["990101_000_synth_right_speaker_diarization_asr.json"] == "missing ASR json"
    assert "no video" in reasons["990101_999_synth"]
    assert "skipped" in capsys.readouterr().out
