"""The synthetic corpus: SocioEmoDialog's layout as its tools write it, read back by the same index and
reader, with ground truth that says who talks, who listens, and when the listener nods."""

import json

import numpy as np
import pytest

from dyadgen.cli import main
from dyadgen.data.emotions import EMOTIONS
from dyadgen.data.socioemodialog import index_dataset
from dyadgen.data.synthetic import NOD_LAG, synthesize
from dyadgen.media import crop_people, read_span


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return synthesize(tmp_path_factory.mktemp("synth"), 1, seed=3, use_espeak=False, progress=False)


def test_published_layout(corpus):
    name = "990101_000_synth"
    folder = corpus / name
    assert (corpus / f"{name}.mp4").is_file()  # the raw video lies beside its folder
    for f in [f"{name}_left.wav", f"{name}_right.wav", f"{name}_left_mute.wav", f"{name}_right_mute.wav",
              f"{name}_left_speaker_diarization.log", f"{name}_right_speaker_diarization.log",
              f"{name}_left_speaker_diarization_asr.json", f"{name}_right_speaker_diarization_asr.json"]:
        assert (folder / f).is_file(), f
    clips = sorted((folder / "video_segments").glob("*.mp4"))
    assert clips and [c.stem for c in clips] == [f"{i:06d}" for i in range(len(clips))]
    script = json.loads((corpus / "script.json").read_text())["990101_000"]
    assert script["num_utterances"] == len(script["utterances"]) == len(clips)  # both people's turns
    assert [u["speaker_id"] for u in script["utterances"]][:2] == [0, 1]  # the first speaker is speaker 0
    assert all(u["emotion_label"] in EMOTIONS for u in script["utterances"])
    asr = json.loads((folder / f"{name}_left_speaker_diarization_asr.json").read_text())
    assert set(asr[0]) == {"idx", "start", "end", "asr", "asr_flag"} and asr[0]["start"].count(":") == 2
    left_turns, right_turns = (len(list((folder / f"wav_{s}_segments").glob("*.wav"))) for s in ("left", "right"))
    assert left_turns == len(asr) and left_turns + right_turns == len(clips)  # each side numbers its own


def test_index_pairs_turns_with_script_lines(corpus):
    index = index_dataset(corpus)
    assert not index.problems and len(index.videos) == 1
    video = index.videos[0]
    assert video.dialogue_id == "990101_000" and video.raw_video == corpus / "990101_000_synth.mp4"
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
    clip = index_dataset(corpus).videos[0].clips[1]
    span = read_span(clip.path, clip.start, clip.end, origin=clip.start)
    people, _ = crop_people(span.frames, (128, 112))
    P, T = people.shape[:2]
    assert P == 2 and people.shape[2:] == (3, 128, 112) and span.audio.shape == (2, T * 640)
    assert not np.array_equal(people[0, 0], people[1, 0])  # two different people


def test_synth_command_is_resumable(tmp_path, capsys):
    args = ["synth", "--out", str(tmp_path), "--dialogues", "1", "--seed", "3", "--no-espeak"]
    assert main(args) == 0
    first = (tmp_path / "990101_000_synth.mp4").stat().st_mtime_ns
    assert main(args) == 0  # a finished dialogue is not written again
    assert (tmp_path / "990101_000_synth.mp4").stat().st_mtime_ns == first
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
    assert stats["dialogues"] == stats["matched_dialogues"] == 1 and stats["videos"] == 1 and stats["hours"] > 0
    assert stats["utterances"] == len(script["utterances"]) == stats["turns"]  # the turns come from the logs
    assert sum(stats["utterances_per_emotion"].values()) == stats["utterances"]
    assert len(stats["utterances_per_emotion"]) >= 19
    right = len(list((root / "990101_000_synth" / "wav_right_segments").glob("*.wav")))
    # the right side's ASR json is gone: its turns between two text-matched left turns are labelled by order,
    # the rest stay unknown
    assert stats["unmatched_turns"] + stats["order_matched_turns"] == right and stats["order_matched_turns"] > 0
    assert stats["text_matched_turns"] == stats["turns"] - right
    reasons = {s["file"].split("/")[-1]: s["reason"] for s in stats["skipped"]}
    assert reasons["990101_000_synth_right_speaker_diarization_asr.json"] == "missing ASR json"
    assert "no video" in reasons["990101_999_synth"]
    assert "skipped" in capsys.readouterr().out


def _speaker_folder(root, name: str, hz: float, seconds: list[float]):
    """A folder of one 'speaker': tone bursts at ``hz`` with an amplitude envelope, one file per length."""
    from dyadgen.io.audio import write_wav

    folder = root / name
    folder.mkdir()
    for i, s in enumerate(seconds):
        t = np.arange(int(s * 16000)) / 16000
        write_wav(folder / f"{i}.wav", (0.5 * np.sin(2 * np.pi * hz * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t)))
                  .astype(np.float32))
    return folder


def test_real_voices_speak_in_the_corpus_and_drive_its_truth(tmp_path):
    from dyadgen.data.synthetic import RealVoices, synthetic_video
    from dyadgen.data.voices import Recorded

    speakers = (Recorded.from_folder(_speaker_folder(tmp_path, "low", 150.0, [1.0, 1.5])),
                Recorded.from_folder(_speaker_folder(tmp_path, "high", 400.0, [1.2, 2.0])))
    plain = synthetic_video("v", 5, 1, use_espeak=False)
    real = synthetic_video("v", 5, 1, use_espeak=False, real=RealVoices(speakers, share=1.0))
    assert (plain.frames.shape[1:], plain.truth["speaking"].any(1).all()) == (real.frames.shape[1:], True)
    # each person now speaks with one recorded speaker's tone, two people never the same one
    heard = []
    for p in range(2):
        spectrum = np.abs(np.fft.rfft(real.clean[p])) ** 2
        hz = np.fft.rfftfreq(real.clean.shape[1], 1 / 16000)
        low, high = (spectrum[np.abs(hz - f) < 30].sum() for f in (150, 400))
        heard.append("low" if low > 100 * high else "high" if high > 100 * low else "both")
    assert sorted(heard) == ["high", "low"]
    # the truth follows the recordings: the mouth moves while the recording plays, and only then
    for p in range(2):
        speaking = real.truth["speaking"][p]
        assert real.truth["mouth"][p][speaking].mean() > 0.2 and real.truth["mouth"][p][~speaking].max() == 0
    # without real voices the corpus is the one it always was (the speakers draw from their own stream)
    again = synthetic_video("v", 5, 1, use_espeak=False, real=RealVoices((), share=1.0))
    assert np.array_equal(again.clean, plain.clean)


def test_syllable_recordings_are_strung_into_utterances(tmp_path):
    from dyadgen.data.voices import Recorded, Voice, speak

    speaker = Recorded.from_folder(_speaker_folder(tmp_path, "syllables", 220.0, [0.3] * 6))
    assert speaker.syllables
    rng = np.random.default_rng(0)
    lengths = [len(speak("", Voice(50, 160, 150.0, recorded=speaker), rng)) / 16000 for _ in range(20)]
    assert min(lengths) >= 0.85 and max(lengths) > 1.5  # 3-9 syllables of 0.3 s each, not one


def test_synth_names_a_folder_without_recordings(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    args = ["synth", "--out", str(tmp_path / "c"), "--dialogues", "1", "--no-espeak",
            "--voices", str(tmp_path / "empty")]
    assert main(args) != 0
    err = capsys.readouterr().err
    assert "empty: holds no audio files" in err and len(err.strip().splitlines()) == 1
