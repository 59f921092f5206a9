"""`dyadgen prepare-raw`: a raw side-by-side video with a stereo track becomes SocioEmoDialog's layout
exactly as its tools write it, with turns from the ASR json when given and from voice activity otherwise."""

import json
import shutil

import numpy as np
import pytest

from dyadgen.cli import main
from dyadgen.clock import SAMPLES_PER_FRAME
from dyadgen.data import index_dataset
from dyadgen.data.layout import parse_log
from dyadgen.data.synthetic import synthesize
from dyadgen.io.audio import load_audio, read_audio
from dyadgen.media import read_span

NAME = "990101_000_synth"


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return synthesize(tmp_path_factory.mktemp("raw_src"), 1, seed=3, use_espeak=False, progress=False)


def test_turns_from_voice_activity_match_who_speaks(synth, tmp_path, capsys):
    raw = tmp_path / "raw"
    raw.mkdir()
    shutil.copy(synth / f"{NAME}.mp4", raw)
    assert main(["prepare-raw", "--raw", str(raw), "--out", str(tmp_path / "out")]) == 0
    assert "turns from ASR json: 0, from voice activity: 1" in capsys.readouterr().out
    out = tmp_path / "out"
    assert (out / f"{NAME}.mp4").is_file() and (out / NAME).is_dir()  # the copy beside its folder, as theirs
    index = index_dataset(out)
    assert not index.problems and len(index.videos) == 1
    video = index.videos[0]
    truth = np.load(synth / NAME / "ground_truth.npz")["speaking"]  # [P,T]
    assert len(video.turns) >= 4
    for turn in video.turns:
        f0, f1 = round(turn.start * 25), round(turn.end * 25)
        assert truth[("left", "right").index(turn.side), f0:f1].mean() > 0.8  # the detected speaker speaks there
        seg, rate = read_audio(video.segment_wav(turn))
        assert rate == 48000 and abs(seg.shape[1] - (f1 - f0) * 1920) <= 48  # the source rate, the turn's length
    left_log = parse_log(video.folder / f"{NAME}_left_speaker_diarization.log")
    assert len(video.clips) == len(left_log)  # a clip per line of the left log, either speaker
    for clip in video.clips:
        span = read_span(clip.path, clip.start, clip.end, origin=clip.start)
        assert span.first == round(clip.start * 25) and len(span.frames) == round(clip.end * 25) - span.first
    # the mute wav keeps the person's own turns and silences the partner's (speaker-1) segments
    mute = load_audio(video.folder / f"{NAME}_left_mute.wav")
    solo_right = truth[1] & ~truth[0]
    t = int(np.flatnonzero(solo_right)[len(np.flatnonzero(solo_right)) // 2])
    assert np.abs(mute[t * SAMPLES_PER_FRAME:(t + 1) * SAMPLES_PER_FRAME]).max() == 0.0

    assert main(["prepare-raw", "--raw", str(raw), "--out", str(tmp_path / "out")]) == 0
    assert "1 already done" in capsys.readouterr().out


def test_turns_from_the_asr_json_and_a_corrupt_video_is_skipped(synth, tmp_path, capsys):
    raw = tmp_path / "raw"
    raw.mkdir()
    shutil.copy(synth / f"{NAME}.mp4", raw)
    for side in ("left", "right"):
        shutil.copy(synth / NAME / f"{NAME}_{side}_speaker_diarization_asr.json", raw)
    (raw / "broken.mp4").write_bytes(b"not a video at all")
    assert main(["prepare-raw", "--raw", str(raw), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "turns from ASR json: 1" in out and "skipped 1" in out and "broken.mp4" in out
    shutil.copy(synth / "script.json", tmp_path / "out")
    index = index_dataset(tmp_path / "out")
    published = index_dataset(synth)
    turns = [(t.side, t.number, t.asr, round(t.start, 2), t.utterance_id) for t in index.videos[0].turns]
    assert turns == [(t.side, t.number, t.asr, round(t.start, 2), t.utterance_id) for t in published.videos[0].turns]
    for side in ("left", "right"):  # their ASR json schema, numbered per side
        asr = json.loads((tmp_path / "out" / NAME / f"{NAME}_{side}_speaker_diarization_asr.json").read_text())
        assert [e["idx"] for e in asr] == list(range(len(asr))) and all(e["asr_flag"] for e in asr)
    assert not list((tmp_path / "out").glob(".*"))  # nothing half-written is left
