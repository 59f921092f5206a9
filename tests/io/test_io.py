"""Audio and video files: resampling, one-line errors that name the file, streaming mp4 with stereo audio."""

import av
import numpy as np
import pytest
import soundfile as sf

from dyadgen.errors import UserError
from dyadgen.io.audio import load_audio, load_stereo, write_wav
from dyadgen.io.video import VideoWriter, probe_video


def tone(seconds, sr, hz=440.0):
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def test_any_sample_rate_is_resampled_to_16k(tmp_path):
    sf.write(tmp_path / "a.wav", tone(2.0, 44100), 44100)
    sf.write(tmp_path / "a.flac", tone(1.5, 22050), 22050)
    for name, seconds in (("a.wav", 2.0), ("a.flac", 1.5)):
        audio = load_audio(tmp_path / name)
        assert audio.shape == (int(seconds * 16000),)  # the same duration on the 16 kHz clock
        spectrum = np.abs(np.fft.rfft(audio))
        assert np.fft.rfftfreq(len(audio), 1 / 16000)[spectrum.argmax()] == pytest.approx(440.0, abs=1.0)
        assert np.abs(audio).max() == pytest.approx(0.3, abs=0.01)  # the same tone, not sped up or scaled


@pytest.mark.parametrize("case", ["missing", "empty", "not_audio", "stereo", "folder"])
def test_bad_audio_gives_one_line_naming_the_file(tmp_path, case):
    path = tmp_path / "x.wav"
    if case == "empty":
        path.write_bytes(b"")
    elif case == "not_audio":
        path.write_text("this is not a sound file\n" * 50)
    elif case == "stereo":
        sf.write(path, np.stack([tone(1, 16000), tone(1, 16000)], 1), 16000)
    elif case == "folder":
        path.mkdir()
    with pytest.raises(UserError) as err:
        load_audio(path)
    message = str(err.value)
    assert str(path) in message and "\n" not in message
    expected = {"missing": "not found", "empty": "empty", "not_audio": "not", "stereo": "2 channels",
                "folder": "folder"}[case]
    assert expected in message


def test_stereo_channels_keep_their_sides(tmp_path):
    left, right = tone(1, 16000, 300), np.zeros(16000, np.float32)
    write_wav(tmp_path / "s.wav", np.stack([left, right]), 16000)
    both = load_stereo(tmp_path / "s.wav")
    assert both.shape == (2, 16000)
    assert np.abs(both[0]).mean() > 0.1 and np.abs(both[1]).max() < 1e-3
    with pytest.raises(UserError, match="expected a stereo file"):
        load_stereo(write_mono(tmp_path))


def write_mono(tmp_path):
    write_wav(tmp_path / "m.wav", tone(0.5, 16000), 16000)
    return tmp_path / "m.wav"


def test_video_writer_streams_h264_with_stereo_audio(tmp_path):
    sr = 16000
    audio = np.stack([tone(2.0, sr, 500), np.zeros(2 * sr, np.float32)])  # left speaks, right silent
    out = tmp_path / "v.mp4"
    with VideoWriter(out, width=64, height=48, audio=audio) as writer:
        for i in range(50):
            writer.write(np.full((48, 64, 3), i * 5, np.uint8))
        assert not out.exists()  # written under a temporary name until closed
    info = probe_video(out)
    assert (info.width, info.height, info.num_frames, info.fps) == (64, 48, 50, 25.0)
    assert info.audio_channels == 2
    with av.open(str(out)) as box:
        assert box.streams.video[0].codec_context.name == "h264"
        assert box.streams.video[0].codec_context.pix_fmt == "yuv420p"
    decoded = load_stereo(out)
    assert np.abs(decoded[0]).mean() > 0.05 and np.abs(decoded[1]).mean() < 0.01


def test_failed_write_leaves_no_file(tmp_path):
    out = tmp_path / "v.mp4"
    with pytest.raises(RuntimeError):
        with VideoWriter(out, width=32, height=32) as writer:
            writer.write(np.zeros((32, 32, 3), np.uint8))
            raise RuntimeError("generation failed")
    assert list(tmp_path.iterdir()) == []
