"""`dyadgen prepare-raw`: a raw side-by-side video with a stereo track becomes the processed layout that
the index reads, with turns from the ASR json when given and from voice activity otherwise."""

import shutil

import numpy as np
import pytest

from dyadgen.cli import main
from dyadgen.clock import SAMPLES_PER_FRAME
from dyadgen.data.clips import decode_frames
from dyadgen.data.socioemodialog import index_dataset
from dyadgen.data.synthetic import synthesize
from dyadgen.io.audio import load_audio

NAME = "990101_000_synth"


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return synthesize(tmp_path_factory.mktemp("raw_src"), 1, seed=3, use_espeak=False, progress=False) / NAME


def test_turns_from_voice_activity_match_who_speaks(synth, tmp_path, capsys):
    raw = tmp_path / "raw"
    raw.mkdir()
    shutil.copy(synth / f"{NAME}.mp4", raw)
    assert main(["prepare-raw", "--raw", str(raw), "--out", str(tmp_path / "out")]) == 0
    assert "turns from ASR json: 0, from voice activity: 1" in capsys.readouterr().out
    index = index_dataset(tmp_path / "out")
    assert not index.problems and len(index.videos) == 1
    video = index.videos[0]
    truth = np.load(synth / "ground_truth.npz")["speaking"]  # [P,T]
    assert len(video.turns) >= 4
    for turn, clip in zip(video.turns, video.clips, strict=True):
        f0, f1 = round(turn.start * 25), round(turn.end * 25)
        p = 0 if turn.side == "left" else 1
        assert truth[p, f0:f1].mean() > 0.8  # the detected speaker really speaks there
        frames = decode_frames(clip)
        assert len(frames) == f1 - f0  # a frame-accurate cut, not a keyframe copy
        seg = load_audio(video.folder / f"wav_{turn.side}_segments" / f"{clip.stem}.wav")
        assert len(seg) == len(frames) * SAMPLES_PER_FRAME
    # the mute wav keeps the person's own turns and silences the partner's solo turns
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
        shutil.copy(synth / f"{NAME}_{side}_speaker_diarization_asr.json", raw)
    (raw / "broken.mp4").write_bytes(b"not a video at all")
    assert main(["prepare-raw", "--raw", str(raw), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "turns from ASR json: 1" in out and "skipped 1" in out and "broken.mp4" in out
    index = index_dataset(tmp_path / "out")
    published = index_dataset(synth.parent)
    turns = [(t.side, t.asr, round(t.start, 2)) for t in index.videos[0].turns]
    assert turns == [(t.side, t.asr, round(t.start, 2)) for t in published.videos[0].turns]
    assert not list((tmp_path / "out").glob(".*"))  # nothing half-written is left
