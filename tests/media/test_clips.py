"""Clip decoding: two people from one frame, 25 fps from any source, turn clips cut by stream copy
(keyframe pre-roll) read by their own timestamps exactly like the raw video, corrupt files."""

import shutil
import subprocess

import numpy as np
import pytest

from dyadgen.io.video import VideoWriter, stream_copy_cut
from dyadgen.media import crop_people, read_span
from dyadgen.media.clips import ClipError, align_offset, decode_frames


def speechlike(n, seed):
    rng = np.random.default_rng(seed)
    env = np.repeat(rng.random(n // 800 + 1) > 0.5, 800)[:n]
    return (rng.standard_normal(n) * 0.2 * env).astype(np.float32)


def write_numbered(path, seconds, fps, *, sample_rate=16000, keyframe_every=None):
    """Red left half, blue right half, the frame number k written in the top row as 7 black or white
    squares (its bits); the left channel is noise, the right a tone."""
    n = int(seconds * fps)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    audio = np.stack([speechlike(len(t), 0), 0.3 * np.sin(2 * np.pi * 330 * t)]).astype(np.float32)
    with VideoWriter(path, width=160, height=96, fps=fps, audio=audio, sample_rate=sample_rate,
                     keyframe_every=keyframe_every) as w:
        for k in range(n):
            frame = np.zeros((96, 160, 3), np.uint8)
            frame[:, :80], frame[:, 80:] = (255, 0, 0), (0, 0, 255)
            for bit in range(7):
                frame[:16, 16 * bit: 16 * bit + 16] = 255 * (k >> bit & 1)
            w.write(frame)
    return audio


def frame_numbers(frames):
    """The frame number k of each frame [T], modulo 128, read back from its bits."""
    bits = frames[:, 4:12, :112].reshape(len(frames), 8, 7, 16, 3).mean(axis=(1, 3, 4)) > 127  # [T,7]
    return (bits * (1 << np.arange(7))).sum(-1) % 128


def test_red_left_blue_right(tmp_path):
    write_numbered(tmp_path / "c.mp4", 2.0, 25)
    span = read_span(tmp_path / "c.mp4", 0.0, 2.0)
    people, _ = crop_people(span.frames, (64, 56))
    P, T, three, H, W = people.shape
    assert (P, three, H, W) == (2, 3, 64, 56) and T == 50 and span.audio.shape == (2, 50 * 640)
    left, right = people[0, :, :, 32:].mean(axis=(0, 2, 3)), people[1, :, :, 32:].mean(axis=(0, 2, 3))  # [3] RGB
    assert left[0] > 200 and left[2] < 40
    assert right[2] > 200 and right[0] < 40


def test_thirty_fps_source_gives_the_frame_on_screen_at_each_25_fps_tick(tmp_path):
    write_numbered(tmp_path / "c.mp4", 3.0, 30)
    frames = decode_frames(tmp_path / "c.mp4")
    assert len(frames) == 75
    expected = np.floor(np.arange(75) / 25 * 30 + 1e-3).astype(int) % 128  # the source frame showing k / 25 s
    assert np.array_equal(frame_numbers(frames), expected)
    assert np.array_equal(frame_numbers(read_span(tmp_path / "c.mp4", 0.0, 3.0).frames), expected)


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """6 s at 30 fps, a keyframe every second, 48 kHz stereo: a camera recording."""
    root = tmp_path_factory.mktemp("rec")
    audio = write_numbered(root / "raw.mp4", 6.0, 30, sample_rate=48000, keyframe_every=30)
    return root / "raw.mp4", audio


def test_a_stream_copy_clip_starts_on_the_keyframe_and_reads_like_the_raw_video(recording, tmp_path):
    raw, audio = recording
    start, end = 1.5, 3.2  # the log line's span; the keyframe before it is at 1.0 s
    clip = stream_copy_cut(raw, tmp_path / "000000.mp4", start, end)
    import av

    with av.open(str(clip)) as box:  # the pre-roll is in the file, with negative timestamps
        packets = [p for p in box.demux(box.streams.video[0]) if p.pts is not None]
        assert min(float(p.pts * p.time_base) for p in packets) == pytest.approx(-0.5, abs=1e-3)
    from_clip = read_span(clip, start, end, origin=start)
    from_raw = read_span(raw, start, end)
    assert from_clip.first == from_raw.first == 38  # 1.52 s, the first 25 fps tick in the turn
    assert len(from_clip.frames) == len(from_raw.frames) == 42  # ticks 38 .. 79 (3.16 s)
    expected = np.floor(np.arange(38, 80) / 25 * 30 + 1e-3).astype(int) % 128
    assert np.array_equal(frame_numbers(from_clip.frames), expected)
    assert np.array_equal(frame_numbers(from_raw.frames), expected)
    # the audio is the same moment: the right channel's tone lines up with the raw track's
    src = audio[1, :: 3][38 * 640: 80 * 640]  # 48 kHz -> 16 kHz by decimation, enough for a 330 Hz tone
    corr = np.corrcoef(from_clip.audio[1, 2000:-2000], src[2000:-2000])[0, 1]
    assert corr > 0.95


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="the ffmpeg command (Debian's ffmpeg) is not installed")
def test_our_stream_copy_equals_the_ffmpeg_command_their_tools_run(recording, tmp_path):
    raw, _ = recording
    ours = stream_copy_cut(raw, tmp_path / "ours.mp4", 1.5, 3.2)
    theirs = tmp_path / "theirs.mp4"  # data_tools/video_processor.py: ffmpeg -y -ss A -to B -i V -c copy OUT
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-ss", "00:00:01.500", "-to", "00:00:03.200", "-i", str(raw),
                    "-c", "copy", str(theirs)], check=True)
    a, b = read_span(ours, 1.5, 3.2, origin=1.5), read_span(theirs, 1.5, 3.2, origin=1.5)
    assert a.first == b.first and np.array_equal(a.frames, b.frames)
    # the same audio, but for the last AAC packet (ffmpeg's cut ends one packet earlier); the noise channel is
    # compared by alignment only, since AAC's noise substitution draws random noise at every decode
    assert np.abs(a.audio[1, :-400] - b.audio[1, :-400]).max() < 1e-3
    assert align_offset(a.audio[0], b.audio[0], 1600) == 0


def test_corrupt_clip_is_a_clip_error(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(500))
    with pytest.raises(ClipError, match="bad.mp4"):
        decode_frames(bad)
    with pytest.raises(ClipError, match="bad.mp4"):
        read_span(bad, 0.0, 1.0)
